"""Building blocks shared by every variant: parameters, seeding and the draw/apply contract.

A variant is one named, parameterised transform of one modality. Calling it is two steps:

* :meth:`Variant.draw` looks at the input and makes every random choice for one utterance, returning
  a JSON-serialisable *record* (masked positions, semitone step, noise seed, resulting SNR, ...);
* :meth:`Variant.apply` turns the input and that record into the output, with no randomness at all.

``variant(x, utt_id=..., seed=...)`` does both and returns ``(output, record)``; ``variant.apply(x,
record)`` replays it later, bit for bit. Per-utterance randomness comes from
``np.random.default_rng([seed, stable_int(utt_id)])``, so a result never depends on the order,
batch or worker in which utterances are processed.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from featcache.errors import FeatcacheError

if TYPE_CHECKING:
    from featcache.perturb.text_analysis import TextAnalysis

Modality = Literal["text", "audio"]

#: A parameter value as it appears in ``variant.params``: JSON-serialisable scalars or a tuple of floats.
ParamValue = bool | int | float | str | tuple[float, ...] | None

#: A per-utterance record: JSON-serialisable (only dict, list, str, int, float, bool, None inside).
Record = dict[str, Any]

ParamKind = Literal["float", "int", "str", "bool", "floats"]


def stable_int(text: str) -> int:
    """A 64-bit integer derived from a string, identical in every process and Python run.

    Python's ``hash()`` is salted per process, so it cannot seed anything that must be reproducible.

    Args:
        text: Any string (an utterance id).

    Returns:
        A non-negative integer below 2**64 (the first 8 bytes of the string's SHA-256).
    """
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def utterance_rng(seed: int, utt_id: str) -> np.random.Generator:
    """The random generator for one utterance under one variant seed.

    Args:
        seed: The variant seed (non-negative).
        utt_id: The utterance id.

    Returns:
        ``np.random.default_rng([seed, stable_int(utt_id)])``.

    Raises:
        FeatcacheError: The seed is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FeatcacheError(f"seed must be a non-negative integer, got {seed!r}; pass e.g. --seed 0")
    return np.random.default_rng([int(seed), stable_int(utt_id)])


def format_value(value: ParamValue) -> str:
    """Canonical text of a parameter value, as used in spec strings.

    Floats print in their shortest exact form without a trailing ``.0`` (``10``, ``0.1``), booleans
    as ``true``/``false``, sets of floats joined by ``|``.

    Args:
        value: A parameter value.

    Returns:
        Its canonical text.
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, tuple):
        return "|".join(format_value(float(v)) for v in value)
    return str(value)


@dataclass(frozen=True)
class Param:
    """One parameter of a variant kind.

    Attributes:
        name: Key used in spec strings (``snr_db``).
        kind: ``float``, ``int``, ``str``, ``bool`` or ``floats`` (a set of floats written ``-1|1``).
        default: Default value (``None``: unset unless given).
        help: One-line description.
        low: Smallest allowed number (inclusive), if any.
        high: Largest allowed number (inclusive), if any.
        low_open: Whether ``low`` itself is excluded.
        choices: Allowed strings (compared upper-cased), if restricted.
    """

    name: str
    kind: ParamKind
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None

    def parse(self, raw: str, *, variant: str) -> ParamValue:
        """Convert spec text into a checked value.

        Args:
            raw: The text after ``key=``.
            variant: Variant name, for the error message.

        Returns:
            The value.

        Raises:
            FeatcacheError: The text is not a valid value for this parameter.
        """
        raw = raw.strip()
        try:
            if self.kind == "float":
                value: ParamValue = float(raw)
            elif self.kind == "int":
                value = int(raw)
            elif self.kind == "bool":
                lowered = raw.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value = lowered in ("true", "1", "yes")
            elif self.kind == "floats":
                value = tuple(float(part) for part in raw.split("|"))
            else:
                value = raw
        except ValueError:
            expected = {
                "float": "a number",
                "int": "an integer",
                "bool": "true or false",
                "floats": "numbers separated by | (e.g. -1|1)",
                "str": "text",
            }[self.kind]
            raise FeatcacheError(f"variant {variant!r}: {self.name}={raw!r} is not {expected}") from None
        return self.check(value, variant=variant)

    def check(self, value: Any, *, variant: str) -> ParamValue:
        """Validate and normalise a value given in Python.

        Args:
            value: Candidate value.
            variant: Variant name, for the error message.

        Returns:
            The normalised value (floats as float, sets sorted and de-duplicated, choices upper-cased).

        Raises:
            FeatcacheError: Wrong type or out of range.
        """
        where = f"variant {variant!r}: {self.name}={value!r}"
        if value is None and self.default is None:
            return None
        if self.kind == "floats":
            items = value if isinstance(value, (tuple, list)) else (value,)
            if not items:
                raise FeatcacheError(f"{where} is empty; give at least one number, e.g. -1|1")
            numbers = tuple(sorted({self._number(v, where) for v in items}))
            for number in numbers:
                self._range(number, where)
            return numbers
        if self.kind == "float":
            number = self._number(value, where)
            self._range(number, where)
            return number
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise FeatcacheError(f"{where} is not an integer")
            self._range(float(value), where)
            return int(value)
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise FeatcacheError(f"{where} is not true or false")
            return bool(value)
        if not isinstance(value, str) or not value:
            raise FeatcacheError(f"{where} is not a non-empty string")
        if self.choices is not None:
            upper = value.upper()
            if upper not in self.choices:
                raise FeatcacheError(f"{where} is not one of {', '.join(self.choices)}")
            return upper
        return value

    @staticmethod
    def _number(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise FeatcacheError(f"{where} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise FeatcacheError(f"{where} is not a finite number")
        return number

    def _range(self, number: float, where: str) -> None:
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            bound = f"> {format_value(self.low)}" if self.low_open else f">= {format_value(self.low)}"
            raise FeatcacheError(f"{where} is out of range; it must be {bound}")
        if self.high is not None and number > self.high:
            raise FeatcacheError(f"{where} is out of range; it must be <= {format_value(self.high)}")


def _jsonable(value: ParamValue) -> Any:
    return list(value) if isinstance(value, tuple) else value


class Variant(ABC):
    """A named, parameterised, replayable perturbation of one modality.

    Concrete variants derive from :class:`TextVariant` or :class:`AudioVariant`, set the class
    attributes and implement ``_draw`` and ``_apply``; the public :meth:`draw`, :meth:`apply` and
    :meth:`__call__` wrap them with input checks and the record fields common to all variants
    (``variant``, ``key``, ``utt_id``, ``seed``).

    Class attributes:
        kind: Transform name used in spec strings (``noise``, ``pos``).
        modality: ``"text"``, ``"audio"`` or ``None`` (identity).
        params_spec: The parameters the kind accepts.
        positional: The parameter a bare spec value sets (``pos:ADV`` sets ``tag``), if any.
        description: One line for listings.
        version: Bumped whenever the transform's output changes for the same record; part of :attr:`key`.
    """

    kind: ClassVar[str]
    modality: ClassVar[Modality | None]
    params_spec: ClassVar[tuple[Param, ...]] = ()
    positional: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def __init__(self, **params: Any) -> None:
        """Build a variant from Python parameter values (missing ones take their defaults).

        Args:
            **params: Parameter values by name.

        Raises:
            FeatcacheError: Unknown parameter, bad value, or a required one missing.
        """
        specs = {p.name: p for p in self.params_spec}
        unknown = sorted(set(params) - set(specs))
        if unknown:
            valid = ", ".join(specs) if specs else "none"
            raise FeatcacheError(f"variant {self.kind!r} has no parameter {unknown[0]!r}; valid parameters: {valid}")
        values: dict[str, ParamValue] = {}
        for name, spec in specs.items():
            values[name] = spec.check(params[name], variant=self.kind) if name in params else spec.default
        self._params = self._normalize(values, given=frozenset(params))

    def _normalize(self, params: dict[str, ParamValue], *, given: frozenset[str]) -> dict[str, ParamValue]:
        """Resolve interactions between parameters (hook for subclasses).

        Args:
            params: Every parameter, defaults filled in.
            given: Names the caller set explicitly.

        Returns:
            The final parameters.

        Raises:
            FeatcacheError: The combination is invalid.
        """
        return params

    @property
    def params(self) -> dict[str, ParamValue]:
        """Every parameter with its value (defaults included); a copy."""
        return dict(self._params)

    @property
    def spec(self) -> str:
        """Canonical spec string: a registered name when one matches, else ``kind:key=value,...``."""
        from featcache.perturb.registry import canonical_spec

        return canonical_spec(self)

    @property
    def name(self) -> str:
        """The registered name of these parameters (``snr-10``), or the kind when none matches."""
        spec = self.spec
        return spec.split(":", 1)[0]

    @property
    def key(self) -> str:
        """Short stable hash of (kind, version, params) for cache keys: 12 hex digits."""
        payload = json.dumps(
            {"kind": self.kind, "version": self.version, "params": {k: _jsonable(v) for k, v in self._params.items()}},
            sort_keys=True,
            allow_nan=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Variant) and (other.kind, other._params) == (self.kind, self._params)

    def __hash__(self) -> int:
        return hash((self.kind, self.key))

    def __repr__(self) -> str:
        return f"get_variant({self.spec!r})"

    def rng(self, *, utt_id: str, seed: int) -> np.random.Generator:
        """The per-utterance generator (:func:`utterance_rng`)."""
        return utterance_rng(seed, utt_id)

    def _header(self, *, utt_id: str, seed: int) -> Record:
        return {"variant": self.spec, "key": self.key, "utt_id": utt_id, "seed": int(seed)}

    def _check_record(self, record: Mapping[str, Any]) -> None:
        recorded = record.get("key")
        if recorded is not None and recorded != self.key:
            raise FeatcacheError(
                f"record was drawn by variant {record.get('variant')!r} (key {recorded}), not {self.spec!r} "
                f"(key {self.key}); replay it with get_variant({record.get('variant')!r})"
            )

    @abstractmethod
    def draw(self, x: Any, *, utt_id: str, seed: int, **context: Any) -> Record:
        """Make every random choice for one utterance; see the subclasses."""

    @abstractmethod
    def apply(self, x: Any, record: Mapping[str, Any], **context: Any) -> Any:
        """Deterministically produce the output from the input and a record; see the subclasses."""

    def changed(self, record: Mapping[str, Any] | None) -> bool:
        """Whether the perturbation recorded in ``record`` changed its utterance's input.

        The variant that wrote a record is the one that knows: a masking that found no adjective,
        an empty transcription removed or a waveform replaced each say it from their own fields.
        Evaluation uses it to find the utterances an attack affected.

        Args:
            record: From :meth:`draw` (``None`` or empty when the entry holds none for the utterance).

        Returns:
            ``True`` when the input was changed; this default says so for every non-empty record.
        """
        return bool(record)

    def __call__(self, x: Any, *, utt_id: str, seed: int, **context: Any) -> tuple[Any, Record]:
        """Draw and apply in one step.

        Args:
            x: The input (text or waveform).
            utt_id: Utterance id (seeds the per-utterance randomness).
            seed: Variant seed.
            **context: Modality-specific keywords (``analysis``/``mask_token`` or ``sr``).

        Returns:
            ``(output, record)``.
        """
        record = self.draw(x, utt_id=utt_id, seed=seed, **context)
        return self.apply(x, record, **context), record


class IdentityVariant(Variant):
    """``clean``: the unperturbed input; it belongs to no modality and takes any context keywords."""

    kind = "clean"
    modality = None
    description = "no perturbation (identity)"

    def draw(self, x: Any, *, utt_id: str, seed: int, **context: Any) -> Record:
        """Return the record header only; nothing is random.

        Args:
            x: Text or waveform (unused).
            utt_id: Utterance id.
            seed: Variant seed.
            **context: Ignored.

        Returns:
            The record.
        """
        utterance_rng(seed, utt_id)  # validates the seed like every other variant
        return self._header(utt_id=utt_id, seed=seed)

    def changed(self, record: Mapping[str, Any] | None) -> bool:
        """Never: the identity changes nothing."""
        return False

    def apply(self, x: Any, record: Mapping[str, Any], **context: Any) -> Any:
        """Return the input unchanged.

        Args:
            x: Text or waveform.
            record: From :meth:`draw`.
            **context: Ignored.

        Returns:
            ``x`` itself.
        """
        self._check_record(record)
        return x


#: Mask token used when the caller names none: BERT's, as in the paper.
DEFAULT_MASK_TOKEN = "[MASK]"

#: Sample rate every audio variant assumes unless told otherwise.
DEFAULT_SR = 16_000


def apply_edits(text: str, edits: list[Mapping[str, Any]], *, mask_token: str | None) -> str:
    """Replace character spans of a text, checking that each span still holds what was recorded.

    Args:
        text: The original text.
        edits: Dicts with ``start``, ``end`` (character offsets), ``original`` (the text expected at that
            span) and ``text`` (the replacement; ``None`` means the mask token). Spans must not overlap.
        mask_token: What a ``None`` replacement becomes (``None``: the backbone has no mask token).

    Returns:
        The edited text; spacing and punctuation outside the spans are kept as they are.

    Raises:
        FeatcacheError: A span is out of range, overlaps another, or does not hold its ``original``;
            or a word is to be masked and there is no mask token.
    """
    if mask_token is None and any(e["text"] is None for e in edits):
        raise FeatcacheError(
            "this text backbone's tokenizer has no mask token, so masking variants cannot run on it; "
            "pick a masked-language-model backbone (BERT, RoBERTa) or a non-masking variant"
        )
    pieces: list[str] = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: (int(e["start"]), int(e["end"]))):
        start, end = int(edit["start"]), int(edit["end"])
        if start < cursor or end < start or end > len(text):
            raise FeatcacheError(
                f"text edit [{start}, {end}) does not fit a text of {len(text)} characters; "
                "the record was drawn for another text"
            )
        if text[start:end] != edit["original"]:
            raise FeatcacheError(
                f"text edit [{start}, {end}) expected {edit['original']!r} but found {text[start:end]!r}; "
                "the record was drawn for another text"
            )
        pieces.append(text[cursor:start])
        replacement = edit["text"]
        pieces.append(str(mask_token) if replacement is None else str(replacement))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


class TextVariant(Variant):
    """A perturbation of the transcription fed to the text encoder.

    Every text variant accepts the same keywords, so callers pass them uniformly: ``analysis`` (the
    utterance's :class:`~featcache.perturb.text_analysis.TextAnalysis`) and ``mask_token`` (the text
    backbone tokenizer's mask token, ``[MASK]`` for BERT, ``<mask>`` for RoBERTa).
    """

    modality = "text"
    #: Whether :meth:`draw` needs the spaCy analysis.
    needs_analysis: ClassVar[bool] = True

    def draw(  # type: ignore[override]  # text variants take text-specific keywords
        self,
        x: str,
        *,
        utt_id: str,
        seed: int,
        analysis: TextAnalysis | None = None,
        mask_token: str | None = DEFAULT_MASK_TOKEN,
    ) -> Record:
        """Make the random choices for one utterance.

        Args:
            x: The utterance's text.
            utt_id: Utterance id.
            seed: Variant seed.
            analysis: spaCy analysis of exactly this text (needed by word-level variants).
            mask_token: Unused by the choice; accepted so that callers can pass it uniformly.

        Returns:
            The record: ``variant``, ``key``, ``utt_id``, ``seed`` and the variant's own fields.

        Raises:
            FeatcacheError: Not a string, missing analysis, or an analysis of another text.
        """
        if not isinstance(x, str):
            raise FeatcacheError(f"variant {self.spec!r} perturbs text, got {type(x).__name__}")
        if self.needs_analysis:
            if analysis is None:
                raise FeatcacheError(
                    f"variant {self.spec!r} needs the utterance's spaCy analysis; pass analysis=... "
                    "(see featcache.perturb.analyze_texts)"
                )
            if analysis.text != x:
                raise FeatcacheError(
                    f"utterance {utt_id!r}: the spaCy analysis is of another text; re-run the analysis "
                    "(delete the stale file under CACHE/text-analysis)"
                )
        rng = utterance_rng(seed, utt_id)
        record = self._header(utt_id=utt_id, seed=seed)
        record.update(self._draw(x, rng=rng, analysis=analysis))
        return record

    def apply(  # type: ignore[override]
        self,
        x: str,
        record: Mapping[str, Any],
        *,
        analysis: TextAnalysis | None = None,
        mask_token: str | None = DEFAULT_MASK_TOKEN,
    ) -> str:
        """Produce the perturbed text from a record (no randomness).

        Args:
            x: The same text the record was drawn for.
            record: From :meth:`draw`.
            analysis: Unused (the record holds character offsets); accepted for uniform calls.
            mask_token: Replacement for masked words.

        Returns:
            The perturbed text.

        Raises:
            FeatcacheError: Not a string, or the record belongs to another variant or text.
        """
        if not isinstance(x, str):
            raise FeatcacheError(f"variant {self.spec!r} perturbs text, got {type(x).__name__}")
        self._check_record(record)
        return self._apply(x, record, mask_token=mask_token)

    def changed(self, record: Mapping[str, Any] | None) -> bool:
        """Whether the record edits the text (a masking that found no word to mask leaves it as it was)."""
        return bool(record) and bool(record.get("edits"))

    @abstractmethod
    def _draw(self, text: str, *, rng: np.random.Generator, analysis: TextAnalysis | None) -> Record:
        """The variant's own record fields."""

    def _apply(self, text: str, record: Mapping[str, Any], *, mask_token: str | None) -> str:
        """Default: apply the record's ``edits`` (see :func:`apply_edits`)."""
        return apply_edits(text, list(record["edits"]), mask_token=mask_token)


def as_waveform(audio: Any) -> np.ndarray:
    """Check and convert a waveform to a 1-D float32 array.

    Args:
        audio: Array-like of samples.

    Returns:
        A contiguous float32 1-D array (a copy only when conversion needs one).

    Raises:
        FeatcacheError: Not 1-D, or containing NaN or infinity.
    """
    y = np.ascontiguousarray(audio, dtype=np.float32)
    if y.ndim != 1:
        raise FeatcacheError(f"audio variants take a 1-D mono waveform, got shape {y.shape}; downmix it first")
    if not np.isfinite(y).all():
        raise FeatcacheError("waveform contains NaN or infinite samples; fix the input audio")
    return y


class AudioVariant(Variant):
    """A perturbation of a float32 mono waveform (16 kHz unless ``sr`` says otherwise)."""

    modality = "audio"

    def draw(self, x: np.ndarray, *, utt_id: str, seed: int, sr: int = DEFAULT_SR) -> Record:  # type: ignore[override]
        """Make the random choices for one utterance.

        Args:
            x: The waveform.
            utt_id: Utterance id.
            seed: Variant seed.
            sr: Sample rate in Hz.

        Returns:
            The record: ``variant``, ``key``, ``utt_id``, ``seed``, ``sr``, ``n_samples`` and the
            variant's own fields.

        Raises:
            FeatcacheError: Bad waveform or sample rate.
        """
        y = as_waveform(x)
        if sr <= 0:
            raise FeatcacheError(f"sample rate must be positive, got {sr}")
        rng = utterance_rng(seed, utt_id)
        record = self._header(utt_id=utt_id, seed=seed)
        record.update({"sr": int(sr), "n_samples": int(y.shape[0])})
        record.update(self._draw(y, rng=rng, sr=sr))
        return record

    def apply(self, x: np.ndarray, record: Mapping[str, Any], *, sr: int = DEFAULT_SR) -> np.ndarray:  # type: ignore[override]
        """Produce the perturbed waveform from a record (no randomness).

        Args:
            x: The same waveform the record was drawn for.
            record: From :meth:`draw`.
            sr: Sample rate in Hz; must equal the record's.

        Returns:
            A new float32 1-D array.

        Raises:
            FeatcacheError: Bad waveform, or a record for another variant, sample rate or length.
        """
        y = as_waveform(x)
        self._check_record(record)
        if int(record.get("sr", sr)) != sr or int(record.get("n_samples", y.shape[0])) != y.shape[0]:
            raise FeatcacheError(
                f"record was drawn for {record.get('n_samples')} samples at {record.get('sr')} Hz, "
                f"got {y.shape[0]} samples at {sr} Hz; replay it on the same input"
            )
        out = self._apply(y, record, sr=sr)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _draw(self, y: np.ndarray, *, rng: np.random.Generator, sr: int) -> Record:
        """The variant's own record fields (default: none)."""
        return {}

    @abstractmethod
    def _apply(self, y: np.ndarray, record: Mapping[str, Any], *, sr: int) -> np.ndarray:
        """The transform itself."""
