from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from featcache.cache import EntryKey, FeatureStore
from featcache.cli import cli
from featcache.errors import StaleEntryError, StoreError
from store_writer import key, vector

WRITER = [sys.executable, str(Path(__file__).with_name("store_writer.py"))]
DEAD = 4_194_305  # above the largest pid Linux hands out (2**22): a process that cannot be running


def _write(root: Path, variant: str, n: int, batch: int = 7) -> None:
    subprocess.run([*WRITER, str(root), variant, str(n), str(batch), "0"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})


def _expected(n: int) -> np.ndarray:
    return np.stack([vector(f"u{i:05d}") for i in range(n)])


def test_roundtrip_lazy_reads_and_provenance(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    k = EntryKey(run="r", fold=None, variant="noise:std=0.1", identity={"weights": "abc", "pooling": "mean"})
    ids = [f"u{i:05d}" for i in range(20)]
    with store.writer(k, ids=ids[::-1], provenance={"backbone": "b"}) as w:
        assert not w.complete and w.pending == ids[::-1]
        while w.pending:
            b = w.pending[:6]
            w.add(b, np.stack([vector(u) for u in b]), labels=[1] * len(b), records=[{"snr": 3.5}] * len(b))
    with store.open(k) as e:
        assert e.ids == ids  # canonical sorted order, whatever the batch order
        np.testing.assert_array_equal(e.vectors(), _expected(20))
        sel = ["u00013", "u00002", "u00013"]
        np.testing.assert_array_equal(e.vectors(sel), np.stack([vector(u) for u in sel]))
        assert e.records()["u00004"] == {"snr": 3.5}
        assert e.provenance["backbone"] == "b" and e.provenance["identity"]["variant"] == "noise:std=0.1"
        assert e.provenance["featcache_version"] and e.provenance["backend"] == "hdf5"
        with pytest.raises(StoreError, match="not in this entry"):
            e.vectors(["nope"])
    assert (tmp_path / "store.json").read_text().count('"hdf5"') == 1
    # a second writer finds it complete and writes nothing
    with store.writer(k, ids=ids) as w:
        assert w.complete and w.pending == []


def test_other_identity_never_mixes(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    a = EntryKey(run="r", fold=1, variant="pitch", identity={"weights": "aaa", "steps": [-1, 1]})
    b = EntryKey(run="r", fold=1, variant="pitch", identity={"weights": "bbb", "steps": [-1, 1]})
    with store.writer(a, ids=["u1"]) as w:
        w.add(["u1"], np.ones((1, 3)))
    assert store.has(a) and not store.has(b)
    with pytest.raises(StoreError, match="is not stored; run `featcache extract`"):
        store.open(b)
    # tampering with the stored identity is detected on read
    with h5py.File(store.path(a), "r+") as f:
        f.attrs["identity"] = f.attrs["identity"].replace("aaa", "zzz")
    with pytest.raises(StaleEntryError, match="weights: stored 'zzz' vs asked 'aaa'"):
        store.open(a)


def test_variants_with_dots_in_their_names_get_their_own_files(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    keys = {v: EntryKey(run="r", fold=None, variant=v, identity={"weights": "w", "variant": v})
            for v in ("asr-0.1", "asr-0.2", "reverb-0.6", "noise:snr_db=7.5")}
    for i, (v, k) in enumerate(keys.items()):
        with store.writer(k, ids=["u1"]) as w:
            w.add(["u1"], np.full((1, 3), i, dtype=np.float32))
    paths = {store.path(k) for k in keys.values()}
    assert len(paths) == len(keys) and all(p.is_file() and p.name.endswith(".h5") for p in paths)
    for i, k in enumerate(keys.values()):
        assert store.has(k)
        with store.open(k) as e:
            assert e.vectors()[0, 0] == i
    assert not list(tmp_path.rglob("*.partial"))
    assert len(list(store.iter_entries())) == len(keys)


def test_verify_detects_corruption(tmp_path: Path) -> None:
    _write(tmp_path, "clean", 30)
    _write(tmp_path, "adj", 30)
    store = FeatureStore(tmp_path)
    assert [i.status for i in store.verify()] == ["complete", "complete"]
    with h5py.File(store.path(key("adj")), "r+") as f:
        f["vectors"][3, 2] = 42.0
    bad = store.path(key("clean"))
    bad.write_bytes(bad.read_bytes()[:200])
    res = {i.variant or i.path.name: i for i in store.verify()}
    assert res["adj"].status == "broken" and "checksum" in res["adj"].problem
    assert any(i.status == "broken" and "cannot open" in i.problem for i in res.values())
    r = CliRunner().invoke(cli, ["cache", "verify", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 1 and "0 complete, 0 partial, 2 broken" in r.output


def test_kill9_at_any_moment_then_resume(tmp_path: Path) -> None:
    n = 60
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    _write(tmp_path, "clean", n)  # a previously completed entry
    store = FeatureStore(tmp_path)
    with store.open(key("clean")) as e:
        before = e.vectors()
    outcomes = set()
    for trial, delay in enumerate([0.05, 0.4, 0.8, 1.3, 2.0]):
        variant = f"pitch{trial}"
        p = subprocess.Popen([*WRITER, str(tmp_path), variant, str(n), "5", "0.1"], env=env,
                             stdout=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        # every previously completed entry is intact
        with store.open(key("clean")) as e:
            np.testing.assert_array_equal(e.vectors(), before)
        infos = {i.variant: i for i in store.iter_entries()}
        state = infos[variant].status if variant in infos else "absent"
        assert state in ("partial", "absent", "complete")
        assert not store.has(key(variant)) or state == "complete"
        outcomes.add(state)
        # rerun resumes and gives exactly the uninterrupted result
        out = subprocess.run([*WRITER, str(tmp_path), variant, str(n), "5", "0"], env=env, check=True,
                             capture_output=True, text=True).stdout
        if state == "partial":
            resumed = int(out.split("resumed ")[1].split()[0])
            wrote = int(out.split("wrote ")[1].split()[0])
            assert resumed + wrote == n
        with store.open(key(variant)) as e:
            np.testing.assert_array_equal(e.vectors(), _expected(n))
            assert e.records()["u00007"] == {"i": 7}
    assert "partial" in outcomes  # at least one kill landed mid-extraction
    assert all(i.status == "complete" for i in store.verify())


def test_two_writers_same_key(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    procs = [subprocess.Popen([*WRITER, str(tmp_path), "noise", "40", "4", "0.02"], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    wrote = [int(o.split("wrote ")[1].split()[0]) for o in outs if "wrote" in o]
    assert sum(wrote) == 40  # the second writer waited, then found it complete
    assert sum("skipped" in o for o in outs) == 1
    store = FeatureStore(tmp_path)
    with store.open(key("noise")) as e:
        np.testing.assert_array_equal(e.vectors(), _expected(40))
    assert [i.status for i in store.verify()] == ["complete"]


def test_cache_ls_lists_entries(tmp_path: Path) -> None:
    _write(tmp_path, "clean", 10)
    r = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(tmp_path), "--long"])
    assert r.exit_code == 0, r.output
    assert "complete" in r.output and "test-run" in r.output and "clean" in r.output and "16" in r.output
    assert "backbone" in r.output and "1 entries" in r.output


def test_cache_clean_removes_only_interrupted_work(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    _write(tmp_path, "clean", 20)
    p = subprocess.Popen([*WRITER, str(tmp_path), "adj", "60", "5", "0.1"], env=env, stdout=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.rglob("chunk-*.h5")):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    store = FeatureStore(tmp_path)
    assert sorted(i.status for i in store.iter_entries()) == ["complete", "partial"]
    r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0 and "1 item(s) removed" in r.output, r.output
    assert [i.status for i in store.verify()] == ["complete"]
    with store.open(key("clean")) as e:
        np.testing.assert_array_equal(e.vectors(), _expected(20))


def _write_entry(store: FeatureStore, *, variant: str, pooling: str, seed: int | None, n: int = 4) -> None:
    identity = {"backbone": "fake", "weights": "f" * 40, "encoder": {"pooling": pooling, "max_tokens": 512},
                "variant_seed": seed, "ids": "a" * 16}
    k = EntryKey(run="text-fake-frozen", fold=None, variant=variant, identity=identity)
    ids = [f"u{i:05d}" for i in range(n)]
    with store.writer(k, ids=ids, provenance={"backbone": "fake", "pooling": pooling, "seed": seed}) as w:
        w.add(ids, np.stack([vector(u) for u in ids]), labels=[0] * n, records=[{}] * n)


def test_cache_ls_tells_entries_apart_by_the_settings_they_differ_in(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    _write_entry(store, variant="clean", pooling="cls", seed=None)
    _write_entry(store, variant="clean", pooling="mean", seed=None)
    _write_entry(store, variant="random-adj", pooling="cls", seed=0)
    _write_entry(store, variant="random-adj", pooling="cls", seed=1)
    _write_entry(store, variant="adj", pooling="mean", seed=0)
    r = CliRunner().invoke(cli, ["cache", "ls", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split()[-1] == "settings"
    rows = [line.split() for line in lines[1:-1]]
    by_variant: dict[str, list[str]] = {}
    for row in rows:
        by_variant.setdefault(row[3], []).append(row[-1])
    assert sorted(by_variant["clean"]) == ["pooling=cls", "pooling=mean"]  # max_tokens, weights, ... are equal
    assert sorted(by_variant["random-adj"]) == ["seed=0", "seed=1"]
    assert by_variant["adj"] == ["-"]  # no twin: nothing to tell apart
    assert lines[-1].startswith("5 entries")


def test_clean_removes_strays_in_every_folder_and_keeps_complete_work(tmp_path: Path) -> None:
    _write(tmp_path, "clean", 20)
    store = FeatureStore(tmp_path)
    with pytest.raises(RuntimeError), store.writer(key("adj"), ids=[f"u{i:05d}" for i in range(10)]) as w:
        w.add(["u00000"], _expected(1))
        raise RuntimeError("killed")  # leaves adj's .partial directory
    partial = store.path(key("adj")).with_name(store.path(key("adj")).name.replace(".h5", ".partial"))
    assert partial.is_dir()
    run = store.run_dir("ft-text-f1-s0-0123456789")
    head = store.heads_dir("0123abcd", fold=1, seed=0, model="text")
    analysis = store.text_analysis_path("en_core_web_sm", "k" * 20)
    keep = [run / "config.json", run / "result.json", run / "fit.lock", head / "model.safetensors",
            head / "config.json", analysis, store.weight_hashes_path]
    entry = store.path(key("clean"))
    strays = [
        run / f".last.safetensors.tmp-{DEAD}",
        run / ".result.json.tmp",  # an older version's name
        head / f".config.json.tmp-{DEAD}",
        analysis.with_name(f".{analysis.name}.tmp-{DEAD}"),
        store.models_dir / f".weight-hashes.json.tmp-{DEAD}",
        tmp_path / f".store.json.tmp-{DEAD}",
        entry.with_name(f".{entry.name}.tmp-{DEAD}"),
    ]
    stray_dir = store.models_dir / f".whisper-base.tmp-{DEAD}-abcdef01"  # a killed conversion: listed once
    live = run / f".state.json.tmp-{os.getpid()}"  # a write of a running process: left alone
    for path in keep + strays + [stray_dir / "model.safetensors", live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    expected = [partial, *sorted(strays + [stray_dir])]
    skipped = [f"skipping {live}: process {os.getpid()} is writing it"]

    assert store.clean(dry_run=True) == expected
    assert all(p.exists() for p in expected)
    r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(tmp_path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == skipped + [f"would remove {p}" for p in expected] + [
        f"{len(expected)} item(s) to remove"]
    assert all(p.exists() for p in expected)

    r = CliRunner().invoke(cli, ["cache", "clean", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == skipped + [f"removing {p}" for p in expected] + [
        f"{len(expected)} item(s) removed"]
    assert not any(p.exists() for p in expected)
    assert all(p.is_file() for p in keep) and live.is_file()
    assert [i.status for i in store.verify()] == ["complete"]
    with store.open(key("clean")) as e:
        np.testing.assert_array_equal(e.vectors(), _expected(20))
    assert store.clean(dry_run=False) == []


def test_layout_names_every_folder_of_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featcache.cache import StoreLayout, model_cache_root, slug
    from featcache.cache.store import slug as old_slug

    store = FeatureStore(tmp_path)
    assert slug is old_slug and slug("noise:std=0.1") == "noise_std=0.1"
    assert store.runs_dir == tmp_path / "runs" and store.run_dir("ft-x") == tmp_path / "runs" / "ft-x"
    assert store.heads_root("k") == tmp_path / "heads" / "k"
    assert store.heads_dir("k", fold=2, seed=1, model="late") == tmp_path / "heads" / "k" / "fold-2" / "seed-1" / "late"
    assert store.text_analysis_path("/x/my model", "ab") == tmp_path / "text-analysis" / "my_model-ab.json"
    assert store.weight_hashes_path == tmp_path / "models" / "weight-hashes.json"
    assert StoreLayout(tmp_path).heads_dir("k", fold=2, seed=1, model="late") == store.heads_dir(
        "k", fold=2, seed=1, model="late")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # naming creates nothing

    monkeypatch.setenv("FEATCACHE_MODELS", str(tmp_path / "m"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_cache_root() == tmp_path / "m"
    monkeypatch.delenv("FEATCACHE_MODELS")
    assert model_cache_root() == tmp_path / "xdg" / "featcache" / "models"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rule: only absolute paths count
    assert model_cache_root() == tmp_path / "home" / ".cache" / "featcache" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_cache_root() == tmp_path / "home" / ".cache" / "featcache" / "models"


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    from featcache.cache.atomic import atomic_dir

    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.bin").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_text("1")
        assert not out.exists()
    assert (out / "sub" / "a.bin").read_text() == "1"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask
    with pytest.raises(FileExistsError), atomic_dir(out) as tmp:
        (tmp / "b.bin").write_text("2")
    with atomic_dir(out, replace=True) as tmp:
        (tmp / "b.bin").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError), atomic_dir(tmp_path / "file", replace=True):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "model"]
