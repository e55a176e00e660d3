from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import fake_iemocap
from featcache.cli import cli
from featcache.metrics import Predictions
from tiny_models import tiny_bert, tiny_wav2vec2


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("run")
    return {
        "corpus": fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.3),
        "bert": tiny_bert(d / "bert"),
        "w2v": tiny_wav2vec2(d / "w2v"),
        "dir": d,
    }


def _args(env: dict[str, Path], out: Path) -> list[str]:
    return ["run", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(env["dir"] / "cache"),
            "--text-backbone", str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--seeds", "0,1",
            "--variant", "adj", "--variant", "random-adj", "--variant", "pitch", "--variant", "no-audio",
            "--workers", "0", "--device", "cpu", "--out", str(out)]


def test_run_end_to_end_then_rerun_skips_everything(env: dict[str, Path]) -> None:
    out = env["dir"] / "report"
    r = CliRunner().invoke(cli, _args(env, out))
    assert r.exit_code == 0, r.output
    for name in ("tables.md", "tables.tex", "examples.md", "summary.md", "results.csv", "predictions.h5",
                 "impact_paper.png", "impact_paper.svg", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert r.output.rstrip().endswith(f"open: {out / 'report.html'}")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Audio players are left out" not in page  # run passes the corpus and the store to the report
    for src in re.findall(r'<audio controls preload="metadata" src="([^"]+)"', page):
        assert (out / src).is_file(), src
    preds = Predictions.load(out / "predictions.h5")
    # 5 folds x 2 seeds; every utterance is tested once per (seed, model, condition)
    clean_text = preds.select(model="text", condition="clean")
    assert len(clean_text) == 2 * 65 and set(clean_text.seed.tolist()) == {0, 1}
    assert set(preds.unique("model")) == {"text", "audio", "multimodal", "late", "score", "gated", "mdrop"}
    assert {"clean", "adj", "random-adj", "pitch", "no-audio", "pitch+adj", "pitch+random-adj"} <= set(preds.unique("condition"))
    assert len(preds.select(model="text", condition="pitch")) == 0  # audio attacks do not apply to the text model
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {row["model"] for row in rows} >= {"text", "multimodal"} and "accuracy" in rows[0]
    tables = (out / "tables.md").read_text()
    assert "Table 6" in tables and "Pitch + adj." in tables and "Impact S. Modal" in tables
    # a rerun does only the missing work: here, nothing
    r2 = CliRunner().invoke(cli, _args(env, env["dir"] / "report2"))
    assert r2.exit_code == 0, r2.output
    assert "(0 extracted" in r2.output
    again = Predictions.load(env["dir"] / "report2" / "predictions.h5")
    assert (again.pred == preds.pred).all() and (again.probs == preds.probs).all()


def test_evaluate_reports_missing_entries_with_their_command(env: dict[str, Path]) -> None:
    args = ["evaluate", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(env["dir"] / "cache"),
            "--text-backbone", str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--seeds", "0",
            "--condition", "clean", "--condition", "noun", "--out", str(env["dir"] / "eval")]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "missing: featcache extract" in r.output and "--variant noun" in r.output and "--modality text" in r.output


def test_head_settings_from_the_command_line_train_their_own_heads(env: dict[str, Path]) -> None:
    assert CliRunner().invoke(cli, _args(env, env["dir"] / "report")).exit_code == 0  # the store (skips if done)
    common = ["--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(env["dir"] / "cache"),
              "--text-backbone", str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--seeds", "0"]
    custom = ["--head-batch-size", "16", "--head-epochs", "2"]
    r = CliRunner().invoke(cli, ["train-heads", *common, *custom, "--models", "text"])
    assert r.exit_code == 0, r.output
    assert r.output.count("fold ") == 5 and "dev acc" in r.output
    heads_dir = Path(r.output.strip().splitlines()[-1].split("heads: ")[1])
    results = sorted(heads_dir.glob("fold-*/seed-0/text/result.json"))
    assert len(results) == 5 and all(json.loads(p.read_text())["epochs_run"] <= 2 for p in results)
    heads_root = env["dir"] / "cache" / "heads"
    assert heads_dir.parent == heads_root and len(list(heads_root.iterdir())) >= 2  # beside the default heads
    out = env["dir"] / "custom-eval"
    r = CliRunner().invoke(cli, ["evaluate", *common, *custom, "--condition", "clean", "--condition", "adj",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    preds = Predictions.load(out / "predictions.h5")
    assert set(preds.unique("model")) == {"text"} and len(preds.select(condition="adj")) == 65
    assert "missing: featcache train-heads" in r.output and "--head-batch-size 16 --head-epochs 2" in r.output
