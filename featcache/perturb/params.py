"""The value types, seeding and parameter declarations every variant builds on.

:func:`utterance_rng` gives each utterance its own generator, ``np.random.default_rng([seed,
stable_int(utt_id)])``, so that a result never depends on the order, batch or worker in which utterances
are processed; :class:`Param` declares, parses and checks one parameter of a variant kind, and
:func:`format_value` writes a value as spec strings show it.  :mod:`featcache.perturb.base` re-exports
all of them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from featcache.errors import FeatcacheError

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
