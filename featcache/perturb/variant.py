"""The :class:`Variant` base class (the draw/apply contract) and the identity variant ``clean``.

:mod:`featcache.perturb.base` describes the contract and re-exports both; the modality bases derived
from :class:`Variant` live in :mod:`featcache.perturb.text_base` and :mod:`featcache.perturb.audio_base`.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from featcache.errors import FeatcacheError
from featcache.perturb.params import Modality, Param, ParamValue, Record, utterance_rng


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
        added_params: Parameters added after entries were stored: left out of :attr:`key` while unset (None),
            so the entries made before keep their keys.
    """

    kind: ClassVar[str]
    modality: ClassVar[Modality | None]
    params_spec: ClassVar[tuple[Param, ...]] = ()
    positional: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    version: ClassVar[int] = 1
    added_params: ClassVar[tuple[str, ...]] = ()

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
            {"kind": self.kind, "version": self.version,
             "params": {k: _jsonable(v) for k, v in self._params.items() if v is not None or k not in self.added_params}},
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
