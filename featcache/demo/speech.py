"""The demo corpus's audio: each utterance's transcript spoken by espeak-ng (:mod:`featcache.demo.espeak`) in
its speaker's voice, with the prosody of its class (:func:`_synthesize`).

A speaker is an espeak voice variant (female or male) with seeded offsets of base pitch, pitch range, rate
and recording level. The emotion is in the prosody relative to the speaker, drawn per utterance around the
class's means: F0 level (a few semitones apart and overlapping, so a one-semitone pitch shift moves some
utterances across a class boundary), F0 range, level and speaking rate; high arousal (``ang``, ``hap``) is
told apart from ``fru`` and ``sad`` well, ``ang`` from ``hap`` poorly. The speech is resampled to 16 kHz,
framed by a little silence and set on a faint seeded noise floor.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np

from featcache.data import SAMPLE_RATE
from featcache.demo.espeak import NATIVE_RATE, EspeakSettings, Synthesizer
from featcache.demo.plan import _rng
from featcache.demo.text import _Text

#: Shortest turn in seconds (shorter speech is padded with silence).
_CLIP_MIN_S = 1.0

#: espeak voice variants a speaker is drawn from.
_VARIANTS = {"F": ("f1", "f2", "f3", "f4"), "M": ("m1", "m2", "m3", "m6")}
_LANGUAGE = "en-us"
_PITCH_PER_ST = 1.0 / 0.22  # espeak pitch units per semitone (measured: 30 -> 155 Hz, 70 -> 256 Hz)
_RANGE_PER_ST = 50.0 / 3.0  # espeak range units per semitone of F0 excursion (50: a neutral 3 st)
_WPM_PER_SYL_S = 175.0 / 4.0  # words per minute per syllable per second (175 wpm: a neutral 4 syl/s)


@dataclass(frozen=True)
class _Voice:
    """Speaker constants."""

    variant: str  # espeak voice variant
    pitch: float  # base pitch in espeak units
    range_scale: float
    rate_scale: float
    gain_db: float


@dataclass(frozen=True)
class _Prosody:
    """Class means of the prosodic cues, relative to the speaker."""

    f0_st: float  # F0 level offset in semitones
    range_st: float  # F0 excursion in semitones
    level_db: float  # active-speech level offset in dB
    rate: float  # syllables per second


#: ang and hap differ little; high arousal vs fru vs sad differ a lot; F0 levels overlap.
_PROSODY: dict[str, _Prosody] = {
    "ang": _Prosody(f0_st=2.6, range_st=4.6, level_db=5.5, rate=4.9),
    "hap": _Prosody(f0_st=3.0, range_st=5.6, level_db=4.0, rate=4.6),
    "exc": _Prosody(f0_st=3.4, range_st=6.0, level_db=5.0, rate=4.9),
    "fru": _Prosody(f0_st=1.0, range_st=3.4, level_db=0.5, rate=4.0),
    "sad": _Prosody(f0_st=-1.0, range_st=2.2, level_db=-4.0, rate=3.3),
    "neu": _Prosody(f0_st=0.0, range_st=3.0, level_db=0.0, rate=4.0),
    "sur": _Prosody(f0_st=4.5, range_st=7.5, level_db=3.5, rate=4.2),
}
#: Utterance-to-utterance spread of each cue (standard deviations, same units).
_SPREAD = _Prosody(f0_st=2.0, range_st=1.5, level_db=3.5, rate=0.65)

_TARGET_DB = -29.5  # active-speech level of a neutral utterance (rms ~0.033)
_NOISE_FLOOR = 6e-4


def _make_voice(seed: int, speaker: str) -> _Voice:
    rng = _rng(seed, "voice", speaker)
    sex = "F" if speaker.endswith("F") else "M"
    variants = _VARIANTS[sex]
    return _Voice(
        variant=str(variants[int(rng.integers(len(variants)))]),
        pitch=(56.0 if sex == "F" else 42.0) + float(rng.normal(0.0, 1.2)) * _PITCH_PER_ST,
        range_scale=math.exp(float(rng.normal(0.0, 0.1))),
        rate_scale=math.exp(float(rng.normal(0.0, 0.07))),
        gain_db=float(rng.normal(0.0, 2.0)),
    )


def _draw_prosody(rng: np.random.Generator, raw: str) -> _Prosody:
    if raw == "xxx":  # no agreement: a blend of two classes
        a, b = rng.choice(["ang", "hap", "sad", "fru", "neu"], size=2, replace=False)
        w = float(rng.uniform(0.3, 0.7))
        pa, pb = _PROSODY[str(a)], _PROSODY[str(b)]
        mean = _Prosody(*(w * x + (1 - w) * y for x, y in zip(astuple(pa), astuple(pb))))
    else:
        mean = _PROSODY[raw]
    z = np.clip(rng.normal(size=4), -2.5, 2.5)
    draw = [m + s * float(x) for m, s, x in zip(astuple(mean), astuple(_SPREAD), z)]
    draw[1] = max(draw[1], 0.5)  # range
    draw[3] = max(draw[3], 2.0)  # rate
    return _Prosody(*draw)


def _settings(voice: _Voice, pros: _Prosody, *, seed: int) -> EspeakSettings:
    """espeak's parameters for one utterance of ``voice`` with the prosody ``pros`` (``seed``: espeak's draws)."""
    return EspeakSettings(
        seed=seed,
        voice=f"{_LANGUAGE}+{voice.variant}",
        rate=int(np.clip(round(pros.rate * voice.rate_scale * _WPM_PER_SYL_S), 80, 400)),
        pitch=int(np.clip(round(voice.pitch + pros.f0_st * _PITCH_PER_ST), 0, 99)),
        range=int(np.clip(round(pros.range_st * voice.range_scale * _RANGE_PER_ST), 0, 100)),
    )


def _trim(y: np.ndarray, *, threshold: float = 1e-3) -> np.ndarray:
    """``y`` without its leading and trailing samples below ``threshold``."""
    loud = np.flatnonzero(np.abs(y) > threshold)
    return y[loud[0]: loud[-1] + 1] if loud.size else y


def _synthesize(rng: np.random.Generator, voice: _Voice, pros: _Prosody, text: _Text, *,
                synth: Synthesizer) -> np.ndarray:
    """Render one utterance as float64 samples in [-1, 1] at the corpus's sample rate (spoken by ``synth``)."""
    import librosa

    settings = _settings(voice, pros, seed=int(rng.integers(2**31 - 1)))
    speech = _trim(synth.speak(text.text, settings=settings))
    y = librosa.resample(speech.astype(np.float64), orig_sr=NATIVE_RATE, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    lead = int(round(float(rng.uniform(0.08, 0.25)) * SAMPLE_RATE))
    tail = int(round(float(rng.uniform(0.10, 0.30)) * SAMPLE_RATE))
    n = max(lead + y.size + tail, int(round((_CLIP_MIN_S + float(rng.uniform(0.0, 0.2))) * SAMPLE_RATE)))
    out = np.zeros(n)
    out[lead: lead + y.size] = y
    # level: active-speech rms to the class and speaker target, then the noise floor
    frames = y[: y.size // 320 * 320].reshape(-1, 320)
    energy = np.mean(frames**2, axis=1)
    active = energy > 0.1 * energy.max() if energy.size else np.zeros(0, dtype=bool)
    rms = math.sqrt(float(np.mean(energy[active]))) if active.any() else 1.0
    target = 10.0 ** ((_TARGET_DB + pros.level_db + voice.gain_db) / 20.0)
    out *= target / max(rms, 1e-9)
    peak = float(np.max(np.abs(out)))
    if peak > 0.9:
        out *= 0.9 / peak
    out += _NOISE_FLOOR * rng.standard_normal(n)
    return np.clip(out, -1.0, 1.0)
