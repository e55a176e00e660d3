"""A Python API for notebooks: open a study, read its vectors, train and evaluate heads and ablations,
and get the results as tables.

Import it as ``from featcache import api`` (the package's ``__init__`` imports nothing, so that every
layer can import it; see the README's architecture section)::

    from featcache import api

    study = api.open_study(corpus="iemocap:demo-corpus", cache_dir="cache", preset="demo")
    v = api.vectors(study, modality="text", fold=1, variant="adj")     # ids, labels, matrix (numpy)
    preds = api.evaluate(study, models=["multimodal"], conditions=["adj"])
    api.results(preds)                                                   # a DataFrame with pandas

Everything here is a thin, typed layer over the modules the command line uses (:mod:`featcache.study`,
:mod:`featcache.ablate`, :mod:`featcache.metrics`), so a notebook and ``featcache`` share the store:
heads trained by one are found by the other when the study's options are the same.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from featcache import paper
from featcache.ablate import AblationInfo, AblationResult, AblationSpec, LayerSweep, comparison_records, list_ablations
from featcache.errors import FeatcacheError
from featcache.metrics import Analysis, Predictions, result_records, summary_records
from featcache.study import Study

__all__ = ["Vectors", "ablate", "ablations", "comparison", "evaluate", "open_study", "results", "table",
           "train_heads", "vectors"]


def open_study(
    *,
    corpus: str,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    text_source: str = "gold",
    cache_dir: str | os.PathLike[str] = "cache",
    preset: str = "demo",
    text_backbone: str | None = None,
    audio_backbone: str | None = None,
    pooling: Literal["auto", "cls", "mean"] | None = None,
    max_samples: int | None = None,
    pad_to: int | None = None,
    whisper_input: Literal["trim", "30s"] | None = None,
    layers: str | None = None,
    store_dtype: Literal["float32", "float16"] = "float32",
    precision: Literal["fp32", "bf16"] = "fp32",
    layer: str | int | None = None,
    frozen: bool | None = None,
    seeds: Sequence[int] | None = None,
    variant_seed: int = 0,
    dev: Literal["stratified", "session", "speaker"] = "stratified",
    dev_fraction: float | None = None,
    head_batch_size: int | None = None,
    head_lr: float | None = None,
    head_epochs: int | None = None,
    head_patience: int | None = None,
    finetune_batch_size: int | None = None,
    finetune_lr: float | None = None,
    finetune_epochs: int | None = None,
    finetune_patience: int | None = None,
    grad_accum: int | None = None,
    finetune_precision: Literal["auto", "fp32", "bf16", "fp16"] | None = None,
) -> Study:
    """Open a study: a corpus, a feature store and the options that name its vectors, runs and heads.

    The keywords are exactly the fields of :class:`~featcache.options.StudyOptions`, the options the
    command line's study commands take (``--head-lr`` is ``head_lr``), so the same options give the same
    study and find the same heads and runs. None stands for the option's default (mostly the preset's).

    Args:
        corpus: ``iemocap:DIR`` or ``manifest:FILE.csv|.jsonl``.
        labels: Labels to keep, in class order (default: the corpus's; IEMOCAP: ang, sad, hap, fru).
        merge: Raw labels merged into a class (IEMOCAP default: exc -> hap).
        text_source: The text the study reads: ``gold`` (the corpus's), or ``whisper-base`` / a CTranslate2 Whisper
            folder whose transcripts of the audio (transcribed once into the store) it trains and evaluates on.
        cache_dir: The feature store.
        preset: ``demo`` or ``paper``.
        text_backbone: Text encoder instead of the preset's (alias, directory or hub name).
        audio_backbone: Speech encoder instead of the preset's.
        pooling: Text pooling instead of the preset's (``cls``, ``mean``, or ``auto``: the backbone's own).
        max_samples: Cut longer clips here (default: the preset's, 246000).
        pad_to: Pad every clip to this many samples and pool all frames.
        whisper_input: Whisper's input, ``trim`` or ``30s`` windows (default: the preset's).
        layers: Hidden states stored per utterance: ``all``, or numbers like ``0,6,12`` or ``0-12`` (0: the
            embeddings' output; default: the last layer only).
        store_dtype: How vectors are stored, ``float32`` or ``float16``.
        precision: The arithmetic of extraction and of the heads, ``fp32`` or ``bf16`` (bfloat16 matrix
            products, float32 master weights); bf16 vectors and heads are stored apart from fp32 ones.
        layer: The stored hidden state heads read: a number or ``weighted`` (SUPERB's learned weighted sum;
            default: the last stored layer).
        frozen: Frozen backbones or per-fold fine-tuned ones (default: the preset's).
        seeds: Seeds of the heads and fine-tuning runs (default: the preset's, 0, 1, 2).
        variant_seed: Seed of the perturbations (as given to ``featcache extract --seed``).
        dev: How the early-stopping dev set is taken from the training sessions.
        dev_fraction: Share of the training utterances in a stratified dev set (default: 0.1).
        head_batch_size: Batch size of the heads trained on cached vectors (default: 128).
        head_lr: Their learning rate (default: 1e-3).
        head_epochs: Their most epochs (default: 100).
        head_patience: Their early-stopping patience (default: 10).
        finetune_batch_size: Batch size of the fine-tuning runs (default: the preset's, per model).
        finetune_lr: Their learning rate (default: the preset's, per model).
        finetune_epochs: Their most epochs (default: the preset's).
        finetune_patience: Their early-stopping patience (default: the preset's).
        grad_accum: Their batches per optimiser step (default: 1).
        finetune_precision: Their arithmetic, ``auto``, ``fp32``, ``bf16`` or ``fp16`` (default: ``auto``).

    Returns:
        The :class:`~featcache.study.Study`.

    Raises:
        FeatcacheError: An option that fails its check (one line naming it), an unknown preset, or a corpus
            that cannot be read (one line naming the file).
    """
    given = dict(locals())  # exactly the keywords above
    from featcache.options import StudyOptions

    return Study.open(StudyOptions.from_text(**given))


@dataclass(frozen=True)
class Vectors:
    """Stored vectors of one (encoder run, fold, variant) for one split of the fold.

    Attributes:
        ids: Utterance ids, in row order.
        labels: Class index of each utterance (int64 ``[n]``).
        matrix: The vectors (float32 ``[n, dim]``).
        label_names: Class names, in class order.
        affected: Whether the variant changed each utterance's input (all False for clean).
    """

    ids: list[str]
    labels: np.ndarray
    matrix: np.ndarray
    label_names: tuple[str, ...]
    affected: np.ndarray


def vectors(
    study: Study,
    *,
    modality: Literal["text", "audio"],
    fold: int,
    variant: str = "clean",
    split: Literal["train", "dev", "test", "all"] = "test",
    seed: int | None = None,
    model: str | None = None,
    layer: int | Literal["weighted"] | None = None,
) -> Vectors:
    """The stored vectors of one split of a fold, as numpy.

    Args:
        study: The study.
        modality: ``text`` or ``audio``.
        fold: The fold (its test session is session ``fold``).
        variant: ``clean`` or a variant spec (``adj``, ``pitch``, ``noise:snr_db=10``).
        split: Which utterances of the fold. With fine-tuned backbones a variant's ``train``, ``dev``
            or ``all`` vectors exist only when extracted with ``featcache extract --split``.
        seed: The head seed whose fine-tuning run encoded them (fine-tuned studies; default: the first).
        model: The model they feed, which picks the fine-tuning run (fine-tuned studies; default: the
            unimodal model of ``modality``; ``multimodal`` reads the multimodal run's encoders).
        layer: For a study of layer-wise vectors (``layers=``): the hidden state (``[n, dim]``), or
            ``weighted`` for all of them (``[n, layers, dim]``); default: the study's ``layer`` (else the last
            stored one).

    Returns:
        The :class:`Vectors`.

    Raises:
        FeatcacheError: An unknown split or fold.
        MissingEntries: The vectors are not stored (the message is the command that makes them).
    """
    if split not in paper.SPLITS:
        raise FeatcacheError(f"split {split!r}: choose train, dev, test or all")
    if fold not in study.folds:
        raise FeatcacheError(f"fold {fold}: the corpus has folds {study.folds[0]}..{study.folds[-1]}")
    ids = list(study.fold(fold).split(split))
    entry_split = None if variant == "clean" or split == "test" else split
    if layer is not None and str(layer) != study.options.layer:
        study = study.replace(layer=str(layer))
    try:
        matrix, _, _, affected = study.vectors(modality, fold=fold, seed=study.seeds[0] if seed is None else seed,
                                               model=model or modality, variant=variant, ids=ids, split=entry_split)
    finally:
        study.close()
    labels = np.array([study.corpus.label_index(study.corpus.by_id(i).label) for i in ids], dtype=np.int64)
    return Vectors(ids=ids, labels=labels, matrix=matrix, label_names=tuple(study.corpus.labels), affected=affected)


def train_heads(
    study: Study,
    *,
    models: Sequence[str] = paper.ALL_MODELS,
    device: str = "cpu",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train (or load) the study's heads on cached vectors, every fold and seed.

    Args:
        study: The study.
        models: The paper's models (``text``, ``audio``, ``multimodal``) and fusion ablations (``late``,
            ``score``, ``gated``, ``mdrop``); those the corpus's modalities do not allow are left out.
        device: Where to train.
        progress: Progress bar.

    Returns:
        One record per head (fold, seed, model, best epoch, dev accuracy, folder).

    Raises:
        FeatcacheError: An unknown model.
        MissingEntries: Clean vectors are missing (the message names the command).
    """
    from featcache.study import train_heads as _train

    return _train(study, models=study.models(models), device=device, progress=progress)


def evaluate(
    study: Study,
    *,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    ablations: Sequence[str] = (),
    progress: bool = False,
) -> Predictions:
    """Every fold x seed x model x condition, from the store alone.

    What is missing (untrained heads, unextracted variants) is left out with one warning each that
    names the command that makes it.

    Args:
        study: The study.
        models: Models (default: every model the corpus allows).
        conditions: Conditions (default: the paper's plus every other variant the store holds);
            ``clean`` is always evaluated.
        ablations: Names of ablations (see :func:`ablations`) to evaluate beside the models, as the
            models ``ablate:<name>``; ``layers`` (every layer sweep of the study) and ``LABEL-layers`` (those
            of one label) add each layer's ablation, as ``featcache evaluate --ablation`` does.
        progress: Progress bars.

    Returns:
        The :class:`~featcache.metrics.Predictions` (one row per fold, seed, model, condition, utterance).

    Raises:
        FeatcacheError: An unknown model, condition or ablation.
    """
    from featcache.ablate import evaluate_ablation
    from featcache.pipeline import resolve_ablations
    from featcache.study import evaluate as _evaluate

    found, _ = resolve_ablations(study, ablations)
    conds, _ = study.conditions(conditions)
    preds, missing = _evaluate(study, models=study.models(models or paper.ALL_MODELS), conditions=conds,
                               progress=progress)
    parts = [preds]
    for abl in found:
        extra, extra_missing = evaluate_ablation(study, abl, conditions=conds, progress=progress)
        parts.append(extra)
        missing += [m for m in extra_missing if m not in missing]
    for cmd in missing:
        warnings.warn(f"missing: {cmd}", stacklevel=2)
    kept = [p for p in parts if len(p)]
    return Predictions.concat(kept) if kept else preds


def ablate(
    study: Study,
    *,
    fusion: Literal["concat", "late", "score", "gated"] = "concat",
    modalities: Sequence[str] = paper.MODALITIES,
    hidden: Sequence[int] = paper.HIDDEN,
    fusion_hidden: int = paper.FUSION_HIDDEN,
    dropout: float | None = None,
    modality_dropout: float = 0.0,
    lr: float | None = None,
    epochs: int | None = None,
    train_on: Sequence[str] = (),
    mix: float = 0.5,
    text_pooling: Literal["cls", "mean"] | None = None,
    label: str | None = None,
    layers: str | Sequence[int] | None = None,
    conditions: Sequence[str] | None = None,
    n_resamples: int = 1000,
    device: str = "cpu",
    progress: bool = False,
    verbose: bool = False,
) -> AblationResult | LayerSweep:
    """Train a head or fusion variant over every fold and seed, evaluate it and the paper's heads under
    every condition, and compare them (``featcache ablate``; see :mod:`featcache.ablate`).

    Args:
        study: The study.
        fusion: ``concat`` (the paper's multimodal head), ``late``, ``score`` or ``gated``.
        modalities: ``("text", "audio")``, ``("text",)`` or ``("audio",)``.
        hidden: Layer sizes of each modality's body.
        fusion_hidden: Size of the layer after the fusion (``concat``, ``gated``).
        dropout: Body dropout of both modalities (default: the paper's, text 0 and audio 0.2).
        modality_dropout: Probability of zeroing one modality of a training example.
        lr: Learning rate (default: the study's head settings).
        epochs: Most epochs (default: the study's head settings).
        train_on: Attacks whose stored training vectors are mixed into the training set.
        mix: Probability that a training utterance's vector of a modality is replaced by an attacked one.
        text_pooling: Text pooling of the vectors the variant reads, where it differs from the study's
            (the paper's heads keep the study's; frozen backbones only).
        label: A readable label, the first part of the ablation's name.
        layers: Train the variant on each of these hidden states of the study's layer-wise vectors (``all``,
            ``0-12``, or a list; the study needs ``layers=``): a layer sweep, returned as a
            :class:`~featcache.ablate.LayerSweep` (one row per layer).
        conditions: Conditions to evaluate (default: as :func:`evaluate`).
        n_resamples: Bootstrap resamples of the intervals (0: none).
        device: Where to train.
        progress: Progress bars.
        verbose: Print the lines ``featcache ablate`` prints (the table included).

    Returns:
        The :class:`~featcache.ablate.AblationResult`: its ``table`` (Markdown), ``rows``,
        ``predictions`` (the ablation's and the paper's heads') and ``training`` records.

    Raises:
        FeatcacheError: An invalid option, or nothing could be evaluated.
        MissingEntries: Training vectors are missing (names the command that makes them).
    """
    from featcache.ablate import run_ablation

    spec = AblationSpec(fusion=fusion, modalities=tuple(modalities), hidden=tuple(hidden), fusion_hidden=fusion_hidden,
                        dropout=dropout, modality_dropout=modality_dropout, lr=lr, epochs=epochs,
                        train_on=tuple(train_on), mix=mix, pooling=text_pooling, label=label)

    def echo(message: str, *, err: bool = False) -> None:
        if err:
            warnings.warn(message, stacklevel=3)
        elif verbose:
            print(message)

    if layers is not None:
        from featcache.ablate import run_layer_sweep

        return run_layer_sweep(study, spec, layers=layers, conditions=conditions, device=device,
                               n_resamples=n_resamples, echo=echo, progress=progress)
    return run_ablation(study, spec, conditions=conditions, device=device, n_resamples=n_resamples, echo=echo,
                        progress=progress)


def ablations(study: Study) -> list[AblationInfo]:
    """The study's ablations in the store (name, heads trained, description, folder).

    Raises:
        FeatcacheError: An unreadable ablation file.
    """
    return list_ablations(study)


def table(records: Sequence[Mapping[str, Any]]) -> Any:
    """Records as a pandas ``DataFrame`` when pandas is installed, else the list of dicts itself.

    Args:
        records: Flat dicts with the same keys.

    Returns:
        A ``pandas.DataFrame`` or a ``list[dict]``.
    """
    try:
        import pandas as pd
    except ImportError:
        return [dict(r) for r in records]
    return pd.DataFrame.from_records(list(records))


def results(
    predictions: Predictions,
    *,
    kind: Literal["summary", "groups"] = "summary",
    n_resamples: int = 0,
) -> Any:
    """The results of a predictions table as a table (see :func:`table`).

    Args:
        predictions: From :func:`evaluate` (or ``Predictions.load``).
        kind: ``summary``: one row per (model, condition) over folds and seeds (accuracies as fractions,
            impacts in percent; the columns of ``summary.csv``); ``groups``: one row per (fold, seed,
            model, condition) (the columns of ``results.csv``).
        n_resamples: Bootstrap resamples of the fusion-vs-unimodal intervals in the summary (0: none).

    Returns:
        A ``pandas.DataFrame`` or a ``list[dict]``.

    Raises:
        FeatcacheError: An unknown kind.
    """
    analysis = Analysis(predictions)
    if kind == "summary":
        return table(summary_records(analysis.summary(n_resamples=n_resamples)))
    if kind == "groups":
        return table(result_records(analysis.results()))
    raise FeatcacheError(f"kind {kind!r}: choose summary or groups")


def comparison(result: AblationResult) -> Any:
    """An ablation's comparison with the paper's heads as a table (see :func:`table`): per condition,
    the paper models' and the ablation's Avg. accuracy (percent), the difference in points with its
    interval, and the impacts and their difference with its interval.

    Args:
        result: From :func:`ablate`.

    Returns:
        A ``pandas.DataFrame`` or a ``list[dict]``.
    """
    return table(comparison_records(result.rows, model=result.ablation.model, reference=result.ablation.reference))
