"""The bad-input battery: every input or environment error is one ``Error:`` line naming the file (or
option), the problem and the fix, with no traceback, and the store is left byte for byte as it was.

Each case copies a pristine corpus and a store that already holds a complete entry, breaks one input,
runs one command and compares every path under the store (files by content, folders by name) before
and after. A separate test kills ``featcache extract --workers 1`` with SIGKILL and checks that its
DataLoader worker goes too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.cli import cli
from featcache.errors import StoreError
from featcache.workers import make_loader
from tiny_models import tiny_wav2vec2

#: The utterance every bad-audio case breaks: the first in id order.
VICTIM = "Ses01F_impro01_F000"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus (``I/``), a tiny audio backbone (``w2v/``) and a store (``cache/``) holding its complete
    clean audio entry, built once; each case works on a copy."""
    d = tmp_path_factory.mktemp("pristine")
    tiny_wav2vec2(d / "w2v")
    corpus = fake_iemocap.build(d / "I", fake_iemocap.small_counts(per_cell=1), audio=True, seconds=0.2)
    r = CliRunner().invoke(cli, ["extract", "--corpus", f"iemocap:{corpus}", "--cache-dir", str(d / "cache"),
                                 "--modality", "audio", "--audio-backbone", str(d / "w2v"), "--workers", "0",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((d / "cache").rglob("*.h5"))) == 1
    return d


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a file's SHA-256, or ``dir`` for a folder."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _victim(root: Path) -> Path:
    return next(root.rglob(f"{VICTIM}.wav"))


# ----------------------------------------------------------------------------------------------- breakages
# Each takes the case folder (corpus in I/) and returns what the error line must name: the file, or the option.


def _empty_wav(d: Path) -> str:
    sf.write(_victim(d), np.zeros(0, np.float32), 16000)
    return str(_victim(d))


def _zero_bytes(d: Path) -> str:
    _victim(d).write_bytes(b"")
    return str(_victim(d))


def _truncated_header(d: Path) -> str:
    wav = _victim(d)
    wav.write_bytes(wav.read_bytes()[:20])
    return str(wav)


def _text_named_wav(d: Path) -> str:
    _victim(d).write_text("this is not audio, only text in a file named .wav\n" * 20)
    return str(_victim(d))


def _nan_samples(d: Path) -> str:
    wav = _victim(d)
    y, sr = sf.read(wav, dtype="float32")
    y[10], y[20] = np.nan, np.inf
    sf.write(wav, y, sr, subtype="FLOAT")
    return str(wav)


def _symlink_loop(d: Path) -> str:
    """The victim replaced by a symbolic link to itself (opening it: ELOOP)."""
    wav = _victim(d)
    wav.unlink()
    wav.symlink_to(wav.name)
    return str(wav)


def _symlink_loop_of_two(d: Path) -> str:
    """The victim replaced by a link to a link back to it (a -> b -> a)."""
    wav = _victim(d)
    other = wav.with_name(f"{VICTIM}-b.wav")
    wav.unlink()
    other.symlink_to(wav.name)
    wav.symlink_to(other.name)
    return str(wav)


def _manifest(d: Path, rows: list[str], *, name: str = "m.csv", header: str = "id,label,session,audio") -> Path:
    m = d / name
    m.write_bytes((header + "\n" + "\n".join(rows) + "\n").encode("utf-8"))
    return m


def _audio_rows(d: Path) -> list[str]:
    wavs = sorted((d / "I").rglob("*.wav"))[:6]
    return [f"{w.stem},{'ang' if i % 2 else 'sad'},{1 + i % 3},{w.relative_to(d).as_posix()}" for i, w in enumerate(wavs)]


def _manifest_to_text_file(d: Path) -> str:
    notes = d / "notes.txt"
    notes.write_text("a list of utterances, not audio\n")
    rows = _audio_rows(d)
    rows[2] = rows[2].rsplit(",", 1)[0] + ",notes.txt"
    _manifest(d, rows)
    return str(notes)


def _manifest_audio_loop(d: Path) -> str:
    """A manifest (line 4 lists the broken clip) whose audio file is a symbolic link to itself."""
    rows = _audio_rows(d)
    _manifest(d, rows)
    wav = d / rows[2].rsplit(",", 1)[1]
    wav.unlink()
    wav.symlink_to(wav.name)
    return str(wav)


def _non_utf8_manifest(d: Path) -> str:
    m = _manifest(d, _audio_rows(d))
    lines = m.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b",", b"\xe9,", 1)  # Latin-1 'e acute' in line 3's id
    m.write_bytes(b"\n".join(lines))
    return str(m)


def _duration_abc(d: Path) -> str:
    rows = [f"{r},{'abc' if i == 3 else '0.2'}" for i, r in enumerate(_audio_rows(d))]
    return str(_manifest(d, rows, header="id,label,session,audio,duration"))


TEXT_HEADER = "id,label,session,text"


def _text_rows(n: int = 6) -> list[str]:
    return [f"t{i},{'ang' if i % 2 else 'sad'},{1 + i % 3},word {i}" for i in range(n)]


def _csv_unquoted_comma(d: Path) -> str:
    rows = _text_rows()
    rows[1] = rows[1].replace("word 1", "well, no")  # line 3: 5 fields under a 4-column header
    return str(_manifest(d, rows, header=TEXT_HEADER))


def _csv_too_few_fields(d: Path) -> str:
    rows = _text_rows()
    rows[1] = rows[1].rsplit(",", 1)[0]  # line 3: 3 fields under a 4-column header
    return str(_manifest(d, rows, header=TEXT_HEADER))


def _csv_empty_label(label: str) -> Callable[[Path], str]:
    def breakage(d: Path) -> str:
        rows = _text_rows()
        rows[2] = rows[2].replace(",ang,", f",{label},").replace(",sad,", f",{label},")  # line 4
        return str(_manifest(d, rows, header=TEXT_HEADER))

    return breakage


def _csv_header_twice(d: Path) -> str:
    rows = _text_rows()
    rows.insert(3, TEXT_HEADER)  # line 5: two manifests joined
    return str(_manifest(d, rows, header=TEXT_HEADER))


def _jsonl(d: Path, *, field: str, value: object) -> str:
    """A text JSONL manifest in the corpus folder (``{corpus}/m.jsonl``) whose line 2 has ``field: value``."""
    rows = [{"id": f"t{i}", "label": "ang" if i % 2 else "sad", "session": 1 + i % 3, "speaker": "s", "text": "hi"}
            for i in range(4)]
    rows[1][field] = value
    m = d / "I" / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(m)


def _text_manifest_and_option(option: str) -> Callable[[Path], str]:
    """A good text manifest (a bad option): the line names the option."""

    def breakage(d: Path) -> str:
        _manifest(d, _text_rows(), header=TEXT_HEADER)
        return option

    return breakage


def _unknown_kind(d: Path) -> str:
    """Nothing broken (a spec of an unknown kind): the line names the spec."""
    return f"foo:{d / 'I'}"


def _corpus(d: Path) -> str:
    """Nothing broken (a bad option): the line names the corpus."""
    return str(d / "I")


def _seeds_option(d: Path) -> str:
    """Nothing broken (a bad option that needs no corpus to judge): the line names the option."""
    del d
    return "--seeds"


def _option(flag: str) -> Callable[[Path], str]:
    """Nothing broken (a bad value of ``flag``): the line names the option."""

    def breakage(d: Path) -> str:
        del d
        return flag

    return breakage


def _merge_option(d: Path) -> str:
    """Nothing broken (a bad option that needs no corpus to judge): the line names the option."""
    del d
    return "--merge"


# ----------------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: Test id.
        breakage: Breaks the case folder's input; returns the file (or option) the error line must name.
        args: The command after ``featcache``; ``{corpus}``, ``{manifest}``, ``{cache}`` and ``{w2v}`` are
            filled in.
        expected: Text the error line must hold (the problem and the fix).
    """

    id: str
    breakage: Callable[[Path], str]
    args: tuple[str, ...]
    expected: tuple[str, ...]


def _extract(variant: str, workers: int, corpus: str = "iemocap:{corpus}") -> tuple[str, ...]:
    return ("extract", "--corpus", corpus, "--cache-dir", "{cache}", "--modality", "audio", "--audio-backbone",
            "{w2v}", "--variant", variant, "--workers", str(workers), "--batch-size", "64", "--device", "cpu")


EMPTY = ("audio file is empty (0 samples)", "re-export it or drop the utterance")
UNREADABLE = ("unreadable audio", "re-export it as a 16 kHz mono PCM wav")
NONFINITE = ("NaN or infinite", "re-export it or drop the utterance")
MANIFEST = "manifest:{manifest}"
LOOP = ("symbolic link loop (too many levels of symbolic links)", "point the link at the audio file")
EMPTY_LABEL = ("empty label", "fill it in or drop the row")

CASES = [
    *(Case(f"{name}-workers{w}", brk, _extract("clean", w), exp)
      for name, brk, exp in (("empty-wav", _empty_wav, EMPTY), ("zero-bytes", _zero_bytes, UNREADABLE),
                             ("truncated-header", _truncated_header, UNREADABLE),
                             ("text-named-wav", _text_named_wav, UNREADABLE))
      for w in (0, 1)),
    *(Case(f"manifest-audio-is-text-workers{w}", _manifest_to_text_file, _extract("clean", w, MANIFEST), UNREADABLE)
      for w in (0, 1)),
    *(Case(f"{name}-workers{w}", brk, _extract("clean", w), LOOP)
      for name, brk in (("audio-symlink-loop", _symlink_loop), ("audio-symlink-loop-of-two", _symlink_loop_of_two))
      for w in (0, 1)),
    Case("manifest-audio-symlink-loop", _manifest_audio_loop, _extract("clean", 0, MANIFEST),
         (*LOOP, "(listed in manifest m.csv:4)")),
    Case("nan-clean-workers1", _nan_samples, _extract("clean", 1), NONFINITE),
    Case("nan-pitch-workers1", _nan_samples, _extract("pitch", 1), NONFINITE),
    Case("nan-pitch-workers0", _nan_samples, _extract("pitch", 0), NONFINITE),
    Case("manifest-not-utf8", _non_utf8_manifest, _extract("clean", 0, MANIFEST), (":3: not UTF-8", "save it as UTF-8")),
    Case("manifest-duration-abc", _duration_abc, _extract("clean", 0, MANIFEST),
         (":5: duration 'abc'", "write e.g. 2.5, or leave it empty")),
    Case("extract-fold-x", _corpus, (*_extract("clean", 0), "--fold", "x"),
         ("--fold 'x': not a fold number", "has folds 1..5")),
    Case("extract-fold-9", _corpus, (*_extract("clean", 0), "--fold", "9"), ("--fold 9:", "has folds 1..5")),
    Case("finetune-fold-9", _corpus, ("finetune", "--corpus", "iemocap:{corpus}", "--cache-dir", "{cache}",
                                       "--modality", "audio", "--audio-backbone", "{w2v}", "--fold", "9",
                                       "--workers", "1", "--device", "cpu"),
         ("--fold 9:", "has folds 1..5")),
    *(Case(f"seeds-{seeds}", _seeds_option, ("train-heads", "--corpus", "iemocap:{corpus}", "--cache-dir", "{cache}",
                                        "--audio-backbone", "{w2v}", "--models", "audio", "--seeds", seeds),
           (f"--seeds '{seeds}'", "write whole numbers separated by commas")) for seeds in ("x", "0,x")),
    Case("seeds-0,0", _seeds_option, ("train-heads", "--corpus", "iemocap:{corpus}", "--cache-dir", "{cache}",
                                     "--audio-backbone", "{w2v}", "--models", "audio", "--seeds", "0,0"),
         ("--seeds 0,0", "each seed once")),
    *(Case(f"{command}{flag}-{value}", _option(flag), (*_extract("clean", 0), flag, value) if command == "extract" else
           ("finetune", "--corpus", "iemocap:{corpus}", "--cache-dir", "{cache}", "--modality", "audio",
            "--audio-backbone", "{w2v}", "--fold", "1", "--workers", "0", "--device", "cpu", flag, value),
           (f"Invalid value for '{flag}': {value} is not in the range x>=1",))
      for command, flag, value in (("extract", "--max-samples", "0"), ("extract", "--pad-to", "-1"),
                                   ("extract", "--batch-size", "0"), ("extract", "--batch-size", "-3"),
                                   ("finetune", "--batch-size", "0"), ("finetune", "--batch-size", "-3"))),
    Case("manifest-unquoted-comma", _csv_unquoted_comma, ("data", "stats", "--corpus", MANIFEST),
         (":3: 5 fields, the header has 4", 'quote a field that holds a comma')),
    Case("manifest-too-few-fields", _csv_too_few_fields, ("data", "stats", "--corpus", MANIFEST),
         (":3: 3 fields, the header has 4", "fill in the missing fields")),
    *(Case(f"manifest-label-{name}", _csv_empty_label(label), ("data", "stats", "--corpus", MANIFEST),
           (":4: empty label in row 't2'", *EMPTY_LABEL)) for name, label in (("empty", ""), ("blank", "  "))),
    *(Case(f"jsonl-label-{name}", functools.partial(_jsonl, field="label", value=value),
           ("data", "stats", "--corpus", "manifest:{corpus}/m.jsonl"), (":2: empty label in row 't1'", *EMPTY_LABEL))
      for name, value in (("empty", ""), ("null", None), ("blank", " "))),
    Case("manifest-header-twice", _csv_header_twice, ("data", "stats", "--corpus", MANIFEST),
         (":5: the header line again", "remove it")),
    *(Case(f"jsonl-{field}-not-scalar", functools.partial(_jsonl, field=field, value=value),
           ("data", "stats", "--corpus", "manifest:{corpus}/m.jsonl"),
           (f":2: '{field}' is ", "not one value; write a single string or number"))
      for field, value in (("label", ["ang"]), ("session", {"n": 1}), ("speaker", ["a", "b"]), ("id", [1]),
                           ("text", ["hi", "there"]))),
    Case("merge-empty-target", _text_manifest_and_option("--merge"),
         ("data", "stats", "--corpus", MANIFEST, "--merge", "ang="),
         ("'ang=' has an empty target", "name both labels, SRC=DST")),
    Case("merge-empty-source", _text_manifest_and_option("--merge"),
         ("data", "stats", "--corpus", MANIFEST, "--merge", "=hap"),
         ("'=hap' has an empty source", "name both labels, SRC=DST")),
    Case("merge-empty-source-iemocap", _merge_option,
         ("data", "stats", "--corpus", "iemocap:{corpus}", "--merge", "exc=hap,=hap"),
         ("'=hap' has an empty source", "name both labels, SRC=DST")),
    Case("corpus-unknown-kind", _unknown_kind, ("data", "stats", "--corpus", "foo:{corpus}"),
         ("unknown corpus kind 'foo'", "iemocap (iemocap:DIR)", "manifest (manifest:FILE.csv|.jsonl)")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_leaves_the_store_as_it_was(case: Case, pristine: Path, tmp_path: Path) -> None:
    shutil.copytree(pristine / "I", tmp_path / "I")
    shutil.copytree(pristine / "cache", tmp_path / "cache")
    before = _snapshot(tmp_path / "cache")
    named = case.breakage(tmp_path)
    fill = {"corpus": str(tmp_path / "I"), "manifest": str(tmp_path / "m.csv"), "cache": str(tmp_path / "cache"),
            "w2v": str(pristine / "w2v")}
    args = [a.format(**fill) for a in case.args]
    line = one_line_error(CliRunner().invoke(cli, args))
    assert named in line, line
    for text in case.expected:
        assert text in line, (text, line)
    assert _snapshot(tmp_path / "cache") == before  # the complete entry too, and no .lock, .partial or runs/ left
    if case.args[0] == "finetune":
        assert not (tmp_path / "cache" / "runs").exists()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_wav_in_fine_tuning_is_one_line_from_a_forkserver_worker_too(workers: int, pristine: Path,
                                                                            tmp_path: Path) -> None:
    # fine-tuning's audio workers are forkserver processes: the error crosses a pickle, as itself
    shutil.copytree(pristine / "I", tmp_path / "I")
    named = _truncated_header(tmp_path)
    session = int(re.search(r"Ses(\d\d)", Path(named).name).group(1))  # type: ignore[union-attr]
    fold = 1 + session % 5  # another session is left out: the broken clip is in the training sessions
    line = one_line_error(CliRunner().invoke(cli, [
        "finetune", "--corpus", f"iemocap:{tmp_path / 'I'}", "--cache-dir", str(tmp_path / "cache"), "--modality",
        "audio", "--audio-backbone", str(pristine / "w2v"), "--fold", str(fold), "--workers", str(workers),
        "--device", "cpu"]))
    assert named in line, line
    for text in UNREADABLE:
        assert text in line, (text, line)


class _Items(torch.utils.data.Dataset):
    """Items 0..5; item 3 raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> int:
        if i == 3:
            raise self.error
        return i


@pytest.mark.parametrize("batch_size", [None, 2])
@pytest.mark.parametrize("workers", [0, 1])
def test_loader_raises_a_workers_input_error_as_itself(workers: int, batch_size: int | None) -> None:
    loader = make_loader(_Items(StoreError("x.h5: broken; delete it")), num_workers=workers, batch_size=batch_size)
    seen = []
    with pytest.raises(StoreError) as info:
        seen.extend(loader)
    assert str(info.value) == "x.h5: broken; delete it"  # the message alone: no worker traceback in it
    assert len(seen) == (3 if batch_size is None else 1)  # items before the bad one arrive in order
    # any other exception is a bug: torch's report, traceback included, is kept
    with pytest.raises(ValueError, match="Traceback" if workers else "bug"):
        list(make_loader(_Items(ValueError("bug")), num_workers=workers, batch_size=batch_size))


def test_bad_audio_in_a_finetune_worker_is_one_line(pristine: Path, tmp_path: Path) -> None:
    """Fine-tuning batches items in the worker (a collate function): the error still comes out as itself."""
    shutil.copytree(pristine / "I", tmp_path / "I")
    wav = _empty_wav(tmp_path)
    r = CliRunner().invoke(cli, ["finetune", "--corpus", f"iemocap:{tmp_path / 'I'}", "--cache-dir",
                                 str(tmp_path / "cache"), "--modality", "audio", "--audio-backbone",
                                 str(pristine / "w2v"), "--fold", "2", "--max-epochs", "1", "--batch-size", "4",
                                 "--workers", "1", "--device", "cpu"])
    line = one_line_error(r)
    assert wav in line and "audio file is empty" in line, line


# ----------------------------------------------------------------------------------------------- killed parent

SLOW_WORKER_CLI = (
    "import sys, time\n"
    "import featcache.extract as x\n"
    "load = x.load_audio\n"
    "def slow_load(*a, **k):\n"
    "    time.sleep(30)\n"
    "    return load(*a, **k)\n"
    "x.load_audio = slow_load\n"
    "from featcache.cli import main\n"
    "sys.argv[0] = 'featcache'\n"
    "main()\n"
)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that run the same command line (its forked workers)."""

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        child = int(stat.parent.name)
        if int(fields[1]) == pid and _cmdline(child) == _cmdline(pid):
            out.append(child)
    return out


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _outliving(pids: list[int], *, within: float) -> list[int]:
    """The processes of ``pids`` still running ``within`` seconds from now (killed, so no test leaves them behind)."""
    deadline = time.time() + within
    while time.time() < deadline and any(_alive(w) for w in pids):
        time.sleep(0.05)
    left = [w for w in pids if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    return left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux only")
def test_workers_die_with_a_killed_parent(pristine: Path, tmp_path: Path) -> None:
    args = ["extract", "--corpus", f"iemocap:{pristine / 'I'}", "--cache-dir", str(tmp_path / "cache"),
            "--modality", "audio", "--audio-backbone", str(pristine / "w2v"), "--workers", "1", "--device", "cpu"]
    p = subprocess.Popen([sys.executable, "-c", SLOW_WORKER_CLI, *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and p.poll() is None and not workers:
            workers = _children(p.pid)
            time.sleep(0.05)
        assert workers, "no DataLoader worker appeared"
        time.sleep(0.5)  # the worker is inside its first item now (30 s: torch's own parent check waits for its end)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    left = _outliving(workers, within=5)
    assert left == [], f"worker(s) {left} outlived their killed parent"


SLOW_FINETUNE_CLI = (
    "import sys, time\n"
    "import featcache.finetune.loop as ft\n"
    "step = ft._step\n"
    "def slow_step(*a, **k):\n"
    "    time.sleep(30)\n"
    "    return step(*a, **k)\n"
    "ft._step = slow_step\n"
    "from featcache.cli import main\n"
    "sys.argv[0] = 'featcache'\n"
    "main()\n"
)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parents.items() if p in frontier]
        out += kids
        frontier = kids
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux only")
def test_fine_tuning_workers_die_with_a_killed_parent(pristine: Path, tmp_path: Path) -> None:
    # fine-tuning's audio workers are children of a forkserver, not of the training process: they
    # watch it themselves, and the server ends once they have
    args = ["finetune", "--corpus", f"iemocap:{pristine / 'I'}", "--cache-dir", str(tmp_path / "cache"),
            "--modality", "audio", "--audio-backbone", str(pristine / "w2v"), "--fold", "1", "--workers", "1",
            "--device", "cpu"]
    p = subprocess.Popen([sys.executable, "-c", SLOW_FINETUNE_CLI, *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        below: list[int] = []
        while time.time() < deadline and p.poll() is None and len(below) < 3:  # tracker, server, worker
            below = [d for d in _descendants(p.pid) if b"forkserver" in _cmdline(d) or b"resource_tracker" in _cmdline(d)]
            time.sleep(0.05)
        assert len(below) >= 3, f"no forkserver worker appeared ({below})"
        time.sleep(0.5)  # inside the slow first step now
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    left = _outliving(below, within=10)
    assert left == [], f"process(es) {left} outlived their killed parent"
