"""Length bucketing: the one home of how utterances are ordered and batched by input length.

Transformer encoders cost what their longest input in a batch costs, so both extraction and fine-tuning
batch utterances of similar length together. Both take an utterance's length from the corpus listing
before anything is decoded (:func:`expected_length`: characters of the transcript, seconds of audio),
so the order is known before the DataLoader workers start:

* extraction (:mod:`featcache.extract`) walks the utterances in :func:`length_order` and
  :func:`iter_batches` groups the prepared items of equal bucket length (the encoder's grid) as they
  arrive; items of one bucket share their padded length, so a vector depends on its batch-mates only
  through how many there are (the products' rounding, up to about 2e-6 in float32: the batch size,
  :meth:`featcache.presets.Preset.extraction_batch_size`), and nothing else matters there;
* fine-tuning (:mod:`featcache.finetune`) draws its batches with :class:`LengthBatchSampler`: each epoch
  the training utterances are shuffled with the run's generator, cut into pools of
  ``pool_batches * batch_size``, each pool is sorted by length (the extraction order, restricted to
  the pool) and cut into batches, and the batches are shuffled. Every epoch sees other batches in
  another order, all drawn from the generator that :func:`featcache.train.fit` seeds and checkpoints,
  so a run is deterministic per epoch and resumes exactly. Without shuffling (dev evaluation) the
  batches follow :func:`length_order`'s order over the whole split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from featcache.data import Corpus, Utterance

POOL_BATCHES = 50
"""Batches per pool of :class:`LengthBatchSampler`: a pool of 50 batches sorted by length pads little
(its neighbours in length order are close) while keeping batches random across epochs."""


def expected_length(utterance: Utterance, modality: str) -> float:
    """An utterance's input length as the corpus listing gives it, before anything is read.

    Args:
        utterance: The utterance.
        modality: ``text`` (characters of the transcript) or ``audio`` (seconds; the wav's size in bytes
            when the listing has no duration).

    Returns:
        The length (only compared with the lengths of the same modality).
    """
    if modality == "text":
        return float(len(utterance.text or ""))
    if utterance.duration is not None:
        return float(utterance.duration)
    return float(utterance.audio.stat().st_size) if utterance.audio is not None else 0.0


def length_order(corpus: Corpus, ids: Sequence[str], modality: str) -> list[str]:
    """Ids sorted by expected input length (then id), so equal-length buckets fill together.

    Args:
        corpus: The corpus the ids belong to.
        ids: Utterance ids.
        modality: Whose length counts (``text`` or ``audio``).

    Returns:
        The ids, shortest first.
    """
    return sorted(ids, key=lambda uid: (expected_length(corpus.by_id(uid), modality), uid))


def iter_batches(
    items: Iterator[dict[str, Any]], *, batch_size: int, max_pending: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Group prepared items into batches of equal bucket length (at most ``batch_size`` each).

    A bucket is handed out when it is full, or, when more than ``max_pending`` items (default
    ``2 * batch_size``) wait in partly filled buckets, the bucket that grew least recently goes first:
    items arrive in length order, so a passed bucket rarely grows again, and the encoder need not
    wait for the whole loader. Memory is bounded by ``max_pending + batch_size`` items.

    Args:
        items: Prepared items, each with its bucket length under ``"L"``, in length order.
        batch_size: Most items per batch.
        max_pending: Most items waiting in partly filled buckets (default ``2 * batch_size``).

    Yields:
        Lists of items of one bucket length.
    """
    limit = 2 * batch_size if max_pending is None else max_pending
    buckets: dict[int, list[dict[str, Any]]] = {}
    last_seen: dict[int, int] = {}
    waiting = 0
    for n, it in enumerate(items):
        L = int(it["L"])
        b = buckets.setdefault(L, [])
        b.append(it)
        last_seen[L] = n
        waiting += 1
        if len(b) >= batch_size:
            waiting -= len(b)
            del last_seen[L]
            yield buckets.pop(L)
            continue
        while waiting > limit:
            oldest = min(last_seen, key=last_seen.__getitem__)
            del last_seen[oldest]
            out = buckets.pop(oldest)
            waiting -= len(out)
            yield out
    for L in sorted(buckets):
        yield buckets[L]


class LengthBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices of similar length (a DataLoader ``batch_sampler``).

    With ``shuffle`` each iteration (epoch) draws a permutation from ``generator``, sorts each pool of
    ``pool_batches * batch_size`` indices by length, cuts the pools into batches and draws the order of
    the batches; without it, the batches are the indices sorted by length (then index), in that order.
    Every batch holds ``batch_size`` indices except at most one per epoch.

    Args:
        lengths: One expected length per dataset index (:func:`expected_length`).
        batch_size: Indices per batch.
        shuffle: Draw new batches and a new order every epoch (training).
        generator: The ``torch.Generator`` every draw comes from (needed with ``shuffle``; :func:`featcache.train.fit`
            re-seeds it with the run's seed and checkpoints it with every epoch).
        pool_batches: Batches per pool (see :data:`POOL_BATCHES`).

    Raises:
        ValueError: A batch size or pool size below 1, no lengths, or ``shuffle`` without a generator.
    """

    def __init__(self, lengths: Sequence[float], *, batch_size: int, shuffle: bool,
                 generator: torch.Generator | None = None, pool_batches: int = POOL_BATCHES) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(pool_batches, bool) or not isinstance(pool_batches, int) or pool_batches < 1:
            raise ValueError(f"pool_batches must be a positive integer, got {pool_batches!r}")
        if not lengths:
            raise ValueError("a length-bucketed loader needs at least one utterance")
        if shuffle and generator is None:
            raise ValueError("a shuffling LengthBatchSampler needs a torch.Generator")
        self.lengths = [float(x) for x in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.pool_batches = pool_batches

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def _sorted(self, indices: Sequence[int]) -> list[int]:
        return sorted(indices, key=lambda i: (self.lengths[i], i))

    def _cut(self, indices: Sequence[int]) -> list[list[int]]:
        return [list(indices[i:i + self.batch_size]) for i in range(0, len(indices), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            yield from self._cut(self._sorted(range(n)))
            return
        perm = torch.randperm(n, generator=self.generator).tolist()
        pool = self.pool_batches * self.batch_size
        batches = [b for start in range(0, n, pool) for b in self._cut(self._sorted(perm[start:start + pool]))]
        for k in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[k]
