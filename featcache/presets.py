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
from typing import Any

from featcache.errors import FeatcacheError


#: The paper's attacks (Tables 4-6); combinations with pitch are composed at evaluation.
PAPER_VARIANTS: tuple[str, ...] = ("adj", "random-adj", "noun", "random-noun", "no-text", "pitch", "no-audio", "noise")
#: One point of each sweep beyond the paper, for the demo's time budget.
EXTRA_VARIANTS: tuple[str, ...] = ("asr-0.2", "snr-10", "telephone", "reverb-0.6")


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning hyperparameters of one model kind."""

    batch_size: int
    lr: float
    max_epochs: int = 100
    patience: int = 10
    grad_accum: int = 1
    weight_decay: float = 0.0


#: Light heads trained on cached vectors: AdamW, weighted CE, early stopping (patience 10) as in the paper.
#: Batches of 128 keep an epoch over IEMOCAP's ~4,500 training vectors well under a second on a CPU;
#: on the demo corpus they reach the accuracy of batches of 32 (bench/bench_evaluate.py has the timings).
HEAD_SETTINGS = TrainSettings(batch_size=128, lr=1e-3, max_epochs=100, patience=10, weight_decay=0.01)


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
    seeds: tuple[int, ...] = (0, 1, 2)
    pooling: str = "cls"
    max_samples: int = 246_000
    whisper_input: str = "trim"
    extract_batch_size: int = 8
    variants: tuple[str, ...] = PAPER_VARIANTS
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def train(self, modality: str) -> TrainSettings:
        return {"text": self.text, "audio": self.audio, "multimodal": self.multimodal}[modality]

    def backbone(self, modality: str) -> str:
        return {"text": self.text_backbone, "audio": self.audio_backbone}[modality]


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        text_backbone="bert-base-uncased",
        audio_backbone="facebook/wav2vec2-base",
        frozen=False,
        text=TrainSettings(batch_size=16, lr=1e-6),
        audio=TrainSettings(batch_size=8, lr=1e-6),
        multimodal=TrainSettings(batch_size=4, lr=5e-6),
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
        variants=PAPER_VARIANTS + EXTRA_VARIANTS,
        description="packaged MiniLM + Whisper base, frozen; runs on 2 CPU cores",
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
        raise FeatcacheError(f"--preset {name!r}: unknown; choose one of {', '.join(PRESETS)}") from None


def with_overrides(preset: Preset, **overrides: Any) -> Preset:
    """A copy of ``preset`` with the non-None overrides applied."""
    return replace(preset, **{k: v for k, v in overrides.items() if v is not None})
