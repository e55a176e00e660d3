"""The report's Speech recognition section: how far the text a recogniser heard is from the gold text.

For every condition whose text comes from a speech recogniser (``transcribed``, ``transcribed+pitch``, ...)
the section gives the word error rate against the gold transcription, overall and per fold (session), and the
share of utterances whose transcript's words differ from the gold words (the condition's affected subset).
:class:`AsrSection` holds each condition's utterance-level counts, so the section is drawn again from
``asr.json`` (beside the saved predictions) by ``featcache report``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcache.data.corpus import fold_noun, fold_title
from featcache.errors import FeatcacheError
from featcache.report.parts import Part
from featcache.report.sections import read_section

ASR_FILE = "asr.json"
"""The section's inputs, beside the saved predictions."""
ASR_FORMAT = "featcache-asr-section"
"""Its ``format`` tag."""
ORDER = 57
"""The part's rank in the details (after Groups, before the examples)."""


@dataclass(frozen=True)
class AsrCondition:
    """The word errors of one condition's transcripts.

    Attributes:
        condition: The condition (``transcribed+pitch``).
        recognizer: The recogniser's name.
        audio: The audio the recogniser heard (``clean`` or an audio attack).
        counts: ``utterance id -> (session, reference words, word errors)`` for the utterances with gold text.
    """

    condition: str
    recognizer: str
    audio: str
    counts: Mapping[str, tuple[str, int, int]]

    def wer(self, session: str | None = None) -> tuple[float, int]:
        """Word error rate (edits over reference words) and the words it is over, for one session or all."""
        rows = [c for c in self.counts.values() if session is None or c[0] == session]
        words = sum(r[1] for r in rows)
        return (sum(r[2] for r in rows) / words if words else math.nan), words

    @property
    def affected(self) -> tuple[int, int]:
        """Utterances whose transcript's words differ from the gold words, of all with gold text."""
        return sum(1 for c in self.counts.values() if c[2] > 0), len(self.counts)


@dataclass(frozen=True)
class AsrSection:
    """The conditions whose text a recogniser made, in the report's order."""

    conditions: tuple[AsrCondition, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        """Nothing to show."""
        return not self.conditions

    def sessions(self) -> list[str]:
        """Every session any condition has counts in, in natural order."""
        from featcache.conditions import natural_key

        return sorted({c[0] for a in self.conditions for c in a.counts.values()}, key=natural_key)

    def to_json(self) -> dict[str, Any]:
        """The section as JSON-able values (read back by :func:`read_asr_section`)."""
        return {"format": ASR_FORMAT, "conditions": [
            {"condition": a.condition, "recognizer": a.recognizer, "audio": a.audio,
             "counts": {u: list(c) for u, c in sorted(a.counts.items())}} for a in self.conditions]}


def read_asr_section(path: str | Path) -> AsrSection | None:
    """The section written beside saved predictions (``asr.json``).

    Args:
        path: The file.

    Returns:
        The section, or None when there is no such file.

    Raises:
        FeatcacheError: The file does not read as a section featcache wrote.
    """
    fix = "delete it (the report then has no Speech recognition section) or run `featcache evaluate` again"
    data = read_section(path, ASR_FORMAT, what="speech recognition", fix=fix)
    if data is None:
        return None
    try:
        return AsrSection(tuple(
            AsrCondition(str(a["condition"]), str(a["recognizer"]), str(a["audio"]),
                         {str(u): (str(c[0]), int(c[1]), int(c[2])) for u, c in a["counts"].items()})
            for a in data["conditions"]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise FeatcacheError(f"{path}: not a featcache speech recognition file; {fix}") from None


def _pct(value: float) -> str:
    return "" if not math.isfinite(value) else f"{100 * value:.1f}"


def asr_md(section: AsrSection | None, *, level: int = 2) -> str:
    """The section as Markdown (``summary.md``, ``tables.md``): one row per condition.

    Args:
        section: The section, or None.
        level: Heading level.

    Returns:
        The Markdown, or "" with nothing to show.
    """
    if section is None or section.empty:
        return ""
    sessions = section.sessions()
    out = [f"{'#' * level} Speech recognition", "",
           "The text of these conditions is a speech recogniser's transcript, not the gold text: word error rate "
           f"against the gold text (%), per {fold_noun(sessions)[:-1]} and overall, and the utterances whose words differ "
           "(the affected subset).", "",
           "| Condition | Recogniser hears | " + " | ".join(fold_title(s) for s in sessions) + " | WER | Affected |",
           "|:---|:---|" + "---:|" * (len(sessions) + 2)]
    for a in section.conditions:
        wer, words = a.wer()
        hit, n = a.affected
        cells = [_pct(a.wer(s)[0]) for s in sessions]
        out.append(f"| {a.condition} | {a.audio} ({a.recognizer}) | " + " | ".join(cells)
                   + f" | {_pct(wer)} ({words} words) | {hit} / {n} |")
    return "\n".join(out + ["", ""])


def asr_part(section: AsrSection | None) -> Part | None:
    """The Speech recognition part of ``report.html`` (in the details).

    Args:
        section: The section, or None.

    Returns:
        The part, or None with nothing to show.
    """
    md = asr_md(section, level=3)
    if not md:
        return None
    from featcache.report.markup import markdown_to_html

    body = md.split("\n", 2)[2]  # without its heading: the part has one
    return Part("asr", "Speech recognition", f'<div class="scroll">{markdown_to_html(body)}</div>', order=ORDER)


def asr_section(study: Any, conditions: Sequence[str]) -> AsrSection:
    """The section of a study's conditions whose text a recogniser made: their transcripts from the store
    (decoded there once; nothing is decoded again) against the corpus's gold text.

    Args:
        study: The study (its corpus, store and variant seed).
        conditions: The conditions evaluated.

    Returns:
        The section: one row per transcribed text, under the first condition that reads it (empty where no
        condition's text is transcribed, or the corpus has no gold text).
    """
    from featcache.conditions import parse
    from featcache.perturb.wer import edit_distance, normalize_words
    from featcache.perturb import get_variant
    from featcache.transcribe import transcribe

    corpus = study.corpus
    if corpus.text_source:  # its text is a transcript already: there is no gold to compare with
        return AsrSection()
    out = []
    listed: set[str] = set()  # text variants with a row: the text model's transcribed:audio=pitch reads what
    for name in conditions:   # transcribed+pitch reads, so it is one row, under the condition named first
        c = parse(name)
        v = get_variant(c.text) if c.text is not None else None
        if v is None or not getattr(v, "needs_transcripts", False) or v.spec in listed:
            continue
        listed.add(v.spec)
        heard = transcribe(corpus, cache_dir=study.store.root, recognizer=str(v.params["recognizer"]),
                           window_seconds=v.window, audio_variant=v.audio_variant,
                           variant_seed=study.variant_seed, progress=False)
        counts: dict[str, tuple[str, int, int]] = {}
        for r in heard.records:
            u = corpus.by_id(r["id"])
            if u.text is None:
                continue
            ref = normalize_words(u.text)
            counts[u.id] = (u.session, len(ref), edit_distance(ref, normalize_words(r["text"])))
        out.append(AsrCondition(str(name), Path(str(v.params["recognizer"])).name, v.audio_variant or "clean", counts))
    return AsrSection(tuple(out))


__all__ = ["ASR_FILE", "ASR_FORMAT", "AsrCondition", "AsrSection", "asr_md", "asr_part", "asr_section",
           "read_asr_section"]
