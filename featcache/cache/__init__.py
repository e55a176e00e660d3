"""The HDF5 feature store and everything else in its folder (see :mod:`featcache.cache.store` for the
layout and crash safety, :mod:`featcache.cache.layout` for the path names, :mod:`featcache.cache.atomic`
for crash-safe writes)."""

from featcache.cache.backends import BACKENDS, Block
from featcache.cache.layout import MODELS_ENV_VAR, StoreLayout, model_cache_root, slug
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
    "MODELS_ENV_VAR",
    "StoreLayout",
    "model_cache_root",
    "slug",
]
