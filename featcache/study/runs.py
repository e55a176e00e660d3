"""Which fine-tuning runs a study uses: only a run whose whole config is what the study would fine-tune
(:func:`featcache.finetune.run_differences` compares them); where the store holds runs of the same model,
fold and seed with other options, the study says which options differ."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featcache.errors import DamagedError, FeatcacheError, MissingEntries

if TYPE_CHECKING:
    from featcache.study.core import Study

__all__ = ["finetuned_run", "require_run", "run_config", "run_note", "run_notes"]


def run_config(study: Study, model: str, *, fold: int, seed: int) -> dict[str, Any]:
    """The config of the fine-tuning run this study would make for ``model`` at (fold, seed)
    (:func:`featcache.finetune.run_config`; precision as the study gives it, ``auto`` unresolved)."""
    from featcache.finetune import run_config as config_of

    return config_of(study.corpus, preset=study.preset, modality=model, fold=fold, seed=seed,
                     options=study.encoder_options, settings=study.finetune_settings(model),
                     fold_options=study.run_fold_options, precision=study.options.finetune_precision)


def finetuned_run(study: Study, model: str, *, fold: int, seed: int) -> Any:
    """The finished fine-tuning run of a paper model at (fold, seed) whose whole config is what this
    study would fine-tune (:func:`run_config`), or ``None``; looked up once.

    Raises:
        DamagedError: A run of that fold and seed no longer reads.
        FeatcacheError: Two matching runs differ in precision only and the study's is ``auto``.
    """
    if (model, fold, seed) not in study._runs:
        from featcache.finetune import find_runs, run_differences

        try:
            found = find_runs(study.store, corpus=study.corpus, fold=fold, seed=seed, modality=model)
        except DamagedError as e:
            cmd = study.command("finetune", modality=model, fold=fold, seed=seed)
            raise DamagedError(e.path, e.problem, what="fine-tuning run",
                               fix=f"run `{cmd}` (it finishes the run again), or delete its folder") from None
        wanted = run_config(study, model, fold=fold, seed=seed)
        runs = [r for r in found if not run_differences(r.config, wanted)]
        if len(runs) > 1:
            raise FeatcacheError(
                f"{study.store.root}: {len(runs)} fine-tuned {model} runs for fold {fold}, seed {seed} differ only "
                f"in precision ({', '.join(sorted(str(r.config.get('precision')) for r in runs))}); choose one with "
                "finetune_precision (--finetune-precision)")
        study._runs[model, fold, seed] = runs[0] if runs else None
        study._others[model, fold, seed] = [run_differences(r.config, wanted) for r in found]
    return study._runs[model, fold, seed]


def run_note(study: Study, model: str, *, fold: int, seed: int) -> str:
    """Why no run of (model, fold, seed) is this study's when the store has others there, or ``''``."""
    others = study._others.get((model, fold, seed), [])
    if study._runs.get((model, fold, seed)) is not None or not others:
        return ""
    names = sorted({d for diffs in others for d in diffs})
    return (f"no fine-tuned {model} run of fold {fold}, seed {seed} has this study's options; the store's "
            f"{len(others)} run(s) of that fold and seed differ in {', '.join(names)}")


def run_notes(study: Study) -> list[str]:
    """One line for each fine-tuning run looked up and not found where the store holds runs of the same
    model, fold and seed with other options (naming the options that differ)."""
    return [n for (m, k, s) in study._others if (n := run_note(study, m, fold=k, seed=s))]


def require_run(study: Study, model: str, *, fold: int, seed: int) -> Any:
    """The study's run of ``model`` at (fold, seed).

    Raises:
        MissingEntries: There is none (names the options in which the store's runs there differ, and the
            command that makes the study's).
    """
    run = finetuned_run(study, model, fold=fold, seed=seed)
    if run is None:
        cmd = study.command("finetune", modality=model, fold=fold, seed=seed)
        note = run_note(study, model, fold=fold, seed=seed)
        why = f"{note}" if note else f"no fine-tuned {model} run for fold {fold}, seed {seed}"
        raise MissingEntries(f"{study.store.root}: {why}; run `{cmd}`")
    return run
