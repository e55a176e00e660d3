"""Length bucketing (featcache.buckets): one order for extraction and dev batches, seeded pools for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featcache.buckets import LengthBatchSampler, length_order
from featcache.data import read_manifest

LENGTHS = np.random.default_rng(0).lognormal(1.3, 0.65, 203).round(2).tolist()  # IEMOCAP-like seconds


def _epochs(sampler: LengthBatchSampler, n: int) -> list[list[list[int]]]:
    return [list(sampler) for _ in range(n)]


def test_training_batches_are_seeded_new_every_epoch_and_cover_every_index_once() -> None:
    gen = torch.Generator().manual_seed(7)
    sampler = LengthBatchSampler(LENGTHS, batch_size=8, shuffle=True, generator=gen, pool_batches=4)
    epochs = _epochs(sampler, 3)
    for batches in epochs:
        assert len(batches) == len(sampler) == 26
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert sorted(len(b) for b in batches)[1:] == [8] * 25  # one short batch at most
    as_sets = [{frozenset(b) for b in batches} for batches in epochs]
    assert as_sets[0] != as_sets[1] != as_sets[2]  # other batches, not only another order
    gen.manual_seed(7)
    assert _epochs(sampler, 3) == epochs  # the seed decides everything


def test_a_restored_generator_resumes_the_next_epoch_exactly() -> None:
    gen = torch.Generator().manual_seed(3)
    sampler = LengthBatchSampler(LENGTHS, batch_size=8, shuffle=True, generator=gen)
    first = list(sampler)
    saved = gen.get_state()  # what fit checkpoints after an epoch
    second = list(sampler)
    other = torch.Generator()
    other.set_state(saved)
    assert list(LengthBatchSampler(LENGTHS, batch_size=8, shuffle=True, generator=other)) == second != first


def test_batches_pad_far_less_than_random_ones() -> None:
    lengths = np.asarray(LENGTHS)
    gen = torch.Generator().manual_seed(0)
    sampler = LengthBatchSampler(LENGTHS, batch_size=8, shuffle=True, generator=gen, pool_batches=8)

    def padded(batches: list[list[int]]) -> float:
        return sum(lengths[b].max() * len(b) for b in batches) / lengths.sum()

    rand = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [rand[i:i + 8] for i in range(0, len(rand), 8)]
    assert padded(list(sampler)) < 1.2 and padded(random_batches) > 1.5
    for b in sampler:  # within a batch, lengths are neighbours in its pool's sorted order
        assert lengths[b].max() - lengths[b].min() <= np.ptp(lengths) / 2


def test_without_shuffling_batches_follow_the_extraction_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    texts = ["a b c d e f", "x", "hello there", "hm", "a somewhat longer sentence here", "ok ok", "yes"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,label,session,text\n" + "".join(f"u{i},ang,1,{t}\n" for i, t in enumerate(texts)))
    corpus = read_manifest(manifest)
    ids = [u.id for u in corpus.utterances]
    sampler = LengthBatchSampler([len(t) for t in texts], batch_size=3, shuffle=False)
    assert [ids[i] for b in sampler for i in b] == length_order(corpus, ids, "text")
    assert [len(b) for b in sampler] == [3, 3, 1]


def test_bad_sampler_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        LengthBatchSampler([1.0], batch_size=2, shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        LengthBatchSampler([1.0], batch_size=0, shuffle=False)
    with pytest.raises(ValueError, match="at least one"):
        LengthBatchSampler([], batch_size=2, shuffle=False)
