"""Error types whose messages are one line: what is wrong, where, and what to do."""

from __future__ import annotations


class FeatcacheError(Exception):
    """Base class for errors caused by user input; the CLI prints them as one line."""


class DataError(FeatcacheError):
    """A corpus file is missing, malformed or unreadable."""


class StoreError(FeatcacheError):
    """The feature store holds something unusable for the request."""


class StaleEntryError(StoreError):
    """A stored entry's provenance does not match what was asked for."""
