"""The embedded demo corpus: layout, counts, audio format, determinism and overwrite protection."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from featcache.data import corpus_stats, load_corpus, read_iemocap
from featcache.demo import DemoSummary, demo_counts, demo_raw_counts, write_demo_corpus
from featcache.errors import FeatcacheError

#: The label x session table of the default corpus (documented in demo_counts).
DEFAULT_TABLE = {
    "ang": {"1": 18, "2": 12, "3": 16, "4": 20, "5": 10},
    "sad": {"1": 16, "2": 16, "3": 20, "4": 10, "5": 16},
    "hap": {"1": 24, "2": 26, "3": 18, "4": 20, "5": 30},
    "fru": {"1": 22, "2": 26, "3": 26, "4": 30, "5": 24},
}

EMO_TURN = re.compile(r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(\S+)\t(\w+)\t\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]$")
TRANS_LINE = re.compile(r"^(Ses\d\d[FM]_\S+) \[(\d{3}\.\d{4})-(\d{3}\.\d{4})\]: (.+)$")
DIALOG = re.compile(r"^Ses0[1-5](F_impro\d\d|M_script\d\d_1)$")


def _emo_turns(root: Path) -> list[tuple[str, str, float, float, str]]:
    """(session, utterance id, start, end, raw label) of every turn line."""
    out = []
    for f in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        session = f.parts[-4][len("Session") :]
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.startswith("["):
                m = EMO_TURN.match(line)
                assert m is not None, f"{f}: {line!r}"
                out.append((session, m[3], float(m[1]), float(m[2]), m[4]))
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    root = tmp_path_factory.mktemp("demo") / "corpus"
    calls: list[tuple[int, int]] = []
    summary = write_demo_corpus(root, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (summary.n_turns, summary.n_turns) and len(calls) == summary.n_turns
    return root, summary


def test_default_corpus_read_back_matches_documented_table(default_corpus: tuple[Path, DemoSummary]) -> None:
    root, summary = default_corpus
    corpus = read_iemocap(root)
    stats = corpus_stats(corpus)
    assert stats.counts == DEFAULT_TABLE
    assert summary.counts == DEFAULT_TABLE == demo_counts()
    assert len(corpus) == summary.n_utterances == 400
    assert corpus.sessions == ("1", "2", "3", "4", "5")
    assert corpus.modalities == ("text", "audio")
    assert sorted({u.speaker for u in corpus}) == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    per_speaker = Counter(u.speaker for u in corpus)
    assert set(per_speaker.values()) == {40}
    assert load_corpus(f"iemocap:{root}").fingerprint == corpus.fingerprint
    assert str(summary).count("\n") == 0 and "400" in str(summary)


def test_raw_labels_include_exc_and_dropped_ones(default_corpus: tuple[Path, DemoSummary]) -> None:
    root, summary = default_corpus
    turns = _emo_turns(root)
    raw: dict[str, Counter[str]] = {}
    for session, _, _, _, lab in turns:
        raw.setdefault(lab, Counter())[session] += 1
    assert {lab: dict(c) for lab, c in raw.items()} == summary.raw_counts == demo_raw_counts()
    for lab in ("exc", "hap", "neu", "xxx", "sur"):
        assert sum(raw[lab].values()) > 0, lab
    # hap + exc turns all come back as hap; neu, xxx and sur ones are dropped
    corpus = read_iemocap(root)
    by_id = {u.id: u.label for u in corpus}
    for _, utt_id, _, _, lab in turns:
        if lab in ("neu", "xxx", "sur"):
            assert utt_id not in by_id
        else:
            assert by_id[utt_id] == ("hap" if lab == "exc" else lab)
    assert len(turns) == summary.n_turns == 450


def test_layout_and_line_formats(default_corpus: tuple[Path, DemoSummary]) -> None:
    root, _ = default_corpus
    for s in range(1, 6):
        emo = sorted(p.stem for p in (root / f"Session{s}" / "dialog" / "EmoEvaluation").glob("*.txt"))
        trans = sorted(p.stem for p in (root / f"Session{s}" / "dialog" / "transcriptions").glob("*.txt"))
        wavs = sorted(p.name for p in (root / f"Session{s}" / "sentences" / "wav").iterdir())
        assert emo == trans == wavs and emo, s
        assert any("_impro" in d for d in emo) and any("_script" in d for d in emo)
        for d in emo:
            assert DIALOG.match(d), d
            assert d.startswith(f"Ses0{s}")
            text = (root / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{d}.txt").read_text(encoding="utf-8")
            assert text.startswith("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n")
            assert re.search(r"^C-E\d:\t[A-Z][a-z ]+;\t\(\)$", text, re.M)
            assert re.search(r"^A-E\d:\tval [1-5]; act [1-5]; dom  [1-5];\t\(\)$", text, re.M)
            ids = [m[3] for m in map(EMO_TURN.match, text.splitlines()) if m]
            assert {i.rsplit("_", 1)[1][0] for i in ids} == {"F", "M"}, d  # both speakers talk in every dialog
    turns = {t[1]: t for t in _emo_turns(root)}
    seen = 0
    for f in root.glob("Session*/dialog/transcriptions/*.txt"):
        for line in f.read_text(encoding="utf-8").splitlines():
            m = TRANS_LINE.match(line)
            assert m is not None, line
            _, _, start, end, _ = turns[m[1]]
            assert (float(m[2]), float(m[3])) == pytest.approx((start, end), abs=1e-4)
            assert 3 <= len(m[4].split()) <= 25, m[4]
            seen += 1
    assert seen == len(turns)


def test_every_wav_is_16k_mono_pcm_1_to_10_s_and_not_silent(default_corpus: tuple[Path, DemoSummary]) -> None:
    root, summary = default_corpus
    turns = _emo_turns(root)
    total = 0.0
    for session, utt_id, start, end, _ in turns:
        path = root / f"Session{session}" / "sentences" / "wav" / utt_id.rsplit("_", 1)[0] / f"{utt_id}.wav"
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
        y, _ = sf.read(str(path), dtype="float32")
        assert 1.0 <= len(y) / 16000 <= 10.0, path  # the transcript spoken, a little silence around it
        assert end - start == pytest.approx(len(y) / 16000, abs=2e-4)
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        assert 0.003 < rms < 0.2 and 0.02 < float(np.abs(y).max()) < 0.99, (path, rms)
        total += len(y) / 16000
    assert summary.seconds == pytest.approx(total, abs=0.01)


def test_emotion_is_in_words_and_voice(default_corpus: tuple[Path, DemoSummary]) -> None:
    """Coarse design checks: text separates classes above chance, sad is quieter and slower than ang."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    root, _ = default_corpus
    corpus = read_iemocap(root)
    y = np.array([u.label for u in corpus])
    sess = np.array([u.session for u in corpus])
    x = CountVectorizer(binary=True).fit_transform([u.text for u in corpus])
    pred = np.empty(len(y), dtype=object)
    for s in corpus.sessions:
        clf = LogisticRegression(max_iter=2000).fit(x[sess != s], y[sess != s])
        pred[sess == s] = clf.predict(x[sess == s])
    assert np.mean(pred == y) > 0.5  # majority class is 0.32

    level = {lab: [] for lab in corpus.labels}  # type: dict[str, list[float]]
    for u in corpus:
        w, _ = sf.read(str(u.audio), dtype="float32")
        frames = w[: len(w) // 400 * 400].reshape(-1, 400).astype(np.float64)
        db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        level[u.label].append(float(np.mean(db[db > db.max() - 20])))
    mean = {lab: np.mean(v) for lab, v in level.items()}
    assert mean["sad"] + 2.5 < mean["fru"] < mean["ang"] - 2, mean
    assert abs(mean["ang"] - mean["hap"]) < 3, mean  # the voice tells arousal, not valence


def test_prosody_follows_the_class_relative_to_the_speaker(default_corpus: tuple[Path, DemoSummary]) -> None:
    """The spoken demo: F0 (semitones above the speaker's mean) and speaking rate (words per second of speech)
    ordered by class as designed: sad lowest and slowest, fru between, ang and hap highest and fastest; the
    female speakers' voices are higher than the male speakers'."""
    import librosa

    root, _ = default_corpus
    corpus = read_iemocap(root)
    rows = []
    for u in corpus:
        if u.session not in ("1", "2"):  # 160 clips are plenty
            continue
        w, _ = sf.read(str(u.audio), dtype="float32")
        f0 = librosa.yin(w, fmin=70, fmax=500, sr=16000, frame_length=1024, hop_length=512)
        rms = librosa.feature.rms(y=w, frame_length=1024, hop_length=512)[0]
        voiced = rms[: len(f0)] > 0.25 * rms.max()
        f0 = f0[: len(voiced)]
        speech_s = float(np.sum(librosa.feature.rms(y=w, frame_length=320, hop_length=160)[0] > 0.003)) / 100
        rows.append((u.speaker, u.label, float(np.median(12 * np.log2(f0[voiced]))), len(u.text.split()) / speech_s))
    speaker_f0 = {s: np.mean([r[2] for r in rows if r[0] == s]) for s in {r[0] for r in rows}}
    f0 = {lab: np.mean([r[2] - speaker_f0[r[0]] for r in rows if r[1] == lab]) for lab in corpus.labels}
    rate = {lab: np.mean([r[3] for r in rows if r[1] == lab]) for lab in corpus.labels}
    assert f0["sad"] + 1 < f0["fru"] < min(f0["ang"], f0["hap"]), f0
    assert rate["sad"] < rate["fru"] < min(rate["ang"], rate["hap"]), rate
    for s in ("1", "2"):
        assert speaker_f0[f"Ses0{s}F"] > speaker_f0[f"Ses0{s}M"] + 3, speaker_f0


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FEATCACHE_RUN_SLOW") != "1", reason="set FEATCACHE_RUN_SLOW=1 to run")
def test_the_packaged_whisper_base_understands_the_spoken_demo(tmp_path: Path) -> None:
    """The demo speaks its transcripts: the packaged Whisper base's transcripts of a few clips of every speaker
    are close to the gold text (most words right; the demo's word error rate is in its report)."""
    from featcache.backbones.ct2 import ModelFileError
    from featcache.perturb.wer import word_error_rate
    from featcache.transcribe import resolve_recognizer, transcribe

    try:
        recognizer = resolve_recognizer("whisper-base")
    except ModelFileError as exc:
        pytest.skip(f"Whisper base packages not installed: {exc}")
    root = write_demo_corpus(tmp_path / "demo", utterances_per_speaker=2).root
    corpus = read_iemocap(root)
    result = transcribe(corpus, cache_dir=tmp_path / "cache", recognizer=recognizer, progress=False)
    pairs = [(u.text, r["text"]) for u, r in zip(corpus.utterances, result.records, strict=True)]
    wer, words = word_error_rate(pairs)
    assert words > 50 and wer < 0.4, (wer, pairs)
    assert sum(word_error_rate([p])[0] <= 0.2 for p in pairs) >= len(pairs) // 3, pairs  # 9 of 20 when written


def test_espeak_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown voice, and espeak-ng missing, each say so in one line."""
    import sys

    from featcache.demo import espeak

    with pytest.raises(FeatcacheError, match="unknown voice 'xx-nowhere'") as exc:
        espeak.speak("hello", settings=espeak.EspeakSettings(voice="xx-nowhere"))
    assert "\n" not in str(exc.value)
    assert espeak.speak("hello there", settings=espeak.EspeakSettings(voice="en-us")).size > espeak.NATIVE_RATE // 10
    monkeypatch.setattr(espeak, "_state", {})
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(FeatcacheError, match="pip install espeakng-loader") as exc:
        espeak.speak("hello", settings=espeak.EspeakSettings(voice="en-us"))
    assert "\n" not in str(exc.value)


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path: Path) -> None:
    a = _hashes(write_demo_corpus(tmp_path / "a", seed=7, utterances_per_speaker=1).root)
    b = _hashes(write_demo_corpus(tmp_path / "b", seed=7, utterances_per_speaker=1).root)
    c = _hashes(write_demo_corpus(tmp_path / "c", seed=8, utterances_per_speaker=1).root)
    assert a == b
    assert sum(p.endswith(".wav") for p in a) == 10 * (1 + 3)  # 1 kept + neu, xxx, sur per speaker
    assert set(a) == set(c)
    wavs = [p for p in a if p.endswith(".wav")]
    assert all(a[p] != c[p] for p in wavs)


def test_refuses_non_empty_directory_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(FeatcacheError) as exc:
        write_demo_corpus(out, utterances_per_speaker=1)
    msg = str(exc.value)
    assert "\n" not in msg and str(out) in msg and "overwrite" in msg
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    first = write_demo_corpus(out, seed=1, utterances_per_speaker=2, overwrite=True)
    with pytest.raises(FeatcacheError):
        write_demo_corpus(out, seed=2, utterances_per_speaker=1)
    second = write_demo_corpus(out, seed=2, utterances_per_speaker=1, overwrite=True)
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert not (out / ".demo-partial").exists()
    fresh = _hashes(write_demo_corpus(tmp_path / "fresh", seed=2, utterances_per_speaker=1).root)
    replaced = _hashes(out)
    replaced.pop("notes.txt")
    assert replaced == fresh  # nothing of the first corpus is left
    assert first.n_utterances == 20 and second.n_utterances == 10
    assert len(read_iemocap(out)) == 10


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    for n in (0, 1001, 2.5, True):
        with pytest.raises(FeatcacheError, match="utterances_per_speaker"):
            write_demo_corpus(tmp_path / "x", utterances_per_speaker=n)  # type: ignore[arg-type]
    target = tmp_path / "file"
    target.write_text("", encoding="utf-8")
    with pytest.raises(FeatcacheError, match="not a directory"):
        write_demo_corpus(target)
    with pytest.raises(FeatcacheError, match="cannot create"):
        write_demo_corpus(target / "below")


@pytest.mark.parametrize("per_speaker", [1, 7, 40, 123])
def test_counts_add_up(per_speaker: int) -> None:
    raw = demo_raw_counts(utterances_per_speaker=per_speaker)
    kept = demo_counts(utterances_per_speaker=per_speaker)
    for s in ("1", "2", "3", "4", "5"):
        assert sum(kept[lab][s] for lab in kept) == 2 * per_speaker
        assert kept["hap"][s] == raw["hap"][s] + raw["exc"][s]
        assert all(raw[lab][s] >= 2 for lab in ("neu", "xxx", "sur"))
    if per_speaker >= 40:  # every class present in every session once there is room for it
        assert all(v > 0 for per in kept.values() for v in per.values())
