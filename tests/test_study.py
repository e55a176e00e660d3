"""Evaluation from the store: every prediction equals the head applied to the stored vectors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fake_iemocap
from featcache.data import read_iemocap
from featcache.ensemble import torch_threads
from featcache.extract import EncoderRun, plan_entry
from featcache.heads import load_head
from featcache.presets import get_preset, with_overrides
from featcache.options import StudyOptions
from featcache.study import (
    ALL_MODELS,
    Study,
    _train_one,
    default_conditions,
    evaluate,
    train_heads,
    uses,
)
from tiny_models import tiny_bert, tiny_wav2vec2

DIM = 16
VARIANTS = {"text": ("clean", "adj"), "audio": ("clean", "pitch")}
CONDITIONS = ["clean", "adj", "pitch", "pitch+adj"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    d = tmp_path_factory.mktemp("study")
    corpus = read_iemocap(fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.05))
    preset = with_overrides(get_preset("demo"), text_backbone=str(tiny_bert(d / "bert")),
                            audio_backbone=str(tiny_wav2vec2(d / "w2v")), seeds=(0,))
    st = Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(d / "cache"), text_backbone=preset.text_backbone,
                                 audio_backbone=preset.audio_backbone, frozen=True, seeds=(0,), head_epochs=3),
                    corpus=corpus)
    rng = np.random.default_rng(0)
    ids = [u.id for u in corpus]
    labels = np.array([corpus.label_index(u.label) for u in corpus])
    for modality, variants in VARIANTS.items():
        run = EncoderRun(modality, preset.backbone(modality), st.encoder_options)
        for variant in variants:
            planned = plan_entry(corpus, st.store, run=run, variant=variant, fold=None, seed=0)
            assert planned is not None
            vec = rng.standard_normal((len(ids), DIM)).astype(np.float32) + labels[:, None]
            records = [_record(variant, corpus.by_id(u).text or "", i) for i, u in enumerate(ids)]
            with st.store.writer(planned.key, ids=ids) as w:
                w.add(ids, vec, labels=labels, records=records)
    train_heads(st, models=ALL_MODELS, progress=False)
    return st


def _record(variant: str, text: str, i: int) -> dict | None:
    """What extraction stores: text edits (every third utterance left unchanged), or the pitch step."""
    if variant == "clean":
        return None
    if variant == "pitch":
        return {"n_steps": 1.0}
    word = text.split()[0] if text.split() else ""
    start = text.index(word) if word else 0
    edits = [{"start": start, "end": start + len(word), "original": word, "text": None}] if i % 3 and word else []
    return {"edits": edits}


def _stored(study: Study, modality: str, variant: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and 'changed' flags read straight from the entry, bypassing the study's cache."""
    run = EncoderRun(modality, study.preset.backbone(modality), study.encoder_options)
    planned = plan_entry(study.corpus, study.store, run=run, variant=variant, fold=None, seed=0)
    assert planned is not None
    with study.store.open(planned.key) as entry:
        records = entry.records()
        changed = np.array([bool(records[i].get("edits", True)) for i in ids])
        return entry.vectors(ids), changed


def test_every_prediction_is_the_head_on_the_stored_vectors(study: Study) -> None:
    preds, missing = evaluate(study, models=ALL_MODELS, conditions=CONDITIONS, progress=False)
    assert missing == []
    checked = 0
    for fold in study.folds:
        for model in ALL_MODELS:
            head = load_head(study.heads_dir(model, fold=fold, seed=0))
            for cond in CONDITIONS:
                rows = preds.select(fold=fold, model=model, condition=cond)
                applies = cond == "clean" or (cond in ("adj", "pitch+adj") and "text" in uses(model)) or (
                    cond in ("pitch", "pitch+adj") and "audio" in uses(model))
                if model in ("text", "audio") and cond == "pitch+adj":
                    applies = False
                assert (len(rows) > 0) == applies, (fold, model, cond)
                if not applies:
                    continue
                ids = rows.utt_id.tolist()
                inputs, affected = [], np.zeros(len(ids), dtype=bool)
                for mod in uses(model):
                    variant = {"text": "adj" if "adj" in cond else "clean",
                               "audio": "pitch" if "pitch" in cond else "clean"}[mod]
                    x, changed = _stored(study, mod, variant, ids)
                    inputs.append(torch.from_numpy(x))
                    if variant != "clean":
                        affected |= changed
                with torch.no_grad():
                    expected = torch.softmax(head(*inputs), -1).numpy()
                np.testing.assert_allclose(rows.probs, expected, rtol=0, atol=1e-6)
                assert (rows.pred == expected.argmax(1)).all()
                assert (rows.affected == affected).all()
                checked += 1
    assert checked == len(study.folds) * (2 * 2 + 5 * 4)  # text/audio: 2 conditions each; fusion models: 4


def test_evaluation_is_repeatable_and_texts_cover_the_text_conditions(study: Study) -> None:
    a, _ = evaluate(study, models=("multimodal",), conditions=CONDITIONS, progress=False)
    b, _ = evaluate(study, models=("multimodal",), conditions=CONDITIONS, progress=False)
    assert np.array_equal(a.probs, b.probs)
    conds = {c for c, _ in a.texts}
    assert {"clean", "adj", "pitch+adj"} <= conds
    adj = {u: t for (c, u), t in a.texts.items() if c == "adj"}
    assert adj and all(a.texts[("pitch+adj", u)] == t for u, t in adj.items())
    masked = [u for u, t in adj.items() if "[MASK]" in t]
    assert masked and all(t.split()[0] == "[MASK]" for u, t in adj.items() if u in masked)


def test_trained_heads_are_reloaded_not_retrained(study: Study) -> None:
    before = {p: p.stat().st_mtime_ns for p in study.store.root.glob("heads/**/model.safetensors")}
    assert len(before) == len(study.folds) * len(ALL_MODELS)
    train_heads(study, models=ALL_MODELS, progress=False)
    after = {p: p.stat().st_mtime_ns for p in study.store.root.glob("heads/**/model.safetensors")}
    assert after == before


def test_default_conditions_are_the_papers_plus_what_the_store_holds() -> None:
    paper = default_conditions(set())
    assert paper[0] == "clean" and {"adj", "random-noun", "no-text", "pitch", "noise", "no-audio"} <= set(paper)
    assert paper[-4:] == ["pitch+adj", "pitch+random-adj", "pitch+noun", "pitch+random-noun"]
    assert not any(c.startswith(("asr", "reverb", "tempo")) for c in paper)
    held = default_conditions({"asr-0.2", "reverb-0.6", "noise:snr_db=7", "not-a-variant"})
    assert {"asr-0.2", "reverb-0.6", "noise:snr_db=7"} <= set(held) and "not-a-variant" not in held
    assert held.index("asr-0.2") < held.index("pitch")  # text variants come before audio ones


def test_evaluate_by_default_reports_only_the_papers_missing_conditions(study: Study) -> None:
    preds, missing = evaluate(study, models=("text", "multimodal"), progress=False)
    assert set(preds.unique("condition")) == {"clean", "adj", "pitch", "pitch+adj"}
    wanted = {"noun", "random-adj", "random-noun", "no-text", "noise", "no-audio"}
    named = {m.split("--variant ")[1] for m in missing}
    assert named == wanted


def test_heads_trained_together_equal_heads_trained_one_at_a_time(study: Study, tmp_path: Path) -> None:
    """train_heads (one batched ensemble) against _train_one (featcache.train.fit, head by head), 2 seeds."""

    def copy(name: str) -> Study:
        root = tmp_path / name
        shutil.copytree(study.store.root, root, ignore=shutil.ignore_patterns("heads"))
        return study.replace(cache_dir=str(root), seeds=(0, 1), head_epochs=8, head_patience=2)

    together, alone = copy("together"), copy("alone")
    records = train_heads(together, models=ALL_MODELS, progress=False)
    order = ["text", "audio", "multimodal", "gated", "mdrop", "late", "score"]
    jobs = [(k, s, m) for k in alone.folds for s in alone.seeds for m in order]
    assert [(r["fold"], r["seed"], r["model"]) for r in records] == jobs
    for k, s, m in jobs:
        with torch_threads(1):  # as train_heads runs it
            ref = _train_one(alone, m, fold=k, seed=s, device="cpu")
        got = json.loads((together.heads_dir(m, fold=k, seed=s) / "result.json").read_text())
        assert {key: got.get(key) for key in ("best_epoch", "best_dev_acc", "epochs_run")} == {
            key: ref.get(key) for key in ("best_epoch", "best_dev_acc", "epochs_run")}, (k, s, m)
        a = load_head(together.heads_dir(m, fold=k, seed=s)).state_dict()
        b = load_head(alone.heads_dir(m, fold=k, seed=s)).state_dict()
        assert a.keys() == b.keys()
        for key, value in b.items():  # bitwise on CPU with one intra-op thread; the tolerance allows another BLAS
            torch.testing.assert_close(a[key], value, rtol=1e-5, atol=1e-6, msg=f"{(k, s, m)} {key}")
    assert len({r["epochs_run"] for r in records if "epochs_run" in r}) > 1  # early stopping at different epochs
    together.close()
    alone.close()


def test_two_clean_head_trainings_write_the_same_bytes(study: Study, tmp_path: Path) -> None:
    """Every head file of two clean train-heads runs into two stores is byte-identical (no path, no time)."""

    def run(name: str) -> dict[str, bytes]:
        root = tmp_path / name
        shutil.copytree(study.store.root, root, ignore=shutil.ignore_patterns("heads"))
        copy = study.replace(cache_dir=str(root), head_epochs=2)
        train_heads(copy, models=ALL_MODELS, progress=False)
        heads = root / "heads"
        return {p.relative_to(heads).as_posix(): p.read_bytes() for p in sorted(heads.rglob("*")) if p.is_file()}

    first, second = run("a"), run("b")
    assert len(first) == 3 * 7 * 5 and first.keys() == second.keys()  # model, config, result of 7 models x 5 folds
    assert [k for k in first if first[k] != second[k]] == []


def test_a_head_in_another_heads_place_is_never_evaluated(study: Study, tmp_path: Path) -> None:
    """Two folds' head folders swapped: evaluation refuses them (naming the file and the fix), train-heads
    trains both again, and the study then scores as before."""
    from featcache.errors import DamagedError

    root = tmp_path / "swapped"
    shutil.copytree(study.store.root, root)
    copy = study.replace(cache_dir=str(root))
    one, two = (copy.heads_dir("text", fold=k, seed=0) for k in (1, 2))
    one.rename(tmp_path / "parked")
    two.rename(one)
    (tmp_path / "parked").rename(two)
    with pytest.raises(DamagedError) as e:
        evaluate(copy, models=["text"], conditions=["clean"], progress=False)
    assert str(one / "result.json") in str(e.value) and "holds the head of fold 2" in str(e.value)
    assert "featcache train-heads" in str(e.value)
    train_heads(copy, models=["text"], progress=False)  # trains the two misplaced heads again
    again, _ = evaluate(copy, models=["text"], conditions=["clean"], progress=False)
    reference, _ = evaluate(study, models=["text"], conditions=["clean"], progress=False)
    assert np.array_equal(again.pred, reference.pred)


def _flip_a_weight_bit(path: Path) -> None:
    """Flip the top exponent bit of the last float in a safetensors file (same size, still parses)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_bit_flipped_in_a_heads_weights_is_never_evaluated(study: Study, tmp_path: Path) -> None:
    """One flipped exponent bit in a head's model.safetensors (the file still loads): evaluate refuses it,
    naming the file and train-heads; train-heads trains it again and the study scores as before."""
    from featcache.errors import DamagedError

    root = tmp_path / "flipped"
    shutil.copytree(study.store.root, root)
    copy = study.replace(cache_dir=str(root))
    weights = copy.heads_dir("text", fold=2, seed=0) / "model.safetensors"
    _flip_a_weight_bit(weights)
    load_head(weights.parent)  # the damage is invisible to the file format
    with pytest.raises(DamagedError) as e:
        evaluate(copy, models=["text"], conditions=["clean"], progress=False)
    assert f"{weights}: damaged head (checksum mismatch: the file changed after the head was saved)" in str(e.value)
    assert "featcache train-heads" in str(e.value)
    train_heads(copy, models=["text"], progress=False)
    again, _ = evaluate(copy, models=["text"], conditions=["clean"], progress=False)
    reference, _ = evaluate(study, models=["text"], conditions=["clean"], progress=False)
    assert np.array_equal(again.pred, reference.pred)


def _extract_other_text_vectors(study: Study) -> Path:
    """Write the clean text entry again, under its key, with other vectors (as another machine's extraction
    would); returns its file."""
    run = study.encoder_run("text", fold=1, seed=0, model="text")
    planned = plan_entry(study.corpus, study.store, run=run, variant="clean", seed=study.variant_seed)
    path = study.store.path(planned.key)
    with study.store.open(planned.key) as entry:
        ids, vectors, labels = entry.ids, entry.vectors().copy(), entry.labels()
        provenance = dict(entry.provenance)
    path.unlink()
    with study.store.writer(planned.key, ids=ids, provenance=provenance) as w:
        w.add(ids, vectors * np.float32(1.01), labels=labels)
    return path


def test_a_head_trained_on_other_vectors_than_the_store_holds_is_stale(study: Study, tmp_path: Path) -> None:
    """The clean text entry made again with other vectors (as another machine's extraction would): every
    head that read it is refused as stale, the audio head is not, and train-heads trains exactly the stale
    ones again."""
    from featcache.errors import DamagedError

    root = tmp_path / "stale"
    shutil.copytree(study.store.root, root)
    copy = study.replace(cache_dir=str(root))
    _extract_other_text_vectors(copy)
    before = {p: p.read_bytes() for p in (root / "heads").rglob("*") if p.is_file()}
    with pytest.raises(DamagedError) as e:
        evaluate(copy, models=["text"], conditions=["clean"], progress=False)
    assert "stale: trained on other text vectors than the store holds now" in str(e.value), str(e.value)
    assert copy.load_head("audio", fold=1, seed=0) is not None  # reads no text vectors
    train_heads(copy, progress=False)
    changed = {p.parent.name for p, b in before.items() if p.read_bytes() != b}
    assert changed == {m for m in ALL_MODELS if "text" in uses(m)}, changed
    evaluate(copy, conditions=["clean"], progress=False)


def test_cache_verify_checks_every_head_and_the_chain(study: Study, tmp_path: Path) -> None:
    """`featcache cache verify` on an intact store: every head checked, no finding, exit 0. Then a flipped bit
    in a head, an edited text analysis and the clean text vectors made again: one line for each damaged
    file (the head's weights, the analysis, and every head trained on the old vectors as stale), exit 1."""
    from click.testing import CliRunner

    from featcache.cli import cli

    root = tmp_path / "store"
    shutil.copytree(study.store.root, root)
    copy = study.replace(cache_dir=str(root))
    r = CliRunner().invoke(cli, ["cache", "verify", "--cache-dir", str(root)])
    n_heads = len(list((root / "heads").rglob("result.json")))
    assert r.exit_code == 0 and f"heads and lineage: {n_heads} head(s) checked, 0 finding(s)" in r.output, r.output
    weights = sorted((root / "heads").glob("*/fold-2/seed-*/audio/model.safetensors"))[0]
    _flip_a_weight_bit(weights)
    from featcache.perturb import analyze_texts

    analyze_texts([u.text or "" for u in copy.corpus], cache_dir=root)
    (analysis,) = (root / "text-analysis").glob("*.json")
    payload = json.loads(analysis.read_text(encoding="utf-8"))
    payload["tokens"][0] = []
    analysis.write_text(json.dumps(payload), encoding="utf-8")
    _extract_other_text_vectors(copy)
    r = CliRunner().invoke(cli, ["cache", "verify", "--cache-dir", str(root)])
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert f"BROKEN   {weights}: damaged head (checksum mismatch: the file changed after the head was saved); " \
        "train it again (`featcache train-heads`" in r.output
    assert any(line.startswith(f"BROKEN   {analysis}: checksum mismatch") for line in lines), r.output
    stale = sorted(line.split()[1].rsplit("/", 3)[1:] for line in lines if line.startswith("STALE") and "heads" in line)
    text_models = sorted(m for m in ALL_MODELS if "text" in uses(m))
    trained = [p.parent for p in (root / "heads").rglob("result.json")]
    expected = sorted([p.parent.name, p.name, "result.json:"] for p in trained if p.name in text_models)
    assert stale == expected, stale


def test_a_bf16_study_has_its_own_key_heads_and_entries_and_predicts_like_fp32(study: Study, tmp_path: Path) -> None:
    """--precision bf16 names other entries (their key), other heads (the study's key); its heads train and
    evaluate in bfloat16 on the same numbers and mostly agree with the float32 ones; the float32 study is
    untouched."""
    root = tmp_path / "bf16"
    shutil.copytree(study.store.root, root)
    st16 = study.replace(cache_dir=str(root), precision="bf16")
    assert st16.key != study.replace(cache_dir=str(root)).key
    assert st16.heads_dir("text", fold=1, seed=0) != study.replace(cache_dir=str(root)).heads_dir("text", fold=1, seed=0)
    assert st16.frozen_encoder("text").precision == "bf16"
    for modality, variants in VARIANTS.items():  # the same vectors, stored under the bf16 entries' keys
        for variant in variants:
            src = plan_entry(study.corpus, study.store, run=study.frozen_encoder(modality), variant=variant, seed=0)
            dst = plan_entry(st16.corpus, st16.store, run=st16.frozen_encoder(modality), variant=variant, seed=0)
            assert src is not None and dst is not None and src.key.hash != dst.key.hash
            with study.store.open(src.key) as e:
                ids, vec, labels, records = list(e.ids), e.vectors(), e.labels(), e.records()
            with st16.store.writer(dst.key, ids=ids) as w:
                w.add(ids, vec, labels=labels, records=[records[i] for i in ids])
    before = {p: p.read_bytes() for p in sorted((study.store.root / "heads").rglob("*")) if p.is_file()}
    train_heads(st16, models=("text", "multimodal"), progress=False)
    p16, missing = evaluate(st16, models=("text", "multimodal"), conditions=["clean"], progress=False)
    p32, _ = evaluate(study, models=("text", "multimodal"), conditions=["clean"], progress=False)
    assert missing == [] and len(p16) == len(p32) and p16.probs.dtype == np.float32
    assert (p16.pred == p32.pred).mean() >= 0.8
    assert before == {p: p.read_bytes() for p in sorted((study.store.root / "heads").rglob("*")) if p.is_file()}
    st16.close()
