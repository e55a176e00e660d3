"""The manifest reader: a CSV or JSONL file (``id, label`` and ``session``, ``fold`` or ``split``, optional
``text``, ``audio``, ``speaker``, ``duration`` and ``group:NAME`` columns) for any corpus other than IEMOCAP.

Its folds: ``session`` leaves one session out; ``fold`` (K-fold, alone) makes folds ``Fold 1`` .. ``Fold K``,
fold k testing on the rows of fold k; ``split`` (``train``, ``dev``, ``test``) is a fixed split, one fold
named ``test``.

Every problem with the input raises :class:`~featcache.errors.DataError` with a one-line message that
names the file (and line) and what to do about it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from featcache.data.audio import audio_path_error
from featcache.data.corpus import (
    GROUP_PREFIX,
    Corpus,
    Utterance,
    _clean_merge,
    _label_set,
    _make_corpus,
    _select_labels,
    _warn_case_twins,
)
from featcache.errors import DataError

#: The columns a manifest reader reads, each with an example value: in JSONL each holds one value (a string or
#: a number), not a list or an object.
COLUMNS: dict[str, str] = {"id": '"utt1"', "label": '"ang"', "session": "1", "fold": "1", "split": '"train"',
                           "text": '"hello"',
                           "audio": '"wav/utt1.wav"', "speaker": '"spk1"', "duration": "2.5"}

#: A ``split`` value (case ignored) -> its role; ``valid`` and ``validation`` are ``dev``.
SPLIT_VALUES: dict[str, str] = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "test": "test"}

_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def read_manifest(
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read a CSV or JSONL manifest.

    Columns: ``id``, ``label``, ``session`` (or ``fold``, or ``split``: see the module's docstring; ``split``
    decides the folds when a row has one); optional ``text``, ``audio`` (a path relative
    to the manifest), ``speaker``, ``duration``, and any ``group:NAME`` (``group:accent``): the row's group in
    grouping ``NAME``, compared by ``featcache evaluate --by NAME`` (an empty value: the row is in no group of
    it). A corpus may have only text or only audio.

    Labels lose their surrounding whitespace and keep their case: labels that differ only in case stay
    separate classes, with one warning line naming them. Sessions that are numbers are compared as
    numbers: ``1``, ``01``, ``1.0`` and JSON's ``1.0`` are session ``1`` (:func:`session_name`).

    Args:
        path: The ``.csv`` or ``.jsonl`` file.
        labels: Labels to keep, in class-index order (whitespace around each is stripped); default every
            label present, sorted.
        merge: Raw label -> kept label (whitespace around each side is stripped). A source label no row has is
            named in one warning line (with ``labels``, it is an error, as an unknown label in ``labels`` is).
        name: Name recorded in the corpus; default ``manifest:PATH``.

    Returns:
        The corpus, sorted by id; with a ``split`` column its :attr:`~Corpus.splits` are ``train``, ``dev``
        and ``test`` (each row's session is its split's role).

    Raises:
        DataError: Missing, unreadable or non-UTF-8 file, missing column, a row with an empty label or no
            session, a split other than train, dev or test, a split without train or test rows, duplicate id, a duration that is not a number, missing audio file or a symbolic link loop,
            a ``group:`` column without a name;
            a CSV row with more or fewer fields than the header or a repeated header line; a JSONL value that
            is a list or an object.
    """
    path = Path(path).expanduser()
    merge = _clean_merge(merge or {})
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; pass a .csv or .jsonl file with id,label,session columns")
    rows = list(_manifest_rows(path))
    for lineno, row in rows:
        row["label"] = row["label"].strip()
        if not row["label"]:
            raise DataError(f"{path}:{lineno}: empty label in row {row['id']!r}; fill it in or drop the row")
    vocabulary = {r["label"] for _, r in rows}
    present = {merge.get(lab, lab) for lab in vocabulary}
    _warn_case_twins(present, source=str(path))
    labels = _label_set(labels, merge, vocabulary, default=sorted(present), source=str(path))
    by_split = any((r.get("split") or "").strip() for _, r in rows)
    numbered_folds = not by_split and not any((r.get("session") or "").strip() for _, r in rows)
    utts: list[Utterance] = []
    seen: dict[str, int] = {}
    for lineno, row in rows:
        utt_id = row["id"]
        if utt_id in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {utt_id!r} (first on line {seen[utt_id]}); ids must be unique")
        seen[utt_id] = lineno
        lab = _select_labels(row["label"], labels=labels, merge=merge)
        if lab is None:
            continue
        if by_split:
            session = _split_role(row.get("split") or "", where=f"{path}:{lineno}", utt_id=utt_id)
        else:
            session = session_name(row.get("session") or row.get("fold") or "")
            if numbered_folds and _INTEGER.fullmatch(session):
                session = f"Fold {session}"
        if not session:
            raise DataError(
                f"{path}:{lineno}: row {utt_id!r} has no session; add a 'session' (or 'fold') value to every row"
            )
        audio = None
        if row.get("audio"):
            listed = Path(os.path.abspath(path.parent / row["audio"]))  # links kept: a loop is named as listed
            problem = audio_path_error(listed, listed=f"manifest {path.name}:{lineno}")
            if problem is not None:
                raise problem
            audio = listed.resolve()
            if not audio.is_file():
                raise DataError(f"{audio}: audio file missing (manifest {path.name}:{lineno}); fix the path or the file")
        utts.append(
            Utterance(
                id=utt_id,
                session=session,
                speaker=str(row.get("speaker") or f"{session}"),
                label=lab,
                text=row.get("text") if row.get("text") is not None else None,
                audio=audio,
                duration=_duration(row.get("duration"), where=f"{path}:{lineno}", utt_id=utt_id),
                groups=_groups(row, where=f"{path}:{lineno}"),
            )
        )
    splits = {role: role for role in ("train", "dev", "test")} if by_split else None
    return _make_corpus(name or f"manifest:{path}", path.parent.resolve(), utts, labels, splits=splits)


def _split_role(text: str, *, where: str, utt_id: str) -> str:
    """A row's ``split`` as its role, ``train``, ``dev`` or ``test`` (case ignored; ``valid`` is ``dev``).

    Raises:
        DataError: Empty, or another value.
    """
    role = SPLIT_VALUES.get(text.strip().lower())
    if role is None:
        shown = f"split {text.strip()!r}" if text.strip() else "no split"
        raise DataError(f"{where}: row {utt_id!r} has {shown}; a manifest with a split column gives every row "
                        "train, dev or test")
    return role


def session_name(text: str) -> str:
    """The canonical name of a manifest's session: numbers are compared as values, other text is kept.

    Surrounding whitespace is stripped. A number is written as Python writes it, whole numbers without a
    fraction: ``1``, ``01``, ``+1``, ``1.0`` and ``1e0`` are all ``1``; ``2.50`` is ``2.5``. Text that is no
    plain decimal number (``Ses01``, ``A``, ``nan``) stays as it is.

    Args:
        text: The session (or fold) field as read (a JSON number as ``str`` writes it).

    Returns:
        The session name.
    """
    text = text.strip()
    if _INTEGER.fullmatch(text):
        return str(int(text))
    if not _NUMBER.fullmatch(text):
        return text
    value = float(text)
    if not math.isfinite(value):
        return text
    return str(int(value)) if value.is_integer() else repr(value)


def _groups(row: Mapping[str, str], *, where: str) -> dict[str, str]:
    """A row's ``group:NAME`` values (surrounding whitespace stripped), grouping name -> group; empty ones left out.

    Raises:
        DataError: A ``group:`` column without a name.
    """
    out = {}
    for column, value in row.items():
        if not column.startswith(GROUP_PREFIX):
            continue
        name = column[len(GROUP_PREFIX):].strip()
        if not name:
            raise DataError(f"{where}: column {column!r} names no grouping; write {GROUP_PREFIX}NAME "
                            f"(e.g. {GROUP_PREFIX}accent)")
        if value.strip():
            out[name] = value.strip()
    return out


def _duration(text: str | None, *, where: str, utt_id: str) -> float | None:
    """A manifest row's ``duration`` in seconds; None when the row gives none.

    Raises:
        DataError: Not a number, or not a finite number >= 0.
    """
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value >= 0):
        raise DataError(f"{where}: duration {text!r} of row {utt_id!r} is not a number of seconds; "
                        "write e.g. 2.5, or leave it empty")
    return value


def _manifest_text(path: Path) -> str:
    """The manifest's text, decoded as UTF-8 (a leading byte-order mark is dropped).

    Raises:
        DataError: The file cannot be read or is not UTF-8 (names the line of the first bad byte).
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "save it as UTF-8") from None


def _manifest_rows(path: Path) -> Iterable[tuple[int, dict[str, str]]]:
    """Yield (line number, row) for each row of a CSV or JSONL manifest; every value is a string.

    Raises:
        DataError: The file's type, encoding, columns or a row's shape is wrong (names the line).
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(_manifest_text(path), newline=""))
        try:
            header = list(reader.fieldnames or [])
            _check_columns(path, set(header))
            for row in reader:
                if None in row:  # DictReader's restkey: the fields past the header's
                    n = len(header) + len(row[None])  # type: ignore[index]
                    raise DataError(f"{path}:{reader.line_num}: {n} fields, the header has {len(header)}; quote a "
                                    'field that holds a comma (e.g. "yes, sure")')
                if None in row.values():  # DictReader's restval: the row ended before the header did
                    n = sum(v is not None for k, v in row.items())
                    raise DataError(f"{path}:{reader.line_num}: {n} field{'s' if n != 1 else ''}, the header has "
                                    f"{len(header)}; fill in the missing fields (an empty one still needs its comma) "
                                    "or quote a field that holds a line break")
                if [(row[k] or "").strip() for k in header] == [k.strip() for k in header]:
                    raise DataError(f"{path}:{reader.line_num}: the header line again; remove it (a header belongs "
                                    "on the first line only: were two manifests joined?)")
                yield reader.line_num, {k: (v if v is not None else "") for k, v in row.items() if k is not None}
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e}); check its quotes") from None
    elif suffix in (".jsonl", ".ndjson"):
        for lineno, line in enumerate(_manifest_text(path).split("\n"), start=1):  # not splitlines: U+2028 is JSON
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); one JSON object per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line")
            _check_columns(path, set(obj), lineno=lineno)
            grouped = {k: '"north"' for k in obj if isinstance(k, str) and k.startswith(GROUP_PREFIX)}
            for k, example in {**COLUMNS, **grouped}.items():
                if isinstance(obj.get(k), (list, dict)):
                    kind = "a list" if isinstance(obj[k], list) else "an object"
                    shown = json.dumps(obj[k], ensure_ascii=True)
                    shown = shown if len(shown) <= 40 else shown[:37] + "..."
                    raise DataError(f"{path}:{lineno}: {k!r} is {kind} ({shown}), not one value; write a single "
                                    f'string or number (e.g. "{k}": {example})')
            yield lineno, {k: ("" if v is None else str(v) if not isinstance(v, str) else v) for k, v in obj.items()}
    else:
        raise DataError(f"{path}: unsupported manifest type {suffix!r}; use .csv or .jsonl")


def _check_columns(path: Path, cols: set[str], *, lineno: int | None = None) -> None:
    where = f"{path}:{lineno}" if lineno else str(path)
    missing = [c for c in ("id", "label") if c not in cols]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; a manifest needs id, label and session "
                        "(or fold, or split)")
    if lineno is None and not ({"session", "fold", "split"} & cols):
        raise DataError(f"{where}: missing column session (or fold, or split); folds leave one session out, or "
                        "a split column (train, dev, test) gives one fixed split")
    if not ({"text", "audio"} & cols) and lineno is None:
        raise DataError(f"{where}: no text or audio column; a manifest needs at least one modality")
