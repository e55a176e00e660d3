"""Training a study's heads on cached vectors: the clean vectors each head reads (every entry read once for
all folds, seeds and models), a fresh head per model (:data:`featcache.paper.MODEL_HEADS`), and the one
trainer (:func:`featcache.ensemble.fit_heads`: every head of a phase together on CPU); each head is saved
as soon as it has stopped."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featcache import paper
from featcache.ensemble import DEV_BATCH, fit_alone
from featcache.errors import DamagedError
from featcache.paper import ALL_MODELS, PAPER_MODELS, uses

if TYPE_CHECKING:
    from featcache.study.core import Study
    from featcache.train import FitResult

__all__ = ["DEV_BATCH", "fit_alone", "train_heads"]

log = logging.getLogger(__name__)


_Job = tuple[int, int, str]
"""(fold, seed, model) of one head."""
_Sources = dict[Any, tuple[torch.Tensor, dict[str, int]]]
"""Clean vectors read for head training: (encoder run, entry fold) -> (matrix, row of each utterance)."""


def _source_ids(study: Study, efold: int | None) -> list[str]:
    """The utterances whose clean vectors head training reads from one entry: every fold's training and
    dev utterances for an entry shared by the folds (``efold`` None), else that fold's."""
    folds = study.folds if efold is None else [efold]
    return list(dict.fromkeys(i for k in folds for part in (study.fold(k).train, study.fold(k).dev) for i in part))


def _head_data(study: Study, model: str, *, fold: int, seed: int, sources: _Sources
               ) -> tuple[list[torch.Tensor], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The clean vectors a head trains on.

    Args:
        study: The study.
        model: The head's model name.
        fold: Its fold.
        seed: Its seed.
        sources: Matrices read so far, shared by every fold, seed and model that reads the same entry
            (filled in as needed).

    Returns:
        ``(inputs, train_rows, dev_rows, train_labels, dev_labels)``: one matrix per modality the model
        reads, the fold's training and dev utterances' rows in them (the same for every modality), and
        their class indices.

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    f = study.fold(fold)
    efold = None if study.frozen else fold
    inputs, pos = [], None
    for mod in uses(model):
        key = (study.encoder_run(mod, fold=fold, seed=seed, model=model), efold)
        if key not in sources:
            ids = _source_ids(study, efold)
            x = study.vectors(mod, fold=fold, seed=seed, model=model, variant="clean", ids=ids)[0]
            sources[key] = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), {u: i for i, u in enumerate(ids)})
        matrix, pos = sources[key]
        inputs.append(matrix)
    assert pos is not None  # every model reads at least one modality; all sources of a fold share one id order
    train_rows = np.fromiter((pos[i] for i in f.train), dtype=np.int64, count=len(f.train))
    dev_rows = np.fromiter((pos[i] for i in f.dev), dtype=np.int64, count=len(f.dev))
    label = study.corpus.label_index
    y_tr = np.array([label(study.corpus.by_id(i).label) for i in f.train])
    y_dev = np.array([label(study.corpus.by_id(i).label) for i in f.dev])
    return inputs, train_rows, dev_rows, y_tr, y_dev


def _new_head(study: Study, model: str, *, fold: int, seed: int, shapes: dict[str, tuple[int, ...]]
              ) -> torch.nn.Module:
    """``model``'s head for (fold, seed), freshly initialised after ``torch.manual_seed(seed)``.

    Args:
        study: The study.
        model: The model name (``mdrop`` is the multimodal head with modality dropout).
        fold: Its fold.
        seed: Its seed.
        shapes: Shape of one vector of each modality it reads: ``(dim,)``, or ``(layers, dim)`` for
            ``--layer weighted`` (the head then has layer weights in front,
            :class:`~featcache.heads.layers.LayerWeightedHead`).

    Returns:
        The head; ``late`` and ``score`` hold the trained unimodal heads of (fold, seed) they fuse.
    """
    from featcache.heads import build_head

    torch.manual_seed(seed)
    kind, given = paper.MODEL_HEADS[model]
    options: dict[str, Any] = dict(given)
    if model in paper.FUSES_UNIMODAL_HEADS:  # (their parts carry the layer weights)
        options = {f"{m}_head": study.load_head(m, fold=fold, seed=seed,
                                                head_dir=study.unimodal_head_dir(m, fold=fold, seed=seed))
                   for m in paper.MODALITIES}
    head = build_head(kind, text_dim=shapes["text"][-1] if "text" in shapes else None,
                      audio_dim=shapes["audio"][-1] if "audio" in shapes else None, n_classes=len(study.corpus.labels),
                      **options)
    layers = {f"{m}_layers": shape[0] for m, shape in shapes.items() if len(shape) == 2}
    if layers and model not in paper.FUSES_UNIMODAL_HEADS:
        head = build_head("weighted", text_dim=None, audio_dim=None, n_classes=len(study.corpus.labels), head=head,
                          **layers)
    return head


def _save_head(study: Study, model: str, *, fold: int, seed: int, head: torch.nn.Module,
               fit_result: FitResult | None) -> dict[str, Any]:
    """Write a trained head: ``model.safetensors`` + ``config.json``, then ``result.json`` (the last, so
    a head is complete once its ``result.json`` exists).

    Args:
        study: The study.
        model: The model name.
        fold: Its fold.
        seed: Its seed.
        head: The trained head.
        fit_result: Its training outcome (None: nothing was trained, e.g. ``late``).

    Returns:
        The record written to ``result.json``.
    """
    from featcache.cache.atomic import atomic_write_json, write_errors_translated
    from featcache.heads import save_head
    from featcache.heads.record import RECORD_FILE, make_record

    out_dir = study.heads_dir(model, fold=fold, seed=seed)
    extra: dict[str, Any] = {}
    if fit_result is not None:
        extra = {"best_epoch": fit_result.best_epoch, "best_dev_acc": fit_result.best_dev_acc,
                 "epochs_run": fit_result.epochs_run}
    head.cpu()
    with write_errors_translated(out_dir):  # a read-only store or a full disk: one line
        save_head(head, out_dir)
        result = make_record(out_dir, place=study.head_place(model, fold=fold, seed=seed), head_dirs=[out_dir],
                             inputs=study.head_inputs(model, fold=fold, seed=seed), extra=extra)
        atomic_write_json(out_dir / RECORD_FILE, result, sort_keys=False)
    return result


def _stored_result(study: Study, model: str, *, fold: int, seed: int) -> dict[str, Any] | None:
    """The ``result.json`` record of a head already trained and intact, or None (a damaged head is said
    in one warning line and trained again)."""
    out_dir = study.heads_dir(model, fold=fold, seed=seed)
    done = out_dir / "result.json"
    if not done.is_file():
        return None
    try:
        study.load_head(model, fold=fold, seed=seed, head_dir=out_dir)
        return json.loads(done.read_text(encoding="utf-8"))
    except DamagedError as e:
        log.warning("%s: damaged head (%s); training it again", e.path, e.problem)
        return None


def train_heads(
    study: Study,
    *,
    models: Sequence[str] = ALL_MODELS,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train (or load, when already trained) every light head for every fold and seed.

    In a fine-tuned study the paper's three models come from ``featcache finetune`` and are not
    retrained here; the fusion ablations are trained on the unimodal fine-tuned vectors. Models whose
    modalities the corpus lacks are left out (see :meth:`Study.models`).

    Every head that still has to be trained is trained by :func:`featcache.ensemble.fit_heads` (on any
    device together with the others, as one batched ensemble, in the study's ``precision``) in two phases: first every
    fold x seed of the models that read the vectors (text, audio, multimodal, gated, mdrop), then the
    fusions of the trained unimodal heads (score; late has nothing to train). Each head ends exactly as the
    one-at-a-time trainer (:func:`_train_one`) leaves it, and is saved as soon as it has stopped. Head
    training runs single-threaded operations on ``FEATCACHE_THREADS`` threads (:func:`featcache.ensemble.head_threads`)
    and restores torch's thread count afterwards.

    Args:
        study: The study.
        models: Model names to train (see :mod:`featcache.paper`).
        device: Where to train.
        progress: Progress bars.

    Returns:
        One record per trained head: fold, seed, model, best epoch, dev accuracy, folder.

    Raises:
        FeatcacheError: An unknown model name, or a bad ``FEATCACHE_THREADS``.
        MissingEntries: Clean vectors are missing from the store.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from featcache.ensemble import head_threads, torch_threads

    wanted = study.models(models)
    order = [m for m in paper.HEAD_TRAIN_ORDER if m in wanted]
    if study.frozen and any(m in order for m in paper.FUSES_UNIMODAL_HEADS):
        order = list(dict.fromkeys([paper.TEXT, paper.AUDIO, *order]))  # late/score fuse the unimodal heads
    jobs = [(k, s, m) for k in study.folds for s in study.seeds for m in order if study.frozen or m not in PAPER_MODELS]
    threads = head_threads()
    results: dict[_Job, dict[str, Any]] = {}
    # logging_redirect_tqdm: a warning (a damaged head trained again) gets its own line above the bar
    with tqdm(total=len(jobs), desc="heads", unit="head", disable=not progress, leave=False) as bar, \
            torch_threads(1), logging_redirect_tqdm():
        fusing = [j for j in jobs if j[2] in paper.FUSES_UNIMODAL_HEADS]
        for phase in ([j for j in jobs if j not in fusing], fusing):
            _train_together(study, phase, results, threads=threads, device=device, on_saved=lambda: bar.update(1))
    return [results[j] for j in jobs]


def _train_together(study: Study, jobs: Sequence[_Job], results: dict[_Job, dict[str, Any]], *, threads: int,
                    on_saved: Callable[[], None], device: str = "cpu") -> None:
    """Train the heads of ``jobs`` that are not stored yet as one ensemble, saving each as it stops.

    Args:
        study: The study.
        jobs: (fold, seed, model) of the heads; a model that fuses unimodal heads needs them stored.
        results: Receives every job's ``result.json`` record (stored or new).
        threads: CPU training threads (:func:`featcache.ensemble.fit_heads`).
        device: Where to train.
        on_saved: Called once per job whose record is in ``results`` (e.g. a progress bar).

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    from featcache.ensemble import Member, fit_heads
    from featcache.train import class_weights

    sources: _Sources = {}
    members: list[Member] = []
    owners: list[_Job] = []
    for k, s, m in jobs:
        stored = _stored_result(study, m, fold=k, seed=s)
        if stored is None:
            inputs, train_rows, dev_rows, y_tr, y_dev = _head_data(study, m, fold=k, seed=s, sources=sources)
            head = _new_head(study, m, fold=k, seed=s, shapes={mod: tuple(x.shape[1:]) for mod, x in zip(uses(m), inputs)})
            if any(p.requires_grad for p in head.parameters()):
                members.append(Member(head=head, inputs=tuple(inputs), train_rows=train_rows, train_labels=y_tr,
                                      dev_rows=dev_rows, dev_labels=y_dev,
                                      class_weights=class_weights(y_tr, len(study.corpus.labels)), seed=s))
                owners.append((k, s, m))
                continue
            stored = _save_head(study, m, fold=k, seed=s, head=head, fit_result=None)  # late: nothing to train
        results[k, s, m] = stored
        on_saved()

    def save(index: int, fit_result: FitResult) -> None:
        k, s, m = owners[index]
        results[k, s, m] = _save_head(study, m, fold=k, seed=s, head=members[index].head, fit_result=fit_result)
        on_saved()

    fit_heads(members, settings=study.head_settings, device=device, threads=threads, on_done=save,
              precision=study.options.precision)


def _train_one(study: Study, model: str, *, fold: int, seed: int, device: str) -> dict[str, Any]:
    """Train (or load) one head alone with :func:`featcache.train.fit`: the reference the batched
    ensemble equals, and the trainer on devices other than the CPU.

    Args:
        study: The study.
        model: The model name.
        fold: Its fold.
        seed: Its seed.
        device: Where to train.

    Returns:
        The head's ``result.json`` record.

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    stored = _stored_result(study, model, fold=fold, seed=seed)
    if stored is not None:
        return stored
    inputs, train_rows, dev_rows, y_tr, y_dev = _head_data(study, model, fold=fold, seed=seed, sources={})
    x_tr = [x[train_rows] for x in inputs]
    x_dev = [x[dev_rows] for x in inputs]
    head = _new_head(study, model, fold=fold, seed=seed, shapes={m: tuple(x.shape[1:]) for m, x in zip(uses(model), x_tr)})
    fr = None
    if any(p.requires_grad for p in head.parameters()):
        fr = fit_alone(head, x_tr, y_tr, x_dev, y_dev, settings=study.head_settings, seed=seed,
                       n_classes=len(study.corpus.labels), device=device, precision=study.options.precision)
    return _save_head(study, model, fold=fold, seed=seed, head=head, fit_result=fr)


