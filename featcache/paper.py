"""The paper's protocol in one place: Cohen et al. (2023), *Masking important information to assess
the robustness of a multimodal classifier for emotion recognition*.

Everything here is a choice the paper made (or, where marked, featcache's choice beside it): the
classes, the three models and what each reads, the attacks and the order of their tables, the heads'
sizes, and the hyperparameters. Every other module imports these names; changing the protocol means
editing this file only. This module imports nothing from featcache, so any layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------------------------------ data

LABELS: tuple[str, ...] = ("ang", "sad", "hap", "fru")
"""IEMOCAP's four classes, in class order (anger, sadness, happiness, frustration)."""
MERGE: dict[str, str] = {"exc": "hap"}
"""Raw labels merged into a class: excited counts as happy."""
DEV_FRACTION = 0.1
"""Share of the training sessions' utterances held out (stratified) for early stopping."""
DEV_MODES: tuple[str, ...] = ("stratified", "session", "speaker")
"""featcache's choice: how the early-stopping dev set is taken from the training sessions (stratified, as
the paper; or whole sessions, or whole speakers, held out)."""
MAX_SAMPLES = 246_000
"""The paper's clip length in samples at 16 kHz (15.375 s): longer clips are cut."""

# ---------------------------------------------------------------------------------------- models

TEXT = "text"
AUDIO = "audio"
MULTIMODAL = "multimodal"
MODALITIES: tuple[str, ...] = (TEXT, AUDIO)
"""The two input modalities, in the order a two-input head takes them."""

SPLITS: tuple[str, ...] = ("train", "dev", "test", "all")
"""The parts of a fold (``all``: its three splits together)."""
TEXT_POOLINGS: tuple[str, ...] = ("cls", "mean")
"""How a text vector is pooled from a backbone's tokens: the [CLS] vector (the paper) or their mean."""

MODEL_INPUTS: dict[str, tuple[str, ...]] = {TEXT: (TEXT,), AUDIO: (AUDIO,), MULTIMODAL: (TEXT, AUDIO)}
"""The paper's three classifiers and the modalities each reads."""
PAPER_MODELS: tuple[str, ...] = tuple(MODEL_INPUTS)
"""The paper's classifiers: text (BERT), audio (wav2vec 2.0), multimodal (both, model-level fusion)."""

FUSION_MODELS: tuple[str, ...] = ("late", "score", "gated", "mdrop")
"""featcache's fusion ablations beside the paper's multimodal head, all reading both modalities:
``late`` averages the unimodal probabilities, ``score`` learns weights over the unimodal scores,
``gated`` learns a per-utterance gate, ``mdrop`` is the multimodal head trained with modality dropout."""
ALL_MODELS: tuple[str, ...] = PAPER_MODELS + FUSION_MODELS
"""Every model a study trains and evaluates, in table order."""
MODALITY_DROPOUT = 0.3
"""Probability that ``mdrop`` zeroes one modality of a training example."""
HEAD_TRAIN_ORDER: tuple[str, ...] = ("text", "audio", "multimodal", "gated", "mdrop", "late", "score")
"""Training order of the heads: ``late`` and ``score`` fuse the trained unimodal heads, so they come last."""
FUSES_UNIMODAL_HEADS: tuple[str, ...] = ("late", "score")
"""Fusion heads built on the trained text and audio heads (they need those first)."""
MODEL_HEADS: dict[str, tuple[str, dict[str, float]]] = {
    TEXT: ("text", {}), AUDIO: ("audio", {}), MULTIMODAL: ("multimodal", {}), "late": ("late", {}),
    "score": ("score", {}), "gated": ("gated", {}), "mdrop": ("multimodal", {"modality_dropout": MODALITY_DROPOUT}),
}
"""The one vocabulary of heads: each model is a head kind (:data:`featcache.heads.HEADS`) built with these
options. ``mdrop`` is the multimodal head trained with modality dropout."""
ABLATION_FUSIONS: dict[str, str] = {"concat": "multimodal", "late": "late", "score": "score", "gated": "gated"}
"""An ablation's fusions (``featcache ablate --fusion``) and the head kind each trains: ``concat`` is the
multimodal head (the bodies' outputs concatenated, then FC layers)."""


def uses(model: str) -> tuple[str, ...]:
    """The modalities a model reads (every fusion model reads both).

    Args:
        model: A model name (:data:`ALL_MODELS`).

    Returns:
        ``("text",)``, ``("audio",)`` or ``("text", "audio")``.
    """
    return MODEL_INPUTS.get(model, MODALITIES)


# ---------------------------------------------------------------------------------------- heads

HIDDEN: tuple[int, ...] = (512, 256)
"""Sizes of the two fully connected layers of each modality's body."""
FUSION_HIDDEN = 128
"""Size of the fully connected layer after concatenation in the multimodal head."""
TEXT_DROPOUT = 0.0
"""The paper gives the text body no dropout."""
AUDIO_DROPOUT = 0.2
"""Dropout after each ReLU of the audio body."""

# ---------------------------------------------------------------------------------------- attacks

TEXT_ATTACKS: tuple[str, ...] = ("adj", "random-adj", "noun", "random-noun")
"""The masking attacks (Table 4), each also combined with :data:`COMBINED_AUDIO_ATTACK` (Table 6)."""
COMBINED_AUDIO_ATTACK = "pitch"
"""The audio attack the paper combines with every masking attack (``pitch+adj``, ...)."""
VARIANTS: tuple[str, ...] = ("adj", "random-adj", "noun", "random-noun", "no-text", "pitch", "no-audio", "noise")
"""The variants to extract for the paper's attacks (Tables 4-6); combinations are composed at evaluation."""
CONDITIONS: tuple[str, ...] = (
    "adj", "random-adj", "noun", "random-noun", "pitch",
    *(f"{COMBINED_AUDIO_ATTACK}+{t}" for t in TEXT_ATTACKS),
    "no-text", "no-audio", "noise",
)
"""The attacks of the paper's Tables 4-6, in their order."""
EXTRA_VARIANTS: tuple[str, ...] = ("asr-0.2", "snr-10", "telephone", "reverb-0.6")
"""featcache's attacks beyond the paper: one point of each sweep (the demo preset runs them)."""

# ---------------------------------------------------------------------------------------- tables

TEXT_TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("adj", "Adjectives"),
    ("random-adj", "Random (#adjectives)"),
    ("noun", "Nouns"),
    ("random-noun", "Random (#nouns)"),
    ("no-text", "No text"),
)
"""Rows of Table 4 (text model): condition and label."""
AUDIO_TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("pitch", "Pitch"),
    ("noise", "Noisy audio"),
    ("no-audio", "No audio"),
)
"""Rows of Table 5 (audio model)."""
FUSION_TABLE_SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Text perturbations", (
        ("adj", "Adjectives"), ("random-adj", "Random (#adj.)"), ("noun", "Nouns"), ("random-noun", "Random (#noun)"),
    )),
    ("Audio perturbations", (("pitch", "Pitch"),)),
    ("Text-audio perturbations", (
        ("pitch+adj", "Pitch + adj."), ("pitch+random-adj", "Pitch + rand. (#adj.)"),
        ("pitch+noun", "Pitch + noun"), ("pitch+random-noun", "Pitch + rand. (#noun)"),
    )),
    ("Eliminating one modality", (("no-text", "No text"), ("no-audio", "No audio"))),
    ("Adding white noise", (("noise", "Noisy audio"),)),
)
"""Sections and rows of Table 6 (every fusion model)."""
ATTACK_NAMES: dict[str, str] = {
    "adj": "Adjective masking",
    "noun": "Noun masking",
    "random-adj": "Random masking (#adjectives)",
    "random-noun": "Random masking (#nouns)",
    "pitch": "Pitch modulation (±1 semitone)",
}
"""Display names of attacks in the example tables."""
EXAMPLE_TABLES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("7", ("pitch",), AUDIO,
     "Utterances the multimodal classifier gets right under pitch modulation while the audio classifier errs."),
    ("8", ("adj", "noun"), TEXT,
     "Utterances the multimodal classifier gets right under adjective or noun masking while the text "
     "classifier errs."),
)
"""Tables 7-8: (number, attacks, the unimodal model compared with the multimodal one, caption)."""
POS_ATTACKS: tuple[tuple[str, str], ...] = (("adj", "random-adj"), ("noun", "random-noun"))
"""Each part-of-speech masking and the random masking of as many words it is compared with."""

# ---------------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class TrainSettings:
    """Training hyperparameters of one model kind (AdamW, weighted cross-entropy, early stopping)."""

    batch_size: int
    lr: float
    max_epochs: int = 100
    patience: int = 10
    grad_accum: int = 1
    weight_decay: float = 0.0


PATIENCE = 10
"""Early-stopping patience (epochs without a better dev accuracy)."""
SEEDS: tuple[int, ...] = (0, 1, 2)
"""Every model is trained with these seeds; tables show the mean and the spread over them."""
TEXT_BACKBONE = "bert-base-uncased"
AUDIO_BACKBONE = "facebook/wav2vec2-base"
TEXT_POOLING = "cls"
"""The text vector is BERT's [CLS] token (the audio vector is the mean over frames)."""
FINETUNE: dict[str, TrainSettings] = {
    TEXT: TrainSettings(batch_size=16, lr=1e-6, patience=PATIENCE),
    AUDIO: TrainSettings(batch_size=8, lr=1e-6, patience=PATIENCE),
    MULTIMODAL: TrainSettings(batch_size=4, lr=5e-6, patience=PATIENCE),
}
"""Fine-tuning settings of the three models (batch 16 / lr 1e-6 text, 8 / 1e-6 audio, 4 / 5e-6 multimodal)."""
HEAD_SETTINGS = TrainSettings(batch_size=128, lr=1e-3, max_epochs=100, patience=PATIENCE, weight_decay=0.01)
"""Light heads trained on cached vectors: the paper's loss and patience; batches of 128 and lr 1e-3 are
featcache's choice (an epoch over IEMOCAP's ~4,500 training vectors stays well under a second on a CPU;
bench/bench_evaluate.py has the timings)."""
