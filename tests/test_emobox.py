"""``--corpus emobox:DIR``: an EmoBox dataset folder read with its published folds, label map and speakers."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import fake_emobox
from conftest import one_line_error
from featcache.cli import cli
from featcache.data import load_corpus, read_emobox
from featcache.errors import DataError
from featcache.folds import make_fold
from tiny_models import tiny_wav2vec2


@pytest.fixture()
def emobox(tmp_path: Path) -> Path:
    return fake_emobox.build(tmp_path / "EmoBox")


def _keys(path: Path) -> list[str]:
    return [json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "featcache.data" and r.levelname == "WARNING"]


def test_reads_the_published_folds_and_warns_once(emobox: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        corpus = load_corpus(f"emobox:{emobox}")
    assert corpus.labels == ("Angry", "Happy", "Neutral", "Sad")  # label_map.json: exc and hap are Happy
    assert corpus.sessions == ("Fold 1", "Fold 2") and corpus.modalities == ("audio",) and len(corpus) == 30
    assert corpus.splits is None
    assert corpus.root == (emobox.parent.parent).resolve()  # the checkout holding data/ and downloads/
    for k in (1, 2):
        fold = make_fold(corpus, k)
        assert fold.test == tuple(sorted(_keys(emobox / f"fold_{k}" / f"fakebox_test_fold_{k}.jsonl")))
        assert sorted(fold.train + fold.dev) == sorted(_keys(emobox / f"fold_{k}" / f"fakebox_train_fold_{k}.jsonl"))
    u = corpus.by_id("fakebox-B_001")
    assert u.speaker == "B" and u.label == "Happy" and u.text is None
    assert u.audio == (emobox.parent.parent / "downloads" / "fakebox" / "B" / "B_001.wav").resolve()
    # metadata is a hint: the clip written at 22050 Hz while its rows say 16000 Hz has its real length
    misstated = corpus.by_id(f"fakebox-{fake_emobox.MISSTATED}")
    row = json.loads((emobox / "fold_1" / "fakebox_test_fold_1.jsonl").read_text().splitlines()[0])
    assert row["key"] == misstated.id and row["length"] == pytest.approx(0.3 * 22050 / 16000)
    assert misstated.duration == pytest.approx(0.3)
    assert any("1 clip differs from its listed length" in r.getMessage() for r in caplog.records)
    # speaker C is on both sides of both folds: one warning line for the read
    assert _warnings(caplog) == [f"emobox:{emobox}: Fold 1: 1 speaker on both sides, Fold 2: 1 speaker on both "
                                 "sides (used as published)"]


def test_labels_merge_and_a_bare_folder(emobox: Path) -> None:
    c = load_corpus(f"emobox:{emobox}", labels=("Happy", "Angry"))
    assert c.labels == ("Happy", "Angry") and len(c) == 18
    c = load_corpus(f"emobox:{emobox}", merge={"Sad": "Neutral"})
    assert c.labels == ("Angry", "Happy", "Neutral") and sum(u.label == "Neutral" for u in c) == 12
    with pytest.raises(DataError, match="unknown label 'hap' in --labels"):  # the classes, not the raw labels
        load_corpus(f"emobox:{emobox}", labels=("hap", "Angry"))
    assert load_corpus(str(emobox)).name == f"emobox:{emobox}"  # a folder with a label_map.json


def test_another_audio_root(emobox: Path, tmp_path: Path) -> None:
    fingerprint = read_emobox(emobox).fingerprint
    moved = tmp_path / "elsewhere"
    shutil.move(str(emobox.parent.parent / "downloads"), str(moved / "downloads"))
    missing = r"audio file missing \(listed in .*fakebox_test_fold_1.jsonl:1\).*\?audio=ROOT"
    with pytest.raises(DataError, match=missing):
        load_corpus(f"emobox:{emobox}")
    c = load_corpus(f"emobox:{emobox}?audio={moved}")
    assert c.root == moved.resolve() and c.name == f"emobox:{emobox}?audio={moved}"
    assert c.by_id("fakebox-A_001").audio == (moved / "downloads/fakebox/A/A_001.wav").resolve()
    assert c.fingerprint == fingerprint  # the wav paths are kept relative to the audio root
    with pytest.raises(DataError, match="unknown option 'audi' after '\\?'; emobox takes audio=ROOT"):
        load_corpus(f"emobox:{emobox}?audi={moved}")


def _drop_a_train_line(d: Path) -> None:
    f = d / "fold_1" / "fakebox_train_fold_1.jsonl"
    f.write_text("".join(f.read_text().splitlines(keepends=True)[1:]))


def _test_twice(d: Path) -> None:
    first = (d / "fold_1" / "fakebox_test_fold_1.jsonl").read_text().splitlines(keepends=True)[0]
    with (d / "fold_2" / "fakebox_test_fold_2.jsonl").open("a") as f:
        f.write(first)


def _valid_list(d: Path) -> None:
    shutil.copy(d / "fold_1" / "fakebox_test_fold_1.jsonl", d / "fold_1" / "fakebox_valid_fold_1.jsonl")


def _unmapped_label(d: Path) -> None:
    (d / "label_map.json").write_text(json.dumps({k: v for k, v in fake_emobox.LABEL_MAP.items() if k != "sad"}))


def _no_speakers(d: Path) -> None:
    (d / "data.seg.wrd.stm").unlink()


@pytest.mark.parametrize(("change", "message"), [
    (_drop_a_train_line, re.escape("fakebox_train_fold_1.jsonl: fold 1 does not train on 1 utterance the other "
                                   "folds test on (e.g. 'fakebox-B_000'); this protocol is not supported yet")),
    (_test_twice, "is in the test lists of fold 1 (.*) and fold 2: the folds overlap; this protocol"),
    (_valid_list, "fakebox_valid_fold_1.jsonl: fold 1 of 2 has a published valid \\(dev\\) list; this protocol"),
    (_unmapped_label, "fakebox_test_fold_1.jsonl:5: label 'sad' of 'fakebox-A_004' is not in .*label_map.json"),
])
def test_what_is_refused_in_one_line(emobox: Path, change: Callable[[Path], None], message: str) -> None:
    change(emobox)
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"emobox:{emobox}"])
    line = one_line_error(r)
    assert re.search(message, line), line


def test_without_speakers_each_fold_is_one(emobox: Path, caplog: pytest.LogCaptureFixture) -> None:
    _no_speakers(emobox)
    with caplog.at_level("WARNING"):
        c = read_emobox(emobox)
    assert {u.speaker for u in c} == {"Fold 1", "Fold 2"}
    assert _warnings(caplog) == [f"{emobox}: no speakers (no spk field, no data.seg.wrd.stm); each fold counts as "
                                 "one speaker"]


def test_data_folds_lists_the_published_folds_with_speakers_per_side(emobox: Path) -> None:
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"emobox:{emobox}"])
    assert r.exit_code == 0, r.output
    lines = [ln.split() for ln in r.output.splitlines() if ln.split() and ln.split()[0] in ("fold", "1", "2")]
    head = ["fold", "test", "fold", "train", "dev", "test", "spk", "train", "spk", "dev", "spk", "test", "spk",
            "shared", "digest"]
    assert lines[0] == head
    for row in lines[1:]:  # 15 utterances per test list (A or B, and half of C); 2 speakers per side, C shared
        assert row[1:3] == ["Fold", row[0]] and int(row[3]) + int(row[4]) == 15 and int(row[5]) == 15
        assert row[6:10] == ["2", "2", "2", "1"]
    assert len(lines) == 3


def test_one_fold_is_a_fixed_split(tmp_path: Path) -> None:
    data = fake_emobox.build_fixed(tmp_path / "EmoBox")
    c = load_corpus(f"emobox:{data}")
    assert c.splits == {"train": "train", "valid": "dev", "test": "test"}
    assert c.sessions == ("test",) and c.partitions == ("train", "valid", "test")
    fold = make_fold(c, 1)
    assert fold.dev_mode == "corpus"
    for side, part in (("train", "train"), ("dev", "valid"), ("test", "test")):
        assert fold.split(side) == tuple(sorted(_keys(data / "fold_1" / f"fakebox_{part}_fold_1.jsonl")))
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"emobox:{data}"])
    assert r.exit_code == 0, r.output
    row = next(ln.split() for ln in r.output.splitlines() if ln.startswith("   1"))
    assert row[:5] == ["1", "test", "10", "10", "10"] and row[5:9] == ["1", "1", "1", "0"]  # a speaker per list
    assert "train: train; dev: the corpus's own (valid)" in r.output
    (data / "fold_1" / "fakebox_valid_fold_1.jsonl").unlink()
    fold = make_fold(load_corpus(f"emobox:{data}"), 1)
    assert fold.dev_mode == "stratified" and len(fold.train) + len(fold.dev) == 10  # no valid list: today's rule
    twice = (data / "fold_1" / "fakebox_test_fold_1.jsonl").read_text().splitlines(keepends=True)[0]
    with (data / "fold_1" / "fakebox_train_fold_1.jsonl").open("a") as f:
        f.write(twice)
    with pytest.raises(DataError, match=r"fakebox_test_fold_1.jsonl:1: 'fakebox-C_000' is also in the train list \(.*_train_fold_1.jsonl:11\)"):
        load_corpus(f"emobox:{data}")


def test_run_demo_end_to_end_audio_only(emobox: Path, tmp_path: Path) -> None:
    w2v = tiny_wav2vec2(tmp_path / "w2v")
    out = tmp_path / "report"
    r = CliRunner().invoke(cli, ["run", "--preset", "demo", "--corpus", f"emobox:{emobox}", "--audio-backbone",
                                 str(w2v), "--head-epochs", "2", "--seeds", "0", "--variant", "pitch", "--workers",
                                 "0", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "30 utterances, 2 folds, modalities audio; models audio" in r.output
    for name in ("tables.md", "summary.md", "results.csv", "predictions.h5", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    md = (out / "tables.md").read_text()  # the columns are the published folds, not sessions
    assert "| Model | Fold 1 | Fold 2 | Avg. | UAR |" in md and "Ses." not in md
