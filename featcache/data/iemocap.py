"""The IEMOCAP release reader: ``SessionN/dialog/EmoEvaluation``, ``SessionN/dialog/transcriptions``,
``SessionN/sentences/wav`` (the embedded demo corpus uses the same layout).

Every problem with the input raises :class:`~featcache.errors.DataError` with a one-line message that
names the file (and line) and what to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from featcache.data.audio import audio_path_error
from featcache.data.corpus import (
    PAPER_LABELS,
    PAPER_MERGE,
    Corpus,
    Utterance,
    _check_label_options,
    _clean_labels,
    _clean_merge,
    _make_corpus,
    _natural_key,
    _select_labels,
    _warn_unused_merge,
)
from featcache.errors import DataError

#: Every label the IEMOCAP release uses in its EmoEvaluation files.
IEMOCAP_VOCABULARY: frozenset[str] = frozenset(
    {"neu", "fru", "ang", "sad", "hap", "exc", "sur", "fea", "dis", "oth", "xxx"}
)

_EMO_LINE = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\]\t(?P<id>\S+)\t(?P<label>\S+)\t\[.*\]\s*$"
)
_TRANS_LINE = re.compile(r"^(?P<id>\S+)\s+\[[^\]]*\]:\s?(?P<text>.*)$")
_UTT_ID = re.compile(r"^Ses(?P<session>\d+)[FM]_.+_(?P<gender>[FM])[^_]*$")


def read_iemocap(
    root: str | Path,
    *,
    labels: Sequence[str] = PAPER_LABELS,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read a copy of the IEMOCAP release (or the demo corpus, which uses its layout).

    Args:
        root: Directory holding ``Session1`` .. ``Session5``.
        labels: Labels to keep, in class-index order (after merging); whitespace around each is stripped.
        merge: Raw label -> kept label; whitespace around each side is stripped. None: the paper's (``exc`` into
            ``hap``). A given merge whose source label no turn of this copy has is named in one warning line.
        name: Name recorded in the corpus; default ``iemocap:ROOT``.

    Returns:
        The corpus, utterances sorted by id. Utterances whose label is not kept are dropped. Each utterance's
        ``sex`` group is its speaker's, ``F`` or ``M``: the letter before the turn number of its id
        (``Ses01F_impro01_M013`` is the male speaker's turn; the letter of ``Ses01F`` belongs to the dialog,
        not to the turn).

    Raises:
        DataError: Missing directory, malformed EmoEvaluation line, unknown label, missing wav, a wav path that
            is a symbolic link loop.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{root}: corpus directory not found; pass the folder that holds Session1..Session5 "
            "(or run `featcache demo-data DIR` to make the demo corpus)"
        )
    given = merge is not None
    labels, merge = _clean_labels(labels), _clean_merge(PAPER_MERGE if merge is None else merge)
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
    raw_labels: set[str] = set()
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
                raw_labels.add(raw)
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
                    problem = audio_path_error(audio, listed=f"{emo_file.name}:{lineno}")
                    if problem is not None:
                        raise problem
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
                        groups={"sex": m["gender"]},
                    )
                )
    if any(wav_dirs_present) and not all(wav_dirs_present):
        missing = [str(s / "sentences" / "wav") for s, ok in zip(session_dirs, wav_dirs_present) if not ok]
        raise DataError(f"{missing[0]}: directory not found; other sessions have audio, restore it from the release")
    if given:
        _warn_unused_merge(merge, raw_labels, source=str(root))
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
