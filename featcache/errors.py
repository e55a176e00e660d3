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


class DamagedError(StoreError):
    """A stored file was changed or cut after it was written (its size or a checksum disagrees, or it no
    longer parses): a feature entry, a head or a fine-tuning run. It is never used.

    Args:
        path: The damaged file.
        problem: What is wrong (``truncated: 100 of 2048 bytes``, ``checksum mismatch ...``).
        what: What the file belongs to, as the message says it (``entry``, ``head``, ``fine-tuning run``).
        fix: What to do; default: extract the entry again.

    Attributes:
        path: The damaged file.
        problem: What is wrong.
    """

    def __init__(self, path: object, problem: str, *, what: str = "entry", fix: str | None = None) -> None:
        self.path = path
        self.problem = problem
        fix = fix or "extract it again: `featcache extract` sets the damaged file aside and writes it anew"
        super().__init__(f"{path}: damaged {what} ({problem}); {fix}")


class MissingEntries(FeatcacheError):
    """Some vectors, heads or fine-tuning runs a study needs are not in the store; the message lists the
    commands that make them."""
