"""Readers of corpora whose file names carry everything: RAVDESS (``ravdess:DIR``) and CREMA-D (``crema-d:DIR``).

Neither publishes folds, so each has speaker-independent folds of consecutive actors, ``Fold 1`` .. ``Fold K``
(every actor in one fold; the dev set is carved out of the training side as for every corpus). The text of
an utterance is the sentence its file name codes (both corpora say a few fixed sentences in every emotion,
so the words carry no emotion).

RAVDESS (the ``Audio_Speech_Actors_01-24`` archive): ``Actor_NN/MM-VV-EE-II-SS-RR-NN.wav`` (modality, vocal
channel, emotion, intensity, statement, repetition, actor); the audio-only speech files (``03-01-...``) are
read, 6 folds of 4 actors (two men, two women: odd actors are male), the ``sex`` group from the actor.

CREMA-D: ``AudioWAV/AAAA_SSS_EEE_LL.wav`` (actor 1001..1091, sentence, emotion, level), 5 folds of actors.
"""

from __future__ import annotations

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

#: The classes kept by default: the four of the usual setup (the paper's, with neutral for frustration).
DEFAULT_LABELS: tuple[str, ...] = ("ang", "sad", "hap", "neu")

#: RAVDESS's emotion codes -> featcache's label names.
RAVDESS_EMOTIONS: dict[str, str] = {"01": "neu", "02": "cal", "03": "hap", "04": "sad", "05": "ang", "06": "fea",
                                    "07": "dis", "08": "sur"}
#: RAVDESS's statements.
RAVDESS_STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
#: CREMA-D's emotion codes -> featcache's label names.
CREMAD_EMOTIONS: dict[str, str] = {"ANG": "ang", "DIS": "dis", "FEA": "fea", "HAP": "hap", "NEU": "neu",
                                   "SAD": "sad"}
#: CREMA-D's sentences.
CREMAD_SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold", "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment", "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before", "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}

_RAVDESS = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_CREMAD = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
_RAVDESS_FOLD = 4  # actors per fold
_CREMAD_FOLDS = 5


def read_ravdess(
    root: str | Path,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read RAVDESS's audio-only speech files (see the module's docstring for the names and folds).

    Args:
        root: The folder holding ``Actor_01`` .. ``Actor_24`` (searched below it too).
        labels: Classes to keep, in class-index order (``neu``, ``cal``, ``hap``, ``sad``, ``ang``, ``fea``,
            ``dis``, ``sur``); default :data:`DEFAULT_LABELS`.
        merge: Class -> kept class (``cal=neu``).
        name: Name recorded in the corpus; default ``ravdess:ROOT``.

    Returns:
        The corpus, sorted by id (the file's stem): session ``Fold K`` of actors 4K-3..4K, speaker
        ``Actor_NN``, the statement's text, the ``sex`` group.

    Raises:
        DataError: A missing folder, no RAVDESS file in it, a name with an unknown emotion or statement code.
    """
    root = _folder(root, "RAVDESS", "Actor_01 .. Actor_24")
    found = []
    for path in sorted(root.rglob("*.wav")):
        m = _RAVDESS.fullmatch(path.stem)
        if m is None or m[1] != "03" or m[2] != "01":  # audio-only speech: not the videos' or the songs' audio
            continue
        emotion, statement, actor = m[3], m[5], int(m[7])
        if emotion not in RAVDESS_EMOTIONS or statement not in RAVDESS_STATEMENTS:
            raise DataError(f"{path}: emotion {emotion} or statement {statement} is no RAVDESS code; restore the "
                            "file's name from the release")
        found.append((path, RAVDESS_EMOTIONS[emotion], RAVDESS_STATEMENTS[statement], f"Actor_{actor:02d}",
                      f"Fold {(actor - 1) // _RAVDESS_FOLD + 1}", {"sex": "M" if actor % 2 else "F"}))
    return _corpus(root, found, labels=labels, merge=merge, name=name or f"ravdess:{root}", kind="RAVDESS",
                   form="03-01-EE-II-SS-RR-AA.wav")


def read_crema_d(
    root: str | Path,
    *,
    labels: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Corpus:
    """Read CREMA-D's audio files (see the module's docstring for the names and folds).

    Args:
        root: The release folder (holding ``AudioWAV/``) or ``AudioWAV`` itself.
        labels: Classes to keep, in class-index order (``ang``, ``dis``, ``fea``, ``hap``, ``neu``, ``sad``);
            default :data:`DEFAULT_LABELS`.
        merge: Class -> kept class.
        name: Name recorded in the corpus; default ``crema-d:ROOT``.

    Returns:
        The corpus, sorted by id (the file's stem): session ``Fold K`` (actors in 5 consecutive blocks),
        speaker the actor's number, the sentence's text.

    Raises:
        DataError: A missing folder, no CREMA-D file in it, a name with an unknown emotion or sentence code.
    """
    root = _folder(root, "CREMA-D", "AudioWAV/")
    found = []
    paths = [p for p in sorted(root.rglob("*.wav")) if _CREMAD.fullmatch(p.stem)]
    actors = sorted({int(p.stem[:4]) for p in paths})
    per_fold = -(-len(actors) // _CREMAD_FOLDS) if actors else 1
    for path in paths:
        m = _CREMAD.fullmatch(path.stem)
        assert m is not None
        if m[3] not in CREMAD_EMOTIONS or m[2] not in CREMAD_SENTENCES:
            raise DataError(f"{path}: emotion {m[3]} or sentence {m[2]} is no CREMA-D code; restore the file's "
                            "name from the release")
        fold = actors.index(int(m[1])) // per_fold + 1
        found.append((path, CREMAD_EMOTIONS[m[3]], CREMAD_SENTENCES[m[2]], m[1], f"Fold {fold}", {}))
    return _corpus(root, found, labels=labels, merge=merge, name=name or f"crema-d:{root}", kind="CREMA-D",
                   form="AAAA_SSS_EEE_LL.wav")


def _folder(root: str | Path, kind: str, holds: str) -> Path:
    """The corpus folder, checked to exist.

    Raises:
        DataError: It does not.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: {kind} folder not found; pass the folder holding {holds}")
    return path


def _corpus(root: Path, found: list[tuple[Path, str, str, str, str, dict[str, str]]], *,
            labels: Sequence[str] | None, merge: Mapping[str, str] | None, name: str, kind: str, form: str) -> Corpus:
    """The corpus of the files found: (path, class, text, speaker, fold, groups) each.

    Raises:
        DataError: No file found, bad ``labels``/``merge``, a file name found twice, a symbolic link loop.
    """
    if not found:
        raise DataError(f"{root}: no {kind} audio file ({form}) in it or below; pass the folder of the release")
    vocabulary = {f[1] for f in found}
    merge = _clean_merge(merge or {})
    kept = [lab for lab in DEFAULT_LABELS if lab in vocabulary or lab in merge.values()]
    labels = _label_set(labels, merge, vocabulary, default=kept, source=str(root))
    utts = []
    seen: dict[str, Path] = {}
    for path, raw, text, speaker, fold, groups in found:
        if path.stem in seen:
            raise DataError(f"{path}: the same file name as {seen[path.stem]}; keep one copy of the release")
        seen[path.stem] = path
        lab = _select_labels(raw, labels=labels, merge=merge)
        if lab is None:
            continue
        problem = audio_path_error(path)
        if problem is not None:
            raise problem
        utts.append(Utterance(id=path.stem, session=fold, speaker=speaker, label=lab, text=text,
                              audio=path.resolve(), duration=None, groups=groups))
    return _make_corpus(name, root, utts, labels)
