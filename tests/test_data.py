from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.cli import cli
from featcache.data import (
    PAPER_LABELS,
    audio_duration,
    corpus_stats,
    load_audio,
    load_corpus,
    parse_merge,
    read_iemocap,
    read_manifest,
)
from featcache.errors import DataError


def test_full_size_fake_release_reproduces_table2(tmp_path: Path) -> None:
    root = fake_iemocap.build(tmp_path / "IEMOCAP")  # Table 1 counts, text only
    corpus = read_iemocap(root)
    stats = corpus_stats(corpus)
    assert corpus.labels == PAPER_LABELS
    assert stats.sessions == ("1", "2", "3", "4", "5")
    for label, per_session in fake_iemocap.TABLE2.items():
        assert [stats.counts[label].get(s, 0) for s in stats.sessions] == per_session
    assert stats.total == 5672
    assert {lab: sum(v.values()) for lab, v in stats.counts.items()} == {
        "fru": 1849, "ang": 1103, "sad": 1084, "hap": 1636
    }
    assert corpus.modalities == ("text",)
    table = stats.format()
    assert "1,849" in table and "32.6%" in table and "5,672" in table  # 1849 / 5672 = 32.60 %


def test_reader_fields(small_iemocap: Path) -> None:
    corpus = load_corpus(f"iemocap:{small_iemocap}")
    u = corpus.utterances[0]
    assert u.id.startswith("Ses01") and u.session == "1"
    assert u.speaker in ("Ses01F", "Ses01M")
    assert u.audio is not None and u.audio.is_file()
    assert u.duration == pytest.approx(2.5)
    assert corpus.modalities == ("text", "audio")
    # exc merged into hap, xxx dropped: 2 hap + 1 exc per session
    assert corpus_stats(corpus).counts["hap"] == {s: 3 for s in "12345"}
    assert all(x.label in PAPER_LABELS for x in corpus)
    assert not any("MXX" in x.id for x in corpus)


def test_label_options(small_iemocap: Path) -> None:
    c = read_iemocap(small_iemocap, labels=("ang", "sad", "hap", "exc", "fru"), merge={})
    assert corpus_stats(c).counts["exc"]["1"] == 1 and corpus_stats(c).counts["hap"]["1"] == 2
    with pytest.raises(DataError, match="unknown label 'joy'"):
        read_iemocap(small_iemocap, labels=("ang", "joy"))


def test_fingerprint_changes_with_content(small_iemocap: Path) -> None:
    a = read_iemocap(small_iemocap).fingerprint
    assert a == read_iemocap(small_iemocap).fingerprint
    f = next((small_iemocap / "Session1/dialog/transcriptions").glob("*.txt"))
    f.write_text(f.read_text().replace("]: ", "]: Well, ", 1))
    assert read_iemocap(small_iemocap).fingerprint != a


def test_manifest_csv_and_jsonl(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    (tmp_path / "m.csv").write_text("id,label,session,text,audio\nx1,joy,A,I am glad,a.wav\nx2,anger,B,go away,a.wav\n")
    c = read_manifest(tmp_path / "m.csv")
    assert c.labels == ("anger", "joy") and c.sessions == ("A", "B") and c.modalities == ("text", "audio")
    rows = [{"id": "t1", "label": "pos", "fold": 1, "text": "nice"}, {"id": "t2", "label": "neg", "fold": 2, "text": "bad"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    c2 = load_corpus(f"manifest:{tmp_path / 'm.jsonl'}")
    assert c2.modalities == ("text",) and c2.sessions == ("Fold 1", "Fold 2")  # a fold column alone: numbered folds
    (tmp_path / "audio.csv").write_text("id,label,session,audio\ny1,a,1,a.wav\ny2,b,2,a.wav\n")
    assert load_corpus(str(tmp_path / "audio.csv")).modalities == ("audio",)


def test_load_audio_converts_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 200 * t)], axis=1) * 0.5
    sf.write(tmp_path / "s.wav", stereo.astype(np.float32), 8000)
    with caplog.at_level("WARNING"):
        y = load_audio(tmp_path / "s.wav")
    assert y.ndim == 1 and y.dtype == np.float32 and abs(y.size - 16000) <= 2
    msgs = [r.getMessage() for r in caplog.records]
    assert any("downmixed" in m for m in msgs) and any("resampled to 16000" in m for m in msgs)
    with pytest.raises(DataError, match="2 channels; downmix"):
        load_audio(tmp_path / "s.wav", strict=True)
    sf.write(tmp_path / "m8k.wav", stereo[:, 0].astype(np.float32), 8000)
    with pytest.raises(DataError, match="sample rate 8000 Hz; resample to 16000"):
        load_audio(tmp_path / "m8k.wav", strict=True)


# ------------------------------------------------------------------ bad input through the CLI


def _stats(corpus: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["data", "stats", "--corpus", corpus])


def test_cli_stats_prints_breakdown(small_iemocap: Path) -> None:
    r = _stats(f"iemocap:{small_iemocap}")
    assert r.exit_code == 0, r.output
    assert "Ses. 1" in r.output and "Total" in r.output and "hap" in r.output
    assert "45 utterances" in r.output  # (4 labels x 2 + 1 exc) x 5 sessions


def test_error_missing_directory(tmp_path: Path) -> None:
    line = one_line_error(_stats(f"iemocap:{tmp_path / 'nope'}"))
    assert str(tmp_path / "nope") in line and "corpus directory not found" in line


def test_error_missing_session_subdirectory(small_iemocap: Path) -> None:
    import shutil

    shutil.rmtree(small_iemocap / "Session2" / "dialog" / "transcriptions")
    line = one_line_error(_stats(f"iemocap:{small_iemocap}"))
    assert "Session2/dialog/transcriptions: directory not found" in line


def test_error_malformed_emoevaluation_line(small_iemocap: Path) -> None:
    f = sorted((small_iemocap / "Session3/dialog/EmoEvaluation").glob("*.txt"))[0]
    lines = f.read_text().splitlines()
    idx = next(i for i, ln in enumerate(lines) if ln.startswith("["))
    lines[idx] = lines[idx].replace("\t", " ", 1)
    f.write_text("\n".join(lines) + "\n")
    line = one_line_error(_stats(f"iemocap:{small_iemocap}"))
    assert f"{f}:{idx + 1}: malformed EmoEvaluation line" in line


def test_error_unknown_label(small_iemocap: Path) -> None:
    f = sorted((small_iemocap / "Session4/dialog/EmoEvaluation").glob("*.txt"))[0]
    text = f.read_text()
    first = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith("["))
    lines = text.splitlines()
    parts = lines[first].split("\t")
    parts[2] = "joy"
    lines[first] = "\t".join(parts)
    f.write_text("\n".join(lines) + "\n")
    line = one_line_error(_stats(f"iemocap:{small_iemocap}"))
    assert f"{f}:{first + 1}: unknown label 'joy'" in line


def test_error_manifest_row_without_session(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,label,session,text\na,pos,1,ok\nb,neg,,bad\n")
    line = one_line_error(_stats(f"manifest:{tmp_path / 'm.csv'}"))
    assert f"{tmp_path / 'm.csv'}:3: row 'b' has no session" in line


def test_error_missing_wav(small_iemocap: Path) -> None:
    wav = next((small_iemocap / "Session1/sentences/wav").rglob("*.wav"))
    wav.unlink()
    line = one_line_error(_stats(f"iemocap:{small_iemocap}"))
    assert f"{wav}: wav file missing" in line


@pytest.mark.parametrize("kind", ["empty", "garbage", "symlink-loop", "folder"])
def test_load_audio_unusable_files(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "bad.wav"
    if kind == "empty":
        sf.write(p, np.zeros(0, np.float32), 16000)
        match = "audio file is empty"
    elif kind == "symlink-loop":  # made after the corpus was read: a DataLoader worker meets it here
        p.symlink_to(p.name)
        match = r"symbolic link loop \(too many levels of symbolic links\); point the link at the audio file"
    elif kind == "folder":
        p.mkdir()
        match = "not an audio file"
    else:
        p.write_bytes(b"RIFF\x00\x00junk" * 3)
        match = "unreadable audio"
    with pytest.raises(DataError, match=match) as e:
        load_audio(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    if kind in ("symlink-loop", "folder"):
        with pytest.raises(DataError, match=match):
            audio_duration(p)


# ------------------------------------------------------------------ data stats on a manifest with audio


def _audio_manifest(tmp_path: Path, rows: list[tuple[str, str, str, float, str]]) -> Path:
    """Write ``id,label,session,text,audio,duration`` with one silent 16 kHz wav per row of the given length."""
    (tmp_path / "wav").mkdir(exist_ok=True)
    lines = ["id,label,session,text,audio,duration"]
    for utt_id, label, session, seconds, listed in rows:
        sf.write(tmp_path / "wav" / f"{utt_id}.wav", np.zeros(int(16_000 * seconds), np.float32), 16_000)
        lines.append(f"{utt_id},{label},{session},hello,wav/{utt_id}.wav,{listed}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


def test_stats_durations_come_from_audio_headers_when_the_manifest_has_none(tmp_path: Path) -> None:
    m = _audio_manifest(tmp_path, [("a", "sad", "1", 0.5, ""), ("b", "ang", "1", 1.25, ""), ("c", "ang", "2", 2.0, "")])
    stats = corpus_stats(read_manifest(m))
    assert stats.seconds == {"ang": pytest.approx(3.25), "sad": pytest.approx(0.5)}
    r = _stats(f"manifest:{m}")
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split() for line in r.output.splitlines()[3:] if line and not line.startswith("-")}
    assert rows["ang"][-1] == "1.62" and rows["sad"][-1] == "0.50"  # mean seconds: 3.25 / 2, 0.5 / 1
    assert rows["Total"][-1] == "1.25" and rows["Total"][-2] == "0.00"  # 3.75 s / 3; 3.75 s = 0.00 h
    assert corpus_stats(read_manifest(m), read_audio_headers=False).seconds == {"ang": None, "sad": None}


def test_stats_listed_durations_win_over_headers(tmp_path: Path) -> None:
    m = _audio_manifest(tmp_path, [("a", "sad", "1", 0.5, "7.5"), ("b", "sad", "2", 1.0, "")])
    assert corpus_stats(read_manifest(m)).seconds == {"sad": pytest.approx(8.5)}


def test_stats_unreadable_audio_header_is_one_line(tmp_path: Path) -> None:
    m = _audio_manifest(tmp_path, [("a", "sad", "1", 0.5, "")])
    (tmp_path / "wav" / "a.wav").write_bytes(b"not a wav file at all")
    line = one_line_error(_stats(f"manifest:{m}"))
    assert f"{tmp_path / 'wav' / 'a.wav'}: unreadable audio header" in line


def test_stats_rows_follow_the_class_order_of_labels(tmp_path: Path) -> None:
    m = _audio_manifest(tmp_path, [("a", "sad", "1", 0.5, ""), ("b", "ang", "1", 0.5, ""), ("c", "hap", "2", 0.5, "")])
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"manifest:{m}", "--labels", "sad,hap,ang"])
    assert r.exit_code == 0, r.output
    first_column = [line.split()[0] for line in r.output.splitlines()[3:] if line and not line.startswith("-")]
    assert first_column == ["sad", "hap", "ang", "Total"]
    assert corpus_stats(load_corpus(f"manifest:{m}", labels=["hap", "ang", "sad"])).labels == ("hap", "ang", "sad")


# ------------------------------------------------------------------ values checked at the boundary


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "featcache.data" and r.levelname == "WARNING"]


def test_labels_lose_surrounding_whitespace_and_keep_their_case(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,label,session,text\na, ang ,1,x\nb,ang,1,x\nc,ANG,2,x\nd,sad\t,2,x\ne,Sad,2,x\n")
    with caplog.at_level("WARNING", logger="featcache.data"):
        c = read_manifest(m)
    assert c.labels == ("ANG", "Sad", "ang", "sad")  # case kept: four classes
    assert [u.label for u in c] == ["ang", "ang", "ANG", "sad", "Sad"]
    (line,) = _warnings(caplog)  # one line naming every pair
    assert str(m) in line and "'ANG' and 'ang'" in line and "'Sad' and 'sad'" in line and "\n" not in line
    assert "stay separate classes" in line and "--merge ANG=ang,Sad=sad" in line
    # --labels (and the API's labels) lose their whitespace too; the case twins are still named
    caplog.clear()
    with caplog.at_level("WARNING", logger="featcache.data"):
        kept = load_corpus(f"manifest:{m}", labels=[" ang", "sad "], merge={" ANG ": "ang"})
    assert kept.labels == ("ang", "sad") and len(kept) == 4
    (line,) = _warnings(caplog)
    assert "'Sad' and 'sad'" in line and "ANG" not in line  # merged: no longer two classes


def test_iemocap_labels_lose_surrounding_whitespace(small_iemocap: Path) -> None:
    c = read_iemocap(small_iemocap, labels=(" ang", "sad ", "hap", "fru"), merge={"exc ": " hap"})
    assert c.labels == ("ang", "sad", "hap", "fru")
    assert corpus_stats(c).counts["hap"]["1"] == 3


def test_no_warning_without_case_twins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,label,session,text\na, ang,1,x\nb,sad,2,x\n")
    with caplog.at_level("WARNING", logger="featcache.data"):
        assert read_manifest(m).labels == ("ang", "sad")
    assert _warnings(caplog) == []


def test_numeric_sessions_are_compared_as_values(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("id,label,session,text\na,ang,1,x\nb,sad,1.0,x\nc,ang,01,x\nd,sad, 2 ,x\n"
                                    "e,ang,2.0,x\nf,sad,Ses01,x\n")
    c = read_manifest(tmp_path / "m.csv")
    assert c.sessions == ("1", "2", "Ses01")  # two folds of numbers, not five
    assert [u.session for u in c] == ["1", "1", "1", "2", "2", "Ses01"]
    assert {u.speaker for u in c} == {"1", "2", "Ses01"}  # the default speaker is the session's name
    rows = [{"id": "a", "label": "ang", "session": 1, "text": "x"}, {"id": "b", "label": "sad", "session": 1.0, "text": "y"},
            {"id": "c", "label": "sad", "fold": 2.0, "text": "z"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert load_corpus(f"manifest:{tmp_path / 'm.jsonl'}").sessions == ("1", "2")


@pytest.mark.parametrize(("text", "name"), [("1", "1"), ("01", "1"), ("+1", "1"), ("1.0", "1"), ("1e0", "1"),
                                            ("2.50", "2.5"), (" 3 ", "3"), ("Ses01", "Ses01"), ("A", "A"),
                                            ("nan", "nan"), ("1_0", "1_0"), ("", "")])
def test_session_name(text: str, name: str) -> None:
    from featcache.data.manifest import session_name

    assert session_name(text) == name


def test_a_merge_source_no_utterance_has_is_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,label,session,text\na,ang,1,x\nb,sad,2,x\nc,hap,2,x\n")
    with caplog.at_level("WARNING", logger="featcache.data"):
        c = read_manifest(m, merge={"exc": "hap", "joy": "hap", "sad": "neg"})
    assert c.labels == ("ang", "hap", "neg")  # not an error: the merges the corpus has are made
    (line,) = _warnings(caplog)
    assert line == (f"{m}: --merge exc=hap,joy=hap: no utterance has the labels 'exc', 'joy', so nothing is merged "
                    "from them; the corpus has ang, hap, sad")
    caplog.clear()
    with caplog.at_level("WARNING", logger="featcache.data"):
        read_manifest(m, merge={"sad": "neg"})
        read_manifest(m)
    assert _warnings(caplog) == []
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"manifest:{m}", "--merge", "joy=hap"])
    assert r.exit_code == 0, r.output
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")] == [
        f"WARNING: {m}: --merge joy=hap: no utterance has the label 'joy', so nothing is merged from it; the corpus "
        "has ang, hap, sad"]


def test_only_a_given_iemocap_merge_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    counts = fake_iemocap.small_counts(per_cell=1)
    del counts["exc"]  # a copy without exc: the paper's exc=hap merges nothing
    root = fake_iemocap.build(tmp_path / "I", counts)
    with caplog.at_level("WARNING", logger="featcache.data"):
        assert len(load_corpus(f"iemocap:{root}")) == len(read_iemocap(root)) == 20
    assert _warnings(caplog) == []  # the default merge
    r = _stats(f"iemocap:{root}")
    assert r.exit_code == 0 and "WARNING" not in r.stderr, r.stderr
    r = CliRunner().invoke(cli, ["data", "stats", "--corpus", f"iemocap:{root}", "--merge", "exc=hap"])
    assert r.exit_code == 0, r.output
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING")] == [
        f"WARNING: {root}: --merge exc=hap: no utterance has the label 'exc', so nothing is merged from it; the "
        "corpus has ang, fru, hap, sad, xxx"]


@pytest.mark.parametrize("item", ["ang=", "=hap", " = ", "exc=hap, =neu"])
def test_merge_with_an_empty_label_is_refused(item: str) -> None:
    with pytest.raises(DataError, match=r"^merge \(--merge\): '.*' has an empty (source|target)") as e:
        parse_merge(item)
    assert "\n" not in str(e.value)
    assert parse_merge(" exc = hap ,sur=hap") == {"exc": "hap", "sur": "hap"}


def test_unknown_corpus_kind_is_refused_and_paths_with_colons_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for spec in (f"foo:{tmp_path}", "IEMOCAP:/data", "file:///data/m.csv", "foo:"):
        with pytest.raises(DataError) as e:
            load_corpus(spec)
        assert str(e.value) == (f"corpus (--corpus {spec!r}): unknown corpus kind {spec.split(':')[0]!r}; the known "
                                "kinds are iemocap (iemocap:DIR), manifest (manifest:FILE.csv|.jsonl), emobox "
                                "(emobox:DIR[?audio=ROOT]), msp-podcast (msp-podcast:DIR[?test=Test1]), meld "
                                "(meld:DIR), ravdess (ravdess:DIR), crema-d (crema-d:DIR)")
    # a plain path with a colon reads as it did: it exists, or what comes before the colon is no kind
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data:v2.csv").write_text("id,label,session,text\na,ang,1,x\n")
    assert len(load_corpus("data:v2.csv")) == 1
    (tmp_path / "x:y").mkdir()
    (tmp_path / "x:y" / "m.csv").write_text("id,label,session,text\na,ang,1,x\nb,sad,2,y\n")
    assert len(load_corpus(str(tmp_path / "x:y" / "m.csv"))) == 2
    assert len(load_corpus("./x:y/m.csv")) == 2
    assert len(load_corpus(f"manifest:{tmp_path / 'x:y' / 'm.csv'}")) == 2
