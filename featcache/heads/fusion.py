"""Heads that read both modalities, all called as ``head(text_vec, audio_vec)`` and split into
``encode(modality, vec)`` and ``join(text_out, audio_out)``: the paper's :class:`MultimodalHead` (with
optional modality dropout), :class:`LateFusion`, :class:`ScoreFusion` and :class:`GatedFusion`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from featcache.heads.bodies import (
    MLPBody,
    UnimodalHead,
    _check_dim,
    _check_prob,
    _modality_dropout,
)
from featcache.heads.layers import is_unimodal
from featcache.paper import AUDIO_DROPOUT, FUSION_HIDDEN, HIDDEN, TEXT_DROPOUT


class _BodyPair(nn.Module):
    """Two modality bodies, modality dropout and the split forward pass shared by the feature-level fusions."""

    def __init__(
        self,
        text_dim: int,
        audio_dim: int,
        n_classes: int,
        *,
        hidden: Sequence[int],
        fusion_hidden: int,
        text_dropout: float,
        audio_dropout: float,
        modality_dropout: float,
    ) -> None:
        super().__init__()
        self.n_classes = _check_dim("n_classes", n_classes)
        self.fusion_hidden = _check_dim("fusion_hidden", fusion_hidden)
        self.modality_dropout = _check_prob("modality_dropout", modality_dropout, allow_one=True)
        self.text_body = MLPBody(text_dim, hidden=hidden, dropout=text_dropout)
        self.audio_body = MLPBody(audio_dim, hidden=hidden, dropout=audio_dropout)

    def _bodies(self, text: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        text, audio = _modality_dropout(text, audio, self.modality_dropout, self.training)
        return self.text_body(text), self.audio_body(audio)

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One modality's body output, the part of :meth:`forward` that sees only that input."""
        return (self.text_body if modality == "text" else self.audio_body)(x)

    def join(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Logits from the two body outputs.

        In eval mode ``forward(t, a) == join(encode("text", t), encode("audio", a))``.
        """
        raise NotImplementedError

    def config_dims(self) -> tuple[int | None, int | None]:
        """The (text, audio) vector sizes it reads."""
        return self.text_body.in_dim, self.audio_body.in_dim

    def config_options(self) -> dict[str, Any]:
        """The builder's options that give this architecture again."""
        return {"hidden": list(self.text_body.hidden), "fusion_hidden": self.fusion_hidden,
                "text_dropout": self.text_body.dropout, "audio_dropout": self.audio_body.dropout,
                "modality_dropout": self.modality_dropout}

    def stacked_bodies(self) -> list[tuple[str, MLPBody]]:
        """The bodies a batched forward runs, with their parameter prefixes (their dropout sites, in order)."""
        return [("text_body", self.text_body), ("audio_body", self.audio_body)]

    def _stacked_bodies(self, layers: Any, p: dict[str, torch.Tensor], xs: Sequence[torch.Tensor],
                        noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        text, audio = xs
        if noise is not None and "keep_text" in noise:  # modality dropout, drawn per member
            text, audio = text * noise["keep_text"], audio * noise["keep_audio"]
        return (layers.body(p, "text_body", self.text_body, text, noise, sizes),
                layers.body(p, "audio_body", self.audio_body, audio, noise, sizes))

    def forward(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, n_classes]`` for ``[batch, text_dim]`` and ``[batch, audio_dim]`` vectors."""
        return self.join(*self._bodies(text, audio))


class MultimodalHead(_BodyPair):
    """The paper's multimodal classifier on top of two pooled vectors (feature-level fusion).

    ``text body (256) ++ audio body (256) -> FC fusion_hidden -> ReLU -> FC n_classes``.

    *Modality dropout* (``modality_dropout=p``): during training, each sample loses its text or its
    audio input vector (set to zeros, chosen with equal chance) with probability ``p``, so that the
    classifier learns not to rely on one modality alone. It is never applied in eval mode.

    Args:
        text_dim: size of the text vector.
        audio_dim: size of the audio vector.
        n_classes: number of classes.
        hidden: layer sizes of both bodies (paper: ``(512, 256)``).
        fusion_hidden: size of the layer after concatenation (paper: 128).
        text_dropout: dropout of the text body (paper: 0).
        audio_dropout: dropout of the audio body (paper: 0.2).
        modality_dropout: probability of dropping one modality of a training sample (0 disables it).

    Raises:
        ValueError: invalid sizes or probabilities.
    """

    kind = "multimodal"
    """Its head kind (:data:`featcache.heads.HEADS`)."""

    def __init__(
        self,
        text_dim: int,
        audio_dim: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = HIDDEN,
        fusion_hidden: int = FUSION_HIDDEN,
        text_dropout: float = TEXT_DROPOUT,
        audio_dropout: float = AUDIO_DROPOUT,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__(text_dim, audio_dim, n_classes, hidden=hidden, fusion_hidden=fusion_hidden,
                         text_dropout=text_dropout, audio_dropout=audio_dropout, modality_dropout=modality_dropout)
        self.fusion = nn.Sequential(
            nn.Linear(self.text_body.out_dim + self.audio_body.out_dim, self.fusion_hidden),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(self.fusion_hidden, self.n_classes)

    @classmethod
    def from_unimodal(
        cls,
        text: UnimodalHead,
        audio: UnimodalHead,
        *,
        fusion_hidden: int = FUSION_HIDDEN,
        modality_dropout: float = 0.0,
    ) -> MultimodalHead:
        """A multimodal head whose bodies start as copies of two trained unimodal heads' bodies.

        Args:
            text: a text head; its body's sizes and dropout are kept.
            audio: an audio head; its body's sizes and dropout are kept.
            fusion_hidden: size of the fusion layer (freshly initialised).
            modality_dropout: see the class.

        Returns:
            The new head (the unimodal heads are not modified).

        Raises:
            ValueError: the two bodies have different layer sizes or class counts differ.
        """
        if text.body.hidden != audio.body.hidden:
            raise ValueError(f"body sizes differ: text {text.body.hidden}, audio {audio.body.hidden}")
        if text.n_classes != audio.n_classes:
            raise ValueError(f"class counts differ: text {text.n_classes}, audio {audio.n_classes}")
        head = cls(
            text.in_dim,
            audio.in_dim,
            text.n_classes,
            hidden=text.body.hidden,
            fusion_hidden=fusion_hidden,
            text_dropout=text.body.dropout,
            audio_dropout=audio.body.dropout,
            modality_dropout=modality_dropout,
        )
        head.text_body.load_state_dict(text.body.state_dict())
        head.audio_body.load_state_dict(audio.body.state_dict())
        return head

    def fused(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The ``fusion_hidden``-d representation before the classification layer."""
        return self.fusion(torch.cat(self._bodies(text, audio), dim=-1))

    def join(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Logits from the two body outputs (``forward`` = ``join`` of the bodies' outputs)."""
        return self.classifier(self.fusion(torch.cat([text, audio], dim=-1)))

    def stacked(self, layers: Any, p: dict[str, torch.Tensor], xs: Sequence[torch.Tensor],
                noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> torch.Tensor:
        """Logits of many heads of this architecture at once, on stacked parameters (see
        :meth:`featcache.heads.UnimodalHead.stacked`)."""
        h_t, h_a = self._stacked_bodies(layers, p, xs, noise, sizes)
        fused = torch.relu(layers.linear(p, "fusion.0", torch.cat([h_t, h_a], dim=-1), sizes))
        return layers.linear(p, "classifier", fused, sizes)


_P = TypeVar("_P", bound="_FrozenPair")


class _FrozenPair(nn.Module):
    """Holds two trained unimodal heads whose parameters never train and that always run in eval mode."""

    def __init__(self, text: UnimodalHead, audio: UnimodalHead) -> None:
        super().__init__()
        if not is_unimodal(text) or not is_unimodal(audio):
            raise TypeError("fusion of unimodal heads needs two UnimodalHead instances (layer weights in front "
                            "allowed)")
        if text.n_classes != audio.n_classes:
            raise ValueError(f"class counts differ: text {text.n_classes}, audio {audio.n_classes}")
        self.n_classes = text.n_classes
        self.text_head = text
        self.audio_head = audio
        for p in (*text.parameters(), *audio.parameters()):
            p.requires_grad_(False)
        self.train(self.training)

    def config_dims(self) -> tuple[int | None, int | None]:
        """The (text, audio) vector sizes its unimodal heads read."""
        return self.text_head.in_dim, self.audio_head.in_dim

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """One unimodal head's logits, the part of ``forward`` that sees only that input."""
        return (self.text_head if modality == "text" else self.audio_head)(x)

    def train(self: _P, mode: bool = True) -> _P:
        """Set the trainable parts' mode; the unimodal heads stay in eval mode (no dropout)."""
        super().train(mode)
        self.text_head.eval()
        self.audio_head.eval()
        return self


class LateFusion(_FrozenPair):
    """Decision-level fusion: a weighted average of two unimodal heads' class probabilities.

    ``forward`` returns ``log(w * softmax(text_logits) + (1 - w) * softmax(audio_logits))``, computed
    with ``logsumexp`` for stability. These are log-probabilities, so ``softmax`` of the output is
    exactly the averaged distribution and ``argmax`` picks its most likely class. The head has no
    trainable parameters: it combines two already trained heads (which are frozen and run in eval mode).

    Args:
        text_head: a trained text head.
        audio_head: a trained audio head.
        text_weight: weight ``w`` of the text probabilities, in [0, 1] (0.5: plain average).

    Raises:
        ValueError: the heads disagree on the class count or ``text_weight`` is outside [0, 1].
    """

    kind = "late"
    """Its head kind (:data:`featcache.heads.HEADS`)."""

    def config_options(self) -> dict[str, Any]:
        """The builder's options that give this fusion again (its heads as their configs)."""
        return {"text_head": self.text_head, "audio_head": self.audio_head, "text_weight": self.text_weight}

    def __init__(self, text_head: UnimodalHead, audio_head: UnimodalHead, *, text_weight: float = 0.5) -> None:
        super().__init__(text_head, audio_head)
        self.text_weight = _check_prob("text_weight", text_weight, allow_one=True)

    def forward(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Log of the weighted mean of the two heads' probabilities, ``[batch, n_classes]``."""
        return self.join(self.text_head(text), self.audio_head(audio))

    def join(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The fused log-probabilities from the two unimodal heads' logits."""
        log_t = F.log_softmax(text.float(), dim=-1)
        log_a = F.log_softmax(audio.float(), dim=-1)
        w = self.text_weight
        log_w_t = math.log(w) if w > 0 else -math.inf
        log_w_a = math.log(1.0 - w) if w < 1 else -math.inf
        return torch.logsumexp(torch.stack([log_t + log_w_t, log_a + log_w_a]), dim=0)


class ScoreFusion(_FrozenPair):
    """Score-level fusion: a learned linear layer over two frozen unimodal heads' scores.

    The two heads' logits (``scores="logits"``) or probabilities (``scores="probs"``) are concatenated
    (``2 * n_classes``) and mapped to logits by one linear layer, which is the only trainable part.
    The layer starts as the plain average of the two heads' scores (weights ``[I/2, I/2]``, bias 0),
    so an untrained score fusion already predicts like an unweighted late fusion of the scores.

    Args:
        text_head: a trained text head.
        audio_head: a trained audio head.
        scores: which scores of the unimodal heads are combined.

    Raises:
        ValueError: the heads disagree on the class count or ``scores`` is unknown.
    """

    kind = "score"
    """Its head kind (:data:`featcache.heads.HEADS`)."""

    def config_options(self) -> dict[str, Any]:
        """The builder's options that give this fusion again (its heads as their configs)."""
        return {"text_head": self.text_head, "audio_head": self.audio_head, "scores": self.scores}

    def __init__(
        self, text_head: UnimodalHead, audio_head: UnimodalHead, *, scores: Literal["logits", "probs"] = "logits"
    ) -> None:
        super().__init__(text_head, audio_head)
        if scores not in ("logits", "probs"):
            raise ValueError(f"scores must be 'logits' or 'probs', got {scores!r}")
        self.scores = scores
        n = self.n_classes
        self.combine = nn.Linear(2 * n, n)
        with torch.no_grad():
            eye = torch.eye(n) / 2
            self.combine.weight.copy_(torch.cat([eye, eye], dim=1))
            self.combine.bias.zero_()

    def forward(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, n_classes]`` from the concatenated unimodal scores."""
        with torch.no_grad():
            t, a = self.text_head(text), self.audio_head(audio)
        return self.join(t, a)

    def join(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Logits from the two unimodal heads' logits."""
        if self.scores == "probs":
            text, audio = text.softmax(dim=-1), audio.softmax(dim=-1)
        return self.combine(torch.cat([text, audio], dim=-1))

    def stacked_bodies(self) -> list[tuple[str, MLPBody]]:
        """No body trains: only the score layer (the unimodal heads are frozen)."""
        return []

    def stack_key(self) -> str:
        """Score fusions of the same class count and score kind train in one stack."""
        return json.dumps(["score", self.n_classes, self.scores])

    def stacked_trainable(self) -> list[str]:
        """The parameters a batched training updates: the score layer only."""
        return ["combine.weight", "combine.bias"]

    def stacked_inputs(self, inputs: Sequence[torch.Tensor], rows: Any, *, chunk: int) -> torch.Tensor:
        """What the trainable layer sees for ``rows`` of ``inputs`` (text, audio): the frozen heads' scores,
        concatenated, computed in chunks of ``chunk`` rows as the one-at-a-time loop feeds them."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        parts = []
        with torch.no_grad():
            for i in range(0, len(idx), chunk):
                sel = idx[i:i + chunk]
                t = self.text_head.eval()(inputs[0].index_select(0, sel))
                a = self.audio_head.eval()(inputs[1].index_select(0, sel))
                if self.scores == "probs":
                    t, a = t.softmax(dim=-1), a.softmax(dim=-1)
                parts.append(torch.cat([t, a], dim=-1))
        return torch.cat(parts).contiguous()

    def stacked(self, layers: Any, p: dict[str, torch.Tensor], xs: Sequence[torch.Tensor],
                noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> torch.Tensor:
        """Logits of many score layers at once, on :meth:`stacked_inputs` (see
        :meth:`featcache.heads.UnimodalHead.stacked`)."""
        return layers.linear(p, "combine", xs[0], sizes)


class GatedFusion(_BodyPair):
    """Gated fusion (a gated multimodal unit): a learned per-sample gate mixes the two modalities.

    With body outputs ``h_t`` and ``h_a`` (256-d each)::

        p_t = tanh(W_t h_t),  p_a = tanh(W_a h_a)         # projections to the body size
        z   = sigmoid(W_z [h_t; h_a])                      # gate, [batch, 1] or [batch, 256]
        h   = z * p_t + (1 - z) * p_a
        logits = FC n_classes(ReLU(FC fusion_hidden(h)))

    ``gate="scalar"`` gives one weight per sample (the share of text, readable with
    :meth:`gate_values`); ``gate="vector"`` gives one per feature. Modality dropout works as in
    :class:`MultimodalHead`.

    Args:
        text_dim: size of the text vector.
        audio_dim: size of the audio vector.
        n_classes: number of classes.
        hidden: layer sizes of both bodies.
        fusion_hidden: size of the layer before the classification layer.
        text_dropout: dropout of the text body.
        audio_dropout: dropout of the audio body.
        gate: ``"scalar"`` or ``"vector"``.
        modality_dropout: probability of dropping one modality of a training sample.

    Raises:
        ValueError: invalid sizes, probabilities or gate kind.
    """

    kind = "gated"
    """Its head kind (:data:`featcache.heads.HEADS`)."""

    def config_options(self) -> dict[str, Any]:
        """The builder's options that give this architecture again."""
        return {**super().config_options(), "gate": self.gate}

    def __init__(
        self,
        text_dim: int,
        audio_dim: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = HIDDEN,
        fusion_hidden: int = FUSION_HIDDEN,
        text_dropout: float = TEXT_DROPOUT,
        audio_dropout: float = AUDIO_DROPOUT,
        gate: Literal["scalar", "vector"] = "scalar",
        modality_dropout: float = 0.0,
    ) -> None:
        if gate not in ("scalar", "vector"):
            raise ValueError(f"gate must be 'scalar' or 'vector', got {gate!r}")
        super().__init__(text_dim, audio_dim, n_classes, hidden=hidden, fusion_hidden=fusion_hidden,
                         text_dropout=text_dropout, audio_dropout=audio_dropout, modality_dropout=modality_dropout)
        self.gate = gate
        width = self.text_body.out_dim
        self.text_proj = nn.Linear(width, width)
        self.audio_proj = nn.Linear(width, width)
        self.gate_layer = nn.Linear(2 * width, 1 if gate == "scalar" else width)
        self.fusion = nn.Sequential(nn.Linear(width, self.fusion_hidden), nn.ReLU())
        self.classifier = nn.Linear(self.fusion_hidden, self.n_classes)

    def gate_values(self, text: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """The gate ``z`` (weight of the text features): ``[batch, 1]`` or ``[batch, 256]``, in (0, 1)."""
        h_t, h_a = self._bodies(text, audio)
        return torch.sigmoid(self.gate_layer(torch.cat([h_t, h_a], dim=-1)))

    def join(self, h_t: torch.Tensor, h_a: torch.Tensor) -> torch.Tensor:
        """Logits from the two body outputs (``forward`` = ``join`` of the bodies' outputs)."""
        z = torch.sigmoid(self.gate_layer(torch.cat([h_t, h_a], dim=-1)))
        h = z * torch.tanh(self.text_proj(h_t)) + (1 - z) * torch.tanh(self.audio_proj(h_a))
        return self.classifier(self.fusion(h))

    def stacked(self, layers: Any, p: dict[str, torch.Tensor], xs: Sequence[torch.Tensor],
                noise: dict[str, torch.Tensor] | None, sizes: Sequence[int]) -> torch.Tensor:
        """Logits of many heads of this architecture at once, on stacked parameters (see
        :meth:`featcache.heads.UnimodalHead.stacked`)."""
        h_t, h_a = self._stacked_bodies(layers, p, xs, noise, sizes)
        z = layers.linear(p, "gate_layer", torch.cat([h_t, h_a], dim=-1), sizes, act=torch.sigmoid)
        h = (z * torch.tanh(layers.linear(p, "text_proj", h_t, sizes))
             + (1 - z) * torch.tanh(layers.linear(p, "audio_proj", h_a, sizes)))
        return layers.linear(p, "classifier", torch.relu(layers.linear(p, "fusion.0", h, sizes)), sizes)
