"""The HDF5 feature store (see :mod:`featcache.cache.store` for the layout and crash safety)."""

from featcache.cache.backends import BACKENDS, Block
from featcache.cache.store import (
    Entry,
    EntryInfo,
    EntryKey,
    EntryWriter,
    FeatureStore,
    canonical_json,
    default_root,
    digest,
    ids_digest,
)

__all__ = [
    "BACKENDS",
    "Block",
    "Entry",
    "EntryInfo",
    "EntryKey",
    "EntryWriter",
    "FeatureStore",
    "canonical_json",
    "default_root",
    "digest",
    "ids_digest",
]
