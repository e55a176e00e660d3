"""The MELD reader: its three CSVs (utterance text, speaker, emotion) as a fixed train/dev/test split, and
the audio of each clip as the release names it.

The layout, as the release (``MELD.Raw``) ships it, the clip folders unpacked from its tarballs::

    MELD.Raw/
        train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv
            Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime
        train_splits/dia{D}_utt{U}.mp4
        dev_splits_complete/dia{D}_utt{U}.mp4
        output_repeated_splits_test/dia{D}_utt{U}.mp4

An utterance's id is ``{split}_dia{D}_utt{U}`` (dialogue numbers restart in each split). Its audio is a file
of the clip's stem with ``.wav`` or ``.flac`` in the clip folder where there is one (the audio converted
once, ``ffmpeg -i dia0_utt0.mp4 -vn -ac 1 -ar 16000 dia0_utt0.wav``), else the ``.mp4`` itself (decoded when
it is read; without a decoder that can, reading it stops with the conversion command). A CSV row whose clip
the release lacks is left out with one warning line; without any clip folder the corpus is text-only.

Emotions become featcache's label names (:data:`EMOTIONS`: joy ``hap``, anger ``ang``, sadness ``sad``, ...).
The CSVs' text is read as UTF-8, else as cp1252, and the release's stray cp1252 bytes and curly quotes are
made plain (``’`` -> ``'``).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from featcache.data.audio import audio_path_error
from featcache.data.corpus import (
    Corpus,
    Utterance,
    _clean_merge,
    _label_set,
    _make_corpus,
    _select_labels,
)
from featcache.errors import DataError

log = logging.getLogger("featcache.data")

#: MELD's emotion -> featcache's label name (IEMOCAP's names).
EMOTIONS: dict[str, str] = {"neutral": "neu", "joy": "hap", "sadness": "sad", "anger": "ang", "surprise": "sur",
                            "fear": "fea", "disgust": "dis"}

#: The classes kept by default: the four of the usual setup (the paper's, with neutral for frustration).
DEFAULT_LABELS: tuple[str, ...] = ("ang", "sad", "hap", "neu")

#: Each split: its CSV and the folder of its clips.
SPLITS: dict[str, tuple[str, str]] = {"train": ("train_sent_emo.csv", "train_splits"),
                                      "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
                                      "test": ("test_sent_emo.csv", "output_repeated_splits_test")}

#: Audio files taken instead of a clip's ``.mp4``, in order of preference.
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac")

_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u20ac\u2122\u201a-\u201e\u2018-\u201d]")
_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)")
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
                        "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " "})


def read_meld(
    root: str | Path,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read a MELD release (see the module's docstring for the layout).

    Args:
        root: The release folder (``MELD.Raw``, holding the three CSVs).
        labels: Classes to keep, in class-index order (featcache's names: ``ang``, ``sad``, ``hap``, ``neu``,
            ``sur``, ``fea``, ``dis``); default :data:`DEFAULT_LABELS`.
        merge: Class -> kept class (``sur=hap``).
        name: Name recorded in the corpus; default ``meld:ROOT``.

    Returns:
        The corpus, sorted by id; sessions ``train``, ``dev`` and ``test`` (its :attr:`~Corpus.splits`), the
        utterance's text and speaker, durations from the rows' start and end times.

    Raises:
        DataError: A missing folder, CSV or column, an unknown emotion, a dialogue or utterance number that is
            no number, an id listed twice, a clip that is a folder or a symbolic link loop.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: MELD release folder not found; pass the folder holding train_sent_emo.csv")
    rows = {split: _rows(root / csv_name) for split, (csv_name, _d) in SPLITS.items()}
    vocabulary = {EMOTIONS[r["Emotion"].lower()] for split_rows in rows.values() for _w, r in split_rows}
    merge = _clean_merge(merge or {})
    kept = [lab for lab in DEFAULT_LABELS if lab in vocabulary or lab in merge.values()]
    labels = _label_set(labels, merge, vocabulary, default=kept, source=str(root))
    with_audio = any((root / d).is_dir() for _c, d in SPLITS.values())
    if not with_audio:
        log.warning("%s: no clip folder (%s); read as text only", root, ", ".join(d for _c, d in SPLITS.values()))
    utts: list[Utterance] = []
    seen: dict[str, str] = {}
    lacking: list[Path] = []
    for split, split_rows in rows.items():
        clips = root / SPLITS[split][1]
        for where, row in split_rows:
            lab = _select_labels(EMOTIONS[row["Emotion"].lower()], labels=labels, merge=merge)
            if lab is None:
                continue
            stem = f"dia{_int(row, 'Dialogue_ID', where)}_utt{_int(row, 'Utterance_ID', where)}"
            utt_id = f"{split}_{stem}"
            if utt_id in seen:
                raise DataError(f"{where}: dialogue and utterance {stem} listed twice (first at {seen[utt_id]}); "
                                "restore the file from the release")
            seen[utt_id] = where
            audio = None
            if with_audio:
                audio = _clip(clips, stem, where=where)
                if audio is None:
                    lacking.append(clips / f"{stem}.mp4")
                    continue
            utts.append(Utterance(id=utt_id, session=split, speaker=row["Speaker"] or f"{split}-{stem}",
                                  label=lab, text=row["Utterance"], audio=audio, duration=_duration(row),
                                  groups={}))
    if lacking:
        log.warning("%s: %d row%s without a clip left out (e.g. %s)", root, len(lacking),
                    "" if len(lacking) == 1 else "s", lacking[0])
    return _make_corpus(name or f"meld:{root}", root, utts, labels, splits={s: s for s in SPLITS})


def plain_text(text: str) -> str:
    """MELD's utterance text made plain: UTF-8 read as Latin-1 once (``heâ\x80\x99s``) read again as UTF-8,
    stray cp1252 bytes (U+0080..U+009F) read as cp1252, curly quotes, dashes and ellipses as ASCII, runs of
    whitespace as one space.

    Args:
        text: The CSV's ``Utterance`` field.

    Returns:
        The text.
    """
    def cp1252(m: re.Match[str]) -> str:
        try:
            return bytes([ord(m[0])]).decode("cp1252")
        except UnicodeDecodeError:
            return " "

    if _MOJIBAKE.search(text):
        for codec in ("latin-1", "cp1252"):
            try:
                text = text.encode(codec).decode("utf-8")
                break
            except UnicodeError:
                continue
    return " ".join(re.sub("[\u0080-\u009f]", cp1252, text).translate(_PLAIN).split())


def _rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    """("file:line", row) for each row of one split's CSV, its text made plain.

    Raises:
        DataError: The file is missing, a column is missing, or an emotion is unknown.
    """
    if not path.is_file():
        raise DataError(f"{path}: not found; a MELD release has train_sent_emo.csv, dev_sent_emo.csv and "
                        "test_sent_emo.csv (pass the folder holding them)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check permissions") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; MELD's CSVs have Sr No.,Utterance,"
                        "Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime")
    out = []
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            row = {k: plain_text(v or "") for k, v in row.items() if k is not None}
            if row["Emotion"].lower() not in EMOTIONS:
                raise DataError(f"{where}: emotion {row['Emotion']!r} is none of {', '.join(EMOTIONS)}; restore "
                                "the file from the release")
            out.append((where, row))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e}); restore the file from the release") from None
    return out


def _int(row: Mapping[str, str], column: str, where: str) -> int:
    """A row's dialogue or utterance number.

    Raises:
        DataError: It is no whole number.
    """
    try:
        return int(row[column])
    except ValueError:
        raise DataError(f"{where}: {column} {row[column]!r} is no number; restore the file from the release") from None


def _clip(folder: Path, stem: str, *, where: str) -> Path | None:
    """The audio of one clip: ``<stem>.wav`` or ``.flac`` in its folder, else ``<stem>.mp4``; None when none is
    there.

    Raises:
        DataError: The file found is a folder or a symbolic link loop.
    """
    for suffix in (*AUDIO_SUFFIXES, ".mp4"):
        listed = Path(os.path.abspath(folder / f"{stem}{suffix}"))
        problem = audio_path_error(listed, listed=where)
        if problem is not None:
            raise problem
        if listed.is_file():
            return listed.resolve()
    return None


def _duration(row: Mapping[str, str]) -> float | None:
    """The clip's length from the row's StartTime and EndTime (``00:14:38,127``); None when they are not times."""
    times = []
    for column in ("StartTime", "EndTime"):
        m = _TIME.fullmatch(row.get(column, ""))
        if m is None:
            return None
        h, mi, s, frac = m.groups()
        times.append(int(h) * 3600 + int(mi) * 60 + int(s) + int(frac) / 10 ** len(frac))
    return max(times[1] - times[0], 0.0)
