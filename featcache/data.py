"""Corpora: one `Utterance` record and the sources that produce them.

Three sources sit behind :func:`load_corpus`:

* ``iemocap:DIR`` reads the IEMOCAP release layout (``SessionN/dialog/EmoEvaluation``,
  ``SessionN/dialog/transcriptions``, ``SessionN/sentences/wav``);
* ``manifest:FILE`` reads a CSV or JSONL manifest (``id, label, session`` or ``fold``, optional
  ``text``, ``audio``, ``speaker``, ``duration``) for any other corpus;
* the embedded demo corpus, written by ``featcache demo-data DIR`` in the IEMOCAP layout and read
  back with the IEMOCAP reader.

Every problem with the input raises :class:`~featcache.errors.DataError` with a one-line message that
names the file (and line) and what to do about it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from featcache import paper
from featcache.errors import DataError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

#: The paper's label set (Table 2) and its merge map (defined in featcache.paper).
PAPER_LABELS = paper.LABELS
PAPER_MERGE = paper.MERGE

#: Every label the IEMOCAP release uses in its EmoEvaluation files.
IEMOCAP_VOCABULARY: frozenset[str] = frozenset(
    {"neu", "fru", "ang", "sad", "hap", "exc", "sur", "fea", "dis", "oth", "xxx"}
)


@dataclass(frozen=True)
class Utterance:
    """One classification instance.

    Attributes:
        id: Corpus-unique utterance id (``Ses01F_impro01_F000``).
        session: Session name; folds leave one session out (``"1"`` .. ``"5"`` on IEMOCAP).
        speaker: Speaker id (``Ses01F``).
        label: Label after merging (``hap`` for IEMOCAP's ``exc``).
        text: Transcription, or None for an audio-only corpus.
        audio: Absolute path of the wav file, or None for a text-only corpus.
        duration: Length in seconds, when known.
    """

    id: str
    session: str
    speaker: str
    label: str
    text: str | None
    audio: Path | None
    duration: float | None


@dataclass(frozen=True)
class Corpus:
    """An ordered, immutable collection of utterances.

    Attributes:
        name: Source spec it was read from (``iemocap:/data/IEMOCAP``).
        root: Directory the corpus lives in.
        utterances: The utterances, sorted by id.
        labels: Label set in class-index order.
    """

    name: str
    root: Path
    utterances: tuple[Utterance, ...]
    labels: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {u.id: i for i, u in enumerate(self.utterances)})

    def __len__(self) -> int:
        return len(self.utterances)

    def __repr__(self) -> str:
        return f"Corpus({self.name!r}, {len(self.utterances)} utterances, labels={self.labels})"

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.utterances)

    def by_id(self, utt_id: str) -> Utterance:
        """Return the utterance with this id.

        Raises:
            DataError: No utterance has that id.
        """
        try:
            return self.utterances[self._index[utt_id]]
        except KeyError:
            raise DataError(f"{self.name}: no utterance with id {utt_id!r}") from None

    @property
    def sessions(self) -> tuple[str, ...]:
        """Session names in natural order (fold k tests on the k-th)."""
        return tuple(sorted({u.session for u in self.utterances}, key=_natural_key))

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities every utterance has: a subset of ``("text", "audio")``."""
        mods = []
        if self.utterances and all(u.text is not None for u in self.utterances):
            mods.append("text")
        if self.utterances and all(u.audio is not None for u in self.utterances):
            mods.append("audio")
        return tuple(mods)

    def label_index(self, label: str) -> int:
        """Class index of a label."""
        return self.labels.index(label)

    @cached_property
    def fingerprint(self) -> str:
        """A 16-hex-digit hash of everything in the corpus that changes features or labels
        (ids, sessions, speakers, labels, texts, audio paths and sizes); computed once per corpus."""
        h = hashlib.sha256()
        h.update(json.dumps(list(self.labels)).encode())
        for u in self.utterances:
            audio = ""
            if u.audio is not None:
                try:
                    rel = u.audio.relative_to(self.root)
                except ValueError:
                    rel = u.audio
                size = u.audio.stat().st_size if u.audio.exists() else -1
                audio = f"{rel}:{size}"
            h.update(json.dumps([u.id, u.session, u.speaker, u.label, u.text, audio]).encode())
        return h.hexdigest()[:16]


def _natural_key(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


# --------------------------------------------------------------------------------------------
# Label selection
# --------------------------------------------------------------------------------------------


def _select_labels(
    raw: str,
    *,
    labels: Sequence[str],
    merge: Mapping[str, str],
) -> str | None:
    """Map a raw label through the merge map; None when it is not in the label set."""
    lab = merge.get(raw, raw)
    return lab if lab in labels else None


# --------------------------------------------------------------------------------------------
# IEMOCAP release reader
# --------------------------------------------------------------------------------------------

_EMO_LINE = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\]\t(?P<id>\S+)\t(?P<label>\S+)\t\[.*\]\s*$"
)
_TRANS_LINE = re.compile(r"^(?P<id>\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")
_UTT_ID = re.compile(r"^Ses(?P<session>\d+)[FM]_.+_(?P<gender>[FM])[^_]*$")


def read_iemocap(
    root: str | Path,
    *,
    labels: Sequence[str] = PAPER_LABELS,
    merge: Mapping[str, str] = PAPER_MERGE,
    name: str | None = None,
) -> Corpus:
    """Read a copy of the IEMOCAP release (or the demo corpus, which uses its layout).

    Args:
        root: Directory holding ``Session1`` .. ``Session5``.
        labels: Labels to keep, in class-index order (after merging).
        merge: Raw label -> kept label (the paper merges ``exc`` into ``hap``).
        name: Name recorded in the corpus; default ``iemocap:ROOT``.

    Returns:
        The corpus, utterances sorted by id. Utterances whose label is not kept are dropped.

    Raises:
        DataError: Missing directory, malformed EmoEvaluation line, unknown label, missing wav.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: corpus directory not found; pass the folder that holds Session1..Session5 "
            "(or run `featcache demo-data DIR` to make the demo corpus)"
        )
    _check_label_options(labels, merge, IEMOCAP_VOCABULARY, source=str(root))
    session_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"Session\d+", p.name)),
        key=lambda p: _natural_key(p.name),
    )
    if not session_dirs:
        raise DataError(
            f"{root}: no SessionN folders found; point --corpus at the IEMOCAP release root "
            "(the folder containing Session1 .. Session5)"
        )
    utts: list[Utterance] = []
    wav_dirs_present = []
    for sdir in session_dirs:
        session = str(int(sdir.name[len("Session") :]))
        emo_dir = sdir / "dialog" / "EmoEvaluation"
        trans_dir = sdir / "dialog" / "transcriptions"
        wav_root = sdir / "sentences" / "wav"
        for d in (emo_dir, trans_dir):
            if not d.is_dir():
                raise DataError(f"{d}: directory not found; the IEMOCAP release has it in every session")
        wav_dirs_present.append(wav_root.is_dir())
        texts = _read_transcriptions(trans_dir)
        for emo_file in sorted(emo_dir.glob("*.txt")):
            for lineno, utt_id, start, end, raw in _read_emo_file(emo_file):
                lab = _select_labels(raw, labels=labels, merge=merge)
                if lab is None:
                    continue
                m = _UTT_ID.match(utt_id)
                if m is None:
                    raise DataError(
                        f"{emo_file}:{lineno}: malformed utterance id {utt_id!r}; expected e.g. Ses01F_impro01_F000"
                    )
                dialog = utt_id.rsplit("_", 1)[0]
                audio: Path | None = None
                if wav_root.is_dir():
                    audio = wav_root / dialog / f"{utt_id}.wav"
                    if not audio.is_file():
                        raise DataError(
                            f"{audio}: wav file missing for {utt_id} (listed in {emo_file.name}:{lineno}); "
                            "restore it from the release or remove the utterance"
                        )
                text = texts.get(utt_id)
                if text is None:
                    raise DataError(
                        f"{trans_dir / (dialog + '.txt')}: no transcription line for {utt_id} "
                        f"(listed in {emo_file.name}:{lineno}); restore the file from the release"
                    )
                utts.append(
                    Utterance(
                        id=utt_id,
                        session=session,
                        speaker=f"Ses{int(m['session']):02d}{m['gender']}",
                        label=lab,
                        text=text,
                        audio=audio.resolve() if audio is not None else None,
                        duration=round(end - start, 4),
                    )
                )
    if any(wav_dirs_present) and not all(wav_dirs_present):
        missing = [str(s / "sentences" / "wav") for s, ok in zip(session_dirs, wav_dirs_present) if not ok]
        raise DataError(f"{missing[0]}: directory not found; other sessions have audio, restore it from the release")
    return _make_corpus(name or f"iemocap:{root}", root, utts, labels)


def _read_emo_file(path: Path) -> Iterable[tuple[int, str, float, float, str]]:
    """Yield (line number, utterance id, start, end, raw label) for each turn line of an EmoEvaluation file."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check permissions") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.startswith("["):
            continue  # header (%), blank lines and per-annotator lines (C-E1:, A-F2:, ...)
        m = _EMO_LINE.match(line)
        if m is None:
            raise DataError(
                f"{path}:{lineno}: malformed EmoEvaluation line {line.strip()[:60]!r}; expected "
                "'[START - END]<TAB>UTTERANCE_ID<TAB>LABEL<TAB>[V, A, D]'"
            )
        raw = m["label"]
        if raw not in IEMOCAP_VOCABULARY:
            raise DataError(
                f"{path}:{lineno}: unknown label {raw!r}; IEMOCAP labels are {', '.join(sorted(IEMOCAP_VOCABULARY))}"
            )
        yield lineno, m["id"], float(m["start"]), float(m["end"]), raw


def _read_transcriptions(trans_dir: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    for f in sorted(trans_dir.glob("*.txt")):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _TRANS_LINE.match(line.strip())
            if m is not None:
                texts[m["id"]] = m["text"].strip()
    return texts


# --------------------------------------------------------------------------------------------
# Manifest reader
# --------------------------------------------------------------------------------------------


def read_manifest(
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read a CSV or JSONL manifest.

    Columns: ``id``, ``label``, ``session`` (or ``fold``); optional ``text``, ``audio`` (a path relative
    to the manifest), ``speaker``, ``duration``. A corpus may have only text or only audio.

    Args:
        path: The ``.csv`` or ``.jsonl`` file.
        labels: Labels to keep, in class-index order; default every label present, sorted.
        merge: Raw label -> kept label.
        name: Name recorded in the corpus; default ``manifest:PATH``.

    Returns:
        The corpus, sorted by id.

    Raises:
        DataError: Missing, unreadable or non-UTF-8 file, missing column, a row with no session, duplicate id,
            a duration that is not a number, missing audio file.
    """
    path = Path(path).expanduser()
    merge = dict(merge or {})
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; pass a .csv or .jsonl file with id,label,session columns")
    rows = list(_manifest_rows(path))
    present = {merge.get(r["label"], r["label"]) for _, r in rows}
    if labels is None:
        labels = tuple(sorted(present))
    else:
        _check_label_options(labels, merge, {r["label"] for _, r in rows}, source=str(path))
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
        session = row.get("session") or row.get("fold")
        if session in (None, ""):
            raise DataError(
                f"{path}:{lineno}: row {utt_id!r} has no session; add a 'session' (or 'fold') value to every row"
            )
        audio = None
        if row.get("audio"):
            audio = (path.parent / row["audio"]).resolve()
            if not audio.is_file():
                raise DataError(f"{audio}: audio file missing (manifest {path.name}:{lineno}); fix the path or the file")
        utts.append(
            Utterance(
                id=utt_id,
                session=str(session),
                speaker=str(row.get("speaker") or f"{session}"),
                label=lab,
                text=row.get("text") if row.get("text") is not None else None,
                audio=audio,
                duration=_duration(row.get("duration"), where=f"{path}:{lineno}", utt_id=utt_id),
            )
        )
    return _make_corpus(name or f"manifest:{path}", path.parent.resolve(), utts, labels)


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
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(_manifest_text(path), newline=""))
        try:
            _check_columns(path, set(reader.fieldnames or []))
            for row in reader:
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
            yield lineno, {k: ("" if v is None else str(v) if not isinstance(v, str) else v) for k, v in obj.items()}
    else:
        raise DataError(f"{path}: unsupported manifest type {suffix!r}; use .csv or .jsonl")


def _check_columns(path: Path, cols: set[str], *, lineno: int | None = None) -> None:
    where = f"{path}:{lineno}" if lineno else str(path)
    missing = [c for c in ("id", "label") if c not in cols]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; a manifest needs id, label and session (or fold)")
    if lineno is None and "session" not in cols and "fold" not in cols:
        raise DataError(f"{where}: missing column session (or fold); folds leave one session out")
    if not ({"text", "audio"} & cols) and lineno is None:
        raise DataError(f"{where}: no text or audio column; a manifest needs at least one modality")


def _check_label_options(
    labels: Sequence[str], merge: Mapping[str, str], vocabulary: Iterable[str], *, source: str
) -> None:
    vocab = set(vocabulary)
    if len(set(labels)) != len(labels) or not labels:
        raise DataError(f"{source}: label set {list(labels)} must be non-empty without repeats")
    targets = vocab | set(merge.values())
    for lab in labels:
        if lab not in targets:
            raise DataError(f"{source}: unknown label {lab!r} in --labels; the corpus has {', '.join(sorted(vocab))}")
    for src in merge:
        if src not in vocab:
            raise DataError(f"{source}: unknown label {src!r} in --merge; the corpus has {', '.join(sorted(vocab))}")


def _make_corpus(name: str, root: Path, utts: list[Utterance], labels: Sequence[str]) -> Corpus:
    if not utts:
        raise DataError(f"{name}: no utterance has one of the labels {list(labels)}; check --labels/--merge")
    utts.sort(key=lambda u: u.id)
    return Corpus(name=name, root=root.resolve(), utterances=tuple(utts), labels=tuple(labels))


# --------------------------------------------------------------------------------------------
# Corpus specs
# --------------------------------------------------------------------------------------------


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
            raise DataError(f"--merge: {item!r} is not SRC=DST (e.g. exc=hap)")
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


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


def load_audio(path: str | Path, *, sr: int = SAMPLE_RATE, strict: bool = False) -> np.ndarray:
    """Read a wav file as float32 mono at ``sr`` Hz.

    Stereo files are downmixed and other sample rates resampled (``librosa.resample``), each with a
    one-line warning naming the file; with ``strict=True`` both are errors instead.

    Args:
        path: Audio file.
        sr: Target sample rate.
        strict: Refuse instead of converting.

    Returns:
        1-D float32 array.

    Raises:
        DataError: Missing, unreadable or empty file, NaN or infinite samples; or, when strict, a wrong sample
            rate or channel count.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found; restore it or fix the corpus listing")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError with a multi-line text
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if reason.startswith("Error opening"):  # libsndfile repeats the path: keep only the cause
            reason = reason.rsplit(": ", 1)[-1].rstrip(".")
        raise DataError(f"{path}: unreadable audio ({reason}); re-export it as a 16 kHz mono PCM wav") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file is empty (0 samples); re-export it or drop the utterance")
    finite = np.isfinite(data)
    if not finite.all():
        raise DataError(f"{path}: {data.size - int(finite.sum())} of {data.size} audio samples are NaN or infinite; "
                        "re-export it or drop the utterance")
    if data.shape[1] > 1:
        if strict:
            raise DataError(f"{path}: {data.shape[1]} channels; downmix to mono (strict=True refuses to convert)")
        log.warning("%s: %d channels, downmixed to mono", path, data.shape[1])
        data = data.mean(axis=1, keepdims=True)
    y = data[:, 0]
    if file_sr != sr:
        if strict:
            raise DataError(f"{path}: sample rate {file_sr} Hz; resample to {sr} Hz (strict=True refuses to convert)")
        log.warning("%s: sample rate %d Hz, resampled to %d Hz", path, file_sr, sr)
        import librosa

        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Statistics (the paper's Tables 1 and 2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusStats:
    """Label x session counts and durations.

    Attributes:
        sessions: Session names, in fold order.
        labels: Labels, in class order.
        counts: counts[label][session].
        seconds: Total duration per label (None when durations are unknown).
    """

    sessions: tuple[str, ...]
    labels: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    seconds: dict[str, float | None]

    @property
    def total(self) -> int:
        return sum(sum(row.values()) for row in self.counts.values())

    def format(self) -> str:
        """Render as a plain-text table in the layout of the paper's Table 2."""
        head = ["Label", *(f"Ses. {s}" for s in self.sessions), "Total", "%", "Hours", "Mean s"]
        rows = []
        n = self.total
        for lab in self.labels:
            c = self.counts[lab]
            tot = sum(c.values())
            secs = self.seconds.get(lab)
            rows.append(
                [
                    lab,
                    *(str(c.get(s, 0)) for s in self.sessions),
                    f"{tot:,}",
                    f"{100 * tot / n:.1f}%",
                    f"{secs / 3600:.2f}" if secs is not None else "-",
                    f"{secs / tot:.2f}" if secs is not None and tot else "-",
                ]
            )
        per_session = Counter()
        for lab in self.labels:
            per_session.update(self.counts[lab])
        known = [v for v in self.seconds.values() if v is not None]
        all_secs = sum(known) if len(known) == len(self.labels) else None
        rows.append(
            [
                "Total",
                *(str(per_session.get(s, 0)) for s in self.sessions),
                f"{n:,}",
                "100.0%",
                f"{all_secs / 3600:.2f}" if all_secs is not None else "-",
                f"{all_secs / n:.2f}" if all_secs is not None else "-",
            ]
        )
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
        lines = [fmt(head), "  ".join("-" * w for w in widths)]
        lines += [fmt(r) for r in rows[:-1]] + ["  ".join("-" * w for w in widths), fmt(rows[-1])]
        return "\n".join(lines)


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds, from its header (nothing is decoded).

    Args:
        path: Audio file.

    Returns:
        frames / sample rate.

    Raises:
        DataError: Missing or unreadable file.
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError with a multi-line text
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if reason.startswith("Error opening"):  # libsndfile repeats the path: keep only the cause
            reason = reason.rsplit(": ", 1)[-1].rstrip(".")
        raise DataError(f"{path}: unreadable audio header ({reason}); re-export it as a 16 kHz mono PCM wav") from None
    return info.frames / info.samplerate if info.samplerate else 0.0


def corpus_stats(corpus: Corpus, *, read_audio_headers: bool = True) -> CorpusStats:
    """Count utterances per label and session and sum their durations.

    Args:
        corpus: Any corpus.
        read_audio_headers: For utterances whose listing gives no duration, take it from their audio
            file's header (cheap: nothing is decoded). With False, or without audio, such a label's
            duration is unknown.

    Returns:
        The breakdown, labels in the corpus's class order.

    Raises:
        DataError: An audio file whose header cannot be read.
    """
    counts: dict[str, dict[str, int]] = {lab: {} for lab in corpus.labels}
    seconds: dict[str, float | None] = {lab: 0.0 for lab in corpus.labels}
    for u in corpus.utterances:
        counts[u.label][u.session] = counts[u.label].get(u.session, 0) + 1
        duration = u.duration
        if duration is None and read_audio_headers and u.audio is not None:
            duration = audio_duration(u.audio)
        if duration is None:
            seconds[u.label] = None
        elif seconds[u.label] is not None:
            seconds[u.label] = seconds[u.label] + duration  # type: ignore[operator]
    return CorpusStats(sessions=corpus.sessions, labels=corpus.labels, counts=counts, seconds=seconds)
