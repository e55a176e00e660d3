"""Metrics on hand-made predictions: scores, Avg., impact, flip rate, affected subset, bootstrap, storage."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest

from featcache.errors import FeatcacheError
from featcache.metrics import (
    Analysis,
    Predictions,
    classification_scores,
    confusion,
    mean_std,
    results_table,
    scores_from_confusion,
    summary_table,
    write_results_csv,
    write_summary_csv,
)

LABELS = ("ang", "sad", "hap", "fru")
# fold, session, seed, model, condition, utt, label, pred, affected
Row = tuple[int, str, int, str, str, str, int, int, bool]


def make(rows: Sequence[Row], *, texts: dict[tuple[str, str], str] | None = None) -> Predictions:
    """Predictions from rows; each row's probabilities put 0.7 on its prediction."""
    cols = list(zip(*rows))
    pred = np.array(cols[7])
    probs = np.full((len(rows), 4), 0.1, dtype=np.float32)
    probs[np.arange(len(rows)), pred] = 0.7
    return Predictions(
        fold=np.array(cols[0]), session=np.array(cols[1]), seed=np.array(cols[2]), model=np.array(cols[3]),
        condition=np.array(cols[4]), utt_id=np.array(cols[5]), label=np.array(cols[6]), pred=pred, probs=probs,
        affected=np.array(cols[8]), labels=LABELS, texts=texts or {},
    )


def block(model: str, condition: str, labels: Sequence[int], preds: Sequence[int], *, fold: int = 0,
          seed: int = 0, affected: Sequence[bool] | None = None, prefix: str = "u") -> list[Row]:
    """Rows of one (fold, seed, model, condition); session = fold + 1; utterances ``{prefix}{fold}_{i}``."""
    aff = affected if affected is not None else [condition != "clean"] * len(labels)
    return [(fold, str(fold + 1), seed, model, condition, f"{prefix}{fold}_{i}", y, p, a)
            for i, (y, p, a) in enumerate(zip(labels, preds, aff))]


def correct_block(model: str, condition: str, correct: Sequence[bool], **kw: object) -> list[Row]:
    """Rows whose label is i % 4 and whose prediction is right where ``correct`` says."""
    labels = [i % 4 for i in range(len(correct))]
    preds = [y if ok else (y + 1) % 4 for y, ok in zip(labels, correct)]
    return block(model, condition, labels, preds, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# scores
# ----------------------------------------------------------------------------------------------


def test_scores_by_hand() -> None:
    y = [0, 0, 1, 1, 2, 3]
    p = [0, 1, 1, 1, 0, 3]
    s = classification_scores(y, p)
    assert s.n == 6
    assert s.accuracy == pytest.approx(4 / 6)
    assert s.uar == pytest.approx((1 / 2 + 1 + 0 + 1) / 4)
    assert s.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0 + 1.0) / 4)
    cm = confusion(y, p, n_classes=4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    acc, uar, f1 = scores_from_confusion(cm)
    assert (acc, uar, f1) == pytest.approx((s.accuracy, s.uar, s.macro_f1))
    a = Analysis(make(block("text", "clean", y, p) + block("text", "clean", y, p, seed=1)))
    assert a.confusion("text", "clean", seed=1).tolist() == cm.tolist()
    assert a.confusion("text", "clean").tolist() == (2 * cm).tolist()
    with pytest.raises(KeyError):
        a.confusion("text", "adj")


def test_grouped_scores_equal_sklearn_per_group() -> None:
    rng = np.random.default_rng(3)
    rows: list[Row] = []
    for fold in range(3):
        for seed in range(2):
            n = 15 + 5 * fold
            labels = rng.integers(0, 3 if fold == 1 else 4, n)  # fold 1: class 3 never true ...
            preds = rng.integers(0, 4, n)  # ... but sometimes predicted
            rows += block("text", "clean", labels.tolist(), preds.tolist(), fold=fold, seed=seed)
    preds = make(rows)
    results = results_table(preds)
    assert len(results) == 6
    for r in results:
        sub = preds.select(fold=r.fold, seed=r.seed)
        ref = classification_scores(sub.label, sub.pred)
        assert (r.n, r.accuracy, r.uar, r.macro_f1) == pytest.approx((ref.n, ref.accuracy, ref.uar, ref.macro_f1))


def test_avg_is_the_mean_of_session_accuracies_not_pooled() -> None:
    rows = correct_block("text", "clean", [True, True], fold=0)
    rows += correct_block("text", "clean", [True, False, False, False], fold=1)
    a = Analysis(make(rows))
    assert a.session_accuracy("text", "clean", 0) == {"1": 1.0, "2": 0.25}
    assert a.accuracy("text", "clean").mean == pytest.approx(0.625)  # pooled would be 0.5
    (row,) = a.summary(n_resamples=0)
    assert row.sessions == ("1", "2")
    assert row.session_accuracy == pytest.approx((1.0, 0.25))


def test_impact_sign_mean_and_std_over_seeds() -> None:
    clean = [True] * 8 + [False] * 2  # 0.8
    rows = []
    for seed, attacked in ((0, [True] * 6 + [False] * 4), (1, [True] * 7 + [False] * 3)):
        for fold in range(2):
            rows += correct_block("text", "clean", clean, fold=fold, seed=seed)
            rows += correct_block("text", "adj", attacked, fold=fold, seed=seed)
            rows += correct_block("text", "helps", [True] * 10, fold=fold, seed=seed)
    a = Analysis(make(rows))
    imp = a.impact("text", "adj")
    assert imp.seeds == (0, 1)
    assert imp.values == pytest.approx((-25.0, -12.5))
    assert imp.mean == pytest.approx(-18.75)
    assert imp.std == pytest.approx(np.std([-25.0, -12.5], ddof=1))
    assert a.impact("text", "helps").mean == pytest.approx(25.0)  # an attack that helps is positive
    assert a.impact("text", "clean").mean == pytest.approx(0.0)


def test_impact_uses_the_sessions_both_conditions_have() -> None:
    rows = correct_block("text", "clean", [True, True], fold=0)
    rows += correct_block("text", "clean", [True, False], fold=1)
    rows += correct_block("text", "adj", [True, False], fold=0)  # no session 2 under attack
    assert Analysis(make(rows)).impact("text", "adj").mean == pytest.approx(-50.0)


def test_mean_std_with_one_seed_has_no_std() -> None:
    assert mean_std([0.5]) == (0.5, pytest.approx(math.nan, nan_ok=True))
    assert math.isnan(mean_std([0.5])[1])
    assert mean_std([1.0, 3.0, math.nan]) == pytest.approx((2.0, math.sqrt(2.0)))


def test_flip_rate_counts_any_change_of_prediction() -> None:
    labels = [0, 1, 2, 3]
    rows = block("text", "clean", labels, [0, 1, 0, 3])
    rows += block("text", "adj", labels, [0, 2, 1, 3])  # two flips, one of them wrong -> wrong
    a = Analysis(make(rows))
    assert a.flip_rate("text", "adj").mean == pytest.approx(0.5)
    assert a.flip_rate("text", "clean").mean == 0.0
    res = {r.condition: r for r in a.results()}
    assert res["adj"].flip_rate == pytest.approx(0.5)
    assert res["adj"].n_matched == 4


def test_affected_subset_impact_and_size() -> None:
    rows = correct_block("text", "clean", [True, True, True, False])
    rows += correct_block("text", "adj", [False, False, True, False], affected=[True, True, False, False])
    a = Analysis(make(rows))
    assert a.impact("text", "adj").mean == pytest.approx(-2 / 3 * 100)
    aff = a.affected("text", "adj")
    assert (aff.n, aff.n_affected, aff.share) == (4, 2, 0.5)
    assert aff.accuracy.mean == 0.0
    assert aff.clean_accuracy.mean == 1.0
    assert aff.impact.mean == pytest.approx(-100.0)
    res = {r.condition: r for r in a.results()}
    assert (res["adj"].n_affected, res["adj"].accuracy_affected, res["adj"].clean_accuracy_affected) == (2, 0.0, 1.0)
    assert res["clean"].n_affected == 0


def test_single_modal_impacts_audio_part_first() -> None:
    rows = []
    for model in ("text", "audio", "multimodal"):
        rows += correct_block(model, "clean", [True] * 10)
    rows += correct_block("text", "adj", [True] * 8 + [False] * 2)  # -20 %
    rows += correct_block("audio", "pitch", [True] * 5 + [False] * 5)  # -50 %
    rows += correct_block("multimodal", "pitch+adj", [True] * 9 + [False])
    rows += correct_block("multimodal", "adj", [True] * 9 + [False])
    a = Analysis(make(rows))
    sm = a.single_modal("multimodal", "pitch+adj")
    assert [(m.model, m.condition) for m in sm] == [("audio", "pitch"), ("text", "adj")]
    assert [m.impact.mean for m in sm] == pytest.approx([-50.0, -20.0])
    assert [m.model for m in a.single_modal("multimodal", "adj")] == ["text"]
    assert a.single_modal("text", "adj") == ()
    # a combined attack has no single unimodal counterpart for the bootstrap
    assert a.impact_difference("multimodal", "pitch+adj") is None


# ----------------------------------------------------------------------------------------------
# bootstrap
# ----------------------------------------------------------------------------------------------


def bootstrap_case(fusion_attack: Sequence[bool], text_attack: Sequence[bool], *, seeds: int = 2,
                   clean: Sequence[bool] | None = None) -> Predictions:
    n = len(fusion_attack)
    base = list(clean) if clean is not None else [True] * n
    rows: list[Row] = []
    for seed in range(seeds):
        for fold in range(2):
            rows += correct_block("text", "clean", base, fold=fold, seed=seed)
            rows += correct_block("multimodal", "clean", base, fold=fold, seed=seed)
            rows += correct_block("text", "adj", text_attack, fold=fold, seed=seed)
            rows += correct_block("multimodal", "adj", fusion_attack, fold=fold, seed=seed)
    return make(rows)


def test_bootstrap_identical_models_gives_zero() -> None:
    rng = np.random.default_rng(0)
    attacked = (rng.random(60) < 0.6).tolist()
    d = Analysis(bootstrap_case(attacked, attacked)).impact_difference("multimodal", "adj", n_resamples=200)
    assert d is not None and d.ci is not None
    assert d.difference.mean == 0.0
    assert d.ci.estimate == 0.0
    assert d.ci.low == d.ci.high == 0.0
    assert not d.ci.excludes_zero


def test_bootstrap_equal_but_independent_models_contains_zero_symmetrically() -> None:
    rng = np.random.default_rng(1)
    clean = (rng.random(150) < 0.8).tolist()
    fus = [c and x for c, x in zip(clean, rng.random(150) < 0.8)]
    txt = [c and x for c, x in zip(clean, rng.random(150) < 0.8)]
    d = Analysis(bootstrap_case(fus, txt, clean=clean)).impact_difference("multimodal", "adj", n_resamples=1000)
    assert d is not None and d.ci is not None
    ci = d.ci
    assert ci.low < 0 < ci.high
    assert ci.low < ci.estimate < ci.high
    width = ci.high - ci.low
    assert abs((ci.estimate - ci.low) - (ci.high - ci.estimate)) < 0.25 * width
    assert ci.estimate == pytest.approx(d.difference.mean)
    assert ci.n_utterances == 300


def test_bootstrap_perfect_vs_collapsing_model_excludes_zero_with_the_right_sign() -> None:
    n = 40
    perfect = [True] * n
    collapsed = [i % 10 == 0 for i in range(n)]  # 10 % correct
    d = Analysis(bootstrap_case(perfect, collapsed)).impact_difference("multimodal", "adj", n_resamples=300)
    assert d is not None and d.ci is not None
    assert d.impact.mean == 0.0
    assert d.unimodal_impact.mean == pytest.approx(-90.0)
    assert d.difference.mean == pytest.approx(90.0)
    assert d.ci.excludes_zero and d.ci.low > 0
    # the other way round: the fusion model collapses
    r = Analysis(bootstrap_case(collapsed, perfect)).impact_difference("multimodal", "adj", n_resamples=300)
    assert r is not None and r.ci is not None
    assert r.ci.excludes_zero and r.ci.high < 0


def test_bootstrap_is_reproducible_per_seed() -> None:
    rng = np.random.default_rng(2)
    preds = bootstrap_case((rng.random(80) < 0.7).tolist(), (rng.random(80) < 0.5).tolist())
    a, b = Analysis(preds), Analysis(preds)
    ci1 = a.impact_difference("multimodal", "adj", n_resamples=300, seed=7)
    ci2 = b.impact_difference("multimodal", "adj", n_resamples=300, seed=7)
    ci3 = b.impact_difference("multimodal", "adj", n_resamples=300, seed=8)
    assert ci1 is not None and ci2 is not None and ci3 is not None
    assert ci1.ci == ci2.ci
    assert ci3.ci is not None and ci1.ci is not None and (ci3.ci.low, ci3.ci.high) != (ci1.ci.low, ci1.ci.high)


def test_bootstrap_rejects_bad_settings() -> None:
    a = Analysis(bootstrap_case([True] * 4, [False] * 4))
    cells = [("text", "clean"), ("text", "adj")]
    with pytest.raises(ValueError, match="n_resamples"):
        a.bootstrap(cells, lambda acc: acc[0], n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        a.bootstrap(cells, lambda acc: acc[0], confidence=1.0)
    assert a.bootstrap([("text", "missing")], lambda acc: acc[0]) is None


def test_additivity_of_a_combined_attack() -> None:
    rows = []
    for seed in range(2):
        rows += correct_block("multimodal", "clean", [True] * 20, seed=seed)
        rows += correct_block("multimodal", "pitch", [True] * 18 + [False] * 2, seed=seed)  # -10 %
        rows += correct_block("multimodal", "adj", [True] * 16 + [False] * 4, seed=seed)  # -20 %
        rows += correct_block("multimodal", "pitch+adj", [True] * (13 + seed) + [False] * (7 - seed), seed=seed)
    a = Analysis(make(rows))
    add = a.additivity("multimodal", "pitch+adj", n_resamples=200)
    assert add is not None
    assert (add.audio_condition, add.text_condition) == ("pitch", "adj")
    assert add.sum.mean == pytest.approx(-30.0)
    assert add.combined.values == pytest.approx((-35.0, -30.0))
    assert add.difference.values == pytest.approx((-5.0, 0.0))
    assert add.ci is not None and add.ci.estimate == pytest.approx(-2.5)
    assert add.ci.low <= -2.5 <= add.ci.high
    assert a.additivity("multimodal", "adj") is None  # not a combination


def test_impact_ci_brackets_the_impact() -> None:
    rng = np.random.default_rng(3)
    preds = bootstrap_case((rng.random(80) < 0.7).tolist(), (rng.random(80) < 0.5).tolist())
    a = Analysis(preds)
    ci = a.impact_ci("text", "adj", n_resamples=300)
    assert ci is not None and ci.estimate == pytest.approx(a.impact("text", "adj").mean)
    assert ci.low < ci.estimate < ci.high < 0
    assert a.impact_ci("text", "clean") is None and a.impact_ci("audio", "adj") is None


def test_affected_difference_counts_each_attacks_own_utterances() -> None:
    """adj changes utterances 0-9 and breaks all of them; random-adj changes 10-29 and breaks a quarter."""
    rows: list[Row] = []
    n = 40
    for seed in range(2):
        for fold in range(2):
            rows += correct_block("text", "clean", [True] * n, fold=fold, seed=seed)
            rows += correct_block("text", "adj", [i >= 10 for i in range(n)], fold=fold, seed=seed,
                                  affected=[i < 10 for i in range(n)])
            rows += correct_block("text", "random-adj", [not (10 <= i < 15) for i in range(n)], fold=fold,
                                  seed=seed, affected=[10 <= i < 30 for i in range(n)])
    a = Analysis(make(rows))
    d = a.affected_difference("text", "adj", "random-adj", n_resamples=300)
    assert d is not None and d.ci is not None
    assert d.impact.mean == pytest.approx(-100.0) and d.other_impact.mean == pytest.approx(-25.0)
    assert d.difference.mean == pytest.approx(-75.0)
    assert d.ci.estimate == pytest.approx(-75.0)
    assert d.ci.high < 0 and d.ci.excludes_zero
    assert a.affected_difference("text", "adj", "noun") is None


# ----------------------------------------------------------------------------------------------
# validation, selection, storage, CSV
# ----------------------------------------------------------------------------------------------


def test_duplicate_rows_and_inconsistent_sessions_are_rejected() -> None:
    rows = correct_block("text", "clean", [True, False])
    with pytest.raises(FeatcacheError, match="duplicate rows") as e:
        Analysis(make(rows + rows[:1]))
    assert "\n" not in str(e.value)
    bad = rows + [(0, "9", 0, "text", "adj", "u0_0", 0, 0, True)]
    with pytest.raises(FeatcacheError, match="more than one test session"):
        Analysis(make(bad))


def test_predictions_validate_their_columns() -> None:
    rows = correct_block("text", "clean", [True, False])
    good = make(rows)
    with pytest.raises(ValueError, match="outside"):
        Predictions(**{**{c: getattr(good, c) for c in ("fold", "session", "seed", "model", "condition", "utt_id",
                                                         "label", "probs", "affected")},
                       "pred": np.array([0, 7])}, labels=LABELS)
    with pytest.raises(ValueError, match="probs"):
        Predictions(**{**{c: getattr(good, c) for c in ("fold", "session", "seed", "model", "condition", "utt_id",
                                                         "label", "pred", "affected")},
                       "probs": np.zeros((2, 3))}, labels=LABELS)


def test_select_and_concat() -> None:
    rows = []
    for fold in range(11):
        rows += correct_block("text", "clean", [True, False], fold=fold)
        rows += correct_block("audio", "pitch", [True, False], fold=fold)
    p = make(rows)
    assert len(p.select(model="text")) == 22
    assert len(p.select(model="text", fold=[0, 1])) == 4
    assert len(p.select(model="text", fold=range(3))) == 6
    assert set(p.select(session=["10"]).session.tolist()) == {"10"}  # not truncated to "1"
    assert len(p.select(session="1", condition=["clean", "pitch"])) == 4
    assert p.unique("session")[:3] == ("1", "2", "3") and p.unique("session")[-1] == "11"
    both = Predictions.concat([p.select(model="text"), p.select(model="audio")])
    assert len(both) == len(p)
    with pytest.raises(ValueError, match="cannot filter"):
        p.select(probs=1)


def test_hdf5_roundtrip(tmp_path: Path) -> None:
    rows = correct_block("text", "clean", [True, False, True], prefix="Séance_")
    rows += correct_block("text", "adj", [False, False, True], affected=[True, False, True], prefix="Séance_")
    texts = {("clean", "Séance_0_0"): "Oh. Totally — sûr!", ("adj", "Séance_0_0"): "Oh. [MASK]."}
    p = make(rows, texts=texts)
    path = p.save(tmp_path / "sub" / "preds.h5")
    q = Predictions.load(path)
    for name in ("fold", "session", "seed", "model", "condition", "utt_id", "label", "pred", "probs", "affected"):
        assert np.array_equal(getattr(p, name), getattr(q, name)), name
    assert q.probs.dtype == np.float32 and q.label.dtype == np.int64 and q.affected.dtype == bool
    assert q.labels == LABELS
    assert q.texts == texts
    with h5py.File(path) as f:
        assert f.attrs["format"] == "featcache-predictions"
        assert h5py.check_string_dtype(f["utt_id"].dtype).encoding == "utf-8"
    empty = p.select(model="none")
    assert len(Predictions.load(empty.save(tmp_path / "empty.h5"))) == 0


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(FeatcacheError, match="does not exist"):
        Predictions.load(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(FeatcacheError, match="not a featcache predictions file") as e:
        Predictions.load(other)
    assert "\n" not in str(e.value) and str(other) in str(e.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(FeatcacheError, match="cannot read"):
        Predictions.load(junk)


def test_tidy_and_summary_csv(tmp_path: Path) -> None:
    rows = []
    for seed in range(2):
        for model in ("text", "multimodal"):
            rows += correct_block(model, "clean", [True] * 8 + [False] * 2, seed=seed)
            rows += correct_block(model, "adj", [True] * (6 + seed) + [False] * (4 - seed), seed=seed)
    p = make(rows)
    write_results_csv(results_table(p), tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as f:
        res = list(csv.DictReader(f))
    assert len(res) == 8
    assert list(res[0])[:5] == ["fold", "session", "seed", "model", "condition"]
    first = res[0]
    assert (first["model"], first["condition"], first["accuracy"], first["accuracy_affected"]) == \
        ("text", "clean", "0.8", "")
    summary = summary_table(p, n_resamples=50)
    write_summary_csv(summary, tmp_path / "summary.csv")
    with open(tmp_path / "summary.csv", newline="") as f:
        agg = {(r["model"], r["condition"]): r for r in csv.DictReader(f)}
    mm = agg[("multimodal", "adj")]
    assert float(mm["impact_mean"]) == pytest.approx(-18.75)
    assert float(mm["acc_ses_1"]) == pytest.approx(0.65)
    assert mm["smodal_text_condition"] == "adj" and float(mm["smodal_text_impact_mean"]) == pytest.approx(-18.75)
    assert mm["ci_versus"] == "text:adj" and mm["ci_excludes_zero"] == "false"
    assert agg[("text", "adj")]["ci_low"] == ""


def test_from_blocks_concatenates_columns_and_handles_no_rows() -> None:
    def block(cond: str, n: int) -> dict[str, np.ndarray]:
        return {"fold": np.ones(n, np.int64), "session": np.full(n, "Ses01", object), "seed": np.zeros(n, np.int64),
                "model": np.full(n, "text", object), "condition": np.full(n, cond, object),
                "utt_id": np.array([f"{cond}{i}" for i in range(n)], object), "label": np.arange(n) % 4,
                "pred": np.zeros(n, np.int64), "probs": np.full((n, 4), 0.25, np.float32),
                "affected": np.ones(n, bool)}

    p = Predictions.from_blocks([block("clean", 3), block("adj", 2)], labels=("ang", "sad", "hap", "fru"),
                                texts={("adj", "adj0"): "x"})
    assert len(p) == 5 and p.condition.tolist() == ["clean"] * 3 + ["adj"] * 2 and p.probs.shape == (5, 4)
    assert p.texts == {("adj", "adj0"): "x"}
    empty = Predictions.from_blocks([], labels=("ang", "sad", "hap", "fru"))
    assert len(empty) == 0 and empty.probs.shape == (0, 4) and empty.affected.dtype == bool
