"""Evaluating a study: every head over the stored vectors of every condition, from the store alone (no
encoder is loaded). One function runs a head over a fold's conditions (:func:`evaluate_head`), for the
paper's heads and the ablations alike; :func:`layer_weights` reads what ``--layer weighted`` heads learned."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from featcache import paper
from featcache.cache import Entry
from featcache.conditions import CLEAN, Condition
from featcache.errors import FeatcacheError, MissingEntries
from featcache.extract import EncoderRun
from featcache.paper import ALL_MODELS, uses

if TYPE_CHECKING:
    from featcache.study.core import Study

__all__ = ["LayerWeightStat", "encode_input", "evaluate", "evaluate_head", "fold_test_columns", "layer_weights",
           "prediction_block"]

log = logging.getLogger(__name__)




def evaluate(
    study: Study,
    *,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[Any, list[str]]:
    """Run every head over the stored vectors of every condition.

    Args:
        study: The study.
        models: Models to evaluate (default: every model the corpus's modalities allow; those without
            trained heads are reported as missing).
        conditions: Conditions (default: the paper's plus every other variant the store holds, see
            :meth:`Study.conditions`); ``clean`` is always evaluated, conditions the corpus cannot
            perturb are left out.
        progress: Progress bar.

    Heads run on one intra-op thread (their matmuls are small; see :func:`featcache.ensemble.head_threads`).

    Returns:
        ``(predictions, missing)``: a :class:`featcache.metrics.Predictions` with one row per
        (fold, seed, model, condition, utterance), and the commands that would make what was missing.
    """
    from featcache.ensemble import torch_threads
    from featcache.metrics import Predictions

    conds, skipped = study.conditions(conditions)
    for line in skipped:
        log.debug(line)
    blocks: list[dict[str, np.ndarray]] = []
    texts: dict[tuple[str, str], str] = {}
    missing: list[str] = []
    jobs = [(k, s, m) for k in study.folds for s in study.seeds for m in study.models(models or ALL_MODELS)]
    try:
        # the heads' matmuls are small: on one intra-op thread they never wait for a core another job holds
        # (with torch's default threads a busy 2-core machine made the demo's evaluation 226 s instead of seconds)
        with torch_threads(1):
            _evaluate_jobs(study, jobs, conds, blocks, texts, missing, progress)
    finally:
        study.close()
    preds = Predictions.from_blocks(blocks, labels=study.corpus.labels, texts=texts)
    return preds, missing


def _evaluate_jobs(study: Study, jobs: list, conditions: Sequence[Condition], blocks: list[dict[str, np.ndarray]],
                   texts: dict, missing: list[str], progress: bool) -> None:
    """Fill ``blocks`` (one dict of columns per fold/seed/model/condition), ``texts`` and ``missing``.

    Within a fold, each entry's test rows are gathered once and shared by every seed and model
    (:func:`evaluate_head` runs each head).
    """
    from tqdm import tqdm

    replayed: set[tuple[str, int]] = set()  # (condition, fold) whose texts are rebuilt
    rows: dict[tuple[EncoderRun, str], tuple[torch.Tensor, dict, Entry, np.ndarray]] = {}  # this fold's test rows
    current_fold = None
    for k, s, m in tqdm(jobs, desc="evaluate", unit="model", disable=not progress, leave=False):
        if k != current_fold:
            rows.clear()
            current_fold = k
        if not study.head_trained(m, fold=k, seed=s):
            trained_here = study.trained_here(m)
            if trained_here:  # name the vectors it trains on and is evaluated on, then the head itself
                needed = dict.fromkeys((mod, c.variant(mod)) for c in conditions if c.applies(m) for mod in uses(m))
                for mod, variant in needed:
                    try:
                        study.vectors(mod, fold=k, seed=s, model=m, variant=variant, ids=[])
                    except MissingEntries as e:
                        if str(e) not in missing:
                            missing.append(str(e))
            cmd = study.command("train-heads") if trained_here else study.command("finetune", modality=m, fold=k, seed=s)
            if cmd not in missing:
                missing.append(cmd)
            continue
        head = study.load_head(m, fold=k, seed=s)
        blocks += evaluate_head(study, head, model=m, reads=uses(m), conditions=[c for c in conditions if c.applies(m)],
                                fold=k, seed=s, missing=missing, rows=rows, texts=texts, replayed=replayed)


def evaluate_head(study: Study, head: torch.nn.Module, *, model: str, reads: Sequence[str],
                  conditions: Sequence[Condition], fold: int, seed: int, missing: list[str],
                  rows: dict[Any, tuple[torch.Tensor, dict, Entry, np.ndarray]] | None = None,
                  texts: dict | None = None, replayed: set | None = None) -> list[dict[str, np.ndarray]]:
    """The prediction blocks of one head of (fold, seed) under each condition: the one evaluation of a head,
    for the paper's heads and the fusions (:func:`evaluate`) and the ablations alike.

    Each (modality, variant) input is encoded once and shared by every condition that uses it
    (``pitch+adj`` reuses the encoded ``adj`` text and ``pitch`` audio). A ``--precision bf16`` study runs the
    head's products in bfloat16 (autocast; its probabilities are float32).

    Args:
        study: The study whose stored vectors the head reads.
        head: The head, in eval mode.
        model: The model its vectors feed (picks a fine-tuned study's run); also its ``model`` column.
        reads: The modalities it reads, in the order it takes them.
        conditions: The conditions to evaluate it under (those it can see).
        fold: The fold.
        seed: The head's seed.
        missing: Receives one message per missing entry (the command that makes it).
        rows: This fold's test rows per (encoder run, variant), shared by every head of the fold (filled in).
        texts: Receives the perturbed transcriptions rebuilt from the records, for the examples.
        replayed: The (condition, fold) pairs whose texts are in ``texts`` already (updated).

    Returns:
        One block of prediction columns per condition whose vectors are stored.
    """
    from featcache.perturb import get_variant

    rows = {} if rows is None else rows
    # --precision bf16: the head's products in bfloat16 (a CPU's or GPU's autocast), its probabilities in float32
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=study.options.precision == "bf16")
    ids, fixed = fold_test_columns(study, fold=fold, seed=seed, model=model)
    encoded: dict[tuple[str, str], torch.Tensor] = {}  # (modality, variant) -> this head's encoded input
    blocks = []
    for cond in conditions:
        try:
            inputs, affected = [], np.zeros(len(ids), dtype=bool)
            for mod in reads:
                variant = cond.variant(mod)
                run = study.encoder_run(mod, fold=fold, seed=seed, model=model)
                if (run, variant) not in rows:  # frozen runs are shared by seeds and models
                    x, records, entry, changed = study.vectors(mod, fold=fold, seed=seed, model=model,
                                                               variant=variant, ids=ids)
                    rows[run, variant] = (torch.from_numpy(x), records, entry, changed)
                x_t, records, entry, changed = rows[run, variant]
                if (mod, variant) not in encoded:
                    with autocast:
                        encoded[mod, variant] = encode_input(head, mod, x_t)
                inputs.append(encoded[mod, variant])
                if variant != CLEAN:
                    affected |= changed
                    if mod == paper.TEXT and texts is not None and replayed is not None and (cond, fold) not in replayed:
                        replayed.add((cond, fold))
                        _collect_texts(study, texts, cond, ids, records, entry, get_variant(variant))
        except MissingEntries as e:
            if str(e) not in missing:
                missing.append(str(e))
            continue
        with autocast:
            blocks.append(prediction_block(head, inputs, fixed=fixed, condition=cond, affected=affected))
    return blocks


def fold_test_columns(study: Study, *, fold: int, seed: int, model: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """A fold's test utterances and the prediction columns that are the same under every condition.

    Args:
        study: The study.
        fold: The fold.
        seed: The head's seed.
        model: The model name written in the ``model`` column (a paper model or ``ablate:<name>``).

    Returns:
        ``(ids, columns)``: the test ids in fold order; ``fold``, ``session``, ``seed``, ``model``,
        ``utt_id`` and ``label`` columns, one row per id.
    """
    f = study.fold(fold)
    ids = list(f.test)
    n = len(ids)
    labels = np.array([study.corpus.label_index(study.corpus.by_id(i).label) for i in ids], dtype=np.int64)
    return ids, {"fold": np.full(n, fold, dtype=np.int64), "session": np.full(n, f.test_session, dtype=object),
                 "seed": np.full(n, seed, dtype=np.int64), "model": np.full(n, model, dtype=object),
                 "utt_id": np.array(ids, dtype=object), "label": labels}


def encode_input(head: torch.nn.Module, modality: str, x: torch.Tensor) -> torch.Tensor:
    """One modality's vectors through a head: a fusion head's body for that modality (``head.encode``), a
    unimodal head's logits otherwise. Computed once per (modality, variant) and reused by every condition.
    """
    with torch.no_grad():
        return head.encode(modality, x) if hasattr(head, "join") else head(x)


def prediction_block(head: torch.nn.Module, inputs: Sequence[torch.Tensor], *, fixed: dict[str, np.ndarray],
                     condition: Condition | str, affected: np.ndarray) -> dict[str, np.ndarray]:
    """The prediction rows of one head under one condition.

    Args:
        head: The head (eval mode).
        inputs: :func:`encode_input` of each modality it reads, in order.
        fixed: :func:`fold_test_columns`' columns.
        condition: The condition.
        affected: Per row, whether the condition changed the utterance's input.

    Returns:
        The block: ``fixed`` plus ``condition``, ``pred``, ``probs`` (float32 softmax) and ``affected``.
    """
    with torch.no_grad():
        logits = head.join(*inputs) if len(inputs) == 2 else inputs[0]
        p = torch.softmax(logits.float(), -1).numpy().astype(np.float32, copy=False)
    n = len(p)
    return {**fixed, "condition": np.full(n, str(condition), dtype=object), "pred": p.argmax(1).astype(np.int64),
            "probs": p, "affected": affected}


def _collect_texts(study: Study, texts: dict, cond: Condition, ids: Sequence[str], records: dict,
                   entry: Entry, variant: Any) -> None:
    """Rebuild the perturbed transcriptions from the stored records (for the examples tables).

    Called once per (condition, fold), whatever the number of models and seeds; a combined condition
    (``pitch+adj``) takes the texts of its text variant when they were already replayed.
    """
    mask = entry.provenance.get("mask_token", "[MASK]")
    text_variant = cond.variant(paper.TEXT)
    for i in ids:
        original = study.corpus.by_id(i).text or ""
        texts.setdefault((CLEAN, i), original)
        if (text_variant, i) in texts:
            texts[(str(cond), i)] = texts[(text_variant, i)]
            continue
        rec = records.get(i)
        if rec:
            try:
                texts[(str(cond), i)] = variant.apply(original, rec, mask_token=mask)
            except (FeatcacheError, KeyError, TypeError):  # a record that cannot be replayed: no example text
                continue


# ------------------------------------------------------------------------------------------------
# the weights that --layer weighted heads learned
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerWeightStat:
    """The layer weights one model's heads learned for one modality (``--layer weighted``), over folds and seeds.

    Attributes:
        model: The model.
        modality: ``text`` or ``audio``.
        layers: The hidden states weighed, in order.
        mean: Mean weight of each layer over the heads (they sum to 1).
        std: Sample std of each weight over the heads (NaN with one head).
        heads: How many heads (folds x seeds trained).
    """

    model: str
    modality: str
    layers: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    heads: int

    def to_json(self) -> dict[str, Any]:
        """The weights as JSON-able values (NaN as None; read back by :meth:`from_json`)."""
        return {"model": self.model, "modality": self.modality, "layers": list(self.layers), "mean": list(self.mean),
                "std": [None if math.isnan(v) else v for v in self.std], "heads": self.heads}

    @classmethod
    def from_json(cls, data: Any) -> LayerWeightStat:
        """The weights written by :meth:`to_json`.

        Raises:
            FeatcacheError: Not weights written by :meth:`to_json`.
        """
        try:
            return cls(str(data["model"]), str(data["modality"]), tuple(int(k) for k in data["layers"]),
                       tuple(float(v) for v in data["mean"]),
                       tuple(math.nan if v is None else float(v) for v in data["std"]), int(data["heads"]))
        except (KeyError, TypeError, ValueError) as e:
            raise FeatcacheError(f"layer weights {str(data)[:80]!r}: not weights written by featcache ({e})") from None


def layer_weights(study: Study, *, models: Sequence[str]) -> list[LayerWeightStat]:
    """The layer weights each model's trained heads learned, per modality, mean and std over folds and seeds
    (late and score: those of the weighted unimodal heads they fuse).

    Args:
        study: The study (nothing unless its heads are ``--layer weighted``).
        models: The models whose heads are read (those not trained are left out).

    Returns:
        One per (model, modality), in the order of ``models``.

    Raises:
        DamagedError: A head fails its checks (as in :func:`evaluate`).
    """
    from featcache.heads.layers import head_layer_weights

    if study.options.layer != "weighted":
        return []
    found: dict[tuple[str, str], list[list[float]]] = {}
    held: dict[tuple[str, str], tuple[int, ...]] = {}
    try:
        for m in models:
            for k in study.folds:
                for s in study.seeds:
                    if not study.head_trained(m, fold=k, seed=s):
                        continue
                    for mod, w in head_layer_weights(study.load_head(m, fold=k, seed=s)).items():
                        found.setdefault((m, mod), []).append(w)
                        if (m, mod) not in held:
                            held[m, mod] = _held_layers(study, mod, fold=k, seed=s, model=m, n=len(w))
    finally:
        study.close()
    out = []
    for (m, mod), ws in found.items():
        arr = np.asarray(ws, dtype=float)
        std = arr.std(axis=0, ddof=1) if len(arr) > 1 else np.full(arr.shape[1], math.nan)
        out.append(LayerWeightStat(m, mod, held[m, mod], tuple(map(float, arr.mean(axis=0))), tuple(map(float, std)),
                                   len(arr)))
    return out


def _held_layers(study: Study, modality: str, *, fold: int, seed: int, model: str, n: int) -> tuple[int, ...]:
    """The hidden states a head's ``n`` weights weigh: those its clean entry stores (0..n-1 when it is gone)."""
    try:
        entry = study.vectors(modality, fold=fold, seed=seed, model=model, variant=CLEAN, ids=[])[2]
        layers = tuple(entry.layers or ())
    except MissingEntries:
        layers = ()
    return layers if len(layers) == n else tuple(range(n))

