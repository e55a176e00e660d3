"""Head training and evaluation from the store at IEMOCAP size.

Builds a store the size of the paper's study (IEMOCAP's label counts per session, the paper's Table 2:
5,672 utterances; 384-d text vectors like MiniLM, 512-d audio vectors like Whisper base; the paper's
conditions; frozen-style entries shared by the 5 folds), then measures, in one run:

1. the arithmetic floor: the FLOPs of training the heads (forward + backward of every layer, per
   epoch and training vector, plus the dev passes) at this CPU's measured single-thread matmul rate,
   for one core and for two cores working at once;
2. the thread count for small matmuls: one text head trained alone (fold 1, seed 0) with torch's
   default intra-op threads, 1 and 2, idle and with a competing CPU-bound process;
3. the heads trained together (``study.train_heads``: one batched ensemble per stage) against the
   heads trained one at a time (``study._train_one`` for each, as ``train_heads`` did before), on the
   paper heads of fold 1 (3 seeds), idle and busy;
4. the whole grid with the default settings: the paper's 45 heads, then the 60 fusion heads (105),
   idle and busy; epochs per head, seconds per head, per (fold, seed) and in all, dev and test
   accuracy; the heads of the busy run must equal the idle run's bit for bit;
5. evaluation: ``featcache.study.evaluate`` against the time to read every vector it needs once, and
   against reading plus the heads' bare forward passes.

The vectors are synthetic (``_synth.emotion_vectors``): unit-norm, mostly noise, with the class signal in
a small subspace, so that a text head stops after 20-40 epochs at about 63 % accuracy, like frozen
MiniLM vectors of the real IEMOCAP. The numbers measure the machinery, not a model. "Busy" runs start
``python -c "while True: pass"`` beside the measurement and stop it afterwards. Ratios are printed as
``RATIO name = value`` lines.

6. precision: the paper heads trained in float32 and in bfloat16 (``--precision bf16``: a study of its own on
   the same vectors), one after the other: the time ratio (goal <= 0.5), the mean test accuracy over the heads
   (goal: within 0.5 points), each against its floor at its own measured matmul rate, and where the time goes:
   the thread-seconds of every phase of every step of the two runs (``featcache.ensemble.step_clock``: inputs
   gathered, dropout masks, weight copies, forward, loss, backward, gradients, AdamW, evaluation), and the
   ratio bf16 would reach if its forward and backward passes took no time.

7. ``--device cpu|cuda`` instead: the whole grid (105 heads) trained on that device with ``train_heads``' defaults,
   in fp32 and then in bf16, with its time, epochs and the paper heads' mean test accuracy. The same code runs on
   either device; test a GPU machine's ``--device cuda`` run with ``--device cpu`` (and ``--smoke``) first.

``--quick`` runs steps 1 and 6 only (a few minutes); ``--smoke`` a fifth of the corpus and one seed through
every step.

usage: python bench/bench_evaluate.py [--quick] [--smoke] [--seeds 0,1,2] [--no-busy] [--no-compare] [--device DEV]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fake_iemocap  # noqa: E402
from _synth import emotion_vectors  # noqa: E402
from tiny_models import tiny_bert, tiny_wav2vec2  # noqa: E402

from featcache.cache import FeatureStore  # noqa: E402
from featcache.conditions import parse  # noqa: E402
from featcache.data import read_iemocap  # noqa: E402
from featcache.ensemble import PHASES, THREADS_ENV, StepClock, head_threads, step_clock, torch_threads  # noqa: E402
from featcache.extract import EncoderRun, plan_entry  # noqa: E402
from featcache.paper import FUSION_MODELS, PAPER_MODELS, TEXT_ATTACKS, uses  # noqa: E402
from featcache.presets import get_preset, with_overrides  # noqa: E402
from featcache.options import StudyOptions  # noqa: E402
from featcache.study import Study, _train_one, _train_together, evaluate, train_heads  # noqa: E402

TEXT_VARIANTS = ("clean", "adj", "random-adj", "noun", "random-noun", "no-text")
AUDIO_VARIANTS = ("clean", "pitch", "noise", "no-audio")
DIMS = {"text": 384, "audio": 512}
#: Noise of the synthetic vectors (relative to the class signal): text heads reach about 63 %, audio about 53 %.
NOISE = {"text": 5.0, "audio": 6.0}
NORMALIZE = {"text": True, "audio": False}
GOALS = {"paper45": 10.0, "all105": 25.0}  # the goals on 2 idle cores, seconds


# ------------------------------------------------------------------------------------------ store


def build_store(tmp: Path, seeds: tuple[int, ...], *, quick: bool) -> tuple[Study, Study]:
    """A frozen-style store of IEMOCAP's size (a fifth of it with ``quick``) holding every needed entry, and a
    second store with the same vectors under the keys of a ``--precision bf16`` study: (fp32 study, bf16 study)."""
    t = time.perf_counter()
    counts = fake_iemocap.TABLE1
    if quick:
        counts = {k: [max(1, c // 5) for c in v] for k, v in counts.items()}
    corpus = read_iemocap(fake_iemocap.build(tmp / "IEMOCAP", counts, audio=True, seconds=0.02))
    preset = with_overrides(get_preset("demo"), text_backbone=str(tiny_bert(tmp / "bert")),
                            audio_backbone=str(tiny_wav2vec2(tmp / "w2v")), seeds=seeds)
    store, store16 = FeatureStore(tmp / "cache"), FeatureStore(tmp / "cache-bf16")
    study = Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(store.root), text_backbone=preset.text_backbone,
                                    audio_backbone=preset.audio_backbone, frozen=True, seeds=seeds), corpus=corpus)
    study16 = Study.open(study.options.replace(cache_dir=str(store16.root), precision="bf16"), corpus=corpus)
    labels = np.array([corpus.label_index(u.label) for u in corpus])
    ids = [u.id for u in corpus]
    rng = np.random.default_rng(1)
    for modality, variants in (("text", TEXT_VARIANTS), ("audio", AUDIO_VARIANTS)):
        clean, signal = emotion_vectors(labels, dim=DIMS[modality], noise=NOISE[modality],
                                        normalize=NORMALIZE[modality], seed=0 if modality == "text" else 1)
        run = EncoderRun(modality, preset.backbone(modality), study.encoder_options)
        run16 = EncoderRun(modality, preset.backbone(modality), study.encoder_options, precision="bf16")
        for k, v in enumerate(variants):
            planned = plan_entry(corpus, store, run=run, variant=v, fold=None, seed=0)
            twin = plan_entry(corpus, store16, run=run16, variant=v, fold=None, seed=0)  # a --precision bf16 study's
            assert planned is not None and twin is not None
            if v == "clean":
                vec = clean
            else:  # an attack: the same class signal under more noise
                noise = NOISE[modality] * (1.0 + 0.25 * k)
                vec = signal + noise * rng.standard_normal(signal.shape).astype(np.float32) / np.sqrt(signal.shape[1])
                if NORMALIZE[modality]:
                    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            records = [None if v == "clean" else {"count": int(i % 5 != 0)} for i in range(len(ids))]
            for st, key in ((store, planned.key), (store16, twin.key)):  # the same vectors: only the heads differ
                with st.writer(key, ids=ids) as w:
                    for i in range(0, len(ids), 1024):
                        w.add(ids[i:i + 1024], vec[i:i + 1024], labels=labels[i:i + 1024], records=records[i:i + 1024])
    n_train = np.mean([len(study.fold(k).train) for k in study.folds])
    print(f"built a store of {len(ids)} utterances (text {DIMS['text']}-d, audio {DIMS['audio']}-d), "
          f"{len(TEXT_VARIANTS) + len(AUDIO_VARIANTS)} entries (and their twins in a bf16 study's store), {n_train:.0f} training vectors per fold on "
          f"average, in {time.perf_counter() - t:.1f} s")
    return study, study16


def forget_heads(study: Study) -> None:
    shutil.rmtree(study.store.root / "heads", ignore_errors=True)


def head_states(study: Study) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    return {str(p.relative_to(study.store.root)): load_file(str(p))
            for p in sorted(study.store.root.glob("heads/**/model.safetensors"))}


def results(study: Study) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(study.store.root.glob("heads/**/result.json"))]


# ------------------------------------------------------------------------------------------ load and floor


@contextmanager
def busy(on: bool) -> Iterator[None]:
    """With ``on``, a competing CPU-bound process runs for the duration of the block."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def env_threads(value: int | None) -> Iterator[None]:
    before = os.environ.get(THREADS_ENV)
    if value is None:
        os.environ.pop(THREADS_ENV, None)
    else:
        os.environ[THREADS_ENV] = str(value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def matmul_gflops(workers: int, dtype: torch.dtype = torch.float32) -> float:
    """Measured single-thread matmul rate of the heads' shapes (forward and both backward products of a
    128-row batch through 512 -> 512) in ``dtype``, summed over ``workers`` threads running at once."""
    x, w, g = (torch.randn(*shape).to(dtype) for shape in ((128, 512), (512, 512), (128, 512)))
    flops_per_round = 3 * 2 * 128 * 512 * 512
    rounds = 150

    def work() -> None:
        for _ in range(rounds):
            torch.addmm(w[0], x, w.t())
            g.t() @ x
            g @ w

    with torch_threads(1):
        work()  # warm up
        best = 0.0
        for _ in range(3):
            threads = [threading.Thread(target=work) for _ in range(workers)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            best = max(best, workers * rounds * flops_per_round / (time.perf_counter() - t) / 1e9)
    return best


def head_flops(model: str, dims: dict[str, int], n_classes: int = 4) -> tuple[float, float]:
    """(training FLOPs per training vector per epoch, forward FLOPs per dev vector) of one paper-sized head.

    Forward ``2 in out`` per linear layer; backward ``2 in out`` for the weight gradient and as much for
    the input gradient, except the first layer of a body (its input, a stored vector, needs none).
    ``score`` trains only its 8 -> 4 layer (its frozen heads' scores are computed once); ``late`` trains nothing.
    """
    def body(d: int) -> tuple[int, int]:  # (all multiply-adds, first layer's)
        return d * 512 + 512 * 256, d * 512

    t, a = body(dims["text"]), body(dims["audio"])
    if model in ("text", "audio"):
        macs, first = body(dims[model])
        macs += 256 * n_classes
    elif model in ("multimodal", "mdrop"):
        macs, first = t[0] + a[0] + 512 * 128 + 128 * n_classes, t[1] + a[1]
    elif model == "gated":
        macs = t[0] + a[0] + 2 * 256 * 256 + 512 + 256 * 128 + 128 * n_classes
        first = t[1] + a[1]
    elif model == "score":
        macs, first = 2 * n_classes * n_classes, 0
    else:
        return 0.0, 0.0
    return 2.0 * (3 * macs - first), 2.0 * macs


def grid_flops(rows: Sequence[dict[str, Any]], study: Study) -> float:
    """FLOPs of training the heads in ``rows`` for the epochs each actually ran."""
    total = 0.0
    for r in rows:
        if "epochs_run" not in r:
            continue
        f = study.fold(r["fold"])
        train, dev = head_flops(r["model"], DIMS)
        total += r["epochs_run"] * (len(f.train) * train + len(f.dev) * dev)
    return total


# ------------------------------------------------------------------------------------------ measurements


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def one_at_a_time(study: Study, jobs: Sequence[tuple[int, int, str]], intra: int | None) -> float:
    """Seconds to train ``jobs`` head by head with ``_train_one`` (``intra``: torch threads, None: as set)."""
    def run() -> None:
        for k, s, m in jobs:
            _train_one(study, m, fold=k, seed=s, device="cpu")

    forget_heads(study)
    if intra is None:
        return timed(run)[0]
    with torch_threads(intra):
        return timed(run)[0]


def together(study: Study, jobs: Sequence[tuple[int, int, str]], threads: int) -> float:
    """Seconds to train ``jobs`` as train_heads does (one ensemble, single-threaded ops on ``threads`` threads)."""
    forget_heads(study)
    with torch_threads(1):
        return timed(lambda: _train_together(study, jobs, {}, threads=threads, on_saved=lambda: None))[0]


def epochs_line(rows: Sequence[dict[str, Any]], models: Sequence[str]) -> str:
    parts = []
    for m in models:
        e = [r["epochs_run"] for r in rows if r["model"] == m and "epochs_run" in r]
        if e:
            parts.append(f"{m} {np.mean(e):.1f} [{min(e)}-{max(e)}]")
    return "epochs per head, mean [min-max]: " + ", ".join(parts)


def test_accuracy(study: Study, model: str) -> float:
    preds, _ = evaluate(study, models=(model,), conditions=["clean"], progress=False)
    clean = preds.select(model=model, condition="clean")
    return float((clean.pred == clean.label).mean())


def grid(study: Study, *, busy_on: bool) -> dict[str, Any]:
    """Train the paper heads, then the fusion heads, with the default settings; timings and records."""
    forget_heads(study)
    with busy(busy_on):
        t_paper, paper = timed(lambda: train_heads(study, models=PAPER_MODELS, progress=False))
        t_fusion, _ = timed(lambda: train_heads(study, models=FUSION_MODELS, progress=False))
    return {"paper": t_paper, "fusion": t_fusion, "rows": results(study), "paper_rows": paper,
            "states": head_states(study)}


def forward_floor(study: Study, models: tuple[str, ...], conditions: list[str]) -> float:
    """Seconds of the heads' forward passes alone: every distinct encoded input of every head, plus the
    join of each condition, on tensors already in memory (what evaluate cannot avoid computing)."""
    from featcache.heads import load_head

    total = 0.0
    for k in study.folds:
        ids = list(study.fold(k).test)
        for s in study.seeds:
            for m in models:
                head = load_head(study.heads_dir(m, fold=k, seed=s)).eval()
                needed = []
                for cond in conditions:
                    if not parse(cond).applies(m):
                        continue
                    needed.append([(mod, parse(cond).variant(mod)) for mod in uses(m)])
                x = {key: torch.from_numpy(study.vectors(key[0], fold=k, seed=s, model=m, variant=key[1], ids=ids)[0])
                     for pair in needed for key in pair}
                t = time.perf_counter()
                with torch.no_grad():
                    enc = {key: (head.encode(key[0], v) if hasattr(head, "join") else head(v)) for key, v in x.items()}
                    for pair in needed:
                        logits = head.join(*(enc[key] for key in pair)) if len(pair) == 2 else enc[pair[0]]
                        torch.softmax(logits, -1)
                total += time.perf_counter() - t
    study.close()
    return total


def read_once(study: Study) -> float:
    """Seconds to read every stored vector and record into memory, all held at once as evaluation holds them."""
    held = []
    t = time.perf_counter()
    for info in study.store.iter_entries():
        r = study.store.backend.open_entry(info.path)
        held.append((r.rows(np.arange(r.shape[0])), r.records()))
        r.close()
    seconds = time.perf_counter() - t
    del held
    return seconds


# ------------------------------------------------------------------------------------------ precision

PRECISION_GOALS = {"time": 0.5, "points": 0.5}  # bf16 / fp32 time of the 45 paper heads; |accuracy difference|
SHAPES = (("mm 128x384 @ 384x512", 1, 128), ("mm 4096x384 @ 384x512", 1, 4096), ("bmm 45 x 128x384 @ 384x512", 45, 128))


def shape_rates() -> dict[tuple[str, str], float]:
    """Single-thread GFLOPS of the issue's matmul shapes in float32 and bfloat16, measured interleaved."""
    out: dict[tuple[str, str], float] = {}
    with torch_threads(1):
        for _ in range(2):  # two rounds, the faster counts: background load only ever slows a round
            for name, batch, rows in SHAPES:
                for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                    a = torch.randn(batch, rows, 384).to(dtype)
                    b = torch.randn(batch, 384, 512).to(dtype)
                    torch.bmm(a, b)
                    reps = max(3, int(2e9 / (2 * batch * rows * 384 * 512)))
                    t = time.perf_counter()
                    for _ in range(reps):
                        torch.bmm(a, b)
                    rate = reps * 2 * batch * rows * 384 * 512 / (time.perf_counter() - t) / 1e9
                    out[name, label] = max(out.get((name, label), 0.0), rate)
    return out


PRODUCTS = ("forward", "backward")  # the phases whose work bfloat16 makes cheaper (products and their elementwise work)


def phase_lines(clocks: dict[str, StepClock], seconds: dict[str, float]) -> list[str]:
    """Where the paper heads' training spent its time in each precision: thread-seconds per phase of every step
    (both threads; :func:`featcache.ensemble.step_clock` laps on the timed runs themselves), and what bf16 / fp32
    would be if bfloat16's products took no time at all."""
    a, b = clocks["fp32"], clocks["bf16"]
    lines = [f"     {'phase':<10} {'fp32 s':>7} {'share':>6} {'bf16 s':>7} {'share':>6} {'bf16/fp32':>9}"]
    for phase in PHASES:
        x, y = a.seconds[phase], b.seconds[phase]
        ratio = f"{y / x:9.2f}" if x > 0.005 else f"{'-':>9}"
        lines.append(f"     {phase:<10} {x:7.1f} {100 * x / a.total():5.0f}% {y:7.1f} {100 * y / b.total():5.0f}% {ratio}")
    lines.append(f"     {'total':<10} {a.total():7.1f} {'':>6} {b.total():7.1f} {'':>6} {b.total() / a.total():9.2f}"
                 f"   (thread-seconds; wall fp32 {seconds['fp32']:.1f} s, bf16 {seconds['bf16']:.1f} s; "
                 f"steps fp32 {a.steps}, bf16 {b.steps})")
    prod = {k: sum(c.seconds[p] for p in PRODUCTS) for k, c in clocks.items()}
    rest = {k: c.total() - prod[k] for k, c in clocks.items()}
    lines.append(f"     forward + backward: fp32 {prod['fp32']:.1f} s, bf16 {prod['bf16']:.1f} s "
                 f"({prod['bf16'] / prod['fp32']:.2f}); the other phases: fp32 {rest['fp32']:.1f} s, "
                 f"bf16 {rest['bf16']:.1f} s ({rest['bf16'] / rest['fp32']:.2f})")
    lines.append(f"RATIO heads45_bf16_with_free_products_over_fp32 = {rest['bf16'] / a.total():.2f} (bf16's other "
                 "phases alone against fp32's total: the ratio if its forward and backward took no time)")
    return lines


def head_accuracies(study: Study) -> dict[tuple[int, int, str], float]:
    """Clean test accuracy of every paper head (fold, seed, model)."""
    preds, missing = evaluate(study, models=PAPER_MODELS, conditions=["clean"], progress=False)
    assert not missing, missing
    out = {}
    for k in study.folds:
        for s in study.seeds:
            for m in PAPER_MODELS:
                rows = preds.select(fold=k, seed=s, model=m, condition="clean")
                out[k, s, m] = float((rows.pred == rows.label).mean())
    study.close()
    return out


def precision_step(study: Study, study16: Study, *, rates: dict[str, float], nominal: float) -> None:
    """The paper heads trained in fp32 and in bf16 on the same vectors, one after the other in this process:
    the time ratio, the accuracy difference, each against its floor, and where the time goes."""
    n_heads = len(study.folds) * len(study.seeds) * len(PAPER_MODELS)
    print(f"\n6. precision: the {n_heads} paper heads in fp32, then in bf16 (the same vectors; {load()})")
    runs: dict[str, dict[str, Any]] = {}
    for label, st in (("fp32", study), ("bf16", study16)):
        forget_heads(st)
        with step_clock() as clock:
            seconds, _ = timed(lambda st=st: train_heads(st, models=PAPER_MODELS, progress=False))
        rows = results(st)
        runs[label] = {"seconds": seconds, "rows": rows, "acc": head_accuracies(st), "clock": clock,
                       "epochs": sum(r["epochs_run"] for r in rows if "epochs_run" in r),
                       "flops": grid_flops(rows, st)}
        r = runs[label]
        floor = r["flops"] / rates[label] / 1e9
        print(f"   {label}: {seconds:.1f} s, {r['epochs'] / n_heads:.1f} epochs per head, "
              f"{seconds / r['epochs'] * 1e3:.0f} ms per head-epoch; floor {floor:.1f} s on two cores at "
              f"{rates[label]:.0f} GFLOPS; mean test accuracy {100 * np.mean(list(r['acc'].values())):.2f} % ({load()})")
        print(f"     {epochs_line(rows, PAPER_MODELS)}")
        print(f"RATIO heads{n_heads}_{label}_over_floor = {seconds / floor:.2f}")
    a, b = runs["fp32"], runs["bf16"]
    time_ratio = b["seconds"] / a["seconds"]
    per_epoch = (b["seconds"] / b["epochs"]) / (a["seconds"] / a["epochs"])
    points = 100 * (np.mean(list(b["acc"].values())) - np.mean(list(a["acc"].values())))
    per_model = ", ".join(f"{m} {100 * (np.mean([v for (_, _, mm), v in b['acc'].items() if mm == m]) - np.mean([v for (_, _, mm), v in a['acc'].items() if mm == m])):+.2f}"
                          for m in PAPER_MODELS)
    print(f"   bf16 minus fp32 test accuracy per model (points): {per_model}")
    print(f"RATIO heads{n_heads}_bf16_over_fp32_time = {time_ratio:.2f} (goal <= {PRECISION_GOALS['time']})")
    print(f"RATIO heads{n_heads}_bf16_over_fp32_time_per_head_epoch = {per_epoch:.2f}")
    print(f"RATIO heads{n_heads}_bf16_minus_fp32_accuracy_points = {points:+.2f} (goal within +-{PRECISION_GOALS['points']})")
    missed = time_ratio > PRECISION_GOALS["time"] or abs(points) > PRECISION_GOALS["points"]
    print(f"   where the time goes{' (a goal is missed)' if missed else ''}: every phase of every step of these "
          "two runs (featcache.ensemble.step_clock)")
    for line in phase_lines({k: r["clock"] for k, r in runs.items()}, {k: r["seconds"] for k, r in runs.items()}):
        print(line)


def device_grid(study: Study, study16: Study, *, device: str) -> None:
    """The whole grid (the 45 paper heads, then the 60 fusion heads) trained on ``device`` with ``train_heads``' defaults
    (every head of a stage in one batched ensemble), in fp32 and then in bf16 on the same vectors: seconds, epochs,
    mean clean test accuracy of the paper heads, and the bf16 / fp32 time ratio. The same function runs on a CPU and
    on a GPU (``--device cpu`` tests the command that a GPU machine runs with ``--device cuda``)."""
    from featcache.train import resolve_device

    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{os.cpu_count()} CPUs"
    print(f"\n7. the whole grid on {dev} ({name}), fp32 then bf16 (the same vectors; {load()})")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    seconds: dict[str, float] = {}
    for label, st in (("fp32", study), ("bf16", study16)):
        forget_heads(st)
        sync()
        t = time.perf_counter()
        train_heads(st, models=PAPER_MODELS, device=str(dev), progress=False)
        sync()
        t_paper = time.perf_counter() - t
        train_heads(st, models=FUSION_MODELS, device=str(dev), progress=False)
        sync()
        seconds[label] = time.perf_counter() - t
        rows = results(st)
        acc = head_accuracies(st)
        print(f"   {label}: {len(rows)} heads in {seconds[label]:.1f} s ({len(PAPER_MODELS) * len(st.folds) * len(st.seeds)} "
              f"paper heads {t_paper:.1f} s); {epochs_line(rows, PAPER_MODELS + FUSION_MODELS)}; mean clean test "
              f"accuracy of the paper heads {100 * np.mean(list(acc.values())):.2f} %")
        print(f"RATIO grid{len(rows)}_{dev.type}_{label}_seconds = {seconds[label]:.1f}")
    print(f"RATIO grid_{dev.type}_bf16_over_fp32_time = {seconds['bf16'] / seconds['fp32']:.2f}")


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--quick", action="store_true",
                    help="only the matmul rates and floors in both precisions and the paper heads in fp32 and bf16 "
                         "with the profile (steps 1 and 6), at full size: a few minutes")
    ap.add_argument("--smoke", action="store_true",
                    help="a fifth of the corpus and one seed: a smoke run of every step (its figures mean little)")
    ap.add_argument("--busy", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure with a competing CPU-bound process")
    ap.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                    help="also measure thread counts and one-at-a-time training (steps 2-3)")
    ap.add_argument("--device", default=None,
                    help="instead of steps 1-6: the whole grid trained on this device (cpu, cuda, auto) in fp32 and "
                         "bf16 (step 7); test a GPU's command with --device cpu first")
    args = ap.parse_args()
    seeds = (0,) if args.smoke else tuple(int(s) for s in args.seeds.split(","))
    conditions = ["clean", *TEXT_VARIANTS[1:], *AUDIO_VARIANTS[1:], *(f"pitch+{t}" for t in TEXT_ATTACKS)]
    modes = (False, True) if args.busy else (False,)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, default intra-op threads {torch.get_num_threads()}, "
          f"head threads {head_threads()} ({THREADS_ENV}={os.environ.get(THREADS_ENV, 'unset')}); {load()}")
    with tempfile.TemporaryDirectory() as d:
        study, study16 = build_store(Path(d), seeds, quick=args.smoke)
        n_pairs = len(study.folds) * len(seeds)
        if args.device is not None:
            device_grid(study, study16, device=args.device)
            return

        # 1. the floor ------------------------------------------------------------------------
        rates = [(matmul_gflops(1), matmul_gflops(2), load())]
        rates16 = (matmul_gflops(1, torch.bfloat16), matmul_gflops(2, torch.bfloat16))  # measured beside fp32's
        rate1, rate2 = max(r[0] for r in rates), max(r[1] for r in rates)
        nominal = 45 * 25 * 4500 * np.mean([head_flops(m, DIMS)[0] for m in PAPER_MODELS])
        print(f"\n1. floor: matmul {rate1:.1f} GFLOPS on one thread, {rate2:.1f} GFLOPS on two at once ({rates[0][2]}; "
              "measured again before step 4, the faster rates count)")
        print(f"   bfloat16: {rates16[0]:.1f} GFLOPS on one thread, {rates16[1]:.1f} on two at once "
              f"({rates16[0] / rates[0][0]:.2f}x / {rates16[1] / rates[0][1]:.2f}x float32's; {load()})")
        print(f"   45 paper heads x 25 epochs x 4,500 vectors x (forward + backward) = {nominal / 1e12:.2f} TFLOP "
              f"-> {nominal / rate1 / 1e9:.1f} s on one core, {nominal / rate2 / 1e9:.1f} s on two in fp32; "
              f"{nominal / rates16[0] / 1e9:.1f} s / {nominal / rates16[1] / 1e9:.1f} s in bf16")
        shapes = shape_rates()
        for name, _, _ in SHAPES:
            print(f"   {name}, one thread: fp32 {shapes[name, 'fp32']:.0f} GFLOPS, bf16 {shapes[name, 'bf16']:.0f} GFLOPS "
                  f"({shapes[name, 'bf16'] / shapes[name, 'fp32']:.2f}x)")
        print(f"RATIO matmul_bf16_over_fp32_rate_two_threads = {rates16[1] / rates[0][1]:.2f}")
        if args.quick:
            precision_step(study, study16, rates={"fp32": rates[0][1], "bf16": rates16[1]}, nominal=nominal)
            return

        # 2. threads for small matmuls ----------------------------------------------------------
        if args.compare:
            default = torch.get_num_threads()
            print(f"\n2. one text head (fold 1, seed 0) trained alone, intra-op threads default (= {default}), 1, 2")
            per_thread: dict[tuple[int, bool], float] = {}
            for busy_on in modes:
                for intra in dict.fromkeys((default, 1, 2)):
                    with busy(busy_on):
                        per_thread[intra, busy_on] = one_at_a_time(study, [(1, seeds[0], "text")], intra)
                    print(f"   {'busy' if busy_on else 'idle'}  threads {intra}: {per_thread[intra, busy_on]:6.1f} s "
                          f"({results(study)[0]['epochs_run']} epochs; {load()})")
            for intra in dict.fromkeys((default, 1, 2)):
                if args.busy:
                    print(f"RATIO text_head_busy_over_idle_threads_{intra} = "
                          f"{per_thread[intra, True] / per_thread[intra, False]:.2f}")
            for busy_on in modes:
                tag = "busy" if busy_on else "idle"
                print(f"RATIO text_head_{tag}_threads_{default}_over_1 = "
                      f"{per_thread[default, busy_on] / per_thread[1, busy_on]:.2f}")

            # 3. together vs one at a time, paper heads of fold 1 -------------------------------------
            jobs = [(1, s, m) for s in seeds for m in PAPER_MODELS]
            print(f"\n3. the paper heads of fold 1 ({len(jobs)} heads): one at a time vs together")
            cmp: dict[str, float] = {}
            for busy_on in modes:
                tag = "busy" if busy_on else "idle"
                with busy(busy_on):
                    if not busy_on:  # the old code as it ran: default threads (busy: see step 2, orders slower)
                        cmp["old_" + tag] = one_at_a_time(study, jobs, None)
                    cmp["alone1_" + tag] = one_at_a_time(study, jobs, 1)
                    cmp["together1_" + tag] = together(study, jobs, 1)
                    cmp["together2_" + tag] = together(study, jobs, 2)
                line = ", ".join(f"{k.rsplit('_', 1)[0]} {v:.1f} s" for k, v in cmp.items() if k.endswith(tag))
                print(f"   {tag}: {line} ({load()})")
                base = cmp["alone1_" + tag]
                print(f"RATIO fold1_one_at_a_time_1thread_over_together_1thread_{tag} = "
                      f"{base / cmp['together1_' + tag]:.2f}")
                print(f"RATIO fold1_one_at_a_time_1thread_over_together_2threads_{tag} = "
                      f"{base / cmp['together2_' + tag]:.2f}")
            print(f"RATIO fold1_old_default_threads_over_together_2threads_idle = "
                  f"{cmp['old_idle'] / cmp['together2_idle']:.2f}")

        # 4. the grid -------------------------------------------------------------------------------
        rates.append((matmul_gflops(1), matmul_gflops(2), load()))
        rate1, rate2 = max(r[0] for r in rates), max(r[1] for r in rates)
        print(f"\n   matmul again: {rates[-1][0]:.1f} / {rates[-1][1]:.1f} GFLOPS ({rates[-1][2]}); the floor counts "
              f"{rate1:.1f} / {rate2:.1f}: {nominal / rate1 / 1e9:.1f} s on one core, {nominal / rate2 / 1e9:.1f} s on two "
              "for 45 heads x 25 epochs x 4,500 vectors")
        print(f"\n4. the whole grid with train_heads' defaults ({THREADS_ENV} {head_threads()}): "
              f"{len(study.folds)} folds x {len(seeds)} seeds")
        runs = {}
        for busy_on in modes:
            tag = "busy" if busy_on else "idle"
            runs[tag] = g = grid(study, busy_on=busy_on)
            n_paper = sum(r["model"] in PAPER_MODELS for r in g["rows"])
            n_all = len(g["rows"])
            t_all = g["paper"] + g["fusion"]
            f_paper = grid_flops([r for r in g["rows"] if r["model"] in PAPER_MODELS], study)
            f_all = grid_flops(g["rows"], study)
            print(f"   {tag} ({load()}):")
            print(f"     {n_paper} paper heads: {g['paper']:.1f} s, {g['paper'] / n_paper:.2f} s per head, "
                  f"{g['paper'] / n_pairs:.2f} s per (fold, seed); floor {f_paper / rate2 / 1e9:.1f} s on two cores "
                  f"({f_paper / 1e12:.2f} TFLOP for the epochs run)")
            print(f"     all {n_all} heads: {t_all:.1f} s, {t_all / n_all:.2f} s per head, "
                  f"{t_all / n_pairs:.2f} s per (fold, seed); floor {f_all / rate2 / 1e9:.1f} s on two cores "
                  f"({f_all / 1e12:.2f} TFLOP)")
            print(f"     {epochs_line(g['rows'], PAPER_MODELS + FUSION_MODELS)}")
            print(f"RATIO grid_paper_over_floor_{tag} = {g['paper'] / (f_paper / rate2 / 1e9):.2f}")
            print(f"RATIO grid_all_over_floor_{tag} = {t_all / (f_all / rate2 / 1e9):.2f}")
            if not args.quick and tag == "idle":
                print(f"RATIO grid_paper_over_goal_idle = {g['paper'] / GOALS['paper45']:.2f} (goal {GOALS['paper45']:.0f} s; "
                      f"the floor alone is {f_paper / rate2 / 1e9 / GOALS['paper45']:.1f} x the goal)")
                print(f"RATIO grid_all_over_goal_idle = {t_all / GOALS['all105']:.2f} (goal {GOALS['all105']:.0f} s; "
                      f"the floor alone is {f_all / rate2 / 1e9 / GOALS['all105']:.1f} x the goal)")
        if args.busy:
            idle, bus = runs["idle"], runs["busy"]
            print(f"RATIO grid_all_busy_over_idle = {(bus['paper'] + bus['fusion']) / (idle['paper'] + idle['fusion']):.2f} "
                  "(goal <= 3)")
            same = idle["states"].keys() == bus["states"].keys() and all(
                all(torch.equal(v, bus["states"][k][n]) for n, v in s.items()) for k, s in idle["states"].items())
            print(f"   heads of the busy run equal the idle run's bit for bit: {'yes' if same else 'NO'}")
        rows = runs["idle"]["rows"]
        accs = {m: np.mean([r["best_dev_acc"] for r in rows if r["model"] == m]) for m in ("text", "audio", "multimodal")}
        test = {m: test_accuracy(study, m) for m in ("text", "audio", "multimodal")}
        print("   accuracy (mean over heads), dev / test: " +
              ", ".join(f"{m} {accs[m]:.3f} / {test[m]:.3f}" for m in accs))

        # 5. evaluation -------------------------------------------------------------------------------
        models = PAPER_MODELS + FUSION_MODELS
        t_read = min(read_once(study) for _ in range(3))  # the fastest of three: the strictest denominator
        t_floor = forward_floor(study, PAPER_MODELS, conditions)
        t_eval, (preds, missing) = timed(lambda: evaluate(study, models=PAPER_MODELS, conditions=conditions,
                                                          progress=False))
        assert not missing, missing
        t_eval_all, (preds_all, _) = timed(lambda: evaluate(study, models=models, conditions=conditions,
                                                            progress=False))
        print(f"\n5. evaluation ({load()})")
        print(f"   read every needed vector once: {t_read:.2f} s; the paper heads' forward passes alone: {t_floor:.2f} s")
        print(f"   evaluate paper heads ({len(preds):,} predictions): {t_eval:.2f} s; "
              f"all heads ({len(preds_all):,} predictions): {t_eval_all:.2f} s")
        print(f"RATIO evaluate_over_read = {t_eval / t_read:.2f} (goal <= 3)")
        print(f"RATIO evaluate_over_read_plus_forward = {t_eval / (t_read + t_floor):.2f}")

        # 6. precision --------------------------------------------------------------------------------
        precision_step(study, study16, rates={"fp32": rate2, "bf16": rates16[1]}, nominal=nominal)


if __name__ == "__main__":
    main()
