"""Corpus specs: ``iemocap:DIR``, ``manifest:FILE``, ``emobox:DIR[?audio=ROOT]``, ``msp-podcast:DIR[?test=SET]``,
``meld:DIR``, ``ravdess:DIR``, ``crema-d:DIR`` or a bare path, and the ``--merge`` map, to a corpus."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from featcache.data.corpus import PAPER_LABELS, Corpus
from featcache.data.emobox import read_emobox, split_emobox_spec
from featcache.data.filenames import read_crema_d, read_ravdess
from featcache.data.iemocap import read_iemocap
from featcache.data.manifest import read_manifest
from featcache.data.meld import read_meld
from featcache.data.msp_podcast import read_msp_podcast, split_msp_spec
from featcache.errors import DataError

#: The corpus kinds a spec may name before its colon, each with its form.
KINDS: dict[str, str] = {"iemocap": "iemocap:DIR", "manifest": "manifest:FILE.csv|.jsonl",
                         "emobox": "emobox:DIR[?audio=ROOT]", "msp-podcast": "msp-podcast:DIR[?test=Test1]",
                         "meld": "meld:DIR", "ravdess": "ravdess:DIR", "crema-d": "crema-d:DIR"}

#: What reads as a kind before a spec's colon: a word of two or more characters (``C:`` is a drive, ``./a:b``
#: a path).
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9_+.-]*[A-Za-z0-9]")


def parse_merge(spec: str | None) -> dict[str, str]:
    """Parse ``exc=hap,sur=hap`` into a merge map.

    Whitespace around each label is stripped; case is kept.

    Args:
        spec: The ``--merge`` text; None or ``''`` is no merge.

    Returns:
        Raw label -> kept label.

    Raises:
        DataError: An item is not ``SRC=DST``, or one of its labels is empty (``ang=``, ``=hap``).
    """
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise DataError(f"merge (--merge): {item!r} is not SRC=DST (e.g. exc=hap)")
        a, b = (s.strip() for s in item.split("=", 1))
        if not a or not b:
            side = "source (before '=')" if not a else "target (after '=')"
            raise DataError(f"merge (--merge): {item!r} has an empty {side}; name both labels, SRC=DST (e.g. exc=hap)")
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
        spec: ``iemocap:DIR``, ``manifest:FILE``, ``emobox:DIR`` (an EmoBox dataset folder; ``?audio=ROOT``
            names the folder its wav paths start from), ``msp-podcast:DIR`` (a release; ``?test=Test2`` tests on
            another test set), ``meld:DIR`` (``MELD.Raw``), ``ravdess:DIR``, ``crema-d:DIR`` or a bare path (a
            directory is read as IEMOCAP, or as EmoBox, MSP-Podcast or MELD when it holds a ``label_map.json``,
            ``Labels/labels_consensus.csv`` or ``train_sent_emo.csv``; a ``.csv``/``.jsonl`` file as a manifest).
            A bare path
            may hold a colon when the path exists or what comes before its first colon is no word (``./a:b``,
            ``C:\\data``).
        labels: Labels to keep (default: the paper's four for IEMOCAP, ang, sad, hap and neu for MSP-Podcast,
            MELD, RAVDESS and CREMA-D, every label for a manifest or EmoBox);
            whitespace around each is stripped, case is kept.
        merge: Raw label -> kept label (default: ``exc=hap`` for IEMOCAP, none for a manifest or EmoBox, whose
            labels are its label map's classes); a given source label the corpus has no row of is named in one
            warning line.

    Returns:
        The corpus.

    Raises:
        DataError: Unknown source kind (``foo:DIR``) or any problem reading it.
    """
    kind, sep, rest = spec.partition(":")
    if rest and kind in KINDS:
        pass
    elif sep and _KIND.fullmatch(kind) and kind not in KINDS and not Path(spec).expanduser().exists():
        known = ", ".join(f"{k} ({form})" for k, form in KINDS.items())
        raise DataError(f"corpus (--corpus {spec!r}): unknown corpus kind {kind!r}; the known kinds are {known}")
    else:
        path = Path(spec).expanduser()
        kind = "iemocap" if path.is_dir() or not path.suffix else "manifest"
        marks = {"emobox": "label_map.json", "msp-podcast": "Labels/labels_consensus.csv", "meld": "train_sent_emo.csv"}
        kind = next((k for k, mark in marks.items() if (path / mark).is_file()), kind)
        rest = spec
    if kind == "emobox":
        folder, audio_root = split_emobox_spec(rest)
        return read_emobox(folder, audio_root=audio_root, labels=tuple(labels) if labels else None, merge=merge,
                           name=f"emobox:{rest}")
    if kind == "msp-podcast":
        folder, tests = split_msp_spec(rest)
        return read_msp_podcast(folder, labels=tuple(labels) if labels else None, merge=merge, tests=tests,
                                name=f"msp-podcast:{rest}")
    if kind in ("meld", "ravdess", "crema-d"):
        reader = {"meld": read_meld, "ravdess": read_ravdess, "crema-d": read_crema_d}[kind]
        return reader(rest, labels=tuple(labels) if labels else None, merge=merge, name=f"{kind}:{rest}")
    if kind == "iemocap":
        return read_iemocap(
            rest,
            labels=tuple(labels) if labels else PAPER_LABELS,
            merge=dict(merge) if merge is not None else None,  # None: the paper's merge (never warned about)
            name=f"iemocap:{rest}",
        )
    return read_manifest(rest, labels=tuple(labels) if labels else None, merge=merge, name=f"manifest:{rest}")
