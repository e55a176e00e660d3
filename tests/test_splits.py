"""Fixed-split and K-fold protocols besides leave-one-session-out: a manifest's ``split`` (train/dev/test) or
``fold`` column, one fold per test partition, the corpus's dev set, and the tables named after the folds."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import one_line_error
from featcache.cli import cli
from featcache.data import corpus_stats, load_corpus, read_manifest
from featcache.data.corpus import fold_noun, fold_title
from featcache.errors import DataError, FeatcacheError
from featcache.folds import make_fold, make_folds

LABELS = ("ang", "hap", "sad")


def _manifest(path: Path, *, splits: dict[str, int], column: str = "split") -> Path:
    """A text-only manifest: ``n`` rows per split value (labels cycling, two speakers per split)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", column, "speaker", "text"])
        for value, n in splits.items():
            for i in range(n):
                w.writerow([f"{value}-{i:03d}", LABELS[i % 3], value, f"{value}-spk{i % 2}", f"words {i}"])
    return path


def test_a_split_column_is_one_fold_named_after_its_test_split(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "m.csv", splits={"train": 30, "dev": 6, "test": 9})
    c = read_manifest(m)
    assert c.splits == {"train": "train", "dev": "dev", "test": "test"}
    assert c.sessions == ("test",) and c.partitions == ("train", "dev", "test")
    (fold,) = make_folds(c)
    assert fold.test_session == "test" and fold.dev_mode == "corpus"
    ids = {v: tuple(u.id for u in c if u.session == v) for v in ("train", "dev", "test")}
    assert (fold.train, fold.dev, fold.test) == (ids["train"], ids["dev"], ids["test"])
    # the corpus's dev set whatever --dev asks for: it gives one
    assert make_fold(c, 1, dev="speaker", seed=3).digest == fold.digest
    with pytest.raises(FeatcacheError, match=r"--fold 2: .* has 1 fold \(its test partition test\); pick 1"):
        make_fold(c, 2)
    # the stats table has a column per partition, in train, dev, test order
    head = corpus_stats(c).format().splitlines()[0].split()
    assert head[:4] == ["Label", "train", "dev", "test"]


def test_without_a_dev_split_the_dev_set_comes_from_train(tmp_path: Path) -> None:
    c = read_manifest(_manifest(tmp_path / "m.csv", splits={"Train": 40, "TEST": 9, "valid": 0}))
    fold = make_fold(c, 1, seed=1)
    train_ids = {u.id for u in c if u.session == "train"}
    assert fold.dev_mode == "stratified" and set(fold.train) | set(fold.dev) == train_ids
    assert 3 <= len(fold.dev) <= 5 and not set(fold.dev) & set(fold.train)
    assert fold.test == tuple(u.id for u in c if u.id.startswith("TEST"))
    assert make_fold(c, 1, seed=2).dev != fold.dev  # today's rule: seeded
    speaker = make_fold(c, 1, dev="speaker", seed=0)
    assert len({c.by_id(i).speaker for i in speaker.dev}) == 1 and set(speaker.dev) <= train_ids


def test_a_fold_column_alone_makes_numbered_folds(tmp_path: Path) -> None:
    c = read_manifest(_manifest(tmp_path / "m.csv", splits={"1": 9, "2": 9, "3": 9}, column="fold"))
    assert c.splits is None and c.sessions == ("Fold 1", "Fold 2", "Fold 3")
    for k, f in enumerate(make_folds(c), start=1):
        assert f.test == tuple(u.id for u in c if u.id.startswith(f"{k}-"))
        assert set(f.train) | set(f.dev) == {u.id for u in c} - set(f.test)
    assert [fold_title(s) for s in c.sessions] == ["Fold 1", "Fold 2", "Fold 3"]
    assert fold_noun(c.sessions) == "folds" and fold_noun(("1", "2")) == "sessions" and fold_title("2") == "Ses. 2"


def test_bad_splits_are_one_line(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "m.csv", splits={"train": 6, "test": 3})
    m.write_text(m.read_text() + "x1,ang,holdout,s,words\n")
    with pytest.raises(DataError, match=r"m.csv:11: row 'x1' has split 'holdout'; a manifest with a split column "
                                         "gives every row train, dev or test"):
        read_manifest(m)
    m = _manifest(tmp_path / "n.csv", splits={"train": 6, "dev": 3})
    with pytest.raises(DataError, match=r"no utterance kept in a test partition \(its partitions: dev, train\)"):
        read_manifest(m)
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"manifest:{m}"])
    assert "no utterance kept in a test partition" in one_line_error(r)


def test_the_split_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    a = _manifest(tmp_path / "a.csv", splits={"train": 6, "test": 3})
    b = tmp_path / "b.csv"
    b.write_text(a.read_text().replace(",split,", ",session,"))
    assert read_manifest(a).fingerprint != read_manifest(b).fingerprint
    assert read_manifest(b).sessions == ("test", "train")  # a session column: leave-one-session-out


def test_data_folds_lists_the_fixed_split(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "m.csv", splits={"train": 30, "dev": 6, "test": 9})
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"manifest:{m}"])
    assert r.exit_code == 0, r.output
    rows = [ln.split() for ln in r.output.splitlines()]
    assert rows[0][:3] == ["fold", "test", "split"]
    assert rows[1][:8] == ["1", "test", "30", "6", "9", "2", "2", "2"] and rows[1][8] == "0"
    assert "dev: the corpus's own" in r.output
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"manifest:{m}"])
    assert r.exit_code == 0 and "train" in r.output.splitlines()[1] and "Ses." not in r.output


def test_load_corpus_keeps_the_split(tmp_path: Path) -> None:
    m = _manifest(tmp_path / "m.jsonl", splits={})
    import json

    rows = [{"id": f"u{i}", "label": LABELS[i % 3], "split": "train" if i < 9 else "test", "text": "w"}
            for i in range(12)]
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = load_corpus(f"manifest:{m}")
    assert c.sessions == ("test",) and len(make_fold(c, 1).test) == 3


def test_the_paired_bootstrap_resamples_utterances_within_the_one_split() -> None:
    import numpy as np

    from featcache.metrics import Analysis, Predictions
    from featcache.metrics.bootstrap import ResampleWeights, impact_statistic

    n, labels = 40, ("ang", "sad", "hap", "neu")
    attacked = np.arange(n) % 3 != 0  # the attack keeps 2 in 3 right; clean input is all right
    rows = [(cond, i, ok) for cond, right in (("clean", np.ones(n, bool)), ("adj", attacked))
            for i, ok in enumerate(right)]
    label = np.array([i % 4 for _c, i, _ok in rows])
    pred = np.where([ok for *_x, ok in rows], label, (label + 1) % 4)
    probs = np.full((len(rows), 4), 0.1, np.float32)
    probs[np.arange(len(rows)), pred] = 0.7
    p = Predictions(fold=np.ones(len(rows), np.int64), session=np.array(["test"] * len(rows), dtype=object),
                    seed=np.zeros(len(rows), np.int64), model=np.array(["text"] * len(rows), dtype=object),
                    condition=np.array([c for c, *_x in rows], dtype=object),
                    utt_id=np.array([f"u{i:02d}" for _c, i, _ok in rows], dtype=object), label=label, pred=pred,
                    probs=probs, affected=np.array([c == "adj" for c, *_x in rows]), labels=labels, texts={})
    analysis = Analysis(p)
    assert analysis.sessions() == ("test",)
    reps = analysis.replicates([("text", "clean"), ("text", "adj")], impact_statistic, n_resamples=300, seed=5)
    assert reps is not None and reps.n_utterances == n
    # by hand: each resample draws n utterances of the one split with replacement, the same draw for both cells
    w = ResampleWeights().get(1, n, 300, 5)
    assert (w.sum(axis=1) == n).all()
    by_hand = ((w @ attacked) / n - 1.0) * 100
    np.testing.assert_allclose(reps.values, by_hand)
    assert reps.estimate == pytest.approx((attacked.mean() - 1) * 100) and reps.values.std() > 1
    ci = analysis.impact_ci("text", "adj", n_resamples=300, seed=5)
    assert ci is not None and ci.low < reps.estimate < ci.high and ci.high < 0


@pytest.mark.parametrize("source", ["manifest", "msp-podcast"])
def test_a_fixed_split_runs_end_to_end_with_one_test_split(source: str, tmp_path: Path) -> None:
    import fake_msp_podcast
    from featcache.metrics import Predictions
    from tiny_models import tiny_bert, tiny_wav2vec2

    msp = fake_msp_podcast.build(tmp_path / "MSP")
    corpus = load_corpus(f"msp-podcast:{msp}")
    spec, test_name = f"msp-podcast:{msp}", "Test1"
    if source == "manifest":  # the same clips as a manifest with a split column
        m = tmp_path / "m.csv"
        with m.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", "split", "speaker", "text", "audio"])
            role = {"Train": "train", "Development": "dev", "Test1": "test"}
            for u in corpus:
                w.writerow([u.id, u.label, role[u.session], u.speaker, u.text, u.audio])
        spec, test_name = f"manifest:{m}", "test"
    out = tmp_path / "report"
    r = CliRunner().invoke(cli, ["run", "--preset", "demo", "--corpus", spec, "--text-backbone",
                                 str(tiny_bert(tmp_path / "bert")), "--audio-backbone", str(tiny_wav2vec2(tmp_path / "w2v")),
                                 "--head-epochs", "2", "--seeds", "0", "--variant", "pitch", "--workers", "0",
                                 "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"{len(corpus)} utterances, 1 fold, modalities text, audio" in r.output
    md = (out / "tables.md").read_text()
    assert f"| Model | {test_name} | Avg. | UAR |" in md and "Ses." not in md
    assert "Accuracy of the audio classifier for each test fold" in md and "mean of the fold accuracies" in md
    assert re.search(r"better in [01]/1 folds", (out / "report.html").read_text())  # RQ1 cell tooltips say folds
    preds = Predictions.load(out / "predictions.h5")
    assert set(preds.session) == {test_name}
    assert set(preds.utt_id) == {u.id for u in corpus if u.session == "Test1"}
