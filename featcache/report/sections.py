"""The files a report's optional sections leave beside the saved predictions (``layers.json``,
``groups.json``), so that ``featcache report`` draws the same sections again: written, removed when a later
report has no such section (only a file featcache wrote), and read back, checked, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featcache.cache.atomic import atomic_write_json
from featcache.cache.integrity import read_json_object
from featcache.errors import FeatcacheError

__all__ = ["read_section", "write_section"]


def write_section(path: Path, fmt: str, data: dict[str, Any] | None) -> Path | None:
    """Write a section's inputs; without a section, remove the file an earlier report wrote.

    Args:
        path: The file (``layers.json``, ``groups.json``).
        fmt: Its ``format`` tag: only a file with this tag is ever removed (never a file of someone else's).
        data: The section's JSON-able values (with ``format`` set to ``fmt``), or None.

    Returns:
        The file written, or None.

    Raises:
        StoreError: The folder is read-only or the disk full (one line).
    """
    if data is not None:
        return atomic_write_json(path, data)
    old, problem = read_json_object(path)
    if path.is_file() and not problem and old.get("format") == fmt:
        path.unlink()
    return None


def read_section(path: str | Path, fmt: str, *, what: str, fix: str) -> dict[str, Any] | None:
    """A section file's values, or None when there is no such file.

    Args:
        path: The file.
        fmt: The ``format`` tag it must carry.
        what: What the file is, for the error (``layers``: "not a featcache layers file").
        fix: What to do about a file that does not read.

    Returns:
        The file's JSON object.

    Raises:
        FeatcacheError: The file does not read as a JSON object or carries another format (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        return None
    data, problem = read_json_object(path)
    if problem or data.get("format") != fmt:
        raise FeatcacheError(f"{path}: {problem or f'not a featcache {what} file'}; {fix}")
    return data
