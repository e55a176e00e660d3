"""Named settings for a whole study.

* ``paper``: bert-base-uncased + facebook/wav2vec2-base, fine-tuned per fold with the paper's
  hyperparameters (batch 16 / lr 1e-6 text, 8 / 1e-6 audio, 4 / 5e-6 multimodal, patience 10,
  3 seeds). Reproducing the paper's padding exactly needs ``--pad-to 246000`` as well.
* ``demo``: the models that ship in PyPI packages (``minilm`` text, ``whisper-base`` speech), frozen
  for extraction so the whole study runs on 2 CPU cores in minutes, with light fine-tuning settings
  for ``featcache finetune``.

Every field can be overridden on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from featcache import paper
from featcache.errors import FeatcacheError
from featcache.paper import EXTRA_VARIANTS, HEAD_SETTINGS, TrainSettings

__all__ = ["EXTRA_VARIANTS", "HEAD_SETTINGS", "PRESETS", "Preset", "TrainSettings", "get_preset", "with_overrides"]

if TYPE_CHECKING:
    from featcache.backbones.encoders import EncoderOptions


@dataclass(frozen=True)
class Preset:
    """A study's settings."""

    name: str
    text_backbone: str
    audio_backbone: str
    frozen: bool
    text: TrainSettings
    audio: TrainSettings
    multimodal: TrainSettings
    seeds: tuple[int, ...] = paper.SEEDS
    pooling: str = "auto"
    max_samples: int = paper.MAX_SAMPLES
    whisper_input: str = "trim"
    extract_batch_size: int = 8
    bf16_text_batch_size: int = 64
    variants: tuple[str, ...] = paper.VARIANTS
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def train(self, modality: str) -> TrainSettings:
        return {"text": self.text, "audio": self.audio, "multimodal": self.multimodal}[modality]

    def backbone(self, modality: str) -> str:
        return {"text": self.text_backbone, "audio": self.audio_backbone}[modality]

    def extraction_batch_size(self, *, modality: str, precision: str) -> int:
        """Utterances per forward pass of an extraction (what ``--batch-size`` overrides).

        A ``bf16`` text extraction encodes :attr:`bf16_text_batch_size` transcripts at once: bfloat16's matmul
        kernels (AMX, AVX512-BF16, tensor cores) pay on wide products, and a transcript's few tokens make
        narrow ones (MiniLM's bare forward passes over IEMOCAP-sized transcripts, 2 cores: bf16 / fp32 time
        0.56 in batches of 8, 0.36 in batches of 64; ``docs/benchmarks.md``). Every other extraction, float32
        above all, encodes :attr:`extract_batch_size` at once: its vectors stay byte for byte what they were
        (the products' rounding depends on how many rows they have: up to about 2e-6 for MiniLM).

        Args:
            modality: ``text`` or ``audio``.
            precision: The extraction's ``fp32`` or ``bf16``.

        Returns:
            The batch size.
        """
        return self.bf16_text_batch_size if (modality, precision) == ("text", "bf16") else self.extract_batch_size

    def encoder_options(self, *, pad_to: int | None = None) -> EncoderOptions:
        """The encoder options this preset implies (``pad_to``: pad every clip to this many samples).

        Text pooling ``auto`` becomes the text backbone's own pooling where it declares one (the demo's
        MiniLM: mean), else ``cls`` (:func:`featcache.backbones.resolve.default_pooling`).
        """
        from featcache.backbones.encoders import EncoderOptions
        from featcache.backbones.resolve import default_pooling

        pooling = default_pooling(self.text_backbone) if self.pooling == "auto" else self.pooling
        return EncoderOptions(pooling=pooling, max_samples=self.max_samples, pad_to=pad_to,
                              whisper_input=self.whisper_input)

    def cli_flags(self) -> list[str]:
        """The command-line flags that rebuild this preset from its named base (``--preset`` first)."""
        base = PRESETS.get(self.name)
        flags = ["--preset", self.name]
        for name in ("text_backbone", "audio_backbone", "pooling", "max_samples", "whisper_input"):
            value = getattr(self, name)
            if base is None or value != getattr(base, name):
                flags += [f"--{name.replace('_', '-')}", str(value)]
        return flags


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        text_backbone=paper.TEXT_BACKBONE,
        audio_backbone=paper.AUDIO_BACKBONE,
        frozen=False,
        text=paper.FINETUNE[paper.TEXT],
        audio=paper.FINETUNE[paper.AUDIO],
        multimodal=paper.FINETUNE[paper.MULTIMODAL],
        pooling=paper.TEXT_POOLING,
        description="Cohen et al. (2023): BERT + wav2vec 2.0, fine-tuned per fold",
    ),
    "demo": Preset(
        name="demo",
        text_backbone="minilm",
        audio_backbone="whisper-base",
        frozen=True,
        text=TrainSettings(batch_size=16, lr=5e-5, max_epochs=3, patience=2),
        audio=TrainSettings(batch_size=8, lr=5e-5, max_epochs=2, patience=2),
        multimodal=TrainSettings(batch_size=8, lr=5e-5, max_epochs=2, patience=2),
        extract_batch_size=16,
        # transcribed-10s: the packaged Whisper base's transcript of the demo's speech as the text (and of the
        # pitched and noisy audio: transcribed-10s+pitch, +noise), each clip padded to 10 s, not Whisper's 30 s
        # (the demo's clips are 1-8 s: 4-5x faster, the same word error rate; docs/benchmarks.md)
        variants=paper.VARIANTS + EXTRA_VARIANTS + ("transcribed-10s",),
        description="packaged MiniLM + Whisper base, frozen; runs on 2 CPU cores; the recogniser's text too",
    ),
}


def get_preset(name: str) -> Preset:
    """Look up a preset.

    Raises:
        FeatcacheError: Unknown name.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise FeatcacheError(f"preset (--preset {name!r}): unknown; choose one of {', '.join(PRESETS)}") from None


def with_overrides(preset: Preset, **overrides: Any) -> Preset:
    """A copy of ``preset`` with the non-None overrides applied."""
    return replace(preset, **{k: v for k, v in overrides.items() if v is not None})
