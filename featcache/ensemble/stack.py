"""Training a stack of heads of one architecture as one batched model, and :func:`fit_ensemble`, which groups
members into stacks and trains them in parallel threads (see :mod:`featcache.ensemble`)."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.adamw import adamw

from featcache.ensemble.arch import (
    NARROW,
    Member,
    StackedLayers,
    _group_key,
    _trainable,
)
from featcache.ensemble.clock import StepClock, active_clock
from featcache.ensemble.threads import head_threads, torch_threads
from featcache.errors import FeatcacheError
from featcache.train import EarlyStopping, FitResult

_BETAS = (0.9, 0.999)
_EPS = 1e-8
_CPU = torch.device("cpu")


@functools.lru_cache(maxsize=1)
def _uniforms_match_bernoulli() -> bool:
    """Whether ``bernoulli_(q, generator=g)`` draws exactly ``rand(float64, generator=g) < q`` element by element,
    consuming the generator in the same order (torch's CPU kernel, measured 1.6x slower than the draw it equals);
    checked once on this torch, so that a torch which draws otherwise keeps the masks of ``nn.Dropout``."""
    a, b = torch.Generator().manual_seed(1234), torch.Generator().manual_seed(1234)
    first, second = (37, 19), (5, 64)
    masks = [torch.empty(first).bernoulli_(0.8, generator=a), torch.empty(second).bernoulli_(0.5, generator=a)]
    u = torch.rand(masks[0].numel() + masks[1].numel(), dtype=torch.float64, generator=b)
    cut = masks[0].numel()
    same = (torch.equal(masks[0], (u[:cut] < 0.8).float().view(first))
            and torch.equal(masks[1], (u[cut:] < 0.5).float().view(second)))
    return same and torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


# ------------------------------------------------------------------------------------------ one stack of members


class _Slot:
    """The per-member state of a training run that does not live in the stacked tensors."""

    def __init__(self, index: int, member: Member, rows: tuple[np.ndarray, np.ndarray], offsets: list[int],
                 patience: int | None, max_epochs: int, device: torch.device) -> None:
        self.device = device
        self.index = index
        self.member = member
        train_rows, dev_rows = (np.asarray(r, dtype=np.int64) for r in rows)
        self.train_idx = [torch.as_tensor(train_rows + o) for o in offsets]  # rows of the stack's sources
        self.dev_idx = [torch.as_tensor(dev_rows + o) for o in offsets]
        self.y_train = torch.as_tensor(np.asarray(member.train_labels)).long()
        self.y_dev = torch.as_tensor(np.asarray(member.dev_labels)).long()
        self.weights = None if member.class_weights is None else torch.as_tensor(member.class_weights,
                                                                                  dtype=torch.float32)
        self.n_train = len(self.y_train)
        self.shuffle = torch.Generator().manual_seed(member.seed)  # fit re-seeds the loader's generator
        self.noise = torch.Generator().manual_seed(member.seed)  # fit's torch.manual_seed(seed), for dropout
        self.steps: dict[str, torch.Tensor] = {}  # fused AdamW's step count per parameter (float32, as fit's)
        self.stopper = EarlyStopping(patience if patience is not None else max_epochs + 1)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, torch.Tensor] | None = None
        self.modality_dropout = float(getattr(member.head, "modality_dropout", 0.0) or 0.0)
        self.train_rows = np.asarray(member.train_rows, dtype=np.int64)  # the member's own rows (score: raw inputs)


class _Stack:
    """Members of one architecture trained as one batched model (a share of one group)."""

    def __init__(self, members: Sequence[tuple[int, Member]], *, lr: float, weight_decay: float, batch_size: int,
                 dev_batch_size: int, max_epochs: int, patience: int | None, dtype: torch.dtype = torch.float32,
                 device: torch.device = _CPU, bitwise: bool = True, clock: StepClock | None = None) -> None:
        self.clock = clock
        self.template = members[0][1].head
        self.bitwise, self.dtype, self.device = bitwise, dtype, device
        self.arch = StackedLayers(self.template, bitwise=bitwise)
        self.names = _trainable(self.template)
        self.lr, self.weight_decay, self.batch_size, self.dev_batch_size = lr, weight_decay, batch_size, dev_batch_size
        self.max_epochs, self.patience = max_epochs, patience
        sources, rows, offsets = self._sources(members)
        # the batched path reads its inputs in the compute dtype, cast once here (bfloat16 halves every gather)
        self.sources = sources if bitwise else [x.to(device=device, dtype=dtype) for x in sources]
        self.slots = [_Slot(i, m, r, off, patience, max_epochs, device)
                      for (i, m), r, off in zip(members, rows, offsets)]
        self.transposed = {n for n in self.names if n.endswith(".weight") and n[:-7] not in self.arch.narrow}
        with torch.no_grad():  # float32 master weights (and AdamW state) on the device, whatever the dtype
            self.p = {n: torch.stack([self._stacked_layout(n, s.member.head.get_parameter(n)) for s in self.slots])
                      .to(device).contiguous().requires_grad_() for n in self.names}
        self.exp_avg = {n: torch.zeros_like(v) for n, v in self.p.items()}
        self.exp_avg_sq = {n: torch.zeros_like(v) for n, v in self.p.items()}
        self._state_views: dict[str, tuple[tuple[torch.Tensor, ...], ...]] | None = None
        self._low: dict[str, torch.Tensor] = {}  # below float32: the forward's weights (leaves), see _forward_weights
        self._grads: dict[str, torch.Tensor] = {}  # below float32: their gradients in float32, for AdamW
        self._buffers()
        self._refresh_dev()

    # -- data ---------------------------------------------------------------------------------

    def _sources(self, members: Sequence[tuple[int, Member]]
                 ) -> tuple[list[torch.Tensor], list[tuple[np.ndarray, np.ndarray]], list[list[int]]]:
        """One matrix per input (the members' distinct sources, concatenated), each member's (train, dev)
        rows in its own sources, and the offset of its sources in the concatenation."""
        per_member: list[list[torch.Tensor]] = []
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        self.raw: dict[int, list[torch.Tensor]] = {}  # score members' own inputs (see train_epoch)
        for i, m in members:
            if hasattr(m.head, "stacked_inputs"):  # e.g. frozen scores, once: only the score layer trains
                raw = self.raw[i] = [torch.as_tensor(x).float() for x in m.inputs]
                train = m.head.stacked_inputs(raw, m.train_rows, chunk=self.batch_size)
                dev = m.head.stacked_inputs(raw, m.dev_rows, chunk=self.dev_batch_size)
                per_member.append([torch.cat([train, dev])])
                rows.append((np.arange(len(train)), np.arange(len(train), len(train) + len(dev))))
            else:
                per_member.append([torch.as_tensor(x) for x in m.inputs])
                rows.append((np.asarray(m.train_rows), np.asarray(m.dev_rows)))
        n_inputs = {len(x) for x in per_member}
        if len(n_inputs) != 1:
            raise ValueError(f"members of one architecture pass different numbers of inputs: {sorted(n_inputs)}")
        sources: list[torch.Tensor] = []
        offsets: list[list[int]] = [[] for _ in per_member]
        for k in range(n_inputs.pop()):
            distinct: dict[int, tuple[torch.Tensor, int]] = {}
            start = 0
            for j, xs in enumerate(per_member):
                x = xs[k]
                if id(x) not in distinct:
                    distinct[id(x)] = (x, start)
                    start += len(x)
                offsets[j].append(distinct[id(x)][1])
            parts = [x.float() for x, _ in distinct.values()]
            sources.append(parts[0].contiguous() if len(parts) == 1 else torch.cat(parts).contiguous())
        return sources, rows, offsets

    def _stacked_layout(self, name: str, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().float()
        return value.t() if name in self.transposed else value

    def lap(self, phase: str, since: float) -> float:
        """With a clock (:func:`~featcache.ensemble.clock.step_clock`): time ``phase`` since ``since``, after
        waiting for a GPU; returns the next lap's start."""
        if self.clock is None:
            return since
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock.lap(phase, since)

    def _refresh_dev(self) -> None:
        """Dev inputs of the active members, padded to the longest dev set: ``[members, n_dev, dim]`` each."""
        n = max(len(s.y_dev) for s in self.slots)
        self.dev_x = []
        for k, src in enumerate(self.sources):
            idx = torch.zeros(len(self.slots), n, dtype=torch.long)
            for j, s in enumerate(self.slots):
                idx[j, :len(s.y_dev)] = s.dev_idx[k]
            self.dev_x.append(src.index_select(0, idx.view(-1).to(src.device)).view(len(self.slots), n, src.shape[1]))

    # -- one epoch ----------------------------------------------------------------------------

    def _noise(self, slots: Sequence[_Slot], sizes: Sequence[int]) -> dict[str, torch.Tensor] | None:
        """Each member's training masks for one batch, drawn from its own generator in its head's order
        (in the dtype of the stack's inputs; rows past a member's batch are zero)."""
        use_modality = self.arch.modality_dropout and any(s.modality_dropout > 0 for s in slots)
        if not self.arch.sites and not use_modality:
            return None
        m, b = len(slots), self.batch_size
        dtype = self.sources[0].dtype
        noise: dict[str, torch.Tensor] = {}
        if use_modality:
            noise["keep_text"] = torch.ones(m, b, 1, dtype=dtype)
            noise["keep_audio"] = torch.ones(m, b, 1, dtype=dtype)
        for key, _ in self.arch.sites:
            noise[key] = torch.empty(m, b, self.arch.width[key], dtype=dtype)
        one_draw = _uniforms_match_bernoulli()
        widths = [self.arch.width[key] for key, _ in self.arch.sites]
        for j, (s, n) in enumerate(zip(slots, sizes)):
            if n < b:  # a short (or, batched, absent) batch: its padding rows get zero masks
                for key, _ in self.arch.sites:
                    noise[key][j, n:] = 0
            if n == 0:  # (the batched path: a member without a batch this step draws nothing)
                continue
            p_mod = s.modality_dropout
            if use_modality and p_mod > 0:  # heads._modality_dropout, with this member's generator
                drop = torch.rand(n, generator=s.noise) < p_mod
                drop_text = torch.rand(n, generator=s.noise) < 0.5
                noise["keep_text"][j, :n, 0] = ~(drop & drop_text)
                noise["keep_audio"][j, :n, 0] = ~(drop & ~drop_text)
            if not self.arch.sites:
                continue
            if one_draw:  # every site's nn.Dropout mask (bernoulli(1 - p)) from one draw of the same uniforms
                u = torch.rand(n * sum(widths), dtype=torch.float64, generator=s.noise)
                start = 0
                for (key, p), w in zip(self.arch.sites, widths):
                    torch.lt(u[start:start + n * w].view(n, w), 1 - p, out=noise[key][j, :n])
                    start += n * w
            else:
                for key, p in self.arch.sites:
                    noise[key][j, :n].bernoulli_(1 - p, generator=s.noise)
        for key, p in self.arch.sites:
            noise[key].div_(1 - p)
        return noise

    def _adamw(self, positions: Sequence[int]) -> None:
        """One AdamW step for the members at ``positions``, each with its own step count."""
        if self._state_views is None:  # per-member views of the stacked tensors, until the next drop()
            self._state_views = {n: (p.data.unbind(0), self.exp_avg[n].unbind(0), self.exp_avg_sq[n].unbind(0))
                                 for n, p in self.p.items()}
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for n, p in self.p.items():
            g = (p.grad if self.dtype == torch.float32 else self._grads[n]).unbind(0)
            ps, avg, sq = self._state_views[n]
            for pos in positions:
                params.append(ps[pos])
                grads.append(g[pos])
                avgs.append(avg[pos])
                sqs.append(sq[pos])
                steps.append(self.slots[pos].steps.setdefault(n, torch.zeros((), dtype=torch.float32,
                                                                             device=self.device)))
        # the public functional AdamW with fused=True: it counts each step and runs the kernel that fit's
        # torch.optim.AdamW(fused=True) runs, on every member's views at once
        adamw(params, grads, avgs, sqs, [], steps, fused=True, amsgrad=False, lr=self.lr, beta1=_BETAS[0],
              beta2=_BETAS[1], weight_decay=self.weight_decay, eps=_EPS, maximize=False)

    def train_epoch(self, epoch: int) -> dict[int, float]:
        """One epoch for every active member; returns each one's sample-weighted mean training loss."""
        if not self.bitwise:
            return self._train_epoch_batched(epoch)
        t = time.perf_counter()
        bs = self.batch_size
        orders = [torch.randperm(s.n_train, generator=s.shuffle) for s in self.slots]
        n_batches = [math.ceil(s.n_train / bs) for s in self.slots]
        totals = [0.0] * len(self.slots)
        t = self.lap("setup", t)
        for j in range(max(n_batches)):
            positions = [i for i, nb in enumerate(n_batches) if j < nb]
            slots = [self.slots[i] for i in positions]
            chunks = [orders[i][j * bs:(j + 1) * bs] for i in positions]
            sizes = [len(c) for c in chunks]
            xs = []
            for k, src in enumerate(self.sources):
                idx = torch.zeros(len(positions), bs, dtype=torch.long)
                for r, (s, c) in enumerate(zip(slots, chunks)):
                    idx[r, :len(c)] = s.train_idx[k][c]
                xs.append(src.index_select(0, idx.view(-1)).view(len(positions), bs, src.shape[1]))
            for r, (s, c, n) in enumerate(zip(slots, chunks, sizes)):
                if s.index in self.raw and n < NARROW:  # the frozen heads saw these few rows on their own
                    xs[0][r, :n] = s.member.head.stacked_inputs(self.raw[s.index], s.train_rows[c.numpy()], chunk=bs)
            t = self.lap("gather", t)
            noise = self._noise(slots, sizes)
            t = self.lap("masks", t)
            if len(positions) == len(self.slots):
                p = self.p
            else:
                sel = torch.as_tensor(positions, dtype=torch.long)
                p = {n: v.index_select(0, sel) for n, v in self.p.items()}
            logits = self.arch.forward(p, xs, noise, sizes)
            t = self.lap("forward", t)
            losses = [F.cross_entropy(logits[r, :n], s.y_train[c], weight=s.weights)
                      for r, (s, c, n) in enumerate(zip(slots, chunks, sizes))]
            loss = torch.stack(losses)
            values = loss.detach().tolist()
            for r, value in enumerate(values):
                if not math.isfinite(value):
                    raise FeatcacheError(f"the training loss became {value} at epoch {epoch}, batch {j + 1} "
                                         f"(ensemble member {slots[r].index}); lower the learning rate")
                totals[positions[r]] += value * sizes[r]
            t = self.lap("loss", t)
            loss.sum().backward()
            t = self.lap("backward", t)
            self._adamw(positions)
            for v in self.p.values():
                v.grad = None
            t = self.lap("optimizer", t)
        return {s.index: totals[i] / s.n_train for i, s in enumerate(self.slots)}

    def _buffers(self) -> None:
        """Below float32, the tensors every step reuses (allocated once per set of members): the forward's
        weights, leaves in the compute dtype, and their gradients in float32. Fresh tensors of these sizes
        cost about twice as much to fill as reused ones."""
        if self.dtype == torch.float32:
            return
        with torch.no_grad():
            self._low = {n: torch.empty_like(v, dtype=self.dtype).requires_grad_() for n, v in self.p.items()}
            self._grads = {n: torch.empty_like(v) for n, v in self.p.items()}
        for v in self.p.values():
            v.requires_grad_(False)  # their gradients come from the low-precision leaves (_gradients)

    def _forward_weights(self) -> dict[str, torch.Tensor]:
        """The weights the forward reads: the float32 masters, or their copies in the compute dtype, refreshed
        from the masters (rounded to nearest) before every forward."""
        if self.dtype == torch.float32:
            return self.p
        with torch.no_grad():
            for n, v in self.p.items():
                self._low[n].copy_(v)
        return self._low

    def _gradients(self) -> None:
        """Below float32: the low-precision weights' gradients, widened into the float32 buffers AdamW reads."""
        if self.dtype == torch.float32:
            return
        for n, v in self._low.items():
            self._grads[n].copy_(v.grad)
            v.grad = None

    def _epoch_batches(self) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, list[list[int]]]:
        """The batched path's epoch, laid out at once: per source the rows ``[batches, members, batch]``, the
        labels and the loss weights (class weight, 0 for padding) of every row, and each batch's member sizes;
        each member's own permutation, drawn from its own generator as its loader draws it."""
        bs, m = self.batch_size, len(self.slots)
        n_batches = max(math.ceil(s.n_train / bs) for s in self.slots)
        total = n_batches * bs
        idx = [torch.zeros(m, total, dtype=torch.long) for _ in self.sources]
        labels = torch.zeros(m, total, dtype=torch.long)
        weights = torch.zeros(m, total, dtype=torch.float32)
        sizes = [[0] * m for _ in range(n_batches)]
        for r, s in enumerate(self.slots):
            order = torch.randperm(s.n_train, generator=s.shuffle)
            for k in range(len(self.sources)):
                idx[k][r, :s.n_train] = s.train_idx[k][order]
            y = s.y_train[order]
            labels[r, :s.n_train] = y
            weights[r, :s.n_train] = 1.0 if s.weights is None else s.weights[y]
            for j in range(n_batches):
                sizes[j][r] = max(0, min(bs, s.n_train - j * bs))
        dev = self.device
        rows = [x.view(m, n_batches, bs).transpose(0, 1).contiguous().to(dev) for x in idx]
        return (rows, labels.view(m, n_batches, bs).transpose(0, 1).contiguous().to(dev),
                weights.view(m, n_batches, bs).transpose(0, 1).contiguous().to(dev), sizes)

    def _train_epoch_batched(self, epoch: int) -> dict[int, float]:
        """One epoch on the batched path (any device, float32 or bfloat16): every member in every product,
        a member without a batch padded and left out of its loss and of AdamW; one weighted cross-entropy over
        all members; nothing read back from the device until the epoch ends."""
        t = time.perf_counter()
        bs, m = self.batch_size, len(self.slots)
        rows, labels, weights, sizes = self._epoch_batches()
        counts = torch.tensor(sizes, dtype=torch.float32).to(self.device)  # [batches, members]
        totals = torch.zeros(m, dtype=torch.float32, device=self.device)
        t = self.lap("setup", t)
        for j, sz in enumerate(sizes):
            xs = [src.index_select(0, r[j].view(-1)).view(m, bs, src.shape[1]) for src, r in zip(self.sources, rows)]
            t = self.lap("gather", t)
            noise = self._noise(self.slots, sz)
            if noise is not None:
                noise = {k: v.to(device=self.device, dtype=self.dtype) for k, v in noise.items()}
            t = self.lap("masks", t)
            p = self._forward_weights()
            t = self.lap("weights", t)
            logits = self.arch.forward(p, xs, noise, sz)
            t = self.lap("forward", t)
            nll = -torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[j].unsqueeze(-1)).squeeze(-1)
            w = weights[j]
            loss = (nll * w).sum(1) / w.sum(1).clamp_min(torch.finfo(torch.float32).tiny)  # F.cross_entropy(weight=)
            totals += loss.detach() * counts[j]
            t = self.lap("loss", t)
            loss.sum().backward()
            t = self.lap("backward", t)
            self._gradients()
            t = self.lap("gradients", t)
            self._adamw([r for r, n in enumerate(sz) if n > 0])
            for v in self.p.values():
                v.grad = None
            t = self.lap("optimizer", t)
        values = totals.cpu().tolist()  # the one read of the epoch's losses
        self.lap("loss", t)
        for r, value in enumerate(values):
            if not math.isfinite(value):
                raise FeatcacheError(f"the training loss became {value} at epoch {epoch} (ensemble member "
                                     f"{self.slots[r].index}); lower the learning rate")
        return {s.index: values[r] / s.n_train for r, s in enumerate(self.slots)}

    def evaluate(self) -> torch.Tensor:
        """Dev logits of every active member, ``[members, n_dev_max, n_classes]`` (eval mode: no dropout),
        in chunks of the dev batch size as the one-at-a-time loop computes them; float32, on the CPU."""
        n, step = self.dev_x[0].shape[1], self.dev_batch_size
        out = []
        with torch.no_grad():
            p = self._forward_weights()
            for i in range(0, n, step):
                sizes = [max(0, min(step, len(s.y_dev) - i)) for s in self.slots]
                out.append(self.arch.forward(p, [x[:, i:i + step].contiguous() for x in self.dev_x], None, sizes))
        return torch.cat(out, dim=1).float().cpu()

    def best_state(self, pos: int) -> dict[str, torch.Tensor]:
        """The member's full state dict (head layout) with its current trainable weights."""
        slot = self.slots[pos]
        state = {k: v.detach().clone() for k, v in slot.member.head.state_dict().items()}
        for n, v in self.p.items():
            value = v.detach()[pos].cpu()
            state[n] = (value.t() if n in self.transposed else value).contiguous().clone()
        return state

    def drop(self, keep: Sequence[int]) -> None:
        """Keep only the members at positions ``keep`` (the others have stopped)."""
        sel = torch.as_tensor(list(keep), dtype=torch.long).to(self.device)
        with torch.no_grad():
            self.p = {n: v.detach().index_select(0, sel).requires_grad_() for n, v in self.p.items()}
            self.exp_avg = {n: v.index_select(0, sel) for n, v in self.exp_avg.items()}
            self.exp_avg_sq = {n: v.index_select(0, sel) for n, v in self.exp_avg_sq.items()}
        self._state_views = None
        self._buffers()
        self.slots = [self.slots[i] for i in keep]
        if self.slots:
            self._refresh_dev()


def _dev_metrics(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> tuple[float, float, float]:
    """(weighted loss, accuracy, unweighted average recall over the classes in ``labels``), as ``fit`` logs them."""
    loss = float(F.cross_entropy(logits, labels, weight=weights))
    pred = logits.argmax(dim=-1).numpy()
    y = labels.numpy()
    acc = float((pred == y).mean())
    uar = float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))
    return loss, acc, uar


def _train_stack(stack: _Stack, *, on_done: Callable[[int, FitResult], None] | None,
                 lock: threading.Lock, abort: threading.Event) -> dict[int, FitResult]:
    """Train one stack until every member has stopped; each finished member's head gets its best weights.

    Returns early (with what is finished) once ``abort`` is set, e.g. because another stack failed.
    """
    results: dict[int, FitResult] = {}
    epoch = 0
    while stack.slots and not abort.is_set():
        epoch += 1
        t0 = time.perf_counter()
        train_loss = stack.train_epoch(epoch)
        t = time.perf_counter()
        logits = stack.evaluate()
        took = round(time.perf_counter() - t0, 4)
        keep = []
        for pos, s in enumerate(stack.slots):
            dev_loss, dev_acc, dev_uar = _dev_metrics(logits[pos, :len(s.y_dev)], s.y_dev, s.weights)
            improved = s.stopper.step(dev_acc, epoch)
            if improved:
                s.best = stack.best_state(pos)
            stopped_early = s.stopper.should_stop and stack.patience is not None
            finished = stopped_early or epoch >= stack.max_epochs
            s.history.append({
                "epoch": epoch,
                "train_loss": train_loss[s.index] if math.isfinite(train_loss[s.index]) else None,
                "dev_loss": dev_loss if math.isfinite(dev_loss) else None,
                "dev_acc": dev_acc,
                "dev_uar": dev_uar,
                "time": took,
                "improved": improved,
                "best_epoch": s.stopper.best_epoch,
                "best_dev_acc": s.stopper.best,
                "lr": stack.lr,
            })
            if not finished:
                keep.append(pos)
                continue
            if s.best is None or s.stopper.best_epoch is None:
                raise FeatcacheError("no epoch produced a usable dev accuracy; check the dev data")
            s.member.head.load_state_dict(s.best, strict=True)
            result = FitResult(best_epoch=s.stopper.best_epoch, best_dev_acc=float(s.stopper.best),  # type: ignore[arg-type]
                               epochs_run=epoch, history=s.history, run_dir=None, stopped_early=stopped_early)
            results[s.index] = result
            if on_done is not None:
                with lock:
                    on_done(s.index, result)
        t = stack.lap("evaluate", t)
        if len(keep) < len(stack.slots):
            stack.drop(keep)
            stack.lap("setup", t)
    return results


# ------------------------------------------------------------------------------------------ entry point


def fit_ensemble(
    members: Sequence[Member],
    *,
    lr: float,
    max_epochs: int,
    patience: int | None = 10,
    weight_decay: float = 0.01,
    batch_size: int,
    dev_batch_size: int = 256,
    threads: int | None = None,
    on_done: Callable[[int, FitResult], None] | None = None,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    bitwise: bool | None = None,
) -> list[FitResult]:
    """Train many heads at once; each ends exactly as :func:`featcache.train.fit` would leave it alone.

    Equivalent, member by member, to ``fit(member.head, train_loader=tensor_loader(*train, labels,
    batch_size=batch_size, shuffle=True, seed=seed), dev_loader=tensor_loader(*dev, dev_labels, ...),
    class_weights=member.class_weights, lr=lr, max_epochs=max_epochs, patience=patience, seed=seed,
    weight_decay=weight_decay)`` on CPU, without a run directory (see the module docstring).

    Members are grouped by architecture (multimodal heads with and without modality dropout share a
    group); each group is split into ``threads`` stacks, which ``threads`` Python threads train in
    parallel, every operation on one intra-op thread (the previous count is restored on return). Inside a
    :func:`~featcache.ensemble.step_clock` block every phase of every step is timed.

    Args:
        members: The heads and their data.
        lr: AdamW learning rate.
        max_epochs: Upper bound on epochs.
        patience: Early-stopping patience on dev accuracy (None: none).
        weight_decay: AdamW's decoupled weight decay.
        batch_size: Training batch size.
        dev_batch_size: Rows per dev forward pass (the one-at-a-time dev loader's batch size).
        threads: Parallel training threads (default :func:`head_threads`).
        on_done: Called with ``(member index, result)`` as soon as a member has finished (its head then
            holds its best weights); calls are serialised.
        precision: ``fp32``, or ``bf16``: bfloat16 inputs and products on bfloat16 copies of the weights made
            once per step, with float32 master weights, gradients and AdamW state.
        device: Where to train (``cpu``, ``cuda``, ...); the heads come back on the CPU.
        bitwise: True: the path that equals ``fit`` bit for bit (float32 on the CPU only); False: the batched
            path, every layer of every member one ``baddbmm`` and one loss over all members, the path of CUDA
            and of bfloat16 (equal to ``fit`` to float tolerance); None: bitwise where it can be.

    Returns:
        One :class:`~featcache.train.FitResult` per member, in order.

    Raises:
        ValueError: Invalid arguments, an unsupported head, or an empty training or dev set.
        FeatcacheError: A training loss became non-finite, an unknown precision, or bitwise asked for where
            only the batched path runs.
    """
    from featcache.train import compute_dtype, resolve_device

    dev = resolve_device(device)
    dtype = compute_dtype(precision, device=dev)
    exact_possible = dev.type == "cpu" and dtype == torch.float32
    if bitwise and not exact_possible:
        raise FeatcacheError(f"the bitwise ensemble runs in fp32 on the CPU only, not {precision} on {dev}")
    bitwise = exact_possible if bitwise is None else bool(bitwise)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    for name, value in (("batch_size", batch_size), ("dev_batch_size", dev_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    threads = head_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    groups: dict[str, list[tuple[int, Member]]] = {}
    for i, m in enumerate(members):
        if len(m.train_rows) == 0 or len(m.dev_rows) == 0:
            raise ValueError(f"member {i} has an empty training or dev set")
        if len(m.train_rows) != len(m.train_labels) or len(m.dev_rows) != len(m.dev_labels):
            raise ValueError(f"member {i}: rows and labels differ in length")
        key = _group_key(m.head)
        _trainable(m.head)
        groups.setdefault(key, []).append((i, m))
    if not members:
        return []

    clock = active_clock()
    t = time.perf_counter()
    with torch_threads(1):
        stacks = []
        for group in groups.values():
            n = min(threads, len(group)) if dev.type == "cpu" else 1  # a GPU: one launch per layer for the group
            for c in range(n):  # contiguous shares of the group, as even as possible
                share = group[c * len(group) // n:(c + 1) * len(group) // n]
                stacks.append(_Stack(share, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                                     dev_batch_size=dev_batch_size, max_epochs=max_epochs, patience=patience,
                                     dtype=dtype, device=dev, bitwise=bitwise, clock=clock))
        # the costliest stacks first, so that the threads finish together
        stacks.sort(key=lambda s: -s.arch.macs * sum(slot.n_train for slot in s.slots))
        if clock is not None:
            stacks[0].lap("setup", t)
        lock, abort = threading.Lock(), threading.Event()
        results: dict[int, FitResult] = {}
        if threads == 1 or len(stacks) == 1:
            for stack in stacks:
                results.update(_train_stack(stack, on_done=on_done, lock=lock, abort=abort))
        else:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="featcache-heads") as pool:
                futures = [pool.submit(_train_stack, s, on_done=on_done, lock=lock, abort=abort) for s in stacks]
                wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f.done() and f.exception() is not None]
                if failed:  # stop the other stacks at their next epoch, then raise the first error
                    abort.set()
                    for f in futures:
                        f.cancel()
                    wait(futures)
                    raise failed[0].exception()  # type: ignore[misc]
                for f in futures:
                    results.update(f.result())
    return [results[i] for i in range(len(members))]
