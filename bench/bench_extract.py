"""Extraction pipeline throughput over bare backbone forward throughput on the same batches (goal >= 0.9).

Usage: python bench/bench_extract.py [--clips 60] [--backbone whisper-base] [--variants clean,pitch]
                                     [--workers 1,2] [--batch-size 8] [--repeats 1] [--models-dir DIR]
       python bench/bench_extract.py --compare-precision [--text-backbone minilm] [--transcripts 5672]
                                     [--backbone whisper-base] [--clips 240] [--batch-size N] [--repeats 3]
                                     [--device cpu|cuda]

``--compare-precision`` extracts the same transcripts (MiniLM) and clips (Whisper base) with ``--precision
fp32`` and ``bf16`` in the same batches (the presets' bf16 batch size: 64 transcripts, 8 clips), alternating,
and prints the time ratio (goal <= 0.5), the smallest cosine of a stored bf16 vector to its fp32 twin (goal
>= 0.999) and where one forward spends its time in each precision; where fp32's own default batch differs
(8 transcripts, which keep its vectors as they were), fp32 at that batch too, and bf16's time over it.

A synthetic corpus of speech-like clips (harmonic tone, syllable envelope, noise; durations evenly
spread over --min-s..--max-s) is written as 16 kHz wav files with a manifest. For every variant and
configuration (DataLoader workers, torch threads of the main process):

* pipeline: wall time of ``featcache.extract.extract(...)`` into a fresh entry (decode, perturb,
  prepare, bucket, forward, write, finalise), with the encoder already loaded;
* bare: the same utterances decoded, perturbed and prepared beforehand in memory, grouped by
  ``featcache.buckets.iter_batches`` in the pipeline's length order, then only
  ``encoder(**encoder.collate(batch))`` timed, with the same torch thread count.

ratio = bare seconds / pipeline seconds (1.0: the pipeline costs nothing beyond the forward passes).
The table also gives CPU seconds of the main process, of the DataLoader workers and of the bare run
(CPU ratio = bare CPU / pipeline main-process CPU: what the pipeline adds to the forward loop,
independent of other load on the machine), and, per variant, how many batches ``iter_batches``
hands out before the last clip is prepared (only those can overlap with decoding). The stored
vectors are checked against the bare ones, so both did the same work. With --repeats > 1 pipeline
and bare runs alternate and each time is the fastest of its runs (background load only ever adds
time). The RATIO line reports the configuration with --headline-workers workers and torch threads =
cores - workers, the worst of the variants.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from _synth import cpu_count, local_backbone, spread_durations, torch_threads, write_corpus

if TYPE_CHECKING:
    from featcache.backbones.encoders import AudioEncoder
    from featcache.cache import FeatureStore
    from featcache.data import Corpus, Utterance
    from featcache.extract import EncoderRun

T = TypeVar("T")
Batch = list[dict[str, Any]]


@dataclass(frozen=True)
class Config:
    """One measured configuration: variant, DataLoader workers, torch threads in the main process."""

    variant: str
    workers: int
    threads: int


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of one run (CPU of this process's threads, and of its reaped children)."""

    wall: float
    cpu: float
    children_cpu: float = 0.0


@dataclass(frozen=True)
class Row:
    """One measurement (the fastest run of each side when repeated)."""

    config: Config
    pipeline: Timing
    bare: Timing
    max_abs_diff: float

    @property
    def ratio(self) -> float:
        """Bare wall time over pipeline wall time."""
        return self.bare.wall / self.pipeline.wall

    @property
    def cpu_ratio(self) -> float:
        """Bare CPU time over the pipeline's main-process CPU time (what the pipeline adds to the forward loop)."""
        return self.bare.cpu / self.pipeline.cpu


def _cpu() -> tuple[float, float]:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], T]) -> tuple[Timing, T]:
    """Run ``fn()`` and measure its wall time, this process's CPU time and its children's CPU time.

    Args:
        fn: The work.

    Returns:
        ``(timing, fn's result)``.
    """
    cpu0, kids0 = _cpu()
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    cpu1, kids1 = _cpu()
    return Timing(wall, cpu1 - cpu0, kids1 - kids0), result


def batches_before_last_item(batches: Sequence[Batch], *, batch_size: int) -> int:
    """How many batches ``iter_batches`` hands out before the last utterance has been prepared.

    Only those can be encoded while the loader is still decoding and perturbing; the rest wait for
    the end of the loader.

    Args:
        batches: Prepared batches (their items, in the extraction's order, are fed again).
        batch_size: Utterances per batch.

    Returns:
        The number of batches yielded while items were still arriving.
    """
    from featcache.buckets import iter_batches

    order = sorted((it for b in batches for it in b), key=lambda it: it["_order"])
    consumed = 0

    def feed() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        for it in order:
            consumed += 1
            yield it

    return sum(1 for _ in iter_batches(feed(), batch_size=batch_size) if consumed < len(order))


def length_order(corpus: Corpus) -> list[str]:
    """Utterance ids in the extraction's order: expected input length (duration, else file size), then id.

    Args:
        corpus: The corpus.

    Returns:
        Ordered ids.
    """

    def length(u: Utterance) -> float:
        if u.duration is not None:
            return u.duration
        return float(u.audio.stat().st_size) if u.audio is not None else 0.0

    return [u.id for u in sorted(corpus.utterances, key=lambda u: (length(u), u.id))]


def prepared_batches(corpus: Corpus, encoder: AudioEncoder, *, variant: str, seed: int, batch_size: int) -> list[Batch]:
    """Decode, perturb and prepare every utterance in memory and bucket them like the extraction does.

    Args:
        corpus: The corpus.
        encoder: The loaded audio encoder.
        variant: Variant spec.
        seed: Variant seed.
        batch_size: Utterances per batch.

    Returns:
        The batches, in the order the extraction encodes them.
    """
    from featcache.buckets import iter_batches
    from featcache.data import load_audio
    from featcache.perturb import get_variant

    v = get_variant(variant)
    items = []
    for order, uid in enumerate(length_order(corpus)):
        x = load_audio(corpus.by_id(uid).audio)
        if v.modality == "audio":
            x, _ = v(x, utt_id=uid, seed=seed)
        item = encoder.prepare(x)
        item["id"], item["_order"] = uid, order
        items.append(item)
    return list(iter_batches(iter(items), batch_size=batch_size))


def bare_forward(encoder: AudioEncoder, batches: Sequence[Batch]) -> dict[str, np.ndarray]:
    """Collate and encode prepared batches (the work the pipeline cannot avoid).

    Args:
        encoder: The loaded encoder.
        batches: Prepared batches.

    Returns:
        Utterance id -> pooled vector.
    """
    import torch

    out: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for batch in batches:
            vecs = encoder(**encoder.collate(batch)).float().numpy()
            out.update(zip([it["id"] for it in batch], vecs, strict=True))
    return out


def run_pipeline(corpus: Corpus, store: FeatureStore, encoder: AudioEncoder, *, run: EncoderRun, config: Config,
                 seed: int, batch_size: int) -> tuple[Timing, dict[str, np.ndarray]]:
    """Time one extraction into a fresh entry, read its vectors back and delete it.

    Args:
        corpus: The corpus.
        store: The feature store.
        encoder: The loaded encoder (reused, as the CLI does across entries).
        run: The encoder run.
        config: Variant, workers and threads.
        seed: Variant seed.
        batch_size: Utterances per forward pass.

    Returns:
        ``(timing of the extract call, id -> stored vector)``.

    Raises:
        RuntimeError: The extraction did not write the entry.
    """
    from featcache.extract import extract

    with torch_threads(config.threads):
        timing, report = timed(lambda: extract(
            corpus, store, run=run, variant=config.variant, seed=seed, batch_size=batch_size,
            num_workers=config.workers, device="cpu", encoder=encoder, progress=False))
    if report.status != "written" or report.path is None:
        raise RuntimeError(f"extraction of {config} ended with status {report.status}")
    with store.open(report.key) as entry:
        stored = dict(zip(entry.ids, entry.vectors(), strict=True))
    report.path.unlink()
    return timing, stored


def configurations(variants: Sequence[str], workers: Sequence[int], cores: int) -> list[Config]:
    """The configurations to measure: 0 and each worker count, with torch on all cores and balanced.

    Balanced means torch threads = cores - workers, where that leaves torch at least one thread.

    Args:
        variants: Variant specs.
        workers: Worker counts to try besides 0.
        cores: CPU cores available.

    Returns:
        The configurations, grouped by variant.
    """
    out = []
    for v in variants:
        seen: set[tuple[int, int]] = set()
        for w in [0, *workers]:
            for t in (cores, cores - w):
                if t >= 1 and (w, t) not in seen:
                    seen.add((w, t))
                    out.append(Config(v, w, t))
    return out


# ------------------------------------------------------------------------------------------ precision

WORDS = ("i", "you", "we", "really", "never", "so", "very", "just", "think", "know", "want", "feel", "told", "said",
         "angry", "sad", "happy", "tired", "great", "awful", "the", "a", "job", "house", "car", "money", "time",
         "today", "tomorrow", "again", "about", "with", "and", "but", "not", "it", "that", "this", "what", "why")
PRECISION_GOALS = {"time": 0.5, "cosine": 0.999}
PROFILE_GROUPS = {
    "matmul": ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
                  "aten::_softmax", "aten::softmax"),
    "convolution": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution"),
    "casts": ("aten::copy_", "aten::_to_copy"),
    "norms and activations": ("aten::native_layer_norm", "aten::layer_norm", "aten::gelu", "aten::native_group_norm"),
}


def write_text_corpus(root: Path, n: int, *, seed: int) -> Path:
    """``n`` transcripts of 3-30 words (about 12 on average, as IEMOCAP's) in a manifest, labels and sessions
    cycling."""
    import csv

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "label", "session", "text"])
        for i in range(n):
            words = rng.choice(WORDS, size=int(np.clip(rng.lognormal(np.log(10), 0.6), 3, 30)))
            out.writerow([f"t{i:05d}", ("ang", "sad", "hap", "neu")[i % 4], str(1 + i % 5), " ".join(words)])
    return path


def precision_batches(corpus: Any, encoder: Any, modality: str, *, batch_size: int) -> list[Batch]:
    """Every utterance prepared in memory and bucketed in order of length, as the extraction encodes them."""
    from featcache.buckets import iter_batches

    items = [encoder.prepare(encoder_input(corpus, u, modality)) for u in corpus.utterances]
    key = "input_ids" if modality == "text" else next(iter(items[0]))
    order = sorted(range(len(items)), key=lambda i: (np.asarray(items[i][key]).size, i))
    ranked = []
    for rank, i in enumerate(order):
        items[i]["_order"] = rank
        ranked.append(items[i])
    return list(iter_batches(iter(ranked), batch_size=batch_size))


def bare_seconds(encoder: Any, batches: Sequence[Batch], *, bf16: bool, device: Any = "cpu") -> float:
    """Seconds of the forward passes alone over prepared batches, as the extraction runs them in ``bf16`` or not,
    on ``device`` (the encoder already there; the vectors brought back to the host, as the extraction does)."""
    import torch

    from featcache.backbones.encoders import bf16_inputs, bf16_weights

    t = time.perf_counter()
    with torch.inference_mode(), bf16_weights(encoder, enabled=bf16):
        for batch in batches:
            inputs = {k: v.to(device) for k, v in encoder.collate(batch).items()}
            encoder(**(bf16_inputs(inputs) if bf16 else inputs)).float().cpu()
    return time.perf_counter() - t


def forward_profile(encoder: Any, batch: Batch, *, bf16: bool) -> str:
    """Where one forward of ``batch`` spends its self CPU time (torch.profiler), as shares of groups of ops."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from featcache.backbones.encoders import bf16_inputs, bf16_weights

    inputs = encoder.collate(batch)
    inputs = bf16_inputs(inputs) if bf16 else inputs
    with torch.inference_mode(), bf16_weights(encoder, enabled=bf16):
        encoder(**inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            encoder(**inputs)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values()) or 1.0
    shares = {g: sum(self_us.get(k, 0.0) for k in keys) / total for g, keys in PROFILE_GROUPS.items()}
    shares["other"] = 1.0 - sum(shares.values())
    return ", ".join(f"{g} {100 * v:.0f}%" for g, v in shares.items())


def precision_settings(modality: str, args: argparse.Namespace) -> list[tuple[str, int]]:
    """The (precision, batch size) extractions ``--compare-precision`` times for one modality: fp32 and bf16 at the
    same batch size (bf16's default, or ``--batch-size`` if given), then fp32 at its own default where that is
    another (what a user who adds ``--precision bf16`` compares against)."""
    from featcache.presets import get_preset

    preset = get_preset("paper")
    default = {p: preset.extraction_batch_size(modality=modality, precision=p) for p in ("fp32", "bf16")}
    same = args.batch_size or default["bf16"]
    settings = [("fp32", same), ("bf16", same)]
    if args.batch_size is None and default["fp32"] != same:
        settings.append(("fp32", default["fp32"]))
    return settings


def compare_precision(args: argparse.Namespace, models_dir: Path) -> None:
    """Extraction in fp32 and in bf16 of the same inputs (text with --text-backbone, audio with --backbone), each
    setting of :func:`precision_settings` in turn, --repeats rounds after one that warms up: the time ratios
    (fastest of each), the smallest cosine of a stored bf16 vector to its fp32 twin, and where a forward spends its
    time in each precision."""
    from featcache.backbones.encoders import EncoderOptions, load_encoder
    from featcache.backbones.resolve import resolve_backbone, weights_hash
    from featcache.cache import FeatureStore
    from featcache.data import read_manifest
    from featcache.extract import EncoderRun, extract

    import torch

    from featcache.train import resolve_device

    cores = args.cores
    dev = resolve_device(args.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cores} torch threads"
    print(f"precision: fp32 and bf16 extraction of the same inputs on {dev} ({where}), {args.repeats} rounds, "
          f"{args.precision_workers} DataLoader worker(s); load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-extract-precision-") as tmp:
        root = Path(tmp)
        corpora = {
            "text": (read_manifest(write_text_corpus(root / "text", args.transcripts, seed=args.seed)),
                     args.text_backbone, EncoderOptions(pooling="mean")),
            "audio": (read_manifest(write_corpus(root / "audio", spread_durations(args.clips, min_s=args.min_s,
                                                                                   max_s=args.max_s), seed=args.seed)),
                      args.backbone, EncoderOptions()),
        }
        for modality, (corpus, name, options) in corpora.items():
            backbone = local_backbone(name, models_dir=models_dir)
            settings = precision_settings(modality, args)
            stores = {st: FeatureStore(root / f"store-{modality}-{st[0]}-{st[1]}") for st in settings}  # (the batch
            for store in stores.values():  # size is not in an entry's key: each setting's entry in its own store)
                weights_hash(backbone, cache_dir=store.models_dir)
            first = stores[settings[0]]
            encoder = load_encoder(resolve_backbone(str(backbone), models_dir=first.models_dir), options=options)
            encoder.to(dev).eval()
            best: dict[tuple[str, int], float] = {}
            cpu: dict[tuple[str, int], float] = {}
            keys = {}
            bare: dict[tuple[str, int], float] = {}
            batches = {b: precision_batches(corpus, encoder, modality, batch_size=b) for b in {b for _, b in settings}}
            with torch_threads(cores):
                for r in range(args.repeats + 1):  # round 0 warms up (first calls, caches) and is not counted
                    for setting in settings if r % 2 == 0 else settings[::-1]:
                        precision, batch = setting
                        run = EncoderRun(modality=modality, backbone=str(backbone), options=options, precision=precision)
                        store = stores[setting]
                        timing, rep = timed(lambda run=run, batch=batch, store=store: extract(
                            corpus, store, run=run, variant="clean", batch_size=batch,
                            num_workers=args.precision_workers, device=str(dev), encoder=encoder, progress=False))
                        assert rep.status == "written", rep.status
                        keys[setting] = rep.key
                        if r > 0:  # the fastest wall time, and the least CPU time (this process and its workers)
                            best[setting] = min(best.get(setting, timing.wall), timing.wall)
                            cpu[setting] = min(cpu.get(setting, math.inf), timing.cpu + timing.children_cpu)
                        seconds = bare_seconds(encoder, batches[batch], bf16=precision == "bf16", device=dev)
                        if r > 0:
                            bare[setting] = min(bare.get(setting, seconds), seconds)
                        if r < args.repeats:
                            store.path(rep.key).unlink()  # extracted again next round
            f32, b16 = settings[0], settings[1]
            with stores[f32].open(keys[f32]) as e32, stores[b16].open(keys[b16]) as e16:
                a, b = e32.vectors(), e16.vectors()
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            ratio = best[b16] / best[f32]
            n = len(corpus.utterances)
            what = f"{n} transcripts" if modality == "text" else f"{n} clips of {args.min_s:g}-{args.max_s:g} s"
            print(f"{modality} ({name}, {what}), batches of {f32[1]}: fp32 {best[f32]:.1f} s, bf16 {best[b16]:.1f} s; "
                  f"cosine of bf16 to fp32 vectors: min {cos.min():.6f}, mean {cos.mean():.6f}")
            print(f"RATIO extract_{modality}_bf16_over_fp32_time = {ratio:.2f} (goal <= {PRECISION_GOALS['time']}; "
                  "the same batches)")
            print(f"RATIO extract_{modality}_bf16_over_fp32_cpu_time = {cpu[b16] / cpu[f32]:.2f} (CPU seconds "
                  f"of this process and its workers: fp32 {cpu[f32]:.1f}, bf16 {cpu[b16]:.1f}; less "
                  "sensitive to other load than wall time)")
            print(f"RATIO extract_{modality}_bf16_min_cosine = {cos.min():.6f} (goal >= {PRECISION_GOALS['cosine']})")
            if len(settings) > 2:
                own = settings[2]
                print(f"  fp32 at its own default, batches of {own[1]} (its vectors unchanged): {best[own]:.1f} s; "
                      f"bf16 in batches of {b16[1]} takes {best[b16] / best[own]:.2f} of it")
                print(f"RATIO extract_{modality}_bf16_over_fp32_default_batches_time = {best[b16] / best[own]:.2f} "
                      f"(each precision at its default batch size: what adding --precision bf16 gives)")
            missed = ratio > PRECISION_GOALS["time"] or cos.min() < PRECISION_GOALS["cosine"]
            print(f"  where the time goes{' (a goal is missed)' if missed else ''}: the forward passes alone over "
                  f"the same batches (prepared in memory, timed in the same rounds) take fp32 {bare[f32]:.1f} s "
                  f"({100 * bare[f32] / best[f32]:.0f}% of the extraction), bf16 {bare[b16]:.1f} s "
                  f"({100 * bare[b16] / best[b16]:.0f}%); bare bf16 / fp32 = {bare[b16] / bare[f32]:.2f}")
            if dev.type != "cpu":
                continue
            middle = batches[f32[1]][len(batches[f32[1]]) // 2]
            print(f"  one forward of {len(middle)} inputs (torch.profiler, self CPU time):")
            for precision in ("fp32", "bf16"):
                print(f"    {precision}: {forward_profile(encoder, middle, bf16=precision == 'bf16')}")


def encoder_input(corpus: Any, utt: Any, modality: str) -> Any:
    """What an encoder prepares for one utterance: its text, or its audio as float32 at 16 kHz."""
    from featcache.data import load_audio

    return utt.text if modality == "text" else load_audio(utt.audio)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the benchmark and print the table and the headline ratio.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=None,
                        help="number of synthetic clips (default 60; 240 with --compare-precision, so that an "
                             "entry's fixed costs weigh as little as in a corpus of thousands)")
    parser.add_argument("--min-s", type=float, default=1.0, help="shortest clip in seconds")
    parser.add_argument("--max-s", type=float, default=8.0, help="longest clip in seconds")
    parser.add_argument("--backbone", default="whisper-base", help="audio backbone: alias or local directory")
    parser.add_argument("--variants", default="clean,pitch", help="comma-separated audio variant specs")
    parser.add_argument("--workers", default="1,2", help="comma-separated DataLoader worker counts besides 0")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="utterances per forward pass (default 8; with --compare-precision: the presets' "
                             "bf16 batch for both precisions, and fp32's own default as well)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per measurement, pipeline and bare alternating; the fastest of each is kept")
    parser.add_argument("--cores", type=int, default=cpu_count(), help="cores to plan threads for (default: all)")
    parser.add_argument("--headline-workers", type=int, default=1,
                        help="workers of the configuration the RATIO line reports (torch threads = cores - workers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="persistent folder for converted backbones (default: $FEATCACHE_CACHE/models, "
                             "else ./cache/models)")
    parser.add_argument("--compare-precision", action="store_true",
                        help="instead: fp32 against bf16 extraction of the same inputs, text (--text-backbone, "
                             "--transcripts) and audio (--backbone, --clips): time ratio and smallest cosine")
    parser.add_argument("--text-backbone", default="minilm", help="text backbone of --compare-precision")
    parser.add_argument("--transcripts", type=int, default=5672,
                        help="transcripts of --compare-precision (default: as many as IEMOCAP has)")
    parser.add_argument("--device", default="cpu",
                        help="device of --compare-precision's extractions (cpu, cuda, auto); test a GPU machine's "
                             "--device cuda run with --device cpu first")
    parser.add_argument("--precision-workers", type=int, default=1,
                        help="DataLoader workers of --compare-precision's extractions")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.compare_precision:
        from featcache.cache import default_root

        args.clips = args.clips or 240
        compare_precision(args, args.models_dir or default_root() / "models")
        return
    args.batch_size, args.clips = args.batch_size or 8, args.clips or 60

    import soundfile as sf
    import torch

    from featcache.backbones.encoders import EncoderOptions, load_encoder
    from featcache.backbones.resolve import resolve_backbone, weights_hash
    from featcache.cache import FeatureStore, default_root
    from featcache.data import read_manifest
    from featcache.errors import FeatcacheError
    from featcache.extract import EncoderRun
    from featcache.perturb import get_variant

    variants = [s for s in args.variants.split(",") if s]
    for spec in variants:
        try:
            modality = get_variant(spec).modality
        except FeatcacheError as e:
            parser.error(f"--variants: {e}")
        if modality not in (None, "audio"):
            parser.error(f"--variants: {spec} is not an audio variant")
    workers = sorted({int(w) for w in args.workers.split(",") if w.strip()} - {0})
    models_dir = args.models_dir or default_root() / "models"
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        root = Path(tmp)
        manifest = write_corpus(root / "corpus", spread_durations(args.clips, min_s=args.min_s, max_s=args.max_s),
                                seed=args.seed)
        corpus = read_manifest(manifest)
        audio_s = sum(sf.info(str(u.audio)).duration for u in corpus.utterances)
        backbone = local_backbone(args.backbone, models_dir=models_dir)
        run = EncoderRun(modality="audio", backbone=str(backbone))
        store = FeatureStore(root / "store")
        t0 = time.perf_counter()
        weights_hash(backbone, cache_dir=store.models_dir)  # once per store; cached by later extractions
        hash_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        encoder = load_encoder(resolve_backbone(str(backbone), models_dir=store.models_dir), options=EncoderOptions())
        load_s = time.perf_counter() - t0
        if encoder.modality != "audio":
            parser.error(f"--backbone {args.backbone}: not an audio backbone")
        cores = max(1, args.cores)
        print(f"{len(corpus)} clips, {audio_s:.1f} s of 16 kHz audio; backbone {args.backbone} ({backbone}); "
              f"batch {args.batch_size}; {cores} cores ({platform.processor() or platform.machine()}); "
              f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
        print(f"one-off costs, not in the table: weight hash {hash_s:.2f} s, model load {load_s:.2f} s")

        rows: list[Row] = []
        batches_by_variant: dict[str, list[Batch]] = {}
        for config in configurations(variants, workers, cores):
            if config.variant not in batches_by_variant:
                prep, batches = timed(functools.partial(
                    prepared_batches, corpus, encoder, variant=config.variant, seed=args.seed,
                    batch_size=args.batch_size))
                batches_by_variant[config.variant] = batches
                early = batches_before_last_item(batches, batch_size=args.batch_size)
                print(f"{config.variant}: decode+perturb+prepare of all clips in one process (first calls warm the "
                      f"libraries up): {prep.wall:.2f} s wall, {prep.cpu:.2f} s CPU; {len(batches)} batches, {early} "
                      f"of them handed out by iter_batches before the last clip is prepared")
            batches = batches_by_variant[config.variant]
            with torch_threads(config.threads):
                bare_forward(encoder, batches[:1])  # warm-up at this thread count
            pipe_best: tuple[Timing, dict[str, np.ndarray]] | None = None
            bare_best: tuple[Timing, dict[str, np.ndarray]] | None = None
            for _ in range(max(1, args.repeats)):  # alternate, so both sides see the same background load
                pipe = run_pipeline(corpus, store, encoder, run=run, config=config, seed=args.seed,
                                    batch_size=args.batch_size)
                with torch_threads(config.threads):
                    bare = timed(functools.partial(bare_forward, encoder, batches))
                pipe_best = pipe if pipe_best is None or pipe[0].wall < pipe_best[0].wall else pipe_best
                bare_best = bare if bare_best is None or bare[0].wall < bare_best[0].wall else bare_best
            assert pipe_best is not None and bare_best is not None
            stored, computed = pipe_best[1], bare_best[1]
            diff = max(float(np.abs(stored[u] - computed[u]).max()) for u in computed)
            rows.append(Row(config, pipe_best[0], bare_best[0], diff))
            print(f"  measured {config.variant} workers={config.workers} threads={config.threads}: pipeline "
                  f"{pipe_best[0].wall:.2f} s, bare {bare_best[0].wall:.2f} s (load {os.getloadavg()[0]:.2f})",
                  flush=True)

        n = len(corpus)
        print()
        print(f"{'variant':<10} {'workers':>7} {'threads':>7} {'pipeline s':>10} {'utt/s':>6} {'bare s':>7} "
              f"{'utt/s':>6} {'ratio':>6} {'main CPU s':>10} {'workers CPU s':>13} {'bare CPU s':>10} {'CPU ratio':>9}")
        for r in rows:
            c = r.config
            print(f"{c.variant:<10} {c.workers:>7} {c.threads:>7} {r.pipeline.wall:>10.2f} {n / r.pipeline.wall:>6.2f} "
                  f"{r.bare.wall:>7.2f} {n / r.bare.wall:>6.2f} {r.ratio:>6.3f} {r.pipeline.cpu:>10.2f} "
                  f"{r.pipeline.children_cpu:>13.2f} {r.bare.cpu:>10.2f} {r.cpu_ratio:>9.3f}")
        print()
        print(f"stored vectors equal the bare forward's: max |difference| {max(r.max_abs_diff for r in rows):.2e}; "
              f"load average at the end {os.getloadavg()[0]:.2f}")
        print("bare = encoder(**collate(batch)) only, on the same batches with the same torch threads;")
        print("ratio = bare s / pipeline s (wall). CPU ratio = bare CPU s / the pipeline's main-process CPU s:")
        print("what the pipeline adds to the forward loop itself, whatever else runs on the machine.")
        print("workers=0 decodes, perturbs and prepares in the main process between forward passes, so")
        print("nothing overlaps. With threads=cores the workers compete with torch's threads for the same")
        print("cores (and torch's threads wait for each other whenever one is descheduled), so the workers'")
        print("time is taken from the forward pass; threads=cores-workers leaves the workers their own")
        print("cores, which is where the overlap can be judged. Batches that iter_batches hands out only")
        print("after the last clip is prepared cannot overlap with decoding in any configuration.")
        print("Each variant ran once in this process before its timed extractions, so forked workers start")
        print("warm; a cold extract() pays the variant's first-call cost (library loading) in every worker.")
        headline_w = args.headline_workers if cores - args.headline_workers >= 1 else 0
        headline_t = cores - headline_w if headline_w else cores
        picked = [r for r in rows if r.config.workers == headline_w and r.config.threads == headline_t] or rows
        worst = min(picked, key=lambda r: r.ratio)
        print(f"RATIO extract = {worst.ratio:.3f} (goal >= 0.9; workers={headline_w}, torch threads={headline_t}, "
              f"worst of {', '.join(variants)}: {worst.config.variant})")


if __name__ == "__main__":
    main()
