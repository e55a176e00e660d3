"""The demo corpus's transcriptions: sentence templates whose adjective and noun slots carry the emotion
(:func:`_make_text`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

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
