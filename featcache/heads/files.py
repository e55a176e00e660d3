"""Heads on disk, without pickle: ``model.safetensors`` + ``config.json`` (:func:`save_head`,
:func:`load_head`), and the checked safetensors reads and writes that training checkpoints use too."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file
from torch import nn

from featcache.cache.atomic import atomic_write, atomic_write_json
from featcache.cache.integrity import digest_like
from featcache.errors import FeatcacheError
from featcache.heads.registry import head_config, head_from_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class HeadFileError(FeatcacheError):
    """A head's (or checkpoint's) file is missing, unreadable or does not fit: one line naming it.

    Attributes:
        path: The file.
        problem: What is wrong with it, without the file name or the fix (``unreadable JSON ...``).
    """

    def __init__(self, message: str, *, path: Path, problem: str) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], *, metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically; tensors are copied to contiguous CPU memory.

    The same tensors and metadata always give the same bytes: the header is rewritten with sorted keys
    (:func:`_canonical_header`)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        save_file(flat, str(tmp), metadata=metadata)
        _canonical_header(tmp)

    atomic_write(path, write)


def _canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with its keys sorted, in place.

    safetensors writes the metadata in the order its hash map iterates, which changes from run to run;
    sorted, the header has the same length (only the order of its keys changes; the data offsets do not),
    so the file keeps its layout and reads back the same.
    """
    with open(path, "r+b") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > size:  # pragma: no cover - sorting never lengthens compact JSON
            raise ValueError(f"{path}: the sorted safetensors header is longer than the original")
        f.seek(8)
        f.write(text.ljust(size))


def load_tensors(path: Path, *, what: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file to CPU tensors.

    Args:
        path: the file.
        what: a few words naming the file's role, used in error messages.

    Returns:
        The tensors by name.

    Raises:
        HeadFileError: the file is missing or not a readable safetensors file (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise HeadFileError(f"{what} not found: {path}; check the path or re-create it", path=path,
                            problem=f"{what} not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HeadFileError(f"{what} is corrupt: {path} ({reason}); delete it and re-create it", path=path,
                            problem=f"{what} unreadable: {reason}") from None


def save_head(head: nn.Module, path_dir: Path) -> Path:
    """Save a head as ``model.safetensors`` (its state dict) and ``config.json`` (its architecture).

    Args:
        head: a head built by this module.
        path_dir: directory to write to (created if missing); existing files are replaced atomically.

    Returns:
        The directory.

    Raises:
        TypeError: ``head`` is not one of this module's heads.
    """
    path_dir = Path(path_dir)
    config = head_config(head)
    path_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(path_dir / WEIGHTS_FILE, dict(head.state_dict()), metadata={"format": "pt", "kind": config["kind"]})
    atomic_write_json(path_dir / CONFIG_FILE, config)
    return path_dir


def load_head(path_dir: Path, *, device: str | torch.device = "cpu", expect: Mapping[str, str] | None = None
              ) -> nn.Module:
    """Rebuild a head saved by :func:`save_head`.

    Args:
        path_dir: the directory holding ``config.json`` and ``model.safetensors``.
        device: where to put the head.
        expect: the digest each file had when the head was saved, by file name
            (:func:`featcache.heads.record.make_record`); each file is read once and checked before it is
            used. None: not checked.

    Returns:
        The head with its saved weights, in eval mode.

    Raises:
        HeadFileError: a file is missing, unreadable, changed since it was saved, or does not match the other
            (one line naming it).
    """
    path_dir = Path(path_dir)
    cfg_path = path_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise HeadFileError(f"head config not found: {cfg_path}; point at a directory written by save_head",
                            path=cfg_path, problem="head config not found")
    try:
        config = json.loads(_checked_bytes(cfg_path, expect))
        with torch.device("meta"):  # no random initialisation of weights that are loaded next
            head = head_from_config(config)
    except HeadFileError:
        raise
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HeadFileError(f"head config is corrupt: {cfg_path} ({reason}); save the head again", path=cfg_path,
                            problem=f"unreadable head config: {reason}") from None
    weights_path = path_dir / WEIGHTS_FILE
    if expect is not None and WEIGHTS_FILE in expect and weights_path.is_file():
        data = _checked_bytes(weights_path, expect)
        try:
            state = load_bytes(data)
        except (SafetensorError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise HeadFileError(f"head weights is corrupt: {weights_path} ({reason}); delete it and re-create it",
                                path=weights_path, problem=f"head weights unreadable: {reason}") from None
    else:
        state = load_tensors(weights_path, what="head weights")
    try:
        head.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise HeadFileError(
            f"head weights do not match {cfg_path.name}: {weights_path} ({first}); save the head again",
            path=weights_path, problem=f"head weights do not match {cfg_path.name}",
        ) from None
    return head.to(device).eval()


def _checked_bytes(path: Path, expect: Mapping[str, str] | None) -> bytes:
    """A file's bytes, checked against ``expect[path.name]`` when given.

    Raises:
        HeadFileError: They differ (``checksum mismatch``).
        OSError: The file cannot be read.
    """
    data = path.read_bytes()
    if expect is not None and path.name in expect and digest_like(data, str(expect[path.name])) != expect[path.name]:
        raise HeadFileError(f"head file changed after it was saved: {path}; save the head again", path=path,
                            problem="checksum mismatch: the file changed after the head was saved")
    return data
