"""The EmoBox reader: one dataset folder of the EmoBox benchmark (``data/<dataset>`` of an emo-box/EmoBox
checkout), its published folds used as they are and its labels mapped by its ``label_map.json``.

The layout, as EmoBox publishes it::

    EmoBox/                                  the checkout: the audio root (where the wav paths start)
        data/<dataset>/<dataset>.jsonl       every utterance (not needed: the fold files carry the same rows)
        data/<dataset>/label_map.json        raw ``emo`` -> class name (``{"exc": "Happy", ...}``)
        data/<dataset>/data.seg.wrd.stm      ``KEY CHANNEL SPEAKER START END <...> EMO`` (the speakers)
        data/<dataset>/fold_K/<dataset>_train_fold_K.jsonl, <dataset>_test_fold_K.jsonl
        downloads/<dataset>/...              the audio, as the rows' ``wav`` paths name it

A jsonl row: ``{"key", "dataset", "wav", "type": "raw", "sample_rate", "num_frame", "task": "category",
"length", "emo", "channel"}``; EmoBox joins ``wav`` to the checkout (``os.path.join(user_data_dir, wav)``).

Supported: datasets whose folds' test lists partition the utterances (EmoBox's leave-one-speaker-out and
speaker k-fold datasets): the utterance's session is its fold's name (``Fold K``), so featcache's fold K is
the published fold K (tests on fold K's test list, trains on the others'; the dev set is carved out of the
training side as for every corpus); and datasets of one fold (``fold_1`` with train, test and maybe valid
lists: MELD, MSP-Podcast), a fixed split whose session is the list (``train``, ``valid``, ``test``), one fold
named ``test`` stopped early on ``valid`` where it is published. Refused, each in one line, for now: a
published ``valid`` list beside several folds, folds whose train list is not the other folds' test lists,
segments of a file (``start_time``), stored features (``type: feature``) and non-categorical tasks.

Metadata is a hint, the file is the truth: durations come from the audio files' headers, and a clip whose
real rate or length differs from its row is read as it is (resampled to 16 kHz as any clip).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from featcache.data.audio import audio_duration, audio_path_error
from featcache.data.corpus import (
    Corpus,
    Utterance,
    _clean_merge,
    _label_set,
    _make_corpus,
    _natural_key,
    _select_labels,
    _spec_options,
    _warn_case_twins,
)
from featcache.data.manifest import _manifest_text
from featcache.errors import DataError

log = logging.getLogger("featcache.data")

#: The options an ``emobox:`` spec takes after ``?``, each with its form.
SPEC_OPTIONS: dict[str, str] = {"audio": "audio=ROOT (the folder the rows' wav paths start from)"}

_FOLD_DIR = re.compile(r"fold_(\d+)")
_NOT_YET = "this protocol is not supported yet"

#: A single fold's lists (a fixed split) -> their roles.
FIXED_SPLIT: dict[str, str] = {"train": "train", "valid": "dev", "test": "test"}


def split_emobox_spec(text: str) -> tuple[str, Path | None]:
    """Split the part of an ``emobox:`` spec after its colon into the dataset folder and the audio root.

    ``DIR`` or ``DIR?audio=ROOT``: the first ``?`` followed by ``NAME=`` starts the options (a folder that
    exists as written is taken whole).

    Args:
        text: ``DIR`` or ``DIR?audio=ROOT``.

    Returns:
        (DIR, ROOT) with ROOT None when the spec names none.

    Raises:
        DataError: An unknown option, or one without a value.
    """
    folder, options = _spec_options(text, kind="emobox", options=SPEC_OPTIONS)
    return folder, Path(options["audio"]).expanduser() if "audio" in options else None


def read_emobox(
    root: str | Path,
    *,
    audio_root: str | Path | None = None,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read an EmoBox dataset folder with its published folds (see the module's docstring for the layout).

    Labels are the ``label_map.json`` classes (every raw ``emo`` must be in it, as EmoBox requires); ``labels``
    and ``merge`` then select and merge those classes as for a manifest. Speakers come from a row's ``spk`` (or
    ``speaker``) field, else from ``data.seg.wrd.stm`` (its third field, as EmoBox writes it); without either,
    each fold counts as one speaker (one warning line). A fold that shares speakers between its train and test
    sides is used as published, with one warning line (for the whole read) saying how many per fold.

    Args:
        root: The dataset folder (``EmoBox/data/iemocap``).
        audio_root: The folder the rows' ``wav`` paths start from; default the EmoBox checkout holding
            ``data/`` and ``downloads/``, two levels above ``root`` (EmoBox's ``user_data_dir``).
        labels: Classes to keep, in class-index order; default every class present, sorted.
        merge: Class -> kept class, applied after the label map (a source no utterance has is named in one
            warning line, or is an error with ``labels``).
        name: Name recorded in the corpus; default ``emobox:ROOT``.

    Returns:
        The corpus, sorted by id: session = the fold's name (``Fold K``), or with one fold its list (``train``,
        ``valid``, ``test``: the corpus's :attr:`~Corpus.splits`); no text, durations from the audio headers;
        each utterance's ``speaker`` group is its speaker (none when the dataset names no speakers).

    Raises:
        DataError: A missing folder, file or field, malformed JSON, a raw label the map lacks, a key listed
            twice with different contents, a missing or unreadable audio file, or a protocol not supported yet
            (a valid list beside several folds, folds that are not a partition, segments, features).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: EmoBox dataset folder not found; pass data/<dataset> of an EmoBox checkout "
                        "(the folder with label_map.json and fold_1, fold_2, ...)")
    base = Path(audio_root).expanduser() if audio_root is not None else root.resolve().parent.parent
    label_map = _read_label_map(root / "label_map.json")
    folds = _fold_dirs(root)
    dataset = _dataset_name(root, folds[0])
    if len(folds) == 1:  # a fixed split: its train, valid (when published) and test lists
        tests, splits = _fixed_split(folds[0], dataset), dict(FIXED_SPLIT)
    else:
        tests, splits = _published_folds(folds, dataset), None
    for key, (_k, where, row) in tests.items():
        if row["emo"] not in label_map:
            raise DataError(f"{where}: label {row['emo']!r} of {key!r} is not in {root / 'label_map.json'} "
                            f"(it maps {', '.join(sorted(label_map))}); add it there")
    merge = _clean_merge(merge or {})
    vocabulary = {label_map[row["emo"]] for _k, _w, row in tests.values()}
    _warn_case_twins({merge.get(c, c) for c in vocabulary}, source=str(root))
    labels = _label_set(labels, merge, vocabulary, default=sorted({merge.get(c, c) for c in vocabulary}),
                        source=str(root))
    speakers = _speakers(root / "data.seg.wrd.stm", tests)
    utts: list[Utterance] = []
    misstated: list[str] = []
    for key, (session, where, row) in tests.items():
        lab = _select_labels(label_map[row["emo"]], labels=labels, merge=merge)
        if lab is None:
            continue
        audio, seconds = _audio(base, row, where=where, spec_root=root)
        listed = _number(row.get("length"))
        if listed is not None and abs(listed - seconds) > 0.01:
            misstated.append(f"{key} ({listed:g} s listed, {seconds:g} s read)")
        speaker = speakers.get(key)
        utts.append(Utterance(id=key, session=session, speaker=speaker or session, label=lab, text=None,
                              audio=audio, duration=seconds, groups={"speaker": speaker} if speaker else {}))
    if misstated:
        shown = ", ".join(misstated[:3]) + (", ..." if len(misstated) > 3 else "")
        log.info("%s: %d clip%s, read as the files are: %s", root, len(misstated),
                 " differs from its listed length" if len(misstated) == 1 else "s differ from their listed lengths",
                 shown)
    corpus = _make_corpus(name or f"emobox:{root}", base, utts, labels, splits=splits)
    if speakers:
        _warn_shared_speakers(corpus, source=name or f"emobox:{root}")
    return corpus


def _published_folds(folds: Sequence[Path], dataset: str) -> dict[str, tuple[str, str, dict]]:
    """Key -> (its fold's name, ``Fold K``; "file:line"; row) from the folds' test lists, each fold's train list
    checked to be the other folds' test lists.

    Raises:
        DataError: A published valid list, overlapping test lists, a train list that is not the others' tests.
    """
    tests: dict[str, tuple[str, str, dict]] = {}
    for k, fdir in enumerate(folds, start=1):
        valid = fdir / f"{dataset}_valid_fold_{k}.jsonl"
        if valid.is_file():
            raise DataError(f"{valid}: fold {k} of {len(folds)} has a published valid (dev) list; {_NOT_YET}")
        for where, row in _rows(fdir / f"{dataset}_test_fold_{k}.jsonl"):
            if row["key"] in tests:
                first = tests[row["key"]]
                raise DataError(f"{where}: {row['key']!r} is in the test lists of {first[0].lower()} ({first[1]}) "
                                f"and fold {k}: the folds overlap; {_NOT_YET}")
            tests[row["key"]] = (f"Fold {k}", where, row)
    for k, fdir in enumerate(folds, start=1):
        _check_train(fdir / f"{dataset}_train_fold_{k}.jsonl", k, tests)
    return tests


def _fixed_split(fdir: Path, dataset: str) -> dict[str, tuple[str, str, dict]]:
    """Key -> (its list, ``train``, ``valid`` or ``test``; "file:line"; row) from a single fold's lists.

    Raises:
        DataError: A key in two lists, a missing train or test list.
    """
    rows: dict[str, tuple[str, str, dict]] = {}
    for part in FIXED_SPLIT:
        path = fdir / f"{dataset}_{part}_fold_1.jsonl"
        if part == "valid" and not path.is_file():
            continue
        for where, row in _rows(path):
            if row["key"] in rows:
                first = rows[row["key"]]
                raise DataError(f"{where}: {row['key']!r} is also in the {first[0]} list ({first[1]}); a fixed "
                                "split's lists do not overlap: restore the files from EmoBox")
            rows[row["key"]] = (part, where, row)
    return rows


def _read_label_map(path: Path) -> dict[str, str]:
    """``label_map.json``: a JSON object of raw label -> class name."""
    if not path.is_file():
        raise DataError(f"{path}: not found; an EmoBox dataset folder has a label_map.json (raw emo -> class name)")
    try:
        obj = json.loads(_manifest_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); restore the file from EmoBox") from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, str) and v.strip() for v in obj.values()):
        raise DataError(f'{path}: expected a JSON object of raw label -> class name (e.g. {{"exc": "Happy"}})')
    return {str(a).strip(): v.strip() for a, v in obj.items()}


def _fold_dirs(root: Path) -> list[Path]:
    """The ``fold_1`` .. ``fold_N`` folders, in order.

    Raises:
        DataError: None, or a gap in the numbering.
    """
    found = {int(m[1]): p for p in root.iterdir() if p.is_dir() and (m := _FOLD_DIR.fullmatch(p.name))}
    if not found:
        raise DataError(f"{root}: no fold_K folders; an EmoBox dataset folder has fold_1, fold_2, ... "
                        "(pass data/<dataset>, not the checkout)")
    n = max(found)
    missing = [k for k in range(1, n + 1) if k not in found]
    if missing:
        raise DataError(f"{root}: fold_{missing[0]} is missing (the folds found are "
                        f"{', '.join(f'fold_{k}' for k in sorted(found))}); restore it from EmoBox")
    return [found[k] for k in range(1, n + 1)]


def _dataset_name(root: Path, fold1: Path) -> str:
    """The dataset name the fold files carry (``iemocap`` in ``iemocap_test_fold_1.jsonl``)."""
    names = sorted(p.name[: -len("_test_fold_1.jsonl")] for p in fold1.glob("*_test_fold_1.jsonl"))
    root = root.resolve()
    if root.name in names or len(names) == 1:
        return root.name if root.name in names else names[0]
    if not names:
        raise DataError(f"{fold1 / f'{root.name}_test_fold_1.jsonl'}: not found; every EmoBox fold has "
                        "<dataset>_train_fold_K.jsonl and <dataset>_test_fold_K.jsonl")
    raise DataError(f"{fold1}: test lists of several datasets ({', '.join(names)}); keep one")


def _rows(path: Path) -> list[tuple[str, dict]]:
    """("file:line", row) for each row of a fold file, with ``key``, ``wav`` and ``emo`` as strings.

    Raises:
        DataError: A missing file, malformed JSON, a missing field, a row EmoBox marks as features, a
            non-categorical task.
    """
    if not path.is_file():
        raise DataError(f"{path}: not found; every EmoBox fold has <dataset>_train_fold_K.jsonl and "
                        "<dataset>_test_fold_K.jsonl")
    out = []
    for lineno, line in enumerate(_manifest_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg}); one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object per line")
        for field in ("key", "wav", "emo"):
            if not isinstance(row.get(field), (str, int, float)) or not str(row[field]).strip():
                raise DataError(f"{where}: no {field!r} field; an EmoBox row has key, wav and emo")
            row[field] = str(row[field]).strip()
        if row.get("type", "raw") != "raw":
            raise DataError(f"{where}: {row['key']!r} is of type {row['type']!r}; featcache reads the audio "
                            "(type raw), not stored features")
        if row.get("task", "category") != "category":
            raise DataError(f"{where}: task {row['task']!r}; featcache classifies categories (task category)")
        out.append((where, row))
    return out


def _check_train(path: Path, k: int, tests: Mapping[str, tuple[str, str, dict]]) -> None:
    """Check that fold ``k``'s train list is the other folds' test lists (same rows).

    Raises:
        DataError: It lists an utterance no other fold tests on, or lacks one, or a row's label or wav differs
            from the row of the test list.
    """
    expected = {key for key, (fold, _w, _r) in tests.items() if fold != f"Fold {k}"}
    seen: set[str] = set()
    for where, row in _rows(path):
        key = row["key"]
        test = tests.get(key)
        if test is None or test[0] == f"Fold {k}":
            why = "also in its own test list" if test is not None else "in no fold's test list"
            raise DataError(f"{where}: fold {k} trains on {key!r}, {why}; {_NOT_YET}")
        for field in ("emo", "wav"):
            if row[field] != test[2][field]:
                raise DataError(f"{where}: {key!r} has {field} {row[field]!r}, {test[1]} has {test[2][field]!r}; "
                                "restore the files from EmoBox")
        seen.add(key)
    lacking = sorted(expected - seen, key=_natural_key)
    if lacking:
        raise DataError(f"{path}: fold {k} does not train on {len(lacking)} utterance{'s' if len(lacking) > 1 else ''} "
                        f"the other folds test on (e.g. {lacking[0]!r}); {_NOT_YET}")


def _speakers(stm: Path, tests: Mapping[str, tuple[str, str, dict]]) -> dict[str, str]:
    """Key -> speaker: a row's ``spk``/``speaker`` field, else ``data.seg.wrd.stm``; {} when neither names any.

    Raises:
        DataError: A malformed stm line, or an utterance the stm file lacks.
    """
    out = {key: str(row.get("spk", row.get("speaker"))) for key, (_k, _w, row) in tests.items()
           if row.get("spk", row.get("speaker")) not in (None, "")}
    if len(out) == len(tests):
        return out
    if not stm.is_file():
        log.warning("%s: no speakers (no spk field, no data.seg.wrd.stm); each fold counts as one speaker", stm.parent)
        return {}
    table: dict[str, str] = {}
    for lineno, line in enumerate(_manifest_text(stm).split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise DataError(f"{stm}:{lineno}: expected 'KEY CHANNEL SPEAKER START END ...'; restore it from EmoBox")
        table[parts[0]] = parts[2]
    for key, (_k, where, _row) in tests.items():
        if key not in out:
            if key not in table:
                raise DataError(f"{stm}: no line for {key!r} (listed in {where}); restore the file from EmoBox "
                                "or remove it (each fold then counts as one speaker)")
            out[key] = table[key]
    return out


def _audio(base: Path, row: dict, *, where: str, spec_root: Path) -> tuple[Path, float]:
    """A row's audio file (``base / wav``) and its real duration in seconds.

    Raises:
        DataError: A missing or unreadable file, or a row that is a segment of its file.
    """
    listed = Path(os.path.abspath(base / row["wav"]))  # links kept: a loop is named as listed
    problem = audio_path_error(listed, listed=where)
    if problem is not None:
        raise problem
    if not listed.is_file():
        raise DataError(f"{listed}: audio file missing (listed in {where}); the wav paths start from {base}: put "
                        f"the audio there or name its folder with --corpus 'emobox:{spec_root}?audio=ROOT'")
    seconds = audio_duration(listed)
    start, end = _number(row.get("start_time")), _number(row.get("end_time"))
    if (start or 0.0) > 0.01 or (end is not None and end < seconds - 0.05):
        raise DataError(f"{where}: {row['key']!r} is a segment ({start or 0:g}-{end if end is not None else seconds:g} "
                        f"s) of {listed.name}; segments of a file are not supported yet")
    return listed.resolve(), seconds


def _number(value: object) -> float | None:
    """A row's number (``length``, ``start_time``), or None when it has none or no number."""
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _warn_shared_speakers(corpus: Corpus, *, source: str) -> None:
    """One warning line naming, per fold, how many speakers are on both its train (and dev) and test sides."""
    shared = []
    for session in corpus.sessions:
        test = {u.speaker for u in corpus.utterances if u.session == session}
        train = {u.speaker for u in corpus.utterances if u.session != session
                 and (corpus.splits is None or corpus.splits.get(u.session) != "test")}
        if n := len(test & train):
            shared.append(f"{session}: {n} speaker{'s' if n > 1 else ''} on both sides")
    if shared:
        log.warning("%s: %s (used as published)", source, ", ".join(shared))
