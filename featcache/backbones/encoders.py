"""Text and audio encoders that turn one utterance into one pooled vector.

Each encoder splits its work in two, so that the expensive per-utterance part runs in DataLoader
worker processes and the batch part runs on the accelerator:

* :meth:`prepare` (worker): one input -> numpy arrays of a *bucket length* ``L`` that depends on the
  utterance alone (its length rounded up to a grid, capped by the input limit);
* :meth:`collate` + :meth:`forward` (main process): items of the same bucket length are stacked with
  no padding between them and encoded; pooling covers only the frames that hold real input.

Because an utterance's model input never depends on its batch-mates, the vectors do not depend on
batch composition or order (bucketing invariance), and a resumed extraction equals an uninterrupted
one.

Audio: wav2vec 2.0, HuBERT, WavLM, data2vec-audio (mean over valid frames), and the Whisper encoder.
Inputs longer than ``max_samples`` (default 246,000, the paper's limit) are cut there; ``pad_to``
pads every clip to a fixed length and pools all frames, which reproduces the paper exactly. The
Whisper encoder was trained on 30 s windows (3000 mel frames): ``whisper_input="30s"`` feeds exactly
that; ``"trim"`` (default) feeds the same mel frames cut at the bucket length with the positional
embeddings sliced to match, which is many times faster on short clips.

Text: any transformers encoder with a tokenizer; pooling ``cls`` (the paper) or masked ``mean``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from featcache.backbones.layers import parse_layers
from featcache.backbones.resolve import ResolvedBackbone
from featcache.errors import FeatcacheError

AUDIO_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "whisper")
SAMPLE_RATE = 16_000
WHISPER_HOP = 160  # samples per mel frame
WHISPER_POS = 320  # samples per encoder position (conv2 has stride 2)


def input_digest(item: dict[str, Any]) -> bytes:
    """A digest of one prepared input (what :meth:`prepare` returned): equal digests, equal vectors.

    Extraction encodes each distinct input once per entry and reuses its vector for every utterance
    whose prepared input is the same (every ``no-text`` empty string, every ``no-audio`` silence).

    Args:
        item: A prepared item; keys that :meth:`prepare` did not write (``id``, ``label``, ``record``)
            must not be in it yet.

    Returns:
        A 20-byte BLAKE2b digest of the item's keys, array shapes, dtypes and bytes.
    """
    h = hashlib.blake2b(digest_size=20)
    for k in sorted(item):
        v = item[k]
        h.update(k.encode())
        if isinstance(v, np.ndarray):
            h.update(f"{v.dtype.str}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        else:
            h.update(repr(v).encode())
    return h.digest()


@dataclass(frozen=True)
class EncoderOptions:
    """Settings that change an encoder's vectors (all recorded in the feature store's keys).

    Attributes:
        pooling: Text pooling, ``cls`` or ``mean`` (audio always pools the mean of valid frames).
        max_tokens: Text input limit in tokens.
        max_samples: Audio input limit in samples (longer clips are cut).
        pad_to: Pad every clip to this many samples and pool all frames (the paper: 246000).
        audio_grid: Audio bucket grid in samples (clips are zero-padded up to a multiple of it).
        text_grid: Text bucket grid in tokens.
        whisper_input: ``trim`` or ``30s``.
    """

    pooling: str = "cls"
    max_tokens: int = 512
    max_samples: int = 246_000
    pad_to: int | None = None
    audio_grid: int = 8_000
    text_grid: int = 8
    whisper_input: str = "trim"

    def identity(self, modality: str) -> dict[str, Any]:
        """The options that matter for a modality, for provenance and cache keys."""
        d = asdict(self)
        if modality == "text":
            return {k: d[k] for k in ("pooling", "max_tokens")}
        keys = ["max_samples", "pad_to", "audio_grid"]
        return {k: d[k] for k in keys} | {"whisper_input": self.whisper_input}


def _ceil_to(n: int, grid: int) -> int:
    return max(grid, int(math.ceil(n / grid)) * grid)


class TextInputs:
    """The input side of a text encoder: tokenising and batching, without the model.

    It holds the tokenizer and the options only, so it pickles cheaply to a worker process started
    afresh (``forkserver``), where the encoder would carry its weights along.

    Args:
        tokenizer: The backbone's tokenizer.
        options: Encoder options.
    """

    def __init__(self, tokenizer: Any, options: EncoderOptions, *, positions: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.options = options
        # a text is cut at the options' limit, or at the model's position embeddings when it has fewer
        self.max_tokens = min(options.max_tokens, positions) if positions else options.max_tokens

    def prepare(self, text: str) -> dict[str, Any]:
        """Tokenize one text (worker side)."""
        enc = self.tokenizer(text, truncation=True, max_length=self.max_tokens)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        length = min(_ceil_to(len(ids), self.options.text_grid), self.max_tokens)
        return {"input_ids": ids, "n": len(ids), "L": max(length, len(ids))}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack prepared items, padding to the longest bucket length among them (masked)."""
        L = max(it["L"] for it in items)
        pad = self.tokenizer.pad_token_id or 0
        ids = np.full((len(items), L), pad, dtype=np.int64)
        mask = np.zeros((len(items), L), dtype=np.int64)
        for i, it in enumerate(items):
            ids[i, : it["n"]] = it["input_ids"]
            mask[i, : it["n"]] = 1
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


class TextEncoder(nn.Module):
    """A transformers text encoder with [CLS] or masked-mean pooling.

    Args:
        model: The transformers model (``AutoModel``).
        tokenizer: Its tokenizer; its mask token is what masking attacks insert.
        options: Encoder options.
    """

    modality = "text"

    def __init__(self, model: nn.Module, tokenizer: Any, options: EncoderOptions) -> None:
        super().__init__()
        if options.pooling not in ("cls", "mean"):
            raise FeatcacheError(f"pooling (--pooling {options.pooling!r}): text pooling is cls or mean")
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.inputs = TextInputs(tokenizer, options,
                                 positions=getattr(getattr(model, "config", None), "max_position_embeddings", None))
        self.layers: tuple[int, ...] | None = None
        """Hidden states to pool (0: the embeddings' output), or None: the last layer only (see
        :func:`select_layers`)."""

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def mask_token(self) -> str:
        tok = self.tokenizer.mask_token
        if tok is None:
            raise FeatcacheError("the text backbone's tokenizer has no mask token; masking attacks need one")
        return str(tok)

    def prepare(self, text: str) -> dict[str, Any]:
        """Tokenize one text (worker side; :meth:`TextInputs.prepare`)."""
        return self.inputs.prepare(text)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack prepared items (:meth:`TextInputs.collate`)."""
        return self.inputs.collate(items)

    @property
    def n_hidden_states(self) -> int:
        """Hidden states the model returns: the embeddings' output and one per layer."""
        return int(self.model.config.num_hidden_layers) + 1

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled vectors: [batch, hidden] of the last layer, or [batch, len(layers), hidden] of the hidden
        states :attr:`layers` names (each pooled the same way)."""
        if self.layers is None:
            return self._pool(self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                              attention_mask)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        states = _hidden_states(out)
        return torch.stack([self._pool(states[k], attention_mask) for k in self.layers], dim=1)

    def _pool(self, out: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = out.float()  # (a bfloat16 encoder: pooled in float32; a float32 output is the same tensor)
        if self.options.pooling == "cls":
            return out[:, 0]
        m = attention_mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1.0)


class AudioInputs:
    """The input side of a speech encoder: cutting, normalising, padding and batching, without the model.

    It holds the feature extractor and the options only, so it pickles cheaply to a worker process
    started afresh (``forkserver``), where the encoder would carry its weights along.

    Args:
        feature_extractor: The backbone's transformers feature extractor.
        options: Encoder options.
        is_whisper: The backbone is a Whisper encoder (log-mel input).
        whisper_positions: The Whisper encoder's ``max_source_positions`` (None for other backbones).
    """

    def __init__(self, feature_extractor: Any, options: EncoderOptions, *, is_whisper: bool,
                 whisper_positions: int | None) -> None:
        self.feature_extractor = feature_extractor
        self.options = options
        self.is_whisper = is_whisper
        self.whisper_positions = whisper_positions

    def limit(self) -> int:
        """The most samples of a clip that are used (``max_samples``, and Whisper's window)."""
        lim = self.options.max_samples
        if self.is_whisper:
            lim = min(lim, int(self.whisper_positions) * WHISPER_POS)  # type: ignore[arg-type]
        return lim

    def prepare(self, wave: np.ndarray) -> dict[str, Any]:
        """Cut, normalise and pad one waveform to its bucket length (worker side)."""
        wave = np.asarray(wave, dtype=np.float32)[: self.limit()]
        if wave.size == 0:
            wave = np.zeros(WHISPER_POS, dtype=np.float32)
        n = int(wave.size)
        o = self.options
        if o.pad_to:
            L = max(o.pad_to, n) if not self.is_whisper else min(max(o.pad_to, n), self.limit())
            n_pool = L
        else:
            L, n_pool = min(_ceil_to(n, o.audio_grid), max(self.limit(), n)), n
        if self.is_whisper:
            if o.whisper_input == "30s":
                L = int(self.whisper_positions) * WHISPER_POS  # type: ignore[arg-type]
            L = _ceil_to(L, WHISPER_POS)
            padded = np.zeros(L, dtype=np.float32)
            padded[:n] = wave
            feats = self.feature_extractor(
                padded, sampling_rate=SAMPLE_RATE, padding="longest", truncation=False, return_tensors="np"
            ).input_features[0][:, : L // WHISPER_HOP]
            return {"x": feats.astype(np.float32), "n": n_pool, "L": L}
        if getattr(self.feature_extractor, "do_normalize", False):
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        padded = np.zeros(L, dtype=np.float32)
        padded[:n] = wave
        return {"x": padded, "n": n_pool, "L": L}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack prepared items.

        Extraction batches hold items of one bucket length, so nothing is padded. Training batches may
        mix lengths: shorter items are padded on the right with what padding the clip with silence
        would give (zeros for waveforms, the clip's floor value for Whisper's log-mel frames); pooling
        still covers only each item's own frames.
        """
        T = max(it["x"].shape[-1] for it in items)
        xs = []
        for it in items:
            x = it["x"]
            if x.shape[-1] < T:
                fill = float(x.min()) if self.is_whisper else 0.0
                width = [(0, 0)] * (x.ndim - 1) + [(0, T - x.shape[-1])]
                x = np.pad(x, width, constant_values=fill)
            xs.append(x)
        x = torch.from_numpy(np.stack(xs))
        n = torch.tensor([it["n"] for it in items], dtype=torch.long)
        return {"x": x, "n": n}


class AudioEncoder(nn.Module):
    """A speech encoder with mean pooling over the frames that hold real audio.

    Args:
        model: ``Wav2Vec2Model``/``HubertModel``/``WavLMModel``/... or a ``WhisperEncoder``.
        feature_extractor: The matching transformers feature extractor.
        model_type: ``config.json``'s model_type.
        options: Encoder options.
    """

    modality = "audio"

    def __init__(self, model: nn.Module, feature_extractor: Any, model_type: str, options: EncoderOptions) -> None:
        super().__init__()
        if options.whisper_input not in ("trim", "30s"):
            raise FeatcacheError(f"whisper_input (--whisper-input {options.whisper_input!r}): use trim or 30s")
        self.model = model
        self.feature_extractor = feature_extractor
        self.model_type = model_type
        self.options = options
        self.is_whisper = model_type == "whisper"
        cfg = model.config
        self._use_mask = (not self.is_whisper) and getattr(cfg, "feat_extract_norm", "layer") == "layer"
        self.inputs = AudioInputs(feature_extractor, options, is_whisper=self.is_whisper,
                                  whisper_positions=cfg.max_source_positions if self.is_whisper else None)
        self.layers: tuple[int, ...] | None = None
        """Hidden states to pool (0: the output before the first transformer layer), or None: the last
        layer only (see :func:`select_layers`)."""

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "d_model", None) or cfg.hidden_size)

    def prepare(self, wave: np.ndarray) -> dict[str, Any]:
        """Cut, normalise and pad one waveform to its bucket length (worker side; :meth:`AudioInputs.prepare`)."""
        return self.inputs.prepare(wave)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack prepared items (:meth:`AudioInputs.collate`)."""
        return self.inputs.collate(items)

    def _frames(self, n: torch.Tensor) -> torch.Tensor:
        if self.is_whisper:
            return torch.div(n + WHISPER_POS - 1, WHISPER_POS, rounding_mode="floor").clamp(min=1)
        return self.model._get_feat_extract_output_lengths(n).clamp(min=1)

    @property
    def n_hidden_states(self) -> int:
        """Hidden states the model returns: the output before the first transformer layer and one per layer."""
        cfg = self.model.config
        return int(getattr(cfg, "encoder_layers", None) or cfg.num_hidden_layers) + 1

    def _whisper_forward(self, feats: torch.Tensor, *, every: bool = False) -> tuple[torch.Tensor, ...]:
        """The encoder's last hidden state, or (``every``) all of them as transformers' ``WhisperEncoder``
        returns them: the input of each layer, then the last layer's output after the final layer norm."""
        enc = self.model
        h = nn.functional.gelu(enc.conv1(feats))
        h = nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
        h = h + enc.embed_positions.weight[: h.shape[1]]
        h = nn.functional.dropout(h, p=enc.dropout, training=self.training)
        states = []
        for layer in enc.layers:
            if every:
                states.append(h)
            h = layer(h, None)
            if isinstance(h, tuple):
                h = h[0]
        return (*states, enc.layer_norm(h))

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (mean over the frames covering the first ``n`` samples): [batch, hidden] of the
        last layer, or [batch, len(layers), hidden] of the hidden states :attr:`layers` names."""
        every = self.layers is not None
        if self.is_whisper:
            states = self._whisper_forward(x, every=every)
        else:
            mask = None
            if self._use_mask:
                mask = (torch.arange(x.shape[1], device=x.device)[None, :] < n[:, None]).long()
            out = self.model(input_values=x, attention_mask=mask, output_hidden_states=every)
            states = _hidden_states(out) if every else (out.last_hidden_state,)
        if self.layers is None:
            return self._pool(states[-1], n)
        return torch.stack([self._pool(states[k], n) for k in self.layers], dim=1)

    def _pool(self, hidden: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        hidden = hidden.float()  # (a bfloat16 encoder: pooled in float32; a float32 output is the same tensor)
        frames = self._frames(n).clamp(max=hidden.shape[1])
        valid = (torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]).to(hidden.dtype)
        return (hidden * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True)


@contextmanager
def bf16_weights(encoder: nn.Module, *, enabled: bool = True) -> Iterator[None]:
    """Run a block with the encoder in bfloat16: every floating parameter and buffer replaced by a bfloat16 copy
    made once, the very float32 tensors put back on leaving (nothing is rounded in place).

    A bfloat16 encoder reads bfloat16 inputs (:func:`bf16_inputs`) and runs every operation in bfloat16
    (norms and softmax accumulate in float32 inside their kernels); its pooling is float32. That is what
    ``--precision bf16`` extraction runs: autocast instead would cast every weight again at every forward (in
    inference mode nothing caches the casts) and every activation around each norm and residual sum, which on
    small batches costs as much as the products (MiniLM, 8 transcripts: 3x slower than this).

    Args:
        encoder: The encoder (any module).
        enabled: False: the block runs unchanged.
    """
    params: list[tuple[nn.Parameter, torch.Tensor]] = []
    buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
    try:
        if enabled:
            with torch.no_grad():
                for p in encoder.parameters():
                    if p.dtype == torch.float32:
                        params.append((p, p.data))
                        p.data = p.data.to(torch.bfloat16)
                for m in encoder.modules():
                    for name, b in list(m.named_buffers(recurse=False)):
                        if b is not None and b.dtype == torch.float32:
                            buffers.append((m, name, b))
                            setattr(m, name, b.to(torch.bfloat16))
        yield
    finally:
        for p, data in params:
            p.data = data
        for m, name, b in buffers:
            setattr(m, name, b)


def bf16_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A collated batch for an encoder in bfloat16 (:func:`bf16_weights`): floating tensors (a waveform, a
    log-mel) cast to bfloat16, the others (token ids, masks, lengths) as they are."""
    return {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}


def _hidden_states(out: Any) -> tuple[torch.Tensor, ...]:
    """A transformers model output's hidden states with the last one replaced by ``last_hidden_state``: the
    same tensor in BERT, but after the final layer norm in models that have one (wav2vec2-large, HuBERT-large,
    WavLM), where transformers 5 records the last layer's output before that norm. So the last hidden state
    is always what a last-layer entry holds."""
    return (*out.hidden_states[:-1], out.last_hidden_state)


def select_layers(encoder: TextEncoder | AudioEncoder, layers: str | None) -> tuple[int, ...] | None:
    """Point ``encoder`` at the hidden states a ``--layers`` value names; it then returns one pooled vector
    per hidden state (``[batch, layers, hidden]``), each pooled as the last layer is.

    Args:
        encoder: The encoder.
        layers: ``all``, indices as :func:`parse_layers` writes them, or None (the last layer only).

    Returns:
        The hidden-state indices it pools (None for the last layer only).

    Raises:
        FeatcacheError: An index past the model's last hidden state.
    """
    spec = parse_layers(layers)
    if spec is None:
        encoder.layers = None
        return None
    n = encoder.n_hidden_states
    picked = tuple(range(n)) if spec == "all" else tuple(int(k) for k in spec.split(","))
    if picked[-1] >= n:
        raise FeatcacheError(f"layers (--layers {spec}): the backbone has hidden states 0..{n - 1} "
                             f"(0 is the embeddings' output, {n - 1} the last layer)")
    encoder.layers = picked
    return picked


def load_encoder(
    resolved: ResolvedBackbone,
    *,
    options: EncoderOptions,
    weights: Path | None = None,
) -> TextEncoder | AudioEncoder:
    """Load a backbone as a text or audio encoder (offline).

    Args:
        resolved: The backbone's checkpoint.
        options: Encoder options.
        weights: A fine-tuned encoder state (safetensors) to load over the pretrained weights.

    Returns:
        The encoder in eval mode (a :class:`~featcache.backbones.plugins.PluginEncoder` for a plugin).

    Raises:
        FeatcacheError: The checkpoint cannot be loaded, or fine-tuned weights are given for a plugin.
    """
    if resolved.plugin is not None:
        from featcache.backbones.plugins import PluginEncoder, load_plugin

        if weights is not None:
            raise FeatcacheError(f"backbone {resolved.name!r}: a plugin encoder is used frozen; it takes no "
                                 "fine-tuned weights")
        return PluginEncoder(load_plugin(resolved.name)[0], name=resolved.name).eval()  # type: ignore[return-value]
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = str(resolved.path)
    try:
        if resolved.model_type in AUDIO_MODEL_TYPES:
            config = AutoConfig.from_pretrained(path)
            model = AutoModel.from_pretrained(path, config=config)
            if resolved.model_type == "whisper":
                model = model.get_encoder() if hasattr(model, "get_encoder") else model.encoder
            try:
                fe = AutoFeatureExtractor.from_pretrained(path)
            except (OSError, ValueError):
                fe = _default_feature_extractor(resolved.model_type)
            enc: TextEncoder | AudioEncoder = AudioEncoder(model, fe, resolved.model_type, options)
        else:
            model = AutoModel.from_pretrained(path)
            tok = AutoTokenizer.from_pretrained(path)
            enc = TextEncoder(model, tok, options)
    except FeatcacheError:
        raise
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FeatcacheError(f"{path}: cannot load backbone ({first[:160]})") from None
    if weights is not None:
        from safetensors.torch import load_file

        enc.model.load_state_dict(load_file(str(weights)))
    enc.eval()
    return enc


def _default_feature_extractor(model_type: str) -> Any:
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if model_type == "whisper":
        return WhisperFeatureExtractor()
    return Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)


def modality_of(resolved: ResolvedBackbone) -> str:
    """``audio`` for speech encoders (a plugin: its own modality), ``text`` otherwise."""
    if resolved.plugin is not None:
        return str(resolved.plugin["modality"])
    return "audio" if resolved.model_type in AUDIO_MODEL_TYPES else "text"
