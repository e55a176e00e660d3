"""Per-fold fine-tuning of the paper's three models, end to end (encoders + heads).

A run is identified by (corpus, modality, backbone(s), encoder options, hyperparameters, fold, dev
split, seed, the training loop's version and precision) and lives in the store's ``runs/<run_id>/``
(``FeatureStore.run_dir``). While it trains, the folder holds::

    config.json                 the run's identity
    state.json, last.safetensors, optimizer.safetensors, rng.safetensors, best.safetensors
                                the resumable training loop's checkpoints (see featcache.train)
    train_log.jsonl             one line per epoch

and when it is finished, only what extraction and evaluation use::

    config.json, train_log.jsonl
    text_encoder.safetensors    fine-tuned encoder weights of the best epoch (one per modality)
    audio_encoder.safetensors
    head/                       the head (model.safetensors + config.json), applied later to stored vectors
    result.json                 best epoch, dev accuracy, size and SHA-256 of the encoder weights;
                                written after the weights: a run is finished when it exists

A process holds ``runs/<run_id>.lock`` (beside the folder) while it trains or finishes a run, so a second
``featcache finetune`` of the same run waits and then finds it finished. Finishing writes the encoder
weights, the head and ``result.json``, and only then deletes the checkpoints (``state.json`` first): a kill
at any moment leaves a run that resumes from its last completed epoch, or a finished one whose leftover
checkpoints the next call deletes. Weights are safetensors and configs JSON; nothing is pickled; every
file is written under a temporary name and renamed into place (:mod:`featcache.cache.atomic`).

The loop (:func:`featcache.train.fit`) gets its inputs from DataLoader workers (tokenised, audio decoded
and cut) in batches of similar length (:class:`~featcache.buckets.LengthBatchSampler`, drawn from the
run's seed), pinned and copied without blocking on CUDA, and evaluates the dev set in length-sorted
batches :data:`EVAL_BATCH_FACTOR` times larger. ``precision`` picks float32 or bfloat16/float16 autocast
(:func:`featcache.train.resolve_precision`).

A finished run whose ``config.json``, ``result.json``, head or encoder weights no longer read is damaged:
it is never used (:func:`find_runs` raises :class:`~featcache.errors.DamagedError` naming the file and the
command), and the same ``featcache finetune`` command trains it again: from its checkpoints when a kill
left them, else from scratch (the same seed on the same device gives the same weights).

One module per job, each importing only those above it:

* :mod:`~featcache.finetune.runs` - a run's identity (:func:`run_config`, :func:`run_id`,
  :data:`LOOP_VERSION`), :class:`FinetuneRun` and its damage checks, :func:`run_differences`, and the
  store's runs (:func:`find_runs`, :func:`list_runs`);
* :mod:`~featcache.finetune.inputs` - the split datasets and length-bucketed loaders (the classes
  DataLoader workers unpickle);
* :mod:`~featcache.finetune.loop` - :class:`EndToEnd` and :func:`finetune` (training a run under its
  lock, then finishing it).

Everything public is importable from :mod:`featcache.finetune` itself.
"""

from featcache.finetune.inputs import _Collate, _Items, _lengths, _loader, _Prepared
from featcache.finetune.loop import EVAL_BATCH_FACTOR, EndToEnd, finetune
from featcache.finetune.runs import (
    LOOP_VERSION,
    FinetuneRun,
    RunInfo,
    find_runs,
    list_runs,
    loop_identity,
    run_config,
    run_differences,
    run_id,
)

__all__ = [
    "EVAL_BATCH_FACTOR",
    "LOOP_VERSION",
    "EndToEnd",
    "FinetuneRun",
    "RunInfo",
    "_Collate",
    "_Items",
    "_Prepared",
    "_lengths",
    "_loader",
    "find_runs",
    "finetune",
    "list_runs",
    "loop_identity",
    "run_config",
    "run_differences",
    "run_id",
]
