"""One-modality studies and the commands a study prints: only for the modalities the corpus has, with
every option the study was given, and each one, run as printed, makes exactly what was missing."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import fake_iemocap
from featcache.cli import cli
from featcache.metrics import Predictions
from tiny_models import tiny_bert

@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hints")
    manifest = fake_iemocap.text_only_manifest(d / "text-only.csv")
    return {"manifest": manifest, "bert": tiny_bert(d / "bert"), "dir": d}


def _common(env: dict[str, Path]) -> list[str]:
    # a non-default store, backbone and pooling: every printed command must carry them
    return ["--corpus", f"manifest:{env['manifest']}", "--cache-dir", str(env["dir"] / "my store"),
            "--text-backbone", str(env["bert"]), "--pooling", "mean"]


def _invoke(args: list[str]) -> Result:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    return r


def _missing(output: str) -> list[str]:
    return [ln.split("missing: ", 1)[1] for ln in output.splitlines() if ln.startswith("missing: ")]


def _run_as_printed(command: str) -> Result:
    argv = shlex.split(command)
    assert argv[0] == "featcache"
    return _invoke(argv[1:])


def _evaluate(env: dict[str, Path], *extra: str, out: Path) -> Result:
    return CliRunner().invoke(cli, ["evaluate", *_common(env), "--seeds", "0", *extra, "--out", str(out)])


def test_text_only_corpus_lists_only_text_commands_and_each_makes_what_was_missing(env: dict[str, Path]) -> None:
    out = env["dir"] / "eval"
    flags = ["--head-epochs", "2", "--condition", "no-text"]
    r = _evaluate(env, *flags, "--condition", "pitch", out=out)
    assert r.exit_code == 1 and "nothing to evaluate" in r.output
    assert not out.exists()  # refused before anything was written
    assert "skipping 1 condition the corpus cannot apply (it has no audio): pitch" in r.output
    assert "evaluating text" in r.output  # says which models a one-modality corpus allows
    missing = _missing(r.output)
    assert [m.split()[1] for m in missing] == ["extract", "extract", "train-heads"], missing
    assert not any("audio" in m or "multimodal" in m for m in missing), missing
    assert all("--pooling mean" in m and "'" in m for m in missing)  # options kept, the spaced path quoted
    assert "--head-epochs 2" in missing[-1]
    for cmd in missing:  # run exactly as printed, in order
        ran = _run_as_printed(cmd)
    assert "training text" in ran.output and ran.output.count("dev acc") == 5  # the text head of each fold only
    r = _evaluate(env, *flags, out=out)
    assert r.exit_code == 0 and _missing(r.output) == [], r.output
    preds = Predictions.load(out / "predictions.h5")
    assert set(preds.unique("model")) == {"text"}
    assert set(preds.unique("condition")) == {"clean", "no-text"}  # the clean baseline is always evaluated


def test_finetuned_text_only_study_lists_only_text_finetune_commands(env: dict[str, Path]) -> None:
    out = env["dir"] / "ft-eval"
    r = _evaluate(env, "--finetuned", "--condition", "no-text", out=out)
    missing = _missing(r.output)
    assert len(missing) == 5, r.output  # one fine-tuning run per fold, nothing else
    assert all(m.startswith("featcache finetune") and "--modality text" in m and "--pooling mean" in m
               for m in missing), missing
    fold1 = next(m for m in missing if "--fold 1 " in m)
    _run_as_printed(fold1)
    after = _missing(_evaluate(env, "--finetuned", "--condition", "no-text", out=out).output)
    assert fold1 not in after and sum(m.startswith("featcache finetune") for m in after) == 4, after
    assert any(m.startswith("featcache extract") and "--finetuned --fold 1" in m for m in after), after


def test_run_prints_each_stages_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from featcache import pipeline

    ticks = iter([100.0, 130.0, 1486.0, 2404.0])  # start, then the end of three stages
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: next(ticks))
    lap = pipeline.StageClock()
    assert [lap(), lap(), lap()] == ["[30 s]", "[1356 s]", "[918 s]"]
