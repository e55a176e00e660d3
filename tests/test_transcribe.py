"""featcache transcribe: cached Whisper transcripts on a tiny CTranslate2 Whisper (random weights, no downloads)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from featcache.data import load_corpus
from featcache.errors import FeatcacheError
from featcache.perturb.wer import edit_distance, normalize_words, word_error_rate
from featcache.transcribe import CHUNK_SLEEP_ENV, resolve_recognizer, transcribe
import fake_iemocap

ctranslate2 = pytest.importorskip("ctranslate2")
transformers = pytest.importorskip("transformers")

SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>", "<|transcribe|>",
           "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
VOCAB = 64
MAX_LENGTH = 8
COUNTS = {"ang": [2, 1], "sad": [1, 2]}


@pytest.fixture(scope="module")
def recognizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded tiny (English-only) Whisper converted to CTranslate2, with a 1-second window."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    root = tmp_path_factory.mktemp("tiny_asr")
    vocab = {"<unk>": 0, **{t: i + 1 for i, t in enumerate(SPECIAL)}}
    vocab.update({f"w{i}": i for i in range(len(vocab), VOCAB)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    config = WhisperConfig(
        vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
        max_source_positions=50, max_target_positions=448, pad_token_id=1, bos_token_id=1, eos_token_id=1,
        decoder_start_token_id=2, suppress_tokens=[], begin_suppress_tokens=[],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    out = root / "ct2"
    TransformersConverter(str(root / "hf"), copy_files=["tokenizer.json"]).convert(str(out), quantization="float32")
    WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(out)
    return out


@pytest.fixture
def corpus_root(tmp_path: Path) -> Path:
    return fake_iemocap.build(tmp_path / "iemocap", COUNTS, audio=True, dialogs=1, seconds=0.5)


def _run(root: Path, cache: Path, recognizer_dir: Path, **kw: object):  # type: ignore[no-untyped-def]
    corpus = load_corpus(f"iemocap:{root}")
    return transcribe(corpus, cache_dir=cache, recognizer=str(recognizer_dir), max_length=MAX_LENGTH,
                      chunk_size=2, progress=False, **kw)  # type: ignore[arg-type]


def test_second_run_reuses_everything(corpus_root: Path, recognizer_dir: Path, tmp_path: Path) -> None:
    first = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    n = len(first.records)
    assert n == sum(map(sum, COUNTS.values())) and first.decoded == n and first.reused == 0
    assert first.path.parent == tmp_path / "cache" / "transcripts" and first.path.is_file()
    assert all(r["text"] and r["audio"].startswith("blocksum:") for r in first.records)
    assert first.wer is not None and first.wer_words > 0  # the fake corpus has gold text
    second = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    assert second.decoded == 0 and second.reused == n and second.records == first.records
    assert second.path == first.path
    again = _run(corpus_root, tmp_path / "other", recognizer_dir)  # identical text from scratch
    assert again.decoded == n and again.records == first.records


def test_settings_are_in_the_key(corpus_root: Path, recognizer_dir: Path, tmp_path: Path) -> None:
    base = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    f32 = _run(corpus_root, tmp_path / "cache", recognizer_dir, compute_type="float32")
    auto = _run(corpus_root, tmp_path / "cache", recognizer_dir, language="auto")
    assert len({base.path, f32.path, auto.path}) == 3 and f32.decoded == auto.decoded == len(base.records)
    # the tiny model is English-only to CTranslate2 (a small vocabulary): no language token, none detected
    assert all("language" not in r for r in auto.records) and auto.records == base.records
    with pytest.raises(FeatcacheError, match="compute type"):
        _run(corpus_root, tmp_path / "cache", recognizer_dir, compute_type="float64")


def test_edited_clip_is_transcribed_again(corpus_root: Path, recognizer_dir: Path, tmp_path: Path) -> None:
    first = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    wav = sorted(corpus_root.rglob("*.wav"))[0]
    sf.write(wav, np.random.default_rng(1).standard_normal(24000).astype(np.float32) * 0.3, 16000)  # 1.5 s
    second = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    assert second.decoded == 1 and second.reused == len(first.records) - 1 and second.cut == 1
    changed = [a["id"] for a, b in zip(first.records, second.records, strict=True) if a != b]
    assert changed == [wav.stem]


def test_damaged_file_is_warned_about_and_rebuilt(corpus_root: Path, recognizer_dir: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    first = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    payload = json.loads(first.path.read_text())
    payload["records"][0]["text"] = "edited by hand"
    first.path.write_text(json.dumps(payload))
    with caplog.at_level(logging.WARNING, logger="featcache.transcribe"):
        second = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "damaged transcript file" in warnings[0].getMessage()
    assert second.decoded == len(first.records) and second.records == first.records
    first.path.write_bytes(b"{not json")
    third = _run(corpus_root, tmp_path / "cache", recognizer_dir)
    assert third.decoded == len(first.records) and third.records == first.records


def test_not_a_recognizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FeatcacheError, match="not a Whisper model"):
        resolve_recognizer(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FeatcacheError, match="not a Whisper model"):
        resolve_recognizer(str(tmp_path))
    with pytest.raises(FeatcacheError, match="no such recogniser"):
        resolve_recognizer(str(tmp_path / "missing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FeatcacheError, match="featcache-tests/no-such-whisper"):  # a hub name, offline, not cached
        resolve_recognizer("featcache-tests/no-such-whisper")


def test_a_transformers_whisper_checkpoint_is_converted_once(recognizer_dir: Path, corpus_root: Path,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transformers Whisper checkpoint (the one the tiny CTranslate2 recogniser was converted from) is converted
    once into the model cache, keyed by its weights, and transcribes as that CTranslate2 folder does."""
    import shutil

    hf = tmp_path / "hf"
    shutil.copytree(recognizer_dir.parent / "hf", hf)
    shutil.copy(recognizer_dir / "preprocessor_config.json", hf)  # (its 1-second window)
    monkeypatch.setenv("FEATCACHE_MODELS", str(tmp_path / "models"))
    rec = resolve_recognizer(str(hf))
    converted = rec.model_parts[0].parent
    assert converted.parent == tmp_path / "models" and converted.name.startswith("ct2-whisper-")
    assert json.loads((converted / "featcache_recognizer_source.json").read_text())["source"] == str(hf)
    corpus = load_corpus(f"iemocap:{corpus_root}")
    via_hf = transcribe(corpus, cache_dir=tmp_path / "a", recognizer=rec, max_length=MAX_LENGTH, progress=False)
    via_ct2 = _run(corpus_root, tmp_path / "b", recognizer_dir)
    assert [r["text"] for r in via_hf.records] == [r["text"] for r in via_ct2.records]
    mtime = (converted / "model.bin").stat().st_mtime_ns
    again = resolve_recognizer(str(hf))
    assert again.model_parts == rec.model_parts and (converted / "model.bin").stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith("ct2-")] == [converted.name]
    # the same weights with an edited tokenizer: its vocabulary is another, so it is converted anew (a new digest)
    tok = json.loads((hf / "tokenizer_config.json").read_text())
    (hf / "tokenizer_config.json").write_text(json.dumps({**tok, "model_max_length": 77}))
    edited = resolve_recognizer(str(hf))
    assert edited.model_parts[0].parent != converted and (converted / "model.bin").stat().st_mtime_ns == mtime
    assert len([p for p in (tmp_path / "models").iterdir() if p.name.startswith("ct2-")]) == 2


def _cli(root: Path, cache: Path, recognizer_dir: Path) -> list[str]:
    return [sys.executable, "-m", "featcache.cli", "transcribe", "--corpus", f"iemocap:{root}", "--cache-dir",
            str(cache), "--recognizer", str(recognizer_dir), "--compute-type", "float32", "--chunk-size", "2",
            "--max-length", str(MAX_LENGTH)]


def test_kill_9_then_resume(corpus_root: Path, recognizer_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, CHUNK_SLEEP_ENV: "60", "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen(_cli(corpus_root, cache, recognizer_dir), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    files: list[Path] = []
    deadline = time.monotonic() + 120
    try:
        while not files and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
            files = sorted((cache / "transcripts").glob("*.json")) if (cache / "transcripts").is_dir() else []
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    assert files, "no chunk was written before the deadline"
    partial = json.loads(files[0].read_text())["records"]
    assert len(partial) == 2
    env.pop(CHUNK_SLEEP_ENV)
    done = subprocess.run(_cli(corpus_root, cache, recognizer_dir), env=env, capture_output=True, text=True,
                          check=True)
    n = sum(map(sum, COUNTS.values()))
    assert f"{n - 2} decoded, 2 reused" in done.stdout and "word error rate" in done.stdout
    whole = _run(corpus_root, tmp_path / "whole", recognizer_dir, compute_type="float32")
    resumed = json.loads(files[0].read_text())["records"]
    assert sorted(resumed, key=lambda r: r["id"]) == sorted(whole.records, key=lambda r: r["id"])


# ------------------------------------------------------------------------------------------------ WER


def test_normalize_words() -> None:
    assert normalize_words("Hello, World! Don't 'stop'.") == ["hello", "world", "don't", "stop"]


def test_edit_distance() -> None:
    assert edit_distance([], []) == 0
    assert edit_distance(["a", "b", "c"], ["a", "b", "c"]) == 0
    assert edit_distance(["a", "b", "c"], ["a", "x", "c"]) == 1  # substitution
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1  # deletion
    assert edit_distance(["a", "b"], ["a", "b", "c", "d"]) == 2  # insertions
    assert edit_distance(["kitten"], []) == 1 and edit_distance([], ["x", "y"]) == 2


def test_word_error_rate() -> None:
    wer, words = word_error_rate([("The cat sat.", "the cat sat"), ("on the mat", "on a mat here")])
    assert words == 6 and wer == pytest.approx(2 / 6)
    assert word_error_rate([]) == (0.0, 0)
    assert word_error_rate([("", "")]) == (0.0, 0)
    assert word_error_rate([("", "noise")]) == (float("inf"), 0)


def test_language_prompt_detects_on_a_multilingual_model() -> None:
    from featcache.transcribe import _language_prompt

    class Multilingual:
        is_multilingual = True

        def detect_language(self, features: object) -> list[list[tuple[str, float]]]:
            return [[("<|de|>", 0.9), ("<|en|>", 0.1)]]

    assert _language_prompt(Multilingual(), None, "auto") == (
        ["<|startoftranscript|>", "<|de|>", "<|transcribe|>", "<|notimestamps|>"], "de")
    assert _language_prompt(Multilingual(), None, "en") == (
        ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"], None)


def test_attacked_audio_has_transcripts_of_its_own(corpus_root: Path, recognizer_dir: Path, tmp_path: Path) -> None:
    """The recogniser hears a clip as an audio attack left it (``transcribed+pitch``): another file, its own
    key, reused on a rerun, and the attack's waveform is the one the audio encoder gets."""
    from featcache.perturb import get_variant

    clean = _run(corpus_root, tmp_path / "c", recognizer_dir)
    pitched = _run(corpus_root, tmp_path / "c", recognizer_dir, audio_variant="pitch", variant_seed=3)
    assert pitched.path != clean.path and pitched.decoded == len(clean.records)
    header = json.loads(pitched.path.read_text(encoding="utf-8"))
    assert header["audio_variant"] == "pitch" and header["variant_seed"] == 3
    assert "audio_variant" not in json.loads(clean.path.read_text(encoding="utf-8"))  # the clean file keeps its name
    again = _run(corpus_root, tmp_path / "c", recognizer_dir, audio_variant="pitch", variant_seed=3)
    assert again.decoded == 0 and again.records == pitched.records
    other_seed = _run(corpus_root, tmp_path / "c", recognizer_dir, audio_variant="pitch", variant_seed=4)
    assert other_seed.path not in (clean.path, pitched.path)
    with pytest.raises(FeatcacheError, match="not an audio attack"):
        _run(corpus_root, tmp_path / "c", recognizer_dir, audio_variant="adj")
    assert get_variant("transcribed:audio=pitch").audio_variant == "pitch"


def test_transcribed_variant_and_conditions() -> None:
    from featcache.conditions import parse
    from featcache.perturb import get_variant

    v = get_variant("transcribed")
    out, record = v("Hello there, friend!", utt_id="u1", seed=0, transcripts={"u1": "hello their friend"})
    assert out == "hello their friend" and record["ref_words"] == 3 and record["word_errors"] == 1
    assert v.changed(record) and v.apply("Hello there, friend!", record) == out
    same = v.draw("Hello there!", utt_id="u2", seed=0, transcripts={"u2": "hello there"})
    assert not v.changed(same)  # the same words: not affected
    with pytest.raises(FeatcacheError, match="no transcript of utterance 'u3'"):
        v.draw("x", utt_id="u3", seed=0, transcripts={})
    c = parse("transcribed+pitch")
    assert c.audio == "pitch" and c.text is not None and get_variant(c.text).audio_variant == "pitch"
    assert parse("pitch+transcribed").key == c.key
    assert parse("transcribed").requires == ("text", "audio")  # a recogniser needs the audio
    assert parse("transcribed").missing_modalities(["text"]) == ("audio",)
    assert c.key != parse("pitch+asr-0.2").key and parse("transcribed").key != parse("asr-0.2").key


def test_run_evaluates_the_transcribed_conditions_with_their_wer(corpus_root: Path, recognizer_dir: Path,
                                                                 tmp_path: Path) -> None:
    """`featcache run` with a recogniser's text: the text model on ASR text of the clean and of the pitched
    audio, the multimodal model on ``transcribed+pitch``; the report gives each condition's word error rate
    per session, and a second run decodes nothing."""
    from click.testing import CliRunner

    from featcache.cli import cli
    from featcache.metrics import Predictions
    from tiny_models import tiny_bert, tiny_wav2vec2

    spec = f"transcribed:recognizer={recognizer_dir}"
    out, cache = tmp_path / "report", tmp_path / "cache"
    args = ["run", "--preset", "demo", "--corpus", f"iemocap:{corpus_root}", "--text-backbone",
            str(tiny_bert(tmp_path / "bert")), "--audio-backbone", str(tiny_wav2vec2(tmp_path / "w2v")),
            "--head-epochs", "2", "--seeds", "0", "--variant", spec, "--variant", "pitch", "--workers", "0",
            "--device", "cpu", "--cache-dir", str(cache), "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    timing = re.search(r"speech recognition: (\d+) s of audio decoded in \d+ s \((\d+\.\d{3}) s per second of audio\)",
                       r.output)
    assert timing is not None and int(timing[1]) > 0, r.output  # the clean and the pitched audio, timed
    preds = Predictions.load(out / "predictions.h5")
    conds = {(m, c) for m, c in zip(preds.model, preds.condition)}
    from featcache.perturb import get_variant

    canon = get_variant(spec).spec  # every parameter named: the recogniser is not the default one
    pitched = next(c for _, c in conds if c.startswith("transcribed:audio=pitch"))
    assert {("text", canon), ("multimodal", f"{canon}+pitch"), ("text", pitched)} <= conds, sorted(conds)
    spec = canon
    files = sorted((cache / "transcripts").glob("*.json"))
    assert len(files) == 2  # the clean audio's transcripts and the pitched audio's
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "## Speech recognition" in summary
    row = next(line for line in summary.splitlines() if line.startswith(f"| {spec}+pitch |"))
    assert "| pitch (ct2) |" in row and "words) |" in row
    assert not any(line.startswith(f"| {pitched} |") for line in summary.splitlines())  # the same text: one row
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<section id="asr"' in html and '<a href="#asr">Speech recognition</a>' in html
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # nothing decoded (or written) again
    assert "speech recognition:" not in again.output
    assert (out / "asr.json").is_file()


def test_an_audio_only_manifest_reads_the_transcripts_as_its_text(corpus_root: Path, recognizer_dir: Path,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """After `featcache transcribe`, a study of a corpus without text reads the transcripts as its text (one
    line says so), so its text and multimodal models can run; the report's methods line says the text is ASR."""
    import csv

    from featcache.options import StudyOptions
    from featcache.pipeline import methods_line
    from featcache.study import Study

    gold = load_corpus(f"iemocap:{corpus_root}")
    manifest = tmp_path / "audio-only.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "session", "speaker", "label", "audio"])
        for u in gold:
            w.writerow([u.id, u.session, u.speaker, u.label, str(u.audio)])
    cache = tmp_path / "cache"
    options = StudyOptions(corpus=f"manifest:{manifest}", cache_dir=str(cache), preset="demo")
    before = Study.open(options)
    assert before.corpus.modalities == ("audio",) and before.models() == ["audio"]
    transcribe(before.corpus, cache_dir=cache, recognizer=str(recognizer_dir), max_length=MAX_LENGTH,
               progress=False)
    with caplog.at_level(logging.INFO, logger="featcache"):
        after = Study.open(options)
    said = [r.getMessage() for r in caplog.records if "no text of its own" in r.getMessage()]
    assert len(said) == 1 and "ct2 transcripts in" in said[0], said
    assert after.corpus.modalities == ("text", "audio") and "text" in after.models()
    assert "multimodal" in after.models()
    assert after.corpus.text_source.startswith("ct2 transcripts (")
    assert after.corpus.fingerprint != before.corpus.fingerprint
    assert "not gold transcripts" in methods_line(after)


def test_a_study_can_read_a_recognisers_text_instead_of_the_gold_text(corpus_root: Path, recognizer_dir: Path,
                                                                      tmp_path: Path) -> None:
    """``--text-source DIR``: the study is trained and evaluated on the recogniser's transcripts (transcribed once
    into the store); its vectors are other vectors than the gold text's and the methods line says so."""
    from featcache.options import StudyOptions
    from featcache.pipeline import methods_line
    from featcache.study import Study

    cache = tmp_path / "cache"
    gold = Study.open(StudyOptions(corpus=f"iemocap:{corpus_root}", cache_dir=str(cache)))
    asr = Study.open(StudyOptions(corpus=f"iemocap:{corpus_root}", cache_dir=str(cache),
                                  text_source=str(recognizer_dir)))
    heard = transcribe(gold.corpus, cache_dir=cache, recognizer=str(recognizer_dir), progress=False)
    assert heard.decoded == 0  # the study transcribed them once, into the store
    assert {u.id: u.text for u in asr.corpus} == {r["id"]: r["text"] for r in heard.records}
    assert asr.corpus.fingerprint != gold.corpus.fingerprint and not gold.corpus.text_source
    assert asr.key != gold.key  # other vectors, other heads
    assert "not gold transcripts" in methods_line(asr) and "not gold" not in methods_line(gold)
    assert gold.replace(text_source=str(recognizer_dir)).corpus.fingerprint == asr.corpus.fingerprint


# ------------------------------------------------------------------ the packaged Whisper base on spoken demo clips

SPOKEN_WINDOW = 10.0  # what the demo decodes with (transcribed-10s)


@pytest.fixture(scope="module")
def spoken_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few clips of the spoken demo corpus (espeak-ng speech, one kept utterance per speaker: 10 clips)."""
    pytest.importorskip("espeakng_loader")
    from featcache.demo import write_demo_corpus

    return write_demo_corpus(tmp_path_factory.mktemp("spoken") / "demo", utterances_per_speaker=1).root


@pytest.fixture(scope="module")
def whisper_base():  # type: ignore[no-untyped-def]
    from featcache.backbones.ct2 import ModelFileError

    try:
        return resolve_recognizer("whisper-base")
    except ModelFileError as exc:
        pytest.skip(f"the Whisper base packages are not installed (scripts/bootstrap.sh installs them): {exc}")


@pytest.fixture(scope="module")
def spoken_whole(spoken_demo: Path, whisper_base, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One uninterrupted transcription of the spoken clips, in a store of its own."""
    corpus = load_corpus(f"iemocap:{spoken_demo}")
    return transcribe(corpus, cache_dir=tmp_path_factory.mktemp("whole"), recognizer=whisper_base,
                      window_seconds=SPOKEN_WINDOW, progress=False)


def test_whisper_base_transcribes_spoken_demo_clips_once(spoken_demo: Path, whisper_base, spoken_whole,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    """The demo speaks intelligibly (the recogniser gets most words right), a second run decodes nothing, and a
    run from scratch gives identical text."""
    corpus = load_corpus(f"iemocap:{spoken_demo}")
    n = len(corpus.utterances)
    assert n >= 8 and spoken_whole.decoded == n and spoken_whole.reused == 0
    assert spoken_whole.wer is not None and spoken_whole.wer < 0.5, spoken_whole.wer  # espeak speech, Whisper base
    assert sum(r["text"] == u.text for r, u in zip(spoken_whole.records, corpus.utterances)) >= 2
    first = transcribe(corpus, cache_dir=tmp_path, recognizer=whisper_base, window_seconds=SPOKEN_WINDOW,
                       progress=False)
    assert first.records == spoken_whole.records  # the same text on a rerun
    again = transcribe(corpus, cache_dir=tmp_path, recognizer=whisper_base, window_seconds=SPOKEN_WINDOW,
                       progress=False)
    assert again.decoded == 0 and again.reused == n and again.records == first.records and again.path == first.path
    whole = transcribe(corpus, cache_dir=tmp_path, recognizer=whisper_base, progress=False, max_length=1)
    assert whole.path != first.path and whole.decoded == n  # other settings, another file


def test_the_window_is_a_setting_of_its_own(spoken_demo: Path, whisper_base, spoken_whole,  # type: ignore[no-untyped-def]
                                            tmp_path: Path) -> None:
    """Whisper's own 30 s window and a 10 s one are other files; the window is recorded in the file."""
    corpus = load_corpus(f"iemocap:{spoken_demo}")
    subset = dataclasses.replace(corpus, utterances=corpus.utterances[:2])
    full = transcribe(subset, cache_dir=tmp_path, recognizer=whisper_base, progress=False)
    short = transcribe(subset, cache_dir=tmp_path, recognizer=whisper_base, window_seconds=SPOKEN_WINDOW,
                       progress=False)
    assert full.path != short.path
    assert json.loads(full.path.read_text())["settings"]["window_seconds"] == 30
    assert json.loads(short.path.read_text())["settings"]["window_seconds"] == SPOKEN_WINDOW
    with pytest.raises(FeatcacheError, match="at least 1 second"):
        transcribe(subset, cache_dir=tmp_path, recognizer=whisper_base, window_seconds=0.5, progress=False)


def test_kill_9_then_resume_on_spoken_clips(spoken_demo: Path, whisper_base, spoken_whole,  # type: ignore[no-untyped-def]
                                            tmp_path: Path) -> None:
    """`featcache transcribe` killed with SIGKILL after its first chunk resumes from it, and the result equals an
    uninterrupted run's, text for text."""
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "featcache.cli", "transcribe", "--corpus", f"iemocap:{spoken_demo}", "--cache-dir",
           str(cache), "--window", str(SPOKEN_WINDOW), "--chunk-size", "3"]
    env = {**os.environ, CHUNK_SLEEP_ENV: "60", "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    files: list[Path] = []
    deadline = time.monotonic() + 180
    try:
        while not files and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
            files = sorted((cache / "transcripts").rglob("*.json")) if (cache / "transcripts").is_dir() else []
    finally:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    assert files, "no chunk was written before the deadline"
    assert len(json.loads(files[0].read_text())["records"]) == 3
    env.pop(CHUNK_SLEEP_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    n = len(spoken_whole.records)
    assert f"{n - 3} decoded, 3 reused" in done.stdout and "word error rate" in done.stdout
    resumed = json.loads(files[0].read_text())["records"]
    assert resumed == spoken_whole.records


def test_loading_the_recogniser_leaves_torchs_threads_alone(whisper_base) -> None:  # type: ignore[no-untyped-def]
    """CTranslate2 and torch share one OpenMP runtime when torch is imported first (as in ``featcache run``):
    loading single-threaded decoders must not leave the extraction that follows on one torch thread. A process of
    its own, since the import order decides."""
    script = ("import torch; torch.set_num_threads(2)\n"
              "from featcache.transcribe import resolve_recognizer\n"
              "resolve_recognizer('whisper-base').load(compute_type='int8', threads=2)\n"
              "print('torch threads', torch.get_num_threads())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.stdout.strip() == "torch threads 2", done.stdout + done.stderr
