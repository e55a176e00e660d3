"""Glue between stages: which encoder runs a study has, and extracting every variant with each."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from featcache.backbones.encoders import EncoderOptions, load_encoder
from featcache.cache import FeatureStore
from featcache.data import Corpus
from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, ExtractReport, extract, plan_entry
from featcache.presets import Preset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedRun:
    """One encoder run and the fold its weights belong to (None: frozen, shared by all folds)."""

    run: EncoderRun
    fold: int | None
    fold_options: dict | None = None


def expand_variants(specs: Sequence[str]) -> list[str]:
    """Canonical variant specs, in order and without repeats; ``all`` stands for every registered
    perturbation (clean excluded).

    Raises:
        FeatcacheError: An unknown variant (one line, listing the valid names).
    """
    from featcache.perturb import get_variant, list_variants

    out: list[str] = []
    for v in specs:
        names = [x.spec for x in list_variants() if x.modality is not None] if v == "all" else [v]
        for name in names:
            spec = get_variant(name).spec
            if spec not in out:
                out.append(spec)
    return out


def encoder_options(preset: Preset, *, pad_to: int | None = None) -> EncoderOptions:
    """The encoder options a preset implies."""
    return EncoderOptions(
        pooling=preset.pooling, max_samples=preset.max_samples, pad_to=pad_to, whisper_input=preset.whisper_input
    )


def plan_encoder_runs(
    corpus: Corpus,
    store: FeatureStore,
    *,
    preset: Preset,
    modality: str = "all",
    frozen: bool | None = None,
    folds: Sequence[int] | None = None,
    pad_to: int | None = None,
) -> list[PlannedRun]:
    """List the encoder runs to extract with.

    Args:
        corpus: The corpus (its modalities limit the runs).
        store: The store (fine-tuned runs are looked up there).
        preset: Backbones and options.
        modality: ``text``, ``audio`` or ``all``.
        frozen: Frozen backbones, fine-tuned ones, or the preset's choice (None).
        folds: Folds whose fine-tuned runs to use (None: all).
        pad_to: Pad every clip to this many samples.

    Returns:
        The planned runs.

    Raises:
        FeatcacheError: A fine-tuned run is asked for but the store has none (names the command).
    """
    mods = [m for m in corpus.modalities if modality in ("all", m)]
    if not mods:
        raise FeatcacheError(f"{corpus.name}: has no {modality} modality to extract")
    options = encoder_options(preset, pad_to=pad_to)
    if frozen if frozen is not None else preset.frozen:
        return [PlannedRun(EncoderRun(m, preset.backbone(m), options), None) for m in mods]
    from featcache.finetune import find_runs

    fold_list = list(folds) if folds else list(range(1, len(corpus.sessions) + 1))
    plans: list[PlannedRun] = []
    for k in fold_list:
        runs = find_runs(store, corpus=corpus, fold=k)
        found = False
        for ft in runs:
            for m in ft.modalities:
                if m in mods and ft.config["backbones"].get(m) == preset.backbone(m):
                    plans.append(
                        PlannedRun(
                            EncoderRun(m, preset.backbone(m), ft.encoder_options(), ft.encoder_weights(m), ft.run_id),
                            k,
                            ft.config["fold_options"],
                        )
                    )
                    found = True
        if not found:
            m = mods[0]
            raise FeatcacheError(
                f"{store.root}: no fine-tuned backbone for fold {k}; run `featcache finetune --corpus {corpus.name} "
                f"--modality {m} --fold {k}` first, or extract with --frozen"
            )
    return plans


def run_extractions(
    corpus: Corpus,
    store: FeatureStore,
    plans: Sequence[PlannedRun],
    *,
    variants: Sequence[str],
    seed: int = 0,
    split: str | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> list[ExtractReport]:
    """Extract every variant with every planned run, loading each encoder once (and only if needed)."""

    reports: list[ExtractReport] = []
    for plan in plans:
        encoder = None
        for spec in variants:
            kw = dict(run=plan.run, variant=spec, fold=plan.fold, split=split, seed=seed, fold_options=plan.fold_options)
            planned = plan_entry(corpus, store, **kw)  # type: ignore[arg-type]
            if planned is None:
                continue
            if store.has(planned.key):
                reports.append(ExtractReport(key=planned.key, status="skipped", n_ids=len(planned.ids),
                                             path=store.path(planned.key)))
                continue
            if encoder is None:  # loaded once per run, and only when something is missing
                encoder = load_encoder(planned.resolved, options=plan.run.options, weights=plan.run.weights)
            reports.append(extract(corpus, store, **kw, batch_size=batch_size, num_workers=num_workers,  # type: ignore[arg-type]
                                   device=device, encoder=encoder, progress=progress))
    return reports
