"""Byte-reproducible artifacts: two clean runs of the same command write the same bytes.

The same small study (tiny BERT and wav2vec 2.0, the fake corpus, one text and one audio variant, every
head) runs twice, each in a fresh Python process with its own hash seed, into two stores and report
folders at different absolute paths (of different lengths), more than a second apart. Then every file the
two runs wrote is compared byte for byte: heads, the store's own files, the report (tables, CSV, Markdown,
LaTeX, ``predictions.h5``, plots, ``report.html``, audio, browser data), and the report that
``featcache report`` writes again from ``predictions.h5``.

An entry may differ only in its creation time (real information, kept): its raw bytes after the
512-byte header must be equal everywhere except at the bytes of the stored ``created`` value, and the
header must be the valid seal of the bytes after it (so it differs only because it digests the time).
Each entry's datasets and every attribute but ``created`` are compared through h5py as well.

At the end: ``predictions.h5`` records a digest of its datasets; a flipped byte is one DamagedError line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.cache.backends import Block, HDF5Backend
from featcache.cache.integrity import HEADER_SIZE, file_problem
from featcache.cli import cli
from featcache.metrics import Predictions
from featcache.metrics.predictions import DIGEST_ATTR
from tiny_models import tiny_bert, tiny_wav2vec2

DRIVER = """
import json, sys
from featcache.cli import cli
for args in json.loads(sys.argv[1]):
    cli.main(args, prog_name="featcache", standalone_mode=False)
"""
"""Runs featcache commands one after the other in a fresh interpreter (an error ends it with a traceback)."""

CREATED = "created"
"""The entry attribute that holds its creation time, the one thing two runs may write differently."""


def _study(env: dict[str, Path], root: Path, *, hash_seed: str) -> Path:
    """Run the study into ``root`` (its store and reports) in a new process; returns ``root``."""
    root.mkdir(parents=True)
    store, report = root / "store", root / "report"
    common = ["--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(store), "--text-backbone", str(env["bert"]),
              "--audio-backbone", str(env["w2v"]), "--seeds", "0", "--head-epochs", "3"]
    commands = [
        ["run", *common, "--variant", "adj", "--variant", "pitch", "--workers", "0", "--device", "cpu",
         "--out", str(report)],
        ["report", "--predictions", str(report / "predictions.h5"), "--out", str(root / "report-again"),
         "--corpus", f"iemocap:{env['corpus']}", "--cache-dir", str(store)],
    ]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(commands)], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "PYTHONHASHSEED": hash_seed, "HF_HUB_OFFLINE": "1"},
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("repro")
    env = {
        "corpus": fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=2), audio=True, seconds=0.3),
        "bert": tiny_bert(d / "bert"),
        "w2v": tiny_wav2vec2(d / "w2v"),
    }
    first = _study(env, d / "first", hash_seed="1")
    time.sleep(1.1)  # entry times have whole seconds: every entry of the second run is created later
    second = _study(env, d / "a-second-run" / "elsewhere", hash_seed="2")
    return first, second


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _is_entry(rel: str) -> bool:
    return rel.startswith("store/features/") and rel.endswith(".h5")


def _first_difference(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} bytes"
    at = next(i for i in range(len(a)) if a[i] != b[i])
    return f"first differing byte at {at}: {a[max(0, at - 40):at + 40]!r} vs {b[max(0, at - 40):at + 40]!r}"


def _differences(runs: tuple[Path, Path], wanted: Callable[[str], bool]) -> dict[str, str]:
    """``relative path -> how it differs`` for the wanted files whose bytes differ between the runs."""
    first, second = (_files(r) for r in runs)
    assert first.keys() == second.keys()
    return {rel: _first_difference(first[rel].read_bytes(), second[rel].read_bytes())
            for rel in first if wanted(rel) and first[rel].read_bytes() != second[rel].read_bytes()}


def test_two_clean_runs_write_the_same_heads(runs: tuple[Path, Path]) -> None:
    """Weights, config and result.json of every head: a result.json that records its own folder (an absolute
    path) differs here by the length of the two paths."""
    heads = [rel for rel in _files(runs[0]) if rel.startswith("store/heads/")]
    assert len(heads) == 3 * 7 * 5  # config, weights and result of 7 models x 5 folds
    assert _differences(runs, lambda rel: rel.startswith("store/heads/")) == {}


def test_two_clean_runs_write_the_same_reports_and_store_files(runs: tuple[Path, Path]) -> None:
    files = _files(runs[0])
    kinds = {rel.split("/", 2)[1] if rel.startswith("store/") else rel.split("/", 1)[0] for rel in files}
    assert {"features", "heads", "store.json", "report", "report-again"} <= kinds, kinds
    for folder in ("report", "report-again"):
        report = {rel.split("/", 1)[1] for rel in files if rel.startswith(f"{folder}/")}
        assert {"tables.md", "tables.tex", "table3.csv", "results.csv", "summary.csv", "summary.md", "examples.md",
                "impact_paper.png", "impact_paper.svg", "report.html"} <= report, report
        assert any(r.startswith("audio/") for r in report) and any(r.startswith("browser/") for r in report)
    assert "report/predictions.h5" in files
    assert _differences(runs, lambda rel: not _is_entry(rel) and not rel.startswith("store/heads/")) == {}


def _created_span(raw: bytes, created: str) -> range:
    """Where the stored ``created`` value lies in an entry file's bytes (it occurs exactly once)."""
    stored = created.encode()
    assert raw.count(stored) == 1, created
    start = raw.index(stored)
    return range(start, start + len(stored))


def _h5_content(path: Path) -> dict[str, object]:
    """Every dataset (dtype, shape, layout, bytes) and every attribute but ``created`` of an entry."""
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        out["attrs"] = {k: f.attrs[k] for k in f.attrs if k != CREATED}
        out["order"] = list(f)
        for name in f:
            ds = f[name]
            values = ds[()]
            data = b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in values.tolist()) \
                if values.dtype.kind == "O" else values.tobytes()
            out[name] = (ds.dtype.str, ds.shape, ds.chunks, ds.compression, dict(ds.attrs), data)
    return out


def test_entries_differ_only_in_their_creation_time(runs: tuple[Path, Path]) -> None:
    first, second = (_files(r) for r in runs)
    entries = [rel for rel in first if _is_entry(rel)]
    assert len(entries) == 4  # text and audio, clean and one variant each
    for rel in entries:
        a, b = first[rel], second[rel]
        assert file_problem(a) == "" and file_problem(b) == "", rel  # each header seals the bytes after it
        with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            times = json.loads(fa.attrs[CREATED]), json.loads(fb.attrs[CREATED])
        assert times[0] < times[1], (rel, times)  # the runs' clocks differed, and the times say so
        assert _h5_content(a) == _h5_content(b), rel
        raw_a, raw_b = a.read_bytes(), b.read_bytes()
        assert len(raw_a) == len(raw_b), rel
        span_a = _created_span(raw_a, json.dumps(times[0]))
        assert _created_span(raw_b, json.dumps(times[1])) == span_a  # the same place, the same length
        diff = np.flatnonzero(np.frombuffer(raw_a, np.uint8) != np.frombuffer(raw_b, np.uint8))
        outside = [int(i) for i in diff if i >= HEADER_SIZE and i not in span_a]
        assert outside == [], (rel, outside[:10])  # HDF5 keeps no checksum over the attribute's bytes


def test_an_entry_image_does_not_depend_on_the_time_or_the_order_of_its_attributes() -> None:
    backend = HDF5Backend()
    block = Block(ids=["u2", "u1"], labels=np.array([1, 0]), vectors=np.arange(6, dtype=np.float32).reshape(2, 3),
                  records=['{"n":1}', ""])
    attrs = {"identity": {"variant": "adj", "backbone": "bert"}, "n": 2, "params": {"z": 1, "a": [1, 2]}}
    shuffled = {"params": {"a": [1, 2], "z": 1}, "n": 2, "identity": {"backbone": "bert", "variant": "adj"}}
    first = backend.entry_parts(block, attrs), backend.chunk_bytes(block, attrs)
    time.sleep(1.1)
    assert (backend.entry_parts(block, shuffled), backend.chunk_bytes(block, shuffled)) == first


# predictions.h5: a digest of its datasets, checked when it is read


def _predictions(n: int = 40) -> Predictions:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=n).astype(np.float32)
    conditions = np.array(["clean", "adj"] * (n // 2))
    return Predictions(
        fold=np.zeros(n, int), session=np.full(n, "1"), seed=np.zeros(n, int), model=np.full(n, "text"),
        condition=conditions, utt_id=np.array([f"Ses01F_{i // 2:03d}" for i in range(n)]),
        label=rng.integers(0, 4, n), pred=probs.argmax(1), probs=probs, affected=conditions == "adj",
        labels=("ang", "sad", "hap", "fru"),
        texts={("adj", f"Ses01F_{i:03d}"): f"a wonderful [MASK] number {i}" for i in range(n // 2)},
    )


def test_predictions_are_saved_byte_for_byte_with_their_digest(tmp_path: Path) -> None:
    preds = _predictions()
    a, b = preds.save(tmp_path / "a.h5"), preds.save(tmp_path / "one" / "more" / "b.h5")
    time.sleep(1.1)
    c = Predictions.load(a).save(tmp_path / "c.h5")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    with h5py.File(a, "r") as f:
        assert len(str(f.attrs[DIGEST_ATTR])) == 64


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def _report_error(path: Path, out: Path) -> str:
    line = one_line_error(CliRunner().invoke(cli, ["report", "--predictions", str(path), "--out", str(out)]))
    assert str(path) in line and "damaged predictions file" in line, line
    assert f"featcache evaluate --out {path.parent}" in line, line
    assert not out.exists()
    return line


def test_a_flipped_byte_in_a_string_is_one_damaged_line(tmp_path: Path) -> None:
    path = _predictions().save(tmp_path / "preds.h5")
    raw = path.read_bytes()
    assert raw.count(b"number 17") == 1  # a text, stored uncompressed in HDF5's global heap
    _flip(path, raw.index(b"number 17") + 7)  # "number 17" reads "number 07": still a valid string
    line = _report_error(path, tmp_path / "report")
    assert "checksum mismatch" in line, line


def test_a_flipped_byte_in_a_compressed_column_is_one_damaged_line(tmp_path: Path) -> None:
    path = _predictions().save(tmp_path / "preds.h5")
    with h5py.File(path, "r") as f:
        info = f["probs"].id.get_chunk_info(0)
    _flip(path, info.byte_offset + info.size // 2)
    _report_error(path, tmp_path / "report")  # inflating fails, or the values read differ from the digest


def test_an_uncompressed_column_with_a_flipped_byte_and_a_cut_file_are_one_damaged_line(tmp_path: Path) -> None:
    path = _predictions().save(tmp_path / "preds.h5")
    with h5py.File(path, "a") as f:  # rewrite one column contiguous, as it was: only the layout changes
        values = f["label"][()]
        del f["label"]
        f.create_dataset("label", data=values)
        offset = f["label"].id.get_offset()
    Predictions.load(path)  # the digest covers the values, not their layout
    _flip(path, offset + 8 * 3)
    assert "checksum mismatch" in _report_error(path, tmp_path / "report")
    cut = _predictions().save(tmp_path / "cut.h5")
    cut.write_bytes(cut.read_bytes()[:1000])
    assert "cannot read it" in _report_error(cut, tmp_path / "report-cut")


def test_predictions_written_before_the_digest_are_still_read(tmp_path: Path) -> None:
    preds = _predictions()
    path = preds.save(tmp_path / "old.h5")
    with h5py.File(path, "a") as f:
        del f.attrs[DIGEST_ATTR]
    again = Predictions.load(path)
    assert np.array_equal(again.probs, preds.probs) and again.texts == preds.texts and again.labels == preds.labels
    r = CliRunner().invoke(cli, ["report", "--predictions", str(path), "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
