"""Optimizer and RNG state as flat tensors, so that checkpoints hold safetensors files and no pickle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featcache.errors import FeatcacheError


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into flat tensors and a JSON-able rest.

    Args:
        optimizer: the optimizer.

    Returns:
        ``(tensors, meta)``: tensors keyed ``"state.<param index>.<name>"`` (and
        ``"group.<index>.<name>"`` for tensor-valued hyperparameters); ``meta`` holds the non-tensor
        per-parameter state and the param groups' hyperparameters.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups: list[dict[str, Any]] = []
    for i, group in enumerate(sd["param_groups"]):
        plain: dict[str, Any] = {}
        for name, value in group.items():
            if torch.is_tensor(value):
                tensors[f"group.{i}.{name}"] = value
            else:
                plain[name] = list(value) if isinstance(value, tuple) else value
        groups.append(plain)
    return tensors, {"state": scalars, "param_groups": groups}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    """Load the output of :func:`optimizer_to_tensors` into ``optimizer`` (same parameters, same order).

    Raises:
        ValueError: a tensor key is malformed or the state does not fit the optimizer.
    """
    state: dict[int, dict[str, Any]] = {}
    groups = [dict(g) for g in meta["param_groups"]]
    for key, value in tensors.items():
        parts = key.split(".", 2)
        if len(parts) != 3 or parts[0] not in ("state", "group"):
            raise ValueError(f"malformed optimizer tensor key {key!r}")
        if parts[0] == "state":
            state.setdefault(int(parts[1]), {})[parts[2]] = value
        else:
            groups[int(parts[1])][parts[2]] = value
    for idx, entry in meta["state"].items():
        state.setdefault(int(idx), {}).update(entry)
    current = optimizer.param_groups
    if len(current) != len(groups):
        raise ValueError(f"optimizer has {len(current)} param groups, the saved state {len(groups)}")
    for group, now in zip(groups, current):
        for name, value in group.items():
            if isinstance(value, list) and name != "params" and isinstance(now.get(name), tuple):
                group[name] = tuple(value)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_tensors(generator: torch.Generator | None, device: torch.device) -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # wav2vec 2.0 draws its SpecAugment masks here
    if kind == "MT19937":
        out["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
        out["numpy.rest"] = torch.tensor([float(pos), float(has_gauss), float(gauss)], dtype=torch.float64)
    if generator is not None:
        out["generator"] = generator.get_state()
    if device.type == "cuda" and torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def _set_rng(
    tensors: Mapping[str, torch.Tensor], generator: torch.Generator | None, device: torch.device, path: Path
) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "numpy.keys" in tensors:
        pos, has_gauss, gauss = tensors["numpy.rest"].tolist()
        np.random.set_state(("MT19937", tensors["numpy.keys"].numpy().astype(np.uint32), int(pos), int(has_gauss),
                             gauss))
    if generator is not None:
        if "generator" not in tensors:
            raise FeatcacheError(
                f"{path} holds no shuffling-generator state but the training loader has a generator; "
                "delete the run directory to start over"
            )
        generator.set_state(tensors["generator"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
