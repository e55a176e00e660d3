"""Training an ablation: the mixed clean and attacked training vectors (:func:`mix_draws`, one hash per
seed, modality and utterance) and its heads over every fold and seed, with the study's trainer
(:func:`featcache.ensemble.fit_heads`)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from featcache import paper
from featcache.ablate.catalog import Ablation, ablation
from featcache.ablate.spec import RESULT_FILE, SPEC_FILE, AblationSpec
from featcache.errors import DamagedError, FeatcacheError
from featcache.paper import TrainSettings
from featcache.study import MissingEntries, Study

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def mix_draws(*, seed: int, modality: str, ids: Sequence[str], n_variants: int) -> tuple[np.ndarray, np.ndarray]:
    """The draws of training on attacks: a uniform number in [0, 1) and a variant index per utterance.

    Each pair is a hash of (seed, modality, utterance id) alone: the same in every fold, epoch, process
    and order of ``ids``.

    Args:
        seed: The head's seed.
        modality: ``text`` or ``audio``.
        ids: Utterance ids.
        n_variants: How many attacks of this modality to choose from (at least 1).

    Returns:
        ``(u, pick)``: float64 ``[n]`` in [0, 1) (replace when ``u < mix``) and int64 ``[n]`` in
        ``[0, n_variants)``.
    """
    u = np.empty(len(ids), dtype=np.float64)
    pick = np.empty(len(ids), dtype=np.int64)
    for i, uid in enumerate(ids):
        h = hashlib.blake2b(f"{seed}\0{modality}\0{uid}".encode(), digest_size=16).digest()
        u[i] = int.from_bytes(h[:8], "big") / 2.0**64
        pick[i] = int.from_bytes(h[8:], "big") % max(1, n_variants)
    return u, pick


def _training_vectors(study: Study, abl: Ablation, modality: str, *, fold: int, seed: int,
                      ids: Sequence[str]) -> tuple[np.ndarray, int]:
    """The training matrix of one modality (clean rows, some replaced by attacked ones) and how many
    rows were replaced.

    Raises:
        MissingEntries: A clean or attacked entry is missing (names the command that makes it).
    """
    from featcache.perturb import get_variant

    x = study.vectors(modality, fold=fold, seed=seed, model=abl.model, variant="clean", ids=ids)[0].copy()
    variants = [v for v in abl.spec.train_on if get_variant(v).modality == modality]
    if not variants:
        return x, 0
    u, pick = mix_draws(seed=seed, modality=modality, ids=ids, n_variants=len(variants))
    replaced = 0
    for j, variant in enumerate(variants):
        rows = np.flatnonzero((u < abl.spec.mix) & (pick == j))
        if len(rows) == 0:
            continue
        x[rows] = _attacked(study, abl, modality, variant, fold=fold, seed=seed, ids=[ids[r] for r in rows])
        replaced += len(rows)
    return x, replaced


def _attacked(study: Study, abl: Ablation, modality: str, variant: str, *, fold: int, seed: int,
              ids: Sequence[str]) -> np.ndarray:
    """Attacked vectors of training utterances: the fold's ``train`` entry, else its ``all`` entry.

    Raises:
        MissingEntries: Neither entry is stored (the message is the ``train`` entry's).
    """
    try:
        return study.vectors(modality, fold=fold, seed=seed, model=abl.model, variant=variant, ids=ids, split="train")[0]
    except MissingEntries:
        if study.frozen:
            raise
        try:
            return study.vectors(modality, fold=fold, seed=seed, model=abl.model, variant=variant, ids=ids,
                                 split="all")[0]
        except MissingEntries:
            pass
        raise


def _check_training_entries(study: Study, abl: Ablation) -> None:
    """Stop before training when any vectors the ablation trains on are missing, naming every command
    that makes them (one per missing entry; ``--fold all`` when several folds lack it).

    Raises:
        MissingEntries: Something is missing (a fine-tuning run, a clean or an attacked entry).
    """
    from featcache.perturb import get_variant

    lacking: dict[tuple[str, str], list[int]] = {}
    for k in study.folds:
        for s in study.seeds:
            for m in abl.spec.modalities:
                study.encoder_run(m, fold=k, seed=s, model=abl.model)  # names the finetune command when missing
                try:
                    study.vectors(m, fold=k, seed=s, model=abl.model, variant="clean", ids=[])
                except MissingEntries:
                    lacking.setdefault((m, "clean"), []).append(k)
            for v in abl.spec.train_on:
                m = get_variant(v).modality
                try:
                    _attacked(study, abl, m, v, fold=k, seed=s, ids=[])
                except MissingEntries:
                    lacking.setdefault((m, v), []).append(k)
    if not lacking:
        return
    commands = []
    for (m, v), folds in lacking.items():
        fold: int | str = folds[0] if len(set(folds)) == 1 else "all"
        commands.append(study.command("extract", modality=m, fold=fold, variant=v,
                                      split=None if v == "clean" else "train"))
    what = ", ".join(f"{v} {m}" for m, v in lacking)
    where = "" if study.frozen else " of the training utterances"
    raise MissingEntries(f"{study.store.root}: {abl.name} trains on the {what} vectors{where}, which are not all "
                         "stored; run " + " and ".join(f"`{c}`" for c in commands) + " first")


@dataclass
class _Job:
    """One fold and seed of an ablation being trained: its data, its heads and its record."""

    fold: int
    seed: int
    inputs: dict[str, np.ndarray]
    """Per modality, the matrix ``train_rows`` and ``dev_rows`` index: the entry's own (shared by every seed
    and layer that reads it) when nothing is mixed in, else this job's mixed training rows and its dev rows."""
    train_rows: np.ndarray
    dev_rows: np.ndarray
    y_tr: np.ndarray
    y_dev: np.ndarray
    record: dict[str, Any]
    abl: Ablation
    vs: Study
    parts: dict[str, torch.nn.Module] = field(default_factory=dict)
    head: torch.nn.Module | None = None

    @property
    def x_tr(self) -> dict[str, np.ndarray]:
        """The training vectors of each modality."""
        return {m: x[self.train_rows] for m, x in self.inputs.items()}

    @property
    def x_dev(self) -> dict[str, np.ndarray]:
        """The dev vectors of each modality."""
        return {m: x[self.dev_rows] for m, x in self.inputs.items()}


def _fit_all(study: Study, heads: Sequence[tuple[_Job, torch.nn.Module, tuple[str, ...]]], *,
             settings: TrainSettings, device: str, on_done: Callable[[], Any]) -> list[dict[str, Any]]:
    """Train heads of several folds and seeds with :func:`featcache.ensemble.fit_heads`, the trainer of
    ``train-heads``; each ends as :func:`featcache.train.fit` would leave it alone.

    Args:
        study: The study (its label count).
        heads: ``(job, head, modalities it reads)``; each head freshly built after ``torch.manual_seed(job.seed)``.
        settings: Training settings.
        device: Where to train.
        on_done: Called once per head that has finished (a progress bar).

    Returns:
        Per head, in order: best epoch, best dev accuracy, epochs run.
    """
    from featcache.ensemble import Member, fit_heads
    from featcache.train import class_weights

    n = len(study.corpus.labels)
    members = []
    tensors: dict[int, tuple[np.ndarray, torch.Tensor]] = {}  # one tensor per shared matrix (kept alive here)

    def tensor(x: np.ndarray) -> torch.Tensor:
        if id(x) not in tensors:
            tensors[id(x)] = (x, torch.from_numpy(np.array(x, dtype=np.float32)))  # (writable: entries are not)
        return tensors[id(x)][1]

    for job, head, mods in heads:
        members.append(Member(
            head=head, inputs=tuple(tensor(job.inputs[m]) for m in mods), train_rows=job.train_rows,
            train_labels=job.y_tr, dev_rows=job.dev_rows, dev_labels=job.y_dev,
            class_weights=class_weights(job.y_tr, n), seed=job.seed))
    results = fit_heads(members, settings=settings, device=device, on_done=lambda _i, _r: on_done(),
                        precision=study.options.precision)
    return [{"best_epoch": r.best_epoch, "best_dev_acc": r.best_dev_acc, "epochs_run": r.epochs_run} for r in results]


def _job(study: Study, abl: Ablation, *, vs: Study, fold: int, seed: int) -> _Job:
    """The training and dev vectors of one fold and seed (training rows mixed with attacked ones)."""
    f = study.fold(fold)
    label = study.corpus.label_index
    y_tr = np.array([label(study.corpus.by_id(i).label) for i in f.train], dtype=np.int64)
    y_dev = np.array([label(study.corpus.by_id(i).label) for i in f.dev], dtype=np.int64)
    inputs: dict[str, np.ndarray] = {}
    replaced: dict[str, int] = {}
    n_tr = len(f.train)
    if not abl.spec.train_on:  # clean rows only: index the entry's matrix, shared by every seed and layer
        for m in abl.spec.modalities:
            inputs[m], rows = vs.matrix_rows(m, fold=fold, seed=seed, model=abl.model, variant="clean",
                                             ids=[*f.train, *f.dev])
            replaced[m] = 0
        train_rows, dev_rows = rows[:n_tr], rows[n_tr:]
    else:
        for m in abl.spec.modalities:
            x_tr, replaced[m] = _training_vectors(vs, abl, m, fold=fold, seed=seed, ids=f.train)
            x_dev = vs.vectors(m, fold=fold, seed=seed, model=abl.model, variant="clean", ids=f.dev)[0]
            inputs[m] = np.concatenate([x_tr, x_dev])
        train_rows, dev_rows = np.arange(n_tr), np.arange(n_tr, n_tr + len(f.dev))
    record = {"fold": fold, "seed": seed, "model": abl.model, "n_train": n_tr, "n_replaced": replaced}
    return _Job(fold, seed, inputs, train_rows, dev_rows, y_tr, y_dev, record, abl=abl, vs=vs)


def _train_jobs(study: Study, jobs: Sequence[_Job], *, device: str, progress: bool) -> None:
    """Train the heads of ``jobs`` (every fold and seed at once; the jobs of several ablations that differ only
    in their layer too), then save each with its record.

    A late or score fusion first trains its two unimodal heads, then fuses them (score: trains the fusion
    weights); every other variant is one head on its inputs.
    """
    from tqdm import tqdm

    from featcache.cache.atomic import atomic_write_json
    from featcache.heads import build_head, save_head
    from featcache.heads.record import make_record

    abl = jobs[0].abl
    spec, st = abl.spec, abl.spec.settings(study.head_settings)
    assert all(replace(j.abl.spec, layer=None, label=None) == replace(spec, layer=None, label=None) for j in jobs)
    mods = tuple(spec.modalities)
    n = len(study.corpus.labels)
    drop = spec.dropouts()

    def dims(job: _Job) -> dict[str, int | None]:
        return {"text_dim": job.inputs[paper.TEXT].shape[-1] if paper.TEXT in job.inputs else None,
                "audio_dim": job.inputs[paper.AUDIO].shape[-1] if paper.AUDIO in job.inputs else None}

    first: list[tuple[_Job, torch.nn.Module, tuple[str, ...]]] = []
    for job in jobs:
        if len(mods) == 1 or spec.fusion in ("late", "score"):
            for m in mods:
                torch.manual_seed(job.seed)
                job.parts[m] = build_head(m, **dims(job), n_classes=n, hidden=spec.hidden, dropout=drop[m])
                first.append((job, job.parts[m], (m,)))
        else:
            torch.manual_seed(job.seed)
            job.head = build_head(paper.ABLATION_FUSIONS[spec.fusion], **dims(job), n_classes=n, hidden=spec.hidden,
                                  fusion_hidden=spec.fusion_hidden, text_dropout=drop[paper.TEXT],
                                  audio_dropout=drop[paper.AUDIO], modality_dropout=spec.modality_dropout)
            first.append((job, job.head, mods))
    names = sorted({j.abl.name for j in jobs})
    bar = tqdm(total=len(first), desc=f"{names[0] if len(names) == 1 else f'{len(names)} ablations'}: training", unit="head",
               disable=not progress, leave=False)
    with bar:
        fitted_first = _fit_all(study, first, settings=st, device=device, on_done=bar.update)
    for (job, _, (m, *rest)), fitted in zip(first, fitted_first):
        if len(mods) == 1 or rest:
            job.record.update(fitted)
            job.head = job.head or job.parts[m]
        else:
            job.record[m] = fitted
            save_head(job.parts[m], job.abl.head_dir(study, fold=job.fold, seed=job.seed, part=m))
    if len(mods) == 2 and spec.fusion in ("late", "score"):
        second = []
        for job in jobs:
            torch.manual_seed(job.seed)
            job.head = build_head(paper.ABLATION_FUSIONS[spec.fusion], **dims(job), n_classes=n,
                                  text_head=job.parts[paper.TEXT], audio_head=job.parts[paper.AUDIO])
            if any(p.requires_grad for p in job.head.parameters()):
                second.append((job, job.head, mods))
        with tqdm(total=len(second), desc=f"{abl.name}: fusion", unit="head", disable=not progress or not second,
                  leave=False) as bar:
            fitted_second = _fit_all(study, second, settings=st, device=device, on_done=bar.update)
        for (job, _, _), fitted in zip(second, fitted_second):
            job.record.update(fitted)
    for job in jobs:
        out = job.abl.head_dir(study, fold=job.fold, seed=job.seed)
        save_head(job.head, out)
        parts = ([job.abl.head_dir(study, fold=job.fold, seed=job.seed, part=m) for m in mods]
                 if len(mods) == 2 and spec.fusion in ("late", "score") else [])  # saved above
        job.record = make_record(out.parent, place=job.abl.place(study, fold=job.fold, seed=job.seed),
                                 head_dirs=[out, *parts], inputs=job.abl.inputs(job.vs, fold=job.fold, seed=job.seed),
                                 extra={k: v for k, v in job.record.items() if k not in ("fold", "seed", "model")})
        atomic_write_json(out.parent / RESULT_FILE, job.record, sort_keys=False)


def _stored_record(study: Study, abl: Ablation, vs: Study, *, fold: int, seed: int) -> dict[str, Any] | None:
    """The record of a head already trained and intact, or None (a damaged or stale head is said in one
    warning line and trained again)."""
    try:
        return abl.trained_head(study, vs, fold=fold, seed=seed)
    except DamagedError as e:
        log.warning("%s: %s; training the ablation's head again", e.path, e.problem)
        return None


def train_ablation(study: Study, spec: AblationSpec | Ablation, *, device: str = "cpu",
                   progress: bool = True) -> tuple[Ablation, list[dict[str, Any]]]:
    """Train (or load, when already trained) the ablation's head for every fold and seed of the study.

    Args:
        study: The study.
        spec: The ablation's options (or the ablation).
        device: Where to train.
        progress: Progress bar.

    Returns:
        ``(ablation, records)``: one record per fold and seed (best epoch, dev accuracy, how many
        training vectors of each modality were replaced by attacked ones).

    Raises:
        FeatcacheError: An invalid option, or the corpus lacks a modality the ablation reads.
        MissingEntries: Clean or attacked training vectors are missing (names the command that makes them).
    """
    return train_ablations(study, [spec], device=device, progress=progress)[0]


def train_ablations(study: Study, specs: Sequence[AblationSpec | Ablation], *, device: str = "cpu",
                    progress: bool = True) -> list[tuple[Ablation, list[dict[str, Any]]]]:
    """:func:`train_ablation` for several ablations, their heads trained together: a layer sweep's ablations
    (the same head on each hidden state) become one batched ensemble of every layer, fold and seed.

    Args:
        study: The study.
        specs: The ablations' options (or the ablations); those that differ in more than their layer and
            label train one after the other.
        device: Where to train.
        progress: Progress bar.

    Returns:
        Per ablation, in order, what :func:`train_ablation` returns.

    Raises:
        FeatcacheError: An invalid option, ``--layer weighted``, or the corpus lacks a modality an
            ablation reads.
        MissingEntries: Clean or attacked training vectors are missing (names the command that makes them).
    """
    from tqdm import tqdm

    from featcache.cache.atomic import atomic_write_json

    if study.options.layer == "weighted":
        raise FeatcacheError("layer (--layer weighted): an ablation's heads read one layer; pass --layer K")
    abls = [spec if isinstance(spec, Ablation) else ablation(study, spec) for spec in specs]
    jobs = [(k, s) for k in study.folds for s in study.seeds]
    out: list[tuple[Ablation, dict[tuple[int, int], dict[str, Any] | None]]] = []
    todo: dict[AblationSpec, list[_Job]] = {}  # by the spec without its layer: what trains together
    vector_studies = []
    try:
        for abl in abls:
            lacking = [m for m in abl.spec.modalities if m not in study.corpus.modalities]
            if lacking:
                raise FeatcacheError(f"{study.corpus.name}: the corpus has no {' and no '.join(lacking)}; "
                                     "choose --modalities it has")
            vs = abl.vector_study(study)
            vector_studies.append(vs)
            _check_training_entries(vs, abl)
            spec_file = abl.folder(study) / SPEC_FILE
            if not spec_file.is_file():  # (atomic_write_json makes the folder)
                atomic_write_json(spec_file, {"name": abl.name, "spec": abl.spec.to_json(),
                                              "identity": abl.spec.identity(study.head_settings),
                                              "description": abl.spec.describe(study.head_settings)}, sort_keys=False)
            records = {(k, s): _stored_record(study, abl, vs, fold=k, seed=s) for k, s in jobs}
            todo.setdefault(replace(abl.spec, layer=None, label=None), []).extend(
                _job(study, abl, vs=vs, fold=k, seed=s)
                for k, s in tqdm(jobs, desc=f"{abl.name}: vectors", unit="head", disable=not progress, leave=False)
                if records[k, s] is None)
            if vs is not study:
                vs.close()  # the jobs hold their vectors; the next layer's entries are read afresh
            out.append((abl, records))
        for group in todo.values():
            if group:
                _train_jobs(study, group, device=device, progress=progress)
                for j in group:
                    next(r for a, r in out if a is j.abl)[j.fold, j.seed] = j.record
    finally:
        study.close()
        for vs in vector_studies:
            vs.close()
    return [(abl, [records[k, s] for k, s in jobs]) for abl, records in out]  # type: ignore[misc]
