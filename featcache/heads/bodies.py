"""The paper's bodies and unimodal heads: :class:`MLPBody` (FC layers, ReLU, optional dropout) and
:class:`UnimodalHead` (a body and a linear classifier), with the paper's text and audio heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from featcache.paper import AUDIO_DROPOUT, HIDDEN, TEXT_DROPOUT


def _check_dim(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_prob(name: str, value: float, *, allow_one: bool = False) -> float:
    value = float(value)
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value >= 0.0 and upper_ok):
        bound = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must lie in {bound}, got {value!r}")
    return value


def _modality_dropout(
    text: torch.Tensor, audio: torch.Tensor, p: float, training: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero one modality's input vector per sample with probability ``p`` (training only).

    Each sample is dropped with probability ``p``; a dropped sample loses its text or its audio
    vector with equal chance, never both. The draws use torch's global generator, so they are
    reproducible under ``torch.manual_seed``. Outside training the inputs are returned unchanged.
    """
    if not training or p <= 0.0:
        return text, audio
    n = text.shape[0]
    drop = torch.rand(n, device=text.device) < p
    drop_text = torch.rand(n, device=text.device) < 0.5
    keep_text = ~(drop & drop_text)
    keep_audio = ~(drop & ~drop_text)
    return text * keep_text.unsqueeze(1).to(text.dtype), audio * keep_audio.unsqueeze(1).to(audio.dtype)


class MLPBody(nn.Module):
    """A stack of fully connected layers, each followed by ReLU and (when ``dropout > 0``) dropout.

    With the default ``hidden=(512, 256)`` this is the feed-forward component of the paper's text
    and audio encoders, and it outputs 256-d features.

    Args:
        in_dim: size of the input vector (the backbone's hidden size).
        hidden: output sizes of the layers, in order; the last one is :attr:`out_dim`.
        dropout: drop probability applied after every ReLU (0 disables it).

    Raises:
        ValueError: a size is not a positive integer, ``hidden`` is empty or ``dropout`` is not in [0, 1).
    """

    def __init__(self, in_dim: int, *, hidden: Sequence[int] = HIDDEN, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_dim = _check_dim("in_dim", in_dim)
        self.hidden = tuple(_check_dim("hidden size", h) for h in hidden)
        if not self.hidden:
            raise ValueError("hidden must name at least one layer size")
        self.dropout = _check_prob("dropout", dropout)
        layers: list[nn.Module] = []
        prev = self.in_dim
        for size in self.hidden:
            layers += [nn.Linear(prev, size), nn.ReLU(inplace=True)]  # in place: no second activation buffer
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            prev = size
        self.layers = nn.Sequential(*layers)

    @property
    def out_dim(self) -> int:
        """Size of the output features."""
        return self.hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[batch, in_dim]`` vectors to ``[batch, out_dim]`` features."""
        return self.layers(x)


class UnimodalHead(nn.Module):
    """A body (:class:`MLPBody`) followed by a linear classification layer; returns logits.

    Args:
        in_dim: size of the input vector.
        n_classes: number of classes.
        hidden: body layer sizes (the paper's ``(512, 256)``).
        dropout: body dropout (paper: 0 for text, 0.2 for audio).
        modality: which input the head reads, ``"text"`` or ``"audio"``; recorded in its config.

    Raises:
        ValueError: invalid sizes, dropout or modality.
    """

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = HIDDEN,
        dropout: float = 0.0,
        modality: Literal["text", "audio"] = "text",
    ) -> None:
        super().__init__()
        if modality not in ("text", "audio"):
            raise ValueError(f"modality must be 'text' or 'audio', got {modality!r}")
        self.modality = modality
        self.n_classes = _check_dim("n_classes", n_classes)
        self.body = MLPBody(in_dim, hidden=hidden, dropout=dropout)
        self.classifier = nn.Linear(self.body.out_dim, self.n_classes)

    @property
    def in_dim(self) -> int:
        """Size of the input vector."""
        return self.body.in_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The body's output (256-d with the paper's sizes) for ``[batch, in_dim]`` vectors."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, n_classes]`` for ``[batch, in_dim]`` vectors."""
        return self.classifier(self.body(x))

    # -- trained many at once (featcache.ensemble): this kind's forward on stacked parameters --------

    # -- its config (featcache.heads.registry.head_config) ------------------------------------------

    @property
    def kind(self) -> str:
        """Its head kind (:data:`featcache.heads.HEADS`): ``text`` or ``audio``."""
        return self.modality

    def config_dims(self) -> tuple[int | None, int | None]:
        """The (text, audio) vector sizes it reads."""
        return (self.in_dim, None) if self.modality == "text" else (None, self.in_dim)

    def config_options(self) -> dict[str, Any]:
        """The builder's options that give this architecture again."""
        return {"hidden": list(self.body.hidden), "dropout": self.body.dropout}

    def stacked_bodies(self) -> list[tuple[str, MLPBody]]:
        """The bodies a batched forward runs, with their parameter prefixes (their dropout sites, in order)."""
        return [("body", self.body)]

    def stacked(self, layers: Any, p: dict[str, torch.Tensor], xs: Sequence[torch.Tensor],
                noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> torch.Tensor:
        """Logits ``[members, batch, n_classes]`` of many heads of this architecture at once: this forward on
        stacked parameters ``p``, replayed with ``layers`` (:class:`featcache.ensemble.arch.StackedLayers`)."""
        return layers.linear(p, "classifier", layers.body(p, "body", self.body, xs[0], noise, sizes), sizes)


def text_head(in_dim: int, n_classes: int) -> UnimodalHead:
    """The paper's text head: FC 512 -> FC 256 (ReLU, no dropout) -> FC ``n_classes``.

    Args:
        in_dim: size of the text vector ([CLS] or pooled output of the text backbone).
        n_classes: number of classes.

    Returns:
        A freshly initialised :class:`UnimodalHead`.
    """
    return UnimodalHead(in_dim, n_classes, hidden=HIDDEN, dropout=TEXT_DROPOUT, modality="text")


def audio_head(in_dim: int, n_classes: int) -> UnimodalHead:
    """The paper's audio head: FC 512 -> FC 256 (ReLU, dropout 0.2 each) -> FC ``n_classes``.

    Args:
        in_dim: size of the mean-pooled audio vector.
        n_classes: number of classes.

    Returns:
        A freshly initialised :class:`UnimodalHead`.
    """
    return UnimodalHead(in_dim, n_classes, hidden=HIDDEN, dropout=AUDIO_DROPOUT, modality="audio")
