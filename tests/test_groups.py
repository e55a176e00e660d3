"""Robustness by group (issue 21, part 4): groups per utterance (IEMOCAP's sex from the id, a manifest's
``group:NAME`` columns, EmoBox's speakers), each group's clean accuracy and impacts with paired bootstrap
intervals and the largest gap (metrics.by_group), ``featcache evaluate --by sex`` and the report's Groups
section and summary.csv rows."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fake_emobox
import fake_iemocap
from conftest import one_line_error
from featcache.cli import cli
from featcache.data import Corpus, read_emobox, read_iemocap, read_manifest
from featcache.errors import DataError
from featcache.metrics import Analysis, Predictions, group_tables
from featcache.metrics.bootstrap import impact_statistic, percentile_interval
from featcache.metrics.by_group import GAP, group_records, group_seed
from featcache.report import GroupSection, format_group_table, read_group_section, write_report
from featcache.report.groups import parse_group_names

# ------------------------------------------------------------------------------------------------
# groups per utterance
# ------------------------------------------------------------------------------------------------


def _without_groups(corpus: Corpus) -> Corpus:
    return Corpus(name=corpus.name, root=corpus.root, labels=corpus.labels,
                  utterances=tuple(dataclasses.replace(u, groups={}) for u in corpus.utterances))


def test_iemocap_sex_is_the_letter_before_the_turn_number(tmp_path: Path) -> None:
    corpus = read_iemocap(fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(), dialogs=3))
    assert corpus.group_names() == ("sex",)
    sexes = corpus.groups("sex")
    assert set(sexes) == {u.id for u in corpus}
    for u in corpus:
        assert sexes[u.id] == u.id.rsplit("_", 1)[1][0] == u.speaker[-1]
    assert set(sexes.values()) == {"F", "M"}
    # a dialog holds turns of both speakers: the letter of Ses01F is not the turn's
    assert any(u.id.split("_")[0][-1] != sexes[u.id] for u in corpus)
    # groups change no store key: the fingerprint is the one without them
    assert corpus.fingerprint == _without_groups(corpus).fingerprint


def _manifest(path: Path, *, accent: bool = True) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "session", "label", "text", *(["group:accent"] if accent else []), "group:sex"])
        for i in range(8):
            w.writerow([f"u{i}", 1 + i % 2, "ang" if i % 3 else "sad", "a good day",
                        *([["north", "south", " north ", ""][i % 4]] if accent else []), "FM"[i % 2]])
    return path


def test_a_manifest_reads_every_group_column(tmp_path: Path) -> None:
    corpus = read_manifest(_manifest(tmp_path / "m.csv"))
    assert corpus.group_names() == ("accent", "sex")
    accents = corpus.groups("group:accent")
    assert accents == corpus.groups("accent")
    assert accents == {"u0": "north", "u1": "south", "u2": "north", "u4": "north", "u5": "south", "u6": "north"}
    assert corpus.by_id("u3").groups == {"sex": "M"}  # an empty value: in no group of that grouping
    plain = read_manifest(_manifest(tmp_path / "plain.csv", accent=False))
    assert corpus.fingerprint == _without_groups(corpus).fingerprint
    assert plain.group_names() == ("sex",)


def test_a_bad_group_column_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "u0", "session": 1, "label": "ang", "text": "hi", "group:accent": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl:1: 'group:accent' is a list \(\[\"a\"\]\), not one value"):
        read_manifest(path)
    path = tmp_path / "m.csv"
    path.write_text("id,session,label,text,group:\nu0,1,ang,hi,x\n")
    with pytest.raises(DataError, match=r"m.csv:2: column 'group:' names no grouping; write group:NAME"):
        read_manifest(path)


def test_an_unknown_grouping_names_the_corpus_groupings(tmp_path: Path) -> None:
    corpus = read_iemocap(fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts()))
    with pytest.raises(DataError) as e:
        corpus.groups("accent")
    assert str(e.value).endswith("no utterance has a group in 'accent'; its groupings are sex")
    assert parse_group_names(["sex", "group:accent, sex", ""]) == ("sex", "accent")


def test_emobox_groups_are_its_speakers(tmp_path: Path) -> None:
    corpus = read_emobox(fake_emobox.build(tmp_path / "EmoBox"))
    assert corpus.group_names() == ("speaker",)
    assert corpus.groups("speaker") == {u.id: u.speaker for u in corpus}
    assert set(corpus.groups("speaker").values()) == {"A", "B", "C"}


# ------------------------------------------------------------------------------------------------
# the statistics, against a direct computation
# ------------------------------------------------------------------------------------------------


def _synthetic(seed: int = 0) -> tuple[Predictions, dict[str, str]]:
    """2 sessions x 30 utterances (groups F, M, X alternating, X only in session 2), 2 seeds, models text and
    audio, conditions clean, adj and pitch; the M group is right less often."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("fold", "session", "seed", "model", "condition", "utt_id", "label",
                                              "pred", "affected")}
    groups = {}
    for fold, session in enumerate(("1", "2")):
        for i in range(30):
            utt = f"s{session}_{i:02d}"
            groups[utt] = "FM"[i % 2] if session == "1" else "FMX"[i % 3]
            label = int(rng.integers(0, 3))
            for s in (0, 1):
                for model in ("text", "audio"):
                    for cond in ("clean", "adj", "pitch"):
                        p_right = {"clean": 0.8, "adj": 0.6, "pitch": 0.7}[cond] - (0.2 if groups[utt] == "M" else 0)
                        right = rng.random() < p_right
                        rows["fold"].append(fold)
                        rows["session"].append(session)
                        rows["seed"].append(s)
                        rows["model"].append(model)
                        rows["condition"].append(cond)
                        rows["utt_id"].append(utt)
                        rows["label"].append(label)
                        rows["pred"].append(label if right else (label + 1) % 3)
                        rows["affected"].append(cond != "clean")
    n = len(rows["fold"])
    probs = np.full((n, 3), 1 / 3, np.float32)
    return Predictions(**{k: np.array(v) for k, v in rows.items()}, probs=probs, labels=("a", "b", "c")), groups


def _by_hand(preds: Predictions, groups: dict[str, str], group: str, model: str, cond: str, seed: int) -> float:
    """Avg. accuracy of one group: the mean over sessions of the accuracy on its utterances there."""
    accs = []
    for session in sorted(set(preds.session.tolist())):
        rows = [i for i in range(len(preds)) if preds.model[i] == model and preds.condition[i] == cond
                and preds.seed[i] == seed and preds.session[i] == session and groups.get(preds.utt_id[i]) == group]
        if rows:
            accs.append(np.mean([preds.pred[i] == preds.label[i] for i in rows]))
    return float(np.mean(accs))


def test_group_numbers_are_the_direct_computation() -> None:
    preds, groups = _synthetic()
    analysis = Analysis(preds)
    tables = group_tables(analysis, groups, grouping="sex", n_resamples=200, seed=3)
    assert [t.model for t in tables] == ["text", "audio"]
    for t in tables:
        assert t.attacks == ("adj", "pitch")
        assert [r.group for r in t.rows] == ["F", "M", "X"]
        for r in t.rows:
            assert r.n == sum(g == r.group for g in groups.values())
            for s in (0, 1):
                clean = _by_hand(preds, groups, r.group, t.model, "clean", s)
                assert r.accuracy.stat.values[s] == pytest.approx(clean)
                for a in t.attacks:
                    att = _by_hand(preds, groups, r.group, t.model, a, s)
                    assert r.impacts[a].stat.values[s] == pytest.approx((att - clean) / clean * 100)
            # the interval is the impact_ci of an analysis of the group's rows, resampled with the group's seed
            part = Analysis(preds.take(np.array([groups[u] == r.group for u in preds.utt_id])))
            ci = part.impact_ci(t.model, "adj", n_resamples=200, seed=group_seed(3, "sex", r.group))
            assert r.impacts["adj"].ci == ci
            assert r.accuracy.ci is not None and r.accuracy.ci.low <= r.accuracy.stat.mean <= r.accuracy.ci.high
        # the gap: highest minus lowest group, per seed; its interval from the two groups' resamples
        for cond in ("clean", *t.attacks):
            cells = {r.group: r.accuracy if cond == "clean" else r.impacts[cond] for r in t.rows}
            gap = t.gaps[cond]
            assert gap.high == max(cells, key=lambda g: cells[g].stat.mean)
            assert gap.low == min(cells, key=lambda g: cells[g].stat.mean)
            for k in range(2):
                assert gap.gap.stat.values[k] == pytest.approx(cells[gap.high].stat.values[k]
                                                               - cells[gap.low].stat.values[k])
        assert t.gaps["clean"].low == "M"  # the group the synthetic model gets wrong more often
        hi, lo = t.gaps["adj"].high, t.gaps["adj"].low
        reps = [Analysis(preds.take(np.array([groups[u] == g for u in preds.utt_id]))).replicates(
            [(t.model, "clean"), (t.model, "adj")], impact_statistic, n_resamples=200, seed=group_seed(3, "sex", g))
            for g in (hi, lo)]
        expected = percentile_interval(dataclasses.replace(reps[0], estimate=reps[0].estimate - reps[1].estimate,
                                                           values=reps[0].values - reps[1].values), confidence=0.95)
        got = t.gaps["adj"].gap.ci
        assert got is not None and (got.low, got.high, got.estimate) == pytest.approx(
            (expected.low, expected.high, expected.estimate))


def test_without_resamples_there_are_no_intervals_and_the_records_name_the_gap() -> None:
    preds, groups = _synthetic()
    tables = group_tables(Analysis(preds), groups, grouping="sex", n_resamples=0)
    assert all(r.accuracy.ci is None and all(c.ci is None for c in r.impacts.values()) for t in tables for r in t.rows)
    records = group_records(tables)
    gap_rows = [r for r in records if r["group"] == GAP]
    assert len(gap_rows) == 2 * 3  # two models x (clean, adj, pitch)
    clean_gap = next(r for r in gap_rows if r["model"] == "text" and r["condition"] == "clean")
    t = tables[0]
    assert (clean_gap["gap_high"], clean_gap["gap_low"]) == (t.gaps["clean"].high, "M")
    assert clean_gap["accuracy_mean"] == pytest.approx(t.gaps["clean"].gap.stat.mean)
    # utterances without a group are left out
    assert group_tables(Analysis(preds), {u: g for u, g in groups.items() if g != "X"}, grouping="sex",
                        n_resamples=0)[0].rows[-1].group == "M"


def test_the_report_has_a_groups_section(tmp_path: Path) -> None:
    preds, groups = _synthetic()
    section = GroupSection({"sex": groups})
    paths = write_report(preds, tmp_path / "r", n_resamples=50, plots=False, groups=section)
    tables_md = paths.tables_md.read_text()
    assert "## Groups" in tables_md and "### By sex" in tables_md
    assert format_group_table(paths.group_tables[0]) in tables_md
    assert "## Groups" in paths.summary_md.read_text()
    html = paths.html.read_text()
    assert '<section id="groups" class="part details"><h2>Groups</h2>' in html and '<a href="#groups">Groups</a>' in html
    with paths.summary_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["group"] for r in rows if r["grouping"] == "sex"} == {"F", "M", "X", GAP}
    assert read_group_section(paths.groups) == section
    # without groups: the earlier groups.json goes, summary.csv has no group column
    again = write_report(preds, tmp_path / "r", n_resamples=0, plots=False, html=False)
    assert again.groups is None and not (tmp_path / "r" / "groups.json").exists()
    assert "grouping" not in again.summary_csv.read_text().splitlines()[0].split(",")
    assert "Groups" not in again.tables_md.read_text()


# ------------------------------------------------------------------------------------------------
# a tiny study: featcache evaluate --by sex
# ------------------------------------------------------------------------------------------------

DIM = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A fake IEMOCAP tree with audio, tiny BERT and wav2vec 2.0, synthetic clean, adj and pitch vectors in the
    store and the text, audio and multimodal heads trained on them (seconds)."""
    from featcache.extract import EncoderRun, plan_entry
    from featcache.options import StudyOptions
    from featcache.study import Study, train_heads
    from tiny_models import tiny_bert, tiny_wav2vec2

    d = tmp_path_factory.mktemp("groups")
    root = fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.05)
    corpus = read_iemocap(root)
    opts = StudyOptions(corpus=corpus.name, cache_dir=str(d / "cache"), text_backbone=str(tiny_bert(d / "bert")),
                        audio_backbone=str(tiny_wav2vec2(d / "w2v")), frozen=True, seeds=(0,), head_epochs=3)
    study = Study.open(opts, corpus=corpus)
    rng = np.random.default_rng(0)
    ids = [u.id for u in corpus]
    labels = np.array([corpus.label_index(u.label) for u in corpus])
    for modality, variants in {"text": ("clean", "adj"), "audio": ("clean", "pitch")}.items():
        run = EncoderRun(modality, study.preset.backbone(modality), study.encoder_options)
        for variant in variants:
            planned = plan_entry(corpus, study.store, run=run, variant=variant, fold=None, seed=0)
            assert planned is not None
            vec = rng.standard_normal((len(ids), DIM)).astype(np.float32) + labels[:, None] * (variant == "clean")
            records = [None if variant == "clean" else {"n_steps": 1.0} if variant == "pitch" else {"edits": []}
                       for _ in ids]
            with study.store.writer(planned.key, ids=ids) as w:
                w.add(ids, vec, labels=labels, records=records)
    train_heads(study, models=["text", "audio", "multimodal"], progress=False)
    args = ["--corpus", corpus.name, "--cache-dir", opts.cache_dir, "--text-backbone", opts.text_backbone,
            "--audio-backbone", opts.audio_backbone, "--frozen", "--seeds", "0", "--head-epochs", "3",
            "--condition", "clean", "--condition", "adj", "--condition", "pitch"]
    return {"corpus": corpus, "args": args, "dir": d}


def _printed_tables(output: str) -> dict[str, list[list[str]]]:
    """``model -> rows of cells`` of the tables ``evaluate --by sex`` printed."""
    out: dict[str, list[list[str]]] = {}
    model = None
    for line in output.splitlines():
        m = re.match(r"^(\S+) by sex: \d+ groups? \(.*\):$", line)
        if m:
            model = m[1]
            out[model] = []
        elif model and line.startswith("| ") and not line.startswith("| sex "):
            out[model].append([c.strip() for c in line.strip("|").split("|")])
        elif model and not line.startswith("|"):
            model = None
    return out


def test_evaluate_by_sex_prints_the_group_tables_and_the_report_has_them(tiny: dict) -> None:
    out = tiny["dir"] / "report"
    r = CliRunner().invoke(cli, ["evaluate", *tiny["args"], "--by", "sex", "--out", str(out)])
    assert r.exit_code == 0, r.output
    printed = _printed_tables(r.stdout)
    assert set(printed) == {"text", "audio", "multimodal"}
    preds = Predictions.load(out / "predictions.h5")
    sexes = tiny["corpus"].groups("sex")
    for model, rows in printed.items():
        assert [row[0] for row in rows] == ["F", "M", "Largest gap"]
        by_hand = {g: _by_hand(preds, sexes, g, model, "clean", 0) for g in ("F", "M")}
        for row in rows[:2]:
            assert int(row[1]) == sum(v == row[0] for v in sexes.values())  # every test utterance once (LOSO)
            assert row[2].startswith(f"{by_hand[row[0]] * 100:.2f} [")
        hi, lo = sorted(by_hand, key=by_hand.get, reverse=True)
        gap = by_hand[hi] - by_hand[lo]
        assert rows[2][2].startswith(f"{'+' if gap > 0.00005 else ''}{gap * 100:.2f} ({hi} − {lo}) [")
        attack = "adj" if model != "audio" else "pitch"
        assert len(rows[0]) == 3 + (2 if model == "multimodal" else 1)
        imp = {g: (_by_hand(preds, sexes, g, model, attack, 0) - by_hand[g]) / by_hand[g] * 100 for g in by_hand}
        for row in rows[:2]:  # the first attack column: adj (text, multimodal) or pitch (audio)
            assert row[3].startswith(f"{imp[row[0]]:+.2f}%".replace("+0.00", "0.00")), (row, imp)
    # the report: tables.md, summary.md, report.html, summary.csv, groups.json
    assert "## Groups" in (out / "tables.md").read_text()
    assert "## Groups" in (out / "summary.md").read_text()
    assert '<section id="groups" class="part details">' in (out / "report.html").read_text()
    with (out / "summary.csv").open() as f:
        rows_csv = [row for row in csv.DictReader(f) if row["grouping"] == "sex"]
    clean_rows = {(row["model"], row["group"]): row for row in rows_csv if row["condition"] == "clean"}
    for model in ("text", "audio", "multimodal"):
        for g in ("F", "M"):
            assert float(clean_rows[(model, g)]["accuracy_mean"]) == pytest.approx(
                _by_hand(preds, sexes, g, model, "clean", 0))
            assert clean_rows[(model, g)]["group_ci_low"] != ""
        gap_row = clean_rows[(model, GAP)]
        a, b = (float(clean_rows[(model, gap_row[k])]["accuracy_mean"]) for k in ("gap_high", "gap_low"))
        assert float(gap_row["accuracy_mean"]) == pytest.approx(a - b)
    assert set(read_group_section(out / "groups.json").groupings) == {"sex"}
    # featcache report draws the section again from groups.json
    again = tiny["dir"] / "again"
    r = CliRunner().invoke(cli, ["report", "--predictions", str(out / "predictions.h5"), "--out", str(again)])
    assert r.exit_code == 0, r.output
    assert (again / "tables.md").read_text().split("## Groups", 1)[1] == (out / "tables.md").read_text().split(
        "## Groups", 1)[1]


def test_an_unknown_grouping_is_one_line_and_writes_nothing(tiny: dict) -> None:
    out = tiny["dir"] / "unknown"
    line = one_line_error(CliRunner().invoke(cli, ["evaluate", *tiny["args"], "--by", "group:accent", "--out",
                                                   str(out)]))
    assert line == (f"Error: {tiny['corpus'].name}: no utterance has a group in 'accent'; its groupings are "
                    "sex"), line
    assert not out.exists()


def test_run_checks_its_groupings_before_any_work(tiny: dict) -> None:
    """`featcache run --by` takes the same groupings as evaluate, and an unknown one stops it before anything
    is extracted or trained (the store is not even made)."""
    cache = tiny["dir"] / "run-store"
    args = list(tiny["args"][:tiny["args"].index("--condition")])  # the study's options, without conditions
    args[args.index("--cache-dir") + 1] = str(cache)
    line = one_line_error(CliRunner().invoke(cli, ["run", *args, "--by", "accent", "--out", str(tiny["dir"] / "r")]))
    assert line == f"Error: {tiny['corpus'].name}: no utterance has a group in 'accent'; its groupings are sex", line
    assert not cache.exists() and not (tiny["dir"] / "r").exists()
