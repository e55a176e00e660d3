"""Evaluation from the store at IEMOCAP size.

Builds a store the size of the paper's study (5,672 utterances, 768-d vectors, the paper's conditions
for text and audio, frozen-style entries shared by the 5 folds), trains the paper's heads (text, audio,
multimodal) and the fusion ablations for 5 folds x 3 seeds on the cached vectors, then times
``featcache.study.evaluate`` against the time to read every vector it needs once.

Vectors are synthetic (class-dependent Gaussian clouds whose overlap gives heads a dev accuracy near
the paper's, about 0.6-0.75, so early stopping runs a realistic number of epochs); the numbers measure
the machinery, not a model. Prints the seconds of each step, the seconds of the heads' bare forward
passes over the same inputs (the arithmetic no evaluation can skip), ``RATIO evaluate_over_read`` and
``RATIO evaluate_over_read_plus_forward``.

usage: python bench/bench_evaluate.py [--dim 768] [--seeds 0,1,2] [--fusion/--no-fusion] [--separation 0.08]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fake_iemocap  # noqa: E402
from tiny_models import tiny_bert, tiny_wav2vec2  # noqa: E402

from featcache.cache import FeatureStore  # noqa: E402
from featcache.conditions import parse  # noqa: E402
from featcache.data import read_iemocap  # noqa: E402
from featcache.extract import EncoderRun, plan_entry  # noqa: E402
from featcache.paper import FUSION_MODELS, PAPER_MODELS, TEXT_ATTACKS, uses  # noqa: E402
from featcache.presets import get_preset, with_overrides  # noqa: E402
from featcache.study import Study, evaluate, train_heads  # noqa: E402

TEXT_VARIANTS = ("clean", "adj", "random-adj", "noun", "random-noun", "no-text")
AUDIO_VARIANTS = ("clean", "pitch", "noise", "no-audio")


def build_store(tmp: Path, dim: int, seeds: tuple[int, ...], separation: float = 0.08) -> Study:
    t = time.perf_counter()
    corpus = read_iemocap(fake_iemocap.build(tmp / "IEMOCAP", audio=True, seconds=0.02))
    preset = with_overrides(get_preset("demo"), text_backbone=str(tiny_bert(tmp / "bert")),
                            audio_backbone=str(tiny_wav2vec2(tmp / "w2v")), seeds=seeds)
    store = FeatureStore(tmp / "cache")
    study = Study(corpus=corpus, store=store, preset=preset, frozen=True, seeds=seeds,
                  fold_options={"dev": "stratified"})
    rng = np.random.default_rng(0)
    n_cls = len(corpus.labels)
    centers = {m: separation * rng.standard_normal((n_cls, dim)).astype(np.float32) for m in ("text", "audio")}
    labels = np.array([corpus.label_index(u.label) for u in corpus])
    ids = [u.id for u in corpus]
    for modality, variants in (("text", TEXT_VARIANTS), ("audio", AUDIO_VARIANTS)):
        run = EncoderRun(modality, preset.backbone(modality), study.options)
        for k, v in enumerate(variants):
            planned = plan_entry(corpus, store, run=run, variant=v, fold=None, seed=0)
            assert planned is not None
            noise = 1.0 + 0.25 * k
            vec = centers[modality][labels] + noise * rng.standard_normal((len(ids), dim)).astype(np.float32)
            records = [None if v == "clean" else {"count": int(i % 5 != 0)} for i in range(len(ids))]
            with store.writer(planned.key, ids=ids) as w:
                for i in range(0, len(ids), 1024):
                    w.add(ids[i:i + 1024], vec[i:i + 1024], labels=labels[i:i + 1024], records=records[i:i + 1024])
    print(f"built a store of {len(ids)} utterances x {dim}-d, {len(TEXT_VARIANTS) + len(AUDIO_VARIANTS)} entries "
          f"in {time.perf_counter() - t:.1f} s")
    return study


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


def forward_floor(study: Study, models: tuple[str, ...], conditions: list[str]) -> float:
    """Seconds of the heads' forward passes alone: every distinct encoded input of every head, plus the
    join of each condition, on tensors already in memory (what evaluate cannot avoid computing)."""
    import torch

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fusion", action=argparse.BooleanOptionalAction, default=True,
                    help="also train and evaluate the fusion ablations")
    ap.add_argument("--separation", type=float, default=0.08,
                    help="scale of the class centres (larger: easier data, fewer epochs before early stopping)")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    conditions = ["clean", *TEXT_VARIANTS[1:], *AUDIO_VARIANTS[1:], *(f"pitch+{t}" for t in TEXT_ATTACKS)]
    with tempfile.TemporaryDirectory() as d:
        study = build_store(Path(d), args.dim, seeds, args.separation)
        t = time.perf_counter()
        trained = train_heads(study, models=PAPER_MODELS, progress=False)
        t_paper = time.perf_counter() - t
        t_fusion = 0.0
        models = PAPER_MODELS
        if args.fusion:
            t = time.perf_counter()
            train_heads(study, models=FUSION_MODELS, progress=False)
            t_fusion = time.perf_counter() - t
            models = PAPER_MODELS + FUSION_MODELS
        t_read = min(read_once(study) for _ in range(3))  # the fastest of three: the strictest denominator
        t_floor = forward_floor(study, PAPER_MODELS, conditions)
        t = time.perf_counter()
        preds, missing = evaluate(study, models=PAPER_MODELS, conditions=conditions, progress=False)
        t_eval = time.perf_counter() - t
        assert not missing, missing
        t = time.perf_counter()
        preds_all, _ = evaluate(study, models=models, conditions=conditions, progress=False)
        t_eval_all = time.perf_counter() - t
    n_heads = len(seeds) * 5
    epochs = [r["epochs_run"] for r in trained if "epochs_run" in r]
    accs = [r["best_dev_acc"] for r in trained if "best_dev_acc" in r]
    print(f"{'step':<60} {'seconds':>8}")
    print(f"{'train paper heads (3 models x 5 folds x %d seeds)' % len(seeds):<60} {t_paper:8.1f}")
    print(f"{'  per fold and seed (text + audio + multimodal)':<60} {t_paper / n_heads:8.1f}")
    if args.fusion:
        print(f"{'train fusion heads (4 kinds x 5 folds x %d seeds)' % len(seeds):<60} {t_fusion:8.1f}")
        print(f"{'  per fold and seed (late + score + gated + mdrop)':<60} {t_fusion / n_heads:8.1f}")
    print(f"{'read every needed vector once':<60} {t_read:8.2f}")
    print(f"{'heads forward passes alone (paper heads, in memory)':<60} {t_floor:8.2f}")
    print(f"{'evaluate paper heads (%d predictions)' % len(preds):<60} {t_eval:8.2f}")
    print(f"{'evaluate all heads (%d predictions)' % len(preds_all):<60} {t_eval_all:8.2f}")
    print(f"paper heads: {len(epochs)} trained, {np.mean(epochs):.1f} epochs on average, "
          f"dev accuracy {np.mean(accs):.3f}")
    print(f"RATIO evaluate_over_read = {t_eval / t_read:.2f} (goal <= 3)")
    print(f"RATIO evaluate_over_read_plus_forward = {t_eval / (t_read + t_floor):.2f}")


if __name__ == "__main__":
    main()
