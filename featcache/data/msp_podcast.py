"""The MSP-Podcast reader: the release's consensus labels, its partitions as a fixed split, its transcripts.

The layout, as the release ships it::

    MSP-Podcast/
        Labels/labels_consensus.csv      FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
        Audios/<FileName>                the clips (.wav)
        Transcripts/<stem>.txt           one transcript per clip, where the release has them

``EmoClass`` is one letter (A anger, S sad, H happy, U surprise, F fear, D disgust, C contempt, N neutral,
O other, X no agreement), read as featcache's label names (:data:`CLASSES`: ``ang``, ``sad``, ``hap``, ...).
``Split_Set`` is ``Train``, ``Development``, ``Test1``, ``Test2`` (``Test3`` in later releases): the corpus's
fixed split, trained on Train, stopped early on Development and tested on one test set (``Test1`` unless the
spec names others: ``msp-podcast:DIR?test=Test2``, or ``?test=Test1,Test2`` for one fold each).

Speakers: ``SpkrID`` where the release knows it; an ``Unknown`` speaker is no speaker (each such clip counts
as its own, and is in no ``speaker`` group). ``Gender`` gives the ``sex`` group (``F``, ``M``).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from featcache.data.audio import audio_path_error
from featcache.data.corpus import (
    Corpus,
    Utterance,
    _clean_merge,
    _label_set,
    _make_corpus,
    _natural_key,
    _select_labels,
    _spec_options,
)
from featcache.data.manifest import _manifest_text
from featcache.errors import DataError

log = logging.getLogger("featcache.data")

#: ``EmoClass`` letter -> featcache's label name (IEMOCAP's names where IEMOCAP has the class).
CLASSES: dict[str, str] = {"A": "ang", "S": "sad", "H": "hap", "U": "sur", "F": "fea", "D": "dis", "C": "con",
                           "N": "neu", "O": "oth", "X": "xxx"}

#: The classes kept by default: the four of the usual MSP-Podcast setup (the paper's, with neutral for
#: frustration, which MSP-Podcast does not annotate).
DEFAULT_LABELS: tuple[str, ...] = ("ang", "sad", "hap", "neu")

#: ``Split_Set`` -> role; every other value that starts with ``Test`` is a test set.
PARTITIONS: dict[str, str] = {"Train": "train", "Development": "dev"}

#: The options an ``msp-podcast:`` spec takes after ``?``, each with its form.
SPEC_OPTIONS: dict[str, str] = {"test": "test=Test1[,Test2] (the test set or sets, one fold each)"}

_COLUMNS = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")
_UNKNOWN = {"", "unknown", "nan", "none"}


def split_msp_spec(text: str) -> tuple[str, tuple[str, ...]]:
    """Split the part of an ``msp-podcast:`` spec after its colon into the release folder and its test sets.

    Args:
        text: ``DIR`` or ``DIR?test=Test2`` (``?test=Test1,Test2``: one fold per test set).

    Returns:
        (DIR, test sets), ``("Test1",)`` when the spec names none.

    Raises:
        DataError: An unknown option, or one without a value.
    """
    folder, options = _spec_options(text, kind="msp-podcast", options=SPEC_OPTIONS)
    tests = tuple(t.strip() for t in options.get("test", "Test1").split(",") if t.strip())
    return folder, tests or ("Test1",)


def read_msp_podcast(
    root: str | Path,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    tests: Sequence[str] = ("Test1",),
    name: str | None = None,
) -> Corpus:
    """Read an MSP-Podcast release (see the module's docstring for the layout).

    Args:
        root: The release folder (holding ``Labels/`` and ``Audios/``).
        labels: Classes to keep, in class-index order (featcache's names: ``ang``, ``sad``, ``hap``, ``neu``,
            ``sur``, ``fea``, ``dis``, ``con``, ``oth``, ``xxx``); default :data:`DEFAULT_LABELS`.
        merge: Class -> kept class (``con=ang``).
        tests: The test sets, each one fold (``Test1``); clips of the other test sets are left out.
        name: Name recorded in the corpus; default ``msp-podcast:ROOT``.

    Returns:
        The corpus, sorted by id (the clip's stem); each utterance's session is its ``Split_Set``, the corpus's
        :attr:`~Corpus.splits` say which is train, dev and test. Text from ``Transcripts/`` when the release
        has that folder (clips without a transcript are then left out, with one warning line), else none.

    Raises:
        DataError: A missing folder, file or column, an unknown ``EmoClass`` letter or ``Split_Set``, a clip
            listed twice, a test set no clip is in, a missing clip.
    """
    root = Path(root).expanduser()
    labels_csv = root / "Labels" / "labels_consensus.csv"
    if not root.is_dir():
        raise DataError(f"{root}: MSP-Podcast release folder not found; pass the folder holding Labels/ and Audios/")
    if not labels_csv.is_file():
        raise DataError(f"{labels_csv}: not found; an MSP-Podcast release has Labels/labels_consensus.csv "
                        "(pass the release folder)")
    rows = _rows(labels_csv)
    seen_sets = {r["Split_Set"] for _w, r in rows}
    for t in tests:
        if t not in seen_sets:
            raise DataError(f"{labels_csv}: no clip is in test set {t!r} (its Split_Set values: "
                            f"{', '.join(sorted(seen_sets, key=_natural_key))}); name one of them with ?test=")
    vocabulary = {CLASSES[r["EmoClass"]] for _w, r in rows}
    merge = _clean_merge(merge or {})
    kept = [lab for lab in DEFAULT_LABELS if lab in vocabulary or lab in merge.values()]
    labels = _label_set(labels, merge, vocabulary, default=kept, source=str(labels_csv))
    transcripts = root / "Transcripts"
    audios = root / "Audios"
    utts: list[Utterance] = []
    untranscribed: list[str] = []
    left_out = 0
    for where, row in rows:
        lab = _select_labels(CLASSES[row["EmoClass"]], labels=labels, merge=merge)
        if lab is None:
            continue
        part = row["Split_Set"]
        if part not in PARTITIONS and part not in tests:
            left_out += 1
            continue
        stem = Path(row["FileName"]).stem
        text = None
        if transcripts.is_dir():
            tfile = transcripts / f"{stem}.txt"
            if not tfile.is_file():
                untranscribed.append(stem)
                continue
            text = " ".join(_manifest_text(tfile).split())
        audio = _clip(audios / row["FileName"], where=where)
        speaker = row["SpkrID"] if row["SpkrID"].lower() not in _UNKNOWN else None
        sex = {"male": "M", "female": "F", "m": "M", "f": "F"}.get(row["Gender"].lower())
        groups = {**({"sex": sex} if sex else {}), **({"speaker": speaker} if speaker else {})}
        utts.append(Utterance(id=stem, session=part, speaker=speaker or f"Unknown:{stem}", label=lab, text=text,
                              audio=audio, duration=None, groups=groups))
    if left_out:
        log.info("%s: %d clip%s of the other test sets left out (tested on %s)", labels_csv, left_out,
                 "" if left_out == 1 else "s", ", ".join(tests))
    if untranscribed:
        log.warning("%s: %d clip%s without a transcript left out (e.g. %s.txt); a text study needs one per clip",
                    transcripts, len(untranscribed), "" if len(untranscribed) == 1 else "s", untranscribed[0])
    splits = {**PARTITIONS, **{t: "test" for t in tests}}
    return _make_corpus(name or f"msp-podcast:{root}", root, utts, labels, splits=splits)


def _rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    """("file:line", row) for each row of ``labels_consensus.csv``, its fields stripped.

    Raises:
        DataError: A missing column, an unknown ``EmoClass`` letter or ``Split_Set``, a row without a file name,
            a file listed twice.
    """
    reader = csv.DictReader(io.StringIO(_manifest_text(path), newline=""))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the release's labels_consensus.csv has "
                        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set")
    out = []
    seen: dict[str, str] = {}
    for row in reader:
        where = f"{path}:{reader.line_num}"
        row = {k: (v or "").strip() for k, v in row.items() if k is not None}
        if not row["FileName"]:
            raise DataError(f"{where}: no FileName; restore the file from the release")
        if row["FileName"] in seen:
            raise DataError(f"{where}: {row['FileName']} listed twice (first at line {seen[row['FileName']]}); "
                            "restore the file from the release")
        seen[row["FileName"]] = str(reader.line_num)
        if row["EmoClass"] not in CLASSES:
            raise DataError(f"{where}: EmoClass {row['EmoClass']!r} of {row['FileName']} is none of "
                            f"{', '.join(CLASSES)}; restore the file from the release")
        part = row["Split_Set"]
        if part not in PARTITIONS and not part.startswith("Test"):
            raise DataError(f"{where}: Split_Set {part!r} of {row['FileName']} is none of Train, Development, "
                            "Test1, Test2, ...; restore the file from the release")
        out.append((where, row))
    return out


def _clip(listed: Path, *, where: str) -> Path:
    """A clip's path, checked to be a readable file.

    Raises:
        DataError: Missing, a folder or a symbolic link loop.
    """
    listed = Path(os.path.abspath(listed))
    problem = audio_path_error(listed, listed=where)
    if problem is not None:
        raise problem
    if not listed.is_file():
        raise DataError(f"{listed}: audio file missing (listed in {where}); the clips belong in the release's "
                        "Audios/ folder")
    return listed.resolve()
