"""The demo corpus's audio: a source-filter synthesis in numpy of one utterance from a speaker's voice,
the class's prosody and the words' syllables (:func:`_synthesize`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featcache.data import SAMPLE_RATE
from featcache.demo.plan import _rng
from featcache.demo.text import _Text

#: Bounds of a turn's length in seconds.
_CLIP_MIN_S = 1.0
_CLIP_MAX_S = 4.0


@dataclass(frozen=True)
class _Voice:
    """Speaker constants."""

    f0_st: float  # base F0 in semitones re 1 Hz
    formant_scale: float
    gain_db: float
    rate_scale: float
    range_scale: float
    tilt_db: float
    breath: float


@dataclass(frozen=True)
class _Prosody:
    """Class means of the prosodic cues, relative to the speaker."""

    f0_st: float  # F0 level offset in semitones
    range_st: float  # F0 excursion in semitones
    level_db: float  # active-speech level offset in dB
    rate: float  # syllables per second
    tilt_db: float  # spectral tilt offset in dB per octave (positive = brighter)
    breath: float  # aspiration noise relative to voicing


#: ang and hap differ little; high arousal vs fru vs sad differ a lot; F0 levels overlap.
_PROSODY: dict[str, _Prosody] = {
    "ang": _Prosody(f0_st=2.6, range_st=4.6, level_db=5.5, rate=4.9, tilt_db=2.0, breath=0.05),
    "hap": _Prosody(f0_st=3.0, range_st=5.6, level_db=4.0, rate=4.6, tilt_db=1.0, breath=0.06),
    "exc": _Prosody(f0_st=3.4, range_st=6.0, level_db=5.0, rate=4.9, tilt_db=1.5, breath=0.06),
    "fru": _Prosody(f0_st=1.0, range_st=3.4, level_db=0.5, rate=4.0, tilt_db=-0.5, breath=0.08),
    "sad": _Prosody(f0_st=-1.0, range_st=2.2, level_db=-4.0, rate=3.3, tilt_db=-2.5, breath=0.14),
    "neu": _Prosody(f0_st=0.0, range_st=3.0, level_db=0.0, rate=4.0, tilt_db=-1.0, breath=0.07),
    "sur": _Prosody(f0_st=4.5, range_st=7.5, level_db=3.5, rate=4.2, tilt_db=0.5, breath=0.07),
}
#: Utterance-to-utterance spread of each cue (standard deviations, same units).
_SPREAD = _Prosody(f0_st=2.0, range_st=1.5, level_db=3.5, rate=0.65, tilt_db=2.2, breath=0.04)

#: Vowel formants (Hz), adult male; female voices scale them up.
_VOWELS: tuple[tuple[float, float, float], ...] = (
    (730.0, 1090.0, 2440.0),  # a
    (270.0, 2290.0, 3010.0),  # i
    (300.0, 870.0, 2240.0),  # u
    (530.0, 1840.0, 2480.0),  # e
    (570.0, 840.0, 2410.0),  # o
    (660.0, 1720.0, 2410.0),  # ae
    (490.0, 1350.0, 1690.0),  # er
    (640.0, 1190.0, 2390.0),  # uh
)
_BANDWIDTHS = np.array([90.0, 110.0, 170.0, 250.0])
_F4 = 3500.0
_HOP = 80  # control rate: 5 ms
_TARGET_DB = -29.5  # active-speech level of a neutral utterance (rms ~0.033)
_NOISE_FLOOR = 6e-4


def _make_voice(seed: int, speaker: str) -> _Voice:
    rng = _rng(seed, "voice", speaker)
    female = speaker.endswith("F")
    base_hz = 205.0 if female else 115.0
    return _Voice(
        f0_st=12.0 * math.log2(base_hz) + float(rng.normal(0.0, 1.2)),
        formant_scale=(1.14 if female else 1.0) * math.exp(float(rng.normal(0.0, 0.03))),
        gain_db=float(rng.normal(0.0, 2.0)),
        rate_scale=math.exp(float(rng.normal(0.0, 0.07))),
        range_scale=math.exp(float(rng.normal(0.0, 0.15))),
        tilt_db=float(rng.normal(0.0, 1.0)),
        breath=float(abs(rng.normal(0.0, 0.015))),
    )


def _draw_prosody(rng: np.random.Generator, raw: str) -> _Prosody:
    if raw == "xxx":  # no agreement: a blend of two classes
        a, b = rng.choice(["ang", "hap", "sad", "fru", "neu"], size=2, replace=False)
        w = float(rng.uniform(0.3, 0.7))
        pa, pb = _PROSODY[str(a)], _PROSODY[str(b)]
        mean = _Prosody(*(w * x + (1 - w) * y for x, y in zip(_astuple(pa), _astuple(pb))))
    else:
        mean = _PROSODY[raw]
    z = np.clip(rng.normal(size=6), -2.5, 2.5)
    draw = [m + s * float(x) for m, s, x in zip(_astuple(mean), _astuple(_SPREAD), z)]
    draw[1] = max(draw[1], 0.5)  # range
    draw[3] = max(draw[3], 2.0)  # rate
    draw[5] = max(draw[5], 0.0)  # breath
    return _Prosody(*draw)


def _astuple(p: _Prosody) -> tuple[float, float, float, float, float, float]:
    return (p.f0_st, p.range_st, p.level_db, p.rate, p.tilt_db, p.breath)


@functools.lru_cache(maxsize=64)
def _band_shape(size: int, lo: float, hi: float) -> np.ndarray:
    """Magnitude of a smooth band-pass (4th-order skirts) on the rfft bins of a ``size``-point FFT."""
    f = np.maximum(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE), 1.0)
    shape = 1.0 / ((1.0 + (lo / f) ** 4) * (1.0 + (f / hi) ** 4))
    shape.setflags(write=False)
    return shape


def _shaped_noises(rng: np.random.Generator, n: int, bands: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Unit-rms noises with smooth band-pass spectra, one per ``(lo, hi)`` band in Hz.

    They share one white-noise draw, made directly as a complex Gaussian spectrum (their envelopes
    never overlap much, so the sharing is inaudible).
    """
    size = 1 << max(n - 1, 1).bit_length()  # power-of-two FFT, cropped
    m = size // 2 + 1
    spec = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    out = []
    for lo, hi in bands:
        y = np.fft.irfft(spec * _band_shape(size, lo, hi), size)[:n]
        out.append(y / (math.sqrt(float(np.dot(y, y)) / n) + 1e-12))
    return out


def _synthesize(rng: np.random.Generator, voice: _Voice, pros: _Prosody, text: _Text) -> np.ndarray:
    """Render one utterance as float64 samples in [-1, 1]."""
    sr = SAMPLE_RATE
    rate = pros.rate * voice.rate_scale
    # -- timing: syllables, phrase pauses, leading and trailing silence ---------------------
    lead = float(rng.uniform(0.08, 0.25))
    tail = float(rng.uniform(0.10, 0.30))
    n_sent = len(text.sentence_ends)
    pauses_total = 0.35 * (n_sent - 1)  # upper bound of the phrase pauses drawn below
    budget = _CLIP_MAX_S - 0.05 - lead - tail - pauses_total
    n_syl = int(min(max(text.n_syllables, 2), max(2, math.floor(budget * rate))))
    durs = rng.gamma(6.0, 1.0 / 6.0, n_syl) / rate
    if durs.sum() > budget:
        durs *= budget / durs.sum()
    # sentence boundaries in syllables (proportional to words)
    cut = sorted({min(n_syl - 1, max(1, round(e / text.n_words * n_syl))) for e in text.sentence_ends[:-1]})
    pauses = np.zeros(n_syl)
    for c in cut:
        pauses[c - 1] = float(rng.uniform(0.12, 0.35))
    starts = lead + np.concatenate([[0.0], np.cumsum(durs + pauses)[:-1]])
    speech_end = float(starts[-1] + durs[-1])
    total = max(speech_end + tail, _CLIP_MIN_S + float(rng.uniform(0.0, 0.2)))
    total = min(total, _CLIP_MAX_S - 0.01)
    n = int(round(total * sr))
    n_frames = n // _HOP + 2
    tf = np.arange(n_frames) * (_HOP / sr)

    # -- per-syllable plan -----------------------------------------------------------------
    vowels = rng.integers(len(_VOWELS), size=n_syl)
    stressed = rng.random(n_syl) < 0.38
    stressed[0] |= rng.random() < 0.5
    onset_frac = np.where(rng.random(n_syl) < 0.65, rng.uniform(0.15, 0.35, n_syl), 0.0)
    prominence = np.where(stressed, 1.0, rng.uniform(0.5, 0.85, n_syl))
    nuc_start = starts + onset_frac * durs
    nuc_end = starts + durs
    nuc_mid = 0.5 * (nuc_start + nuc_end)

    # -- F0 contour (semitones) --------------------------------------------------------------
    rng_st = pros.range_st * voice.range_scale
    level = voice.f0_st + pros.f0_st
    pos = np.clip((tf - lead) / max(speech_end - lead, 1e-3), 0.0, 1.0)
    f0 = level + rng_st * 0.35 * (0.5 - pos)  # declination
    for a in np.flatnonzero(stressed):  # pitch accents
        height = rng_st * float(rng.uniform(0.35, 0.8))
        f0 += height * np.exp(-0.5 * ((tf - nuc_mid[a]) / (0.45 * durs[a])) ** 2)
    for q, e in zip(text.questions, [*cut, n_syl]):
        if q:  # final rise over the last syllable of the sentence
            last = e - 1
            f0 += rng_st * 0.7 * np.clip((tf - starts[last]) / durs[last], 0.0, 1.0) * (tf <= nuc_end[last] + 0.1)
    wander = np.cumsum(rng.normal(0.0, 0.08, n_frames))
    wander = np.convolve(wander - wander.mean(), np.ones(20) / 20, mode="same")
    f0 = f0 + wander + rng.normal(0.0, 0.06, n_frames)  # slow drift, jitter
    f0_hz_frames = 2.0 ** (f0 / 12.0)

    # -- control-rate envelopes ------------------------------------------------------------
    voiced = np.zeros(n_frames)
    fric = np.zeros(n_frames)
    decl = 1.0 - 0.25 * pos
    for i in range(n_syl):
        x = (tf - nuc_start[i]) / max(nuc_end[i] - nuc_start[i], 1e-3)
        m = (x > 0) & (x < 1)
        voiced[m] = np.maximum(voiced[m], prominence[i] * np.sin(np.pi * x[m]) ** 0.6)
        if onset_frac[i] > 0:
            xo = (tf - starts[i]) / max(nuc_start[i] - starts[i], 1e-3)
            mo = (xo > 0) & (xo < 1)
            fric[mo] = np.maximum(fric[mo], np.sin(np.pi * xo[mo]) ** 2)
    voiced *= decl * np.exp(rng.normal(0.0, 0.04, n_frames))  # shimmer

    # formant tracks: vowel targets at nucleus centres, interpolated in between
    targets = np.array([_VOWELS[v] for v in vowels]) * voice.formant_scale
    formants = np.stack([np.interp(tf, nuc_mid, targets[:, j]) for j in range(3)])  # (3, F)
    freqs = np.vstack([formants, np.full((1, n_frames), _F4 * voice.formant_scale)])  # (4, F)

    # -- harmonic voiced source through the formant envelope --------------------------------
    ramp = (np.arange(_HOP) / _HOP).astype(np.float32)

    def up(a: np.ndarray) -> np.ndarray:
        """Linear interpolation from the control rate to the sample rate."""
        a32 = a.astype(np.float32)
        return (a32[:-1, None] + (a32[1:] - a32[:-1])[:, None] * ramp[None, :]).ravel()[:n]

    f0_s = up(f0_hz_frames)
    phase = 2.0 * np.pi * np.cumsum(f0_s, dtype=np.float64) / sr + float(rng.uniform(0, 2 * np.pi))
    z1 = np.exp(1j * phase).astype(np.complex64)
    tilt = -6.0 + pros.tilt_db + voice.tilt_db  # dB per octave
    n_harm = int(min(60, 5000.0 / f0_hz_frames.min()))
    k = np.arange(1, n_harm + 1)[:, None]
    fk = k * f0_hz_frames[None, :]  # (K, F)
    gain = (fk / 100.0) ** (tilt / (20.0 * math.log10(2.0)))
    for j in range(4):
        F = freqs[j][None, :]
        B = _BANDWIDTHS[j]
        gain = gain * F**2 / np.sqrt((F**2 - fk**2) ** 2 + (B * fk) ** 2)
    gain = np.where(fk < 7600.0, gain, 0.0)
    y32 = np.zeros(n, dtype=np.float32)
    zk = z1.copy()
    for h in range(n_harm):
        y32 += up(gain[h]) * zk.imag
        zk *= z1
    y = y32.astype(np.float64)
    env_v = up(voiced).astype(np.float64)
    y *= env_v
    active = env_v > 0.1
    ref = math.sqrt(float(np.mean(y[active] ** 2))) if active.any() else 1.0

    # -- noise: breath during voicing, frication at onsets ------------------------------------
    breath = (pros.breath + voice.breath) * ref
    aspiration, frication, floor = _shaped_noises(
        rng, n, [(400.0, 5000.0), (2500.0 + 100.0 * float(rng.integers(21)), 7000.0), (60.0, 4000.0)]
    )
    y += breath * env_v * (1.0 + 0.5 * np.cos(phase)) * aspiration
    y += 0.35 * ref * up(fric).astype(np.float64) * frication

    # -- level: active-speech rms to the class and speaker target, then the noise floor -------
    target = 10.0 ** ((_TARGET_DB + pros.level_db + voice.gain_db) / 20.0)
    rms = math.sqrt(float(np.mean(y[active] ** 2))) if active.any() else 1.0
    y *= target / max(rms, 1e-9)
    peak = float(np.max(np.abs(y)))
    if peak > 0.6:
        y *= 0.6 / peak
    y += _NOISE_FLOOR * floor
    return np.clip(y, -1.0, 1.0)
