"""Executors: a study's jobs in order in-process, or as Ray tasks (``--executor ray``), give the same store.

The Ray tests share one local Ray instance with 2 CPUs (module fixture); its workers load
``ray_faults.install`` at start, which can kill a worker once in the middle of a job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.cache import FeatureStore
from featcache.cli import SHARD_SIZE_DEFAULT, cli
from featcache.executors import LocalExecutor
from featcache.extract import DEFAULT_SHARD_SIZE, EncoderRun
from featcache.metrics import Predictions
from featcache.paper import TrainSettings
from featcache.pipeline import PlannedRun, extraction_jobs, finetune_jobs
from featcache.presets import get_preset, with_overrides
from featcache.options import StudyOptions
from featcache.study import Study
from tiny_models import tiny_bert, tiny_wav2vec2

TESTS = Path(__file__).resolve().parent
SHARD = 16  # 65 utterances: 5 shards per entry


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("executors")
    return {
        "corpus": fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=3), audio=True, seconds=0.3),
        "bert": tiny_bert(d / "bert"),
        "w2v": tiny_wav2vec2(d / "w2v"),
        "faults": d / "faults",
        "dir": d,
    }


@pytest.fixture(scope="module")
def ray_cluster(env: dict[str, Path]):  # type: ignore[no-untyped-def]
    """A local Ray with 2 CPUs for the module; workers see this tree and the fault hook."""
    ray = pytest.importorskip("ray")
    env["faults"].mkdir(exist_ok=True)
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"worker_process_setup_hook": "ray_faults.install",
                          "env_vars": {"PYTHONPATH": path, "FEATCACHE_TEST_FAULTS": str(env["faults"]),
                                       "HF_HUB_OFFLINE": "1", "FEATCACHE_MODELS": os.environ["FEATCACHE_MODELS"]}})
    yield ray
    ray.shutdown()


def _common(env: dict[str, Path], cache: str) -> list[str]:
    return ["--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(env["dir"] / cache),
            "--text-backbone", str(env["bert"]), "--audio-backbone", str(env["w2v"])]


def _run(env: dict[str, Path], cache: str, *extra: str) -> str:
    """``featcache run`` in a fresh process on one torch thread.

    A fresh process, not this one: after some earlier tests of the suite have run in the pytest process,
    CPU kernels here give other last bits than in a fresh process (a Ray worker is one), so entries made
    here would not be comparable byte for byte.
    """
    args = ["run", *_common(env, cache), "--seeds", "0", "--variant", "noise",
            "--workers", "0", "--device", "cpu", "--shard-size", str(SHARD), "--out", str(env["dir"] / f"report-{cache}"),
            *extra]
    code = ("import sys, torch; torch.set_num_threads(1); from featcache.cli import main; "
            f"sys.argv = ['featcache', *{args!r}]; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TESTS.parent,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _entries(root: Path) -> dict[str, dict]:
    """Every complete entry's datasets and provenance (without its creation time), by path in the store."""
    store = FeatureStore(root)
    out = {}
    for info in store.iter_entries():
        assert info.status == "complete", (info.path, info.status)
        r = store.backend.open_entry(info.path)
        try:
            prov = {k: v for k, v in r.attrs.items() if k != "created"}
            out[str(info.path.relative_to(root))] = {
                "ids": r.ids, "labels": r.labels().tobytes(), "vectors": r.rows(np.arange(r.shape[0])).tobytes(),
                "records": r.records(), "provenance": prov}
        finally:
            r.close()
    return out


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread here, like a Ray task with one CPU (on a CPU the thread count, like the batches,
    changes the last bits of a vector)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sequential(env: dict[str, Path]) -> dict[str, dict]:
    """The reference: the local executor's run (made once, on one thread, in a fresh process)."""
    if not (env["dir"] / "seq").is_dir():
        _run(env, "seq")
    return _entries(env["dir"] / "seq")


def test_ray_run_gives_the_sequential_entries_and_tables(env: dict[str, Path], ray_cluster) -> None:  # type: ignore[no-untyped-def]
    import ray

    reference = _sequential(env)
    out = _run(env, "ray", "--executor", "ray", "--address", ray.get_runtime_context().gcs_address)
    assert "entries (3 extracted, 0 already stored)" in out and "on ray" in out
    got = _entries(env["dir"] / "ray")
    assert sorted(got) == sorted(reference) and len(got) == 3
    for name, entry in reference.items():  # datasets byte for byte, provenance but its time
        assert got[name] == entry, name
    assert not list((env["dir"] / "ray").rglob("*.shards")) and not list((env["dir"] / "ray").rglob("*.partial"))
    seq_report, ray_report = env["dir"] / "report-seq", env["dir"] / "report-ray"
    assert (ray_report / "tables.md").read_text() == (seq_report / "tables.md").read_text()
    a, b = Predictions.load(seq_report / "predictions.h5"), Predictions.load(ray_report / "predictions.h5")
    assert (a.pred == b.pred).all() and (a.probs == b.probs).all()


def test_a_worker_killed_mid_job_is_retried_and_the_entry_is_the_same(env: dict[str, Path], ray_cluster) -> None:  # type: ignore[no-untyped-def]
    reference = _sequential(env)
    (env["faults"] / "arm").write_text("")
    try:
        r = CliRunner().invoke(cli, ["extract", *_common(env, "killed"), "--frozen", "--variant", "noise",
                                     "--modality", "audio", "--workers", "0", "--device", "cpu", "--shard-size",
                                     str(SHARD), "--executor", "ray", "--max-retries", "2"])
    finally:
        (env["faults"] / "arm").unlink()
    assert r.exit_code == 0, r.output
    killed = (env["faults"] / "killed").read_text()
    assert "audio-w2v-frozen/shared/noise" in killed  # the assemble job died after its first chunk
    got = _entries(env["dir"] / "killed")
    assert len(got) == 1
    name, entry = next(iter(got.items()))
    assert entry == reference[name]


def test_extraction_waits_for_its_finetuning_run_on_ray(env: dict[str, Path], ray_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from featcache.data import load_corpus
    from featcache.executors import RayExecutor

    corpus = load_corpus(str(fake_iemocap.text_only_manifest(tmp_path / "m.csv", per_cell=4)))
    preset = with_overrides(get_preset("demo"), text_backbone=str(env["bert"]))
    stores = {}
    with _one_thread():  # as in a Ray task with one CPU: the same training arithmetic
        for name, ex in (("local", LocalExecutor()), ("ray", RayExecutor())):
            study = Study.open(StudyOptions(corpus=corpus.name, cache_dir=str(tmp_path / name),
                                            text_backbone=preset.text_backbone, frozen=False, seeds=(0,)), corpus=corpus)
            ft = finetune_jobs(study, models=["text"], folds=[2], seeds=[0], device="cpu",
                               settings=TrainSettings(batch_size=8, lr=1e-3, max_epochs=1, patience=1))
            plan = PlannedRun(None, 2, dict(study.fold_options), after=ft[0].name, modality="text")
            jobs, skipped = extraction_jobs(study, [plan], variants=["clean", "adj"], shard_size=24,
                                            sharded=name == "ray", device="cpu")
            assert skipped == [] and jobs[0].deps == (ft[0].name,)
            results = ex.run(study, ft + jobs, progress=False)
            trained = results[0].finished
            assert all(r.started >= trained for r in results[1:]), "an extraction job started before its run"
            stores[name] = _entries(tmp_path / name)
    kinds = [j.kind for j in jobs]
    assert kinds == ["shard"] * 4 + ["assemble", "extract"]  # clean: 80 ids in 4 shards; adj: the 16 test ids
    assert len(stores["ray"]) == 2 and stores["ray"] == stores["local"]


def test_shards_run_in_order_are_assembled_like_one_extraction(env: dict[str, Path]) -> None:
    """Without Ray: shard and assemble jobs on the local executor; a lost shard is extracted by the assembly;
    an interrupted distributed extraction is listed as partial and cleaned."""
    from featcache.executors import Job

    reference = _sequential(env)
    preset = with_overrides(get_preset("demo"), audio_backbone=str(env["w2v"]))
    root = env["dir"] / "local-shards"
    study = Study.open(StudyOptions(corpus=f"iemocap:{env['corpus']}", cache_dir=str(root),
                                    audio_backbone=preset.audio_backbone, frozen=True, seeds=(0,)))
    plan = PlannedRun(EncoderRun("audio", str(env["w2v"]), study.encoder_options), None)
    jobs, _ = extraction_jobs(study, [plan], variants=["noise"], shard_size=SHARD, sharded=True, device="cpu")
    assert [j.kind for j in jobs] == ["shard"] * 5 + ["assemble"]
    with _one_thread():
        LocalExecutor().run(study, jobs[:3], progress=False)
    listed = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(root)])
    assert "partial" in listed.output and "3 shard(s) of a distributed extraction" in listed.output
    assert "1 entries" in listed.output  # the shard files are not listed as entries
    shard_files = sorted(root.rglob("*.shards/*.h5"))
    assert len(shard_files) == 3
    shard_files[1].unlink()  # lost: the assembly extracts shards 2, 4 and 5 itself
    with _one_thread():
        results = LocalExecutor().run(study, [replace(jobs[-1], deps=())], progress=False)  # (shard jobs left out)
    assert results[0].value.status == "written"
    got = _entries(root)
    name = next(iter(got))
    # made in this process (see _run): the vectors to float precision, everything else byte for byte
    vectors = {k: np.frombuffer(e.pop("vectors"), dtype=np.float32) for k, e in ((name, got[name]),
                                                                                 ("ref", dict(reference[name])))}
    ref = dict(reference[name])
    ref.pop("vectors")
    assert got[name] == ref
    np.testing.assert_allclose(vectors[name], vectors["ref"], rtol=0, atol=1e-5)
    # an interrupted distributed extraction: `cache clean` removes its shards
    LocalExecutor().run(study, jobs[:1], progress=False)  # the entry is complete: nothing is written
    assert not list(root.rglob("*.shards"))
    noise = Job("noise shard 1/5", "shard", {**jobs[0].args, "variant": "telephone", "shard": 0})
    LocalExecutor().run(study, [noise], progress=False)
    assert len(list(root.rglob("*.shards"))) == 1
    cleaned = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(root)])
    assert cleaned.exit_code == 0 and "1 item(s) removed" in cleaned.output, cleaned.output
    assert not list(root.rglob("*.shards"))


def test_executor_ray_without_ray_is_one_line(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    r = CliRunner().invoke(cli, ["run", *_common(env, "none"), "--executor", "ray"])
    line = one_line_error(r)
    assert line == "Error: --executor ray: Ray is not installed; install it with `pip install 'featcache[ray]'`"
    assert not (env["dir"] / "none").exists()


@pytest.mark.parametrize(("address", "says"), [
    ("127.0.0.1:1", "no Ray cluster answered at 127.0.0.1:1 within 2 s"),
    ("not a host:::", "not HOST:PORT, ray://HOST:PORT or auto"),
])
def test_a_ray_address_that_does_not_answer_is_one_line_within_the_bound(
        env: dict[str, Path], monkeypatch: pytest.MonkeyPatch, address: str, says: str) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("FEATCACHE_RAY_CONNECT_TIMEOUT", "2")  # the message states the bound it kept
    r = CliRunner().invoke(cli, ["run", *_common(env, "unreachable"), "--executor", "ray", "--address", address])
    line = one_line_error(r)
    assert says in line, line
    assert not (env["dir"] / "unreachable").exists()


def test_a_ray_client_address_without_its_extra_is_one_line(env: dict[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    pytest.importorskip("ray")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # grpc (ray[client]) not installed, whether it is or not here
                        lambda name, *a, **kw: None if name == "grpc" else find_spec(name, *a, **kw))
    address = "ray://127.0.0.1:10001"
    r = CliRunner().invoke(cli, ["run", *_common(env, "client"), "--executor", "ray", "--address", address])
    line = one_line_error(r)
    assert line == (f"Error: address (--address {address}): Ray Client (ray://) needs its extra; install it with "
                    "`pip install 'ray[client]'`, or give the cluster's HOST:6379"), line
    assert not (env["dir"] / "client").exists()


def test_the_local_executor_needs_no_ray(env: dict[str, Path]) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"
            "from featcache.cli import cli\n"
            "cli(['extract', '--help'], standalone_mode=False)\n"
            "import featcache.executors, featcache.pipeline\n"
            "print('ok', featcache.executors.make_executor('local').name)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TESTS.parent,
                       env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok local")
    shown = " ".join(r.stdout.split())
    assert "--shard-size INTEGER RANGE" in shown and f"[default: {DEFAULT_SHARD_SIZE}; x>=1]" in shown
    assert SHARD_SIZE_DEFAULT == DEFAULT_SHARD_SIZE


def test_job_graph_names_and_order_are_checked(env: dict[str, Path]) -> None:
    from featcache.errors import FeatcacheError
    from featcache.executors import Job

    study = None  # a malformed graph is refused before any job runs
    with pytest.raises(FeatcacheError, match="waits for b, which is not listed before it"):
        LocalExecutor().run(study, [Job("a", "extract", {}, deps=("b",)), Job("b", "extract", {})])  # type: ignore[arg-type]
    with pytest.raises(FeatcacheError, match="job a: listed twice"):
        LocalExecutor().run(study, [Job("a", "finetune", {}), Job("a", "finetune", {})])  # type: ignore[arg-type]
