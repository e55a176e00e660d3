"""Scale-out on Ray: one small study's jobs on 1 and on 2 Ray workers, and a projection for the paper's study.

In one run:

1. builds a fake IEMOCAP-format corpus (``tests/fake_iemocap.py``, with audio) and two small backbones made
   from configs (a 4-layer BERT, a 4-layer wav2vec 2.0; no downloads), sized so that each job takes
   seconds on one CPU;
2. builds the study's job graph with the pipeline's own builders (``finetune_jobs``, ``extraction_jobs``):
   fine-tuning runs of the text and audio models (fold x seed), the entries of each run (clean: every
   utterance of the fold, in shards; a variant: the test utterances), and frozen entries that need no run;
3. runs the graph with :class:`~featcache.executors.RayExecutor` on a local Ray instance with 1 CPU, then
   on a new one with 2 CPUs, each into a fresh store (workers started and warmed before the clock starts),
   and prints both wall times and their ratio;
4. compares the two stores: the digests of every entry's ids, labels, records and vectors and the SHA-256
   of every fine-tuned encoder's and head's tensors must be equal;
5. replays the 1-worker run's measured per-job times through a simulation of the 2-worker run (jobs start
   in submission order as soon as their dependencies are done and a worker is free, as Ray does) and
   prints the predicted against the measured time, which checks the simulation;
6. projects the paper's study (3 models x 5 folds x 3 seeds = 45 fine-tuning runs, and the 300 entries of
   their encoders: clean and the paper's 8 attacks, clean entries of 5,672 utterances in shards of 256,
   variants of the ~1,134 test utterances) onto 1, 4 and 8 GPUs with the same simulation. Per-job GPU
   times are parameters (``--gpu-finetune``, ``--gpu-encode``, ``--gpu-overhead``), not measurements: the
   defaults are assumptions for one current data-centre GPU, printed with the result.

This machine has 2 cores shared with other work: the ratio in 3 is bounded by what the other processes
leave; the script prints the load average before and after.

usage: python bench/bench_scale.py [--quick] [--per-cell N] [--seconds S] [--shard-size N]
       [--gpu-finetune text=S,audio=S,multimodal=S] [--gpu-encode text=S,audio=S] [--gpu-overhead S]
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fake_iemocap  # noqa: E402

from featcache.cache import FeatureStore  # noqa: E402
from featcache.executors import Job, JobResult  # noqa: E402
from featcache.extract import EncoderRun  # noqa: E402
from featcache.paper import TrainSettings  # noqa: E402
from featcache.pipeline import PlannedRun, extraction_jobs, finetune_jobs  # noqa: E402
from featcache.presets import get_preset, with_overrides  # noqa: E402
from featcache.options import StudyOptions  # noqa: E402
from featcache.study import Study  # noqa: E402


def small_bert(path: Path) -> Path:
    """A 4-layer, 128-d BERT with the tests' word-level vocabulary."""
    import torch
    from tiny_models import WORDS
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(WORDS), hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=512, max_position_embeddings=128)).save_pretrained(path)
    return path


def small_wav2vec2(path: Path) -> Path:
    """A 4-layer, 128-d wav2vec 2.0 (frame rate 1/20 of the sample rate)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    cfg = Wav2Vec2Config(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
                         conv_dim=(64, 64), conv_stride=(5, 4), conv_kernel=(10, 8), feat_extract_norm="layer",
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=10,
                         do_stable_layer_norm=True)
    torch.manual_seed(0)
    Wav2Vec2Model(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(path)
    return path


def study_graph(study: Study, *, folds: Sequence[int], seeds: Sequence[int], shard_size: int,
                epochs: int) -> list[Job]:
    """The bench study's jobs: fine-tuning runs (text, audio) x folds x seeds, each run's entries (clean and
    one attack of its modality), and frozen entries of both encoders (no run needed)."""
    settings = TrainSettings(batch_size=8, lr=1e-3, max_epochs=epochs, patience=epochs)
    ft = finetune_jobs(study, models=["text", "audio"], folds=folds, seeds=seeds, settings=settings, device="cpu")
    plans = [PlannedRun(None, j.args["fold"], dict(study.fold_options), after=j.name, modality=j.args["model"])
             for j in ft]
    frozen = [PlannedRun(EncoderRun(m, study.preset.backbone(m), study.encoder_options), None) for m in ("text", "audio")]
    jobs, _ = extraction_jobs(study, frozen + plans, variants=["clean", "asr-0.2", "noise"], shard_size=shard_size,
                              sharded=True, device="cpu", batch_size=8)
    return ft + jobs


def store_digests(root: Path) -> dict[str, str]:
    """What must be equal between two runs: every entry's data digests and every fine-tuned weight file."""
    store = FeatureStore(root)
    out = {}
    for info in store.iter_entries():
        r = store.backend.open_entry(info.path)
        try:
            out[str(info.path.relative_to(root))] = repr(sorted(r.attrs["integrity"].items()))
        finally:
            r.close()
    for weights in sorted(store.runs_dir.rglob("*.safetensors")):
        if weights.name.endswith("_encoder.safetensors") or weights.parent.name == "head":
            out[str(weights.relative_to(root))] = tensors_digest(weights)
    return out


def tensors_digest(path: Path) -> str:
    """SHA-256 of a safetensors file's tensors (names, dtypes, shapes, bytes); not of the file, whose header
    lists the metadata in an order that changes from process to process."""
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(f"{name}:{t.dtype}:{t.shape}".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def _warm(seconds: float) -> int:
    """A task that loads what every job loads, then holds its worker a moment (so each lands in its own)."""
    import transformers  # noqa: F401

    import featcache.executors  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def _spin(seconds: float) -> float:
    """Count in a loop for ``seconds`` of wall time; returns loops per second."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += 1
    return n / seconds


def parallelism_now(seconds: float = 3.0) -> float:
    """How many cores two CPU-bound processes get at once right now, against one alone (2.0 on an idle
    2-core machine): the ceiling of the 2-worker speedup while the measurement runs."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        alone = pool.submit(_spin, seconds).result()
        both = sum(f.result() for f in [pool.submit(_spin, seconds), pool.submit(_spin, seconds)])
    return both / alone


def run_on_ray(study: Study, jobs: list[Job], *, cpus: int) -> tuple[float, list[JobResult]]:
    """The graph on a fresh local Ray instance with ``cpus`` CPUs; wall seconds once its workers are warm."""
    import ray

    from featcache.executors import RayExecutor

    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        warm = ray.remote(num_cpus=1)(_warm)
        pids = ray.get([warm.remote(2.0) for _ in range(cpus)])
        assert len(set(pids)) == cpus, pids
        t0 = time.perf_counter()
        results = RayExecutor(job_cpus=1).run(study, jobs, progress=False)
        return time.perf_counter() - t0, results
    finally:
        ray.shutdown()


# -- the schedule simulation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimJob:
    """A job of the simulation: its seconds and the indices of the jobs it waits for."""

    seconds: float
    deps: tuple[int, ...] = ()


def simulate(jobs: Sequence[SimJob], workers: int) -> float:
    """Makespan of the jobs on ``workers`` equal workers: a free worker takes the first job, in submission
    order, whose dependencies are done (Ray's behaviour for tasks of equal resources)."""
    done_at: dict[int, float] = {}
    free = [0.0] * workers
    waiting = list(range(len(jobs)))
    running: list[tuple[float, int]] = []
    now = 0.0
    while waiting or running:
        ready = [i for i in waiting if all(d in done_at for d in jobs[i].deps)]
        while ready and free:
            i = ready.pop(0)
            waiting.remove(i)
            free.pop()
            heapq.heappush(running, (now + jobs[i].seconds, i))
        end, i = heapq.heappop(running)
        now = end
        done_at[i] = end
        free.append(end)
    return now


def critical_path(jobs: Sequence[SimJob]) -> float:
    """The longest chain of dependent jobs (no number of workers finishes sooner)."""
    finish: list[float] = []
    for j in jobs:
        finish.append(j.seconds + max((finish[d] for d in j.deps), default=0.0))
    return max(finish, default=0.0)


def measured_sim(results: Sequence[JobResult]) -> list[SimJob]:
    """The measured jobs as simulation jobs (their own seconds, their dependencies by position)."""
    index = {r.job.name: n for n, r in enumerate(results)}
    return [SimJob(r.finished - r.started, tuple(index[d] for d in r.job.deps)) for r in results]


def paper_graph(*, finetune_s: dict[str, float], encode_s: dict[str, float], overhead_s: float,
                shard_size: int) -> tuple[list[SimJob], dict[str, int]]:
    """The paper's study as simulation jobs, in the order the pipeline submits them: 45 fine-tuning runs, then
    each run's entries (clean: every utterance, sharded, plus an assembly; each attack: the test utterances)."""
    n_all, n_test = 5672, 5672 // 5
    variants = {"text": ["clean", "adj", "random-adj", "noun", "random-noun", "no-text"],
                "audio": ["clean", "pitch", "noise", "no-audio"]}
    uses = {"text": ["text"], "audio": ["audio"], "multimodal": ["text", "audio"]}
    jobs: list[SimJob] = []
    counts = {"finetune": 0, "entries": 0, "shard": 0, "assemble": 0, "extract": 0}
    runs = [(m, k, s) for k in range(1, 6) for s in range(3) for m in ("text", "audio", "multimodal")]
    for m, _, _ in runs:
        jobs.append(SimJob(finetune_s[m]))
        counts["finetune"] += 1
    for r, (m, _, _) in enumerate(runs):
        for modality in uses[m]:
            for v in variants[modality]:
                n = n_all if v == "clean" else n_test
                counts["entries"] += 1
                if n <= shard_size:
                    jobs.append(SimJob(overhead_s + n * encode_s[modality], (r,)))
                    counts["extract"] += 1
                    continue
                first = len(jobs)
                for start in range(0, n, shard_size):
                    jobs.append(SimJob(overhead_s + min(shard_size, n - start) * encode_s[modality], (r,)))
                    counts["shard"] += 1
                jobs.append(SimJob(overhead_s, (r, *range(first, len(jobs)))))
                counts["assemble"] += 1
    return jobs, counts


def _pairs(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (item.split("=") for item in text.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="A smaller study (a smoke test of the script).")
    ap.add_argument("--per-cell", type=int, default=6, help="Utterances per label and session of the fake corpus.")
    ap.add_argument("--seconds", type=float, default=1.5, help="Seconds of audio per utterance.")
    ap.add_argument("--shard-size", type=int, default=32, help="Utterances per shard in the bench study.")
    ap.add_argument("--epochs", type=int, default=1, help="Epochs of each fine-tuning run.")
    ap.add_argument("--gpu-finetune", default="text=600,audio=2400,multimodal=3000",
                    help="Assumed seconds of one fine-tuning run on one GPU, per model.")
    ap.add_argument("--gpu-encode", default="text=0.002,audio=0.015",
                    help="Assumed seconds per utterance to read, perturb and encode, per encoder, on one GPU.")
    ap.add_argument("--gpu-overhead", type=float, default=3.0,
                    help="Assumed seconds per extraction job to start, load the encoder and write (or assemble).")
    a = ap.parse_args()
    if a.quick:
        a.per_cell, a.seconds, a.shard_size, a.epochs = 3, 1.0, 16, 1

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"two busy loops get {parallelism_now():.2f} cores (2.00 when idle)")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        d = Path(tmp)
        corpus_dir = fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=a.per_cell), audio=True,
                                        seconds=a.seconds)
        preset = with_overrides(get_preset("demo"), text_backbone=str(small_bert(d / "bert")),
                                audio_backbone=str(small_wav2vec2(d / "w2v")))
        from featcache.data import load_corpus

        corpus = load_corpus(f"iemocap:{corpus_dir}")
        folds, seeds = ([1], [0]) if a.quick else ([1, 2], [0])
        walls, runs = {}, {}
        for cpus in (1, 2):
            study = Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(d / f"store-{cpus}"),
                                            text_backbone=preset.text_backbone, audio_backbone=preset.audio_backbone,
                                            frozen=False, seeds=tuple(seeds)), corpus=corpus)
            jobs = study_graph(study, folds=folds, seeds=seeds, shard_size=a.shard_size, epochs=a.epochs)
            walls[cpus], runs[cpus] = run_on_ray(study, jobs, cpus=cpus)
        kinds = {k: sum(j.kind == k for j in jobs) for k in ("finetune", "shard", "assemble", "extract")}
        print(f"study: {len(corpus)} utterances of {a.seconds:g} s, folds {folds}, seeds {seeds}; {len(jobs)} jobs "
              f"({', '.join(f'{n} {k}' for k, n in kinds.items())}), shards of {a.shard_size}")
        per_kind = {k: [r.finished - r.started for r in runs[1] if r.job.kind == k] for k in kinds}
        print("per-job seconds on 1 worker: " + ", ".join(
            f"{k} {min(v):.1f}-{max(v):.1f} (mean {sum(v) / len(v):.1f})" for k, v in per_kind.items() if v))
        for cpus in (1, 2):
            work = sum(r.finished - r.started for r in runs[cpus])
            cpu = sum(r.cpu for r in runs[cpus])
            print(f"{cpus} worker{'s' if cpus > 1 else ' '}: {walls[cpus]:.1f} s  (sum of job times {work:.1f} s, "
                  f"CPU seconds of the jobs {cpu:.1f})")
        print(f"RATIO speedup_2_workers = {walls[1] / walls[2]:.2f}")
        a_dig, b_dig = store_digests(d / "store-1"), store_digests(d / "store-2")
        same = a_dig == b_dig and len(a_dig) > 0
        print(f"identical store contents: {'yes' if same else 'NO'} ({len(a_dig)} digests: "
              f"{sum('features/' in k for k in a_dig)} entries, {sum('runs/' in k for k in a_dig)} weight files)")
        sim = measured_sim(runs[1])
        print(f"simulated 2 workers from the 1-worker job times: {simulate(sim, 2):.1f} s (measured {walls[2]:.1f} s); "
              f"critical path {critical_path(sim):.1f} s")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; two busy loops get "
          f"{parallelism_now():.2f} cores")

    ft, enc = _pairs(a.gpu_finetune), _pairs(a.gpu_encode)
    graph, counts = paper_graph(finetune_s=ft, encode_s=enc, overhead_s=a.gpu_overhead, shard_size=256)
    print(f"\npaper study projection: {counts['finetune']} fine-tuning runs, {counts['entries']} entries "
          f"({counts['shard']} shards + {counts['assemble']} assemblies, {counts['extract']} whole), {len(graph)} jobs")
    print(f"assumed per-job GPU seconds: fine-tuning {a.gpu_finetune}; encoding per utterance {a.gpu_encode}; "
          f"{a.gpu_overhead:g} s per extraction job")
    one = simulate(graph, 1)
    cp = critical_path(graph)
    for gpus in (1, 4, 8):
        t = simulate(graph, gpus)
        print(f"  {gpus} GPU{'s' if gpus > 1 else ' '}: {t / 3600:6.2f} h  speedup {one / t:4.2f}  "
              f"(bound: max(critical path {cp / 3600:.2f} h, work/GPUs {one / gpus / 3600:.2f} h))")


if __name__ == "__main__":
    main()
