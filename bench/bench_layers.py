"""Layer-wise vectors (``--layers all``): what storing every hidden state costs in extraction and on disk,
and what a layer sweep (``featcache ablate --layers all``) costs against the same heads trained study by study.

Usage: python bench/bench_layers.py [--quick] [--parts extract,sweep] [--transcripts 400] [--clips 36]
                                    [--repeats 3] [--threads 1] [--batch-size 8] [--seeds 0,1,2] [--dim 768]
                                    [--resamples 1000]

1. Extraction. A BERT-base-sized text model (``BertConfig()``: 12 layers, 768-d, 13 hidden states, with a
   word-level WordPiece vocabulary) and a wav2vec2-base-sized audio model (``Wav2Vec2Config()``: 12 layers,
   768-d), both randomly initialised from their configs and saved with their tokenizer / feature extractor
   (speed does not depend on the weights' values; nothing downloads). The corpora have IEMOCAP's lengths:
   --transcripts synthetic transcripts whose word counts are drawn lognormal with a mean of 12.6 words, and
   --clips speech-like clips drawn like IEMOCAP's durations (mean 4.5 s). For each modality the same
   ``featcache.extract.extract(corpus, store, run=EncoderRun(modality, backbone, ...), variant="clean")``
   call runs with ``layers=None`` (the last layer only), ``layers="all"`` and ``layers="all",
   store_dtype="float16"``, with the encoder loaded once and its weights hashed beforehand (as in a
   long-lived store), into one store whose entry is deleted after each run, so every run writes a fresh
   entry. The settings alternate (their order rotates every round) and each time is the fastest of its
   --repeats runs (background load only ever adds time); a first round is run untimed to warm up.
   ``RATIO <modality>_all_layers_over_last`` is the layer-wise time over the last-layer time (goal: at most
   1.1, since the forward pass is the same). Bytes per utterance are the entry file's size over its rows
   (ids, labels, records and provenance included), beside the vectors' own storage over rows and the
   theory (13 x 768 x 4 bytes in float32, half that in float16). The vectors are stored in HDF5 chunks of
   256 rows and the last chunk is stored whole, so an entry of N rows holds ceil(N / 256) x 256 rows' worth
   of vectors (400 rows: 512; IEMOCAP's 5,672: 5,888). The layer-wise entry's last hidden state is checked
   against the last-layer entry, and the float16 entry against the float32 one rounded.

2. The layer sweep. A store of IEMOCAP's size (5,672 utterances with IEMOCAP's label counts per session,
   leave-one-session-out folds) holding a layer-wise clean text entry and an ``adj`` entry of shape
   [5672, 13, --dim], written directly with the store's writer under the keys the study looks up
   (``plan_entry(corpus, store, run=study.frozen_encoder("text"), variant=..., seed=study.variant_seed)``)
   with provenance ``{"layers": [0, ..., 12]}``; the backbone of the key is the BERT-base-sized directory of
   part 1 (its weights digest names the vectors). The vectors are synthetic (``_synth.emotion_vectors``:
   unit-norm, mostly noise, the class signal in a small subspace) with the same class signal in every
   layer and more noise away from layer 8 (1.6x at layer 0, 1.15x at layer 12): the heads on the last hidden
   state reach about 65 % clean accuracy (real frozen MiniLM vectors of IEMOCAP: about 63 %), those on layer
   8 about 72 %, on layer 0 about 52 %, and they stop after 11-55 epochs (mean 21; real: 16-38), the noisy
   early layers first. Two ways to train the same 195 text heads (13 layers x 5 folds x 3 seeds), both with
   the study's head settings and ``FEATCACHE_THREADS``:

   * sweep: ``featcache.ablate.train_ablations`` over the 13 layer specs (``AblationSpec(modalities=
     ("text",), layer=K)``), the training step of ``run_layer_sweep``: one batched ensemble of every layer,
     fold and seed;
   * study by study: ``featcache.study.train_heads(study.replace(layer=K), models=["text"])`` for each K,
     15 heads per call: what one would run without a sweep (``featcache train-heads --layers all --layer K
     --models text``, 13 times, in one process).

   This compares the two things a user can run for the same heads, each with its own reading and saving,
   not the bare trainer: both end in ``featcache.ensemble.fit_heads`` and the heads they train are compared
   bit for bit (a head of a sweep equals the text head of ``--layer K``), so the ratio is about how the
   work is grouped and how each path holds its vectors (``train_heads``' members share one matrix per entry;
   each member of an ablation carries its own training and dev rows), not about the arithmetic. The
   process's peak RSS is printed after each (the study by study first). ``RATIO layer_sweep_train_over_train_heads`` is the sweep's training time over the 13
   studies' (the issue sets no goal; below 1 the sweep is the faster way). The rest of ``ablate --layers
   all``, evaluating the 195 heads on clean and ``adj`` with paired bootstrap intervals, is timed apart
   (``run_layer_sweep`` over the trained heads, which it loads rather than trains again).

``--quick`` is a smoke run of every step (a fifth of the corpus, one seed, few utterances, one round); its
figures mean little. Ratios are printed as ``RATIO name = value`` lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _synth import (  # noqa: E402
    cpu_count,
    emotion_vectors,
    iemocap_durations,
    torch_threads,
    wav2vec2_checkpoint,
    write_corpus,
)

MEAN_WORDS = 12.6  # IEMOCAP's transcripts: mean words per utterance
TEXT_NOISE = 5.0  # _synth.emotion_vectors' noise of text vectors like frozen MiniLM's (about 63 %)
BEST_LAYER = 8
VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] . , ! ? ' i you we they he she it is are was were be been not no yes oh "
    "well okay so but and or because what why how when where who this that there here a an the my your our "
    "me him her them do did does don't can can't will won't would should have had has know think want "
    "feel mean say said tell go going come get got just really very so much too all right now then never "
    "always again time day night home work money job friend family mother father baby love hate happy sad "
    "angry sorry terrible wonderful great good bad fine stupid crazy amazing idea news thing life people"
).split()


# ------------------------------------------------------------------------------------------ helpers


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bert_base_checkpoint(path: Path, *, seed: int) -> Path:
    """Save a randomly initialised BERT-base-sized model (``BertConfig()``: 12 layers, 768-d, 12 heads, 3072
    intermediate) with a word-level WordPiece tokenizer of :data:`VOCAB` into ``path``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    if (path / "config.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(VOCAB)) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(dict.fromkeys(VOCAB)))).save_pretrained(path)
    return path


def word_counts(count: int, *, seed: int, mean: float = MEAN_WORDS, sigma: float = 0.75) -> np.ndarray:
    """Words per transcript: lognormal, scaled so the sample's mean is ``mean``, at least 1."""
    rng = np.random.default_rng(seed)
    draws = rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, size=count)
    draws *= mean / draws.mean()
    return np.clip(np.rint(draws), 1, 100).astype(int)


def write_transcripts(root: Path, counts: np.ndarray, *, seed: int) -> Path:
    """A text manifest (id,label,session,text) of transcripts of ``counts`` words drawn from :data:`VOCAB`."""
    import csv

    from _synth import LABELS

    rng = np.random.default_rng(seed)
    words = [w for w in dict.fromkeys(VOCAB) if not w.startswith("[") and w not in ".,!?'"]
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "label", "session", "text"])
        for i, n in enumerate(counts):
            text = " ".join(rng.choice(words, size=int(n))) + rng.choice([".", "?", "!"])
            out.writerow([f"t{i:05d}", LABELS[i % len(LABELS)], str(1 + i % 5), text.capitalize()])
    return manifest


# ------------------------------------------------------------------------------------------ 1. extraction


SETTINGS = (("last", None, "float32"), ("all", "all", "float32"), ("all-float16", "all", "float16"))


def entry_sizes(path: Path) -> tuple[int, int, int]:
    """(file bytes, rows, bytes the vectors dataset occupies) of an entry file."""
    import h5py

    with h5py.File(path, "r") as f:
        v = f["vectors"]
        return path.stat().st_size, int(v.shape[0]), int(v.id.get_storage_size())


def bench_extraction(modality: str, corpus: Any, backbone: Path, root: Path, args: argparse.Namespace,
                     describe: str) -> None:
    """Time the three settings on one modality and print times, bytes per utterance and the RATIO lines."""
    from featcache.backbones.encoders import EncoderOptions, load_encoder
    from featcache.backbones.resolve import resolve_backbone
    from featcache.cache import FeatureStore
    from featcache.extract import EncoderRun, extract, plan_entry

    store = FeatureStore(root / f"store-{modality}")
    options = EncoderOptions(pooling="mean")
    runs = {label: EncoderRun(modality, str(backbone), options, layers=layers, store_dtype=dtype)
            for label, layers, dtype in SETTINGS}
    for run in runs.values():  # the weights hashed once, as in a long-lived store
        plan_entry(corpus, store, run=run, variant="clean")
    encoder = load_encoder(resolve_backbone(str(backbone), hash_cache=store.weight_hashes_path), options=options)
    n_params = sum(p.numel() for p in encoder.model.parameters())
    print(f"\n{modality}: {describe}")
    print(f"   backbone {backbone.name}: {encoder.n_hidden_states - 1} layers, {encoder.hidden_size}-d, "
          f"{encoder.n_hidden_states} hidden states, {n_params / 1e6:.1f} M parameters; mean pooling; batch "
          f"{args.batch_size}; {args.threads} torch thread(s), {args.workers} loader workers; {load()}")
    times: dict[str, list[float]] = {label: [] for label in runs}
    sizes: dict[str, tuple[int, int, int]] = {}
    kept: dict[str, np.ndarray] = {}
    rounds = max(1, args.repeats)
    for r in range(rounds + 1):  # round 0: warm-up, not timed
        order = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
        for label in order:
            with torch_threads(args.threads):
                seconds, report = timed(lambda: extract(  # noqa: B023  (called at once)
                    corpus, store, run=runs[label], variant="clean", batch_size=args.batch_size,  # noqa: B023
                    num_workers=args.workers, device="cpu", encoder=encoder, progress=False))
            if report.status != "written" or report.path is None:
                raise RuntimeError(f"{modality} {label}: extraction ended with status {report.status}")
            if r == 0:
                sizes[label] = entry_sizes(report.path)
                with store.open(report.key) as entry:
                    kept[label] = np.array(entry.vectors())
            else:
                times[label].append(seconds)
                print(f"   measured {label}: {seconds:.2f} s ({load()})", flush=True)
            report.path.unlink()
    n, dim, hidden = len(corpus), encoder.hidden_size, encoder.n_hidden_states
    print(f"   {'setting':<12} {'fastest s':>9} {'median s':>8} {'utt/s':>7} {'file B/utt':>10} {'vectors B/utt':>13} "
          f"{'theory B/utt':>12}")
    for label, layers, dtype in SETTINGS:
        t = times[label]
        file_b, rows, vec_b = sizes[label]
        theory = (hidden if layers else 1) * dim * (2 if dtype == "float16" else 4)
        print(f"   {label:<12} {min(t):>9.2f} {float(np.median(t)):>8.2f} {n / min(t):>7.1f} {file_b / rows:>10,.0f} "
              f"{vec_b / rows:>13,.0f} {theory:>12,}")
    last, every, half = kept["last"], kept["all"], kept["all-float16"]
    same = float(np.abs(every[:, -1] - last).max())
    rounding = float(np.abs(half - every.astype(np.float16).astype(np.float32)).max())
    print(f"   shapes: last {last.shape}, all {every.shape}; |all[:, -1] - last| max {same:.2e}; "
          f"|float16 entry - float32 entry rounded| max {rounding:.2e}")
    print(f"   theory: {hidden} x {dim} x 4 = {hidden * dim * 4:,} bytes per utterance in float32, "
          f"{hidden * dim * 2:,} in float16 (last layer only: {dim * 4:,})")
    base = min(times["last"])
    paired = [a / b for a, b in zip(times["all"], times["last"], strict=True)]
    print(f"RATIO {modality}_all_layers_over_last = {min(times['all']) / base:.3f} (goal <= 1.1; fastest of "
          f"{rounds}: all {min(times['all']):.2f} s / last {base:.2f} s; round by round "
          f"{' '.join(f'{p:.3f}' for p in paired)})")
    print(f"RATIO {modality}_all_layers_float16_over_last = {min(times['all-float16']) / base:.3f} (goal <= 1.1; "
          f"fastest of {rounds}: {min(times['all-float16']):.2f} s / {base:.2f} s)")
    print(f"   stored bytes per utterance: float32 layer-wise {sizes['all'][0] / sizes['all'][1]:,.0f} (file) / "
          f"{hidden * dim * 4:,} (theory), float16 layer-wise {sizes['all-float16'][0] / sizes['all-float16'][1]:,.0f} "
          f"/ {hidden * dim * 2:,}, last layer {sizes['last'][0] / sizes['last'][1]:,.0f} / {dim * 4:,}")


def part_extraction(root: Path, bert: Path, args: argparse.Namespace) -> None:
    import soundfile as sf

    from featcache.data import read_manifest

    counts = word_counts(args.transcripts, seed=args.seed)
    text = read_manifest(write_transcripts(root / "text-corpus", counts, seed=args.seed))
    bench_extraction("text", text, bert, root, args,
                     f"{len(text)} transcripts, words mean {counts.mean():.1f}, median {np.median(counts):.0f}, "
                     f"{counts.min()}-{counts.max()}")
    durations = iemocap_durations(args.clips, seed=args.seed, match_mean=True)
    audio = read_manifest(write_corpus(root / "audio-corpus", durations, seed=args.seed))
    w2v = wav2vec2_checkpoint(root / "wav2vec2-base", seed=args.seed, size="base")
    seconds = sum(sf.info(str(u.audio)).duration for u in audio.utterances)
    bench_extraction("audio", audio, w2v, root, args,
                     f"{len(audio)} clips, {seconds:.1f} s of 16 kHz audio (mean {durations.mean():.2f} s, median "
                     f"{np.median(durations):.2f} s, {durations.min():.2f}-{durations.max():.2f} s)")


# ------------------------------------------------------------------------------------------ 2. the sweep


def layer_noise(k: int) -> float:
    """Noise of hidden state ``k`` relative to the best layer's (:data:`BEST_LAYER`)."""
    return 1.0 + 0.6 * ((k - BEST_LAYER) / BEST_LAYER) ** 2


def build_layer_store(root: Path, bert: Path, args: argparse.Namespace) -> Any:
    """An IEMOCAP-size study of layer-wise text vectors (clean and adj), written under the study's keys."""
    import fake_iemocap

    from featcache import api
    from featcache.extract import plan_entry

    t = time.perf_counter()
    counts = fake_iemocap.TABLE1
    if args.quick:
        counts = {k: [max(1, c // 5) for c in v] for k, v in counts.items()}
    tree = fake_iemocap.build(root / "IEMOCAP", counts, audio=False)
    study = api.open_study(corpus=f"iemocap:{tree}", cache_dir=root / "sweep-cache", text_backbone=str(bert),
                           frozen=True, seeds=args.seed_list, layers="all", store_dtype=args.store_dtype)
    corpus, store = study.corpus, study.store
    labels = np.array([corpus.label_index(u.label) for u in corpus], dtype=np.int64)
    ids = [u.id for u in corpus]
    n_layers = args.layers
    _, signal = emotion_vectors(labels, dim=args.dim, noise=TEXT_NOISE, normalize=True, seed=0)
    rng = np.random.default_rng(1)
    for variant, extra in (("clean", 1.0), ("adj", 1.25)):  # adj: the same class signal under more noise
        vec = np.empty((len(ids), n_layers, args.dim), dtype=np.float32)
        for k in range(n_layers):
            noise = TEXT_NOISE * extra * layer_noise(k)
            x = signal + noise * rng.standard_normal(signal.shape).astype(np.float32) / np.sqrt(args.dim)
            vec[:, k] = x / np.linalg.norm(x, axis=1, keepdims=True)
        planned = plan_entry(corpus, store, run=study.frozen_encoder("text"), variant=variant,
                             seed=study.variant_seed)
        assert planned is not None
        records = [None if variant == "clean" else {"count": int(i % 5 != 0)} for i in range(len(ids))]
        with store.writer(planned.key, ids=ids, provenance={"layers": list(range(n_layers))}) as w:
            for i in range(0, len(ids), 1024):
                w.add(ids[i:i + 1024], vec[i:i + 1024], labels=labels[i:i + 1024], records=records[i:i + 1024])
        del vec
    n_train = np.mean([len(study.fold(k).train) for k in study.folds])
    print(f"\nbuilt a store of {len(ids)} utterances: clean and adj text entries of [{len(ids)}, {n_layers}, "
          f"{args.dim}] {args.store_dtype}, {n_train:.0f} training vectors per fold on average, in "
          f"{time.perf_counter() - t:.1f} s")
    return study


def part_sweep(root: Path, bert: Path, args: argparse.Namespace) -> None:
    from safetensors.torch import load_file

    from featcache.ablate import AblationSpec, run_layer_sweep, train_ablations
    from featcache.ensemble import THREADS_ENV, head_threads
    from featcache.study import train_heads

    study = build_layer_store(root, bert, args)
    layers = list(range(args.layers))
    n_heads = len(layers) * len(study.folds) * len(study.seeds)
    print(f"\n2. {n_heads} text heads ({len(layers)} layers x {len(study.folds)} folds x {len(study.seeds)} seeds), "
          f"head threads {head_threads()} ({THREADS_ENV}={os.environ.get(THREADS_ENV, 'unset')}); {load()}")

    # study by study: train_heads on each --layer K
    baseline: dict[int, Any] = {}
    epochs_base: dict[tuple[int, int, int], int] = {}
    t_base = 0.0
    for k in layers:
        sk = study.replace(layer=k)
        seconds, records = timed(lambda: train_heads(sk, models=["text"], progress=False))  # noqa: B023
        t_base += seconds
        baseline[k] = sk
        for r in records:
            epochs_base[k, r["fold"], r["seed"]] = r["epochs_run"]
        sk.close()
        print(f"   train_heads --layer {k:>2}: {seconds:6.1f} s, {len(records)} heads, epochs "
              f"{np.mean([r['epochs_run'] for r in records]):.1f} mean ({load()})", flush=True)
    rss_base = peak_rss_mib()
    print(f"   study by study: {t_base:.1f} s for {len(epochs_base)} heads ({t_base / len(epochs_base):.2f} s per head); "
          f"peak RSS so far {rss_base:,.0f} MiB")

    # the sweep's training: train_ablations over the layer specs, as run_layer_sweep calls it
    spec = AblationSpec(modalities=("text",))
    t_sweep, trained = timed(lambda: train_ablations(study, [replace(spec, layer=k, label=spec.label) for k in layers],
                                                      progress=False))
    epochs_sweep = {(k, r["fold"], r["seed"]): r["epochs_run"]
                    for k, (_, recs) in zip(layers, trained, strict=True) for r in recs}
    n_sweep = len(epochs_sweep)
    print(f"   sweep (train_ablations, {len(trained)} layer ablations in one ensemble): {t_sweep:.1f} s for {n_sweep} "
          f"heads ({t_sweep / n_sweep:.2f} s per head); peak RSS {peak_rss_mib():,.0f} MiB ({load()})")

    same = 0
    for k, (abl, _) in zip(layers, trained, strict=True):
        for fold in study.folds:
            for seed in study.seeds:
                a = load_file(str(abl.head_dir(study, fold=fold, seed=seed) / "model.safetensors"))
                b = load_file(str(baseline[k].heads_dir("text", fold=fold, seed=seed) / "model.safetensors"))
                same += a.keys() == b.keys() and all(bool((a[n] == b[n]).all()) for n in a)
    ep = np.array([epochs_sweep[j] for j in sorted(epochs_sweep)])
    print(f"   heads equal bit for bit between the two: {same} of {n_sweep}; epochs equal: "
          f"{'yes' if epochs_sweep == epochs_base else 'NO'}; epochs per head mean {ep.mean():.1f} [{ep.min()}-{ep.max()}], "
          f"{ep.sum():,} in all")
    print(f"RATIO layer_sweep_train_over_train_heads = {t_sweep / t_base:.2f} (no goal in the issue; below 1 the sweep "
          f"is faster: sweep {t_sweep:.1f} s / {len(layers)} x train_heads {t_base:.1f} s, the same {n_sweep} heads)")

    # the rest of `ablate --layers all`: evaluation of the trained heads
    lines: list[str] = []
    t_eval, sweep = timed(lambda: run_layer_sweep(study, spec, layers="all", conditions=["clean", "adj"],
                                                  n_resamples=args.resamples, progress=False,
                                                  echo=lambda m, err=False: lines.append(m)))
    print(f"   run_layer_sweep over the trained heads (loads them, evaluates clean and adj, {args.resamples} bootstrap "
          f"resamples): {t_eval:.1f} s; {len(sweep.predictions):,} predictions ({load()})")
    print(f"   ablate --layers all in all: {t_sweep + t_eval:.1f} s (training {t_sweep:.1f} s + evaluation {t_eval:.1f} s)")
    print()
    print("\n".join(lines))


# ------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: few utterances, one round, a fifth of the corpus, one seed")
    ap.add_argument("--parts", default="extract,sweep", help="extract, sweep or both (default both)")
    ap.add_argument("--transcripts", type=int, default=400, help="transcripts of the text extraction (default 400)")
    ap.add_argument("--clips", type=int, default=36, help="clips of the audio extraction (default 36)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds of each extraction setting (default 3)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the extraction (default 1: steadiest on a shared CPU)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the extraction (default 0)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2", help="head seeds of the sweep (default 0,1,2)")
    ap.add_argument("--layers", type=int, default=13, help="hidden states of the sweep's vectors (default 13)")
    ap.add_argument("--dim", type=int, default=768, help="size of the sweep's vectors (default 768)")
    ap.add_argument("--store-dtype", default="float32", choices=("float32", "float16"))
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the sweep's table")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"extract", "sweep"}:
        ap.error("--parts: extract, sweep or extract,sweep")
    if args.quick:
        args.transcripts, args.clips, args.repeats, args.resamples = 40, 4, 1, 100
        args.seeds = "0"
    args.seed_list = tuple(int(s) for s in args.seeds.split(","))

    import torch

    print(f"{cpu_count()} cores ({platform.processor() or platform.machine()}), torch {torch.__version__}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as tmp:
        root = Path(tmp)
        t, bert = timed(lambda: bert_base_checkpoint(root / "bert-base", seed=args.seed))
        print(f"saved a BERT-base-sized model from BertConfig() in {t:.1f} s")
        if "extract" in parts:
            print("\n1. extraction of every hidden state against the last layer, same inputs")
            part_extraction(root, bert, args)
        if "sweep" in parts:
            part_sweep(root, bert, args)
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
