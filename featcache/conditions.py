"""Evaluation conditions: what a model sees at test time, parsed once.

A condition is ``clean``, one variant (``adj``, ``pitch``, ``snr-10``) or a text variant and an audio
variant joined by ``+`` (``pitch+adj``). Text and audio vectors are stored separately, so a combined
condition is composed at evaluation from one stored entry of each modality and never needs an
extraction of its own.

:class:`Condition` is a ``str`` (its name, as the user wrote it and as the predictions store it) that
also carries its parsed parts, so evaluation, statistics and the report ask it instead of parsing the
name again::

    c = parse("pitch+adj")
    c.audio, c.text          # ("pitch", "adj"): canonical variant specs, None where unperturbed
    c.variant("text")        # "adj"; "clean" for an unperturbed modality
    c.applies("text")        # False: the text model cannot see the pitch part
    c.key                    # ("pitch", "adj"): "adj+pitch" and "pos:ADJ+pitch" share it

This module also holds the one default list of conditions (used by ``featcache evaluate`` and
``featcache run``), their order in tables, and their display names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from featcache import paper
from featcache.errors import FeatcacheError

CLEAN_NAME = "clean"


class Condition(str):
    """A condition name with its parsed audio and text variants.

    Build one with :func:`parse` (strict) or :func:`lookup` (``None`` for a name no registered variant
    explains); equal to, and hashed like, its name.

    Attributes:
        audio: Canonical spec of the audio variant, or ``None``.
        text: Canonical spec of the text variant, or ``None``.
    """

    audio: str | None
    text: str | None

    def __new__(cls, name: str, *, audio: str | None = None, text: str | None = None) -> Condition:
        self = super().__new__(cls, name)
        self.audio, self.text = audio, text
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (to DataLoader workers, Ray tasks) keep the parts
        return (_rebuild, (str(self), self.audio, self.text))

    @property
    def key(self) -> tuple[str | None, str | None]:
        """``(audio_spec, text_spec)``: equal for names that mean the same condition."""
        return (self.audio, self.text)

    @property
    def is_clean(self) -> bool:
        """Whether nothing is perturbed."""
        return self.audio is None and self.text is None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The perturbed modalities, text first."""
        return tuple(m for m, v in ((paper.TEXT, self.text), (paper.AUDIO, self.audio)) if v is not None)

    def variant(self, modality: str) -> str:
        """The variant a modality's vectors are read from (``clean`` when this condition leaves it alone)."""
        return {paper.TEXT: self.text, paper.AUDIO: self.audio}[modality] or CLEAN_NAME

    def applies(self, model: str) -> bool:
        """Whether a model reads every perturbed modality (clean applies to every model).

        Args:
            model: A model name (see :func:`featcache.paper.uses`).

        Returns:
            ``True`` when the model sees the whole condition.
        """
        return set(self.modalities) <= set(paper.uses(model))

    @property
    def requires(self) -> tuple[str, ...]:
        """The modalities a corpus must have for this condition: the perturbed ones, and audio for a text a
        speech recogniser made from it (``transcribed``)."""
        from featcache.perturb import get_variant

        needs = list(self.modalities)
        if self.text is not None and getattr(get_variant(self.text), "needs_transcripts", False) \
                and paper.AUDIO not in needs:
            needs.append(paper.AUDIO)
        return tuple(needs)

    def missing_modalities(self, available: Iterable[str]) -> tuple[str, ...]:
        """The modalities a corpus lacks for this condition (a non-empty result means it cannot be evaluated
        there; see :attr:`requires`)."""
        have = set(available)
        return tuple(m for m in self.requires if m not in have)

    @property
    def title(self) -> str:
        """Display name for the example tables (the paper's name of the attack, else the condition)."""
        return paper.ATTACK_NAMES.get(str(self), str(self))


def _rebuild(name: str, audio: str | None, text: str | None) -> Condition:
    return Condition(name, audio=audio, text=text)


_SPLIT = re.compile(r"\+(?=\s*[A-Za-z])")


@functools.lru_cache(maxsize=4096)
def parse(name: str) -> Condition:
    """Parse a condition name once.

    Parts are joined by ``+`` (a ``+`` inside a value, such as ``pitch:+1``, does not split: a part
    starts with a letter); at most one variant per modality.

    Args:
        name: ``clean``, a variant spec, or ``AUDIO+TEXT`` in either order.

    Returns:
        The :class:`Condition` (its name is ``name`` stripped).

    Raises:
        FeatcacheError: Empty name, unknown variant, or two variants of one modality.
    """
    if isinstance(name, Condition):
        return name
    from featcache.perturb import get_variant

    text = str(name).strip()
    parts = [p.strip() for p in _SPLIT.split(text)] if text else []
    if not parts or any(not p for p in parts) or re.search(r"^\s*\+|\+\s*$", text):
        raise FeatcacheError(f"bad condition {name!r}; write e.g. 'clean', 'adj' or 'pitch+adj'")
    chosen: dict[str, Any] = {}
    for part in parts:
        variant = get_variant(part)
        if variant.modality is None:
            continue
        if variant.modality in chosen:
            raise FeatcacheError(
                f"condition {name!r} has two {variant.modality} variants ({chosen[variant.modality].spec}, "
                f"{variant.spec}); combine at most one text and one audio variant"
            )
        chosen[variant.modality] = variant
    audio, txt = chosen.get(paper.AUDIO), chosen.get(paper.TEXT)
    if txt is not None and audio is not None and getattr(txt, "needs_transcripts", False) \
            and txt.params.get("audio") == "clean":
        # ``transcribed+pitch``: the recogniser hears the attacked audio too, so the attack reaches the text
        if ":" in audio.spec:
            raise FeatcacheError(f"condition {name!r}: combine a transcribed text with a named audio attack "
                                 "(pitch, noise, snr-10; see featcache variants list)")
        txt = type(txt)(**{**txt.params, "audio": audio.spec})
    return Condition(text, audio=audio.spec if audio else None, text=txt.spec if txt else None)


@functools.lru_cache(maxsize=4096)
def lookup(name: str) -> Condition | None:
    """Like :func:`parse`, but ``None`` for a name no registered variant explains (e.g. in old predictions)."""
    try:
        return parse(name)
    except (FeatcacheError, ValueError, KeyError):
        return None


def condition_key(name: str) -> tuple[str | None, str | None] | None:
    """The ``(audio_spec, text_spec)`` of a condition name, or ``None`` if it does not parse."""
    c = lookup(name)
    return None if c is None else c.key


def parse_condition(name: str) -> tuple[str | None, str | None]:
    """The ``(audio_spec, text_spec)`` of a condition: ``pitch+adj`` -> ``("pitch", "adj")``.

    Raises:
        FeatcacheError: As :func:`parse`.
    """
    return parse(name).key


CLEAN = parse(CLEAN_NAME)
"""The unperturbed condition: the baseline of every impact."""
PAPER_CONDITIONS: tuple[Condition, ...] = tuple(parse(c) for c in paper.CONDITIONS)
"""The attacks of the paper's Tables 4-6, in their order."""


def conditions_for(variants: Iterable[str]) -> list[Condition]:
    """The conditions a study with these variants evaluates: the one list for ``evaluate`` and ``run``.

    Args:
        variants: Variant specs (``clean`` and unknown names are ignored).

    Returns:
        ``clean``; the text variants, then the audio variants (each in registry order, then any others
        by name); then the paper's combined attack (``pitch``) with each of the paper's masking attacks
        that is present; then each recogniser's text (``transcribed``) with ``pitch`` and ``noise`` where
        present (``transcribed+pitch``: the recogniser hears the attacked audio too), and the text each of
        those gives the text model alone (``transcribed:audio=pitch,...``).
    """
    from featcache.perturb import get_variant, list_variants

    wanted: set[str] = set()
    for v in variants:
        try:
            spec = get_variant(v).spec
        except FeatcacheError:
            continue
        if spec != CLEAN_NAME:
            wanted.add(spec)
    specs = [v.spec for m in paper.MODALITIES for v in list_variants(m) if v.spec in wanted]
    specs += sorted(wanted - set(specs))  # variants with other parameters, e.g. noise:snr_db=7
    by_modality = {m: [s for s in specs if get_variant(s).modality == m] for m in paper.MODALITIES}
    combined = [f"{paper.COMBINED_AUDIO_ATTACK}+{t}" for t in paper.TEXT_ATTACKS
                if t in wanted and paper.COMBINED_AUDIO_ATTACK in wanted]
    # a recogniser's text with each of the paper's audio attacks it can hear (transcribed+pitch), and the text
    # such an attack reaches through the recogniser alone (for the text model)
    heard = [parse(f"{t}+{a}") for t in by_modality[paper.TEXT] if _transcribes_clean_audio(t)
             for a in (paper.COMBINED_AUDIO_ATTACK, "noise") if a in wanted]
    names = [CLEAN_NAME, *by_modality[paper.TEXT], *by_modality[paper.AUDIO], *combined,
             *(str(c) for c in heard), *(c.text for c in heard if c.text is not None)]
    return [parse(n) for n in dict.fromkeys(names)]


def _transcribes_clean_audio(spec: str) -> bool:
    from featcache.perturb import get_variant

    v = get_variant(spec)
    return bool(getattr(v, "needs_transcripts", False)) and v.params.get("audio") == "clean"


def default_conditions(held: Iterable[str] | None = None) -> list[Condition]:
    """The paper's conditions (Table 6 rows) plus every other variant the store holds.

    Args:
        held: Variant specs of the store's entries; ``None`` lists every registered variant.

    Returns:
        :func:`conditions_for` of the paper's variants and ``held``.
    """
    from featcache.perturb import list_variants

    extra = ([v.spec for v in list_variants() if v.modality is not None and not getattr(v, "needs_transcripts", False)]
             if held is None else list(held))
    return conditions_for([*paper.VARIANTS, *extra])


def natural_key(value: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs numerically (``"2" < "10"``, ``"snr-5" < "snr-10"``).

    Args:
        value: A string.

    Returns:
        A tuple usable as a sort key.
    """
    parts = re.split(r"(\d+(?:\.\d+)?)", value)
    return tuple((0, float(p), p) if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


def order(conditions: Iterable[str], *, clean: str = CLEAN_NAME) -> list[str]:
    """Table order: clean first, then the paper's attacks in its order, then text-only, audio-only,
    combined and unknown conditions, each by name.

    Args:
        conditions: Condition names (or :class:`Condition` objects; they are returned as given).
        clean: Name of the clean condition.

    Returns:
        The ordered conditions, without repeats.
    """
    paper_rank = {c.key: i for i, c in enumerate(PAPER_CONDITIONS)}

    def rank(c: str) -> tuple[Any, ...]:
        if c == clean:
            return (0, 0, ())
        parsed = lookup(c)
        if parsed is None:
            return (5, 0, natural_key(c))
        if parsed.key in paper_rank:
            return (1, paper_rank[parsed.key], ())
        group = 2 if parsed.audio is None else 3 if parsed.text is None else 4
        return (group, 0, natural_key(c))

    return sorted(set(conditions), key=rank)
