"""Audio for the HTML report: the clean and the perturbed waveform of an example, written beside the page.

An :data:`AudioSource` maps ``(utterance id, condition)`` to the clean waveform and the perturbed one.
:class:`StoreAudio` is the one the command line uses: it reads the clean wav from the corpus and
regenerates the perturbed audio from the perturbation record stored in the feature store, exactly as
``featcache variants show --out`` does (the variant's ``apply`` on the 16 kHz waveform, see
:func:`featcache.perturb.replay`), so what plays is what the encoder was given.

:func:`write_audio` writes the files, only for the utterances the report shows, as 16 kHz mono
FLAC (16-bit; WAV where libsndfile has no FLAC).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featcache.conditions import lookup
from featcache.errors import FeatcacheError
from featcache.perturb import DEFAULT_SR, replay

if TYPE_CHECKING:
    from featcache.cache import FeatureStore
    from featcache.data import Corpus

AudioSource = Callable[[str, str], "tuple[np.ndarray, np.ndarray | None] | None"]
"""``(utt_id, condition) -> (clean, perturbed)`` 16 kHz float32 mono waveforms; ``perturbed`` is
``None`` when the condition leaves the audio alone (a text attack) or its record is not stored, and the
whole answer is ``None`` when the utterance has no audio."""

AUDIO_DIR = "audio"
"""Folder of the audio files, beside ``report.html``."""


class StoreAudio:
    """The clean audio from a corpus, the perturbed audio replayed from the records in a store.

    Entries are found by scanning the store once (``store.iter_entries``): any complete audio entry of
    the condition's audio variant that holds a record for the utterance will do, since a record
    depends only on the variant, the utterance and the variant seed; with ``variant_seed`` only
    records drawn with that seed are used.

    Args:
        corpus: The corpus the predictions were made on.
        store: The feature store the study extracted into (``None``: clean audio only).
        variant_seed: Seed of the perturbations (``None``: any).
    """

    def __init__(self, corpus: Corpus, store: FeatureStore | None = None, *, variant_seed: int | None = None) -> None:
        self.corpus = corpus
        self.store = store
        self.variant_seed = variant_seed
        self._entries: dict[str, list[Any]] | None = None
        self._records: dict[tuple[str, int], dict[str, dict]] = {}
        self.missing: list[str] = []

    def _audio_entries(self) -> dict[str, list[Any]]:
        if self._entries is None:
            self._entries = {}
            if self.store is not None:
                for info in self.store.iter_entries():
                    if info.status == "complete" and info.provenance.get("modality") == "audio":
                        self._entries.setdefault(info.variant, []).append(info)
        return self._entries

    def _record(self, variant: str, utt_id: str) -> dict | None:
        from featcache.cache import EntryKey

        for k, info in enumerate(self._audio_entries().get(variant, [])):
            records = self._records.get((variant, k))
            if records is None:
                ident = dict(info.provenance.get("identity", {}))
                key = EntryKey(ident.pop("run", info.run), ident.pop("fold", info.fold),
                               ident.pop("variant", info.variant), ident)
                try:
                    with self.store.open(key) as entry:  # type: ignore[union-attr]
                        records = entry.records()
                except FeatcacheError:
                    records = {}
                self._records[(variant, k)] = records
            rec = records.get(utt_id)
            if rec and (self.variant_seed is None or int(rec.get("seed", -1)) == self.variant_seed):
                return rec
        return None

    def __call__(self, utt_id: str, condition: str) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The clean and the perturbed waveform of one utterance under one condition.

        Args:
            utt_id: Utterance id.
            condition: Condition name (``pitch``, ``pitch+adj``, ``adj``, ...).

        Returns:
            ``(clean, perturbed)``, see :data:`AudioSource`.

        Raises:
            FeatcacheError: The audio file cannot be read, or a stored record does not fit it.
        """
        from featcache.data import load_audio

        try:
            utt = self.corpus.by_id(utt_id)
        except (KeyError, FeatcacheError):
            return None
        if utt.audio is None:
            return None
        clean = load_audio(utt.audio, sr=DEFAULT_SR)
        cond = lookup(condition)
        if cond is None or cond.audio is None:
            return clean, None
        rec = self._record(cond.audio, utt_id)
        if rec is None:
            self.missing.append(f"{utt_id} under {condition}")
            return clean, None
        return clean, np.asarray(replay(rec, clean, sr=DEFAULT_SR), dtype=np.float32)


@dataclass(frozen=True)
class AudioFiles:
    """The audio files of one utterance under one condition, relative to the report folder.

    Attributes:
        clean: The clean audio.
        perturbed: The perturbed audio, or ``None`` when the condition leaves the audio alone or its
            record was not found.
    """

    clean: str
    perturbed: str | None


def _format() -> tuple[str, str, str]:
    import soundfile as sf

    if sf.check_format("FLAC", "PCM_16"):
        return "FLAC", "PCM_16", ".flac"
    return "WAV", "PCM_16", ".wav"


def _safe(name: str) -> str:
    """A file name for an utterance id or condition: the name itself where it is safe, else its safe
    characters and a digest of the exact name (so ``a/b``, ``a_b`` and ``a b`` get three files)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    if safe == name and not name.startswith("."):
        return name
    return f"{safe.lstrip('.')}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:10]}"


def _write(path: Path, y: np.ndarray) -> None:
    import soundfile as sf

    fmt, subtype, _ = _format()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    sf.write(str(tmp), np.clip(y, -1.0, 1.0), DEFAULT_SR, format=fmt, subtype=subtype)
    os.replace(tmp, path)


def write_audio(
    source: AudioSource,
    wanted: Iterable[tuple[str, str]],
    out_dir: str | os.PathLike[str],
    *,
    on_error: Callable[[str], None] | None = None,
) -> dict[tuple[str, str], AudioFiles]:
    """Write the clean and perturbed audio of the given (utterance, condition) pairs beside the report.

    Each clean file is written once per utterance (``audio/<utt>.flac``), each perturbed one once per
    pair (``audio/<utt>--<condition>.flac``); a perturbed file is not written when the condition
    leaves the audio alone.

    Args:
        source: Where the waveforms come from.
        wanted: ``(utt_id, condition)`` pairs.
        out_dir: The report folder.
        on_error: Called with a one-line message for each pair whose audio cannot be read or replayed,
            which is then left out (``None``: raise).

    Returns:
        ``(utt_id, condition) -> files`` for the pairs with audio.

    Raises:
        FeatcacheError: The source could not read or replay an utterance's audio (without ``on_error``).
    """
    out = Path(out_dir)
    ext = _format()[2]
    written: dict[tuple[str, str], AudioFiles] = {}
    clean_done: set[str] = set()
    for utt, cond in dict.fromkeys(wanted):
        try:
            got = source(utt, cond)
        except FeatcacheError as e:
            if on_error is None:
                raise
            on_error(f"{utt} under {cond}: {e}")
            continue
        if got is None:
            continue
        clean, perturbed = got
        clean_rel = f"{AUDIO_DIR}/{_safe(utt)}{ext}"
        if utt not in clean_done:
            _write(out / clean_rel, clean)
            clean_done.add(utt)
        pert_rel = None
        if perturbed is not None:
            pert_rel = f"{AUDIO_DIR}/{_safe(utt)}--{_safe(cond)}{ext}"
            _write(out / pert_rel, perturbed)
        written[(utt, cond)] = AudioFiles(clean=clean_rel, perturbed=pert_rel)
    return written


__all__ = ["AUDIO_DIR", "AudioFiles", "AudioSource", "StoreAudio", "write_audio"]
