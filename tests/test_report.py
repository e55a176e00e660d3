"""The report: table layout against golden files, example selection, summary answers, plots, CSV."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from featcache.errors import FeatcacheError
from featcache.metrics import Analysis, Predictions
from featcache.report import (
    build_tables,
    format_top,
    latex_escape,
    render_latex,
    render_markdown,
    select_examples,
    write_plots,
    write_report,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FEATCACHE_UPDATE_GOLDEN") == "1"
LABELS = ("ang", "sad", "hap", "fru")

BASE = {"text": 70, "audio": 60, "multimodal": 80, "late": 75}
DROP = {
    "clean": 0, "adj": 8, "random-adj": 6, "noun": 14, "random-noun": 10, "pitch": 10, "pitch+adj": 16,
    "pitch+noun": 22, "no-text": 40, "no-audio": 20, "noise": 25, "snr-10": 5, "asr-0.2": 12,
}
CONDITIONS = {
    "text": ("clean", "adj", "random-adj", "noun", "random-noun", "asr-0.2"),
    "audio": ("clean", "pitch", "noise", "snr-10"),
    "multimodal": ("clean", "adj", "random-adj", "noun", "random-noun", "pitch", "pitch+adj", "pitch+noun",
                   "no-text", "no-audio", "noise", "snr-10", "asr-0.2"),
    "late": ("clean", "adj", "pitch", "pitch+adj", "snr-10"),
}


def _const(*names: str) -> int:
    return sum((k + 1) * ord(ch) for name in names for k, ch in enumerate(name))


def synthetic(
    *,
    sessions: int = 5,
    per_session: int = 12,
    seeds: Sequence[int] = (0, 1),
    conditions: dict[str, tuple[str, ...]] | None = None,
    base: dict[str, int] | None = None,
) -> Predictions:
    """Deterministic predictions from integer arithmetic only (no random generator involved)."""
    conds = conditions or CONDITIONS
    base = base or BASE
    cols: dict[str, list] = {k: [] for k in ("fold", "session", "seed", "model", "condition", "utt_id", "label",
                                              "pred", "probs", "affected")}
    texts: dict[tuple[str, str], str] = {}
    for seed in seeds:
        for model, model_conds in conds.items():
            for cond in model_conds:
                text_attack = cond in ("adj", "random-adj", "noun", "random-noun", "asr-0.2", "no-text")
                factor = 1 if model in ("text", "audio") else 2
                target = base[model] - DROP[cond] // factor
                for s in range(sessions):
                    for i in range(per_session):
                        utt = f"Ses{s + 1:02d}_{i:03d}"
                        y = i % 4
                        affected = cond != "clean" and (not text_attack or i % 5 != 0)
                        score = (i * 37 + s * 53 + seed * 11 + _const(model, cond)) % 100
                        ok = score < (target if affected else base[model])
                        pred = y if ok else (y + 1 + i % 3) % 4
                        probs = np.full(4, 0.05)
                        probs[(pred + 1) % 4] = 0.05 + (score % 20) / 100
                        probs[pred] = 1.0 - probs.sum() + probs[pred]
                        for name, value in (("fold", s), ("session", str(s + 1)), ("seed", seed), ("model", model),
                                            ("condition", cond), ("utt_id", utt), ("label", y), ("pred", pred),
                                            ("probs", probs), ("affected", affected)):
                            cols[name].append(value)
                        if cond == "clean":
                            texts[(cond, utt)] = f"utterance {i} was a rather good one"
                        elif cond == "adj":
                            texts[(cond, utt)] = f"utterance {i} was a rather [MASK] one"
                        elif cond == "noun":
                            texts[(cond, utt)] = f"[MASK] {i} was a rather good [MASK]"
    return Predictions(**{k: np.array(v) for k, v in cols.items()}, labels=LABELS, texts=texts)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.skip(f"rewrote {path}")
    assert path.is_file(), f"missing {path}; create it with FEATCACHE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("report")
    return write_report(synthetic(), out, title="Synthetic report", n_resamples=200)


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------


def test_tables_markdown_matches_golden(report) -> None:  # type: ignore[no-untyped-def]
    check_golden("tables.md", report.tables_md.read_text(encoding="utf-8"))


def test_tables_latex_matches_golden(report) -> None:  # type: ignore[no-untyped-def]
    check_golden("tables.tex", report.tables_tex.read_text(encoding="utf-8"))


def test_table_layout_follows_the_paper(report) -> None:  # type: ignore[no-untyped-def]
    md = report.tables_md.read_text(encoding="utf-8")
    assert "| Model | Ses. 1 | Ses. 2 | Ses. 3 | Ses. 4 | Ses. 5 | Avg. | UAR |" in md
    assert "| Method | Ses. 1 | Ses. 2 | Ses. 3 | Ses. 4 | Ses. 5 | Avg. | UAR | Impact | Impact S. Modal |" in md
    t6 = md[md.index("**Table 6.**"):md.index("**Table 6b.**")]
    order = ["Baseline", "**Text perturbations**", "Adjectives", "Random (#adj.)", "Nouns", "Random (#noun)",
             "**Audio perturbations**", "Pitch", "**Text-audio perturbations**", "Pitch + adj.", "Pitch + noun",
             "**Eliminating one modality**", "No text", "No audio", "**Adding white noise**", "Noisy audio"]
    positions = [t6.index(f"| {label} |") for label in order]
    assert positions == sorted(positions)
    assert "Pitch + rand." not in t6  # absent conditions are omitted
    # Impact S. Modal of pitch + adj.: audio impact, then text impact, as in Tables 4 and 5
    a = Analysis(synthetic())
    pitch, adj = a.impact("audio", "pitch").mean, a.impact("text", "adj").mean
    row = next(line for line in t6.splitlines() if line.startswith("| Pitch + adj. |"))
    assert row.endswith(f"| {pitch:.2f}%, {adj:.2f}% |")
    beyond = md[md.index("**Table B.**"):]
    assert "| snr-10 |" in beyond and "| asr-0.2 |" in beyond and "**Late model**" in beyond
    assert "6b" in md and "`late`" in md


def test_tables_csv_one_per_table(report) -> None:  # type: ignore[no-untyped-def]
    assert set(report.table_csvs) == {"table3", "table4", "table5", "table6", "table6b-late", "beyond"}
    with open(report.table_csvs["table6"], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["section", "method", "condition", "Ses. 1", "Ses. 2", "Ses. 3", "Ses. 4", "Ses. 5", "Avg.",
                       "UAR", "Impact", "Impact S. Modal"]
    noisy = next(r for r in rows if r[1] == "Noisy audio")
    assert noisy[0] == "Adding white noise" and noisy[2] == "noise" and "±" in noisy[8]


def test_one_seed_shows_no_spread_and_missing_conditions_are_left_out() -> None:
    conds = {"text": ("clean", "adj"), "multimodal": ("clean", "adj")}
    a = Analysis(synthetic(seeds=(3,), conditions=conds))
    tables = build_tables(a, a.summary(n_resamples=0))
    assert [t.key for t in tables] == ["table3", "table4", "table6"]  # no audio model, no extra attack
    md = "".join(render_markdown(t) for t in tables)
    assert "±" not in md
    assert "Nouns" not in md and "Audio perturbations" not in md and "Audio |" not in md


def test_uar_sits_beside_accuracy() -> None:
    """UAR differs from accuracy when the classes are unbalanced: all 'ang' right, the one 'sad' wrong."""
    conds = {"text": ("clean",), "multimodal": ("clean",)}
    preds = synthetic(seeds=(0,), conditions=conds)
    preds.pred[:] = np.where(preds.label == 1, 2, preds.label)  # every 'sad' predicted 'hap'
    a = Analysis(preds)
    t3 = build_tables(a, a.summary(n_resamples=0))[0]
    assert t3.columns[-2:] == ("Avg.", "UAR")
    text = t3.rows[0]
    assert text.cells[-2].mean == pytest.approx(0.75) and text.cells[-1].mean == pytest.approx(0.75)
    preds.label[preds.label == 3] = 0  # now 'ang' is twice as common: accuracy 0.75, UAR (1 + 0 + 1) / 3
    preds.pred[:] = np.where(preds.label == 1, 2, preds.label)
    a = Analysis(preds)
    text = build_tables(a, a.summary(n_resamples=0))[0].rows[0]
    assert text.cells[-2].mean == pytest.approx(0.75) and text.cells[-1].mean == pytest.approx(2 / 3)


def test_one_modality_study_leaves_out_what_does_not_apply(tmp_path: Path) -> None:
    conds = {"text": ("clean", "adj", "random-adj", "asr-0.2")}
    paths = write_report(synthetic(conditions=conds), tmp_path, n_resamples=0, plots=False)
    md = paths.tables_md.read_text(encoding="utf-8")
    t3 = md[md.index("**Table 3.**"):md.index("**Table 4.**")]
    assert "**" not in t3.replace("**Table 3.**", "") and "best value" not in t3  # one model: nothing to bold
    assert "| Impact S. Modal |" not in md and "Impact S. Modal copies" not in md  # no fusion model, no column
    assert md.count("This study evaluated only the text model") == 1
    ex = paths.examples_md.read_text(encoding="utf-8")
    assert "Not available" not in ex and ex.count("This study evaluated only the text model") == 1
    assert "**Table 7.**" not in ex


def test_latex_escaping() -> None:
    assert latex_escape("50% of a_b & #1 {x} ~ ^ \\ ±") == \
        r"50\% of a\_b \& \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} $\pm$"
    conds = {"text": ("clean", "random-adj"), "multimodal": ("clean", "random-adj")}
    a = Analysis(synthetic(seeds=(0, 1), conditions=conds))
    tex = "".join(render_latex(t) for t in build_tables(a, a.summary(n_resamples=0)))
    assert r"Random (\#adjectives)" in tex and r"\%" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert "#adj" not in tex.replace(r"\#", "")


# ----------------------------------------------------------------------------------------------
# examples
# ----------------------------------------------------------------------------------------------


def example_predictions() -> Predictions:
    """Six utterances, seeds 0 and 1: exactly c, a, b qualify under pitch in seed 0 (c has the largest margin,
    a and b tie and are ordered by id); d has both models right, e both wrong, f qualifies only in seed 1."""
    # utt -> (label, P_multimodal(true), multimodal right?, P_audio(true), audio right?)
    spec = {
        "a": (0, 0.70, True, 0.20, False),
        "b": (1, 0.80, True, 0.30, False),
        "c": (2, 0.95, True, 0.15, False),
        "d": (3, 0.90, True, 0.60, True),
        "e": (0, 0.20, False, 0.10, False),
        "f": (1, 0.20, False, 0.10, False),
    }
    rows = []
    for seed in (0, 1):
        for utt, (y, pm, okm, pa, oka) in spec.items():
            if seed == 1 and utt == "f":
                pm, okm = 0.99, True
            for model, p, ok in (("multimodal", pm, okm), ("audio", pa, oka)):
                for cond in ("clean", "pitch"):
                    wrong = (y + 1) % 4
                    probs = np.full(4, (1 - p) / 3)
                    if not ok:  # the wrong class takes the lead, the other two get 0.01 each
                        probs = np.full(4, 0.01)
                        probs[wrong] = 1 - p - 0.02
                    probs[y] = p
                    pred = y if ok else wrong
                    rows.append((0, "1", seed, model, cond, utt, y, pred, probs, cond != "clean"))
    cols = list(zip(*rows))
    return Predictions(fold=np.array(cols[0]), session=np.array(cols[1]), seed=np.array(cols[2]),
                       model=np.array(cols[3]), condition=np.array(cols[4]), utt_id=np.array(cols[5]),
                       label=np.array(cols[6]), pred=np.array(cols[7]), probs=np.array(cols[8]),
                       affected=np.array(cols[9]), labels=LABELS, texts={("clean", "c"): "Oh. Totally."})


def test_examples_selection_order_and_content() -> None:
    preds = example_predictions()
    ex = select_examples(preds, attacks=["pitch"], model="multimodal", unimodal="audio", n=5, seed=0)
    assert [e.utt_id for e in ex] == ["c", "a", "b"]
    assert [e.margin for e in ex] == pytest.approx([0.80, 0.50, 0.50])
    top = ex[0]
    assert top.label == "hap" and top.text == "Oh. Totally." and top.attacks == ("pitch",)
    assert [r.condition for r in top.rows] == ["clean", "pitch"]
    pitch = top.rows[1]
    assert pitch.model_correct and not pitch.unimodal_correct
    assert pitch.model_top[0] == ("hap", pytest.approx(0.95))
    assert [e.utt_id for e in select_examples(preds, attacks=["pitch"], unimodal="audio", n=2, seed=0)] == ["c", "a"]
    assert "f" in [e.utt_id for e in select_examples(preds, attacks=["pitch"], unimodal="audio", seed=1)]


def test_examples_under_two_attacks_take_the_best_margin() -> None:
    a = Analysis(synthetic())
    preds = a.predictions
    ex = select_examples(preds, attacks=["adj", "noun"], model="multimodal", unimodal="text", n=50, seed=0)
    assert ex, "the synthetic data has qualifying utterances"
    sub = preds.select(seed=0)
    keys = {(m, c, u): i for i, (m, c, u) in enumerate(zip(sub.model, sub.condition, sub.utt_id))}
    for e in ex:
        margins = []
        for attack in ("adj", "noun"):
            i, j = keys[("multimodal", attack, e.utt_id)], keys[("text", attack, e.utt_id)]
            y = sub.label[i]
            if sub.pred[i] == y and sub.pred[j] != y:
                margins.append(sub.probs[i, y] - sub.probs[j, y])
        assert margins and e.margin == pytest.approx(max(margins))
    assert [(-round(e.margin, 6), e.utt_id) for e in ex] == sorted((-round(e.margin, 6), e.utt_id) for e in ex)
    noun_row = next(r for r in ex[0].rows if r.condition == "noun")
    assert noun_row.text is not None and "[MASK]" in noun_row.text


def test_format_top_follows_the_paper() -> None:
    assert format_top([("sad", 0.99), ("fru", 0.004)]) == "**sad** = 0.99, fru < 0.1"
    assert format_top([("hap", 0.46), ("fru", 0.34)]) == "**hap** = 0.46, fru = 0.34"


def test_examples_file(report) -> None:  # type: ignore[no-untyped-def]
    md = report.examples_md.read_text(encoding="utf-8")
    assert "**Table 7.**" in md and "**Table 8.**" in md
    assert "| # | Transcription | Label | Multimodal | Audio |" in md
    assert "| # | Transcription | Label | Multimodal | Text |" in md
    assert "*Adjective masking*: utterance" in md or "*Noun masking*: [MASK]" in md


# ----------------------------------------------------------------------------------------------
# summary, files, plots
# ----------------------------------------------------------------------------------------------


def test_summary_answers_follow_the_numbers(report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    md = report.summary_md.read_text(encoding="utf-8")
    assert "## RQ1" in md and "## RQ2" in md and "## RQ3" in md and "## Affected subset" in md and "## Additivity" in md
    rq1 = md.split("## RQ1", 1)[1].split("\n## ", 1)[0]
    assert "| Model | vs text | vs audio |" in rq1
    row = next(line for line in rq1.splitlines() if line.startswith("| multimodal |"))
    assert row.count("**yes**") + row.count("yes (n.s.)") == 2 and "[" in row  # better than both, with intervals
    rq2 = md.split("## RQ2", 1)[1].split("\n## ", 1)[0]
    assert "| Model | adj |" in rq2 and "Hurt less in " in rq2
    assert len([line for line in rq2.splitlines() if line.startswith("| ")]) == 1 + 2  # header, 2 fusion models
    assert "| Model | pitch+adj |" in md.split("## Additivity", 1)[1]
    pos = md.split("## Part of speech", 1)[1].split("\n## ", 1)[0]
    text_row = next(line for line in pos.splitlines() if line.startswith("| text |"))
    assert "[" in text_row and any(w in text_row for w in ("**yes**", "yes (n.s.)", "no (n.s.)", "**no**"))
    # at most a few lines of prose per question: a heading, one line, the table
    for part in md.split("\n## ")[1:]:
        prose = [line for line in part.splitlines()[1:] if line and not line.startswith("|")]
        assert len(prose) <= 1, (part.splitlines()[0], prose)
    # the same code says "no" when the text model is the better one
    worse = write_report(synthetic(base={"text": 85, "audio": 60, "multimodal": 70, "late": 75}), tmp_path,
                         n_resamples=0, plots=False)
    md2 = worse.summary_md.read_text(encoding="utf-8")
    row2 = next(line for line in md2.split("## RQ1", 1)[1].splitlines() if line.startswith("| multimodal |"))
    cell = row2.split("|")[2].strip()
    assert cell.startswith("-") and cell.endswith(" no (n.s.)") and "[" not in cell, row2  # no interval: n.s.


def test_question_cells_follow_their_sign_and_interval() -> None:
    from featcache.metrics.rows import BootstrapCI
    from featcache.report.questions import Answer, Question, answer_md, verdict

    def ci(low: float, high: float) -> BootstrapCI:
        return BootstrapCI(estimate=(low + high) / 2, low=low, high=high, confidence=0.95, n_resamples=100, seed=0,
                           n_utterances=10)

    assert verdict(3.0, ci(1.0, 5.0), yes_if_positive=True) == "yes"
    assert verdict(3.0, ci(-1.0, 5.0), yes_if_positive=True) == "yes-ns"
    assert verdict(-3.0, ci(-5.0, -1.0), yes_if_positive=True) == "no"
    assert verdict(-3.0, None, yes_if_positive=True) == "no-ns"
    assert verdict(-3.0, ci(-5.0, -1.0), yes_if_positive=False) == "yes"  # POS: negative answers yes
    a = Answer(3.64, ci(0.38, 7.32), "yes")
    assert answer_md(a) == "+3.64 [+0.38, +7.32] **yes**" and answer_md(None) == ""
    q = Question("rq2", "RQ2", "how", ("adj", "noun"), (("m", (a, Answer(-1.0, ci(-2.0, 1.0), "no-ns"))),
                                                        ("g", (None, Answer(2.0, None, "yes-ns")))), "",
                 yes_means="hurt less", no_means="hurt more")
    assert q.tally == "Hurt less in 2 of 3 comparisons (1 significant); hurt more in 1 (0 significant)."


def test_report_files_and_tidy_csvs(report) -> None:  # type: ignore[no-untyped-def]
    for path in (report.tables_md, report.tables_tex, report.examples_md, report.summary_md, report.results_csv,
                 report.summary_csv):
        assert path.is_file() and path.stat().st_size > 0, path
    with open(report.results_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    n_cells = sum(len(c) for c in CONDITIONS.values())
    assert len(rows) == n_cells * 5 * 2  # (model, condition) x folds x seeds
    with open(report.summary_csv, newline="") as f:
        agg = list(csv.DictReader(f))
    assert len(agg) == n_cells
    assert {"impact_mean", "impact_std", "flip_rate_mean", "affected_impact_mean", "ci_low", "ci_high"} <= set(agg[0])
    assert report.tables_tex.read_text(encoding="utf-8").count(r"\begin{table}") == 6


def test_plots_are_non_empty_pngs(tmp_path: Path) -> None:
    from matplotlib.image import imread

    a = Analysis(synthetic(conditions={"text": ("clean", "adj"), "multimodal": ("clean", "adj", "pitch")}))
    paths = write_plots(a, a.summary(n_resamples=0), tmp_path)
    assert set(paths) == {"impact_paper", "flip_rate", "clean_accuracy"}
    for path in paths.values():
        svg = path.with_suffix(".svg").read_text(encoding="utf-8")
        assert svg.startswith("<?xml") and "<svg" in svg and "<text" in svg  # text kept as text
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        img = imread(path)
        assert img.shape[0] > 300 and img.shape[1] > 600
        assert float(np.std(img)) > 0  # not a blank canvas


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    preds = synthetic(conditions={"text": ("adj",)}, seeds=(0,))
    with pytest.raises(FeatcacheError, match="no 'clean' condition") as e:
        write_report(preds, tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(FeatcacheError, match="no predictions"):
        write_report(preds.select(model="none"), tmp_path)


def test_a_model_named_with_a_colon_gets_a_file_safe_table_name(tmp_path: Path) -> None:
    conds = {"multimodal": CONDITIONS["multimodal"], "ablate:x": CONDITIONS["multimodal"]}
    preds = synthetic(conditions=conds, base={**BASE, "ablate:x": 78}, seeds=(0,))
    out = write_report(preds, tmp_path, title="ablation", n_resamples=0, plots=False)
    assert "table6b-ablate_x" in out.table_csvs and out.table_csvs["table6b-ablate_x"].is_file()
    assert not any(":" in p.name for p in tmp_path.iterdir())


def test_a_full_disk_while_writing_the_tables_is_one_line_and_leaves_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import errno
    import io

    from featcache.errors import StoreError

    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "w" in str(mode) and ".csv" in str(file):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)
    with pytest.raises(StoreError) as e:
        write_report(synthetic(seeds=(0,)), tmp_path / "out", n_resamples=0, plots=False, html=False)
    message = str(e.value)
    assert "\n" not in message and "no space left on device" in message.lower() and ".csv" in message
    assert not any(p.suffix == ".csv" or ".tmp" in p.name for p in (tmp_path / "out").rglob("*"))
