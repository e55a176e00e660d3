"""A robustness study over cached vectors: which vectors feed which head, training the light heads,
and evaluating every fold x seed x model x condition from the store alone (no encoder is loaded).

Models (:mod:`featcache.paper`)
    ``text``, ``audio``, ``multimodal``: the paper's classifiers. With fine-tuned backbones they are the
    heads saved by ``featcache finetune`` applied to the vectors of their own fine-tuned encoders (the
    paper's models, exactly); with frozen backbones they are trained here on the stored clean vectors.
    ``late``, ``score``, ``gated`` and ``mdrop`` are fusion ablations trained here on the unimodal
    models' vectors. A study runs only the models whose modalities its corpus has.

Conditions (:mod:`featcache.conditions`)
    ``clean`` (always evaluated: every impact needs it), the variants, and ``pitch`` combined with each
    of the paper's masking attacks, composed from one stored text entry and one stored audio entry.

Evaluation reads each entry once, gathers each fold's test rows once for every seed and model, and
runs each head's body once per (modality, variant): the conditions that share an input share its
encoding, so a combined condition costs only the fusion layers.

Every "run this command" hint comes from :meth:`Study.command`, built from the study's own options, so
a printed command, run as printed, makes exactly what is missing.

Damaged files are never used. A stored entry, a head or a fine-tuning run that fails its checks stops
evaluation with one :class:`~featcache.errors.DamagedError` line naming the file and the command that
makes it again; ``train-heads`` trains a damaged head of its own again (saying so in one log line).

Modules: :mod:`.core` (the :class:`Study`), :mod:`.hints` (the commands it prints), :mod:`.runs` (its
fine-tuning runs), :mod:`.training` (its heads trained on cached vectors), :mod:`.evaluation`.
"""

from __future__ import annotations

from featcache.conditions import default_conditions
from featcache.errors import MissingEntries
from featcache.paper import ALL_MODELS, FUSION_MODELS, HEAD_SETTINGS, PAPER_MODELS, uses
from featcache.study.core import Study
from featcache.study.evaluation import (
           LayerWeightStat,
           encode_input,
           evaluate,
           evaluate_head,
           fold_test_columns,
           layer_weights,
           prediction_block,
)
from featcache.study.training import (  # noqa: F401
           DEV_BATCH,
           _train_one,
           _train_together,
           fit_alone,
           train_heads,
)

__all__ = ["ALL_MODELS", "DEV_BATCH", "FUSION_MODELS", "HEAD_SETTINGS", "PAPER_MODELS", "LayerWeightStat",
           "MissingEntries", "Study", "default_conditions", "encode_input", "evaluate", "evaluate_head", "fit_alone",
           "fold_test_columns", "layer_weights", "prediction_block", "train_heads", "uses"]
