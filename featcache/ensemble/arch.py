"""The heads an ensemble trains and their batched forward: members, their grouping into stacks of one
architecture, and each architecture's layer sequence replayed on stacked parameters (:class:`StackedLayers`, which
each head kind's own ``stacked`` forward runs on)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from featcache.heads import MLPBody, head_config

# ------------------------------------------------------------------------------------------ members


@dataclass
class Member:
    """One head to train, with its data and seed.

    Attributes:
        head: The head, freshly built after ``torch.manual_seed(seed)`` (as for :func:`featcache.train.fit`);
            on return it holds its best epoch's weights.
        inputs: One source matrix ``[rows, dim]`` per input of the head (text, then audio); members
            that pass the same tensor object share it in memory.
        train_rows: Rows of ``inputs`` that form the training set, in the order a one-at-a-time loader
            would hold them.
        train_labels: Class index of each training row.
        dev_rows: Rows of ``inputs`` that form the dev set.
        dev_labels: Class index of each dev row.
        class_weights: Per-class loss weights (:func:`featcache.train.class_weights`), or None.
        seed: The run's seed (shuffling, dropout).
    """

    head: nn.Module
    inputs: tuple[torch.Tensor, ...]
    train_rows: np.ndarray
    train_labels: np.ndarray
    dev_rows: np.ndarray
    dev_labels: np.ndarray
    class_weights: torch.Tensor | None
    seed: int


def _group_key(head: nn.Module) -> str:
    """Members with the same key share every parameter shape and layer sequence (one stack): the head's own
    ``stack_key()`` where its kind defines one, else its config without the per-member modality dropout."""
    if not hasattr(head, "stacked"):
        raise ValueError(f"fit_ensemble cannot train a {type(head).__name__}: it has no trainable parameters "
                         "or is not a featcache head")
    if hasattr(head, "stack_key"):
        return str(head.stack_key())
    cfg = head_config(head)
    options = dict(cfg["options"])
    options.pop("modality_dropout", None)  # a per-member draw: multimodal and mdrop heads share a stack
    return json.dumps([cfg["kind"], cfg["text_dim"], cfg["audio_dim"], cfg["n_classes"], options], sort_keys=True)


def _trainable(head: nn.Module) -> list[str]:
    """Names of the parameters the ensemble trains: every parameter, or those the head's kind names
    (``stacked_trainable()``, e.g. a score fusion's layer over its frozen heads)."""
    names = [n for n, p in head.named_parameters() if p.requires_grad]
    frozen = [n for n, p in head.named_parameters() if not p.requires_grad]
    if hasattr(head, "stacked_trainable"):
        if names != head.stacked_trainable():
            raise ValueError(f"a {type(head).__name__} trains only {head.stacked_trainable()}, got trainable {names}")
    elif frozen:
        raise ValueError(f"fit_ensemble trains every parameter of a {type(head).__name__}; frozen: {frozen}")
    if not names:
        raise ValueError("the model has no trainable parameters")
    return names


# ------------------------------------------------------------------------------------------ the batched forward


NARROW = 16
"""Batched work that would round differently from the one-at-a-time head runs member by member instead.

``nn.Linear`` on CPU (MKL) picks its kernel by shape, and for some shapes a row's result depends on how
many rows the product has: layers with fewer than 12 inputs or outputs (the classifiers, a scalar gate,
the score layer), and any layer on fewer than 4 rows (measured with MKL 2024.2, AVX2). Elementwise
functions such as ``sigmoid`` and ``tanh`` compute the last ``numel % 16`` elements of a tensor with a
scalar formula that can differ from the vectorised one in the last bit. So a layer is *narrow* unless
it has at least ``NARROW`` inputs and a multiple of ``NARROW`` outputs; a narrow layer (and its
activation) runs as ``F.linear`` on exactly each member's own rows, and so does every layer of a member
whose batch has fewer than ``NARROW`` rows. Narrow layers cost next to nothing. Every other layer is one
``torch.baddbmm`` over the members, which gives ``nn.Linear``'s bits, forward and gradients, whatever
the padding."""


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return x if x.shape[0] == rows else F.pad(x, (0, 0, 0, rows - x.shape[0]))


class StackedLayers:
    """The layer sequence of one head architecture, replayed on stacked parameters.

    Generic: each head kind says how its forward runs on these layers (``head.stacked(layers, ...)``, next
    to its own ``forward`` in :mod:`featcache.heads`) and which bodies it runs (``head.stacked_bodies()``).
    The dropout sites are listed in the order the one-at-a-time forward pass draws them, so that each
    member draws its masks exactly as its own head would.
    """

    def __init__(self, head: nn.Module, *, bitwise: bool = True) -> None:
        self.head = head
        self.bitwise = bitwise  # False: every layer of every member is one baddbmm (no NARROW runs, see there)
        self.n_classes = int(head.n_classes)
        self.modality_dropout = hasattr(head, "modality_dropout")
        self.bodies: list[tuple[str, MLPBody]] = list(head.stacked_bodies())
        self.sites: list[tuple[str, float]] = []  # (key, p) of every nn.Dropout, in forward order
        self.width: dict[str, int] = {}  # its input's width (the preceding linear layer's output size)
        for prefix, body in self.bodies:
            width = body.in_dim
            for i, layer in enumerate(body.layers):
                if isinstance(layer, nn.Linear):
                    width = layer.out_features
                elif isinstance(layer, nn.Dropout):
                    self.sites.append((f"{prefix}.layers.{i}", float(layer.p)))
                    self.width[f"{prefix}.layers.{i}"] = width
        self.narrow = {n for n, m in head.named_modules() if isinstance(m, nn.Linear)
                       and (m.in_features < NARROW or m.out_features < NARROW or m.out_features % NARROW)
                       } if bitwise else set()
        self.macs = sum(p.numel() for n, p in head.named_parameters() if n.endswith("weight") and p.requires_grad)

    def linear(self, p: dict[str, torch.Tensor], name: str, x: torch.Tensor, sizes: Sequence[int],
               act: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """``act(nn.Linear)`` for every member: ``x [m, b, in]`` -> ``[m, b, out]``; member ``j``'s real
        rows are its first ``sizes[j]`` (the rest is padding, whose output is zero or ignored).

        Wide layers' weights are stored ``[m, in, out]`` (one ``baddbmm``), narrow ones ``[m, out, in]``
        (see :data:`NARROW`); without ``bitwise`` every layer is wide: one ``baddbmm`` for all members, in
        the dtype of ``x`` and ``p`` (bfloat16 or float32).
        """
        w, b = p[name + ".weight"], p[name + ".bias"]
        rows = x.shape[1]
        if name in self.narrow:
            outs = [F.linear(xm[:n], wm, bm) for xm, wm, bm, n in zip(x.unbind(0), w.unbind(0), b.unbind(0), sizes)]
            return torch.stack([_pad_rows(o if act is None else act(o), rows) for o in outs])
        out = torch.baddbmm(b.unsqueeze(1), x, w)
        few = [j for j, n in enumerate(sizes) if n < NARROW] if self.bitwise else []
        if few:
            parts = list(out.unbind(0))
            for j in few:
                parts[j] = _pad_rows(F.linear(x[j, :sizes[j]], w[j].t().contiguous(), b[j]), rows)
            out = torch.stack(parts)
        return out if act is None else act(out)

    def body(self, p: dict[str, torch.Tensor], prefix: str, body: MLPBody, x: torch.Tensor,
              noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> torch.Tensor:
        for i, layer in enumerate(body.layers):
            key = f"{prefix}.layers.{i}"
            if isinstance(layer, nn.Linear):
                x = self.linear(p, key, x, sizes)
            elif isinstance(layer, nn.ReLU):
                x = torch.relu(x)
            elif isinstance(layer, nn.Dropout):
                if noise is not None:
                    x = x * noise[key]
            else:  # pragma: no cover - MLPBody holds only these three
                raise TypeError(f"unexpected layer {type(layer).__name__} in {prefix}")
        return x

    def forward(self, p: dict[str, torch.Tensor], xs: Sequence[torch.Tensor],
                noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> torch.Tensor:
        """Logits ``[members, batch, n_classes]`` (rows past ``sizes[j]`` are padding); ``noise`` holds
        the training masks (None: eval mode)."""
        return self.head.stacked(self, p, xs, noise, sizes)
