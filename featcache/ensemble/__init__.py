"""Heads trained together: many light heads of one architecture as one batched ensemble.

A study trains the same small heads for every fold x seed (15 per kind with the paper's 5 folds and 3
seeds). :func:`fit_ensemble` trains them in one loop: each parameter is stacked over the members
(``[members, ...]``, linear weights stored transposed as ``[members, in, out]``) and every wide layer is
one ``torch.baddbmm`` over all members, so one step costs a few large matrix products instead of many small
ones, and one fused AdamW call updates every member.

Each member keeps everything :func:`featcache.train.fit` gives a head trained alone, and ends with the
same weights (bitwise on CPU with one intra-op thread, as the tests check):

* its own initial weights: the caller builds each head after ``torch.manual_seed(seed)`` exactly as for
  :func:`~featcache.train.fit`, and the ensemble starts from those weights;
* its own training and dev vectors (rows of shared source matrices; folds differ in size, so batches
  are padded to the batch size and the padding is left out of the loss; a member with fewer batches in
  an epoch skips the extra optimiser steps), labels and class weights;
* its own shuffling (a ``torch.Generator`` seeded with ``seed``, one permutation per epoch) and its own
  dropout and modality-dropout draws, from a generator seeded with ``seed`` as ``fit`` seeds the
  global one, drawn in the same order and with the same shapes as the one-at-a-time head draws them;
* its own AdamW state and step count (``torch.optim.adamw.adamw(fused=True)``, the kernel ``fit``'s fused
  AdamW runs);
* its own early stopping: a member that stops is taken out of the stacked tensors (it costs nothing
  afterwards) and keeps the weights of its best epoch.

Supported heads: every head kind whose class defines its batched forward next to its own (``stacked``,
with ``stacked_bodies``, and where it differs ``stack_key``, ``stacked_trainable``, ``stacked_inputs``):
:class:`~featcache.heads.UnimodalHead` (text, audio), :class:`~featcache.heads.MultimodalHead` (with or
without modality dropout; both train in one stack), :class:`~featcache.heads.GatedFusion` and
:class:`~featcache.heads.ScoreFusion` (its frozen unimodal heads' scores are computed once, then only its
linear layer trains). :class:`~featcache.heads.LateFusion` has nothing to train. The stacking itself
(:class:`~featcache.ensemble.arch.StackedLayers`) knows no head kind.

Devices and precision: the above is the *bitwise* path, float32 on the CPU. On a GPU, and in bfloat16
(``precision="bf16"``) on any device, the ensemble runs its *batched* path instead: every layer of every member
is one ``torch.baddbmm`` (no member runs alone, whatever its shapes), a member without a batch in a step is
padded and left out of the loss and of AdamW, one weighted cross-entropy covers all members, and nothing is read
back from the device until an epoch ends. In bfloat16 the inputs are cast once, the forward reads bfloat16
copies of the float32 master weights made once per optimiser step, and the gradients, AdamW state and the
weights each head keeps are float32. The batched path equals the one-at-a-time trainer in the same precision to
float tolerance (other kernels round the last bits differently), not bit for bit; the masks and shuffles are
each member's own draws either way.

Threads: the layers are small matrix products, for which one intra-op thread is fastest per core and
several intra-op threads collapse when another process holds a core (every product waits at a barrier
for a thread that is not running). The ensemble therefore runs every operation on one intra-op thread
and uses more cores by training independent slices of the members in parallel Python threads
(``threads``, default :func:`head_threads`, set by ``FEATCACHE_THREADS``). Results do not depend on the
number of threads.

Time: :func:`step_clock` times every phase of every step (gathering inputs, dropout masks, weight copies,
forward, loss, backward, gradients, AdamW, evaluation) of the training started inside its block, with wall-clock
laps; ``bench/bench_evaluate.py`` prints where the time goes from it.
"""

from __future__ import annotations

from featcache.ensemble.arch import NARROW, Member
from featcache.ensemble.clock import PHASES, StepClock, step_clock
from featcache.ensemble.fit import DEV_BATCH, fit_alone, fit_heads
from featcache.ensemble.stack import fit_ensemble
from featcache.ensemble.threads import THREADS_ENV, head_threads, torch_threads

__all__ = ["DEV_BATCH", "NARROW", "PHASES", "THREADS_ENV", "Member", "StepClock", "fit_alone", "fit_ensemble", "fit_heads",
           "head_threads", "step_clock", "torch_threads"]
