"""Values checked at the boundary, on the command line and in the library alike: a device torch does not
run on and a negative number of workers are one line, before any work (no traceback, the store unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.cli import cli
from featcache.errors import FeatcacheError
from featcache.train import resolve_device
from featcache.workers import make_loader
from tiny_models import tiny_bert


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("values")
    return {"dir": d, "manifest": fake_iemocap.text_only_manifest(d / "m.csv"), "bert": tiny_bert(d / "bert")}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", [
    ["extract", "--variant", "clean"],
    ["finetune", "--modality", "text", "--fold", "1", "--max-epochs", "1"],
    ["train-heads", "--models", "text"],
])
def test_an_unknown_device_is_one_line(env: dict[str, Path], command: list[str]) -> None:
    store = env["dir"] / "store"
    common = ["--corpus", f"manifest:{env['manifest']}", "--cache-dir", str(store), "--text-backbone", str(env["bert"])]
    if command[0] == "train-heads":  # the heads need the clean vectors first
        r = CliRunner().invoke(cli, ["extract", *common, "--variant", "clean", "--device", "cpu"])
        assert r.exit_code == 0, r.output
    before = _files(store) if store.exists() else {}
    line = one_line_error(CliRunner().invoke(cli, [command[0], *common, *command[1:], "--device", "tpu"]))
    assert line == "Error: device (--device 'tpu') is unknown; use auto, cpu, cuda, cuda:N or mps", line
    after = _files(store) if store.exists() else {}
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == \
        {k: v for k, v in before.items() if not k.endswith(".lock")}


def test_devices_in_the_library() -> None:
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")
    for bad in ("tpu", "gpu", "cuda::0", ""):
        with pytest.raises(FeatcacheError, match="is unknown"):
            resolve_device(bad)


def test_negative_workers_are_refused(env: dict[str, Path]) -> None:
    r = CliRunner().invoke(cli, ["extract", "--corpus", f"manifest:{env['manifest']}", "--cache-dir",
                                 str(env["dir"] / "w"), "--workers", "-1"])
    assert r.exit_code == 2 and "Invalid value for '--workers'" in r.output and "Traceback" not in r.output
    with pytest.raises(FeatcacheError, match=r"workers \(--workers -1\)"):
        make_loader([1, 2, 3], num_workers=-1)


def test_a_one_class_corpus_is_refused_before_any_work(tmp_path: Path, env: dict[str, Path]) -> None:
    store = tmp_path / "store"
    base = ["--corpus", f"manifest:{env['manifest']}", "--cache-dir", str(store), "--text-backbone", str(env["bert"]),
            "--labels", "ang"]
    for command in (["extract", "--variant", "clean"], ["train-heads"], ["evaluate", "--out", str(tmp_path / "o")]):
        line = one_line_error(CliRunner().invoke(cli, [command[0], *base, *command[1:]]))
        assert "a study needs at least two classes, the corpus has ang" in line, line
    assert not store.exists() and not (tmp_path / "o").exists()
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"manifest:{env['manifest']}", "--labels", "ang"])
    assert r.exit_code == 0, r.output  # inspecting it still works
