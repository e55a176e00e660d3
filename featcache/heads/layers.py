"""A head on every stored layer: SUPERB's featurizer in front of any head (:class:`LayerWeightedHead`).

For layer-wise vectors (``featcache extract --layers``, ``[batch, layers, dim]``), ``--layer weighted`` puts
one softmax-weighted sum over the layers in front of each modality a head reads, with its weights learned
together with the head (initialised to zero: every layer weighs the same at the start).

This is s3prl's ``Featurizer`` (``s3prl/upstream/interfaces.py``: ``weights = nn.Parameter(torch.zeros(
layer_num))``, ``softmax(weights)`` over the stacked hidden states, ``normalize=False`` by default) moved
after pooling. The two agree exactly whenever what follows the weighted sum is linear up to the pooling:
mean pooling over frames commutes with a weighted sum over layers, so a weighted sum of the mean-pooled
layers equals the mean pool of the weighted frame-level sum. SUPERB's emotion head
(``s3prl/downstream/emotion/``: a linear projector, ``UtteranceLevel`` with ``MeanPooling``, one linear
layer) is linear up to its pooling, so ``--layer weighted`` in front of a linear head is SUPERB's emotion
head exactly (on the frames featcache pools: the valid ones, by the model's own output lengths). It
differs with the featurizer's ``normalize=True`` (a layer norm per frame does not commute with pooling)
and for frame-level heads (s3prl's CNN and self-attention models), which featcache does not train.

The learned weights are saved with the head (``text_layers.weights`` / ``audio_layers.weights`` in
``model.safetensors``); :meth:`LayerWeightedHead.layer_weights` gives them as probabilities.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from featcache.heads.bodies import UnimodalHead


def is_unimodal(head: object) -> bool:
    """A unimodal head, or one with layer weights in front: what a late or score fusion fuses."""
    return isinstance(head, UnimodalHead) or (isinstance(head, LayerWeightedHead)
                                              and isinstance(head.head, UnimodalHead))


class LayerWeights(nn.Module):
    """Softmax weights over ``n_layers`` hidden states: ``[batch, layers, dim]`` -> ``[batch, dim]``.

    Args:
        n_layers: Hidden states per input.
    """

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        if int(n_layers) < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        self.weights = nn.Parameter(torch.zeros(int(n_layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.weights.shape[0]:
            raise ValueError(f"expected [batch, {self.weights.shape[0]}, dim] layer-wise vectors, got {tuple(x.shape)}")
        return torch.einsum("l,bld->bd", torch.softmax(self.weights, 0).to(x.dtype), x)


class LayerWeightedHead(nn.Module):
    """Any featcache head with :class:`LayerWeights` in front of each modality it reads.

    Args:
        head: The head that reads the weighted sums (built as for last-layer vectors).
        text_layers: Hidden states of its text input (None: it reads no text).
        audio_layers: Hidden states of its audio input (None: it reads no audio).
    """

    kind = "weighted"
    stackable = False
    """Trained alone, not in a batched ensemble (:func:`featcache.ensemble.fit_heads`)."""

    def __init__(self, head: nn.Module, *, text_layers: int | None = None, audio_layers: int | None = None) -> None:
        super().__init__()
        self.head = head
        self.text_layers = LayerWeights(text_layers) if text_layers else None
        self.audio_layers = LayerWeights(audio_layers) if audio_layers else None
        mods = [m for m, w in (("text", self.text_layers), ("audio", self.audio_layers)) if w is not None]
        if not mods:
            raise ValueError("a layer-weighted head needs text_layers or audio_layers")
        self.modalities = tuple(mods)

    @property
    def n_classes(self) -> int:
        return int(self.head.n_classes)

    @property
    def in_dim(self) -> int:
        """Values per layer of a weighted unimodal head's input."""
        return int(self.head.in_dim)

    @property
    def modality(self) -> str:
        """The one modality of a weighted unimodal head (what a late or score fusion asks its parts)."""
        return str(self.head.modality)

    def mix(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The weighted sum over the layers of one modality's vectors."""
        weights = self.text_layers if modality == "text" else self.audio_layers
        if weights is None:
            raise ValueError(f"this head reads no {modality}")
        return weights(x)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.head(*(self.mix(m, x) for m, x in zip(self.modalities, xs, strict=True)))

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """The weighted sum through the wrapped fusion head's part for ``modality`` (see ``join``)."""
        return self.head.encode(modality, self.mix(modality, x))

    @property
    def join(self) -> Any:
        """The wrapped head's ``join`` (a fusion head's); absent for a unimodal head."""
        if not hasattr(self.head, "join"):
            raise AttributeError("join")
        return self.head.join

    def layer_weights(self) -> dict[str, list[float]]:
        """The learned weight of each layer, per modality, as probabilities (they sum to 1)."""
        return {m: torch.softmax(self.text_layers.weights if m == "text" else self.audio_layers.weights,  # type: ignore[union-attr]
                                 0).detach().cpu().tolist() for m in self.modalities}

    def config_dims(self) -> tuple[int | None, int | None]:
        return self.head.config_dims()

    def config_options(self) -> dict[str, Any]:
        return {"head": self.head, "text_layers": None if self.text_layers is None else self.text_layers.weights.numel(),
                "audio_layers": None if self.audio_layers is None else self.audio_layers.weights.numel()}


def head_layer_weights(head: nn.Module) -> dict[str, list[float]]:
    """The learned layer weights a head holds, per modality: its own (a :class:`LayerWeightedHead`) or those of
    the weighted unimodal heads a late or score fusion fuses.

    Args:
        head: A loaded head.

    Returns:
        ``modality -> weight of each layer`` (probabilities); empty for a head that reads one layer.
    """
    if isinstance(head, LayerWeightedHead):
        return head.layer_weights()
    out: dict[str, list[float]] = {}
    for part in (getattr(head, "text_head", None), getattr(head, "audio_head", None)):
        if isinstance(part, LayerWeightedHead):
            out.update(part.layer_weights())
    return out
