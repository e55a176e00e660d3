"""Corpus specs: ``iemocap:DIR``, ``manifest:FILE`` or a bare path, and the ``--merge`` map, to a corpus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from featcache.data.corpus import PAPER_LABELS, PAPER_MERGE, Corpus
from featcache.data.iemocap import read_iemocap
from featcache.data.manifest import read_manifest
from featcache.errors import DataError


def parse_merge(spec: str | None) -> dict[str, str]:
    """Parse ``exc=hap,sur=hap`` into a merge map.

    Raises:
        DataError: An item is not ``SRC=DST``.
    """
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise DataError(f"merge (--merge): {item!r} is not SRC=DST (e.g. exc=hap)")
        a, b = (s.strip() for s in item.split("=", 1))
        out[a] = b
    return out


def load_corpus(
    spec: str,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
) -> Corpus:
    """Load a corpus from a spec string.

    Args:
        spec: ``iemocap:DIR``, ``manifest:FILE`` or a bare path (a directory is read as IEMOCAP, a
            ``.csv``/``.jsonl`` file as a manifest).
        labels: Labels to keep (default: the paper's four for IEMOCAP, every label for a manifest).
        merge: Raw label -> kept label (default: ``exc=hap`` for IEMOCAP, none for a manifest).

    Returns:
        The corpus.

    Raises:
        DataError: Unknown source kind or any problem reading it.
    """
    kind, _, rest = spec.partition(":")
    if not rest or kind not in ("iemocap", "manifest"):
        kind, rest = ("iemocap" if Path(spec).expanduser().is_dir() or not Path(spec).suffix else "manifest"), spec
    if kind == "iemocap":
        return read_iemocap(
            rest,
            labels=tuple(labels) if labels else PAPER_LABELS,
            merge=dict(merge) if merge is not None else PAPER_MERGE,
            name=f"iemocap:{rest}",
        )
    return read_manifest(rest, labels=tuple(labels) if labels else None, merge=merge, name=f"manifest:{rest}")
