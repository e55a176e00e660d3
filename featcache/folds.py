"""Leave-one-session-out folds, or a corpus's own fixed split, with a dev set for early stopping.

Fold ``k`` (1-based) tests on the k-th session in natural order (``"1"`` .. ``"5"`` on IEMOCAP, a corpus's
published folds ``"Fold 1"`` ..) and trains on the others. A corpus with its own fixed split
(:attr:`~featcache.data.Corpus.splits`: MSP-Podcast, MELD, a manifest's ``split`` column) has one fold per test
partition (normally one, named after it: ``test``, ``Test1``), trained on its train partitions; its dev
partition is the dev set when it has one (``dev_mode`` ``corpus``). Otherwise the dev set is carved out of
the training sessions in one of three ways:

* ``stratified`` (default): a stratified, seeded share (10 %) of the training utterances;
* ``session``: one whole training session (the one after the test session, cyclically);
* ``speaker``: one training speaker, chosen with the seed.

A fold is a pure function of (corpus, fold index, dev mode, dev fraction, seed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np

from featcache.data import Corpus
from featcache.data.corpus import _natural_key, fold_noun
from featcache.errors import FeatcacheError
from featcache.paper import DEV_MODES, SPLITS

DevMode = Literal["stratified", "session", "speaker"]


@dataclass(frozen=True)
class Fold:
    """One leave-one-session-out split.

    Attributes:
        index: 1-based fold number.
        test_session: The held-out session.
        train: Training utterance ids (sorted).
        dev: Dev utterance ids for early stopping (sorted).
        test: Test utterance ids (sorted).
        dev_mode: How the dev set was chosen (``corpus``: the corpus's own dev partition).
        seed: Seed of the dev split.
    """

    index: int
    test_session: str
    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]
    dev_mode: str
    seed: int

    def split(self, name: str) -> tuple[str, ...]:
        """Ids of ``train``, ``dev``, ``test`` or ``all``."""
        if name == "all":
            return tuple(sorted(self.train + self.dev + self.test))
        if name not in SPLITS:
            raise FeatcacheError(f"unknown split {name!r}; use {', '.join(SPLITS[:-1])} or {SPLITS[-1]}")
        return getattr(self, name)

    @property
    def digest(self) -> str:
        """Hash of the exact membership of the three splits."""
        payload = json.dumps([self.train, self.dev, self.test]).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def check_fold(corpus: Corpus, k: int) -> None:
    """Check that the corpus has fold ``k``.

    Args:
        corpus: The corpus.
        k: 1-based fold index.

    Raises:
        FeatcacheError: Fewer than 2 sessions, or ``k`` out of range (the message lists the folds there are).
    """
    n = len(corpus.sessions)
    if corpus.splits is not None and n >= 1:
        if not 1 <= k <= n:
            raise FeatcacheError(f"--fold {k}: {corpus.name} has {n} fold{'s' if n > 1 else ''} (its test "
                                 f"partition{'s' if n > 1 else ''} {', '.join(corpus.sessions)}); pick "
                                 f"{'one of 1..' + str(n) if n > 1 else '1'}")
        return
    if n < 2:
        raise FeatcacheError(f"{corpus.name}: leave-one-session-out needs at least 2 sessions, found {n}")
    if not 1 <= k <= n:
        raise FeatcacheError(f"--fold {k}: {corpus.name} has folds 1..{n} (one per "
                             f"{fold_noun(corpus.sessions)[:-1]}); pick one of them")


def make_fold(
    corpus: Corpus,
    k: int,
    *,
    dev: DevMode = "stratified",
    dev_fraction: float = 0.1,
    seed: int = 0,
) -> Fold:
    """Build fold ``k`` of a corpus.

    Args:
        corpus: The corpus.
        k: 1-based fold index; tests on ``corpus.sessions[k - 1]``.
        dev: Dev-set mode (``stratified``, ``session`` or ``speaker``); unused when the corpus's fixed split has
            a dev partition (the fold's dev set is that partition).
        dev_fraction: Share of the training utterances for the stratified dev set.
        seed: Seed of the dev split.

    Returns:
        The fold.

    Raises:
        FeatcacheError: ``k`` out of range, too few sessions, or an unknown dev mode.
    """
    check_fold(corpus, k)
    sessions = corpus.sessions
    if dev not in DEV_MODES:
        raise FeatcacheError(f"dev (--dev {dev!r}): use one of {', '.join(DEV_MODES)}")
    test_session = sessions[k - 1]
    test = tuple(u.id for u in corpus.utterances if u.session == test_session)
    pool = [u for u in corpus.utterances if u.session != test_session]  # sorted by id already
    if corpus.splits is not None:  # a fixed split: train on the train partitions, stop on the corpus's dev set
        pool = [u for u in pool if corpus.splits.get(u.session) == "train"]
        given = tuple(u.id for u in corpus.utterances if corpus.splits.get(u.session) == "dev")
        if given:
            return Fold(index=k, test_session=test_session, train=tuple(u.id for u in pool), dev=given, test=test,
                        dev_mode="corpus", seed=seed)
    if dev == "stratified":
        if not 0.0 < dev_fraction < 1.0:
            raise FeatcacheError(f"dev_fraction (--dev-fraction {dev_fraction}): must be between 0 and 1")
        dev_ids = _stratified_dev(pool, fraction=dev_fraction, seed=seed)
    elif dev == "session":
        others = sorted({u.session for u in pool}, key=_natural_key)  # the training sessions, in natural order
        if len(others) < 2:
            raise FeatcacheError(f"{corpus.name}: --dev session needs at least 3 sessions")
        dev_session = others[(k - 1) % len(others)]
        dev_ids = {u.id for u in pool if u.session == dev_session}
    else:
        speakers = sorted({u.speaker for u in pool})
        if len(speakers) < 2:
            raise FeatcacheError(f"{corpus.name}: --dev speaker needs at least 2 training speakers")
        rng = np.random.default_rng([seed, k])
        dev_speaker = speakers[int(rng.integers(len(speakers)))]
        dev_ids = {u.id for u in pool if u.speaker == dev_speaker}
    train = tuple(u.id for u in pool if u.id not in dev_ids)
    return Fold(
        index=k,
        test_session=test_session,
        train=train,
        dev=tuple(sorted(dev_ids)),
        test=test,
        dev_mode=dev,
        seed=seed,
    )


def make_folds(corpus: Corpus, **kwargs: object) -> list[Fold]:
    """All folds of a corpus (one per session); keyword options as :func:`make_fold`."""
    return [make_fold(corpus, k, **kwargs) for k in range(1, len(corpus.sessions) + 1)]  # type: ignore[arg-type]


def _stratified_dev(pool: list, *, fraction: float, seed: int) -> set[str]:
    """A seeded, stratified sample of ``fraction`` of the pool (at least one per class that has >= 2)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = {}
    for u in pool:
        by_label.setdefault(u.label, []).append(u.id)
    chosen: set[str] = set()
    for label in sorted(by_label):
        ids = by_label[label]
        n = int(round(fraction * len(ids)))
        if n == 0 and len(ids) >= 2:
            n = 1
        perm = rng.permutation(len(ids))
        chosen.update(ids[i] for i in perm[:n])
    return chosen
