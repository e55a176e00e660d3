from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import fake_iemocap
from conftest import one_line_error
from featcache.backbones.encoders import EncoderOptions, load_encoder
from featcache.backbones.resolve import resolve_backbone
from featcache.cache import FeatureStore
from featcache.cli import cli
from featcache.data import load_audio, read_iemocap
from featcache.extract import EncoderRun, extract
from featcache.perturb import get_variant
from tiny_models import tiny_bert, tiny_wav2vec2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"text": tiny_bert(d / "bert"), "audio": tiny_wav2vec2(d / "w2v"), "audio_gn": tiny_wav2vec2(d / "w2v-gn", norm="group")}


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    root = fake_iemocap.build(tmp_path / "I", fake_iemocap.small_counts(), audio=True, seconds=0.3)
    # vary the durations so that several bucket lengths occur
    for i, wav in enumerate(sorted(root.rglob("*.wav"))):
        y, sr = sf.read(wav)
        sf.write(wav, np.tile(y, 1 + i % 4)[: int(sr * (0.2 + 0.15 * (i % 7)))], sr)
    return root


def _vectors(store: FeatureStore, report) -> np.ndarray:  # type: ignore[no-untyped-def]
    with store.open(report.key) as e:
        return e.vectors()


def test_frozen_entries_are_shared_and_skipped_on_rerun(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = read_iemocap(corpus_dir)
    store = FeatureStore(tmp_path / "cache")
    run = EncoderRun("text", str(models["text"]))
    r = extract(corpus, store, run=run, variant="clean", progress=False)
    assert r.status == "written" and r.key.fold is None and r.n_ids == len(corpus)
    with store.open(r.key) as e:
        assert e.vectors().shape == (len(corpus), 32)
        assert list(e.labels()) == [corpus.label_index(corpus.by_id(i).label) for i in e.ids]
        assert e.provenance["identity"]["frozen"] is True
    again = extract(corpus, store, run=run, variant="clean", progress=False)
    assert again.status == "skipped" and again.n_written == 0
    # another pooling is another entry, never mixed with the first
    r2 = extract(corpus, store, run=EncoderRun("text", str(models["text"]), EncoderOptions(pooling="mean")),
                 variant="clean", progress=False)
    assert r2.status == "written" and r2.key.hash != r.key.hash
    assert not np.allclose(_vectors(store, r), _vectors(store, r2))


def test_text_mask_variant_uses_tokenizer_mask_token(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = read_iemocap(corpus_dir)
    store = FeatureStore(tmp_path / "cache")
    run = EncoderRun("text", str(models["text"]))
    clean = extract(corpus, store, run=run, variant="clean", progress=False)
    adj = extract(corpus, store, run=run, variant="adj", progress=False)
    assert extract(corpus, store, run=run, variant="pitch", progress=False).status == "not-applicable"
    with store.open(adj.key) as e:
        rec = e.records()
    changed = [u for u, r in rec.items() if r.get("count", 0) > 0]
    assert changed and len(changed) < len(corpus)  # "Okay, fine." style texts have no adjective
    a, c = _vectors(store, adj), _vectors(store, clean)
    with store.open(adj.key) as e:
        ids = e.ids
    for u in ids:
        same = np.allclose(a[ids.index(u)], c[ids.index(u)], atol=1e-6)
        assert same == (u not in changed)


def test_valid_frame_pooling_ignores_padding(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = read_iemocap(corpus_dir)
    resolved = resolve_backbone(str(models["audio"]), models_dir=tmp_path)
    enc = load_encoder(resolved, options=EncoderOptions())
    u = corpus.utterances[0]
    y = load_audio(u.audio)
    item = enc.prepare(y)
    assert item["L"] > item["n"] == y.size  # padded up to the bucket grid
    with torch.no_grad():
        pooled = enc(**enc.collate([item]))[0].numpy()
        x = torch.from_numpy(((y - y.mean()) / np.sqrt(y.var() + 1e-7))[None].astype(np.float32))
        direct = enc.model(input_values=x).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(pooled, direct, atol=2e-5)
    # --pad-to pools every frame of the padded clip (the paper's setting)
    padded = load_encoder(resolved, options=EncoderOptions(pad_to=12_000))
    it = padded.prepare(y)
    assert it["L"] == it["n"] == 12_000


@pytest.mark.parametrize("model", ["audio", "text"])
def test_bucketing_invariance(corpus_dir: Path, tmp_path: Path, models, model: str) -> None:  # type: ignore[no-untyped-def]
    corpus = read_iemocap(corpus_dir)
    modality = "audio" if model == "audio" else "text"
    run = EncoderRun(modality, str(models[model]))
    a = extract(corpus, FeatureStore(tmp_path / "a"), run=run, variant="clean", batch_size=8, progress=False)
    b = extract(corpus, FeatureStore(tmp_path / "b"), run=run, variant="clean", batch_size=1, progress=False)
    np.testing.assert_allclose(_vectors(FeatureStore(tmp_path / "a"), a), _vectors(FeatureStore(tmp_path / "b"), b),
                               atol=1e-5)


def test_workers_do_not_change_vectors(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    corpus = read_iemocap(corpus_dir)
    run = EncoderRun("audio", str(models["audio"]))
    outs = []
    for workers in (0, 2):
        store = FeatureStore(tmp_path / f"w{workers}")
        r = extract(corpus, store, run=run, variant="pitch", num_workers=workers, progress=False)
        with store.open(r.key) as e:
            outs.append((e.vectors(), e.records()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1] and {r["step"] for r in outs[0][1].values()} <= {-1.0, 1.0}


SLOW_CLI = (
    "import sys, time\n"
    "from featcache.cache.store import EntryWriter\n"
    "add = EntryWriter.add\n"
    "def slow_add(self, *a, **k):\n"
    "    add(self, *a, **k)\n"
    "    time.sleep(0.1)\n"
    "EntryWriter.add = slow_add\n"
    "from featcache.cli import main\n"
    "sys.argv[0] = 'featcache'\n"
    "main()\n"
)


def _read_all(store: FeatureStore) -> tuple[list[str], np.ndarray, dict]:
    (info,) = list(store.iter_entries())
    assert info.status == "complete"
    r = store.backend.open_entry(info.path)
    try:
        return r.ids, r.rows(np.arange(r.shape[0])), dict(zip(r.ids, r.records()))
    finally:
        r.close()


def test_killed_extraction_resumes_to_identical_result(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    args = ["extract", "--corpus", f"iemocap:{corpus_dir}", "--cache-dir", str(tmp_path / "cache"), "--variant",
            "noise", "--modality", "audio", "--audio-backbone", str(models["audio"]), "--batch-size", "2",
            "--workers", "0", "--device", "cpu"]
    p = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # kill once a few batches are durably written
        parts = list((tmp_path / "cache").rglob("*.partial"))
        if parts and len(list(parts[0].glob("chunk-*.h5"))) >= 3:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    store = FeatureStore(tmp_path / "cache")
    assert [i.status for i in store.iter_entries()] == ["partial"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "resumed" in r.output
    ref = CliRunner().invoke(cli, [*args[:4], str(tmp_path / "ref"), *args[5:]])
    assert ref.exit_code == 0, ref.output
    ids_a, vec_a, rec_a = _read_all(store)
    ids_b, vec_b, rec_b = _read_all(FeatureStore(tmp_path / "ref"))
    assert ids_a == ids_b and rec_a == rec_b  # the same utterances, the same perturbation draws
    # the same vectors; batches after the resume group utterances differently, and the kernels'
    # float rounding may differ with the batch size, hence the 1e-6 tolerance (values are O(1))
    np.testing.assert_allclose(vec_a, vec_b, rtol=0, atol=1e-6)


def test_bad_wav_mid_extraction_keeps_cache(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    base = ["--corpus", f"iemocap:{corpus_dir}", "--cache-dir", str(cache), "--modality", "audio",
            "--audio-backbone", str(models["audio"]), "--workers", "0", "--batch-size", "2"]
    ok = CliRunner().invoke(cli, ["extract", *base, "--variant", "clean"])
    assert ok.exit_code == 0, ok.output
    store = FeatureStore(cache)
    (clean,) = list(store.iter_entries())
    before = clean.path.read_bytes()
    wavs = [u.audio for u in read_iemocap(corpus_dir)]
    victim = max(wavs, key=lambda w: (sf.info(w).duration, w.stem))  # processed last (longest clip)
    good = victim.read_bytes()
    victim.write_bytes(b"\x00" * len(good))  # same size: the corpus fingerprint does not change
    r = CliRunner().invoke(cli, ["extract", *base, "--variant", "noise"])
    line = one_line_error(r)
    assert str(victim) in line and "unreadable audio" in line
    assert clean.path.read_bytes() == before
    states = sorted(i.status for i in store.iter_entries())
    assert states == ["complete", "partial"]
    victim.write_bytes(good)
    r2 = CliRunner().invoke(cli, ["extract", *base, "--variant", "noise"])
    assert r2.exit_code == 0 and "resumed" in r2.output, r2.output
    assert all(i.status == "complete" for i in store.verify())


def _break_emo_line(root: Path) -> None:
    f = sorted((root / "Session3/dialog/EmoEvaluation").glob("*.txt"))[0]
    f.write_text(f.read_text().replace("]\t", "] ", 1))


def _unknown_label(root: Path) -> None:
    f = sorted((root / "Session4/dialog/EmoEvaluation").glob("*.txt"))[0]
    lines = f.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("["))
    parts = lines[i].split("\t")
    parts[2] = "joy"
    lines[i] = "\t".join(parts)
    f.write_text("\n".join(lines) + "\n")


def _missing_dir(root: Path) -> None:
    import shutil

    shutil.rmtree(root / "Session2" / "dialog" / "EmoEvaluation")


def _empty_wav(root: Path) -> None:
    wav = sorted(root.rglob("*.wav"))[0]
    sf.write(wav, np.zeros(0, np.float32), 16000)


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (_missing_dir, "EmoEvaluation: directory not found"),
        (_break_emo_line, "malformed EmoEvaluation line"),
        (_unknown_label, "unknown label 'joy'"),
        (_empty_wav, "audio file is empty"),
    ],
)
def test_bad_input_never_touches_the_cache(corpus_dir: Path, tmp_path: Path, models, breakage, expected: str) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    base = ["extract", "--corpus", f"iemocap:{corpus_dir}", "--cache-dir", str(cache), "--modality", "audio",
            "--audio-backbone", str(models["audio"]), "--workers", "0"]
    assert CliRunner().invoke(cli, [*base, "--variant", "clean"]).exit_code == 0
    snapshot = {p: p.read_bytes() for p in cache.rglob("*.h5")}
    assert snapshot
    breakage(corpus_dir)
    line = one_line_error(CliRunner().invoke(cli, [*base, "--variant", "noise"]))
    assert expected in line and str(corpus_dir) in line
    assert {p: p.read_bytes() for p in cache.rglob("*.h5") if ".partial" not in str(p)} == snapshot
    assert all(i.status in ("complete", "partial") for i in FeatureStore(cache).verify())


def test_manifest_row_without_session_never_touches_the_cache(tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    m = tmp_path / "m.csv"
    m.write_text("id,label,session,text\na,pos,1,this is fine\nb,neg,2,go away\nc,pos,3,okay fine\n")
    cache = tmp_path / "cache"
    base = ["extract", "--corpus", f"manifest:{m}", "--cache-dir", str(cache), "--text-backbone", str(models["text"]),
            "--workers", "0"]
    assert CliRunner().invoke(cli, [*base, "--variant", "clean"]).exit_code == 0, "first extraction"
    snapshot = {p: p.read_bytes() for p in cache.rglob("*.h5")}
    m.write_text("id,label,session,text\na,pos,1,this is fine\nb,neg,,go away\nc,pos,3,okay fine\n")
    line = one_line_error(CliRunner().invoke(cli, [*base, "--variant", "clean"]))
    assert f"{m}:3: row 'b' has no session" in line
    assert {p: p.read_bytes() for p in cache.rglob("*.h5")} == snapshot


def test_other_sample_rate_and_stereo_are_converted_with_a_warning(corpus_dir: Path, tmp_path: Path, models) -> None:  # type: ignore[no-untyped-def]
    u = read_iemocap(corpus_dir).utterances[0]
    y, sr = sf.read(u.audio)
    stereo = np.stack([y, y], axis=1)
    import librosa

    sf.write(u.audio, librosa.resample(stereo.T, orig_sr=sr, target_sr=8000).T, 8000)
    r = CliRunner().invoke(cli, ["extract", "--corpus", f"iemocap:{corpus_dir}", "--cache-dir", str(tmp_path / "c"),
                                 "--modality", "audio", "--audio-backbone", str(models["audio"]), "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert f"{u.audio}: 2 channels, downmixed to mono" in r.output
    assert f"{u.audio}: sample rate 8000 Hz, resampled to 16000 Hz" in r.output
    assert [i.status for i in FeatureStore(tmp_path / "c").verify()] == ["complete"]


def test_iter_batches_hands_out_stale_buckets_early() -> None:
    from featcache.buckets import iter_batches

    lengths = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    items = [{"L": L, "id": f"u{i}"} for i, L in enumerate(lengths)]
    seen: list[int] = []

    def source():  # type: ignore[no-untyped-def]
        for i, it in enumerate(items):
            seen.append(i)
            yield it

    batches = []
    for b in iter_batches(source(), batch_size=4, max_pending=4):
        batches.append((len(seen), [it["id"] for it in b]))
    assert sorted(i for _, b in batches for i in b) == sorted(it["id"] for it in items)
    assert all(len({items[int(i[1:])]["L"] for i in b}) == 1 for _, b in batches)  # one length per batch
    assert batches[0][0] < len(items)  # the first batch leaves before the loader is exhausted
    assert max(len(b) for _, b in batches) <= 4


@pytest.mark.parametrize(("modality", "variant"), [("text", "no-text"), ("audio", "no-audio")])
def test_an_input_shared_by_every_utterance_is_encoded_once(corpus_dir: Path, tmp_path: Path, models,  # type: ignore[no-untyped-def]
                                                            modality: str, variant: str) -> None:
    corpus = read_iemocap(corpus_dir)
    run = EncoderRun(modality, str(models[modality]))
    store = FeatureStore(tmp_path / "cache")
    r = extract(corpus, store, run=run, variant=variant, batch_size=4, progress=False)
    assert r.n_written == len(corpus) > 1 and r.n_encoded == 1
    vecs = _vectors(store, r)
    # every row holds the same bytes: the one vector of the one input, as the encoder gives it alone
    enc = load_encoder(resolve_backbone(str(models[modality])), options=run.options).eval()
    x = "" if modality == "text" else get_variant(variant)(np.zeros(16_000, np.float32), utt_id="u", seed=0)[0]
    with torch.inference_mode():
        alone = enc(**enc.collate([enc.prepare(x)])).float().numpy()[0]
    assert all(row.tobytes() == alone.tobytes() for row in vecs)
    # distinct inputs are still encoded one by one
    clean = extract(corpus, store, run=run, variant="clean", batch_size=4, progress=False)
    assert clean.n_encoded == len({u.text for u in corpus}) if modality == "text" else clean.n_encoded == len(corpus)


@pytest.mark.parametrize("model", ["text", "audio", "audio_gn"])
def test_bf16_extraction_is_an_entry_of_its_own_close_to_the_float32_one(corpus_dir: Path, tmp_path: Path,
                                                                         models, model: str) -> None:  # type: ignore[no-untyped-def]
    corpus = read_iemocap(corpus_dir)
    store = FeatureStore(tmp_path / "cache")
    modality = model.split("_")[0]
    r32 = extract(corpus, store, run=EncoderRun(modality, str(models[model])), variant="clean", progress=False)
    r16 = extract(corpus, store, run=EncoderRun(modality, str(models[model]), precision="bf16"), variant="clean",
                  progress=False)
    assert r16.status == "written" and r16.key.hash != r32.key.hash and r16.key.identity["precision"] == "bf16"
    assert "precision" not in r32.key.identity  # float32 keys are what they were
    with store.open(r32.key) as e32, store.open(r16.key) as e16:
        assert e16.provenance["precision"] == "bf16" and "precision" not in e32.provenance
        a, b = e32.vectors(), e16.vectors()
        assert e16.ids == e32.ids and b.dtype == np.float32 and not np.array_equal(a, b)  # bfloat16 did run
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.999, cos.min()
    again = extract(corpus, store, run=EncoderRun(modality, str(models[model]), precision="bf16"),
                    variant="clean", progress=False)
    assert again.status == "skipped"


def test_bf16_extraction_prepares_its_inputs_in_float32(corpus_dir: Path, tmp_path: Path, models,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Autocast covers the encoder's forward only: what a worker or the main process prepares (a log-mel, the
    tokens) is never computed under it, whatever the worker count."""
    from featcache.backbones import encoders

    seen = []
    prepare = encoders.AudioInputs.prepare

    def spy(self, wave):  # type: ignore[no-untyped-def]
        seen.append(torch.is_autocast_enabled("cpu"))
        return prepare(self, wave)

    monkeypatch.setattr(encoders.AudioInputs, "prepare", spy)
    corpus = read_iemocap(corpus_dir)
    store = FeatureStore(tmp_path / "cache")
    r = extract(corpus, store, run=EncoderRun("audio", str(models["audio"]), precision="bf16"), variant="clean",
                progress=False)
    assert r.status == "written" and seen and not any(seen)


def test_bf16_weights_are_copies_and_the_float32_weights_come_back(models) -> None:  # type: ignore[no-untyped-def]
    from featcache.backbones.encoders import bf16_weights

    enc = load_encoder(resolve_backbone(str(models["text"])), options=EncoderOptions()).eval()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    ids = {k: id(v) for k, v in enc.named_parameters()}
    linear = next(m for m in enc.modules() if isinstance(m, torch.nn.Linear))
    with bf16_weights(enc):
        assert linear.weight.dtype == torch.bfloat16
        assert all(p.dtype == torch.bfloat16 for p in enc.parameters())
        assert all(b.dtype != torch.float32 for b in enc.buffers())
    assert {k: id(v) for k, v in enc.named_parameters()} == ids  # the very parameters, their float32 values back
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    with pytest.raises(RuntimeError), bf16_weights(enc):
        raise RuntimeError("inside")
    assert linear.weight.dtype == torch.float32


def test_a_worker_hands_over_numpy_items_not_a_tensor_each(corpus_dir: Path, tmp_path: Path, models,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A tensor per item would cross from the worker through a shared-memory file of its own (about 2 ms an
    item: it doubled a text extraction of IEMOCAP size); the items arrive as the encoder prepared them, numpy
    arrays, and give the vectors an in-process extraction gives."""
    from featcache.backbones import encoders

    kinds = set()
    collate = encoders.TextInputs.collate

    def spy(self, items):  # type: ignore[no-untyped-def]
        kinds.update(type(it["input_ids"]) for it in items)
        return collate(self, items)

    monkeypatch.setattr(encoders.TextInputs, "collate", spy)
    corpus = read_iemocap(corpus_dir)
    run = EncoderRun("text", str(models["text"]))
    vectors = []
    for workers in (1, 0):
        store = FeatureStore(tmp_path / f"w{workers}")
        vectors.append(_vectors(store, extract(corpus, store, run=run, variant="clean", num_workers=workers,
                                               progress=False)))
    assert kinds == {np.ndarray}
    np.testing.assert_array_equal(vectors[0], vectors[1])
