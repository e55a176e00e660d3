"""Length bucketing (the default) versus padding every clip to 246,000 samples, wav2vec2-base size (goal >= 3x).

Usage: python bench/bench_bucketing.py [--clips 24] [--backbone DIR] [--threads N] [--repeats 1]

Clip durations are drawn like IEMOCAP's (lognormal, clipped to 0.6..34 s, seeded, scaled so that the
sample's mean is 4.5 s) and written as speech-like 16 kHz wav files with a manifest. The backbone defaults to a randomly
initialised ``Wav2Vec2Model(Wav2Vec2Config())`` (the base size: 12 layers, 768-d; speed does not depend
on the weights' values). Both settings run the same ``featcache.extract.extract(...)`` call on the
clean variant with the model already loaded:

* bucketed: ``EncoderOptions()`` (clips padded up to a 0.5 s grid, equal lengths batched together,
  pooling over each clip's own frames);
* padded: ``EncoderOptions(pad_to=246000)`` (every clip padded to 15.4 s, as in the paper).

speed-up = padded seconds / bucketed seconds. With --repeats > 1 the two settings alternate and
each time is the fastest of its runs (background load only ever adds time).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from _synth import cpu_count, iemocap_durations, torch_threads, wav2vec2_checkpoint, write_corpus

if TYPE_CHECKING:
    from featcache.backbones.encoders import AudioEncoder
    from featcache.cache import FeatureStore
    from featcache.data import Corpus
    from featcache.extract import EncoderRun

PAD_TO = 246_000


def encoded_seconds(corpus: Corpus, encoder: AudioEncoder) -> float:
    """Seconds of (padded) audio the encoder's forward passes see for the corpus.

    Args:
        corpus: The corpus.
        encoder: The audio encoder (its options decide the padding).

    Returns:
        Total input length in seconds.
    """
    import numpy as np
    import soundfile as sf

    total = 0
    for u in corpus.utterances:
        total += int(encoder.prepare(np.zeros(sf.info(str(u.audio)).frames, dtype=np.float32))["L"])
    return total / 16_000


def time_extract(corpus: Corpus, store: FeatureStore, encoder: AudioEncoder, *, run: EncoderRun, batch_size: int,
                 threads: int) -> float:
    """Wall seconds of one clean extraction into a fresh entry (the entry is deleted afterwards).

    Args:
        corpus: The corpus.
        store: The feature store.
        encoder: The loaded encoder (its options must match ``run.options``).
        run: The encoder run.
        batch_size: Utterances per forward pass.
        threads: Torch threads.

    Returns:
        Seconds.

    Raises:
        RuntimeError: The entry was not written.
    """
    from featcache.extract import extract

    with torch_threads(threads):
        start = time.perf_counter()
        report = extract(corpus, store, run=run, variant="clean", batch_size=batch_size, encoder=encoder,
                         progress=False)
        seconds = time.perf_counter() - start
    if report.status != "written" or report.path is None:
        raise RuntimeError(f"extraction ended with status {report.status}")
    report.path.unlink()
    return seconds


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run both settings and print the times and the speed-up.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="number of synthetic clips (default 24)")
    parser.add_argument("--mean-s", type=float, default=4.5, help="mean clip duration in seconds")
    parser.add_argument("--backbone", default=None,
                        help="audio checkpoint directory (default: a random wav2vec2-base built in a temp dir)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadiest on a shared CPU; the speed-up is a ratio of work)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting; the fastest is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import numpy as np
    import torch

    from featcache.backbones.encoders import AudioEncoder, EncoderOptions, load_encoder
    from featcache.backbones.resolve import resolve_backbone, weights_hash
    from featcache.cache import FeatureStore
    from featcache.data import read_manifest
    from featcache.extract import EncoderRun

    with tempfile.TemporaryDirectory(prefix="bench-bucketing-") as tmp:
        root = Path(tmp)
        durations = iemocap_durations(args.clips, seed=args.seed, mean_s=args.mean_s, match_mean=True)
        corpus = read_manifest(write_corpus(root / "corpus", durations, seed=args.seed))
        if args.backbone is None:
            backbone = wav2vec2_checkpoint(root / "wav2vec2-base", seed=args.seed, size="base")
            name = "random wav2vec2-base (Wav2Vec2Config())"
        else:
            backbone = Path(args.backbone).expanduser().resolve()
            name = str(backbone)
        store = FeatureStore(root / "store")
        weights_hash(backbone, cache_dir=store.models_dir)  # hashed once, as in a long-lived store
        bucketed_opts, padded_opts = EncoderOptions(), EncoderOptions(pad_to=PAD_TO)
        bucketed = load_encoder(resolve_backbone(str(backbone), models_dir=store.models_dir), options=bucketed_opts)
        if not isinstance(bucketed, AudioEncoder):
            parser.error(f"--backbone {backbone}: not an audio backbone")
        padded = AudioEncoder(bucketed.model, bucketed.feature_extractor, bucketed.model_type, padded_opts)
        settings = [
            ("bucketed", bucketed, EncoderRun(modality="audio", backbone=str(backbone), options=bucketed_opts)),
            (f"pad_to={PAD_TO}", padded, EncoderRun(modality="audio", backbone=str(backbone), options=padded_opts)),
        ]
        n_params = sum(p.numel() for p in bucketed.model.parameters())
        print(f"{len(corpus)} clips, {durations.sum():.1f} s of audio (mean {durations.mean():.2f} s, "
              f"median {np.median(durations):.2f} s, min {durations.min():.2f} s, max {durations.max():.2f} s)")
        print(f"backbone {name}, {n_params / 1e6:.1f} M parameters; batch {args.batch_size}; "
              f"{args.threads} torch threads; {cpu_count()} cores ({platform.processor() or platform.machine()}); "
              f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
        with torch_threads(args.threads), torch.inference_mode():  # warm-up of both shapes, not timed
            for encoder in (bucketed, padded):
                encoder(**encoder.collate([encoder.prepare(np.zeros(16_000, dtype=np.float32))]))
        best = {label: float("inf") for label, _, _ in settings}
        for _ in range(max(1, args.repeats)):
            for label, encoder, run in settings:
                seconds = time_extract(corpus, store, encoder, run=run, batch_size=args.batch_size,
                                       threads=args.threads)
                best[label] = min(best[label], seconds)
                print(f"  measured {label}: {seconds:.2f} s", flush=True)
        print()
        print(f"{'setting':<16} {'encoded audio s':>15} {'seconds':>8} {'utt/s':>7}")
        for label, encoder, _ in settings:
            print(f"{label:<16} {encoded_seconds(corpus, encoder):>15.1f} {best[label]:>8.2f} "
                  f"{len(corpus) / best[label]:>7.2f}")
        speedup = best[settings[1][0]] / best["bucketed"]
        print()
        print("encoded audio s: input seconds the forward passes see (clips after bucketing or padding);")
        print("the padded setting's extra time is the forward pass over padding, plus attention growing")
        print("with the square of the padded length.")
        print(f"RATIO bucketing_speedup = {speedup:.2f} (goal >= 3; padded {best[settings[1][0]]:.2f} s / "
              f"bucketed {best['bucketed']:.2f} s)")


if __name__ == "__main__":
    main()
