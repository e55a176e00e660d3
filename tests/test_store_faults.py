"""A damaged, full or read-only store ends in one clear line, and a damaged file is never used.

Each fault is made on a copy of one small text-only store (tiny BERT, frozen, clean vectors, text
heads); the command that meets it must exit with one ``Error: <file>: <problem>; <fix>`` line and no
traceback, and leave what was stored as it was (new work in progress aside: a ``.partial/`` extraction
a rerun resumes, lock files).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.cache import EntryKey, FeatureStore
from featcache.cache.atomic import error_number, remove_stale_tmp, write_failure
from featcache.cli import cli
from featcache.errors import DamagedError
from store_writer import key, vector
from tiny_models import tiny_bert

WRITER = [sys.executable, str(Path(__file__).with_name("store_writer.py"))]
WRITER_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                           os.environ.get("PYTHONPATH", "")])}
DEAD = 4_194_305  # above the largest pid Linux hands out (2**22): a process that cannot be running
HEAD_FLAGS = ["--seeds", "0", "--head-epochs", "2"]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A text-only corpus, a tiny BERT and a store with its clean vectors and trained text heads."""
    d = tmp_path_factory.mktemp("faults")
    env = {"corpus": fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=2)), "bert": tiny_bert(d / "bert"),
           "cache": d / "cache"}
    r = CliRunner().invoke(cli, _extract(env, env["cache"], "clean"))
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["train-heads", *_study_args(env, env["cache"]), "--models", "text"])
    assert r.exit_code == 0, r.output
    return env


@pytest.fixture
def env(base: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """The base store copied for one test (so each fault starts from the same bytes)."""
    shutil.copytree(base["cache"], tmp_path / "cache")
    return {**base, "cache": tmp_path / "cache", "out": tmp_path / "report"}


def _common(env: dict[str, Path], cache: Path) -> list[str]:
    return ["--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(cache), "--text-backbone", str(env["bert"])]


def _extract(env: dict[str, Path], cache: Path, variant: str) -> list[str]:
    return ["extract", *_common(env, cache), "--modality", "text", "--variant", variant, "--workers", "0",
            "--device", "cpu"]


def _study_args(env: dict[str, Path], cache: Path) -> list[str]:
    return [*_common(env, cache), *HEAD_FLAGS]


def _evaluate(env: dict[str, Path], *extra: str) -> list[str]:
    return ["evaluate", *_study_args(env, env["cache"]), "--condition", "clean", "--out", str(env["out"]), *extra]


def _entry(cache: Path, variant: str = "clean") -> Path:
    (path,) = (cache / "features").rglob(f"{variant}-*.h5")
    return path


def _head(cache: Path, name: str, fold: int = 1) -> Path:
    (path,) = (cache / "heads").glob(f"*/fold-{fold}/seed-0/text/{name}")
    return path


def _warnings(stderr: str) -> list[str]:
    """The log warnings in a command's stderr (a progress bar may share their line)."""
    return re.findall(r"WARNING: [^\r\n]*", stderr)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _only_new_work(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Everything stored before is there with the same bytes; anything new is work in progress a rerun
    resumes (a ``.partial/`` folder) or a lock file, and no temporary file is left anywhere."""
    assert {k: after.get(k) for k in before} == before
    new = [k for k in after if k not in before]
    assert all(".partial/" in k or k.endswith(".lock") for k in new), new
    assert not [k for k in after if ".tmp" in Path(k).name], after.keys()


def _flip(path: Path, needle: bytes) -> None:
    """Flip one bit of the first occurrence of ``needle`` (bytes known to be in the file's data)."""
    data = bytearray(path.read_bytes())
    at = data.index(needle) + len(needle) // 2
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _first_row(cache: Path, variant: str = "clean") -> bytes:
    with h5py.File(_entry(cache, variant), "r") as f:
        return f["vectors"][0].tobytes()


# --------------------------------------------------------------------------------- simulated faults


@contextmanager
def _read_only(root: Path) -> Iterator[None]:
    """Make every write under ``root`` fail as on a read-only mount (EROFS); reads are untouched."""
    top = os.path.abspath(root)

    def inside(path: object) -> bool:
        try:
            p = os.path.abspath(os.fspath(path))  # type: ignore[arg-type]
        except TypeError:
            return False
        return p == top or p.startswith(top + os.sep)

    def deny(path: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))  # type: ignore[arg-type]

    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    real_os_open, real_io_open = os.open, io.open

    def os_open(path, flags, *args, **kw):  # type: ignore[no-untyped-def]
        if flags & writes and "dir_fd" not in kw and inside(path):
            deny(path)
        return real_os_open(path, flags, *args, **kw)

    def io_open(file, mode="r", *args, **kw):  # type: ignore[no-untyped-def]
        if any(c in mode for c in "wax+") and inside(file):
            deny(file)
        return real_io_open(file, mode, *args, **kw)

    def guard(real: Callable) -> Callable:  # type: ignore[type-arg]
        def fake(*args, **kw):  # type: ignore[no-untyped-def]
            if "dir_fd" not in kw and any(inside(a) for a in args[:2] if isinstance(a, (str, os.PathLike))):
                deny(args[0])
            return real(*args, **kw)
        return fake

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", os_open)
        mp.setattr(io, "open", io_open)
        mp.setattr(builtins, "open", io_open)
        for name in ("mkdir", "rename", "replace", "unlink", "remove", "rmdir"):
            mp.setattr(os, name, guard(getattr(os, name)))
        yield


@contextmanager
def _disk_full(root: Path, *, free: int) -> Iterator[None]:
    """A disk with ``free`` bytes left under ``root``: a file write past that fails with ENOSPC."""
    top = os.path.abspath(root)
    left = [free]
    real_io_open = io.open

    class Full:
        """A file whose writes fail with ENOSPC once the disk's free bytes are used up."""

        def __init__(self, f):  # type: ignore[no-untyped-def]
            self.f = f

        def write(self, data):  # type: ignore[no-untyped-def]
            n = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
            if n > left[0]:
                left[0] = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            left[0] -= n
            return self.f.write(data)

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self.f, name)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    def io_open(file, mode="r", *args, **kw):  # type: ignore[no-untyped-def]
        f = real_io_open(file, mode, *args, **kw)
        path = os.path.abspath(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
        if any(c in mode for c in "wax+") and path.startswith(top + os.sep):
            return Full(f)
        return f

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(io, "open", io_open)
        mp.setattr(builtins, "open", io_open)
        yield


# ----------------------------------------------------------------------------- one line per fault


@dataclass(frozen=True)
class Fault:
    """A fault made on the store, the command that meets it, and what its one line must say."""

    name: str
    make: Callable[[dict[str, Path]], Path]  # damages the store; returns the file the error must name
    command: Callable[[dict[str, Path]], list[str]]
    says: tuple[str, ...]
    during: str = ""  # "full" or "read-only": the command runs on a simulated full or read-only store


def _flip_entry(env: dict[str, Path]) -> Path:
    _flip(_entry(env["cache"]), _first_row(env["cache"]))
    return _entry(env["cache"])


def _truncate_entry(env: dict[str, Path]) -> Path:
    path = _entry(env["cache"])
    path.write_bytes(path.read_bytes()[:-700])
    return path


def _store_json(version: int) -> Callable[[dict[str, Path]], Path]:
    def make(env: dict[str, Path]) -> Path:
        path = env["cache"] / "store.json"
        path.write_text(json.dumps({"backend": "hdf5", "format_version": version}) + "\n")
        return path
    return make


def _empty_result(env: dict[str, Path]) -> Path:
    path = _head(env["cache"], "result.json")
    path.write_text("")
    return path


def _unreadable_run_config(env: dict[str, Path]) -> Path:
    run = env["cache"] / "runs" / "ft-text-f1-s0-0123456789"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}\n")
    (run / "config.json").write_bytes(b"\x00\x00")
    return run / "config.json"


def _no_head_result(env: dict[str, Path]) -> Path:
    _head(env["cache"], "result.json").unlink()  # train-heads trains this head again, and writes it
    return _head(env["cache"], "model.safetensors")


def _linked_lock(target: str | None) -> Callable[[dict[str, Path]], Path]:
    """An entry to extract again (its file gone) whose lock file is a symbolic link: to ``target``, or (None)
    to itself, a loop (ELOOP)."""

    def make(env: dict[str, Path]) -> Path:
        entry = _entry(env["cache"])
        lock = entry.with_suffix(".lock")
        entry.unlink()
        lock.unlink(missing_ok=True)
        lock.symlink_to(target or lock.name)
        return lock

    return make


def _safetensors_disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """safetensors reports a full disk in its own exception type, the errno only in the text."""
    from safetensors import SafetensorError

    import featcache.heads.files

    def full(*args: object, **kw: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(featcache.heads.files, "save_file", full)


FAULTS = [
    Fault("byte flip in an entry", _flip_entry, lambda e: _evaluate(e),
          ("damaged entry", "checksum mismatch", "featcache extract", "--variant clean")),
    Fault("truncated entry", _truncate_entry, lambda e: _evaluate(e),
          ("damaged entry", "truncated", "featcache extract", "--variant clean")),
    Fault("store.json of a newer featcache", _store_json(2), lambda e: _evaluate(e),
          ("format_version 2 is newer", "upgrade featcache")),
    Fault("store.json of an older format", _store_json(0), lambda e: _extract(e, e["cache"], "clean"),
          ("format_version 0 is older", "extract again into a new --cache-dir")),
    Fault("disk full while extracting", lambda e: e["cache"] / "features",
          lambda e: _extract(e, e["cache"], "no-text"),
          ("no space left on device writing it", "free space or move the store with --cache-dir"), "full"),
    Fault("disk full while saving a head (safetensors)", _no_head_result,
          lambda e: ["train-heads", *_study_args(e, e["cache"]), "--models", "text"],
          ("no space left on device writing it", "free space or move the store with --cache-dir"), "safetensors"),
    Fault("read-only store, extracting a missing entry", lambda e: e["cache"] / "features",
          lambda e: _extract(e, e["cache"], "no-text"),
          ("the store is read-only (read-only file system)", "use another --cache-dir"), "read-only"),
    Fault("read-only store, training an ablation", lambda e: e["cache"] / "ablations",
          lambda e: ["ablate", *_study_args(e, e["cache"]), "--modalities", "text", "--resamples", "0",
                     "--condition", "clean"],
          ("the store is read-only (read-only file system)", "use another --cache-dir"), "read-only"),
    Fault("entry lock file replaced by a symlink loop", _linked_lock(None), lambda e: _extract(e, e["cache"], "clean"),
          ("lock file is a symbolic link loop (too many levels of symbolic links)", "remove it", "run the command again")),
    Fault("empty result.json of a head", _empty_result, lambda e: _evaluate(e),
          ("damaged head (empty file)", "featcache train-heads")),
    Fault("unreadable fine-tuning run config", _unreadable_run_config, lambda e: _evaluate(e, "--finetuned"),
          ("damaged fine-tuning run", "featcache finetune", "--modality text --fold 1 --seed 0")),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_store_fault_ends_in_one_line_and_changes_nothing(env: dict[str, Path], fault: Fault,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    named = fault.make(env)
    before = _snapshot(env["cache"])
    args = fault.command(env)
    if fault.during == "full":
        with _disk_full(env["cache"], free=1000):
            r = CliRunner().invoke(cli, args)
    elif fault.during == "read-only":
        with _read_only(env["cache"]):
            r = CliRunner().invoke(cli, args)
    else:
        if fault.during == "safetensors":
            _safetensors_disk_full(monkeypatch)
        r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1
    line = one_line_error(r)
    assert line.startswith(f"Error: {named}") if named.is_file() else str(named) in line, line
    for text in fault.says:
        assert text in line, line
    _only_new_work(before, _snapshot(env["cache"]))
    assert not (env["out"] / "predictions.h5").exists()


def test_a_lock_file_linked_elsewhere_is_refused_and_nothing_is_written_through_it(env: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    outside = tmp_path / "not-the-store.txt"
    outside.write_text("someone else's file\n")
    lock = _linked_lock(str(outside))(env)
    before = _snapshot(env["cache"])
    line = one_line_error(CliRunner().invoke(cli, _extract(env, env["cache"], "clean")))
    assert line == (f"Error: {lock}: lock file is a symbolic link (to {outside}); remove it (no process holds a link "
                    "as its lock) and run the command again: it makes a new lock file"), line
    assert outside.read_text() == "someone else's file\n"
    assert _snapshot(env["cache"]) == before and lock.is_symlink()
    lock.unlink()  # what the line says to do: the entry is extracted again
    r = CliRunner().invoke(cli, _extract(env, env["cache"], "clean"))
    assert r.exit_code == 0, r.output
    assert lock.is_file() and not lock.is_symlink() and _entry(env["cache"]).is_file()


def test_every_store_lock_refuses_a_symbolic_link_even_one_made_after_the_look(tmp_path: Path) -> None:
    from filelock import FileLock

    from featcache.cache.locks import held_lock, linked_lock_refused
    from featcache.errors import StoreError
    from featcache.train.journal import LOCK_FILE, _run_lock

    run = tmp_path / "run"  # a training run's fit.lock (fine-tuning runs hold runs/<id>.lock the same way)
    run.mkdir()
    (run / LOCK_FILE).symlink_to(LOCK_FILE)
    with pytest.raises(StoreError) as e, _run_lock(run):
        pass
    assert str(e.value) == (f"{run / LOCK_FILE}: lock file is a symbolic link loop (too many levels of symbolic "
                            "links); remove it (no process holds a link as its lock) and run the command again: it "
                            "makes a new lock file")
    outside = tmp_path / "outside.txt"
    lock = tmp_path / "runs" / "ft-text-f1-s0.lock"
    lock.parent.mkdir()
    lock.write_text("")
    with pytest.raises(StoreError, match=r"lock file is a symbolic link \(to "), linked_lock_refused(lock):
        lock.unlink()  # replaced between the look and the open: the open itself does not follow it (O_NOFOLLOW)
        lock.symlink_to(outside)
        FileLock(str(lock)).acquire()
    assert not outside.exists()
    lock.unlink()
    with held_lock(lock):
        assert lock.is_file() and not lock.is_symlink()


# ------------------------------------------------------------------------- damaged entries are redone


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_extract_sets_a_damaged_entry_aside_and_writes_the_same_vectors_again(env: dict[str, Path],
                                                                             damage: str) -> None:
    path = _entry(env["cache"])
    with h5py.File(path, "r") as f:
        vectors, ids = f["vectors"][()], f["ids"].asstr()[()].tolist()
    original = path.read_bytes()
    if damage == "flip":
        _flip(path, _first_row(env["cache"]))
    else:
        path.write_bytes(original[: len(original) // 2])
    damaged = path.read_bytes()
    assert FeatureStore(env["cache"]).verify()[0].status == "broken"

    r = CliRunner().invoke(cli, _extract(env, env["cache"], "clean"))
    assert r.exit_code == 0, r.output
    warnings = _warnings(r.stderr)
    assert len(warnings) == 1 and str(path) in warnings[0] and "damaged entry" in warnings[0], r.stderr
    assert "Traceback" not in r.output
    assert r.stdout.splitlines()[0].startswith("replaced"), r.stdout
    aside = path.with_name(path.name + ".damaged")
    assert aside.read_bytes() == damaged  # set aside, not silently deleted
    with h5py.File(path, "r") as f:
        assert f["vectors"][()].tobytes() == vectors.tobytes() and f["ids"].asstr()[()].tolist() == ids
    assert [i.status for i in FeatureStore(env["cache"]).verify()] == ["complete"]

    r = CliRunner().invoke(cli, _extract(env, env["cache"], "clean"))  # intact now: skipped
    assert r.exit_code == 0 and r.stdout.startswith("skipped"), r.output
    r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(env["cache"])])
    assert r.exit_code == 0 and f"removing {aside}" in r.output and not aside.exists(), r.output
    r = CliRunner().invoke(cli, _evaluate(env))
    assert r.exit_code == 0 and (env["out"] / "predictions.h5").is_file(), r.output


def test_train_heads_trains_a_damaged_head_again(env: dict[str, Path]) -> None:
    from featcache.heads import load_head

    result = _head(env["cache"], "result.json", fold=3)
    fields = json.loads(result.read_text())
    result.write_text("")
    r = CliRunner().invoke(cli, ["evaluate", *_study_args(env, env["cache"]), "--out", str(env["out"])])
    assert r.exit_code == 1 and f"Error: {result}: damaged head (empty file)" in one_line_error(r)
    r = CliRunner().invoke(cli, ["train-heads", *_study_args(env, env["cache"]), "--models", "text"])
    assert r.exit_code == 0, r.output
    assert _warnings(r.stderr) == [f"WARNING: {result}: damaged head (empty file); training it again"], r.stderr
    assert json.loads(result.read_text()).keys() == fields.keys()
    load_head(result.parent)
    config = result.parent / "config.json"
    config.write_text("{")  # a damaged config: the same
    r = CliRunner().invoke(cli, ["train-heads", *_study_args(env, env["cache"]), "--models", "text"])
    assert r.exit_code == 0, r.output
    (warning,) = _warnings(r.stderr)
    assert warning == (f"WARNING: {config}: damaged head (checksum mismatch: the file changed after the head was "
                       "saved); training it again"), warning  # its record's SHA-256 sees it before JSON does
    load_head(result.parent)
    r = CliRunner().invoke(cli, ["evaluate", *_study_args(env, env["cache"]), "--condition", "clean",
                                 "--out", str(env["out"])])
    assert r.exit_code == 0, r.output


def test_a_damaged_fine_tuning_run_is_refused_then_finished_again(env: dict[str, Path]) -> None:
    finetune = ["finetune", *_common(env, env["cache"]), "--modality", "text", "--fold", "1", "--seed", "0",
                "--max-epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--workers", "0", "--device", "cpu"]
    r = CliRunner().invoke(cli, finetune)
    assert r.exit_code == 0, r.output
    (run,) = [p for p in (env["cache"] / "runs").iterdir() if p.is_dir()]  # beside it: the run's lock file
    result = run / "result.json"
    fields = json.loads(result.read_text())
    result.write_text('{"best_epoch": 1,')
    extract = ["extract", *_common(env, env["cache"]), "--finetuned", "--fold", "1", "--modality", "text",
               "--finetune-epochs", "1", "--finetune-batch-size", "8", "--finetune-lr", "1e-3",  # the run's settings
               "--variant", "clean", "--workers", "0", "--device", "cpu"]
    r = CliRunner().invoke(cli, extract)
    line = one_line_error(r)
    assert line.startswith(f"Error: {result}: damaged fine-tuning run (unreadable JSON: "), line
    assert "featcache finetune --modality text --fold 1 --seed 0" in line
    r = CliRunner().invoke(cli, finetune)
    assert r.exit_code == 0, r.output
    (warning,) = _warnings(r.stderr)
    assert warning.startswith(f"WARNING: {run}/result.json: damaged fine-tuning run (unreadable JSON: "), warning
    assert json.loads(result.read_text()) == fields
    r = CliRunner().invoke(cli, extract)
    assert r.exit_code == 0 and r.stdout.startswith("written"), r.output


def test_a_bit_flipped_in_fine_tuned_weights_is_refused_before_any_vector(env: dict[str, Path], tmp_path: Path) -> None:
    """Same size, other bytes: the encoder weights' checksum is checked before extraction uses them."""
    cache = tmp_path / "cache"
    settings = ["--max-epochs", "1", "--batch-size", "8", "--lr", "1e-3"]
    r = CliRunner().invoke(cli, ["finetune", *_common(env, cache), "--modality", "text", "--fold", "1", "--seed", "0",
                                 *settings, "--workers", "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    (run,) = [p for p in (cache / "runs").iterdir() if p.is_dir()]
    weights = run / "text_encoder.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x40  # an exponent bit of one weight, in the middle of the tensors
    weights.write_bytes(bytes(data))
    extract = ["extract", *_common(env, cache), "--finetuned", "--fold", "1", "--modality", "text",
               "--finetune-epochs", "1", "--finetune-batch-size", "8", "--finetune-lr", "1e-3",
               "--variant", "clean", "--workers", "0", "--device", "cpu"]
    before = _snapshot(cache)
    line = one_line_error(CliRunner().invoke(cli, extract))
    assert line.startswith(f"Error: {weights}: damaged fine-tuning run (checksum mismatch"), line
    assert f"delete {run}" in line and "featcache finetune" in line
    assert _snapshot(cache) == before  # no vector of the damaged weights was stored


def test_a_bit_flipped_in_a_fine_tuned_runs_head_is_refused_and_verify_names_it(env: dict[str, Path],
                                                                                   tmp_path: Path) -> None:
    """The run's own head (what evaluate uses for a paper model of a fine-tuned study): its SHA-256, recorded
    in the run's result.json, is checked before extraction and by `cache verify`; the entries made from the
    run's weights are checked against the weights' recorded SHA-256 too."""
    cache = tmp_path / "cache"
    r = CliRunner().invoke(cli, ["finetune", *_common(env, cache), "--modality", "text", "--fold", "1", "--seed", "0",
                                 "--max-epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--workers", "0",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    (run,) = [p for p in (cache / "runs").iterdir() if p.is_dir()]
    assert set(json.loads((run / "result.json").read_text())["files"]) == {"head/config.json", "head/model.safetensors"}
    extract = ["extract", *_common(env, cache), "--finetuned", "--fold", "1", "--modality", "text",
               "--finetune-epochs", "1", "--finetune-batch-size", "8", "--finetune-lr", "1e-3",
               "--variant", "clean", "--workers", "0", "--device", "cpu"]
    r = CliRunner().invoke(cli, extract)
    assert r.exit_code == 0, r.output
    verify = ["cache", "verify", "--cache-dir", str(cache)]
    r = CliRunner().invoke(cli, verify)
    assert r.exit_code == 0 and "0 broken" in r.output, r.output
    result = json.loads((run / "result.json").read_text())
    weights = run / "head" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x40
    weights.write_bytes(bytes(data))
    line = one_line_error(CliRunner().invoke(cli, extract[:-6] + ["--variant", "no-text", "--workers", "0",
                                                                  "--device", "cpu"]))
    assert line.startswith(f"Error: {weights}: damaged fine-tuning run (checksum mismatch"), line
    r = CliRunner().invoke(cli, verify)
    assert r.exit_code == 1 and f"BROKEN   {weights}: checksum mismatch" in r.output, r.output
    weights.write_bytes(bytes(data[:-1] + bytes([data[-1] ^ 0x40])))  # repaired
    result["weights"]["text_encoder.safetensors"]["sha256"] = "0" * 64  # the run now says other weights
    (run / "result.json").write_text(json.dumps(result))
    r = CliRunner().invoke(cli, verify)
    assert r.exit_code == 1 and f"made from other encoder weights than run {run.name} holds now" in r.output, r.output


# -------------------------------------------------------------------------------- the entry itself


def test_damage_is_seen_where_it_is_read(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    subprocess.run([*WRITER, str(tmp_path), "clean", "40", "7", "0"], check=True, env=WRITER_ENV, capture_output=True)
    k, path = key("clean"), store.path(key("clean"))
    assert store.has(k) and store.damage(k) == ""
    with store.open(k) as e:
        first = e.vectors()[0].tobytes()
    _flip(path, first)
    assert store.has(k)  # the size is right: only a hash tells
    assert "checksum mismatch" in store.damage(k)
    with store.open(k) as e, pytest.raises(DamagedError, match=r"damaged entry \(checksum mismatch in vectors"):
        e.vectors()
    path.write_bytes(path.read_bytes() + b"\0")
    assert not store.has(k) and store.damage(k).startswith("1 bytes more than the ")
    with pytest.raises(DamagedError, match="bytes more than"):
        store.open(k)
    path.write_bytes(path.read_bytes()[:300])
    assert not store.has(k)
    with pytest.raises(DamagedError, match="shorter than its 512-byte header"):
        store.open(k)
    (info,) = store.verify()
    assert info.status == "broken" and info.problem.startswith("cannot open (truncated")


def _legacy_entry(store: FeatureStore, k: EntryKey, ids: list[str], vectors: np.ndarray, *, checksum: bool) -> Path:
    """An entry as the previous version wrote it: HDF5 from byte 0, no header, no integrity digests."""
    from featcache.cache.store import _checksum

    path = store.path(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    store._init_root()
    str_dt = h5py.string_dtype("utf-8")
    attrs = {"identity": k.full_identity, "complete": True, "backend": "hdf5", "format_version": 1,
             "featcache_version": "0.1.0", "created": "2026-01-01T00:00:00+0000", "n": len(ids),
             "dim": vectors.shape[1]}
    if checksum:
        attrs["checksum"] = _checksum(ids, vectors)
    with h5py.File(path, "w", libver="latest", track_order=True) as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=str_dt, track_times=False)
        f.create_dataset("labels", data=np.zeros(len(ids), dtype=np.int64), track_times=False)
        f.create_dataset("vectors", data=vectors, chunks=(min(len(ids), 256), vectors.shape[1]), track_times=False)
        f.create_dataset("records", data=np.array([""] * len(ids), dtype=object), dtype=str_dt, track_times=False)
        for name, value in attrs.items():
            f.attrs[name] = json.dumps(value, sort_keys=True)
    return path


def test_entries_of_the_previous_version_still_open_and_are_checked_with_what_they_stored(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    ids = [f"u{i:05d}" for i in range(30)]
    vectors = np.stack([vector(u) for u in ids])
    for variant, checksum in (("old", True), ("older", False)):
        k = key(variant)
        path = _legacy_entry(store, k, ids, vectors, checksum=checksum)
        assert path.read_bytes()[:4] == b"\x89HDF"
        assert store.has(k) and store.damage(k) == ""
        with store.open(k) as e:
            np.testing.assert_array_equal(e.vectors(), vectors)
            assert e.ids == ids and e.records()["u00003"] == {}
    assert [i.status for i in store.verify()] == ["complete", "complete"]
    old = store.path(key("old"))
    _flip(old, vectors[0].tobytes())
    assert store.has(key("old")) and "checksum mismatch" in store.damage(key("old"))
    with store.open(key("old")) as e, pytest.raises(DamagedError, match="checksum mismatch"):
        e.vectors()
    old.write_bytes(old.read_bytes()[:-100])
    assert not store.has(key("old"))  # HDF5 itself refuses a truncated file
    with pytest.raises(DamagedError, match=r"cannot open"):
        store.open(key("old"))


# ---------------------------------------------------------------------------------------- disk full


def test_write_failure_reads_the_errno_that_libraries_wrap(tmp_path: Path) -> None:
    h5 = RuntimeError("Can't decrement id ref count (file write failed: time = Sat Nov 28 08:37:24 2026\n, filename = "
                      "'x.h5', file descriptor = 4, errno = 28, error message = 'No space left on device')")
    rust = Exception("Error while serializing: I/O error: Read-only file system (os error 30)")
    assert error_number(h5) == errno.ENOSPC and error_number(rust) == errno.EROFS
    assert error_number(OSError(errno.EDQUOT, "Disk quota exceeded")) == errno.EDQUOT
    assert error_number(ValueError("bad value")) is None and write_failure(ValueError("x"), tmp_path) is None
    store_file = tmp_path / "cache" / "features" / "r" / "x.h5"
    msg = str(write_failure(h5, store_file))
    assert msg == f"{store_file}: no space left on device writing it; free space or move the store with --cache-dir"
    assert str(write_failure(rust, tmp_path / "report" / "t.md")).endswith(
        "this folder is read-only (read-only file system); write to another folder")


def test_a_full_disk_while_writing_evaluate_out_is_one_line(env: dict[str, Path]) -> None:
    before = _snapshot(env["cache"])
    with _disk_full(env["out"], free=1000):  # the report folder's disk, not the store's
        r = CliRunner().invoke(cli, _evaluate(env))
    line = one_line_error(r)
    assert re.fullmatch(rf"Error: {re.escape(str(env['out']))}/\S+: no space left on device writing it; free space "
                        "or write to another folder", line), line
    assert not [p for p in env["out"].rglob("*") if ".tmp" in p.name]
    _only_new_work(before, _snapshot(env["cache"]))


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_real_full_disk_ends_in_one_line_without_temporary_files(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "2m"):
        pytest.skip("mounting a 2 MB tmpfs needs root (the simulated full disk is tested above)")
    try:
        root = mnt / "cache"
        ok = subprocess.run([*WRITER, str(root), "clean", "1500", "500", "0", "64"], env=WRITER_ENV,
                            capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        before = _snapshot(root)
        for variant in ("adj", "pitch"):  # the second one starts on a full disk
            p = subprocess.run([*WRITER, str(root), variant, "20000", "500", "0", "64"], env=WRITER_ENV,
                               capture_output=True, text=True)
            assert p.returncode == 1, (p.returncode, p.stderr[-2000:])  # not a crash (h5py segfaulted here)
            errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
            assert len(errors) == 1 and "no space left on device writing it" in errors[0], p.stderr[-2000:]
            assert "Traceback" not in p.stderr
        _only_new_work(before, _snapshot(root))
        store = FeatureStore(root)
        assert [i.status for i in store.verify() if i.variant == "clean"] == ["complete"]
        with store.open(key("clean")) as e:
            np.testing.assert_array_equal(e.vectors(), np.stack([vector(f"u{i:05d}", 64) for i in range(1500)]))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


# ---------------------------------------------------------------------------------------- read-only


def test_a_read_only_store_can_be_read(env: dict[str, Path]) -> None:
    before = _snapshot(env["cache"])
    with _read_only(env["cache"]):
        r = CliRunner().invoke(cli, _extract(env, env["cache"], "clean"))
        assert r.exit_code == 0 and r.stdout.startswith("skipped"), r.output
        for args in (["cache", "verify", "--cache-dir", str(env["cache"])],
                     ["cache", "ls", "--cache-dir", str(env["cache"])],
                     ["cache", "clean", "--cache-dir", str(env["cache"]), "--dry-run"],
                     _evaluate(env)):
            r = CliRunner().invoke(cli, args)
            assert r.exit_code == 0, (args, r.output)
        r = CliRunner().invoke(cli, ["train-heads", *_study_args(env, env["cache"]), "--models", "text"])
        assert r.exit_code == 0, r.output  # every head is there: nothing to write
    assert _snapshot(env["cache"]) == before
    assert (env["out"] / "predictions.h5").is_file()


def test_a_read_only_mount_refuses_writes_in_one_line(env: dict[str, Path], tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "30m"):
        pytest.skip("mounting a tmpfs needs root (the simulated read-only store is tested above)")
    try:
        shutil.copytree(env["cache"], mnt / "cache")
        _interrupted_extraction(mnt / "cache")
        done = subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        before = _snapshot(mnt / "cache")
        r = CliRunner().invoke(cli, _extract(env, mnt / "cache", "clean"))
        assert r.exit_code == 0 and r.stdout.startswith("skipped"), r.output
        r = CliRunner().invoke(cli, ["cache", "verify", "--cache-dir", str(mnt / "cache")])
        assert r.exit_code == 0 and "1 complete, 1 partial, 0 broken" in r.output, r.output
        r = CliRunner().invoke(cli, ["evaluate", *_study_args(env, mnt / "cache"), "--condition", "clean",
                                     "--out", str(env["out"])])
        assert r.exit_code == 0 and (env["out"] / "predictions.h5").is_file(), r.output
        r = CliRunner().invoke(cli, _extract(env, mnt / "cache", "no-text"))
        assert "the store is read-only (read-only file system); use another --cache-dir" in one_line_error(r)
        r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(mnt / "cache"), "--dry-run"])
        assert r.exit_code == 0 and "1 item(s) to remove" in r.output, r.output
        r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(mnt / "cache")])
        assert "the store is read-only (read-only file system)" in one_line_error(r)
        assert _snapshot(mnt / "cache") == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


def test_chmod_read_only_store_refuses_writes_in_one_line(env: dict[str, Path]) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root from writing (see the mount and mock tests)")
    for p in [env["cache"], *env["cache"].rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        before = _snapshot(env["cache"])
        r = CliRunner().invoke(cli, _extract(env, env["cache"], "clean"))
        assert r.exit_code == 0 and r.stdout.startswith("skipped"), r.output
        r = CliRunner().invoke(cli, _extract(env, env["cache"], "no-text"))
        assert "the store is read-only (permission denied); use another --cache-dir" in one_line_error(r)
        assert _snapshot(env["cache"]) == before
    finally:
        for p in [env["cache"], *env["cache"].rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


# ------------------------------------------------------------------------------------------- cleaning


def test_cache_clean_leaves_a_live_writers_partial_alone(tmp_path: Path) -> None:
    p = subprocess.Popen([*WRITER, str(tmp_path), "adj", "60", "5", "0.1"], env=WRITER_ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(tmp_path.rglob("chunk-*.h5")):
            time.sleep(0.02)
        (partial,) = tmp_path.rglob("*.partial")
        r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(tmp_path)])
        assert r.exit_code == 0, r.output
        assert r.output.splitlines() == [f"skipping {partial}: an extraction is writing it", "0 item(s) removed"]
        assert partial.is_dir()
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    assert p.returncode == 0 and "wrote 60" in out, err
    store = FeatureStore(tmp_path)
    with store.open(key("adj")) as e:
        np.testing.assert_array_equal(e.vectors(), np.stack([vector(f"u{i:05d}") for i in range(60)]))


def test_stale_conversion_folders_go_on_a_rerun_and_with_cache_clean(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from featcache.backbones import ct2

    models = tmp_path / "models"
    monkeypatch.setenv("FEATCACHE_MODELS", str(models))
    dead = models / f".whisper-base.tmp-{DEAD}-abcdef01"
    live = models / f".whisper-base.tmp-{os.getpid()}-abcdef02"
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"\0" * 1000)
    r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(tmp_path / "cache"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [f"skipping {live}: process {os.getpid()} is writing it", f"would remove {dead}",
                                     "1 item(s) to remove"]

    sources = []
    for name in ("model.bin.part1", "model.bin.part2", "config.json", "vocabulary.txt"):
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / name).write_text("x")
        sources.append(tmp_path / "src" / name)
    seen: list[list[str]] = []

    def convert(files: object, target: Path, *, overwrite: bool) -> Path:
        seen.append(sorted(p.name for p in models.iterdir()))
        raise ct2.ModelFileError("stop here")

    monkeypatch.setattr(ct2, "convert_ct2_whisper", convert)
    with pytest.raises(ct2.ModelFileError):
        ct2.ensure_whisper_base(models, source_files=sources)
    assert seen == [sorted([".whisper-base.lock", live.name])]  # the dead one went before converting
    assert remove_stale_tmp(models, "whisper-base") == [] and live.is_dir()


def _interrupted_extraction(cache: Path) -> Path:
    """Leave a ``.partial/`` extraction in ``cache``, as a killed writer would."""
    store = FeatureStore(cache)
    with pytest.raises(RuntimeError), store.writer(key("adj"), ids=["u00000", "u00001"]) as w:
        w.add(["u00000"], vector("u00000")[None])
        raise RuntimeError("killed")
    (partial,) = cache.rglob("*.partial")
    return partial


def test_clean_on_a_read_only_store_is_one_line(env: dict[str, Path]) -> None:
    partial = _interrupted_extraction(env["cache"])
    before = _snapshot(env["cache"])
    with _read_only(env["cache"]):
        r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(env["cache"]), "--dry-run"])
        assert r.exit_code == 0 and f"would remove {partial}" in r.output, r.output
        r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(env["cache"])])
        line = one_line_error(r)
    assert "the store is read-only (read-only file system); use another --cache-dir" in line
    assert _snapshot(env["cache"]) == before


def test_a_read_only_folder_is_one_line_whichever_command_writes_into_it(tmp_path: Path) -> None:
    """A write that fails on a read-only folder anywhere (not only in the store) is one line naming it."""
    from test_report import synthetic

    synthetic(seeds=(0,)).save(tmp_path / "predictions.h5")
    ro = tmp_path / "ro"
    ro.mkdir()
    with _read_only(ro):
        r = CliRunner().invoke(cli, ["report", "--predictions", str(tmp_path / "predictions.h5"), "--out", str(ro / "r")])
    line = one_line_error(r)
    assert "this folder is read-only (read-only file system); write to another folder" in line, line
    assert str(ro / "r") in line and list(ro.iterdir()) == []
