"""The layout of the paper's tables (Cohen et al. 2023), defined in :mod:`featcache.paper`, and the notes.

Tables 4 and 5 list :data:`TEXT_TABLE_ROWS` and :data:`AUDIO_TABLE_ROWS`, Table 6 (and its copy for
every extra fusion head) :data:`FUSION_TABLE_SECTIONS`; the example tables (7-8) name attacks by
:data:`ATTACK_NAMES`. Conditions are matched to these rows by
:func:`featcache.conditions.condition_key`, so any spelling of an attack lands in its row.
"""

from __future__ import annotations

from featcache.paper import ATTACK_NAMES, AUDIO_TABLE_ROWS, FUSION_TABLE_SECTIONS, TEXT_TABLE_ROWS

__all__ = [
    "ATTACK_NAMES", "AUDIO_TABLE_ROWS", "FUSION_NOTE", "FUSION_TABLE_SECTIONS", "TABLE_NOTE", "TEXT_TABLE_ROWS",
    "UAR_NOTE",
]

UAR_NOTE = "; UAR, the unweighted average recall (the mean of the per-class recalls), is averaged over sessions too"
"""The clause on the UAR column, after "Avg. is the mean of the session accuracies"."""
TABLE_NOTE = (
    "Avg. is the mean of the session accuracies" + UAR_NOTE + ". "
    "Impact is the relative change of Avg. from the Baseline, in percent."
)
FUSION_NOTE = (
    " Impact S. Modal copies the impact of the same attack(s) on the unimodal models (audio first, then text)."
)
