"""Convert a CTranslate2 Whisper model into a transformers ``WhisperModel`` directory.

:func:`convert_ct2_whisper` produces a full ``WhisperModel`` (encoder and decoder, no language-model head)
in float32:

* float16 and bfloat16 weights are widened exactly; int8/int16 weights are dequantized with their stored
  ``*_scale`` (``weight / scale``, one scale per output row for int8, one per tensor for int16), which is
  what CTranslate2 itself computes when it runs such a model in float32.  AWQ-style weights (``*_zero``)
  are refused.
* CTranslate2 fuses self-attention ``q``, ``k`` and ``v`` into one ``linear_0`` (and cross-attention ``k``
  and ``v`` into ``linear_1``); they are split back.  The fused bias holds a ``k`` part that transformers'
  Whisper has no slot for: it is dropped, which is exact because adding a constant vector to every key
  shifts all of one query's attention logits by the same amount and softmax ignores that.
* ``decoder/projection`` (the output head, tied to the token embeddings in Whisper) is not part of
  ``WhisperModel`` and is not written.

Input length: the transformers Whisper encoder accepts exactly ``2 * max_source_positions`` mel frames,
i.e. 3000 frames (30 s of 16 kHz audio at hop 160) for Whisper base, and raises otherwise.  Padding shorter
clips (``WhisperFeatureExtractor`` pads to 30 s by default) and, if wanted, keeping only the encoder
positions that cover real audio (one position per two frames) is the caller's concern.

The CTranslate2 files are read by :mod:`featcache.backbones.ct2_format`; :mod:`featcache.backbones.ct2`
re-exports :func:`convert_ct2_whisper` and :data:`MARKER_NAME` and keeps the converted model cache.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featcache import __version__
from featcache.backbones.ct2_format import (
    _REPAIR_HINT,
    ModelFileError,
    _load_json,
    _read_sources,
    _resolve_sources,
)
from featcache.cache.atomic import atomic_dir

# The messages keep the logger name they had when this code lived in featcache.backbones.ct2.
logger = logging.getLogger("featcache.backbones.ct2")

MARKER_NAME = "featcache_ct2_source.json"
"""File written last into a converted directory; records where the weights came from."""

_CT2_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU


# ------------------------------------------------------------------------------------ Whisper mapping


class _WhisperMapper:
    """Builds a transformers ``WhisperModel`` state dict from CTranslate2 ``WhisperSpec`` variables."""

    def __init__(self, variables: Mapping[str, np.ndarray], label: str) -> None:
        self._vars = variables
        self._label = label
        self.used: set[str] = set()
        self.state: dict[str, np.ndarray] = {}

    def fail(self, problem: str) -> ModelFileError:
        return ModelFileError(f"{self._label}: {problem}; only CTranslate2 Whisper models can be converted")

    def get(self, name: str) -> np.ndarray:
        if name not in self._vars:
            raise self.fail(f"variable {name!r} is missing")
        self.used.add(name)
        return self._vars[name]

    def scalar(self, name: str, default: float | None = None) -> float:
        if name not in self._vars:
            if default is None:
                raise self.fail(f"variable {name!r} is missing")
            return default
        value = self.get(name)
        if value.ndim != 0:
            raise self.fail(f"variable {name!r} should be a scalar but has shape {list(value.shape)}")
        return float(value)

    def float32(self, name: str) -> np.ndarray:
        """Return variable ``name`` as float32, dequantizing integer weights with their scale."""
        array = self.get(name)
        if name + "_zero" in self._vars:
            raise self.fail(f"variable {name!r} is AWQ-quantized (has a zero point), which is not supported")
        if array.dtype == np.float32:
            return array
        if array.dtype == np.float16:
            return array.astype(np.float32)
        if array.dtype in (np.int8, np.int16):
            scale_name = name + "_scale"
            if scale_name not in self._vars:
                raise self.fail(f"integer variable {name!r} has no {scale_name!r}")
            scale = self.get(scale_name).astype(np.float32)
            if scale.ndim == 0:
                return array.astype(np.float32) / scale
            if scale.shape == (array.shape[0],):
                return array.astype(np.float32) / scale.reshape((-1,) + (1,) * (array.ndim - 1))
            raise self.fail(f"scale {scale_name!r} of shape {list(scale.shape)} does not fit {name!r}")
        raise self.fail(f"variable {name!r} has dtype {array.dtype}, which is not a weight type")

    def put(self, key: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
        if tuple(array.shape) != shape:
            raise self.fail(f"tensor for {key!r} has shape {list(array.shape)}, expected {list(shape)}")
        self.state[key] = np.ascontiguousarray(array, dtype=np.float32)

    def bias(self, name: str, size: int) -> np.ndarray:
        return self.float32(name) if name in self._vars else np.zeros(size, dtype=np.float32)

    def linear(self, key: str, scope: str, n_out: int, n_in: int) -> None:
        self.put(f"{key}.weight", self.float32(f"{scope}/weight"), (n_out, n_in))
        self.put(f"{key}.bias", self.bias(f"{scope}/bias", n_out), (n_out,))

    def layer_norm(self, key: str, scope: str, d_model: int) -> None:
        self.put(f"{key}.weight", self.float32(f"{scope}/gamma"), (d_model,))
        self.put(f"{key}.bias", self.float32(f"{scope}/beta"), (d_model,))

    def fused(self, scope: str, keys: Sequence[str], d_model: int) -> None:
        """Split a fused projection into ``keys``; a ``k_proj`` part loses its bias (see the module doc)."""
        weight = self.float32(f"{scope}/weight")
        rows = d_model * len(keys)
        if weight.shape != (rows, d_model):
            raise self.fail(f"fused projection {scope!r} has shape {list(weight.shape)}, "
                            f"expected {[rows, d_model]}")
        bias = self.bias(f"{scope}/bias", rows)
        for index, key in enumerate(keys):
            rows_slice = slice(index * d_model, (index + 1) * d_model)
            self.put(f"{key}.weight", weight[rows_slice], (d_model, d_model))
            if not key.endswith("k_proj"):
                self.put(f"{key}.bias", bias[rows_slice], (d_model,))

    def ffn(self, key: str, scope: str, d_model: int, ffn_dim: int) -> None:
        self.linear(f"{key}.fc1", f"{scope}/ffn/linear_0", ffn_dim, d_model)
        self.linear(f"{key}.fc2", f"{scope}/ffn/linear_1", d_model, ffn_dim)
        self.layer_norm(f"{key}.final_layer_norm", f"{scope}/ffn/layer_norm", d_model)

    def count_layers(self, side: str) -> int:
        count = 0
        while any(n.startswith(f"{side}/layer_{count}/") for n in self._vars):
            count += 1
        return count


def _read_vocabulary(path: Path) -> list[str]:
    if path.suffix == ".json":
        tokens = _load_json(path)
        if not isinstance(tokens, list):
            raise ModelFileError(f"{path}: expected a JSON list of tokens; {_REPAIR_HINT}")
        return [str(t) for t in tokens]
    return path.read_text(encoding="utf-8").split("\n")


def _whisper_to_hf(
    variables: Mapping[str, np.ndarray], metadata: Mapping[str, Any], label: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Map CTranslate2 Whisper variables to a ``WhisperModel`` state dict and ``WhisperConfig`` kwargs."""
    mapper = _WhisperMapper(variables, label)
    if metadata["spec"] != "WhisperSpec":
        raise mapper.fail(f"the file holds a {metadata['spec'] or 'legacy Transformer'!r} model, not WhisperSpec")

    # Options the transformers implementation hard-codes: refuse models that differ.
    checks = {
        "decoder/activation": (_CT2_GELU, "the decoder activation is not GELU"),
        "decoder/pre_norm": (1, "the decoder is not pre-norm"),
        "decoder/alibi": (0, "the decoder uses ALiBi"),
        "decoder/start_from_zero_embedding": (0, "the decoder starts from a zero embedding"),
    }
    for name, (expected, problem) in checks.items():
        if mapper.scalar(name, default=float(expected)) != expected:
            raise mapper.fail(problem)
    # A boolean true means "multiply by sqrt(d_model)"; a float is the factor itself.
    scale_embeddings = mapper.scalar("decoder/scale_embeddings", default=0.0)
    is_float_factor = "decoder/scale_embeddings" in variables and variables[
        "decoder/scale_embeddings"
    ].dtype.kind == "f"
    if not (scale_embeddings == 0.0 or (is_float_factor and scale_embeddings == 1.0)):
        raise mapper.fail("the decoder scales its token embeddings")

    conv1 = mapper.get("encoder/conv1/weight")
    if conv1.ndim != 3 or conv1.shape[2] != 3:
        raise mapper.fail(f"encoder/conv1/weight has shape {list(conv1.shape)}, expected [d_model, n_mels, 3]")
    d_model, num_mel_bins = int(conv1.shape[0]), int(conv1.shape[1])
    enc_layers = mapper.count_layers("encoder")
    dec_layers = mapper.count_layers("decoder")
    if enc_layers == 0 or dec_layers == 0:
        raise mapper.fail("the model has no encoder or no decoder layers")
    enc_heads = int(mapper.scalar("encoder/num_heads"))
    dec_heads = int(mapper.scalar("decoder/num_heads"))
    for heads in (enc_heads, dec_heads):
        if heads <= 0 or d_model % heads:
            raise mapper.fail(f"{heads} attention heads do not divide d_model={d_model}")
    enc_ffn = int(mapper.get("encoder/layer_0/ffn/linear_0/weight").shape[0])
    dec_ffn = int(mapper.get("decoder/layer_0/ffn/linear_0/weight").shape[0])
    max_source_positions = int(mapper.get("encoder/position_encodings/encodings").shape[0])
    max_target_positions = int(mapper.get("decoder/position_encodings/encodings").shape[0])
    vocab_size = int(mapper.get("decoder/embeddings/weight").shape[0])

    # Encoder.
    mapper.put("encoder.conv1.weight", mapper.float32("encoder/conv1/weight"), (d_model, num_mel_bins, 3))
    mapper.put("encoder.conv1.bias", mapper.bias("encoder/conv1/bias", d_model), (d_model,))
    mapper.put("encoder.conv2.weight", mapper.float32("encoder/conv2/weight"), (d_model, d_model, 3))
    mapper.put("encoder.conv2.bias", mapper.bias("encoder/conv2/bias", d_model), (d_model,))
    mapper.put("encoder.embed_positions.weight", mapper.float32("encoder/position_encodings/encodings"),
               (max_source_positions, d_model))
    for i in range(enc_layers):
        key, scope = f"encoder.layers.{i}", f"encoder/layer_{i}"
        mapper.fused(f"{scope}/self_attention/linear_0",
                     [f"{key}.self_attn.q_proj", f"{key}.self_attn.k_proj", f"{key}.self_attn.v_proj"], d_model)
        mapper.linear(f"{key}.self_attn.out_proj", f"{scope}/self_attention/linear_1", d_model, d_model)
        mapper.layer_norm(f"{key}.self_attn_layer_norm", f"{scope}/self_attention/layer_norm", d_model)
        mapper.ffn(key, scope, d_model, enc_ffn)
    mapper.layer_norm("encoder.layer_norm", "encoder/layer_norm", d_model)

    # Decoder.
    mapper.put("decoder.embed_tokens.weight", mapper.float32("decoder/embeddings/weight"), (vocab_size, d_model))
    mapper.put("decoder.embed_positions.weight", mapper.float32("decoder/position_encodings/encodings"),
               (max_target_positions, d_model))
    for i in range(dec_layers):
        key, scope = f"decoder.layers.{i}", f"decoder/layer_{i}"
        mapper.fused(f"{scope}/self_attention/linear_0",
                     [f"{key}.self_attn.q_proj", f"{key}.self_attn.k_proj", f"{key}.self_attn.v_proj"], d_model)
        mapper.linear(f"{key}.self_attn.out_proj", f"{scope}/self_attention/linear_1", d_model, d_model)
        mapper.layer_norm(f"{key}.self_attn_layer_norm", f"{scope}/self_attention/layer_norm", d_model)
        mapper.linear(f"{key}.encoder_attn.q_proj", f"{scope}/attention/linear_0", d_model, d_model)
        mapper.fused(f"{scope}/attention/linear_1",
                     [f"{key}.encoder_attn.k_proj", f"{key}.encoder_attn.v_proj"], d_model)
        mapper.linear(f"{key}.encoder_attn.out_proj", f"{scope}/attention/linear_2", d_model, d_model)
        mapper.layer_norm(f"{key}.encoder_attn_layer_norm", f"{scope}/attention/layer_norm", d_model)
        mapper.ffn(key, scope, d_model, dec_ffn)
    mapper.layer_norm("decoder.layer_norm", "decoder/layer_norm", d_model)

    # The output head is outside WhisperModel (tied to the token embeddings in Whisper).
    mapper.used.update(n for n in variables if n.startswith("decoder/projection/"))
    leftover = sorted(
        n for n, v in variables.items()
        if v.ndim > 0 and n not in mapper.used and not n.endswith("_scale")
    )
    if leftover:
        more = f" (+{len(leftover) - 3} more)" if len(leftover) > 3 else ""
        raise mapper.fail(f"unexpected variables {', '.join(leftover[:3])}{more}")

    config_kwargs: dict[str, Any] = {
        "vocab_size": vocab_size,
        "num_mel_bins": num_mel_bins,
        "d_model": d_model,
        "encoder_layers": enc_layers,
        "encoder_attention_heads": enc_heads,
        "encoder_ffn_dim": enc_ffn,
        "decoder_layers": dec_layers,
        "decoder_attention_heads": dec_heads,
        "decoder_ffn_dim": dec_ffn,
        "max_source_positions": max_source_positions,
        "max_target_positions": max_target_positions,
        "activation_function": "gelu",
        "scale_embedding": False,
    }
    ct2_config = metadata.get("config") or {}
    if ct2_config.get("suppress_ids") is not None:
        config_kwargs["suppress_tokens"] = [int(t) for t in ct2_config["suppress_ids"]]
    if ct2_config.get("suppress_ids_begin") is not None:
        config_kwargs["begin_suppress_tokens"] = [int(t) for t in ct2_config["suppress_ids_begin"]]
    tokens = _read_vocabulary(Path(metadata["vocabulary_file"])) if metadata.get("vocabulary_file") else []
    special = {t: i for i, t in enumerate(tokens) if t in ("<|endoftext|>", "<|startoftranscript|>")}
    if "<|endoftext|>" in special:
        eot = special["<|endoftext|>"]
        config_kwargs.update(pad_token_id=eot, bos_token_id=eot, eos_token_id=eot)
    if "<|startoftranscript|>" in special:
        config_kwargs["decoder_start_token_id"] = special["<|startoftranscript|>"]
    # transformers' defaults (50256/50257) would index past a smaller vocabulary.
    for key, default in (("pad_token_id", 50256), ("bos_token_id", 50256), ("eos_token_id", 50256),
                         ("decoder_start_token_id", 50257)):
        if key not in config_kwargs and default >= vocab_size:
            config_kwargs[key] = None
    return mapper.state, config_kwargs


# ----------------------------------------------------------------------------------------- conversion


def _write_checkpoint(out_dir: Path, state: dict[str, np.ndarray], config_kwargs: dict[str, Any]) -> None:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(**config_kwargs)
    with torch.device("meta"):
        model = WhisperModel(config)
    tensors = {key: torch.from_numpy(value) for key, value in state.items()}
    # strict=True: every WhisperModel parameter must come from the file and nothing else may.
    model.load_state_dict(tensors, strict=True, assign=True)
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:
        raise ModelFileError(f"{out_dir}: conversion left tensors unset ({', '.join(on_meta[:3])}); "
                             "this transformers version lays out WhisperModel differently")
    model.eval()
    model.save_pretrained(out_dir)
    frames = 2 * config.max_source_positions
    chunk_length, rest = divmod(frames * 160, 16000)
    if rest:
        raise ModelFileError(f"{out_dir}: {frames} encoder frames are not a whole number of seconds "
                             "at hop 160; cannot describe the feature extractor")
    WhisperFeatureExtractor(
        feature_size=config.num_mel_bins, sampling_rate=16000, hop_length=160, chunk_length=chunk_length,
        n_fft=400,
    ).save_pretrained(out_dir)


def _make_readable(directory: Path) -> None:
    """Give ``directory``'s files the modes a normal ``open`` would (``save_pretrained`` may write 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    for path in directory.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def convert_ct2_whisper(
    src_dir: Path | Sequence[Path], out_dir: Path, *, overwrite: bool = False
) -> Path:
    """Convert a CTranslate2 Whisper model into a transformers ``WhisperModel`` directory.

    The directory receives ``config.json`` and ``model.safetensors`` (via ``save_pretrained``, float32),
    ``preprocessor_config.json`` (a ``WhisperFeatureExtractor``: 16 kHz, hop 160, ``n_fft`` 400, the
    model's mel bins and window length) and, last, the marker ``featcache_ct2_source.json`` recording the
    source file names, sizes and the SHA-256 of ``model.bin``.  Everything is written into a temporary
    sibling directory that is fsynced and renamed into place when complete
    (:func:`featcache.cache.atomic.atomic_dir`), so ``out_dir`` is never half-written.
    Encoder and decoder weights are exactly the stored ones (widened or dequantized to float32); see the
    module docstring for the q/k/v split, the dropped key bias and the 3000-frame input requirement.

    Args:
        src_dir: A CTranslate2 Whisper model directory or an explicit list of its files (see
            :func:`read_ct2_model`).
        out_dir: Directory to create.
        overwrite: Replace ``out_dir`` if it already exists.

    Returns:
        ``out_dir``.

    Raises:
        ModelFileError: If ``out_dir`` exists and ``overwrite`` is false, or it is not a directory, the
            source is malformed, or it is not a Whisper model transformers can represent.
    """
    out_dir = Path(out_dir)
    if (out_dir.exists() or out_dir.is_symlink()) and not overwrite:
        raise ModelFileError(f"{out_dir}: already exists; delete it or pass overwrite=True")
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ModelFileError(f"{out_dir}: exists and is not a directory; move it away")
    sources = _resolve_sources(src_dir)
    variables, metadata = _read_sources(sources)
    state, config_kwargs = _whisper_to_hf(variables, metadata, sources.label)
    stored_dtypes = sorted({metadata["dtypes"][n] for n, v in variables.items() if v.ndim > 0})
    del variables

    marker = {
        "format": 1,
        "converter": "featcache.backbones.ct2",
        "featcache_version": __version__,
        "source_files": [Path(p).name for p in metadata["source_files"]]
        + [p.name for p in (sources.config, sources.vocabulary) if p is not None],
        "source_sizes": list(metadata["source_sizes"])
        + [p.stat().st_size for p in (sources.config, sources.vocabulary) if p is not None],
        "model_bin_sha256": metadata["sha256"],
        "model_bin_bytes": metadata["num_bytes"],
        "ct2_binary_version": metadata["binary_version"],
        "ct2_spec": metadata["spec"],
        "ct2_spec_revision": metadata["spec_revision"],
        "ct2_stored_dtypes": stored_dtypes,
    }
    try:
        with atomic_dir(out_dir, replace=True) as tmp:
            _write_checkpoint(tmp, state, config_kwargs)
            (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            _make_readable(tmp)
    except NotADirectoryError:  # replaced by a file while converting
        raise ModelFileError(f"{out_dir}: exists and is not a directory; move it away") from None
    logger.info("converted %s into %s", sources.label, out_dir)
    return out_dir
