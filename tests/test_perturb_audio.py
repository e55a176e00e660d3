"""Audio variants: the property each one promises, determinism, replay and degenerate clips."""

from __future__ import annotations

import json
import math
import warnings

import librosa
import numpy as np
import pytest
from scipy.signal import fftconvolve

from featcache.errors import FeatcacheError
from featcache.perturb import get_variant, list_variants, replay
from featcache.perturb.reverb import make_rir

SR = 16_000
AUDIO_SPECS = [v.spec for v in list_variants("audio")]


def harmonic_tone(f0: float = 220.0, seconds: float = 1.5, *, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (amplitude * y / np.max(np.abs(y))).astype(np.float32)


def speechlike(seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6))
    return (harmonic_tone(rng.uniform(120, 260), seconds, amplitude=0.3) * envelope).astype(np.float32) + (
        0.01 * rng.standard_normal(t.size)
    ).astype(np.float32)


def median_f0(y: np.ndarray) -> float:
    f0 = librosa.yin(y, fmin=80, fmax=600, sr=SR)
    return float(np.median(f0[5:-5]))


def semitones(f: float, ref: float) -> float:
    return 12 * math.log2(f / ref)


# ------------------------------------------------------------------ pitch (the paper)


@pytest.mark.parametrize("step", [-1, 1])
def test_pitch_shift_measures_one_semitone(step: int) -> None:
    tone = harmonic_tone(220.0)
    variant = get_variant("pitch")
    record = {**variant.draw(tone, utt_id="u", seed=0), "step": step, "key": variant.key}
    shifted = variant.apply(tone, record)
    assert shifted.shape == tone.shape
    assert semitones(median_f0(shifted), median_f0(tone)) == pytest.approx(step, abs=0.2)


def test_pitch_step_is_drawn_from_the_set_per_utterance() -> None:
    tone = harmonic_tone(seconds=0.2)
    steps = [get_variant("pitch").draw(tone, utt_id=f"u{i}", seed=0)["step"] for i in range(40)]
    assert set(steps) == {-1, 1}
    steps2 = [get_variant("pitch:steps=-3|0|3").draw(tone, utt_id=f"u{i}", seed=0)["step"] for i in range(40)]
    assert set(steps2) == {-3, 0, 3}


# ------------------------------------------------------------------ noise (the paper, and SNR sweep)


def test_noise_has_the_asked_std() -> None:
    clean = speechlike(0, seconds=2.0)
    noisy, record = get_variant("noise")(clean, utt_id="u", seed=0)
    added = noisy.astype(np.float64) - clean
    assert np.std(added) == pytest.approx(0.1, rel=0.02)
    assert abs(np.mean(added)) < 0.003
    assert record["noise_std"] == 0.1
    assert record["noise_rms"] == pytest.approx(np.sqrt(np.mean(added**2)), rel=1e-4)
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added**2))
    assert record["snr_db"] == pytest.approx(measured, abs=0.01)


@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_noise_reaches_the_asked_snr(snr: float) -> None:
    clean = speechlike(1, seconds=2.0)
    noisy, record = get_variant(f"noise:snr_db={snr:g}")(clean, utt_id="u", seed=3)
    added = noisy.astype(np.float64) - clean
    measured = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added**2))
    assert measured == pytest.approx(snr, abs=0.01)
    assert record["snr_db"] == pytest.approx(snr, abs=0.01)


def test_noise_on_a_quiet_recording_records_a_very_negative_snr_and_does_not_clip() -> None:
    quiet = speechlike(2) * 0.003
    noisy, record = get_variant("noise")(quiet, utt_id="u", seed=0)
    assert record["snr_db"] < -30
    loud = speechlike(2) * 3.0
    noisy, record = get_variant("noise")(loud, utt_id="u", seed=0)
    assert record["peak"] == pytest.approx(float(np.max(np.abs(noisy))))
    assert record["peak"] > 1.0 and record["out_of_range_fraction"] == pytest.approx(np.mean(np.abs(noisy) > 1))


def test_noise_on_silence_records_an_undefined_snr() -> None:
    silence = np.zeros(SR, dtype=np.float32)
    noisy, record = get_variant("noise")(silence, utt_id="u", seed=0)
    assert record["snr_db"] is None and record["signal_rms"] == 0.0
    assert np.std(noisy) == pytest.approx(0.1, rel=0.05)
    same, record = get_variant("snr-10")(silence, utt_id="u", seed=0)
    assert record["snr_db"] is None and record["noise_std"] == 0.0
    assert not np.any(same)


def test_noise_differs_between_utterances_and_seeds() -> None:
    clip = speechlike(3)
    variant = get_variant("noise")
    a, _ = variant(clip, utt_id="a", seed=0)
    b, _ = variant(clip, utt_id="b", seed=0)
    c, _ = variant(clip, utt_id="a", seed=1)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


# ------------------------------------------------------------------ no audio (the paper)


def test_no_audio_is_a_short_silence() -> None:
    for length in (0, 100, 5 * SR):
        out, record = get_variant("no-audio")(np.ones(length, np.float32) * 0.1, utt_id="u", seed=0)
        assert out.shape == (SR,) and not np.any(out)
    out, _ = get_variant("no-audio:duration=0.25")(speechlike(0), utt_id="u", seed=0)
    assert out.shape == (SR // 4,)


# ------------------------------------------------------------------ beyond the paper


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_tempo_scales_duration_by_one_over_rate_and_keeps_pitch(rate: float) -> None:
    tone = harmonic_tone(200.0, seconds=2.0)
    out, record = get_variant(f"tempo:rate={rate}")(tone, utt_id="u", seed=0)
    assert out.shape[0] == record["out_samples"] == round(tone.shape[0] / rate)
    assert semitones(median_f0(out), median_f0(tone)) == pytest.approx(0.0, abs=0.2)


def _band_energy(y: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(y.shape[0], 1 / SR)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_telephone_removes_energy_outside_the_band() -> None:
    white = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    out, record = get_variant("telephone")(white, utt_id="u", seed=0)
    assert out.shape == white.shape and record["clipped_fraction"] == 0.0
    total = _band_energy(out, 0, SR / 2)
    assert _band_energy(out, 4000, SR / 2) < 1e-4 * total
    assert _band_energy(white, 4000, SR / 2) > 0.4 * _band_energy(white, 0, SR / 2)
    assert _band_energy(out, 0, 150) < 0.01 * total
    t = np.arange(SR) / SR
    in_band = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    passed, _ = get_variant("telephone")(in_band, utt_id="u", seed=0)
    assert _band_energy(passed, 900, 1100) > 0.8 * _band_energy(in_band, 900, 1100)
    narrow, _ = get_variant("telephone-1600")(white, utt_id="u", seed=0)
    assert _band_energy(narrow, 2200, SR / 2) < 1e-3 * _band_energy(narrow, 0, SR / 2)


@pytest.mark.parametrize(("spec", "relative"), [("clip-0.25", True), ("clip:level=0.1,relative=false", False)])
def test_clipping_bounds_the_magnitude(spec: str, relative: bool) -> None:
    clip = speechlike(4)
    out, record = get_variant(spec)(clip, utt_id="u", seed=0)
    level = get_variant(spec).params["level"]
    peak = float(np.max(np.abs(clip)))
    threshold = level * peak if relative else level
    assert record["threshold"] == pytest.approx(threshold, rel=1e-6)
    assert np.max(np.abs(out)) <= record["threshold"]
    assert np.max(np.abs(out)) == pytest.approx(threshold, rel=1e-6)
    assert record["clipped_fraction"] == pytest.approx(np.mean(np.abs(clip) > record["threshold"]))
    untouched = np.abs(clip) <= record["threshold"]
    assert np.array_equal(out[untouched], clip[untouched])


def _schroeder_rt60(rir: np.ndarray, sr: int) -> float:
    """RT60 from the energy decay curve: a line fitted between -5 and -25 dB (T20), extrapolated to -60 dB."""
    edc = np.cumsum((rir**2)[::-1])[::-1]
    tail = edc[1:] / edc[1]  # after the direct path
    db = 10 * np.log10(tail)
    idx = np.where((db <= -5) & (db >= -25))[0]
    slope, _ = np.polyfit(idx / sr, db[idx], 1)
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.6, 1.0])
def test_reverb_rir_has_the_asked_rt60(rt60: float) -> None:
    clip = speechlike(5)
    variant = get_variant(f"reverb:rt60={rt60}")
    out, record = variant(clip, utt_id="u", seed=0)
    rir = make_rir(rt60=record["rt60"], drr_db=record["drr_db"], sr=SR, seed=record["rir_seed"])
    assert rir.shape == (record["rir_samples"],)
    assert _schroeder_rt60(rir, SR) == pytest.approx(rt60, rel=0.1)
    assert np.sum(rir**2) == pytest.approx(1.0)
    assert 10 * np.log10(rir[0] ** 2 / np.sum(rir[1:] ** 2)) == pytest.approx(0.0, abs=1e-6)  # drr_db
    assert out.shape == clip.shape
    np.testing.assert_allclose(out, fftconvolve(clip.astype(np.float64), rir)[: clip.shape[0]], atol=1e-5)


def test_reverb_rir_differs_between_utterances() -> None:
    clip = speechlike(6, seconds=0.5)
    seeds = {get_variant("reverb-0.3").draw(clip, utt_id=f"u{i}", seed=0)["rir_seed"] for i in range(5)}
    assert len(seeds) == 5


# ------------------------------------------------------------------ all audio variants


@pytest.mark.parametrize("spec", AUDIO_SPECS)
def test_degenerate_clips_do_not_crash(spec: str) -> None:
    variant = get_variant(spec)
    rng = np.random.default_rng(0)
    clips = [
        np.zeros(0, np.float32),
        np.zeros(1, np.float32),
        (0.1 * rng.standard_normal(100)).astype(np.float32),  # shorter than any FFT window
        (0.1 * rng.standard_normal(2047)).astype(np.float32),
        np.zeros(SR, np.float32),  # silence
    ]
    for clip in clips:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, record = variant(clip, utt_id="short", seed=0)
        json.dumps(record, allow_nan=False)
        assert out.dtype == np.float32 and out.ndim == 1 and np.all(np.isfinite(out))
        if variant.kind not in ("tempo", "no-audio"):
            assert out.shape == clip.shape
        if not np.any(clip) and variant.kind not in ("noise",):
            assert np.max(np.abs(out), initial=0.0) < 1e-6


@pytest.mark.parametrize("spec", AUDIO_SPECS)
def test_audio_variants_are_reproducible_and_replayable(spec: str) -> None:
    clip = speechlike(7, seconds=0.6)
    out1, rec1 = get_variant(spec)(clip, utt_id="Ses01F_impro01_F000", seed=0)
    out2, rec2 = get_variant(spec)(clip.copy(), utt_id="Ses01F_impro01_F000", seed=0)
    assert np.array_equal(out1, out2) and rec1 == rec2
    stored = json.loads(json.dumps(rec1, allow_nan=False))
    assert np.array_equal(replay(stored, clip, sr=SR), out1)
    assert stored["variant"] == get_variant(spec).spec and stored["sr"] == SR


def test_replay_on_another_input_is_refused() -> None:
    clip = speechlike(8)
    _, record = get_variant("noise")(clip, utt_id="u", seed=0)
    with pytest.raises(FeatcacheError, match="same input"):
        get_variant("noise").apply(clip[:-1], record)
    with pytest.raises(FeatcacheError, match="1-D mono"):
        get_variant("noise")(np.zeros((2, 10), np.float32), utt_id="u", seed=0)
    with pytest.raises(FeatcacheError, match="NaN"):
        get_variant("noise")(np.full(10, np.nan, np.float32), utt_id="u", seed=0)


SPECS_FOR_WORKERS = ["pitch", "noise", "reverb-0.3", "snr-10", "telephone"]


class _PerturbedClips:
    """A tiny map-style dataset that perturbs synthetic clips with each variant."""

    def __init__(self) -> None:
        self.items = [(spec, i) for spec in SPECS_FOR_WORKERS for i in range(4)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        spec, i = self.items[index]
        out, record = get_variant(spec)(speechlike(i, seconds=0.5), utt_id=f"utt{i}", seed=7)
        return out, json.dumps(record)


def test_identical_across_worker_counts() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    def collect(num_workers: int) -> list[tuple[np.ndarray, str]]:
        loader = DataLoader(_PerturbedClips(), batch_size=None, num_workers=num_workers, shuffle=False)
        return [(np.asarray(x), rec) for x, rec in loader]

    torch.manual_seed(0)
    serial, parallel = collect(0), collect(2)
    assert len(serial) == len(parallel) == len(_PerturbedClips())
    for (a, ra), (b, rb) in zip(serial, parallel, strict=True):
        assert ra == rb
        assert np.array_equal(a, b)
    assert not np.array_equal(serial[0][0], serial[1][0])


def test_identical_across_processes_with_different_hash_seeds() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import json, numpy as np\n"
        "from featcache.perturb import get_variant\n"
        "y = np.linspace(-0.5, 0.5, 4000, dtype=np.float32)\n"
        "specs = ('noise', 'pitch', 'reverb-0.3')\n"
        "out = [get_variant(s).draw(y, utt_id=f'Ses0{i}F_impro01_F000', seed=5) for s in specs for i in range(3)]\n"
        "print(json.dumps(out))\n"
    )
    y = np.linspace(-0.5, 0.5, 4000, dtype=np.float32)
    here = [
        get_variant(s).draw(y, utt_id=f"Ses0{i}F_impro01_F000", seed=5)
        for s in ("noise", "pitch", "reverb-0.3")
        for i in range(3)
    ]
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert json.loads(done.stdout) == here
