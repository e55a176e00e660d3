"""One definition of a study's options (:class:`featcache.options.StudyOptions`): every field is a flag of
the commands that take it, a keyword of ``api.open_study``, round-trips through its flags, and changes the
study's key exactly when it names other vectors or heads. Fine-tuned studies find their runs by the runs'
whole identity."""

from __future__ import annotations

import inspect
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import fake_iemocap
from featcache import api
from featcache.cli import cli
from featcache.cli.options import study_options_of
from featcache.errors import FeatcacheError
from featcache.options import COMMAND_FIELDS, COMMAND_FLAGS, StudyOptions, option_fields
from featcache.pipeline import plan_encoder_runs
from featcache.presets import PRESETS
from featcache.study import MissingEntries, Study
from tiny_models import tiny_bert

STUDY_COMMANDS = ("train-heads", "evaluate", "ablate", "run")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("options")
    return {"dir": d, "corpus": fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=2)),
            "other": fake_iemocap.build(d / "J", fake_iemocap.small_counts(per_cell=3)),
            "bert": tiny_bert(d / "bert"), "bert2": tiny_bert(d / "bert2"),
            "manifest": fake_iemocap.text_only_manifest(d / "text-only.csv")}


def _changed(env: dict[str, Path]) -> dict[str, Any]:
    """A value other than the default for every field (a test below checks that none is missing)."""
    return {"corpus": f"iemocap:{env['other']}", "labels": ("ang", "sad", "hap"), "merge": (),
            "text_source": "whisper-base", "cache_dir": "elsewhere",
            "preset": "paper", "text_backbone": str(env["bert2"]), "audio_backbone": "some/speech-model",
            "pooling": "mean", "max_samples": 16000, "pad_to": 32000, "whisper_input": "30s", "layers": "0,2",
            "store_dtype": "float16", "precision": "bf16", "layer": "2", "frozen": False,
            "seeds": (4, 5), "variant_seed": 3, "dev": "session", "dev_fraction": 0.25, "head_batch_size": 64,
            "head_lr": 2e-4, "head_epochs": 7, "head_patience": 3, "finetune_batch_size": 4, "finetune_lr": 3e-5,
            "finetune_epochs": 2, "finetune_patience": 1, "grad_accum": 2, "finetune_precision": "fp32"}


def _base(env: dict[str, Path], **changes: Any) -> StudyOptions:
    return StudyOptions(corpus=f"iemocap:{env['corpus']}", cache_dir=str(env["dir"] / "cache"),
                        text_backbone=str(env["bert"]), **changes)


def test_every_field_has_a_changed_value_and_the_preset_names_match() -> None:
    assert set(_changed({k: Path(k) for k in ("other", "bert2")})) == {f.name for f in fields(StudyOptions)}
    preset = next(f for f in fields(StudyOptions) if f.name == "preset").metadata["flag"]
    assert set(preset.choices) == set(PRESETS)


@pytest.mark.parametrize("command", [*STUDY_COMMANDS, "extract", "finetune"])
def test_every_field_is_a_flag_of_the_commands_that_take_it(command: str) -> None:
    group = cli.commands[command]
    params = {p.name: p for p in group.params}
    wanted = option_fields(None if command in STUDY_COMMANDS else command)
    assert wanted, command
    for f in wanted:
        flag = f.metadata["flag"]
        assert f.name in params, (command, f.name)
        opts = [*params[f.name].opts, *params[f.name].secondary_opts]
        assert COMMAND_FLAGS.get(command, {}).get(f.name, flag.name) in opts, (command, f.name, opts)
        if flag.off:
            assert flag.off in opts
    if command in COMMAND_FIELDS:  # and it takes no study option it should not
        others = {f.name for f in fields(StudyOptions)} - set(COMMAND_FIELDS[command])
        assert not others & set(params), (command, others & set(params))


def test_api_open_study_takes_exactly_the_fields() -> None:
    params = inspect.signature(api.open_study).parameters
    assert list(params) == [f.name for f in fields(StudyOptions)]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())


def test_flags_round_trip_and_the_command_line_reads_them_as_from_flags(env: dict[str, Path]) -> None:
    changed = _changed(env)
    for o in (StudyOptions(corpus="iemocap:x"), StudyOptions(**changed),
              StudyOptions(corpus="iemocap:x", head_lr=1.2345678901e-4, merge=(("exc", "hap"), ("sur", "hap")))):
        assert StudyOptions.from_flags(o.to_flags()) == o
        for command in STUDY_COMMANDS:  # click parses the very flags into the very options
            ctx = cli.commands[command].make_context(command, list(o.to_flags()))
            assert study_options_of(dict(ctx.params)) == o, command
    for command, names in COMMAND_FIELDS.items():
        o = StudyOptions(**{k: v for k, v in changed.items() if k in names})
        flags = o.to_flags(command=command)
        assert StudyOptions.from_flags(flags, command=command) == o
        ctx = cli.commands[command].make_context(command, [*flags, "--modality", "text", "--fold", "1"])
        assert study_options_of(dict(ctx.params), command) == o, command


def test_a_field_changes_the_key_exactly_when_it_names_other_vectors_or_heads(env: dict[str, Path]) -> None:
    changed = _changed(env)

    def expect_of(names: str, frozen: bool) -> bool:
        return names in ("vectors", "heads") or (names == "runs" and not frozen)

    for frozen in (True, False):
        base = _base(env, frozen=frozen)
        key = Study.open(base).key
        for f in fields(StudyOptions):
            names = f.metadata["flag"].names
            if f.name == "frozen":
                value: Any = not frozen
            elif f.name == "text_source":  # a recogniser's text: needs audio and a recogniser (test_transcribe.py)
                continue
            elif f.name == "preset":  # paper's pooling (cls) differs from the demo's auto (the tiny BERT: mean)
                value, names = "paper", "vectors"
            else:
                value = changed[f.name]
            if f.name == "layer":  # a layer of layer-wise vectors: against the same layer-wise study
                key = Study.open(base.replace(layers=changed["layers"])).key
                other = Study.open(base.replace(layers=changed["layers"], layer=value))
                assert (other.key != key) == expect_of(names, frozen), (f.name, frozen, names)
                key = Study.open(base).key
                continue
            other = Study.open(base.replace(**{f.name: value}))
            assert (other.key != key) == expect_of(names, frozen), (f.name, frozen, names)


def test_bad_values_are_refused_in_the_librarys_terms() -> None:
    for bad, words in [({"seeds": (0, 0)}, "each seed once"), ({"pad_to": -1}, r"pad_to \(--pad-to -1\): must be at least 1"),
                       ({"max_samples": 0}, "max_samples .*0"), ({"pooling": "max"}, r"pooling \(--pooling 'max'\) is unknown"),
                       ({"head_batch_size": 0}, "head_batch_size .*0"), ({"dev_fraction": 1.0}, "dev_fraction .*1.0.*below 1"),
                       ({"labels": ("ang", " ")}, "labels"), ({"preset": "nope"}, r"preset \(--preset 'nope'\) is unknown")]:
        with pytest.raises(FeatcacheError, match=words):
            StudyOptions(corpus="iemocap:x", **bad)
    with pytest.raises(FeatcacheError, match="'--nope' is not a study option"):
        StudyOptions.from_flags(["--nope", "1"])


# ------------------------------------------------------------------------------------------------
# fine-tuning runs found by their whole identity
# ------------------------------------------------------------------------------------------------


def _invoke(args: list[str]) -> str:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    return r.output


def test_two_learning_rates_two_runs_each_study_finds_its_own(env: dict[str, Path]) -> None:
    common = ["--corpus", f"manifest:{env['manifest']}", "--cache-dir", str(env["dir"] / "ft"),
              "--text-backbone", str(env["bert"])]
    for lr in ("0.001", "0.002"):
        _invoke(["finetune", *common, "--modality", "text", "--fold", "1", "--seed", "0", "--max-epochs", "1",
                 "--lr", lr])

    def study(lr: float) -> Study:
        return api.open_study(corpus=f"manifest:{env['manifest']}", cache_dir=env["dir"] / "ft",
                              text_backbone=str(env["bert"]), frozen=False, seeds=(0,), finetune_epochs=1,
                              finetune_lr=lr)

    found = {lr: study(lr).finetuned_run("text", fold=1, seed=0) for lr in (1e-3, 2e-3)}
    assert found[1e-3] is not None and found[2e-3] is not None and found[1e-3].run_id != found[2e-3].run_id
    assert {lr: r.config["settings"]["lr"] for lr, r in found.items()} == {1e-3: 1e-3, 2e-3: 2e-3}
    assert study(1e-3).key != study(2e-3).key  # and their fusion heads live apart
    # extraction uses the study's own run only
    plans = plan_encoder_runs(study(2e-3), folds=[1])
    assert [p.run.tag for p in plans] == [found[2e-3].run_id]

    third = study(3e-3)
    assert third.finetuned_run("text", fold=1, seed=0) is None
    with pytest.raises(MissingEntries) as e:
        third.encoder_run("text", fold=1, seed=0, model="text")
    message = str(e.value)
    assert "differ in finetune_lr" in message and "2 run(s)" in message
    printed = message.split("`")[1]
    assert "--lr 0.003" in printed and "--max-epochs 1" in printed and "--fold 1 --seed 0" in printed
    argv = shlex.split(printed)
    assert StudyOptions.from_flags(argv[2:argv.index("--modality")], command="finetune") == StudyOptions(
        corpus=f"manifest:{env['manifest']}", cache_dir=str(env["dir"] / "ft"), text_backbone=str(env["bert"]),
        finetune_lr=3e-3, finetune_epochs=1)
    # the command line says the same and prints the command that makes the missing run
    r = CliRunner().invoke(cli, ["evaluate", *common, "--finetuned", "--seeds", "0", "--finetune-epochs", "1",
                                 "--finetune-lr", "0.003", "--condition", "no-text", "--out", str(env["dir"] / "o")])
    assert r.exit_code == 1
    assert "note: no fine-tuned text run of fold 1, seed 0 has this study's options" in r.output
    assert "differ in finetune_lr" in r.output and "--lr 0.003" in r.output
