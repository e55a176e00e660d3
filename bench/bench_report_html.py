"""The HTML report at IEMOCAP size: file sizes and time.

Builds a synthetic predictions table the size of the paper's study (5,672 utterances in 5 sessions,
the paper's three models and the four fusion ablations, 3 seeds, the paper's conditions and every
sweep beyond it: ``asr-0.1|0.2|0.3``, ``snr-20|10|5|0``, ``tempo-*``, ``telephone*``, ``reverb-*``,
``clip-*``, ``pitch-2``), writes the full report (``featcache.report.write_report``, no audio source)
and prints the time of each step, the number of browser files and the largest page or data file,
checked against the 5 MB budget.

Predictions are synthetic (each model right with a probability that falls with the attack); the numbers
measure the machinery, not a model.

usage: python bench/bench_report_html.py [--utterances 5672] [--seeds 0,1,2] [--resamples 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featcache.conditions import lookup  # noqa: E402
from featcache.metrics import Predictions  # noqa: E402
from featcache.paper import ALL_MODELS, CONDITIONS, LABELS, uses  # noqa: E402
from featcache.report import write_report  # noqa: E402

BEYOND = ("asr-0.1", "asr-0.2", "asr-0.3", "snr-20", "snr-10", "snr-5", "snr-0", "tempo-0.8", "tempo-0.9",
          "tempo-1.1", "tempo-1.25", "telephone", "telephone-2400", "telephone-1600", "reverb-0.3", "reverb-0.6",
          "reverb-1", "clip-0.5", "clip-0.25", "clip-0.1", "pitch-2")
WORDS = ("well", "I", "think", "the", "whole", "trip", "was", "really", "wonderful", "but", "my", "brother",
         "kept", "complaining", "about", "tiny", "hotel", "room", "and", "cold", "food")
BUDGET = 5 * 1024 * 1024


def synthetic_predictions(n_utt: int, seeds: tuple[int, ...], *, rng: np.random.Generator) -> Predictions:
    """Every model under every condition it reads, for every utterance and seed."""
    sessions = np.arange(n_utt) * 5 // n_utt
    utt = np.array([f"Ses{s + 1:02d}{'FM'[i % 2]}_impro{i % 7:02d}_{'FM'[(i // 2) % 2]}{i:04d}"
                    for i, s in enumerate(sessions)])
    label = rng.integers(0, len(LABELS), n_utt)
    conditions = ("clean", *CONDITIONS, *BEYOND)
    texts: dict[tuple[str, str], str] = {}
    for i, u in enumerate(utt):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), 6 + i % 12)]
        texts[("clean", u)] = " ".join(words).capitalize() + "."
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("fold", "session", "seed", "model", "condition", "utt_id",
                                                          "label", "pred", "probs", "affected")}
    for c_idx, cond in enumerate(conditions):
        parsed = lookup(cond)
        assert parsed is not None, cond
        if parsed.text is not None:
            for i, u in enumerate(utt):
                words = texts[("clean", u)].split()
                masked = [("[MASK]" if (j + i + c_idx) % 4 == 0 else w) for j, w in enumerate(words)]
                texts[(cond, u)] = " ".join(masked) if parsed.text != "no-text" else ""
        severity = 0.0 if cond == "clean" else 0.05 + 0.25 * ((c_idx * 37) % 11) / 10
        for m_idx, model in enumerate(ALL_MODELS):
            if not parsed.applies(model):
                continue
            for seed in seeds:
                right = rng.random(n_utt) < (0.75 - severity * (0.5 if len(uses(model)) == 2 else 1.0))
                probs = rng.dirichlet(np.ones(len(LABELS)) * 0.6, n_utt).astype(np.float32)
                top = probs.argmax(1)
                pred = np.where(right, label, (label + 1 + top % 3) % len(LABELS))
                probs[np.arange(n_utt), pred] += 1.0
                probs /= probs.sum(1, keepdims=True)
                cols["fold"].append(sessions)
                cols["session"].append((sessions + 1).astype(str))
                cols["seed"].append(np.full(n_utt, seed))
                cols["model"].append(np.full(n_utt, model))
                cols["condition"].append(np.full(n_utt, cond))
                cols["utt_id"].append(utt)
                cols["label"].append(label)
                cols["pred"].append(pred)
                cols["probs"].append(probs)
                cols["affected"].append(np.full(n_utt, cond != "clean") & (rng.random(n_utt) < 0.9))
    return Predictions(**{k: np.concatenate(v) for k, v in cols.items()}, labels=LABELS, texts=texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utterances", type=int, default=5672)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="report folder (default: a temporary one)")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    t = time.perf_counter()
    preds = synthetic_predictions(args.utterances, seeds, rng=np.random.default_rng(0))
    print(f"synthetic predictions: {len(preds):,} rows, {len(preds.unique('condition'))} conditions, "
          f"{len(preds.unique('model'))} models, {len(seeds)} seeds [{time.perf_counter() - t:.1f} s]")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report"
        t = time.perf_counter()
        paths = write_report(preds, out, title="IEMOCAP-size synthetic report", n_resamples=args.resamples)
        print(f"write_report: {time.perf_counter() - t:.1f} s")
        assert paths.html is not None
        pages = [paths.html, *paths.browser]
        largest = max(pages, key=lambda p: p.stat().st_size)
        total = sum(p.stat().st_size for p in paths.browser)
        print(f"report.html: {paths.html.stat().st_size / 1024:.0f} KiB")
        print(f"browser files: {len(paths.browser)}, {total / 1024 / 1024:.1f} MiB in all, "
              f"median {np.median([p.stat().st_size for p in paths.browser]) / 1024:.0f} KiB")
        print(f"largest page or data file: {largest.name} {largest.stat().st_size / 1024:.0f} KiB "
              f"({'within' if largest.stat().st_size <= BUDGET else 'OVER'} the 5 MB budget)")


if __name__ == "__main__":
    main()
