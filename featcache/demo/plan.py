"""What the demo corpus holds, independent of the words and sounds: the generator's format, the sessions,
the label x session table (:func:`demo_raw_counts`, :func:`demo_counts`), the seeding of every draw and the
turn plan of each session's dialogs."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from featcache.data import PAPER_LABELS, PAPER_MERGE
from featcache.errors import FeatcacheError

#: Version of the generator; bumped whenever the same seed would give different bytes (2: the audio is speech).
DEMO_FORMAT = 2
#: The namespace every draw is seeded in (format 1's: format 2 draws the same words, and speaks them).
_DRAW_NAMESPACE = "featcache-demo-1"

#: Session names of the demo corpus (as the reader names them).
DEMO_SESSIONS: tuple[str, ...] = ("1", "2", "3", "4", "5")

#: Kept raw labels and their per-session counts in the IEMOCAP release (the paper's Table 1); the
#: demo corpus reproduces these proportions per session.
_RELEASE_COUNTS: dict[str, tuple[int, int, int, int, int]] = {
    "fru": (280, 325, 382, 481, 381),
    "ang": (229, 137, 240, 327, 170),
    "sad": (194, 197, 305, 143, 245),
    "hap": (135, 117, 135, 65, 143),
    "exc": (143, 210, 151, 238, 299),
}

#: Raw labels written but dropped by the paper's filter.
_DROPPED_LABELS: tuple[str, ...] = ("neu", "xxx", "sur")

_MAX_PER_SPEAKER = 1000
_TURNS_PER_DIALOG = 12


# --------------------------------------------------------------------------------------------
# Counts
# --------------------------------------------------------------------------------------------


def _largest_remainder(weights: Sequence[int], total: int) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (Hamilton's method; ties go to the earlier entry)."""
    s = sum(weights)
    quotas = [Fraction(w * total, s) for w in weights]
    out = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def _check_per_speaker(utterances_per_speaker: int) -> None:
    if (
        isinstance(utterances_per_speaker, bool)
        or not isinstance(utterances_per_speaker, int)
        or not 1 <= utterances_per_speaker <= _MAX_PER_SPEAKER
    ):
        raise FeatcacheError(
            f"utterances_per_speaker={utterances_per_speaker!r}: must be an integer from 1 to {_MAX_PER_SPEAKER}"
        )


def _dropped_per_speaker(utterances_per_speaker: int) -> dict[str, int]:
    k = max(1, (utterances_per_speaker + 10) // 20)  # 2 of each for the default 40
    return {"neu": k, "xxx": k, "sur": 1}


def _speaker_raw_counts(session: int, utterances_per_speaker: int) -> dict[str, int]:
    labels = list(_RELEASE_COUNTS)
    kept = _largest_remainder([_RELEASE_COUNTS[lab][session - 1] for lab in labels], utterances_per_speaker)
    out = dict(zip(labels, kept))
    out.update(_dropped_per_speaker(utterances_per_speaker))
    return out


def demo_raw_counts(*, utterances_per_speaker: int = 40) -> dict[str, dict[str, int]]:
    """Raw-label counts of the demo corpus, as written in its EmoEvaluation files.

    Each of the two speakers of a session has the same counts: ``utterances_per_speaker`` turns of
    the kept raw labels (``fru``, ``ang``, ``sad``, ``hap``, ``exc``) split in the proportions of the
    IEMOCAP release for that session, plus ``neu``, ``xxx`` and ``sur`` turns. The seed plays no part.

    Args:
        utterances_per_speaker: Kept turns per speaker (1 to 1000).

    Returns:
        ``counts[raw_label][session]`` for the raw labels ``fru, ang, sad, hap, exc, neu, xxx, sur``
        and the sessions ``"1"`` .. ``"5"``.

    Raises:
        FeatcacheError: ``utterances_per_speaker`` out of range.
    """
    _check_per_speaker(utterances_per_speaker)
    labels = [*_RELEASE_COUNTS, *_DROPPED_LABELS]
    out: dict[str, dict[str, int]] = {lab: {} for lab in labels}
    for s in range(1, len(DEMO_SESSIONS) + 1):
        per = _speaker_raw_counts(s, utterances_per_speaker)
        for lab in labels:
            out[lab][str(s)] = 2 * per[lab]
    return out


def demo_counts(
    *,
    utterances_per_speaker: int = 40,
    labels: Sequence[str] = PAPER_LABELS,
    merge: Mapping[str, str] = PAPER_MERGE,
) -> dict[str, dict[str, int]]:
    """Label x session counts that :func:`featcache.data.read_iemocap` reports on the demo corpus.

    For the defaults (40 per speaker, the paper's labels, ``exc`` merged into ``hap``)::

        label  Ses.1  Ses.2  Ses.3  Ses.4  Ses.5  Total
        ang       18     12     16     20     10     76
        sad       16     16     20     10     16     78
        hap       24     26     18     20     30    118
        fru       22     26     26     30     24    128

    Args:
        utterances_per_speaker: Kept turns per speaker (1 to 1000).
        labels: Labels kept by the reader, in class order.
        merge: Raw label -> kept label, as given to the reader.

    Returns:
        ``counts[label][session]`` for each label in ``labels`` and sessions ``"1"`` .. ``"5"``.

    Raises:
        FeatcacheError: ``utterances_per_speaker`` out of range.
    """
    raw = demo_raw_counts(utterances_per_speaker=utterances_per_speaker)
    out: dict[str, dict[str, int]] = {lab: {s: 0 for s in DEMO_SESSIONS} for lab in labels}
    for raw_label, per_session in raw.items():
        lab = merge.get(raw_label, raw_label)
        if lab in out:
            for s, n in per_session.items():
                out[lab][s] += n
    return out


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *parts: str) -> np.random.Generator:
    """A Generator seeded by hashing the corpus seed with the name of what it draws."""
    key = "\x1f".join([_DRAW_NAMESPACE, str(int(seed)), *parts])
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


# --------------------------------------------------------------------------------------------
# Dialog plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Turn:
    utt_id: str
    dialog: str
    speaker: str
    raw: str


def _plan_session(seed: int, session: int, utterances_per_speaker: int) -> dict[str, list[_Turn]]:
    """Dialog name -> its turns in order, for one session."""
    per = _speaker_raw_counts(session, utterances_per_speaker)
    n_turns = sum(per.values())
    n_dialogs = max(1, math.ceil(n_turns / _TURNS_PER_DIALOG))
    names = [
        f"Ses{session:02d}F_impro{i // 2 + 1:02d}" if i % 2 == 0 else f"Ses{session:02d}M_script{i // 2 + 1:02d}_1"
        for i in range(n_dialogs)
    ]
    by_gender: dict[str, list[list[str]]] = {}
    for gender in "FM":
        labels = [lab for lab, c in per.items() for _ in range(c)]
        order = _rng(seed, "plan", f"Ses{session:02d}{gender}").permutation(len(labels))
        shuffled = [labels[i] for i in order]
        by_gender[gender] = [shuffled[d::n_dialogs] for d in range(n_dialogs)]
    plan: dict[str, list[_Turn]] = {}
    for d, name in enumerate(names):
        lead = name[5]
        queues = {g: list(by_gender[g][d]) for g in "FM"}
        index = {"F": 0, "M": 0}
        turns: list[_Turn] = []
        g = lead
        while queues["F"] or queues["M"]:
            if not queues[g]:
                g = "M" if g == "F" else "F"
            raw = queues[g].pop(0)
            turns.append(_Turn(f"{name}_{g}{index[g]:03d}", name, f"Ses{session:02d}{g}", raw))
            index[g] += 1
            g = "M" if g == "F" else "F"
        plan[name] = turns
    return plan
