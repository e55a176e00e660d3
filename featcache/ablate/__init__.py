"""Ablations on cached vectors: a head or fusion variant trained over every fold and seed of a study,
evaluated under every condition, and compared side by side with the paper's heads of the same study.

An :class:`AblationSpec` says how the variant differs from the paper's multimodal head: the layer sizes
(``hidden``, ``fusion_hidden``), the body dropout, the fusion (``concat`` = the paper's feature-level
head, ``late``, ``score``, ``gated``; see :mod:`featcache.heads`), modality dropout, which modalities it
reads, its learning rate and most epochs, and **training on attacks**.

Training on attacks (``train_on``, ``mix``): each training utterance's text vector is replaced by the
stored vector of that utterance under one of the listed text attacks with probability ``mix``, and
independently its audio vector by one of the listed audio attacks with probability ``mix``. Every draw
is a hash of (head seed, modality, utterance id): fixed across epochs (a static mixed training set) and
across folds, the same on every machine, and independent of the order of the utterances. With several
attacks of one modality, the same hash picks one of them uniformly. The dev set stays clean, so early
stopping selects on clean accuracy as the paper's heads do; the test set is every condition.

The perturbed training vectors come from the store. With frozen backbones every entry already holds
every utterance. With fine-tuned ones a variant's entry holds the fold's test utterances unless it was
extracted with ``--split train`` (or ``all``): a missing one stops training with the command that makes
it (:meth:`featcache.study.Study.command` with ``split="train"``).

Each ablation is kept in the store (``ablations/<study>/<name>/``, see
:meth:`featcache.cache.StoreLayout.ablation_dir`): ``ablation.json`` with its options, and its heads
per fold and seed. Its name is ``<label>-<digest of the resolved options>``, so another option is
another folder, and running the same ablation again reloads its heads instead of training them. In a
predictions table it is the model ``ablate:<name>``, so :class:`featcache.metrics.Analysis` compares it
with the paper's heads like any fusion model.
"""

from __future__ import annotations

from featcache.ablate.catalog import (
    Ablation,
    AblationInfo,
    ablation,
    find_ablation,
    list_ablations,
)
from featcache.ablate.evaluation import (
    ComparisonRow,
    compare,
    comparison_records,
    evaluate_ablation,
    format_comparison,
)
from featcache.ablate.layers import (
    SWEEP_SUFFIX,
    LayerRow,
    LayerSweep,
    StoredSweep,
    find_layer_sweeps,
    format_layer_table,
    layer_rows,
    layer_sweeps,
    run_layer_sweep,
    stored_layers,
    sweep_header,
)
from featcache.ablate.run import AblationResult, run_ablation
from featcache.ablate.spec import (
    FUSIONS,
    MIX_RULE,
    POOLINGS,
    PREFIX,
    RESULT_FILE,
    SPEC_FILE,
    AblationSpec,
    parse_variant_list,
)
from featcache.ablate.training import _job, _training_vectors, mix_draws, train_ablation, train_ablations  # noqa: F401

__all__ = ["FUSIONS", "MIX_RULE", "POOLINGS", "PREFIX", "RESULT_FILE", "SPEC_FILE", "SWEEP_SUFFIX", "Ablation",
           "AblationInfo", "AblationResult", "AblationSpec", "ComparisonRow", "LayerRow", "LayerSweep", "StoredSweep",
           "ablation", "compare", "comparison_records", "evaluate_ablation", "find_ablation", "find_layer_sweeps",
           "format_comparison", "format_layer_table", "layer_rows", "layer_sweeps", "list_ablations", "mix_draws",
           "parse_variant_list", "run_ablation", "run_layer_sweep", "stored_layers", "sweep_header",
           "train_ablation", "train_ablations"]
