"""Training: balanced class weights, early stopping and a resumable, reproducible training loop.

The paper trains every classifier with a weighted cross-entropy loss and early stopping on the dev
set with patience 10 (Cohen et al. 2023, sections 4.1-4.3). :func:`fit` is one loop for both uses in
featcache: light heads on vectors read from the feature store, and whole encoder + head models. The
caller supplies ``step(model, batch) -> (logits, labels)``, which is the only part that knows what a
batch holds.

One module per job, each importing only those above it:

* :mod:`~featcache.train.objective` - balanced class weights, the weighted loss, :class:`EarlyStopping`;
* :mod:`~featcache.train.precision` - :func:`resolve_precision`, :func:`compute_dtype`, autocast, moving batches to the device;
* :mod:`~featcache.train.batches` - the steps, :func:`tensor_loader`, dev passes and :func:`predict`;
* :mod:`~featcache.train.state` - optimizer and RNG state as flat tensors (checkpoints hold no pickle);
* :mod:`~featcache.train.journal` - the run directory: the epoch journal and its recovery, resuming,
  the training log, the lock, :func:`remove_resume_state`;
* :mod:`~featcache.train.loop` - :func:`fit` and one training epoch.

Everything public is importable from :mod:`featcache.train` itself.
"""

from featcache.train.batches import (
    Step,
    TensorBatches,
    predict,
    step_pair,
    step_single,
    tensor_loader,
)
from featcache.train.journal import (
    BEST_FILE,
    LAST_FILE,
    LOCK_FILE,
    LOG_FILE,
    OPTIMIZER_FILE,
    RESUME_FILES,
    RNG_FILE,
    STATE_FILE,
    has_resume_state,
    read_log,
    remove_resume_state,
)
from featcache.train.loop import POSTFIX_EVERY, Callback, FitResult, fit
from featcache.train.objective import EarlyStopping, class_weights, weighted_loss
from featcache.train.precision import (
    AMP_DTYPES,
    AUTO_BF16_WIDTH,
    PRECISIONS,
    compute_dtype,
    resolve_device,
    resolve_precision,
)
from featcache.train.state import optimizer_from_tensors, optimizer_to_tensors

__all__ = [
    "AMP_DTYPES",
    "AUTO_BF16_WIDTH",
    "BEST_FILE",
    "LAST_FILE",
    "LOCK_FILE",
    "LOG_FILE",
    "OPTIMIZER_FILE",
    "POSTFIX_EVERY",
    "PRECISIONS",
    "RESUME_FILES",
    "RNG_FILE",
    "STATE_FILE",
    "Callback",
    "EarlyStopping",
    "FitResult",
    "Step",
    "TensorBatches",
    "class_weights",
    "compute_dtype",
    "fit",
    "has_resume_state",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "predict",
    "read_log",
    "remove_resume_state",
    "resolve_device",
    "resolve_precision",
    "step_pair",
    "step_single",
    "tensor_loader",
    "weighted_loss",
]
