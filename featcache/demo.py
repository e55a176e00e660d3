"""The embedded demo corpus: a small synthetic corpus in the IEMOCAP release layout.

``featcache demo-data DIR`` calls :func:`write_demo_corpus`, and the corpus is read back by the
ordinary IEMOCAP reader (:func:`featcache.data.read_iemocap`), so every stage of the pipeline can be
run end to end without the real release.

Layout (as in the release)::

    DIR/SessionN/dialog/EmoEvaluation/<dialog>.txt
    DIR/SessionN/dialog/transcriptions/<dialog>.txt
    DIR/SessionN/sentences/wav/<dialog>/<utterance>.wav      (16 kHz mono 16-bit PCM, 1-4 s)
    DIR/README_DEMO.txt                                       (seed and label table)

Five sessions, two speakers each (``Ses0NF`` and ``Ses0NM``), dialogs ``Ses0NF_impro0K`` and
``Ses0NM_script0K_1`` holding turns of both speakers. Every speaker has ``utterances_per_speaker``
turns labelled ``fru``, ``ang``, ``sad``, ``hap`` or ``exc`` in the per-session proportions of the
IEMOCAP release (the paper's Table 1), plus a few ``neu``, ``xxx`` and ``sur`` turns that the paper's
label filter drops. The table is a function of ``utterances_per_speaker`` only
(:func:`demo_raw_counts`, :func:`demo_counts`); the seed changes words and sounds, never counts.

How emotion is encoded. Each modality alone is informative but imperfect and the two complement
each other, as in speech: words tell valence better, the voice tells arousal better.

* Text comes from sentence templates whose adjective and noun slots carry the emotion (so masking
  adjectives or nouns removes information, masking as many random words removes less); function
  words and verbs are neutral, a few interjections carry a little. Each slot takes a word of the
  utterance's own class, a word shared by all negative classes, a word of another class or a
  neutral word, so ``hap`` is told apart from the negative classes well while ``ang``, ``fru`` and
  ``sad`` are confused among themselves; 35-40% of the utterances have no adjective.
* Audio is a source-filter synthesis in numpy: a harmonic voiced source following an F0 contour
  (declination, pitch accents, question rises, jitter), shaped by vowel formants that change from
  syllable to syllable, a spectral tilt, syllable envelopes, consonant and breath noise and a
  faint noise floor. Speakers differ in base F0 (female/male plus an offset), formant scale,
  recording level and rate. The emotion is in the prosody relative to the speaker: F0 level (a few
  semitones apart and overlapping, so a one-semitone pitch shift moves some utterances across a
  class boundary), F0 range, level, speaking rate, tilt and breathiness: high arousal (``ang``,
  ``hap``) is told apart from ``fru`` and ``sad`` well, ``ang`` from ``hap`` poorly.

``bench/demo_design_check.py`` measures all of this with simple features (bag of words; F0, energy
and rate summaries) in leave-one-session-out cross-validation, with and without the paper's attacks.

Every random draw comes from a numpy Generator seeded by hashing ``seed`` with the name of what is
drawn (an utterance id, a speaker, a dialog), so files do not depend on generation order and the
same seed gives byte-identical files (with the same numpy build; another platform's math library
could round a sample differently).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from featcache.data import PAPER_LABELS, PAPER_MERGE, SAMPLE_RATE
from featcache.errors import FeatcacheError

__all__ = [
    "DEMO_FORMAT",
    "DEMO_SESSIONS",
    "DemoSummary",
    "demo_counts",
    "demo_raw_counts",
    "write_demo_corpus",
]

#: Version of the generator; bumped whenever the same seed would give different bytes.
DEMO_FORMAT = 1

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
_CLIP_MIN_S = 1.0
_CLIP_MAX_S = 4.0


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
    key = "\x1f".join([f"featcache-demo-{DEMO_FORMAT}", str(int(seed)), *parts])
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

#: Emotion-bearing adjectives and nouns. ``neg`` words are shared by ang, sad and fru; ``neutral``
#: words carry nothing. ``exc`` uses the ``hap`` words.
_ADJ: dict[str, tuple[str, ...]] = {
    "hap": tuple("happy great wonderful amazing fantastic lovely perfect beautiful glad awesome".split()),
    "ang": tuple("furious outrageous disgusting rude pathetic mad hostile arrogant stupid dishonest".split()),
    "sad": tuple("sad lonely miserable hopeless empty gloomy depressed sorry tragic unhappy".split()),
    "fru": tuple("annoying useless confusing messy slow impossible pointless tedious endless ridiculous".split()),
    "sur": tuple("surprising unexpected shocking strange weird sudden".split()),
    "neg": tuple("awful terrible bad horrible unfair wrong".split()),
    "neutral": tuple(
        "new old big small long quiet different usual normal busy early late simple cold warm fine".split()
    ),
}
_NOUN: dict[str, tuple[str, ...]] = {
    "hap": tuple("party wedding promotion vacation holiday celebration luck fun dream gift".split()),
    "ang": tuple("nonsense insult lie idiot jerk garbage crap outrage attitude betrayal".split()),
    "sad": tuple("funeral loss grief goodbye loneliness death pain sorrow illness breakup".split()),
    "fru": tuple("paperwork form delay queue hassle traffic bureaucracy deadline system printer".split()),
    "sur": tuple("surprise shock news twist".split()),
    "neg": tuple("problem trouble mistake mess disaster nightmare".split()),
    "neutral": tuple(
        "thing day car house office phone guy week money room letter meeting plan weekend job dinner".split()
    ),
}

#: Sentence openers; the class ones carry a little emotion outside adjectives and nouns.
_OPENERS: dict[str, tuple[str, ...]] = {
    "neutral": tuple("Well,|Okay,|So,|Yeah,|Oh,|Um,|Look,|I mean,|You know,|Listen,|Honestly,".split("|")),
    "hap": ("Wow,", "Yay,", "Oh my gosh,"),
    "ang": ("Damn it,", "Hey,"),
    "sad": ("Oh no,", "Oh god,"),
    "fru": ("Ugh,", "Seriously,"),
    "sur": ("Whoa,", "What,"),
}

#: Sentence templates; ``{A}`` is an adjective slot, ``{N}`` a noun slot, ``{a}`` an article
#: agreeing with the next word.
_TEMPLATES_ADJ: tuple[str, ...] = (
    "The {N} is {A}.",
    "This {N} is so {A}.",
    "It's {A}.",
    "That's {A}.",
    "It all seems so {A}.",
    "It's getting {A}.",
    "What {a} {A} {N}.",
    "It was {a} {A} {N}, honestly.",
    "I can't believe how {A} the {N} was.",
    "Everything about the {N} was {A}.",
    "Why is the {N} always so {A}?",
    "We had the most {A} {N} yesterday.",
    "Don't tell me it's {A}.",
    "She said the {N} was {A} and {A}.",
    "It's just {A}, you know?",
    "I've never seen anything so {A}.",
    "Do you think it's {A}?",
    "The whole {N} felt {A}.",
    "He was {A} about the {N}.",
    "It's {a} {A} {N}.",
    "That {N} was really {A}.",
    "Isn't it {A}?",
)
_TEMPLATES_NOUN: tuple[str, ...] = (
    "It's about the {N}.",
    "I keep thinking about the {N}.",
    "There's the {N} again.",
    "Tell me about the {N}.",
    "We need to talk about the {N}.",
    "What about the {N}?",
    "I got the {N} today.",
    "It's all because of the {N}.",
    "I was there for the {N}.",
    "That's the {N} I told you about.",
    "Look at this {N}.",
    "Did you hear about the {N}?",
    "My mother called about the {N}.",
    "It's the {N} and the {N}.",
    "I didn't expect the {N}.",
    "We went through the {N} together.",
)
_TEMPLATES_PLAIN: tuple[str, ...] = (
    "You know what I mean.",
    "I don't know what to say.",
    "Can we just go home?",
    "I told you, I was there.",
    "Yeah, I did.",
    "Well, that's it then.",
    "I don't want to talk about it.",
    "Let me think about it for a second.",
    "And then he called me.",
    "What do you want me to do?",
    "We've been here for an hour.",
    "I'm here.",
    "Are you serious?",
    "I did what you asked.",
    "It doesn't matter now.",
    "Why would you say that?",
    "I'll be right back.",
    "Just listen to me.",
)

#: Per class: probability that the whole utterance is worded neutrally, then for each slot the
#: probabilities of drawing a word of the own class, of the shared negative pool, of another class.
_TEXT_CUES: dict[str, tuple[float, float, float, float]] = {
    #       flat   own   neg   other
    "hap": (0.06, 0.85, 0.03, 0.04),
    "exc": (0.06, 0.85, 0.03, 0.04),
    "ang": (0.06, 0.64, 0.18, 0.07),
    "sad": (0.06, 0.66, 0.17, 0.07),
    "fru": (0.06, 0.64, 0.18, 0.07),
    "neu": (0.70, 0.00, 0.08, 0.12),
    "sur": (0.25, 0.45, 0.05, 0.20),
}
#: Which other classes a slot borrows from (negatives mostly confuse each other).
_OTHER_CLASS: dict[str, tuple[str, ...]] = {
    "hap": ("ang", "sad", "fru", "sur"),
    "exc": ("ang", "sad", "fru", "sur"),
    "ang": ("fru", "fru", "sad", "hap"),
    "sad": ("fru", "fru", "ang", "hap"),
    "fru": ("ang", "ang", "sad", "hap"),
    "neu": ("hap", "ang", "sad", "fru"),
    "sur": ("hap", "hap", "ang", "sad"),
}
_NOUN_CUE_SCALE = 0.85
_OPENER_P = 0.35  # share of utterances that start with an opener
_CLASS_OPENER_P = 0.36  # share of those openers that carry the class (when the wording is not neutral)
_EXCLAIM_P = 0.12  # class-independent, so punctuation tells nothing
_TRAIL_P = 0.05
_AN_EXCEPTIONS = frozenset({"useless", "usual", "unique", "one", "university"})


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" and word.lower() not in _AN_EXCEPTIONS else "a"


def _draw_word(rng: np.random.Generator, pool: Mapping[str, tuple[str, ...]], cls: str, flat: bool) -> str:
    _, p_own, p_neg, p_other = _TEXT_CUES[cls]
    source = "neutral"
    if not flat:
        # noun slots are more often neutral than adjective slots (nouns are twice as frequent)
        u = rng.random() / (_NOUN_CUE_SCALE if pool is _NOUN else 1.0)
        own = "hap" if cls == "exc" else cls
        if u < p_own:
            source = own
        elif u < p_own + p_neg:
            source = "neg"
        elif u < p_own + p_neg + p_other:
            source = str(rng.choice(_OTHER_CLASS[cls]))
    words = pool[source]
    return str(words[rng.integers(len(words))])


def _fill(template: str, rng: np.random.Generator, cls: str, flat: bool) -> str:
    parts = re.split(r"(\{[ANa]\})", template)
    out: list[str] = []
    pending_article = -1
    for part in parts:
        if part == "{A}":
            word = _draw_word(rng, _ADJ, cls, flat)
        elif part == "{N}":
            word = _draw_word(rng, _NOUN, cls, flat)
        elif part == "{a}":
            pending_article = len(out)
            out.append("a")
            continue
        else:
            out.append(part)
            continue
        if pending_article >= 0:
            out[pending_article] = _article(word)
            pending_article = -1
        out.append(word)
    return "".join(out)


def _punctuate(sentence: str, rng: np.random.Generator) -> str:
    """Turn some full stops into exclamation marks or trailing dots."""
    if sentence.endswith("."):
        u = rng.random()
        if u < _EXCLAIM_P:
            return sentence[:-1] + "!"
        if u < _EXCLAIM_P + _TRAIL_P:
            return sentence[:-1] + "..."
    return sentence


def _choose_template(rng: np.random.Generator) -> str:
    u = rng.random()
    group = _TEMPLATES_ADJ if u < 0.48 else _TEMPLATES_NOUN if u < 0.87 else _TEMPLATES_PLAIN
    return str(group[rng.integers(len(group))])


@dataclass(frozen=True)
class _Text:
    text: str
    n_words: int
    n_syllables: int
    sentence_ends: tuple[int, ...]  # word index after which each sentence ends
    questions: tuple[bool, ...]  # per sentence


def _syllables(word: str) -> int:
    return max(1, len(re.findall(r"[aeiouy]+", word.lower().strip(".,?!'"))))


def _make_text(rng: np.random.Generator, cls: str) -> _Text:
    """Draw a 3-25 word utterance whose adjectives and nouns carry the class."""
    if cls == "xxx":  # no agreement: words of one class, but a neutral or mixed wording is likelier
        cls = str(rng.choice(["ang", "sad", "fru", "hap", "neu", "neu"]))
    flat = rng.random() < _TEXT_CUES[cls][0]
    for _ in range(50):
        n_sent = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
        sentences = [_punctuate(_fill(_choose_template(rng), rng, cls, flat), rng) for _ in range(n_sent)]
        if rng.random() < _OPENER_P:
            own = "hap" if cls == "exc" else cls
            emotional = own in _OPENERS and not flat and rng.random() < _CLASS_OPENER_P
            pool = _OPENERS[own] if emotional else _OPENERS["neutral"]
            opener = str(pool[rng.integers(len(pool))])
            first = sentences[0]
            if not re.match(r"I\b|I'", first):
                first = first[0].lower() + first[1:]
            sentences[0] = f"{opener} {first}"
        words = " ".join(sentences).split()
        if 3 <= len(words) <= 25:
            break
    else:  # practically unreachable; keeps the 3-25 word promise
        sentences = ["I don't know what to say."]
        words = sentences[0].split()
    ends: list[int] = []
    count = 0
    for s in sentences:
        count += len(s.split())
        ends.append(count)
    return _Text(
        text=" ".join(sentences),
        n_words=len(words),
        n_syllables=sum(_syllables(w) for w in words),
        sentence_ends=tuple(ends),
        questions=tuple(s.rstrip().endswith("?") for s in sentences),
    )


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Voice:
    """Speaker constants."""

    f0_st: float  # base F0 in semitones re 1 Hz
    formant_scale: float
    gain_db: float
    rate_scale: float
    range_scale: float
    tilt_db: float
    breath: float


@dataclass(frozen=True)
class _Prosody:
    """Class means of the prosodic cues, relative to the speaker."""

    f0_st: float  # F0 level offset in semitones
    range_st: float  # F0 excursion in semitones
    level_db: float  # active-speech level offset in dB
    rate: float  # syllables per second
    tilt_db: float  # spectral tilt offset in dB per octave (positive = brighter)
    breath: float  # aspiration noise relative to voicing


#: ang and hap differ little; high arousal vs fru vs sad differ a lot; F0 levels overlap.
_PROSODY: dict[str, _Prosody] = {
    "ang": _Prosody(f0_st=2.6, range_st=4.6, level_db=5.5, rate=4.9, tilt_db=2.0, breath=0.05),
    "hap": _Prosody(f0_st=3.0, range_st=5.6, level_db=4.0, rate=4.6, tilt_db=1.0, breath=0.06),
    "exc": _Prosody(f0_st=3.4, range_st=6.0, level_db=5.0, rate=4.9, tilt_db=1.5, breath=0.06),
    "fru": _Prosody(f0_st=1.0, range_st=3.4, level_db=0.5, rate=4.0, tilt_db=-0.5, breath=0.08),
    "sad": _Prosody(f0_st=-1.0, range_st=2.2, level_db=-4.0, rate=3.3, tilt_db=-2.5, breath=0.14),
    "neu": _Prosody(f0_st=0.0, range_st=3.0, level_db=0.0, rate=4.0, tilt_db=-1.0, breath=0.07),
    "sur": _Prosody(f0_st=4.5, range_st=7.5, level_db=3.5, rate=4.2, tilt_db=0.5, breath=0.07),
}
#: Utterance-to-utterance spread of each cue (standard deviations, same units).
_SPREAD = _Prosody(f0_st=2.0, range_st=1.5, level_db=3.5, rate=0.65, tilt_db=2.2, breath=0.04)

#: Vowel formants (Hz), adult male; female voices scale them up.
_VOWELS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),  # a
    (270.0, 2290.0, 3010.0),  # i
    (300.0, 870.0, 2240.0),  # u
    (530.0, 1840.0, 2480.0),  # e
    (570.0, 840.0, 2410.0),  # o
    (660.0, 1720.0, 2410.0),  # ae
    (490.0, 1350.0, 1690.0),  # er
    (640.0, 1190.0, 2390.0),  # uh
)
_BANDWIDTHS = np.array([90.0, 110.0, 170.0, 250.0])
_F4 = 3500.0
_HOP = 80  # control rate: 5 ms
_TARGET_DB = -29.5  # active-speech level of a neutral utterance (rms ~0.033)
_NOISE_FLOOR = 6e-4


def _make_voice(seed: int, speaker: str) -> _Voice:
    rng = _rng(seed, "voice", speaker)
    female = speaker.endswith("F")
    base_hz = 205.0 if female else 115.0
    return _Voice(
        f0_st=12.0 * math.log2(base_hz) + float(rng.normal(0.0, 1.2)),
        formant_scale=(1.14 if female else 1.0) * math.exp(float(rng.normal(0.0, 0.03))),
        gain_db=float(rng.normal(0.0, 2.0)),
        rate_scale=math.exp(float(rng.normal(0.0, 0.07))),
        range_scale=math.exp(float(rng.normal(0.0, 0.15))),
        tilt_db=float(rng.normal(0.0, 1.0)),
        breath=float(abs(rng.normal(0.0, 0.015))),
    )


def _draw_prosody(rng: np.random.Generator, raw: str) -> _Prosody:
    if raw == "xxx":  # no agreement: a blend of two classes
        a, b = rng.choice(["ang", "hap", "sad", "fru", "neu"], size=2, replace=False)
        w = float(rng.uniform(0.3, 0.7))
        pa, pb = _PROSODY[str(a)], _PROSODY[str(b)]
        mean = _Prosody(*(w * x + (1 - w) * y for x, y in zip(_astuple(pa), _astuple(pb))))
    else:
        mean = _PROSODY[raw]
    z = np.clip(rng.normal(size=6), -2.5, 2.5)
    draw = [m + s * float(x) for m, s, x in zip(_astuple(mean), _astuple(_SPREAD), z)]
    draw[1] = max(draw[1], 0.5)  # range
    draw[3] = max(draw[3], 2.0)  # rate
    draw[5] = max(draw[5], 0.0)  # breath
    return _Prosody(*draw)


def _astuple(p: _Prosody) -> tuple[float, float, float, float, float, float]:
    return (p.f0_st, p.range_st, p.level_db, p.rate, p.tilt_db, p.breath)


@functools.lru_cache(maxsize=64)
def _band_shape(size: int, lo: float, hi: float) -> np.ndarray:
    """Magnitude of a smooth band-pass (4th-order skirts) on the rfft bins of a ``size``-point FFT."""
    f = np.maximum(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE), 1.0)
    shape = 1.0 / ((1.0 + (lo / f) ** 4) * (1.0 + (f / hi) ** 4))
    shape.setflags(write=False)
    return shape


def _shaped_noises(rng: np.random.Generator, n: int, bands: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Unit-rms noises with smooth band-pass spectra, one per ``(lo, hi)`` band in Hz.

    They share one white-noise draw, made directly as a complex Gaussian spectrum (their envelopes
    never overlap much, so the sharing is inaudible).
    """
    size = 1 << max(n - 1, 1).bit_length()  # power-of-two FFT, cropped
    m = size // 2 + 1
    spec = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    out = []
    for lo, hi in bands:
        y = np.fft.irfft(spec * _band_shape(size, lo, hi), size)[:n]
        out.append(y / (math.sqrt(float(np.dot(y, y)) / n) + 1e-12))
    return out


def _synthesize(rng: np.random.Generator, voice: _Voice, pros: _Prosody, text: _Text) -> np.ndarray:
    """Render one utterance as float64 samples in [-1, 1]."""
    sr = SAMPLE_RATE
    rate = pros.rate * voice.rate_scale
    # -- timing: syllables, phrase pauses, leading and trailing silence ---------------------
    lead = float(rng.uniform(0.08, 0.25))
    tail = float(rng.uniform(0.10, 0.30))
    n_sent = len(text.sentence_ends)
    pauses_total = 0.35 * (n_sent - 1)  # upper bound of the phrase pauses drawn below
    budget = _CLIP_MAX_S - 0.05 - lead - tail - pauses_total
    n_syl = int(min(max(text.n_syllables, 2), max(2, math.floor(budget * rate))))
    durs = rng.gamma(6.0, 1.0 / 6.0, n_syl) / rate
    if durs.sum() > budget:
        durs *= budget / durs.sum()
    # sentence boundaries in syllables (proportional to words)
    cut = sorted({min(n_syl - 1, max(1, round(e / text.n_words * n_syl))) for e in text.sentence_ends[:-1]})
    pauses = np.zeros(n_syl)
    for c in cut:
        pauses[c - 1] = float(rng.uniform(0.12, 0.35))
    starts = lead + np.concatenate([[0.0], np.cumsum(durs + pauses)[:-1]])
    speech_end = float(starts[-1] + durs[-1])
    total = max(speech_end + tail, _CLIP_MIN_S + float(rng.uniform(0.0, 0.2)))
    total = min(total, _CLIP_MAX_S - 0.01)
    n = int(round(total * sr))
    n_frames = n // _HOP + 2
    tf = np.arange(n_frames) * (_HOP / sr)

    # -- per-syllable plan -----------------------------------------------------------------
    vowels = rng.integers(len(_VOWELS), size=n_syl)
    stressed = rng.random(n_syl) < 0.38
    stressed[0] |= rng.random() < 0.5
    onset_frac = np.where(rng.random(n_syl) < 0.65, rng.uniform(0.15, 0.35, n_syl), 0.0)
    prominence = np.where(stressed, 1.0, rng.uniform(0.5, 0.85, n_syl))
    nuc_start = starts + onset_frac * durs
    nuc_end = starts + durs
    nuc_mid = 0.5 * (nuc_start + nuc_end)

    # -- F0 contour (semitones) --------------------------------------------------------------
    rng_st = pros.range_st * voice.range_scale
    level = voice.f0_st + pros.f0_st
    pos = np.clip((tf - lead) / max(speech_end - lead, 1e-3), 0.0, 1.0)
    f0 = level + rng_st * 0.35 * (0.5 - pos)  # declination
    for a in np.flatnonzero(stressed):  # pitch accents
        height = rng_st * float(rng.uniform(0.35, 0.8))
        f0 += height * np.exp(-0.5 * ((tf - nuc_mid[a]) / (0.45 * durs[a])) ** 2)
    for q, e in zip(text.questions, [*cut, n_syl]):
        if q:  # final rise over the last syllable of the sentence
            last = e - 1
            f0 += rng_st * 0.7 * np.clip((tf - starts[last]) / durs[last], 0.0, 1.0) * (tf <= nuc_end[last] + 0.1)
    wander = np.cumsum(rng.normal(0.0, 0.08, n_frames))
    wander = np.convolve(wander - wander.mean(), np.ones(20) / 20, mode="same")
    f0 = f0 + wander + rng.normal(0.0, 0.06, n_frames)  # slow drift, jitter
    f0_hz_frames = 2.0 ** (f0 / 12.0)

    # -- control-rate envelopes ------------------------------------------------------------
    voiced = np.zeros(n_frames)
    fric = np.zeros(n_frames)
    decl = 1.0 - 0.25 * pos
    for i in range(n_syl):
        x = (tf - nuc_start[i]) / max(nuc_end[i] - nuc_start[i], 1e-3)
        m = (x > 0) & (x < 1)
        voiced[m] = np.maximum(voiced[m], prominence[i] * np.sin(np.pi * x[m]) ** 0.6)
        if onset_frac[i] > 0:
            xo = (tf - starts[i]) / max(nuc_start[i] - starts[i], 1e-3)
            mo = (xo > 0) & (xo < 1)
            fric[mo] = np.maximum(fric[mo], np.sin(np.pi * xo[mo]) ** 2)
    voiced *= decl * np.exp(rng.normal(0.0, 0.04, n_frames))  # shimmer

    # formant tracks: vowel targets at nucleus centres, interpolated in between
    targets = np.array([_VOWELS[v] for v in vowels]) * voice.formant_scale
    formants = np.stack([np.interp(tf, nuc_mid, targets[:, j]) for j in range(3)])  # (3, F)
    freqs = np.vstack([formants, np.full((1, n_frames), _F4 * voice.formant_scale)])  # (4, F)

    # -- harmonic voiced source through the formant envelope --------------------------------
    ramp = (np.arange(_HOP) / _HOP).astype(np.float32)

    def up(a: np.ndarray) -> np.ndarray:
        """Linear interpolation from the control rate to the sample rate."""
        a32 = a.astype(np.float32)
        return (a32[:-1, None] + (a32[1:] - a32[:-1])[:, None] * ramp[None, :]).ravel()[:n]

    f0_s = up(f0_hz_frames)
    phase = 2.0 * np.pi * np.cumsum(f0_s, dtype=np.float64) / sr + float(rng.uniform(0, 2 * np.pi))
    z1 = np.exp(1j * phase).astype(np.complex64)
    tilt = -6.0 + pros.tilt_db + voice.tilt_db  # dB per octave
    n_harm = int(min(60, 5000.0 / f0_hz_frames.min()))
    k = np.arange(1, n_harm + 1)[:, None]
    fk = k * f0_hz_frames[None, :]  # (K, F)
    gain = (fk / 100.0) ** (tilt / (20.0 * math.log10(2.0)))
    for j in range(4):
        F = freqs[j][None, :]
        B = _BANDWIDTHS[j]
        gain = gain * F**2 / np.sqrt((F**2 - fk**2) ** 2 + (B * fk) ** 2)
    gain = np.where(fk < 7600.0, gain, 0.0)
    y32 = np.zeros(n, dtype=np.float32)
    zk = z1.copy()
    for h in range(n_harm):
        y32 += up(gain[h]) * zk.imag
        zk *= z1
    y = y32.astype(np.float64)
    env_v = up(voiced).astype(np.float64)
    y *= env_v
    active = env_v > 0.1
    ref = math.sqrt(float(np.mean(y[active] ** 2))) if active.any() else 1.0

    # -- noise: breath during voicing, frication at onsets ------------------------------------
    breath = (pros.breath + voice.breath) * ref
    aspiration, frication, floor = _shaped_noises(
        rng, n, [(400.0, 5000.0), (2500.0 + 100.0 * float(rng.integers(21)), 7000.0), (60.0, 4000.0)]
    )
    y += breath * env_v * (1.0 + 0.5 * np.cos(phase)) * aspiration
    y += 0.35 * ref * up(fric).astype(np.float64) * frication

    # -- level: active-speech rms to the class and speaker target, then the noise floor -------
    target = 10.0 ** ((_TARGET_DB + pros.level_db + voice.gain_db) / 20.0)
    rms = math.sqrt(float(np.mean(y[active] ** 2))) if active.any() else 1.0
    y *= target / max(rms, 1e-9)
    peak = float(np.max(np.abs(y)))
    if peak > 0.6:
        y *= 0.6 / peak
    y += _NOISE_FLOOR * floor
    return np.clip(y, -1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------

_CATEGORY = {
    "ang": "Anger",
    "sad": "Sadness",
    "hap": "Happiness",
    "exc": "Excited",
    "fru": "Frustration",
    "neu": "Neutral state",
    "sur": "Surprise",
}
_CONFUSED = {
    "ang": ("fru", "exc"),
    "sad": ("fru", "neu"),
    "hap": ("exc", "neu"),
    "exc": ("hap", "sur"),
    "fru": ("ang", "neu"),
    "neu": ("fru", "sad"),
    "sur": ("exc", "neu"),
}
#: Mean valence, activation, dominance (1-5) of each category.
_VAD = {
    "ang": (1.8, 4.0, 3.9),
    "sad": (2.0, 2.2, 2.2),
    "hap": (4.0, 3.1, 3.1),
    "exc": (4.1, 3.8, 3.3),
    "fru": (2.0, 3.2, 3.2),
    "neu": (3.0, 2.6, 2.8),
    "sur": (3.4, 3.9, 2.9),
}


def _annotation_lines(rng: np.random.Generator, raw: str, gender: str) -> tuple[tuple[float, float, float], list[str]]:
    """Evaluator lines of one turn (majority agrees with ``raw``; none for ``xxx``) and its mean VAD."""
    evaluators = sorted(int(e) for e in rng.choice(np.arange(1, 7), size=3, replace=False))
    if raw == "xxx":
        cats = [str(c) for c in rng.choice(["ang", "sad", "hap", "exc", "fru", "neu"], size=3, replace=False)]
    else:
        cats = [raw, raw, str(rng.choice(_CONFUSED[raw])) if rng.random() < 0.5 else raw]
        cats = [cats[i] for i in rng.permutation(3)]
    lines = [f"C-E{e}:\t{_CATEGORY[c]};\t()" for e, c in zip(evaluators, cats)]
    lines.append(f"C-{gender}1:\t{_CATEGORY[cats[0]]};\t()")
    vads = []
    for e, c in zip(evaluators[:2], cats[:2]):
        v, a, d = (int(np.clip(round(m + rng.normal(0.0, 0.6)), 1, 5)) for m in _VAD[c])
        vads.append((v, a, d))
        lines.append(f"A-E{e}:\tval {v}; act {a}; dom  {d};\t()")
    mean = tuple(float(np.mean([x[i] for x in vads])) for i in range(3))
    return (mean[0], mean[1], mean[2]), lines


# --------------------------------------------------------------------------------------------
# Corpus writer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`write_demo_corpus` wrote.

    Attributes:
        root: The corpus directory (pass it as ``iemocap:ROOT``).
        seed: Seed it was generated from.
        utterances_per_speaker: Kept turns per speaker.
        counts: ``counts[label][session]`` the reader reports (paper labels, ``exc`` merged into ``hap``).
        raw_counts: ``raw_counts[raw_label][session]`` as written, dropped labels included.
        n_utterances: Kept utterances (sum of ``counts``).
        n_turns: Turns written (wav files), dropped ones included.
        seconds: Total audio duration of all turns.
    """

    root: Path
    seed: int
    utterances_per_speaker: int
    counts: dict[str, dict[str, int]]
    raw_counts: dict[str, dict[str, int]]
    n_utterances: int
    n_turns: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.n_utterances} utterances kept of {self.n_turns} turns, 5 sessions x 2 speakers, "
            f"{self.seconds / 60:.1f} min of audio, seed {self.seed}"
        )


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


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FeatcacheError(f"{out_dir}: exists and is not a directory; choose a directory path for the demo corpus")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise FeatcacheError(
                f"{out_dir}: directory is not empty; choose a new or empty directory, or pass --overwrite "
                "(overwrite=True) to replace its demo corpus"
            )
        for p in out_dir.iterdir():
            if re.fullmatch(r"Session\d+", p.name) or p.name in (".demo-partial", "README_DEMO.txt"):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FeatcacheError(f"{out_dir}: cannot create the directory ({e.strerror}); choose a writable path") from None


def write_demo_corpus(
    out_dir: str | Path,
    *,
    seed: int = 0,
    utterances_per_speaker: int = 40,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Write the synthetic demo corpus in the IEMOCAP release layout.

    The same arguments give byte-identical files. The label x session table depends only on
    ``utterances_per_speaker`` (:func:`demo_counts`); the default gives 400 kept utterances (of 460
    turns) and takes a few seconds.

    Args:
        out_dir: Directory to write; created if missing. Read it back with
            ``featcache.data.load_corpus("iemocap:OUT_DIR")``.
        seed: Seed of every word and sound.
        utterances_per_speaker: Kept turns per speaker (1 to 1000); each speaker also gets a few
            ``neu``, ``xxx`` and ``sur`` turns that the paper's filter drops.
        overwrite: Replace the demo corpus of a non-empty ``out_dir``: its ``SessionN`` folders and
            ``README_DEMO.txt`` are removed first; other entries are left alone.
        progress: Called as ``progress(done, total)`` after each turn is written.

    Returns:
        A summary with the label tables and the amount of audio.

    Raises:
        FeatcacheError: ``out_dir`` is not empty and ``overwrite`` is False, is a file, or
            ``utterances_per_speaker`` is out of range.
    """
    import soundfile as sf

    _check_per_speaker(utterances_per_speaker)
    seed = int(seed)
    out_dir = Path(out_dir).expanduser()
    _prepare_dir(out_dir, overwrite)
    partial = out_dir / ".demo-partial"
    partial.mkdir()
    plans = {s: _plan_session(seed, s, utterances_per_speaker) for s in range(1, len(DEMO_SESSIONS) + 1)}
    total_turns = sum(len(t) for p in plans.values() for t in p.values())
    done = 0
    seconds = 0.0
    voices = {f"Ses{s:02d}{g}": _make_voice(seed, f"Ses{s:02d}{g}") for s in plans for g in "FM"}
    try:
        for s, plan in plans.items():
            sdir = partial / f"Session{s}"
            emo_dir = sdir / "dialog" / "EmoEvaluation"
            trans_dir = sdir / "dialog" / "transcriptions"
            emo_dir.mkdir(parents=True)
            trans_dir.mkdir(parents=True)
            for dialog, turns in plan.items():
                wav_dir = sdir / "sentences" / "wav" / dialog
                wav_dir.mkdir(parents=True)
                t = float(_rng(seed, "timing", dialog).uniform(1.5, 6.0))
                gaps = _rng(seed, "gaps", dialog).uniform(0.2, 2.0, len(turns))
                emo_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
                trans_lines: list[str] = []
                for turn, gap in zip(turns, gaps):
                    rng = _rng(seed, "utterance", turn.utt_id)
                    text = _make_text(rng, turn.raw)
                    y = _synthesize(rng, voices[turn.speaker], _draw_prosody(rng, turn.raw), text)
                    pcm = np.round(y * 32767.0).astype("<i2")
                    sf.write(str(wav_dir / f"{turn.utt_id}.wav"), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
                    dur = len(pcm) / SAMPLE_RATE
                    start, end = t, t + dur
                    t = end + float(gap)
                    seconds += dur
                    vad, ann = _annotation_lines(rng, turn.raw, turn.speaker[-1])
                    emo_lines.append(
                        f"[{start:.4f} - {end:.4f}]\t{turn.utt_id}\t{turn.raw}\t"
                        f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"
                    )
                    emo_lines.extend(ann)
                    emo_lines.append("")
                    trans_lines.append(f"{turn.utt_id} [{start:08.4f}-{end:08.4f}]: {text.text}")
                    done += 1
                    if progress is not None:
                        progress(done, total_turns)
                (emo_dir / f"{dialog}.txt").write_text("\n".join(emo_lines) + "\n", encoding="utf-8")
                (trans_dir / f"{dialog}.txt").write_text("\n".join(trans_lines) + "\n", encoding="utf-8")
        counts = demo_counts(utterances_per_speaker=utterances_per_speaker)
        raw_counts = demo_raw_counts(utterances_per_speaker=utterances_per_speaker)
        readme = _readme(seed, utterances_per_speaker, counts, raw_counts)
        (partial / "README_DEMO.txt").write_text(readme, encoding="utf-8")
        for p in sorted(partial.iterdir()):
            p.rename(out_dir / p.name)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    n_kept = sum(sum(v.values()) for v in counts.values())
    return DemoSummary(
        root=out_dir,
        seed=seed,
        utterances_per_speaker=utterances_per_speaker,
        counts=counts,
        raw_counts=raw_counts,
        n_utterances=n_kept,
        n_turns=total_turns,
        seconds=round(seconds, 3),
    )


def _readme(
    seed: int,
    utterances_per_speaker: int,
    counts: Mapping[str, Mapping[str, int]],
    raw_counts: Mapping[str, Mapping[str, int]],
) -> str:
    def table(rows: Mapping[str, Mapping[str, int]]) -> list[str]:
        out = ["label  " + "  ".join(f"Ses.{s}" for s in DEMO_SESSIONS) + "  Total"]
        for lab, per in rows.items():
            out.append(f"{lab:<5}  " + "  ".join(f"{per[s]:5d}" for s in DEMO_SESSIONS) + f"  {sum(per.values()):5d}")
        return out

    lines = [
        "featcache demo corpus (synthetic speech and text in the IEMOCAP release layout)",
        f"format {DEMO_FORMAT}, seed {seed}, {utterances_per_speaker} kept utterances per speaker",
        "read it with: --corpus iemocap:<this folder>",
        "",
        "raw labels as written:",
        *table(raw_counts),
        "",
        "after the paper's filter (exc merged into hap; neu, xxx, sur dropped):",
        *table(counts),
        "",
    ]
    return "\n".join(lines)
