"""The layout of the paper's tables (Cohen et al. 2023): which condition goes in which row, and the notes.

Tables 4 and 5 list :data:`TEXT_TABLE_ROWS` and :data:`AUDIO_TABLE_ROWS`, Table 6 (and its copy for
every extra fusion head) :data:`FUSION_TABLE_SECTIONS`; the example tables (7-8) name attacks by
:data:`ATTACK_NAMES`. Conditions are matched to these rows by
:func:`~featcache.metrics.condition_key`, so any spelling of an attack lands in its row.
"""

from __future__ import annotations

TEXT_TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("adj", "Adjectives"),
    ("random-adj", "Random (#adjectives)"),
    ("noun", "Nouns"),
    ("random-noun", "Random (#nouns)"),
    ("no-text", "No text"),
)
"""Rows of Table 4 (text model): paper condition and label."""
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

TABLE_NOTE = (
    "Avg. is the mean of the session accuracies. Impact is the relative change of Avg. from the Baseline, in percent."
)
FUSION_NOTE = (
    " Impact S. Modal copies the impact of the same attack(s) on the unimodal models (audio first, then text)."
)
