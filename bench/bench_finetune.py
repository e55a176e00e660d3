"""featcache's fine-tuning loop against a bare forward + backward + optimizer step on the same batches
(goal >= 0.9), and length-bucketed audio fine-tuning against every clip padded to 246,000 samples (goal >= 3x).

Usage: python bench/bench_finetune.py [--quick] [--device cpu|cuda] [--precision auto] [--workers 1] [--threads 1]
                                      [--compile] [--parts text,audio,padded]

Models are built from configs with random weights (speed does not depend on the weights' values): a
4-layer, 256-d BERT with a word-level vocabulary, and a small wav2vec 2.0 (4 layers, 256-d, the base
model's seven-layer convolutional feature encoder with 32 channels, 50 frames per second). The corpora
are IEMOCAP-like: transcripts of lognormal word counts (mean 12.6, median 9, at most 100 words), clips
of lognormal durations (0.6-34 s, mean 4.5 s), five sessions, four labels; fold 1, 10 % of the
training sessions as dev set.

* loop / bare: ``featcache.finetune.finetune`` trains the model (length buckets, audio prepared in
  DataLoader workers, text tokenised once, dev evaluation in 4x larger batches, a checkpoint per epoch);
  after each of its epochs a callback runs one pass of the bare loop over that epoch's very batches
  (recorded from featcache's sampler; every item prepared once and collated before the clock starts):
  the forward pass, the weighted loss, ``backward`` and fused AdamW, then the dev forward passes.
  featcache's epoch is the wall time from the end of one bare pass to the end of the next epoch's
  checkpoint; the first epoch (which also loads the model) is dropped. Each epoch and the bare pass after
  it do the same work back to back; ratio = the median over epochs of bare seconds / featcache seconds =
  featcache's steps per second over the bare loop's. The median, because on this project's shared
  2-core machine the same bare pass over the same batches measured 21.9 s and 27.8 s back to back: one
  lucky or unlucky epoch on either side moves a ratio of fastest epochs (printed too) by 15 %. The same
  ratios of CPU seconds (this process and its DataLoader workers) are printed beside them.
* bucketed / padded: the same featcache run of the audio model with ``pad_to=246000`` (the paper's fixed
  padding; 2 epochs, no bare passes); speed-up = featcache's padded seconds per epoch / its bucketed ones.
* ``--compile``: also times the bare loop with ``torch.compile(model, dynamic=True)`` (featcache itself
  has no compiled mode: on this project's 2-core CPU, compiling the text model took 6 minutes and its
  steps then ran 14 times slower than eager ones).
* ``--device cuda``: also the share of the featcache epochs' wall time during which the GPU ran a kernel
  (``nvidia-smi`` sampled every 100 ms).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _synth import LABELS, cpu_count, iemocap_durations, write_corpus

PAD_TO = 246_000
VOCAB = [f"w{i}" for i in range(2000)]


def bert_checkpoint(path: Path, *, seed: int) -> Path:
    """Save a randomly initialised 4-layer, 256-d BERT and a word-level tokenizer over :data:`VOCAB`.

    Args:
        path: Directory to write (created).
        seed: ``torch.manual_seed`` before the weights are drawn.

    Returns:
        ``path``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB]) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(VOCAB) + 5, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=1024, max_position_embeddings=512)).save_pretrained(path)
    return path


def wav2vec2_small(path: Path, *, seed: int) -> Path:
    """Save a randomly initialised small wav2vec 2.0: the base model's convolutions (32 channels), 4 x 256-d layers.

    Args:
        path: Directory to write (created).
        seed: ``torch.manual_seed`` before the weights are drawn.

    Returns:
        ``path``.
    """
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                         conv_dim=(32,) * 7, num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
                         vocab_size=10)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(path)
    return path


def word_counts(count: int, *, seed: int) -> np.ndarray:
    """IEMOCAP-like transcript lengths: lognormal with median 9 and mean 12.6 words, 1..100.

    Args:
        count: Number of transcripts.
        seed: Random seed.

    Returns:
        Word counts.
    """
    sigma = np.sqrt(2 * np.log(12.6 / 9))
    return np.clip(np.random.default_rng(seed).lognormal(np.log(9), sigma, count).round(), 1, 100).astype(int)


def write_text_corpus(root: Path, count: int, *, seed: int) -> Path:
    """A manifest (id,label,session,text) of ``count`` transcripts of random words.

    Args:
        root: Directory to write into (created).
        count: Number of utterances.
        seed: Random seed.

    Returns:
        The manifest path.
    """
    rng = np.random.default_rng(seed + 1)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["id,label,session,text"]
    for i, n in enumerate(word_counts(count, seed=seed)):
        rows.append(f"t{i:05d},{LABELS[i % len(LABELS)]},{1 + i % 5},{' '.join(rng.choice(VOCAB, n))}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


class GpuBusy:
    """``nvidia-smi``'s utilisation of GPU 0 (percent of time a kernel ran), sampled every 100 ms with the
    time each sample arrived, so that only the samples inside given time windows count."""

    def __init__(self, *, enabled: bool) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        if enabled:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "--id=0", "-lms", "100"], stdout=subprocess.PIPE, text=True, bufsize=1)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.strip().isdigit():
                self.samples.append((time.perf_counter(), float(line)))

    def share(self, windows: list[tuple[float, float]]) -> float | None:
        """Mean utilisation (percent) of the samples inside ``windows`` (None without samples)."""
        inside = [u for t, u in self.samples if any(a <= t <= b for a, b in windows)]
        return float(np.mean(inside)) if inside else None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


class Bare:
    """The bare loop: forward, weighted loss, backward, fused AdamW over given batches; then the dev forwards.

    Every item of the fold's training and dev splits is prepared once, in memory (token ids; audio
    decoded and cut), so a pass only collates (untimed) and runs the model.

    Args:
        corpus: The corpus.
        preset: Backbones and training settings.
        modality: ``text`` or ``audio``.
        pad_to: Audio padding (None: length buckets).
        device: ``cpu`` or ``cuda``.
        precision: The resolved precision (``fp32``, ``bf16`` or ``fp16``).
        compiled: Run ``torch.compile(model, dynamic=True)``.
    """

    def __init__(self, corpus: Any, preset: Any, *, modality: str, pad_to: int | None, device: str, precision: str,
                 compiled: bool) -> None:
        import torch

        from featcache.backbones.encoders import load_encoder
        from featcache.backbones.resolve import resolve_backbone
        from featcache.buckets import LengthBatchSampler
        from featcache.finetune import EVAL_BATCH_FACTOR, EndToEnd, _Collate, _Items, _lengths
        from featcache.folds import make_fold
        from featcache.heads import audio_head, text_head
        from featcache.train import AMP_DTYPES, class_weights

        settings, self.dev = preset.train(modality), torch.device(device)
        encoder = load_encoder(resolve_backbone(preset.backbone(modality)),
                               options=preset.encoder_options(pad_to=pad_to))
        n = len(corpus.labels)
        torch.manual_seed(0)
        head = (text_head if modality == "text" else audio_head)(encoder.hidden_size, n)
        self.model = EndToEnd({modality: encoder}, head).to(self.dev)
        fold = make_fold(corpus, 1)
        self.collate = _Collate({modality: encoder})
        train_items, dev_items = (_Items(corpus, list(ids), {modality: encoder}) for ids in (fold.train, fold.dev))
        self.items = [train_items[i] for i in range(len(train_items))]
        dev_prepared = [dev_items[i] for i in range(len(dev_items))]
        dev_order = LengthBatchSampler(_lengths(corpus, list(fold.dev), (modality,)),
                                       batch_size=EVAL_BATCH_FACTOR * settings.batch_size, shuffle=False)
        self.dev_batches = [self._to_device(self.collate([dev_prepared[i] for i in b])) for b in dev_order]
        gen = torch.Generator().manual_seed(0)  # the batches a run with seed 0 draws in its first epoch
        self.first_epoch = list(LengthBatchSampler(_lengths(corpus, list(fold.train), (modality,)),
                                                   batch_size=settings.batch_size, shuffle=True, generator=gen))
        labels = np.array([corpus.label_index(corpus.by_id(i).label) for i in fold.train])
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(labels, n)).to(self.dev)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
        self.forward = torch.compile(self.model, dynamic=True) if compiled else self.model
        self.amp = precision != "fp32"
        self.dtype = getattr(torch, AMP_DTYPES.get(precision, "float16"))

    def _to_device(self, batch: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], Any]:
        return ({m: {k: t.to(self.dev) for k, t in x.items()} for m, x in batch["inputs"].items()},
                batch["label"].to(self.dev))

    @property
    def steps(self) -> int:
        return len(self.first_epoch)

    def one_pass(self, batches: list[list[int]] | None = None) -> tuple[float, float]:
        """Wall and CPU seconds of one pass over training batches and the dev batches.

        Args:
            batches: Index lists into the training split, in order (default: a seed-0 run's first epoch);
                collated before the clocks start.

        Returns:
            ``(wall seconds, CPU seconds)``.
        """
        import torch

        train = [self._to_device(self.collate([self.items[i] for i in b])) for b in (batches or self.first_epoch)]
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), cpu_seconds()
        self.model.train()
        for inputs, y in train:
            with torch.autocast(self.dev.type, dtype=self.dtype, enabled=self.amp):
                logits = self.forward(inputs)
            self.loss_fn(logits.float(), y).backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        self.model.eval()
        with torch.no_grad(), torch.autocast(self.dev.type, dtype=self.dtype, enabled=self.amp):
            for inputs, _ in self.dev_batches:
                self.forward(inputs)
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, cpu_seconds() - c0


class _Recorder:
    """Records the index lists of every shuffling :class:`~featcache.buckets.LengthBatchSampler` epoch
    (patched into :mod:`featcache.finetune` while a run is measured), so the bare pass replays them."""

    def __init__(self) -> None:
        self.epochs: list[list[list[int]]] = []

    def __enter__(self) -> _Recorder:
        import featcache.finetune.inputs as ft

        base, recorder = ft.LengthBatchSampler, self

        class Recording(base):  # type: ignore[misc, valid-type]
            def __iter__(self):  # type: ignore[no-untyped-def]
                batches = list(super().__iter__())
                if self.shuffle:
                    recorder.epochs.append(batches)
                yield from batches

        self.base, ft.LengthBatchSampler = base, Recording
        return self

    def __exit__(self, *exc: object) -> None:
        import featcache.finetune.inputs as ft

        ft.LengthBatchSampler = self.base


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children (DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(corpus: Any, store_dir: Path, preset: Any, *, modality: str, pad_to: int | None, device: str,
            precision: str, workers: int, with_bare: bool = True) -> dict[str, Any]:
    """A featcache fine-tuning run with a bare pass after each of its epochs (the same load on both).

    featcache's epoch time is the wall time from the end of one bare pass to the end of the next epoch's
    commit (training pass, dev pass, checkpoint); the first epoch, which also loads the model, is dropped.
    The bare pass after an epoch replays that epoch's very batches (recorded from featcache's sampler),
    so each pair of times is the same work.

    Args:
        corpus: The corpus.
        store_dir: A fresh store folder.
        preset: Backbones and training settings (at least 3 epochs).
        modality: ``text`` or ``audio``.
        pad_to: Audio padding (None: length buckets).
        device: ``cpu`` or ``cuda``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        workers: DataLoader workers of the featcache run.
        with_bare: Run the bare passes (without them, "bare" and "bare_cpu" are empty).

    Returns:
        ``{"ours": [s per epoch], "bare": [s per pass], "ours_cpu", "bare_cpu" (CPU seconds of the same
        epochs and passes), "steps", "precision", "busy", "bare_model"}``; ``ours[k]`` and ``bare[k]`` ran
        the same batches.
    """
    import torch

    from featcache.cache import FeatureStore
    from featcache.finetune import finetune
    from featcache.folds import make_fold
    from featcache.train import resolve_precision

    resolved = resolve_precision(precision, device=torch.device(device), width=256)
    bare = None
    if with_bare:
        bare = Bare(corpus, preset, modality=modality, pad_to=pad_to, device=device, precision=resolved, compiled=False)
        bare.one_pass()  # warm-up
    recorder = _Recorder()
    ours: list[float] = []
    passes: list[float] = []
    ours_cpu: list[float] = []
    bare_cpu: list[float] = []
    windows: list[tuple[float, float]] = []
    marks = [(time.perf_counter(), cpu_seconds())]

    def after_epoch(record: dict[str, Any]) -> None:
        now, cpu = time.perf_counter(), cpu_seconds()  # the epoch's workers are joined by now
        ours.append(now - marks[-1][0])
        ours_cpu.append(cpu - marks[-1][1])
        windows.append((marks[-1][0], now))
        if bare is not None:
            wall, cpu_s = bare.one_pass(recorder.epochs[-1])
            passes.append(wall)
            bare_cpu.append(cpu_s)
        marks.append((time.perf_counter(), cpu_seconds()))

    gpu = GpuBusy(enabled=device.startswith("cuda"))
    try:
        with recorder:
            finetune(corpus, FeatureStore(store_dir), preset=preset, modality=modality, fold=1, seed=0,
                     options=preset.encoder_options(pad_to=pad_to), device=device, precision=resolved,
                     num_workers=workers, progress=False, callbacks=[after_epoch])
    finally:
        gpu.close()
    return {"ours": ours[1:], "bare": passes[1:], "ours_cpu": ours_cpu[1:], "bare_cpu": bare_cpu[1:],
            "steps": math.ceil(len(make_fold(corpus, 1).train) / preset.train(modality).batch_size),
            "precision": resolved,
            "busy": gpu.share(windows[1:]), "bare_model": bare}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpora and fewer epochs (2-3 minutes on 2 cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the featcache runs")
    parser.add_argument("--compile", action="store_true", help="also time the bare loop under torch.compile")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared CPU two threads spin-wait for each other, which "
                             "inflates CPU time; the ratios are ratios of work)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="text,audio,padded",
                        help="what to measure, comma-separated: text, audio (loop over bare), padded (audio padded to "
                             "246,000 samples; the speed-up needs audio too)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from featcache.data import read_manifest
    from featcache.presets import TrainSettings, get_preset, with_overrides

    torch.set_num_threads(args.threads)
    texts, clips, text_epochs, epochs = (160, 32, 6, 3) if args.quick else (1200, 160, 8, 6)
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        root = Path(tmp)
        text_corpus = read_manifest(write_text_corpus(root / "text", texts, seed=args.seed))
        durations = iemocap_durations(clips, seed=args.seed, match_mean=True)
        audio_corpus = read_manifest(write_corpus(root / "audio", durations, seed=args.seed))
        words = word_counts(texts, seed=args.seed)
        preset = with_overrides(
            get_preset("demo"), text_backbone=str(bert_checkpoint(root / "bert", seed=args.seed)),
            audio_backbone=str(wav2vec2_small(root / "w2v", seed=args.seed)),
            text=TrainSettings(batch_size=16, lr=5e-5, max_epochs=text_epochs, patience=text_epochs),
            audio=TrainSettings(batch_size=8, lr=5e-5, max_epochs=epochs, patience=epochs),
        )
        padded_preset = with_overrides(preset, audio=TrainSettings(batch_size=8, lr=5e-5, max_epochs=2, patience=2))
        print(f"text: {texts} transcripts, words mean {words.mean():.1f}, median {np.median(words):.0f}, "
              f"max {words.max()}; 4-layer 256-d BERT, batch 16")
        print(f"audio: {clips} clips, {durations.sum():.0f} s (mean {durations.mean():.2f} s, median "
              f"{np.median(durations):.2f} s, {durations.min():.2f}-{durations.max():.2f} s); small wav2vec2, batch 8")
        print(f"device {args.device}, precision {args.precision}, {args.workers} worker(s), {text_epochs} text and "
              f"{epochs} audio epochs (2 padded); "
              f"{torch.get_num_threads()} torch threads, {cpu_count()} cores "
              f"({platform.processor() or platform.machine()}), load average {os.getloadavg()[0]:.2f}; "
              f"torch {torch.__version__}", flush=True)
        results = {}
        parts = {"text": ("text", "text", text_corpus, None), "audio": ("audio", "audio", audio_corpus, None),
                 "padded": (f"audio pad_to={PAD_TO}", "audio", audio_corpus, PAD_TO)}
        for label, modality, corpus, pad_to in (parts[p] for p in args.parts.split(",")):
            r = measure(corpus, root / f"store-{len(results)}", preset if pad_to is None else padded_preset,
                        modality=modality, pad_to=pad_to, device=args.device, precision=args.precision,
                        workers=args.workers, with_bare=pad_to is None)
            results[label] = r
            print(f"{label}: {r['steps']} steps per epoch ({r['precision']}); s/epoch featcache "
                  f"{' '.join(f'{x:.2f}' for x in r['ours'])}, bare {' '.join(f'{x:.2f}' for x in r['bare'])}; "
                  f"steps/s {r['steps'] / min(r['ours']):.2f}"
                  + (f" vs {r['steps'] / min(r['bare']):.2f}" if r["bare"] else "")
                  + f"; CPU s/epoch {' '.join(f'{x:.2f}' for x in r['ours_cpu'])}"
                  + (f" vs {' '.join(f'{x:.2f}' for x in r['bare_cpu'])}" if r["bare"] else "")
                  + ("" if r["busy"] is None else f"; GPU busy {r['busy']:.0f} % of featcache's epochs"), flush=True)
            if args.compile and pad_to is None:
                c = Bare(corpus, preset, modality=modality, pad_to=None, device=args.device,
                         precision=r["precision"], compiled=True)
                first = c.one_pass()[0]
                compiled = [c.one_pass()[0] for _ in range(2)]
                eager = [r["bare_model"].one_pass()[0] for _ in range(2)]
                print(f"{label}: torch.compile bare s/epoch {' '.join(f'{x:.2f}' for x in compiled)} (first pass, "
                      f"compiling: {first:.1f} s), eager {' '.join(f'{x:.2f}' for x in eager)}; "
                      f"RATIO {modality}_compiled_over_eager = {min(eager) / min(compiled):.2f}", flush=True)
        print()
        for label in [x for x in ("text", "audio") if x in results]:
            r = results[label]
            paired = [b / o for b, o in zip(r["bare"], r["ours"])]
            paired_cpu = [b / o for b, o in zip(r["bare_cpu"], r["ours_cpu"])]
            print(f"RATIO {label}_loop_over_bare = {float(np.median(paired)):.2f} wall, "
                  f"{float(np.median(paired_cpu)):.2f} CPU time (goal >= 0.9; median over epochs, each epoch against "
                  f"a bare pass over its batches: {' '.join(f'{x:.2f}' for x in paired)}; each side's fastest epoch "
                  f"{min(r['bare']) / min(r['ours']):.2f} wall, {min(r['bare_cpu']) / min(r['ours_cpu']):.2f} CPU time)")
        if f"audio pad_to={PAD_TO}" not in results or "audio" not in results:
            return
        padded, bucketed = results[f"audio pad_to={PAD_TO}"], results["audio"]
        print(f"RATIO audio_bucketed_speedup = {min(padded['ours']) / min(bucketed['ours']):.2f} (goal >= 3; featcache "
              f"padded {min(padded['ours']):.2f} s / bucketed {min(bucketed['ours']):.2f} s per epoch; CPU time "
              f"{min(padded['ours_cpu']) / min(bucketed['ours_cpu']):.2f})")

if __name__ == "__main__":
    main()
