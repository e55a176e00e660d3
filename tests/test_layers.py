"""Layer-wise vectors: every hidden state of a backbone pooled per utterance and stored as one
``[utterances, layers, dim]`` dataset, for text and speech, frozen and fine-tuned, float32 or float16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.backbones.encoders import EncoderOptions, load_encoder, select_layers
from featcache.backbones.layers import parse_layers
from featcache.backbones.resolve import resolve_backbone
from featcache.cache import FeatureStore
from featcache.cli import cli
from featcache.data import load_audio, read_iemocap
from featcache.errors import FeatcacheError, StoreError
from featcache.extract import EncoderRun, extract
from tiny_models import tiny_bert, tiny_wav2vec2, tiny_whisper


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("layers")
    corpus = fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=1), audio=True, seconds=0.4)
    return {"dir": d, "corpus": corpus, "bert": tiny_bert(d / "bert"), "w2v": tiny_wav2vec2(d / "w2v"),
            "whisper": tiny_whisper(d / "whisper")}


def test_layer_lists_have_one_spelling() -> None:
    assert parse_layers(" all ") == "all" and parse_layers(None) is None
    assert parse_layers("12,0-2,2") == "0,1,2,12" and parse_layers("3") == "3"
    for bad in ("", "x", "3-1", "-1", "1,,2"):
        with pytest.raises(FeatcacheError, match="0,6,12 or 0-12"):
            parse_layers(bad)


@pytest.mark.parametrize("modality,model", [("text", "bert"), ("audio", "w2v"), ("audio", "whisper")])
def test_every_hidden_state_pooled_and_the_last_equals_a_last_layer_entry(env: dict[str, Path], modality: str,
                                                                           model: str, tmp_path: Path) -> None:
    corpus = read_iemocap(env["corpus"])
    store = FeatureStore(tmp_path / "cache")
    last = extract(corpus, store, run=EncoderRun(modality, str(env[model])), variant="clean", progress=False)
    every = extract(corpus, store, run=EncoderRun(modality, str(env[model]), layers="all"), variant="clean",
                    progress=False)
    assert every.key != last.key and every.key.identity["layers"] == "all" and "layers" not in last.key.identity
    with store.open(last.key) as e_last, store.open(every.key) as e_all:
        assert e_all.layers == (0, 1, 2) and e_last.layers is None and e_all.ids == e_last.ids
        full = e_all.vectors()
        assert full.shape == (len(corpus), 3, e_last.dim) and full.dtype == np.float32
        # the last hidden state is, bit for bit, what a last-layer entry holds
        assert np.array_equal(e_all.vectors(layer=2), e_last.vectors())
        assert not np.allclose(e_all.vectors(layer=0), e_last.vectors())
        ids = e_all.ids[:3]
        assert np.array_equal(e_all.vectors(ids, layer=1), full[[0, 1, 2], 1])
        with pytest.raises(StoreError, match="not layer 3"):
            e_all.vectors(layer=3)
        with pytest.raises(StoreError, match="holds one vector per utterance"):
            e_last.vectors(layer=0)
        layer0 = e_all.vectors([ids[0]], layer=0)[0]
    # hidden state 0 is the model's own hidden_states[0], pooled like the last layer
    enc = load_encoder(resolve_backbone(str(env[model])), options=EncoderOptions(pooling="cls"))
    select_layers(enc, "0")
    utt = corpus.by_id(ids[0])
    item = enc.prepare(utt.text if modality == "text" else load_audio(utt.audio))
    with torch.inference_mode():
        mine = enc(**enc.collate([item]))[0, 0].numpy()
    np.testing.assert_allclose(mine, layer0, rtol=0, atol=1e-6)


def test_float16_layer_wise_entries_hold_the_float32_vectors_rounded(env: dict[str, Path], tmp_path: Path) -> None:
    corpus = read_iemocap(env["corpus"])
    store = FeatureStore(tmp_path / "cache")
    run32 = EncoderRun("text", str(env["bert"]), layers="0,2")
    run16 = EncoderRun("text", str(env["bert"]), layers="0,2", store_dtype="float16")
    r32 = extract(corpus, store, run=run32, variant="clean", progress=False)
    r16 = extract(corpus, store, run=run16, variant="clean", progress=False)
    assert r16.key != r32.key and r16.key.identity["store_dtype"] == "float16"
    with store.open(r32.key) as e32, store.open(r16.key) as e16:
        assert e16.layers == e32.layers == (0, 2)
        assert np.array_equal(e16.vectors(), e32.vectors().astype(np.float16).astype(np.float32))
    assert r16.path.stat().st_size < r32.path.stat().st_size
    (info16,) = [i for i in store.verify() if i.path == r16.path]
    assert info16.status == "complete" and info16.layers == 2 and info16.dim == 32


def test_extract_layers_on_the_command_line_and_in_cache_ls(env: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["extract", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(cache), "--modality", "audio",
            "--audio-backbone", str(env["w2v"]), "--workers", "0", "--device", "cpu"]
    r = CliRunner().invoke(cli, [*args, "--layers", "all", "--store-dtype", "float16", "--variant", "clean"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(cache), "-l"])
    assert r.exit_code == 0 and " 3x32 " in r.output, r.output  # hidden states x dim
    assert "layers = [0, 1, 2]" in r.output and '"layers": "all"' in r.output, r.output
    assert '"store_dtype": "float16"' in r.output, r.output
    line = one_line_error(CliRunner().invoke(cli, [*args, "--layers", "0,7", "--variant", "clean"]))
    assert "layers (--layers 0,7): the backbone has hidden states 0..2" in line, line
    line = one_line_error(CliRunner().invoke(cli, [*args, "--layers", "top", "--variant", "clean"]))
    assert "layers (--layers 'top'): write all, or hidden-state numbers" in line, line


@pytest.mark.parametrize("modality,audio", [("text", "w2v"), ("audio", "w2v"), ("audio", "whisper")])
def test_fine_tuned_layer_wise_entries(env: dict[str, Path], tmp_path: Path, modality: str, audio: str) -> None:
    """A fine-tuned run's encoder stores every layer too; its last equals the run's last-layer entry."""
    cache = tmp_path / "cache"
    common = ["--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(cache), "--text-backbone", str(env["bert"]),
              "--audio-backbone", str(env[audio])]
    r = CliRunner().invoke(cli, ["finetune", *common, "--modality", modality, "--fold", "1", "--seed", "0",
                                 "--max-epochs", "1", "--batch-size", "8", "--workers", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    extract_args = ["extract", *common, "--finetuned", "--fold", "1", "--modality", modality, "--finetune-epochs", "1",
                    "--finetune-batch-size", "8", "--variant", "clean", "--workers", "0", "--device", "cpu"]
    for extra in ([], ["--layers", "all"]):
        r = CliRunner().invoke(cli, [*extract_args, *extra])
        assert r.exit_code == 0, r.output
    store = FeatureStore(cache)
    infos = [i for i in store.iter_entries() if i.status == "complete"]
    by_layers = {i.layers: i for i in infos}
    assert set(by_layers) == {0, 3} and all(i.provenance["identity"]["frozen"] is False for i in infos)
    reader = {k: store.backend.open_entry(i.path) for k, i in by_layers.items()}
    try:
        assert np.array_equal(reader[3].rows(np.arange(reader[3].shape[0]))[:, 2],
                              reader[0].rows(np.arange(reader[0].shape[0])))
    finally:
        for r_ in reader.values():
            r_.close()


# ------------------------------------------------------------------------------------------------
# heads on layers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layered(env: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with the clean text and audio entries of the tiny BERT and wav2vec2, as last-layer entries
    and as every layer."""
    cache = tmp_path_factory.mktemp("layered") / "cache"
    base = ["extract", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(cache), "--text-backbone",
            str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--frozen", "--variant", "clean", "--workers", "0",
            "--device", "cpu"]
    for extra in ([], ["--layers", "all"]):
        r = CliRunner().invoke(cli, [*base, *extra])
        assert r.exit_code == 0, r.output
    return {"cache": cache}


def _study(env: dict[str, Path], layered: dict[str, Path], **options: object):  # type: ignore[no-untyped-def]
    from featcache import api

    return api.open_study(corpus=f"iemocap:{env['corpus']}", cache_dir=layered["cache"], text_backbone=str(env["bert"]),
                          audio_backbone=str(env["w2v"]), frozen=True, seeds=(0,), head_epochs=4, **options)


def test_a_head_on_the_last_stored_layer_predicts_as_a_last_layer_head(env: dict[str, Path],
                                                                        layered: dict[str, Path]) -> None:
    from featcache.study import evaluate, train_heads

    models = ["text", "audio", "multimodal"]
    preds = {}
    for name, options in {"last": {}, "default": {"layers": "all"}, "K=2": {"layers": "all", "layer": 2}}.items():
        study = _study(env, layered, **options)
        train_heads(study, models=models, progress=False)
        preds[name] = evaluate(study, models=models, conditions=["clean"], progress=False)[0]
    keys = {name: _study(env, layered, **o).key for name, o in
            {"last": {}, "K=2": {"layers": "all", "layer": 2}, "K=1": {"layers": "all", "layer": 1}}.items()}
    assert len(set(keys.values())) == 3  # other vectors, other heads
    for name in ("default", "K=2"):
        assert np.array_equal(preds[name].pred, preds["last"].pred) and np.array_equal(preds[name].probs, preds["last"].probs)


def test_weighted_heads_learn_layer_weights_that_are_saved_and_read_back(env: dict[str, Path],
                                                                          layered: dict[str, Path]) -> None:
    from featcache.heads import load_head
    from featcache.heads.layers import LayerWeightedHead
    from featcache.study import evaluate, train_heads

    study = _study(env, layered, layers="all", layer="weighted")
    records = train_heads(study, progress=False)
    assert {r["model"] for r in records} == {"text", "audio", "multimodal", "mdrop", "gated", "late", "score"}
    preds, missing = evaluate(study, conditions=["clean"], progress=False)
    assert missing == [] and len(preds)
    head = study.load_head("multimodal", fold=1, seed=0)
    assert isinstance(head, LayerWeightedHead) and head.modalities == ("text", "audio")
    weights = head.layer_weights()
    assert set(weights) == {"text", "audio"} and all(len(w) == 3 and abs(sum(w) - 1) < 1e-6 for w in weights.values())
    assert max(weights["text"]) - min(weights["text"]) > 1e-4  # learned, not left equal
    saved = load_head(study.heads_dir("multimodal", fold=1, seed=0))
    assert saved.layer_weights() == weights
    late = study.load_head("late", fold=1, seed=0)
    assert isinstance(late.text_head, LayerWeightedHead)  # the fusion of two weighted unimodal heads
    again, _ = evaluate(_study(env, layered, layers="all", layer="weighted"), conditions=["clean"], progress=False)
    assert np.array_equal(again.probs, preds.probs)


def test_layer_options_are_checked_where_they_are_given(env: dict[str, Path], layered: dict[str, Path]) -> None:
    with pytest.raises(FeatcacheError, match=r"layer \(--layer 2\): heads read one layer of layer-wise vectors; store"):
        _study(env, layered, layer=2)
    with pytest.raises(FeatcacheError, match=r"--layers 0,1 does not store it"):
        _study(env, layered, layers="0,1", layer=2)
    with pytest.raises(FeatcacheError, match=r"give a hidden-state number"):
        _study(env, layered, layers="all", layer="top")


# ------------------------------------------------------------------------------------------------
# layer sweeps
# ------------------------------------------------------------------------------------------------


def test_a_layer_sweep_tabulates_each_layer_and_its_last_row_is_the_last_layer_ablation(
        env: dict[str, Path], layered: dict[str, Path]) -> None:
    from featcache import api

    r = CliRunner().invoke(cli, ["extract", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(layered["cache"]),
                                 "--text-backbone", str(env["bert"]), "--modality", "text", "--frozen", "--layers", "all",
                                 "--variant", "no-text", "--workers", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    args = ["ablate", "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(layered["cache"]), "--text-backbone",
            str(env["bert"]), "--audio-backbone", str(env["w2v"]), "--frozen", "--seeds", "0", "--head-epochs", "4",
            "--modalities", "text", "--condition", "no-text", "--resamples", "20", "--layers", "all"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    table = [line for line in r.output.splitlines() if line.startswith("|")]
    assert table[0] == "| Layer | Clean Avg. | UAR | no-text impact |", r.output
    assert [row.split("|")[1].strip() for row in table[2:]] == ["0", "1", "2"]
    assert all("[" in row.split("|")[4] for row in table[2:])  # each impact with its interval
    sweep = api.ablate(_study(env, layered, layers="all"), modalities=("text",), layers="all",
                       conditions=["no-text"], n_resamples=20)
    assert [row.layer for row in sweep.rows] == [0, 1, 2]
    assert len({row.ablation.name for row in sweep.rows}) == 3 and sweep.rows[1].ablation.name.startswith("text-layer1-")
    last = api.ablate(_study(env, layered), modalities=("text",), conditions=["no-text"], n_resamples=0)
    clean = next(row for row in last.rows if row.condition == "clean")
    assert sweep.rows[2].accuracy.values == clean.ablation.values  # the last hidden state is the last layer
    # one layer alone finds the sweep's ablation of that layer: nothing is trained again
    heads = sorted(sweep.rows[1].ablation.folder(_study(env, layered, layers="all")).rglob("model.safetensors"))
    before = [p.stat().st_mtime_ns for p in heads]
    one = api.ablate(_study(env, layered, layers="all", layer=1), modalities=("text",), conditions=["no-text"],
                     n_resamples=0)
    assert one.ablation.name == sweep.rows[1].ablation.name
    assert [p.stat().st_mtime_ns for p in heads] == before
    assert "--layer 1" in one.ablation.command(_study(env, layered, layers="all"))
    vectors = api.vectors(_study(env, layered, layers="all"), modality="text", fold=1, layer=0)
    assert vectors.matrix.shape[1] == 32
    assert api.vectors(_study(env, layered, layers="all"), modality="text", fold=1, layer="weighted").matrix.ndim == 3
