"""Ablations on cached vectors: training on attacks mixes exactly the drawn rows, predictions are the
ablation's heads on the stored vectors, the comparison is the metrics' paired bootstrap, ablations are
kept and listed by name, and every printed command, run as printed, makes what was missing."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

import fake_iemocap
from conftest import one_line_error
from featcache import ablate as ab
from featcache.cache import FeatureStore
from featcache.cli import cli
from featcache.data import read_iemocap
from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, plan_entry
from featcache.heads import load_head
from featcache.metrics import Analysis, Predictions
from featcache.presets import get_preset, with_overrides
from featcache.options import StudyOptions
from featcache.study import MissingEntries, Study
from tiny_models import tiny_bert, tiny_wav2vec2

DIM = 16
VARIANTS = {"text": ("clean", "adj"), "audio": ("clean", "pitch")}
CONDITIONS = ["clean", "adj", "pitch", "pitch+adj"]
SPEC = ab.AblationSpec(train_on=("pitch", "adj"), mix=0.5)


def write_entries(st: Study, variants: dict[str, tuple[str, ...]], *, seed: int = 0) -> None:
    """Random vectors (shifted by the label) written straight into the store, as extraction would."""
    rng = np.random.default_rng(seed)
    ids = [u.id for u in st.corpus]
    labels = np.array([st.corpus.label_index(u.label) for u in st.corpus])
    for modality, names in variants.items():
        run = EncoderRun(modality, st.preset.backbone(modality), st.encoder_options)
        for variant in names:
            planned = plan_entry(st.corpus, st.store, run=run, variant=variant, fold=None, seed=0)
            assert planned is not None
            vec = rng.standard_normal((len(ids), DIM)).astype(np.float32) + labels[:, None]
            edit = {"start": 0, "end": 1, "original": "x", "text": None}
            records = [None if variant == "clean" else {"n_steps": 1.0} if modality == "audio"
                       else {"edits": [edit] if i % 3 else []} for i in range(len(ids))]
            with st.store.writer(planned.key, ids=ids) as w:
                w.add(ids, vec, labels=labels, records=records)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    d = tmp_path_factory.mktemp("ablate")
    corpus = read_iemocap(fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.05))
    preset = with_overrides(get_preset("demo"), text_backbone=str(tiny_bert(d / "bert")),
                            audio_backbone=str(tiny_wav2vec2(d / "w2v")), seeds=(0, 1))
    st = Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(d / "cache"), text_backbone=preset.text_backbone,
                                 audio_backbone=preset.audio_backbone, frozen=True, seeds=(0, 1), head_epochs=3),
                    corpus=corpus)
    write_entries(st, VARIANTS)
    return st


def _stored(st: Study, modality: str, variant: str, ids: list[str]) -> np.ndarray:
    run = EncoderRun(modality, st.preset.backbone(modality), st.encoder_options)
    planned = plan_entry(st.corpus, st.store, run=run, variant=variant, fold=None, seed=0)
    assert planned is not None
    with st.store.open(planned.key) as entry:
        return entry.vectors(ids)


def test_mix_draws_depend_only_on_seed_modality_and_utterance() -> None:
    ids = [f"utt{i}" for i in range(2000)]
    u, pick = ab.mix_draws(seed=0, modality="text", ids=ids, n_variants=3)
    u_rev, pick_rev = ab.mix_draws(seed=0, modality="text", ids=ids[::-1], n_variants=3)
    assert np.array_equal(u, u_rev[::-1]) and np.array_equal(pick, pick_rev[::-1])  # order does not matter
    assert 0.45 < (u < 0.5).mean() < 0.55 and set(pick.tolist()) == {0, 1, 2}
    assert not np.array_equal(u, ab.mix_draws(seed=1, modality="text", ids=ids, n_variants=3)[0])
    assert not np.array_equal(u, ab.mix_draws(seed=0, modality="audio", ids=ids, n_variants=3)[0])


def test_training_on_attacks_replaces_exactly_the_drawn_rows(study: Study) -> None:
    abl = ab.ablation(study, SPEC)
    assert abl.spec.train_on == ("adj", "pitch")  # canonical: sorted, so the order given does not change the name
    ids = list(study.fold(2).train)
    for modality, variant in (("text", "adj"), ("audio", "pitch")):
        x, replaced = ab._training_vectors(study, abl, modality, fold=2, seed=1, ids=ids)
        u, _ = ab.mix_draws(seed=1, modality=modality, ids=ids, n_variants=1)
        drawn = u < 0.5
        assert replaced == drawn.sum() and 0 < replaced < len(ids)
        np.testing.assert_array_equal(x[drawn], _stored(study, modality, variant, [i for i, d in zip(ids, drawn) if d]))
        np.testing.assert_array_equal(x[~drawn], _stored(study, modality, "clean", [i for i, d in zip(ids, drawn) if not d]))
    study.close()
    _, records = ab.train_ablation(study, SPEC, progress=False)
    assert len(records) == len(study.folds) * 2
    rec = next(r for r in records if r["fold"] == 2 and r["seed"] == 1)
    u_text, _ = ab.mix_draws(seed=1, modality="text", ids=ids, n_variants=1)
    assert rec["n_replaced"]["text"] == (u_text < 0.5).sum() and rec["n_train"] == len(ids)


def test_ablation_predictions_are_its_heads_on_the_stored_vectors(study: Study) -> None:
    abl, _ = ab.train_ablation(study, SPEC, progress=False)
    preds, missing = ab.evaluate_ablation(study, abl, conditions=CONDITIONS, progress=False)
    assert missing == [] and set(preds.unique("model")) == {abl.model}
    assert set(preds.unique("condition")) == set(CONDITIONS)
    head = load_head(abl.head_dir(study, fold=3, seed=0))
    rows = preds.select(fold=3, seed=0, condition="pitch+adj")
    ids = rows.utt_id.tolist()
    with torch.no_grad():
        expected = torch.softmax(head(torch.from_numpy(_stored(study, "text", "adj", ids)),
                                      torch.from_numpy(_stored(study, "audio", "pitch", ids))), -1).numpy()
    np.testing.assert_allclose(rows.probs, expected, rtol=0, atol=1e-6)
    adj = preds.select(fold=3, seed=0, condition="adj").affected  # every third record has no edits
    assert adj.any() and not adj.all() and rows.affected.all()  # pitch changes every utterance


def test_text_pooling_is_an_ablation_axis_read_from_its_own_entries(study: Study) -> None:
    spec = ab.AblationSpec(modalities=("text",), pooling="mean")
    abl = ab.ablation(study, spec)
    assert study.encoder_options.pooling == "cls" and abl.name != ab.ablation(study, ab.AblationSpec(modalities=("text",))).name
    assert "text vectors pooled by mean" in abl.spec.describe(study.head_settings)
    assert abl.spec.cli_flags()[-2:] == ["--text-pooling", "mean"]
    vs = abl.vector_study(study)
    with pytest.raises(MissingEntries) as e:  # the mean-pooled entries are not stored yet: their command
        ab.train_ablation(study, abl, progress=False)
    assert "--pooling mean" in str(e.value) and "--variant clean" in str(e.value)
    write_entries(vs, {"text": ("clean", "adj")}, seed=7)  # other vectors than the study's cls ones
    ab.train_ablation(study, abl, progress=False)
    assert (abl.head_dir(study, fold=2, seed=1) / "config.json").is_file()  # kept with the study's ablations
    assert abl.name in [i.ablation.name for i in ab.list_ablations(study)]
    preds, missing = ab.evaluate_ablation(study, abl, conditions=["clean", "adj"], progress=False)
    assert missing == []
    rows = preds.select(fold=2, seed=1, condition="adj")
    ids = rows.utt_id.tolist()
    head = load_head(abl.head_dir(study, fold=2, seed=1))
    with torch.no_grad():
        mean = torch.softmax(head(torch.from_numpy(_stored(vs, "text", "adj", ids))), -1).numpy()
        cls = torch.softmax(head(torch.from_numpy(_stored(study, "text", "adj", ids))), -1).numpy()
    np.testing.assert_allclose(rows.probs, mean, rtol=0, atol=1e-6)
    assert not np.allclose(rows.probs, cls, atol=1e-3)
    with pytest.raises(FeatcacheError, match="frozen backbones"):
        abl.vector_study(study.replace(frozen=False))


@pytest.mark.parametrize("spec", [ab.AblationSpec(modality_dropout=0.3, label="together"),
                                  ab.AblationSpec(fusion="score", label="together")])
def test_ablation_heads_trained_together_equal_the_one_at_a_time_trainer(study: Study, spec: ab.AblationSpec) -> None:
    from featcache.heads import build_head
    from featcache.train import class_weights, fit, step_pair, step_single, tensor_loader

    abl, _ = ab.train_ablation(study, spec, progress=False)  # every fold x seed in one batched ensemble
    fold, seed = 4, 1
    job = ab._job(study, abl, vs=study, fold=fold, seed=seed)
    st, n = abl.spec.settings(study.head_settings), len(study.corpus.labels)
    dims = {"text_dim": DIM, "audio_dim": DIM}

    def alone(head: torch.nn.Module, mods: tuple[str, ...]) -> torch.nn.Module:
        fit(head, train_loader=tensor_loader(*(job.x_tr[m] for m in mods), job.y_tr, batch_size=st.batch_size,
                                             shuffle=True, seed=seed),
            dev_loader=tensor_loader(*(job.x_dev[m] for m in mods), job.y_dev, batch_size=256),
            step=step_single if len(mods) == 1 else step_pair, n_classes=n, class_weights=class_weights(job.y_tr, n),
            lr=st.lr, max_epochs=st.max_epochs, patience=st.patience, seed=seed, weight_decay=st.weight_decay,
            run_dir=None, progress=False)
        return head

    drop = abl.spec.dropouts()
    if spec.fusion == "score":
        parts = {}
        for m in ("text", "audio"):
            torch.manual_seed(seed)
            parts[m] = alone(build_head(m, **dims, n_classes=n, hidden=abl.spec.hidden, dropout=drop[m]), (m,))
        torch.manual_seed(seed)
        expected = alone(build_head("score", **dims, n_classes=n, text_head=parts["text"], audio_head=parts["audio"]),
                         ("text", "audio"))
    else:
        torch.manual_seed(seed)
        expected = alone(build_head("multimodal", **dims, n_classes=n, hidden=abl.spec.hidden,
                                    fusion_hidden=abl.spec.fusion_hidden, text_dropout=drop["text"],
                                    audio_dropout=drop["audio"], modality_dropout=0.3), ("text", "audio"))
    got = load_head(abl.head_dir(study, fold=fold, seed=seed)).state_dict()
    want = expected.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)


def test_the_comparison_is_the_paired_bootstrap_of_the_metrics(study: Study) -> None:
    lines: list[str] = []
    result = ab.run_ablation(study, SPEC, conditions=CONDITIONS, n_resamples=50, echo=lambda m, **_: lines.append(m),
                             progress=False)
    model = result.ablation.model
    assert result.ablation.reference == "multimodal" and result.missing == []
    assert [r.condition for r in result.rows] == CONDITIONS
    an = Analysis(result.predictions)
    assert set(an.models()) == {"text", "audio", "multimodal", model}
    for row in result.rows[1:]:
        expected = an.impact_difference(model, row.condition, unimodal="multimodal", unimodal_condition=row.condition,
                                        n_resamples=50)
        assert row.impact_difference == expected and expected is not None and expected.ci is not None
        assert row.ablation_impact == an.impact(model, row.condition)
    clean = result.rows[0]
    assert clean.impact_difference is None and set(clean.paper) == {"text", "audio", "multimodal"}
    diff = (an.accuracy(model, "clean").mean - an.accuracy("multimodal", "clean").mean) * 100
    assert clean.accuracy_difference.mean == pytest.approx(diff)
    assert clean.accuracy_ci is not None and clean.accuracy_ci.low <= clean.accuracy_ci.high
    assert result.table in lines and "| pitch+adj |" in result.table and "Δ Impact [95% CI]" in result.table
    records = ab.comparison_records(result.rows, model=model, reference="multimodal")
    assert [r["condition"] for r in records] == CONDITIONS and records[1]["impact_diff"] is not None


def test_an_ablation_is_kept_under_its_name_and_not_retrained(study: Study) -> None:
    abl, _ = ab.train_ablation(study, SPEC, progress=False)
    heads = sorted(abl.folder(study).rglob("model.safetensors"))
    before = [p.stat().st_mtime_ns for p in heads]
    assert len(heads) == len(study.folds) * 2
    ab.train_ablation(study, dataclasses.replace(SPEC, train_on=("adj", "pitch")), progress=False)  # same set
    assert [p.stat().st_mtime_ns for p in heads] == before
    assert abl.folder(study) == study.store.ablations_dir(study.key) / abl.name
    assert json.loads((abl.folder(study) / "ablation.json").read_text())["spec"]["train_on"] == ["adj", "pitch"]
    other = ab.ablation(study, dataclasses.replace(SPEC, mix=0.25))
    assert other.name != abl.name and other.name.startswith("concat-")
    assert ab.ablation(study, dataclasses.replace(SPEC, label="adv")).name == "adv-" + abl.name.split("-", 1)[1]
    assert ab.find_ablation(study, abl.name) == abl == ab.find_ablation(study, abl.model)
    listed = {i.ablation.name: i for i in ab.list_ablations(study)}
    assert listed[abl.name].trained == listed[abl.name].expected == len(study.folds) * 2
    with pytest.raises(FeatcacheError, match="not an ablation of this study"):
        ab.find_ablation(study, "nope")


@pytest.mark.parametrize("spec", [
    ab.AblationSpec(fusion="late", train_on=("adj",), mix=1.0),
    ab.AblationSpec(fusion="score", hidden=(8,)),
    ab.AblationSpec(fusion="gated", modality_dropout=0.3, dropout=0.1),
    ab.AblationSpec(modalities=("text",), hidden=(32, 8), train_on=("adj",)),
    ab.AblationSpec(modalities=("audio",), lr=3e-3, epochs=2),
], ids=["late", "score", "gated", "text", "audio"])
def test_every_kind_of_ablation_trains_and_evaluates(study: Study, spec: ab.AblationSpec) -> None:
    study = study.replace(seeds=(0,))  # the same study (same key), one seed: quicker
    abl, records = ab.train_ablation(study, spec, progress=False)
    preds, missing = ab.evaluate_ablation(study, abl, conditions=CONDITIONS, progress=False)
    assert missing == [] and len(records) == len(study.folds)
    expected = {"clean", "adj", "pitch", "pitch+adj"} if len(abl.spec.modalities) == 2 else \
        {"clean", "adj" if abl.spec.modalities == ("text",) else "pitch"}
    assert set(preds.unique("condition")) == expected
    assert abl.reference == ("multimodal" if len(abl.spec.modalities) == 2 else abl.spec.modalities[0])
    if spec.fusion == "late":  # trained on attacked text only: every text vector replaced (mix 1)
        assert all(r["n_replaced"] == {"text": r["n_train"], "audio": 0} for r in records)
        assert (abl.head_dir(study, fold=1, seed=0, part="text") / "config.json").is_file()


@pytest.mark.parametrize(("spec", "message"), [
    (ab.AblationSpec(modalities=("text",), train_on=("pitch",)), "it attacks the audio, but the ablation reads only text"),
    (ab.AblationSpec(fusion="gated", modalities=("audio",)), "--fusion gated needs both modalities"),
    (ab.AblationSpec(hidden=()), "--hidden"),
    (ab.AblationSpec(fusion="late", modality_dropout=0.2), "--modality-dropout needs"),
    (ab.AblationSpec(train_on=("clean",)), "not an attack"),
    (ab.AblationSpec(train_on=("bogus",)), "unknown variant 'bogus'"),
    (ab.AblationSpec(fusion="sum"), "--fusion 'sum'"),
    (ab.AblationSpec(pooling="max"), "--text-pooling 'max'"),
    (ab.AblationSpec(modalities=("audio",), pooling="mean"), "--text-pooling needs an ablation that reads the text"),
])
def test_bad_options_are_one_line_errors(spec: ab.AblationSpec, message: str) -> None:
    with pytest.raises(FeatcacheError) as e:
        spec.checked()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_attacked_vectors_stop_training_before_anything_is_written(study: Study) -> None:
    spec = ab.AblationSpec(train_on=("noise",))
    with pytest.raises(MissingEntries) as e:
        ab.train_ablation(study, spec, progress=False)
    assert "run `featcache extract" in str(e.value) and "--variant noise" in str(e.value)
    assert not ab.ablation(study, spec).folder(study).exists()


def test_variant_lists_split_only_between_variants() -> None:
    assert ab.parse_variant_list("adj, pitch") == ("adj", "pitch")
    assert ab.parse_variant_list("noise:snr_db=10,seed=1,pitch") == ("noise:snr_db=10,seed=1", "pitch")
    assert ab.parse_variant_list("asr-0.2,pitch:steps=-2|2") == ("asr-0.2", "pitch:steps=-2|2")
    assert ab.parse_variant_list("") == ()


# ------------------------------------------------------------------------------------------------
# the command line, on a text-only corpus with a tiny BERT
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ablate-cli")
    manifest = fake_iemocap.text_only_manifest(d / "text-only.csv")
    return {"manifest": manifest, "bert": tiny_bert(d / "bert"), "dir": d}


def _common(env: dict[str, Path], store: str) -> list[str]:
    return ["--corpus", f"manifest:{env['manifest']}", "--cache-dir", str(env["dir"] / store),
            "--text-backbone", str(env["bert"]), "--seeds", "0"]


def _invoke(args: list[str]) -> Result:
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    return r


def _run_as_printed(command: str) -> Result:
    argv = shlex.split(command)
    assert argv[0] == "featcache"
    return _invoke(argv[1:])


def _printed_commands(error_line: str) -> list[str]:
    return error_line.split("`")[1::2]


def test_ablate_names_the_missing_attacked_vectors_and_the_printed_command_makes_them(env: dict[str, Path]) -> None:
    common = _common(env, "frozen store")
    _invoke(["extract", *common[:-2], "--frozen", "--variant", "clean"])
    ablate = ["ablate", *common, "--head-epochs", "2", "--modalities", "text", "--train-on", "no-text", "--mix", "0.5",
              "--resamples", "20", "--condition", "no-text"]
    err = one_line_error(CliRunner().invoke(cli, ablate))
    commands = _printed_commands(err)
    assert len(commands) == 1 and commands[0].startswith("featcache extract") and "--variant no-text" in commands[0]
    assert "--frozen" in commands[0] and "'" in commands[0]  # the study's options, the spaced path quoted
    _run_as_printed(commands[0])
    out = _invoke(ablate).output
    assert "| no-text |" in out and "Δ Impact [95% CI]" in out and "missing:" not in out
    name = out.split("ablation ", 1)[1].split(" ", 1)[0]
    assert name.startswith("text-")
    listed = _invoke(["ablate", *common, "--head-epochs", "2", "--list"]).output
    assert name in listed and "5/5 heads" in listed and "trained on no-text with mix 0.5" in listed
    report = env["dir"] / "report"
    printed = out.strip().splitlines()[-1].split("in a report: ", 1)[1]
    assert printed.startswith("featcache evaluate") and printed.endswith(f"--ablation {name}")
    _run_as_printed(printed + " --head-epochs 2 --condition no-text --out " + shlex.quote(str(report)))
    preds = Predictions.load(report / "predictions.h5")
    assert set(preds.unique("model")) == {"text", f"ablate:{name}"}
    assert f"ablate:{name}" in (report / "tables.md").read_text()
    err = one_line_error(CliRunner().invoke(cli, ["evaluate", *common, "--head-epochs", "2", "--ablation", "nope",
                                                  "--out", str(report)]))
    assert "not an ablation of this study" in err and name in err


def test_finetuned_ablate_asks_for_the_training_split_and_the_printed_command_makes_it(env: dict[str, Path]) -> None:
    common = _common(env, "ft store")
    for k in range(1, 6):
        _invoke(["finetune", *common[:-2], "--modality", "text", "--fold", str(k), "--seed", "0", "--max-epochs", "1"])
    # the study's runs are those fine-tuned with its options (--max-epochs of finetune is --finetune-epochs)
    _invoke(["extract", *common[:-2], "--finetune-epochs", "1", "--finetuned", "--variant", "clean",
             "--variant", "no-text"])  # test split only
    ablate = ["ablate", *common, "--finetuned", "--finetune-epochs", "1", "--head-epochs", "2", "--modalities", "text", "--train-on", "no-text",
              "--resamples", "0", "--condition", "no-text"]
    err = one_line_error(CliRunner().invoke(cli, ablate))
    commands = _printed_commands(err)
    assert commands and all("--split train" in c and "--finetuned --fold all" in c for c in commands), err
    assert "of the training utterances" in err
    for c in commands:
        _run_as_printed(c)
    out = _invoke(ablate).output
    assert "| no-text |" in out


def test_the_printed_ablate_command_gives_the_same_ablation(study: Study) -> None:
    from featcache.cli import ablate_cmd

    spec = ab.AblationSpec(fusion="gated", hidden=(64, 32), dropout=0.15, modality_dropout=0.3, lr=3.3e-4, epochs=7,
                           train_on=("adj", "pitch"), mix=0.35, label="my label")
    abl = ab.ablation(study, spec)
    argv = shlex.split(abl.command(study))
    assert argv[:2] == ["featcache", "ablate"] and "--frozen" in argv
    ctx = ablate_cmd.make_context("ablate", argv[2:] + ["--text-backbone", "x", "--audio-backbone", "y"])
    p = ctx.params
    again = ab.AblationSpec(fusion=p["fusion"], hidden=tuple(int(h) for h in p["hidden"].split(",")),
                            dropout=p["dropout"], modality_dropout=p["modality_dropout"], lr=p["lr"], epochs=p["epochs"],
                            train_on=ab.parse_variant_list(p["train_on"] or ""), mix=p["mix"], label=p["label"])
    assert ab.ablation(study, again) == abl and abl.name.startswith("my_label-")


def test_extract_commands_name_the_split_only_for_finetuned_folds(study: Study) -> None:
    frozen = study.command("extract", modality="text", fold=2, variant="adj", split="train")
    assert "--split" not in frozen and "--frozen" in frozen
    finetuned = study.replace(frozen=False).command("extract", modality="text", fold="all",
                                                                 variant="adj", split="train")
    assert "--finetuned --fold all --split train --variant adj" in finetuned


def test_cache_clean_removes_stray_temporary_files_of_ablations(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    stray = store.ablation_head_dir("k", "concat-12345678", fold=1, seed=0) / ".model.safetensors.tmp-123"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    assert store.ablation_dir("k", "a b/c") == tmp_path / "cache" / "ablations" / "k" / "a_b_c"
    assert stray in store.clean(dry_run=False) and not stray.exists()


def test_a_damaged_or_moved_ablation_head_is_refused_then_trained_again(study: Study, tmp_path: Path) -> None:
    """A flipped bit in an ablation head's weights, or two folds' heads swapped: evaluating the ablation is one
    DamagedError naming the file and the ablate command; training the ablation again replaces exactly those."""
    import shutil

    from featcache.errors import DamagedError

    study = study.replace(seeds=(0,))
    abl, _ = ab.train_ablation(study, SPEC, progress=False)
    reference, _ = ab.evaluate_ablation(study, abl, conditions=["clean"], progress=False)
    copy = study.replace(cache_dir=str(tmp_path / "store"))
    shutil.copytree(study.store.root, copy.store.root)
    weights = abl.head_dir(copy, fold=2, seed=0) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x40  # the top exponent bit of the last weight: the file still loads
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedError) as e:
        ab.evaluate_ablation(copy, abl, conditions=["clean"], progress=False)
    assert f"{weights}: damaged ablation head (checksum mismatch" in str(e.value) and "featcache ablate" in str(e.value)
    one, two = (abl.head_dir(copy, fold=k, seed=0).parent for k in (3, 4))
    one.rename(tmp_path / "parked")
    two.rename(one)
    (tmp_path / "parked").rename(two)
    ab.train_ablation(copy, SPEC, progress=False)  # the flipped head and the two swapped ones
    again, _ = ab.evaluate_ablation(copy, abl, conditions=["clean"], progress=False)
    assert np.array_equal(again.pred, reference.pred) and np.array_equal(again.utt_id, reference.utt_id)
