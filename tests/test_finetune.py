from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fake_iemocap
from featcache.backbones.resolve import resolve_backbone
from featcache.backbones.encoders import load_encoder
from featcache.cache import FeatureStore
from featcache.data import load_audio, read_iemocap
from featcache.finetune import EndToEnd, find_runs, finetune
from featcache.folds import make_fold
from featcache.heads import load_head
from featcache.pipeline import plan_encoder_runs, run_extractions
from featcache.presets import TrainSettings, get_preset, with_overrides
from featcache.study import Study
from tiny_models import tiny_bert, tiny_wav2vec2


def _study(corpus, store, preset, *, frozen: bool) -> Study:  # type: ignore[no-untyped-def]
    return Study(corpus=corpus, store=store, preset=preset, frozen=frozen, seeds=preset.seeds,
                 options=preset.encoder_options())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("ft")
    corpus = read_iemocap(fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.3))
    preset = with_overrides(
        get_preset("demo"),
        text_backbone=str(tiny_bert(d / "bert")),
        audio_backbone=str(tiny_wav2vec2(d / "w2v")),
        text=TrainSettings(batch_size=8, lr=1e-3, max_epochs=2, patience=2),
        multimodal=TrainSettings(batch_size=8, lr=1e-3, max_epochs=2, patience=2),
    )
    store = FeatureStore(d / "cache")
    runs = {m: finetune(corpus, store, preset=preset, modality=m, fold=2, seed=0, progress=False)
            for m in ("text", "multimodal")}
    return corpus, preset, store, runs


def test_runs_are_safetensors_and_json_and_rerun_is_free(setup) -> None:  # type: ignore[no-untyped-def]
    corpus, preset, store, runs = setup
    for run in runs.values():
        files = {p.name for p in run.path.rglob("*") if p.is_file()}
        assert {"config.json", "result.json", "best.safetensors", "train_log.jsonl"} <= files
        assert not [f for f in files if f.endswith((".pt", ".pth", ".bin", ".pkl", ".pickle"))]
        assert 1 <= run.result["best_epoch"] <= 2
    stamp = {p: p.stat().st_mtime_ns for p in runs["text"].path.rglob("*")}
    again = finetune(corpus, store, preset=preset, modality="text", fold=2, seed=0, progress=False)
    assert again.path == runs["text"].path
    assert {p: p.stat().st_mtime_ns for p in runs["text"].path.rglob("*")} == stamp
    assert [r.run_id for r in find_runs(store, corpus=corpus, fold=2)] == sorted(r.run_id for r in runs.values())
    assert find_runs(store, corpus=corpus, fold=3) == []


def test_finetuned_entries_per_fold_differ_from_frozen(setup) -> None:  # type: ignore[no-untyped-def]
    corpus, preset, store, runs = setup
    tuned, frozen = _study(corpus, store, preset, frozen=False), _study(corpus, store, preset, frozen=True)
    ft = run_extractions(tuned, plan_encoder_runs(tuned, folds=[2], modality="text"), variants=["clean"],
                         progress=False)
    fr = run_extractions(frozen, plan_encoder_runs(frozen, modality="text"), variants=["clean"], progress=False)
    assert {r.key.fold for r in ft} == {2} and {r.key.fold for r in fr} == {None}
    f = make_fold(corpus, 2)
    with store.open(ft[0].key) as e, store.open(fr[0].key) as g:
        assert sorted(e.ids) == sorted(f.split("all"))
        a, b = e.vectors(f.test), g.vectors(f.test)
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-4)  # fine-tuning changed the encoder


@pytest.mark.parametrize("modality", ["text", "multimodal"])
def test_stored_head_matches_end_to_end_model(setup, modality: str) -> None:  # type: ignore[no-untyped-def]
    corpus, preset, store, runs = setup
    run = runs[modality]
    tuned = _study(corpus, store, preset, frozen=False)
    plans = [p for p in plan_encoder_runs(tuned, folds=[2]) if p.run.tag == run.run_id]
    reports = {r.key.run.split("-")[0]: r for r in run_extractions(tuned, plans, variants=["clean"], progress=False)}
    test_ids = list(make_fold(corpus, 2).test)
    head = load_head(run.head_dir)
    with torch.no_grad():
        vecs = []
        for m in run.modalities:
            with store.open(reports[m].key) as e:
                vecs.append(torch.from_numpy(e.vectors(test_ids)))
        from_store = torch.softmax(head(*vecs), -1).numpy()
    # the end-to-end model: fine-tuned encoders + the same head, fed the raw inputs
    encoders = {}
    for m in run.modalities:
        resolved = resolve_backbone(preset.backbone(m), models_dir=store.models_dir)
        encoders[m] = load_encoder(resolved, options=run.encoder_options(), weights=run.encoder_weights(m))
    model = EndToEnd(encoders, head).eval()
    probs = []
    with torch.no_grad():
        for uid in test_ids:
            u = corpus.by_id(uid)
            inputs = {}
            if "text" in encoders:
                inputs["text"] = encoders["text"].collate([encoders["text"].prepare(u.text)])
            if "audio" in encoders:
                inputs["audio"] = encoders["audio"].collate([encoders["audio"].prepare(load_audio(u.audio))])
            probs.append(torch.softmax(model(inputs), -1)[0].numpy())
    e2e = np.stack(probs)
    np.testing.assert_allclose(from_store, e2e, atol=1e-5)
    assert (from_store.argmax(1) == e2e.argmax(1)).all()
