from __future__ import annotations

from collections import Counter

import pytest

import fake_iemocap
from featcache.data import read_iemocap
from featcache.errors import FeatcacheError
from featcache.folds import make_fold, make_folds


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    counts = {lab: [20, 18, 22, 19, 21] for lab in ("ang", "sad", "hap", "fru")}
    return read_iemocap(fake_iemocap.build(tmp_path_factory.mktemp("c") / "I", counts))


def test_leave_one_session_out(corpus) -> None:  # type: ignore[no-untyped-def]
    folds = make_folds(corpus)
    assert [f.test_session for f in folds] == ["1", "2", "3", "4", "5"]
    all_ids = {u.id for u in corpus}
    for f in folds:
        train, dev, test = set(f.train), set(f.dev), set(f.test)
        assert not (train & dev) and not (train & test) and not (dev & test)
        assert train | dev | test == all_ids
        assert {corpus.by_id(i).session for i in test} == {f.test_session}
        assert f.test_session not in {corpus.by_id(i).session for i in train | dev}
    # each utterance is tested exactly once
    assert Counter(i for f in folds for i in f.test) == Counter(all_ids)


def test_stratified_dev_is_seeded_and_stratified(corpus) -> None:  # type: ignore[no-untyped-def]
    f = make_fold(corpus, 2, seed=7)
    assert f == make_fold(corpus, 2, seed=7)  # reproducible from (corpus, seed)
    assert f.dev != make_fold(corpus, 2, seed=8).dev
    pool = len(f.train) + len(f.dev)
    assert abs(len(f.dev) - 0.1 * pool) <= 4
    per_label = Counter(corpus.by_id(i).label for i in f.dev)
    assert set(per_label) == set(corpus.labels) and max(per_label.values()) - min(per_label.values()) <= 1


def test_session_and_speaker_dev(corpus) -> None:  # type: ignore[no-untyped-def]
    f = make_fold(corpus, 1, dev="session")
    assert {corpus.by_id(i).session for i in f.dev} == {"2"}
    g = make_fold(corpus, 3, dev="speaker", seed=1)
    assert len({corpus.by_id(i).speaker for i in g.dev}) == 1
    assert {corpus.by_id(i).speaker for i in g.dev}.isdisjoint({corpus.by_id(i).speaker for i in g.train})


def test_bad_fold(corpus) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FeatcacheError, match="has folds 1..5"):
        make_fold(corpus, 6)
