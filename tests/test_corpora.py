"""The native readers of MSP-Podcast (``msp-podcast:DIR``) and MELD (``meld:DIR``), each on a fake tree in the
release's layout: their partitions as a fixed split, their text, speakers and groups."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fake_meld
import fake_msp_podcast
from conftest import one_line_error
from featcache.cli import cli
from featcache.data import load_audio, load_corpus, read_meld, read_msp_podcast
from featcache.errors import DataError
from featcache.folds import make_fold, make_folds


@pytest.fixture()
def msp(tmp_path: Path) -> Path:
    return fake_msp_podcast.build(tmp_path / "MSP-Podcast")


@pytest.fixture()
def meld(tmp_path: Path) -> Path:
    return fake_meld.build(tmp_path / "MELD.Raw")


def _labels_csv(root: Path) -> list[dict[str, str]]:
    with (root / "Labels" / "labels_consensus.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_msp_podcast_reads_its_partitions_text_and_speakers(msp: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        c = load_corpus(f"msp-podcast:{msp}")
    rows = _labels_csv(msp)
    kept = [r for r in rows if r["EmoClass"] in "ASHN" and r["Split_Set"] != "Test2"]
    assert c.labels == ("ang", "sad", "hap", "neu") and len(c) == len(kept) and c.modalities == ("text", "audio")
    assert c.splits == {"Train": "train", "Development": "dev", "Test1": "test"}
    assert c.sessions == ("Test1",) and c.partitions == ("Train", "Development", "Test1")
    (fold,) = make_folds(c)
    by_part = {p: tuple(sorted(Path(r["FileName"]).stem for r in kept if r["Split_Set"] == p))
               for p in ("Train", "Development", "Test1")}
    assert (fold.train, fold.dev, fold.test) == (by_part["Train"], by_part["Development"], by_part["Test1"])
    assert fold.test_session == "Test1" and fold.dev_mode == "corpus"
    first = kept[0]
    u = c.by_id(Path(first["FileName"]).stem)
    assert u.label == "ang" and u.text == fake_msp_podcast.WORDS["A"] and u.audio == (msp / "Audios" / first["FileName"]).resolve()
    assert u.speaker == first["SpkrID"] and u.groups == {"sex": "M" if first["Gender"] == "Male" else "F",
                                                         "speaker": first["SpkrID"]}
    unknown = [x for x in c if x.id in {Path(r["FileName"]).stem for r in kept if r["SpkrID"] == "Unknown"}]
    assert len(unknown) >= 2 and len({x.speaker for x in unknown}) == len(unknown)  # no one "Unknown" speaker
    assert all("speaker" not in x.groups and "sex" not in x.groups for x in unknown)
    assert any("clips of the other test sets left out (tested on Test1)" in r.getMessage() for r in caplog.records)


def test_msp_podcast_another_test_set_labels_and_no_transcripts(msp: Path, tmp_path: Path) -> None:
    c = load_corpus(f"msp-podcast:{msp}?test=Test2")
    assert c.sessions == ("Test2",) and {u.session for u in c} == {"Train", "Development", "Test2"}
    two = load_corpus(f"msp-podcast:{msp}?test=Test1,Test2")
    assert two.sessions == ("Test1", "Test2") and make_fold(two, 2).train == make_fold(two, 1).train
    c = load_corpus(f"msp-podcast:{msp}", labels=("neu", "hap", "sur"), merge={"xxx": "neu"})
    assert c.labels == ("neu", "hap", "sur") and {u.label for u in c} == {"neu", "hap", "sur"}
    with pytest.raises(DataError, match="no clip is in test set 'Test9'"):
        load_corpus(f"msp-podcast:{msp}?test=Test9")
    with pytest.raises(DataError, match=r"test= has no value; write \?test=Test1\[,Test2\]$"):
        load_corpus(f"msp-podcast:{msp}?test=")
    with pytest.raises(DataError, match=r"unknown option 'tset' after '\?'; msp-podcast takes test=Test1\[,Test2\]"):
        load_corpus(f"msp-podcast:{msp}?tset=Test2")
    audio_only = fake_msp_podcast.build(tmp_path / "bare", transcripts=False)
    assert read_msp_podcast(audio_only).modalities == ("audio",)
    assert load_corpus(str(msp)).name == f"msp-podcast:{msp}"  # a bare folder with Labels/labels_consensus.csv


def test_msp_podcast_bad_input_is_one_line(msp: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _labels_csv(msp)[0]["FileName"]
    (msp / "Transcripts" / first.replace(".wav", ".txt")).unlink()
    with caplog.at_level("WARNING"):
        c = read_msp_podcast(msp)
    assert Path(first).stem not in {u.id for u in c}
    assert any("1 clip without a transcript left out" in r.getMessage() for r in caplog.records)
    (msp / "Audios" / first).unlink()
    text = (msp / "Labels" / "labels_consensus.csv").read_text()
    (msp / "Labels" / "labels_consensus.csv").write_text(text.replace(",Train\n", ",Training\n", 1))
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"msp-podcast:{msp}"])
    assert "labels_consensus.csv:2: Split_Set 'Training'" in one_line_error(r)
    lines = text.splitlines(keepends=True)
    (msp / "Labels" / "labels_consensus.csv").write_text("".join(lines + lines[3:4]))
    with pytest.raises(DataError, match=rf"labels_consensus.csv:{len(lines) + 1}: .*\.wav listed twice \(first at line 4\)"):
        read_msp_podcast(msp)
    (msp / "Labels" / "labels_consensus.csv").write_text(text)
    (msp / "Transcripts").rename(msp / "T")
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"msp-podcast:{msp}"])
    assert f"{msp / 'Audios' / first}: audio file missing" in one_line_error(r)


def test_msp_podcast_data_folds_and_stats(msp: Path) -> None:
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"msp-podcast:{msp}"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("INFO:")]
    row = lines[1].split()
    assert row[:2] == ["1", "Test1"] and row[8] == "0"  # no speaker on both sides
    assert "train: Train; dev: the corpus's own (Development)" in r.output
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"msp-podcast:{msp}"])
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("INFO:")]
    assert lines[1].split()[:4] == ["Label", "Train", "Development", "Test1"]


def test_meld_reads_its_splits_text_and_clips(meld: Path) -> None:
    c = load_corpus(f"meld:{meld}")
    assert c.labels == ("ang", "sad", "hap", "neu") and c.modalities == ("text", "audio")
    assert c.sessions == ("test",) and c.partitions == ("train", "dev", "test")
    n = {s: d * p for s, (_c, _f, d, p) in fake_meld.SPLITS.items()}
    assert len(c) == sum(n.values()) * 4 // 5  # surprise is not kept
    u = c.by_id("train_dia0_utt1")
    assert u.label == "ang" and u.text == "I can't believe you did that!"  # cp1252's curly apostrophe, made plain
    assert u.speaker == "Rachel" and u.audio == (meld / "train_splits" / "dia0_utt1.wav").resolve()
    assert u.duration == pytest.approx(0.3)
    fold = make_fold(c, 1)
    assert fold.dev_mode == "corpus" and all(i.startswith("dev_") for i in fold.dev)
    assert all(i.startswith("train_") for i in fold.train) and all(i.startswith("test_") for i in fold.test)
    assert load_corpus(str(meld)).name == f"meld:{meld}"
    utf8 = fake_meld.build(meld.parent / "utf8", encoding="utf-8")
    assert read_meld(utf8).by_id("train_dia0_utt1").text == u.text


def test_meld_mp4_clips_and_missing_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    meld = fake_meld.build(tmp_path / "MELD.Raw", mp4=("test_dia0_utt0",))
    (meld / "train_splits" / "dia1_utt1.wav").unlink()
    with caplog.at_level("WARNING"):
        c = read_meld(meld)
    assert "train_dia1_utt1" not in {u.id for u in c}
    assert any("1 row without a clip left out" in r.getMessage() for r in caplog.records)
    clip = meld / "output_repeated_splits_test" / "dia0_utt0.mp4"
    assert c.by_id("test_dia0_utt0").audio == clip.resolve()
    with pytest.raises(DataError) as e:
        load_audio(clip)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{clip}: cannot decode the audio of this .mp4 clip")
    assert f"ffmpeg -i {clip} -vn -ac 1 -ar 16000 {clip.with_suffix('.wav')}" in msg
    # the converted audio beside it is taken instead
    import soundfile as sf

    sf.write(clip.with_suffix(".wav"), np.zeros(4800, np.float32), 16000)
    assert read_meld(meld).by_id("test_dia0_utt0").audio == clip.with_suffix(".wav").resolve()


def test_meld_text_only_and_bad_rows(meld: Path, caplog: pytest.LogCaptureFixture) -> None:
    for _c, folder, _d, _p in fake_meld.SPLITS.values():
        for f in (meld / folder).iterdir():
            f.unlink()
        (meld / folder).rmdir()
    with caplog.at_level("WARNING"):
        c = read_meld(meld)
    assert c.modalities == ("text",) and any("read as text only" in r.getMessage() for r in caplog.records)
    path = meld / "dev_sent_emo.csv"
    good = path.read_bytes()
    path.write_bytes(good.replace(b",neutral,neutral,", b",boredom,neutral,", 1))
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"meld:{meld}"])
    assert "dev_sent_emo.csv:5: emotion 'boredom' is none of neutral, joy" in one_line_error(r)
    path.write_bytes(good)
    (meld / "test_sent_emo.csv").unlink()
    with pytest.raises(DataError, match="test_sent_emo.csv: not found"):
        read_meld(meld)


def test_ravdess_by_its_file_names(tmp_path: Path) -> None:
    import fake_acted

    root = fake_acted.build_ravdess(tmp_path / "RAVDESS")
    c = load_corpus(f"ravdess:{root}")
    assert c.labels == ("ang", "sad", "hap", "neu") and c.modalities == ("text", "audio") and c.splits is None
    assert len(c) == 8 * 4 * 2  # 4 kept emotions x 2 statements per actor; songs and videos' audio skipped
    assert c.sessions == ("Fold 1", "Fold 2")  # actors 1-4 and 5-8
    u = c.by_id("03-01-05-01-02-01-07")
    assert (u.label, u.text, u.speaker, u.session, u.groups) == ("ang", "Dogs are sitting by the door", "Actor_07",
                                                                  "Fold 2", {"sex": "M"})
    for f in make_folds(c):  # speaker-independent
        assert not {c.by_id(i).speaker for i in f.test} & {c.by_id(i).speaker for i in f.train + f.dev}
    assert {u.label for u in load_corpus(f"ravdess:{root}", labels=("neu", "sur"), merge={"cal": "neu"})} == {"neu", "sur"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no RAVDESS audio file"):
        load_corpus(f"ravdess:{tmp_path / 'empty'}")


def test_crema_d_by_its_file_names(tmp_path: Path) -> None:
    import fake_acted

    root = fake_acted.build_crema_d(tmp_path / "CREMA-D")
    c = load_corpus(f"crema-d:{root}")
    assert c.labels == ("ang", "sad", "hap", "neu") and len(c) == 10 * 4 * 2
    assert c.sessions == tuple(f"Fold {k}" for k in range(1, 6))
    u = c.by_id("1003_DFA_HAP_XX")
    assert (u.label, u.text, u.speaker, u.session) == ("hap", "Don't forget a jacket", "1003", "Fold 2")
    r = CliRunner().invoke(cli, ["data", "folds", "--corpus", f"crema-d:{root}"])
    assert r.exit_code == 0, r.output
    rows = [ln.split() for ln in r.output.splitlines()[1:]]
    assert [row[:3] for row in rows] == [[str(k), "Fold", str(k)] for k in range(1, 6)]
    assert all(row[8] == "2" and row[9] == "0" for row in rows)  # two actors per test side, none shared


@pytest.mark.parametrize(("text", "plain"), [
    ("he\u00e2\u0080\u0099s here", "he's here"),  # UTF-8 read as Latin-1 once
    ("he\u00e2\u20ac\u2122s", "he's"),  # ... or as cp1252
    ("I can\u0092t", "I can't"),  # a stray cp1252 byte
    ("Oh\u2026  \u201cno\u201d \u2013 fine", 'Oh... "no" - fine'),
    ("caf\u00e9 ni\u00f1o", "caf\u00e9 ni\u00f1o"),  # real accents stay
])
def test_meld_text_is_made_plain(text: str, plain: str) -> None:
    from featcache.data.meld import plain_text

    assert plain_text(text) == plain
