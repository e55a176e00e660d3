"""Classification heads and fusion heads applied to pooled encoder vectors.

The heads follow Cohen et al. (2023), sections 4.1-4.3:

* text: [CLS] vector -> FC 512 (ReLU) -> FC 256 (ReLU) -> FC ``n_classes`` (softmax in the loss);
* audio: mean-pooled vector -> FC 512 (ReLU, dropout 0.2) -> FC 256 (ReLU, dropout 0.2) -> FC ``n_classes``;
* multimodal: the two 256-d body outputs concatenated (512) -> FC 128 (ReLU) -> FC ``n_classes``.

Every head returns *logits*; softmax is applied by the loss and by :func:`featcache.train.predict`.
Input sizes follow the backbone's hidden size (384 for MiniLM, 512 for Whisper base, 768 for
BERT/wav2vec2). The heads contain no encoder: they run either on top of an encoder (end-to-end
fine-tuning) or on vectors read from the feature store.

Fusion variants for ablations, all called as ``head(text_vec, audio_vec)``. Each also splits its forward
pass into ``encode(modality, vec)`` (the part that sees one input) and ``join(text_out, audio_out)``, so
an evaluation that varies one modality reuses the other's encoded input:

* :class:`MultimodalHead` - the paper's feature-level fusion, with optional *modality dropout*;
* :class:`LateFusion` - weighted average of two trained unimodal heads' probabilities;
* :class:`ScoreFusion` - a learned linear layer over two frozen unimodal heads' scores;
* :class:`GatedFusion` - a learned per-sample sigmoid gate mixing projected text and audio features.

A head is re-created from a JSON config (:func:`head_config` / :func:`head_from_config`) and saved
without pickle as ``model.safetensors`` + ``config.json`` (:func:`save_head` / :func:`load_head`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from featcache import __version__
from featcache.cache.atomic import atomic_write, atomic_write_json
from featcache.errors import FeatcacheError
from featcache.paper import AUDIO_DROPOUT, FUSION_HIDDEN, HIDDEN, TEXT_DROPOUT

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
CONFIG_FORMAT = "featcache-head"
CONFIG_VERSION = 1


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


_P = TypeVar("_P", bound="_FrozenPair")


class _FrozenPair(nn.Module):
    """Holds two trained unimodal heads whose parameters never train and that always run in eval mode."""

    def __init__(self, text: UnimodalHead, audio: UnimodalHead) -> None:
        super().__init__()
        if not isinstance(text, UnimodalHead) or not isinstance(audio, UnimodalHead):
            raise TypeError("fusion of unimodal heads needs two UnimodalHead instances")
        if text.n_classes != audio.n_classes:
            raise ValueError(f"class counts differ: text {text.n_classes}, audio {audio.n_classes}")
        self.n_classes = text.n_classes
        self.text_head = text
        self.audio_head = audio
        for p in (*text.parameters(), *audio.parameters()):
            p.requires_grad_(False)
        self.train(self.training)

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


# --------------------------------------------------------------------------------------------- registry


def _need(name: str, value: int | None, kind: str) -> int:
    if value is None:
        raise ValueError(f"a {kind!r} head needs {name}")
    return value


def _sub_head(value: object, dim: int | None, n_classes: int, modality: str) -> UnimodalHead:
    """A unimodal head given as a module, a config dict, or None (fresh paper head)."""
    if isinstance(value, UnimodalHead):
        return value
    if isinstance(value, dict):
        head = head_from_config(value)
        if not isinstance(head, UnimodalHead):
            raise TypeError(f"the {modality} head's config must describe a unimodal head")
        return head
    if value is None:
        dim = _need(f"{modality}_dim", dim, "fusion")
        return text_head(dim, n_classes) if modality == "text" else audio_head(dim, n_classes)
    raise TypeError(f"{modality}_head must be a UnimodalHead, a config dict or None, got {type(value).__name__}")


def _build_text(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    options.setdefault("dropout", TEXT_DROPOUT)
    return UnimodalHead(_need("text_dim", text_dim, "text"), n_classes, modality="text", **options)


def _build_audio(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    options.setdefault("dropout", AUDIO_DROPOUT)
    return UnimodalHead(_need("audio_dim", audio_dim, "audio"), n_classes, modality="audio", **options)


def _build_multimodal(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    return MultimodalHead(
        _need("text_dim", text_dim, "multimodal"), _need("audio_dim", audio_dim, "multimodal"), n_classes, **options
    )


def _build_gated(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    return GatedFusion(
        _need("text_dim", text_dim, "gated"), _need("audio_dim", audio_dim, "gated"), n_classes, **options
    )


def _build_late(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    text = _sub_head(options.pop("text_head", None), text_dim, n_classes, "text")
    audio = _sub_head(options.pop("audio_head", None), audio_dim, n_classes, "audio")
    return LateFusion(text, audio, **options)


def _build_score(*, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    text = _sub_head(options.pop("text_head", None), text_dim, n_classes, "text")
    audio = _sub_head(options.pop("audio_head", None), audio_dim, n_classes, "audio")
    return ScoreFusion(text, audio, **options)


HEADS: dict[str, Callable[..., nn.Module]] = {
    "text": _build_text,
    "audio": _build_audio,
    "multimodal": _build_multimodal,
    "late": _build_late,
    "score": _build_score,
    "gated": _build_gated,
}
"""Head kinds and their builders; each builder takes ``text_dim``, ``audio_dim``, ``n_classes`` and
the kind's keyword options (see :func:`build_head`)."""


def build_head(kind: str, *, text_dim: int | None, audio_dim: int | None, n_classes: int, **options: Any) -> nn.Module:
    """Build a freshly initialised head of a registered kind.

    Args:
        kind: one of :data:`HEADS` - ``text``, ``audio`` (unimodal; options ``hidden``, ``dropout``,
            defaulting to the paper's 0 / 0.2), ``multimodal`` and ``gated`` (options of
            :class:`MultimodalHead` / :class:`GatedFusion`), ``late`` and ``score`` (options
            ``text_head`` / ``audio_head``: a trained :class:`UnimodalHead`, its config dict, or
            omitted for a fresh paper head, plus ``text_weight`` / ``scores``).
        text_dim: size of the text vectors (None when the kind does not read text).
        audio_dim: size of the audio vectors (None when the kind does not read audio).
        n_classes: number of classes.
        **options: the kind's keyword options.

    Returns:
        The head, in training mode.

    Raises:
        ValueError: unknown kind, a needed dimension is missing, or an option is invalid.
        TypeError: an unknown option.
    """
    try:
        builder = HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {', '.join(HEADS)}") from None
    return builder(text_dim=text_dim, audio_dim=audio_dim, n_classes=n_classes, **options)


def head_config(head: nn.Module) -> dict[str, Any]:
    """The JSON-able description from which :func:`head_from_config` re-creates ``head``'s architecture.

    Args:
        head: a head built by this module.

    Returns:
        ``{"format", "version", "kind", "text_dim", "audio_dim", "n_classes", "options"}``; fusion of
        unimodal heads nests the two heads' configs in ``options``.

    Raises:
        TypeError: ``head`` is not one of this module's heads.
    """
    cfg: dict[str, Any] = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "featcache_version": __version__}
    dims: tuple[int | None, int | None]
    if isinstance(head, UnimodalHead):
        dims = (head.in_dim, None) if head.modality == "text" else (None, head.in_dim)
        cfg.update(kind=head.modality, n_classes=head.n_classes)
        options: dict[str, Any] = {"hidden": list(head.body.hidden), "dropout": head.body.dropout}
    elif isinstance(head, (MultimodalHead, GatedFusion)):
        dims = (head.text_body.in_dim, head.audio_body.in_dim)
        cfg.update(kind="multimodal" if isinstance(head, MultimodalHead) else "gated", n_classes=head.n_classes)
        options = {
            "hidden": list(head.text_body.hidden),
            "fusion_hidden": head.fusion_hidden,
            "text_dropout": head.text_body.dropout,
            "audio_dropout": head.audio_body.dropout,
            "modality_dropout": head.modality_dropout,
        }
        if isinstance(head, GatedFusion):
            options["gate"] = head.gate
    elif isinstance(head, (LateFusion, ScoreFusion)):
        dims = (head.text_head.in_dim, head.audio_head.in_dim)
        cfg.update(kind="late" if isinstance(head, LateFusion) else "score", n_classes=head.n_classes)
        options = {"text_head": head_config(head.text_head), "audio_head": head_config(head.audio_head)}
        if isinstance(head, LateFusion):
            options["text_weight"] = head.text_weight
        else:
            options["scores"] = head.scores
    else:
        raise TypeError(f"no config for {type(head).__name__}: not a featcache head")
    cfg.update(text_dim=dims[0], audio_dim=dims[1], options=options)
    return cfg


def head_from_config(config: dict[str, Any]) -> nn.Module:
    """Re-create a head (fresh weights) from :func:`head_config`'s output.

    Args:
        config: the dict, e.g. read back from ``config.json``.

    Returns:
        The head, in training mode.

    Raises:
        ValueError: the dict is not a head config or names an unknown kind or invalid option.
    """
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ValueError("not a featcache head config (missing 'format': 'featcache-head')")
    if config.get("version") != CONFIG_VERSION:
        raise ValueError(f"unsupported head config version {config.get('version')!r} (expected {CONFIG_VERSION})")
    options = dict(config.get("options") or {})
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    try:
        return build_head(
            config["kind"],
            text_dim=config.get("text_dim"),
            audio_dim=config.get("audio_dim"),
            n_classes=config["n_classes"],
            **options,
        )
    except KeyError as exc:
        raise ValueError(f"head config lacks {exc.args[0]!r}") from None
    except TypeError as exc:
        raise ValueError(f"invalid head config: {exc}") from None


# --------------------------------------------------------------------------------------------- file I/O


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], *, metadata: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors as safetensors, atomically; tensors are copied to contiguous CPU memory."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=metadata))


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


def load_head(path_dir: Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a head saved by :func:`save_head`.

    Args:
        path_dir: the directory holding ``config.json`` and ``model.safetensors``.
        device: where to put the head.

    Returns:
        The head with its saved weights, in eval mode.

    Raises:
        HeadFileError: a file is missing, unreadable, or does not match the other (one line naming it).
    """
    path_dir = Path(path_dir)
    cfg_path = path_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise HeadFileError(f"head config not found: {cfg_path}; point at a directory written by save_head",
                            path=cfg_path, problem="head config not found")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        with torch.device("meta"):  # no random initialisation of weights that are loaded next
            head = head_from_config(config)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise HeadFileError(f"head config is corrupt: {cfg_path} ({reason}); save the head again", path=cfg_path,
                            problem=f"unreadable head config: {reason}") from None
    weights_path = path_dir / WEIGHTS_FILE
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
