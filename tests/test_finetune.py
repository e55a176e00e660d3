from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import fake_iemocap
from featcache.backbones.encoders import load_encoder
from featcache.backbones.resolve import resolve_backbone
from featcache.cache import FeatureStore
from featcache.cli import cli
from featcache.data import load_audio, read_iemocap
from featcache.errors import DamagedError, FeatcacheError
from featcache.finetune import LOOP_VERSION, EndToEnd, find_runs, finetune, list_runs
from featcache.folds import make_fold
from featcache.heads import load_head
from featcache.pipeline import plan_encoder_runs, run_extractions
from featcache.presets import Preset, TrainSettings, get_preset, with_overrides
from featcache.options import StudyOptions
from featcache.study import Study
from featcache.train import read_log, resolve_precision
from tiny_models import tiny_bert, tiny_wav2vec2


def _study(corpus, store, preset, *, frozen: bool) -> Study:  # type: ignore[no-untyped-def]
    # the runs of the fixture: the demo preset's with these settings for text and multimodal
    return Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(store.root), text_backbone=preset.text_backbone,
                                   audio_backbone=preset.audio_backbone, frozen=frozen, finetune_batch_size=8,
                                   finetune_lr=1e-3, finetune_epochs=2, finetune_patience=2), corpus=corpus)


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


LEAN = {"config.json", "result.json", "train_log.jsonl", "head/model.safetensors", "head/config.json"}


def _files(run_dir: Path) -> set[str]:
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


def test_runs_are_safetensors_and_json_and_rerun_is_free(setup) -> None:  # type: ignore[no-untyped-def]
    corpus, preset, store, runs = setup
    for run in runs.values():
        files = _files(run.path)
        assert files == LEAN | {f"{m}_encoder.safetensors" for m in run.modalities}  # the checkpoints are gone
        weights = sum((run.path / f).stat().st_size for f in files if f.endswith(".safetensors"))
        assert sum((run.path / f).stat().st_size for f in files) <= 1.1 * weights
        assert store.run_lock(run.run_id).is_file() and store.run_lock(run.run_id).parent == run.path.parent
        assert 1 <= run.result["best_epoch"] <= 2
        assert run.config["loop"]["version"] == LOOP_VERSION and run.config["precision"] == "fp32"
        assert run.damage(deep=True) is None
    stamp = {p: p.stat().st_mtime_ns for p in runs["text"].path.rglob("*")}
    again = finetune(corpus, store, preset=preset, modality="text", fold=2, seed=0, progress=False)
    assert again.path == runs["text"].path
    assert {p: p.stat().st_mtime_ns for p in runs["text"].path.rglob("*")} == stamp
    assert [r.run_id for r in find_runs(store, corpus=corpus, fold=2)] == sorted(r.run_id for r in runs.values())
    assert find_runs(store, corpus=corpus, fold=3) == []


def test_audio_workers_give_the_run_that_loading_in_process_gives(setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the multimodal model decodes its audio in DataLoader workers started from a forkserver (the
    # command line's default is one worker); the reference run loaded everything in this process
    corpus, preset, _, runs = setup
    run = finetune(corpus, FeatureStore(tmp_path / "cache"), preset=preset, modality="multimodal", fold=2, seed=0,
                   num_workers=2, progress=False)
    ref = runs["multimodal"]
    assert run.run_id == ref.run_id
    assert run.result == ref.result  # best epoch, dev accuracy, SHA-256 of both encoders' weights
    assert _log(run.path) == _log(ref.path)


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


# ------------------------------------------------------------------------------------------ lean, resumable runs


def _text_preset(bert: Path) -> Preset:
    return with_overrides(get_preset("demo"), text_backbone=str(bert),
                          text=TrainSettings(batch_size=8, lr=1e-3, max_epochs=3, patience=3))


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A text-only corpus, a tiny BERT, and one finished reference run (fold 2, seed 0) in its own store."""
    d = tmp_path_factory.mktemp("lean")
    root = fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=False)
    corpus = read_iemocap(root)
    bert = tiny_bert(d / "bert")
    ref = finetune(corpus, FeatureStore(d / "ref"), preset=_text_preset(bert), modality="text", fold=2, seed=0,
                   progress=False)
    return {"dir": d, "root": root, "corpus": corpus, "bert": bert, "ref": ref}


def _again(env, cache: Path, **kw):  # type: ignore[no-untyped-def]
    return finetune(env["corpus"], FeatureStore(cache), preset=_text_preset(env["bert"]), modality="text", fold=2,
                    progress=False, **{"seed": 0, **kw})


def _log(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "time"} for rec in read_log(run_dir / "train_log.jsonl")]


def _assert_same_run(run, ref) -> None:  # type: ignore[no-untyped-def]
    assert run.run_id == ref.run_id
    assert run.result == ref.result  # best epoch, dev accuracy and the SHA-256 of the encoder weights
    assert _log(run.path) == _log(ref.path)
    assert _files(run.path) == LEAN | {"text_encoder.safetensors"}


KILL_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_finetune
import featcache.finetune.loop as ft
from featcache.cache import FeatureStore
from featcache.data import read_iemocap

step = ft._step
def slow_step(model, batch):
    time.sleep(0.15)
    return step(model, batch)
if sys.argv[5] == "slow":
    ft._step = slow_step
ft.finetune(read_iemocap(sys.argv[2]), FeatureStore(sys.argv[4]), preset=test_finetune._text_preset(Path(sys.argv[3])),
            modality="text", fold=2, seed=0, progress=False)
"""


def _finetune_process(env, cache: Path, speed: str) -> subprocess.Popen:  # type: ignore[no-untyped-def,type-arg]
    return subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(Path(__file__).parent), str(env["root"]), str(env["bert"]),
         str(cache), speed],
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def test_a_killed_run_resumes_to_the_same_lean_result(text_runs) -> None:  # type: ignore[no-untyped-def]
    # every run in a fresh process, as the command line runs them (a test process's earlier imports may
    # change how the CPU kernels round)
    ref_cache, cache = text_runs["dir"] / "killed-ref", text_runs["dir"] / "killed"
    assert _finetune_process(text_runs, ref_cache, "fast").wait() == 0
    proc = _finetune_process(text_runs, cache, "slow")
    state = cache / "runs" / text_runs["ref"].run_id / "state.json"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run_dir = state.parent
    assert not (run_dir / "result.json").exists() and {"state.json", "last.safetensors"} <= _files(run_dir)
    listed = {r.run_id: r for r in list_runs(FeatureStore(cache))}
    assert listed[run_dir.name].status == "unfinished" and listed[run_dir.name].epochs >= 1  # the log follows the commit
    assert _finetune_process(text_runs, cache, "fast").wait() == 0
    (resumed,) = find_runs(FeatureStore(cache), corpus=text_runs["corpus"])
    (ref,) = find_runs(FeatureStore(ref_cache), corpus=text_runs["corpus"])
    _assert_same_run(resumed, ref)


class Crash(Exception):
    pass


def test_a_kill_while_finishing_leaves_a_resumable_or_finished_run(text_runs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import featcache.finetune.loop as ft
    from featcache import train
    from featcache.train import loop as train_loop

    ref = text_runs["ref"]
    # killed after the weights, before result.json: resumable; the rerun trains no epoch
    cache = text_runs["dir"] / "before-result"
    real_write = ft.atomic_write_json

    def crash_on_result(path, obj, **kw):  # type: ignore[no-untyped-def]
        if Path(path).name == "result.json":
            raise Crash
        return real_write(path, obj, **kw)

    monkeypatch.setattr(ft, "atomic_write_json", crash_on_result)
    with pytest.raises(Crash):
        _again(text_runs, cache)
    monkeypatch.setattr(ft, "atomic_write_json", real_write)
    run_dir = cache / "runs" / ref.run_id
    assert "result.json" not in _files(run_dir) and "state.json" in _files(run_dir)
    assert find_runs(FeatureStore(cache), corpus=text_runs["corpus"]) == []
    monkeypatch.setattr(train_loop, "_train_epoch", lambda *a, **k: pytest.fail("a finished fit trained again"))
    _assert_same_run(_again(text_runs, cache), ref)
    monkeypatch.undo()

    # killed after result.json, while the checkpoints were being deleted: finished; the rerun deletes the rest
    cache = text_runs["dir"] / "while-cleaning"
    real_remove = train.remove_resume_state

    def crash_after_state(run_dir: Path) -> list[Path]:
        (run_dir / "state.json").unlink()
        raise Crash

    monkeypatch.setattr(train, "remove_resume_state", crash_after_state)
    with pytest.raises(Crash):
        _again(text_runs, cache)
    monkeypatch.setattr(train, "remove_resume_state", real_remove)
    run_dir = cache / "runs" / ref.run_id
    assert {"result.json", "best.safetensors", "last.safetensors"} <= _files(run_dir)
    assert [r.run_id for r in find_runs(FeatureStore(cache), corpus=text_runs["corpus"])] == [ref.run_id]
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("a finished run trained again"))
    _assert_same_run(_again(text_runs, cache), ref)


def test_a_damaged_lean_run_is_refused_then_trained_again_from_scratch(text_runs, caplog) -> None:  # type: ignore[no-untyped-def]
    cache = text_runs["dir"] / "damaged"
    shutil.copytree(text_runs["ref"].path.parent.parent, cache)
    weights = cache / "runs" / text_runs["ref"].run_id / "text_encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(DamagedError) as exc:
        find_runs(FeatureStore(cache), corpus=text_runs["corpus"])
    message = str(exc.value)
    assert "\n" not in message and str(weights) in message and "damaged fine-tuning run" in message
    assert "featcache finetune --modality text --fold 2 --seed 0" in message and "from scratch" in message
    (info,) = list_runs(FeatureStore(cache))
    assert info.status == "damaged" and str(weights) in (info.problem or "")
    with caplog.at_level("WARNING", logger="featcache.finetune"):
        run = _again(text_runs, cache)
    assert "trained again from scratch" in caplog.text
    _assert_same_run(run, text_runs["ref"])  # the same seed on the same device: the same weights


def test_the_same_seed_gives_the_same_run_and_another_seed_another(text_runs) -> None:  # type: ignore[no-untyped-def]
    cache = text_runs["dir"] / "seeds"
    _assert_same_run(_again(text_runs, cache), text_runs["ref"])
    other = _again(text_runs, cache, seed=1)
    assert other.run_id != text_runs["ref"].run_id
    assert other.result["weights"] != text_runs["ref"].result["weights"]


def test_text_is_tokenised_once_per_run_without_workers(text_runs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from featcache.backbones.encoders import TextInputs

    calls: list[str] = []
    prepare = TextInputs.prepare

    def counting(self, text):  # type: ignore[no-untyped-def]
        calls.append(text)
        return prepare(self, text)

    monkeypatch.setattr(TextInputs, "prepare", counting)
    run = _again(text_runs, text_runs["dir"] / "workers", num_workers=2)  # ignored: nothing to decode
    fold = make_fold(text_runs["corpus"], 2)
    assert len(_log(run.path)) == 3  # three epochs ran
    assert len(calls) == len(fold.train) + len(fold.dev)  # each transcript once, not once per epoch
    _assert_same_run(run, text_runs["ref"])  # the reference ran with num_workers=0: the same weights

def test_precision_is_a_choice_and_fp32_on_a_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", device=cpu, width=1024) == "fp32"
    assert resolve_precision("fp32", device=cpu, width=0) == "fp32"
    for bad, words in (("bf16", "needs a CUDA device"), ("fp8", "use auto, fp32, bf16, fp16")):
        with pytest.raises(FeatcacheError) as exc:
            resolve_precision(bad, device=cpu, width=768)
        assert words in str(exc.value) and "\n" not in str(exc.value)


def test_cache_ls_and_verify_list_runs(text_runs) -> None:  # type: ignore[no-untyped-def]
    cache = text_runs["dir"] / "listing"
    shutil.copytree(text_runs["ref"].path.parent.parent, cache)
    ref = text_runs["ref"]
    unfinished = cache / "runs" / "ft-audio-f3-s1-0123456789"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"modality": "audio", "fold": 3, "seed": 1}))
    (unfinished / "train_log.jsonl").write_text(json.dumps({"epoch": 1, "best_dev_acc": 0.25}) + "\n{\"epo")
    r = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(cache)])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line.split() for line in r.output.splitlines() if line.startswith("ft-")}
    assert lines[ref.run_id][1:5] == ["text", "2", "0", "finished"]
    assert f"{ref.result['best_dev_acc']:.4f}" in lines[ref.run_id]
    assert lines[unfinished.name][1:5] == ["audio", "3", "1", "unfinished"] and "0.2500" in lines[unfinished.name]
    assert "2 runs" in r.output and "no entries" not in r.output
    r = CliRunner().invoke(cli, ["cache", "verify", "--cache-dir", str(cache)])
    assert r.exit_code == 0 and "runs: 1 finished, 1 unfinished, 0 broken" in r.output, r.output
    weights = cache / "runs" / ref.run_id / "text_encoder.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash tells
    weights.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, ["cache", "verify", "--cache-dir", str(cache)])
    assert r.exit_code == 1 and "runs: 0 finished, 1 unfinished, 1 broken" in r.output, r.output
    (broken,) = [line for line in r.output.splitlines() if line.startswith("BROKEN")]
    assert str(weights) in broken and "checksum mismatch" in broken and "featcache finetune" in broken
