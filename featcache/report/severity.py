"""Severity sweeps: the conditions that apply one attack kind at several strengths.

``snr-20``, ``snr-10``, ``snr-5`` and ``snr-0`` are the ``noise`` kind at four values of ``snr_db``;
``asr-0.1|0.2|0.3`` the ``asr`` kind at three word error rates. :func:`severity_sweeps` finds every such
family among the conditions of a study, whatever they are called, from the variants' own parameters,
so that the report can plot impact against severity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from featcache.conditions import lookup
from featcache.perturb import get_variant

HARSHER_WHEN_LOWER: frozenset[str] = frozenset({"snr_db", "level", "high_hz"})
"""Parameters whose lower values are the harsher attack (signal-to-noise ratio, clipping level, the
telephone band's upper edge); their plots run from high to low."""


@dataclass(frozen=True)
class Sweep:
    """One attack kind at several strengths.

    Attributes:
        kind: The variant kind (``noise``, ``asr``).
        modality: ``audio`` or ``text``.
        param: The parameter that varies (``snr_db``, ``wer``).
        points: ``(value, condition)`` pairs, by value.
        harsher_when_lower: Whether lower values are the harsher attack.
    """

    kind: str
    modality: str
    param: str
    points: tuple[tuple[float, str], ...]
    harsher_when_lower: bool = False

    @property
    def name(self) -> str:
        """A file-friendly name, ``noise-snr_db``."""
        return f"{self.kind}-{self.param}"


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (tuple, list)) and value and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in value):
        return float(max(abs(x) for x in value))  # pitch steps (-2, 2): a shift of up to 2 semitones
    return None


def severity_sweeps(conditions: Iterable[str]) -> list[Sweep]:
    """Every attack kind present at more than one strength.

    Only single-modality conditions count (``pitch+adj`` is a combination, not a strength). Within a
    kind, the sweep is the parameter along which the most conditions differ while every other
    parameter stays the same (``noise`` at std 0.1 is not a point of the ``snr_db`` sweep).

    Args:
        conditions: Condition names; names no registered variant explains are skipped.

    Returns:
        The sweeps, in the order their kinds first appear.
    """
    by_kind: dict[str, list[tuple[Any, str]]] = {}
    for name in conditions:
        cond = lookup(name)
        if cond is None or cond.is_clean or (cond.audio is not None and cond.text is not None):
            continue
        variant = get_variant(cond.audio or cond.text or "")
        by_kind.setdefault(variant.kind, []).append((variant, str(name)))
    sweeps = []
    for kind, items in by_kind.items():
        best: tuple[str, dict[float, str]] | None = None
        for param in items[0][0].params:
            groups: dict[tuple[tuple[str, str], ...], dict[float, str]] = {}
            for variant, name in items:
                value = _numeric(variant.params.get(param))
                if value is None:
                    continue
                rest = tuple(sorted((k, repr(v)) for k, v in variant.params.items() if k != param))
                groups.setdefault(rest, {}).setdefault(value, name)
            for points in groups.values():
                if len(points) > 1 and (best is None or len(points) > len(best[1])):
                    best = (param, points)
        if best is not None:
            param, points = best
            sweeps.append(Sweep(kind=kind, modality=str(items[0][0].modality), param=param,
                                points=tuple(sorted(points.items())), harsher_when_lower=param in HARSHER_WHEN_LOWER))
    return sweeps


__all__ = ["HARSHER_WHEN_LOWER", "Sweep", "severity_sweeps"]
