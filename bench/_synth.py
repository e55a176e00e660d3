"""Shared pieces of the extraction benchmarks: synthetic speech-like corpora, offline backbones, timers.

Nothing here downloads anything: corpora are synthesised from a seed, ``whisper-base`` and ``minilm``
resolve to their packaged weights, and wav2vec 2.0 models are built randomly initialised from a config
(speed does not depend on the weights' values).
"""

from __future__ import annotations

import csv
import os
import resource
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SR = 16_000
LABELS: tuple[str, ...] = ("ang", "sad", "hap", "fru")


def speech_like(duration_s: float, *, rng: np.random.Generator) -> np.ndarray:
    """One speech-like clip: a harmonic tone with a gliding F0, a syllable-rate envelope and a little noise.

    Args:
        duration_s: Duration in seconds.
        rng: Random generator (F0, envelope phase and noise are drawn from it).

    Returns:
        float32 mono waveform at 16 kHz, peak below 0.5.
    """
    t = np.arange(max(1, round(duration_s * SR))) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None)
    y = 0.2 * voiced * envelope + 0.005 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def spread_durations(count: int, *, min_s: float, max_s: float) -> np.ndarray:
    """Durations evenly spread over ``[min_s, max_s]``.

    Args:
        count: Number of clips.
        min_s: Shortest duration in seconds.
        max_s: Longest duration in seconds.

    Returns:
        ``count`` durations in seconds.

    Raises:
        ValueError: ``count`` < 1 or ``min_s`` > ``max_s`` or ``min_s`` <= 0.
    """
    if count < 1 or min_s <= 0 or min_s > max_s:
        raise ValueError(f"need count >= 1 and 0 < min_s <= max_s (got {count}, {min_s}, {max_s})")
    return np.linspace(min_s, max_s, count)


def iemocap_durations(
    count: int,
    *,
    seed: int,
    mean_s: float = 4.5,
    sigma: float = 0.65,
    low_s: float = 0.6,
    high_s: float = 34.0,
    match_mean: bool = False,
) -> np.ndarray:
    """Durations drawn like IEMOCAP's utterances: lognormal with the given mean, clipped.

    Args:
        count: Number of clips.
        seed: Random seed.
        mean_s: Mean of the (unclipped) lognormal in seconds.
        sigma: Log-scale standard deviation (0.65 gives a median about 3.7 s for a 4.5 s mean).
        low_s: Shortest duration kept.
        high_s: Longest duration kept.
        match_mean: Scale the draws so that their own mean is ``mean_s`` before clipping (a small
            sample then has the population's mean, not a sampling accident).

    Returns:
        ``count`` durations in seconds.

    Raises:
        ValueError: ``count`` < 1 or an empty clipping range.
    """
    if count < 1 or not 0 < low_s < high_s:
        raise ValueError(f"need count >= 1 and 0 < low_s < high_s (got {count}, {low_s}, {high_s})")
    rng = np.random.default_rng(seed)
    mu = np.log(mean_s) - sigma**2 / 2
    draws = rng.lognormal(mu, sigma, size=count)
    if match_mean:
        draws *= mean_s / draws.mean()
    return np.clip(draws, low_s, high_s)


def write_corpus(root: Path, durations: Sequence[float] | np.ndarray, *, seed: int, sessions: int = 5) -> Path:
    """Write speech-like clips as 16 kHz PCM wav files plus a ``manifest.csv`` (id,label,session,audio).

    Labels cycle through the paper's four classes and sessions through ``1..sessions``.

    Args:
        root: Directory to write into (created).
        durations: One duration in seconds per clip.
        seed: Random seed of the waveforms.
        sessions: Number of sessions.

    Returns:
        The manifest path.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "label", "session", "audio"])
        for i, duration in enumerate(durations):
            utt_id = f"utt{i:05d}"
            sf.write(str(wav_dir / f"{utt_id}.wav"), speech_like(float(duration), rng=rng), SR, subtype="PCM_16")
            out.writerow([utt_id, LABELS[i % len(LABELS)], str(1 + i % sessions), f"wav/{utt_id}.wav"])
    return manifest


def wav2vec2_checkpoint(path: Path, *, seed: int, size: str = "base") -> Path:
    """Save a randomly initialised wav2vec 2.0 checkpoint (model + feature extractor) into ``path``.

    Args:
        path: Directory to write (created).
        seed: ``torch.manual_seed`` before the weights are drawn.
        size: ``base`` (``Wav2Vec2Config()``: 12 layers, 768-d, group-norm feature encoder, like
            wav2vec2-base) or ``tiny`` (2 layers, 32-d, three convolutions with the base model's
            overall stride of 320 samples, i.e. 50 frames per second like the real models).

    Returns:
        ``path``.

    Raises:
        ValueError: Unknown size.
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    if size == "base":
        cfg = Wav2Vec2Config()
        fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    elif size == "tiny":
        cfg = Wav2Vec2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16), conv_stride=(10, 8, 4), conv_kernel=(10, 8, 4), feat_extract_norm="layer",
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10, do_stable_layer_norm=True,
        )
        fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    else:
        raise ValueError(f"size {size!r}: use base or tiny")
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).save_pretrained(path)
    fe.save_pretrained(path)
    return path


def local_backbone(name: str, *, models_dir: Path) -> Path:
    """Resolve a backbone name to an absolute local checkpoint directory (converting ``whisper-base`` once).

    Passing the directory to the extraction (instead of the alias) keeps the conversion in a persistent
    models folder rather than in each benchmark's throw-away store.

    Args:
        name: ``whisper-base``, ``minilm``, a local directory or a hub name in the local cache.
        models_dir: Persistent folder for converted models and the weight-hash cache.

    Returns:
        The checkpoint directory.

    Raises:
        FeatcacheError: The backbone is not available offline.
    """
    from featcache.backbones.resolve import resolve_backbone

    return resolve_backbone(name, models_dir=models_dir).path.resolve()


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count afterwards.

    Args:
        n: Intra-op threads.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def emotion_vectors(
    labels: np.ndarray,
    *,
    dim: int,
    noise: float,
    normalize: bool,
    seed: int,
    signal_dim: int = 32,
    clusters: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Utterance vectors that a head learns about as slowly and as well as it learns real embeddings.

    Each class is a mixture of ``clusters`` unit-norm centres in a random ``signal_dim``-dimensional
    subspace; a vector is its utterance's centre plus isotropic noise of total norm about ``noise``, and
    is then scaled to unit norm when ``normalize`` (as sentence encoders such as MiniLM output). Small,
    mostly-noise unit vectors whose classes are mixtures are what make a 384 -> 512 -> 256 -> 4 head train
    for 20-40 epochs before early stopping, like the real frozen-MiniLM vectors of IEMOCAP (16-38 epochs,
    about 63 % accuracy), where Gaussian clouds of unit variance are learnt in a few epochs. With IEMOCAP's
    label counts and leave-one-session-out folds, ``noise=5.0, normalize=True`` at 384-d gives text heads
    of about 63 % test accuracy after 20-42 epochs (mean 31); ``noise=6.0, normalize=False`` at 512-d gives
    audio heads of about 53 % after 11-52 epochs (mean 26).

    Args:
        labels: Class index of each utterance.
        dim: Vector size (384 for MiniLM, 512 for Whisper base).
        noise: Norm of the noise relative to the class signal (larger: lower accuracy).
        normalize: Scale every vector to unit norm.
        seed: Random seed (centres, cluster choice, noise).
        signal_dim: Dimension of the subspace that holds the class signal.
        clusters: Sub-clusters per class (the classes are not linearly separable).

    Returns:
        ``(vectors float32 [n, dim], signal float32 [n, dim])``: the vectors, and each one's noise-free
        class signal (perturbed variants add more noise to the same signal).
    """
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1
    basis = np.linalg.qr(rng.standard_normal((dim, signal_dim)))[0]  # dim x signal_dim, orthonormal columns
    centres = rng.standard_normal((n_classes, clusters, signal_dim))
    centres /= np.linalg.norm(centres, axis=-1, keepdims=True)
    signal = centres[labels, rng.integers(0, clusters, len(labels))] @ basis.T
    vectors = signal + noise * rng.standard_normal((len(labels), dim)) / np.sqrt(dim)
    if normalize:
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), signal.astype(np.float32)
