"""What entries are called: :class:`EntryKey`, the digests that name identities, the default store root
and the suffixes of an entry's side files (the layout: :mod:`featcache.cache.store`).

An entry's file name ends in a digest of its whole identity (:attr:`EntryKey.hash`), so another identity
names another file; :class:`~featcache.cache.layout.StoreLayout` names the store's folders, an
:class:`EntryKey` the entry's place in ``features/`` (:meth:`EntryKey.relpath`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featcache.cache.atomic import TMP_MARK
from featcache.cache.layout import FEATURES, slug

ENV_VAR = "FEATCACHE_CACHE"
DEFAULT_ROOT = Path("cache")
DAMAGED_SUFFIX = ".damaged"
"""Appended to a damaged entry's name when a writer moves it aside."""
SHARDS_SUFFIX = ".shards"
"""Appended to an entry's name for the folder of its shards (:meth:`~featcache.cache.FeatureStore.shard_writer`)."""


def default_root() -> Path:
    """The store root: ``$FEATCACHE_CACHE`` if set, else ``./cache``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_ROOT)


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace: the form that identities are hashed in."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: object, n: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def ids_digest(ids: Sequence[str]) -> str:
    """Hash of an ordered list of utterance ids."""
    return digest(list(ids))


@dataclass(frozen=True)
class EntryKey:
    """Names one entry.

    Attributes:
        run: Backbone run name (``text-minilm-frozen``); readable, not unique on its own.
        fold: Fold index, or None for entries shared by all folds (frozen backbones).
        variant: Canonical variant spec (``clean``, ``adj``, ``noise:std=0.1``).
        identity: Everything else that changes the numbers (JSON-serialisable).
    """

    run: str
    fold: int | None
    variant: str
    identity: dict = field(default_factory=dict)

    @property
    def full_identity(self) -> dict:
        return {"run": self.run, "fold": self.fold, "variant": self.variant, **self.identity}

    @property
    def hash(self) -> str:
        return digest(self.full_identity, 12)

    @property
    def fold_dir(self) -> str:
        return "shared" if self.fold is None else f"fold-{self.fold}"

    def relpath(self) -> Path:
        return Path(FEATURES) / slug(self.run) / self.fold_dir / f"{slug(self.variant)}-{self.hash}"

    def __str__(self) -> str:
        return f"{self.run}/{self.fold_dir}/{self.variant}"



def _is_tmp_name(name: str) -> bool:
    """Whether a file name is a temporary one (:data:`TMP_MARK`, or the ``.tmp`` suffix of older versions)."""
    return TMP_MARK in name or name.endswith(".tmp")


def _checksum(ids: Sequence[str], vectors: np.ndarray) -> str:
    """The SHA-256 of ids and float32 vectors that every entry stores as ``checksum`` (the only check of
    entries older than the integrity records; :mod:`featcache.cache.integrity`)."""
    h = hashlib.sha256()
    h.update("\n".join(ids).encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return h.hexdigest()
