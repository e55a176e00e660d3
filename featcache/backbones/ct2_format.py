"""Read CTranslate2 ``model.bin`` files (whole or split into parts) exactly: :func:`read_ct2_model`.

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

:mod:`featcache.backbones.ct2` re-exports :func:`read_ct2_model` and :class:`ModelFileError`;
:mod:`featcache.backbones.ct2_convert` turns what is read here into a transformers checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featcache.errors import FeatcacheError

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
_SIDE_FILE_NAMES = ("config.json", "vocabulary.json", "vocabulary.txt")
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
