"""The inputs of a fine-tuning run: the split datasets (:class:`_Items`, prepared in DataLoader workers, or
:class:`_Prepared`, in memory), their collation and the length-bucketed loaders (:func:`_loader`).

DataLoader workers start from a fresh process that preloads this module by name and unpickles
:class:`_Items` and :class:`_Collate` from it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from featcache.buckets import LengthBatchSampler, expected_length
from featcache.data import Corpus, load_audio
from featcache.workers import GuardedLoader, fresh_context, make_loader


class _Items(Dataset):
    """Prepared clean inputs of one split (decoding and tokenizing run in workers).

    It holds the split's utterances and the encoders' input sides (:class:`~featcache.backbones.encoders.TextInputs`,
    :class:`~featcache.backbones.encoders.AudioInputs`), not the corpus or the models, so that it pickles to a
    fresh worker process in milliseconds.
    """

    def __init__(self, corpus: Corpus, ids: list[str], encoders: dict[str, Any]) -> None:
        self.utterances = [corpus.by_id(i) for i in ids]
        self.labels = [corpus.label_index(u.label) for u in self.utterances]
        self.inputs = {m: enc.inputs for m, enc in encoders.items()}

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int) -> dict[str, Any]:
        u = self.utterances[i]
        item: dict[str, Any] = {"label": self.labels[i]}
        if "text" in self.inputs:
            item["text"] = self.inputs["text"].prepare(u.text or "")
        if "audio" in self.inputs:
            item["audio"] = self.inputs["audio"].prepare(load_audio(u.audio))  # type: ignore[arg-type]
        return item


class _Collate:
    """Stack prepared items into ``{"inputs": {modality: tensors}, "label": tensor}`` (a class, so that it
    pickles to worker processes)."""

    def __init__(self, encoders: dict[str, Any]) -> None:
        self.inputs = {m: enc.inputs for m, enc in encoders.items()}

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "inputs": {m: inputs.collate([it[m] for it in items]) for m, inputs in self.inputs.items()},
            "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }


def _lengths(corpus: Corpus, ids: list[str], modalities: tuple[str, ...]) -> list[float]:
    """Expected input lengths for the sampler: audio when the model hears it (it costs most), else text."""
    modality = "audio" if "audio" in modalities else "text"
    return [expected_length(corpus.by_id(i), modality) for i in ids]


class _Prepared(Dataset):
    """Items prepared once, kept in memory (a text-only split: token ids are a few hundred bytes each)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def _loader(corpus: Corpus, ids: list[str], encoders: dict[str, Any], *, batch_size: int, shuffle: bool,
            generator: torch.Generator | None, num_workers: int, pin_memory: bool) -> GuardedLoader:
    """A length-bucketed loader over one split (see :class:`~featcache.buckets.LengthBatchSampler`).

    A split without audio is tokenised once, here, and served from memory without workers: handing a
    batch over from a worker costs the training process as much CPU as tokenising it (measured: 0.10 s
    per epoch of 54 batches either way, plus 0.3 s in the worker), so per-epoch preparation in workers
    only pays for audio (decoding, resampling, cutting). Audio workers start from a fresh process
    (:func:`~featcache.workers.fresh_context`), not as forks of this one: a forked worker shares the
    training process's memory copy-on-write for the whole epoch, so every page the training step
    writes is copied once per epoch (measured: 10 % slower audio epochs on a CPU).
    """
    sampler = LengthBatchSampler(_lengths(corpus, ids, tuple(encoders)), batch_size=batch_size, shuffle=shuffle,
                                 generator=generator)
    dataset: Dataset = _Items(corpus, ids, encoders)
    if "audio" not in encoders:
        dataset, num_workers = _Prepared([dataset[i] for i in range(len(ids))]), 0
    kw: dict[str, Any] = {}
    if num_workers:
        modules = [type(getattr(enc.inputs, a)).__module__ for enc in encoders.values()
                   for a in ("tokenizer", "feature_extractor") if hasattr(enc.inputs, a)]
        kw = {"prefetch_factor": 4, "multiprocessing_context": fresh_context(preload=[__name__, *modules])}
    return make_loader(dataset, num_workers=num_workers, batch_sampler=sampler,
                       collate_fn=_Collate(encoders), pin_memory=pin_memory, generator=generator, **kw)
