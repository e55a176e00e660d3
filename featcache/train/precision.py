"""Precision and devices: which arithmetic a run trains in, autocast, and moving batches to the device."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from featcache.errors import FeatcacheError
from featcache.options import (  # the choices of resolve_precision and compute_dtype, as study options name them
    COMPUTE_PRECISIONS,
    PRECISIONS,
)

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
"""Autocast dtype of each mixed precision (:func:`~featcache.train.fit`'s ``amp_dtype``)."""
AUTO_BF16_WIDTH = 768
"""``auto`` uses bfloat16 on CUDA for backbones at least this wide (BERT-base, wav2vec2-base and larger)."""


def resolve_precision(precision: str, *, device: torch.device, width: int) -> str:
    """The precision a run trains in: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is float32 on a CPU, and on CUDA bfloat16 autocast for backbones of :data:`AUTO_BF16_WIDTH`
    or more hidden units (where the matrix products dominate), float32 for smaller ones: on an H200,
    bfloat16 autocast made MiniLM (384-d) at batch 16 slower than float32, since its casts cost more
    than its small matrix products gain. ``fp16`` adds a gradient scaler.

    Args:
        precision: One of :data:`PRECISIONS`.
        device: Where the run trains.
        width: The widest backbone's hidden size (only read for ``auto`` on CUDA).

    Returns:
        The resolved precision.

    Raises:
        FeatcacheError: An unknown precision, bf16 on a CUDA device without bfloat16, or a mixed precision
            on a device other than CUDA.
    """
    if precision not in PRECISIONS:
        raise FeatcacheError(f"precision (--precision {precision!r}): use {', '.join(PRECISIONS)}")
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 and width >= AUTO_BF16_WIDTH else "fp32"
    if precision != "fp32" and device.type != "cuda":
        raise FeatcacheError(f"precision (--precision {precision}): mixed precision needs a CUDA device; use fp32 or auto")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise FeatcacheError("precision (--precision bf16): this CUDA device has no bfloat16; use fp16 or fp32")
    return precision


def native_cpu_bf16(*, cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU multiplies bfloat16 matrices natively: its flags (Linux's ``/proc/cpuinfo``, what
    ``lscpu`` shows) list ``avx512_bf16`` or ``amx_bf16``.

    Elsewhere (an AVX2-only CPU) torch emulates bfloat16 products, which are then slower than float32 ones.

    Args:
        cpuinfo: The file to read the flags from.

    Returns:
        True or False, or None where no x86 flags can be read (another system or architecture).
    """
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = {f for line in text.splitlines() if line.startswith("flags") and ":" in line
             for f in line.split(":", 1)[1].split()}
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    capability = torch.backends.cpu.get_cpu_capability()
    logger.warning("--precision bf16: this CPU has neither AVX512-BF16 nor AMX (torch sees %s), so bfloat16 "
                   "products are emulated and slower than float32 ones; use fp32 here for speed", capability)


def compute_dtype(precision: str, *, device: torch.device) -> torch.dtype:
    """The dtype of the matrix products of extraction and of the heads trained on cached vectors
    (``--precision``): float32, or bfloat16 on any device that has it (a CPU always does: with AVX512-BF16
    or AMX it runs bfloat16 products several times faster than float32 ones; without either they are
    emulated and slower, which one warning says, :func:`native_cpu_bf16`).

    Args:
        precision: One of :data:`~featcache.options.COMPUTE_PRECISIONS`.
        device: Where the work runs.

    Returns:
        ``torch.float32`` or ``torch.bfloat16``.

    Raises:
        FeatcacheError: An unknown precision, or bf16 on a CUDA device without bfloat16.
    """
    if precision not in COMPUTE_PRECISIONS:
        raise FeatcacheError(f"precision (--precision {precision!r}): use {' or '.join(COMPUTE_PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FeatcacheError("precision (--precision bf16): this CUDA device has no bfloat16; use fp32")
    if device.type == "cpu" and native_cpu_bf16() is False:
        _warn_emulated_bf16()
    return torch.bfloat16


DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")
"""The device types featcache runs on (``auto``: CUDA where there is one, else the CPU)."""


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device a ``device`` option names.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (or a :class:`torch.device`).

    Returns:
        The device.

    Raises:
        FeatcacheError: A name torch does not know or featcache does not run on (``tpu``), or CUDA where
            there is none (one line each, with the names to use).
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise FeatcacheError(f"device (--device {device!r}) is unknown; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FeatcacheError(f"device (--device {device}): no CUDA device is available; use --device cpu")
    return dev


def _to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _autocast(device: torch.device, amp: bool, dtype: torch.dtype) -> Any:
    return torch.autocast(device_type=device.type, dtype=dtype) if amp else nullcontext()
