"""Accuracy, impact, flip rates and paired bootstrap intervals over evaluation predictions.

Everything here is a pure function of a :class:`Predictions` table: one row per
(fold, seed, model, condition, utterance) with the true label, the predicted label, the class
probabilities and whether the condition actually changed that utterance's input.

Usage::

    preds = Predictions.load("predictions.h5")
    analysis = Analysis(preds)
    analysis.impact("multimodal", "adj").mean            # -5.20 (percent)
    diff = analysis.impact_difference("multimodal", "adj")
    diff.ci.low, diff.ci.high, diff.ci.excludes_zero     # fusion minus text-model impact

One module per job, each importing only those above it:

* :mod:`~featcache.metrics.names` - the clean condition, the paper's models and attacks, their order;
* :mod:`~featcache.metrics.predictions` - the :class:`Predictions` table and its HDF5 file;
* :mod:`~featcache.metrics.scores` - confusion matrices, accuracy, UAR, macro-F1, mean and std over seeds;
* :mod:`~featcache.metrics.rows` - the result types (:class:`SeedStat`, :class:`SummaryRow`, ...);
* :mod:`~featcache.metrics.groups` - the counting pass over the predictions, the affected subset;
* :mod:`~featcache.metrics.bootstrap` - the paired, fold-stratified bootstrap;
* :mod:`~featcache.metrics.intervals` - the statistics with bootstrap intervals (the base of :class:`Analysis`);
* :mod:`~featcache.metrics.analysis` - :class:`Analysis`, the definitions (Cohen et al. 2023, section 5)
  of Avg., impact, Impact S. Modal, flip rate and affected subset, and the statistics;
* :mod:`~featcache.metrics.by_group` - robustness by group (a speaker's sex, an accent): each group's clean
  accuracy and impacts with their intervals, and the largest gap between groups;
* :mod:`~featcache.metrics.tables` - the tidy tables and their CSV files.

Everything public is importable from :mod:`featcache.metrics` itself.
"""

from featcache.metrics.analysis import Analysis
from featcache.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES
from featcache.metrics.by_group import GroupCell, GroupGap, GroupRow, GroupTable, group_records, group_tables
from featcache.metrics.names import (
    AUDIO_MODEL,
    CLEAN,
    MULTIMODAL_MODEL,
    PAPER_CONDITIONS,
    TEXT_MODEL,
    condition_key,
    natural_key,
    order_conditions,
    order_models,
)
from featcache.metrics.predictions import COLUMNS, PREDICTIONS_FORMAT, PREDICTIONS_VERSION, Predictions
from featcache.metrics.rows import (
    Additivity,
    AffectedDifference,
    AffectedStats,
    BootstrapCI,
    ImpactDifference,
    ModalImpact,
    ResultRow,
    SeedStat,
    SummaryRow,
)
from featcache.metrics.scores import (
    STD_DDOF,
    Scores,
    classification_scores,
    confusion,
    mean_std,
    relative_change,
    scores_from_confusion,
)
from featcache.metrics.tables import (
    result_records,
    results_table,
    summary_records,
    summary_table,
    write_csv,
    write_results_csv,
    write_summary_csv,
)

__all__ = [
    "AUDIO_MODEL",
    "CLEAN",
    "COLUMNS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "MULTIMODAL_MODEL",
    "PAPER_CONDITIONS",
    "PREDICTIONS_FORMAT",
    "PREDICTIONS_VERSION",
    "STD_DDOF",
    "TEXT_MODEL",
    "Additivity",
    "AffectedDifference",
    "AffectedStats",
    "Analysis",
    "BootstrapCI",
    "GroupCell",
    "GroupGap",
    "GroupRow",
    "GroupTable",
    "ImpactDifference",
    "ModalImpact",
    "Predictions",
    "ResultRow",
    "Scores",
    "SeedStat",
    "SummaryRow",
    "classification_scores",
    "condition_key",
    "confusion",
    "group_records",
    "group_tables",
    "mean_std",
    "natural_key",
    "order_conditions",
    "order_models",
    "relative_change",
    "result_records",
    "results_table",
    "scores_from_confusion",
    "summary_records",
    "summary_table",
    "write_csv",
    "write_results_csv",
    "write_summary_csv",
]
