"""Heads trained together equal heads trained one at a time (featcache.train.fit), member by member."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from featcache.ensemble import THREADS_ENV, Member, fit_alone, fit_ensemble, fit_heads, head_threads, torch_threads
from featcache.errors import FeatcacheError
from featcache.heads import build_head
from featcache.paper import MODALITY_DROPOUT, TrainSettings
from featcache.train import FitResult, class_weights, fit, step_pair, step_single, tensor_loader

N_CLASSES, T_DIM, A_DIM, N_ROWS = 4, 12, 10, 400
LR, WEIGHT_DECAY, BATCH, EPOCHS, PATIENCE = 5e-3, 0.01, 16, 9, 3
#: Tolerances of the comparison with the one-at-a-time trainer. On CPU with one intra-op thread the two
#: are bitwise equal (same kernels, same random draws); the tolerance only allows another BLAS to round
#: differently.
ATOL, RTOL = 1e-6, 1e-5
#: (fold-like split, seed): training sets of different sizes (different batch counts, partial last
#: batches of different sizes), dev sets of different sizes.
SPLITS = ((0, 0), (1, 1), (2, 2), (1, 0))
KINDS = {
    "text": ("text", {}),
    "audio": ("audio", {}),
    "multimodal": ("multimodal", {}),
    "mdrop": ("multimodal", {"modality_dropout": MODALITY_DROPOUT}),
    "gated": ("gated", {}),
    "score": ("score", {}),
}


def _sources() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Text and audio vectors with a class signal and noise (nothing separates the classes perfectly)."""
    rng = np.random.default_rng(7)
    y = rng.choice(N_CLASSES, size=N_ROWS, p=[0.35, 0.3, 0.2, 0.15])
    text = rng.normal(0, 1.0, (N_CLASSES, T_DIM))[y] + rng.normal(0, 1.6, (N_ROWS, T_DIM))
    audio = rng.normal(0, 0.8, (N_CLASSES, A_DIM))[y] + rng.normal(0, 1.6, (N_ROWS, A_DIM))
    return torch.tensor(text, dtype=torch.float32), torch.tensor(audio, dtype=torch.float32), y.astype(np.int64)


TEXT, AUDIO, LABELS = _sources()


def _rows(split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, dev, test) rows of one split: a shuffled subset of a size that depends on the split."""
    order = np.random.default_rng(100 + split).permutation(N_ROWS)
    n_train, n_dev = (150, 181, 203)[split], (31, 26, 40)[split]
    return order[:n_train], order[n_train:n_train + n_dev], order[n_train + n_dev:]


def _uses(kind: str) -> tuple[str, ...]:
    return {"text": ("text",), "audio": ("audio",)}.get(kind, ("text", "audio"))


def _build(kind: str, seed: int) -> nn.Module:
    """The head as study._train_one builds it: after torch.manual_seed(seed)."""
    builder, options = KINDS[kind]
    if builder == "score":  # frozen unimodal heads of their own (trained or not: the equivalence is the same)
        torch.manual_seed(1000 + seed)
        options = {"text_head": build_head("text", text_dim=T_DIM, audio_dim=None, n_classes=N_CLASSES),
                   "audio_head": build_head("audio", text_dim=None, audio_dim=A_DIM, n_classes=N_CLASSES)}
    torch.manual_seed(seed)
    return build_head(builder, text_dim=T_DIM, audio_dim=A_DIM, n_classes=N_CLASSES, **options)


def _inputs(kind: str) -> tuple[torch.Tensor, ...]:
    return tuple({"text": TEXT, "audio": AUDIO}[m] for m in _uses(kind))


def _member(kind: str, split: int, seed: int) -> Member:
    train, dev, _ = _rows(split)
    return Member(head=_build(kind, seed), inputs=_inputs(kind), train_rows=train, train_labels=LABELS[train],
                  dev_rows=dev, dev_labels=LABELS[dev], class_weights=class_weights(LABELS[train], N_CLASSES),
                  seed=seed)


def _one_at_a_time(kind: str, split: int, seed: int) -> tuple[nn.Module, FitResult]:
    """The reference: featcache.train.fit on one head, as study._train_one calls it."""
    train, dev, _ = _rows(split)
    head = _build(kind, seed)
    x_tr = [x[train].numpy() for x in _inputs(kind)]
    x_dev = [x[dev].numpy() for x in _inputs(kind)]
    with torch_threads(1):
        result = fit(
            head,
            train_loader=tensor_loader(*x_tr, LABELS[train], batch_size=BATCH, shuffle=True, seed=seed),
            dev_loader=tensor_loader(*x_dev, LABELS[dev], batch_size=256),
            step=step_single if len(x_tr) == 1 else step_pair,
            n_classes=N_CLASSES,
            class_weights=class_weights(LABELS[train], N_CLASSES),
            lr=LR,
            max_epochs=EPOCHS,
            patience=PATIENCE,
            seed=seed,
            weight_decay=WEIGHT_DECAY,
            progress=False,
        )
    return head, result


def _probs(head: nn.Module, kind: str, split: int) -> torch.Tensor:
    _, _, test = _rows(split)
    with torch.no_grad():
        return torch.softmax(head.eval()(*(x[test] for x in _inputs(kind))), -1)


def _assert_same(kind: str, split: int, seed: int, head: nn.Module, result: FitResult,
                 ref_head: nn.Module, ref: FitResult) -> None:
    where = f"{kind}, split {split}, seed {seed}"
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (
        ref.best_epoch, ref.epochs_run, ref.stopped_early), where
    assert result.best_dev_acc == ref.best_dev_acc, where
    assert [r["dev_acc"] for r in result.history] == [r["dev_acc"] for r in ref.history], where
    np.testing.assert_allclose([r["train_loss"] for r in result.history], [r["train_loss"] for r in ref.history],
                               rtol=RTOL, atol=ATOL, err_msg=where)
    state, ref_state = head.state_dict(), ref_head.state_dict()
    assert state.keys() == ref_state.keys(), where
    for k, v in ref_state.items():
        torch.testing.assert_close(state[k], v, rtol=RTOL, atol=ATOL, msg=f"{where}: {k}")
    probs, ref_probs = _probs(head, kind, split), _probs(ref_head, kind, split)
    torch.testing.assert_close(probs, ref_probs, rtol=RTOL, atol=ATOL, msg=where)
    assert torch.equal(probs.argmax(-1), ref_probs.argmax(-1)), where


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_member_equals_its_head_trained_alone(kind: str) -> None:
    members = [_member(kind, split, seed) for split, seed in SPLITS]
    results = fit_ensemble(members, lr=LR, max_epochs=EPOCHS, patience=PATIENCE, weight_decay=WEIGHT_DECAY,
                           batch_size=BATCH, threads=1)
    stopped = set()
    for (split, seed), member, result in zip(SPLITS, members, results):
        ref_head, ref = _one_at_a_time(kind, split, seed)
        _assert_same(kind, split, seed, member.head, result, ref_head, ref)
        stopped.add(result.epochs_run)
    if kind != "score":
        assert len(stopped) > 1, "the members should stop at different epochs"


def test_every_kind_in_one_call_and_any_thread_count_gives_the_same_heads() -> None:
    jobs = [(kind, split, seed) for kind in KINDS for split, seed in SPLITS[:2]]
    outcomes = []
    for threads in (1, 3):
        members = [_member(*job) for job in jobs]
        results = fit_ensemble(members, lr=LR, max_epochs=EPOCHS, patience=PATIENCE, weight_decay=WEIGHT_DECAY,
                               batch_size=BATCH, threads=threads)
        outcomes.append(([m.head.state_dict() for m in members], [r.history for r in results]))
    (one, one_hist), (three, three_hist) = outcomes
    assert [[r["dev_acc"] for r in h] for h in one_hist] == [[r["dev_acc"] for r in h] for h in three_hist]
    for a, b in zip(one, three):
        assert all(torch.equal(a[k], b[k]) for k in a)
    for i in (0, 4, 6, 8):  # text, multimodal and mdrop in one stack, gated: as trained alone
        kind, split, seed = jobs[i]
        ref_head, ref = _one_at_a_time(kind, split, seed)
        head = _build(kind, seed)
        head.load_state_dict(three[i])
        assert [r["dev_acc"] for r in three_hist[i]] == [r["dev_acc"] for r in ref.history]
        for k, v in ref_head.state_dict().items():
            torch.testing.assert_close(three[i][k], v, rtol=RTOL, atol=ATOL)


def test_multimodal_and_mdrop_share_one_stack_yet_draw_their_own_modality_dropout() -> None:
    members = [_member("multimodal", 0, 0), _member("mdrop", 0, 0)]
    results = fit_ensemble(members, lr=LR, max_epochs=3, patience=None, weight_decay=WEIGHT_DECAY,
                           batch_size=BATCH, threads=1)
    assert [r.epochs_run for r in results] == [3, 3]
    a, b = (m.head.state_dict() for m in members)
    assert not torch.equal(a["text_body.layers.0.weight"], b["text_body.layers.0.weight"])  # same init, other draws


def test_the_thread_count_is_restored_and_single_threaded_inside() -> None:
    before = torch.get_num_threads()
    seen = []

    def note(index: int, result: FitResult) -> None:
        seen.append((index, torch.get_num_threads()))

    members = [_member("text", 0, 0), _member("text", 1, 1)]
    fit_ensemble(members, lr=LR, max_epochs=2, patience=None, batch_size=BATCH, threads=2, on_done=note)
    assert torch.get_num_threads() == before
    assert sorted(i for i, _ in seen) == [0, 1] and {n for _, n in seen} == {1}


def test_head_threads_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV, "3")
    assert head_threads() == 3
    monkeypatch.delenv(THREADS_ENV)
    assert 1 <= head_threads() <= 2
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(FeatcacheError, match=THREADS_ENV):
            head_threads()


def test_bad_requests_are_refused() -> None:
    late = build_head("late", text_dim=T_DIM, audio_dim=A_DIM, n_classes=N_CLASSES)
    train, dev, _ = _rows(0)
    member = Member(head=late, inputs=(TEXT, AUDIO), train_rows=train, train_labels=LABELS[train], dev_rows=dev,
                    dev_labels=LABELS[dev], class_weights=None, seed=0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit_ensemble([member], lr=LR, max_epochs=2, batch_size=BATCH)
    empty = _member("text", 0, 0)
    empty.dev_rows, empty.dev_labels = empty.dev_rows[:0], empty.dev_labels[:0]
    with pytest.raises(ValueError, match="empty"):
        fit_ensemble([empty], lr=LR, max_epochs=2, batch_size=BATCH)
    with pytest.raises(ValueError, match="threads"):
        fit_ensemble([_member("text", 0, 0)], lr=LR, max_epochs=2, batch_size=BATCH, threads=0)
    assert fit_ensemble([], lr=LR, max_epochs=2, batch_size=BATCH) == []


def test_a_non_finite_loss_stops_with_one_line() -> None:
    member = _member("text", 0, 0)
    bad = TEXT.clone()
    bad[member.train_rows[3]] = float("nan")
    member.inputs = (bad,)
    with pytest.raises(FeatcacheError, match="training loss became nan"):
        fit_ensemble([member], lr=LR, max_epochs=2, batch_size=BATCH, threads=1)


def test_threads_option_sets_head_threads_and_torch_threads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In a fresh process: torch's thread pool is process state that other tests must not inherit."""
    import os
    import subprocess
    import sys

    code = ("import torch; from click.testing import CliRunner; from featcache.cli import cli; "
            "from featcache.ensemble import head_threads; "
            f"r = CliRunner().invoke(cli, ['--threads', '3', 'cache', 'ls', '--cache-dir', {str(tmp_path / 'store')!r}]); "
            "print(r.exit_code, head_threads(), torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.stdout.split() == ["0", "3", "3"], done.stdout + done.stderr
    bad = subprocess.run([sys.executable, "-m", "featcache.cli", "cache", "ls", "--cache-dir", str(tmp_path / "s")],
                         capture_output=True, text=True, env={**env, THREADS_ENV: "0"}, check=False)
    assert bad.returncode == 2 and "FEATCACHE_THREADS" in bad.stderr and bad.stderr.count("Error") == 1


# ------------------------------------------------------------------------------------------------ precision, device

#: Tolerance of the batched path (CUDA's and bfloat16's: every layer one baddbmm, one loss over the members)
#: against the one-at-a-time trainer in the same precision, after EPOCHS epochs: test probabilities within
#: PROB_ATOL, the same best epoch and epochs run. Products of other kernels round differently in the last bits
#: and training carries those differences on (measured: at most 2.3e-2 in float32, 2.7e-4 in bfloat16).
PROB_ATOL = 0.05


def _alone(kind: str, split: int, seed: int, precision: str) -> tuple[nn.Module, FitResult]:
    train, dev, _ = _rows(split)
    head = _build(kind, seed)
    settings = TrainSettings(batch_size=BATCH, lr=LR, max_epochs=EPOCHS, patience=PATIENCE, weight_decay=WEIGHT_DECAY)
    with torch_threads(1):
        result = fit_alone(head, [x[train].numpy() for x in _inputs(kind)], LABELS[train],
                           [x[dev].numpy() for x in _inputs(kind)], LABELS[dev], settings=settings, seed=seed,
                           n_classes=N_CLASSES, device="cpu", precision=precision)
    return head, result


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_batched_path_equals_one_at_a_time_in_both_precisions(precision: str) -> None:
    """The path a GPU runs (bitwise=False), here with the device argument on the CPU, in float32 and bfloat16."""
    jobs = [(kind, split, seed) for kind in KINDS for split, seed in SPLITS[:3]]
    members = [_member(*job) for job in jobs]
    with torch_threads(1):
        results = fit_ensemble(members, lr=LR, max_epochs=EPOCHS, patience=PATIENCE, weight_decay=WEIGHT_DECAY,
                               batch_size=BATCH, threads=2, precision=precision, device=torch.device("cpu"),
                               bitwise=False)
    for (kind, split, seed), member, result in zip(jobs, members, results):
        where = f"{precision}, {kind}, split {split}, seed {seed}"
        ref_head, ref = _alone(kind, split, seed, precision)
        assert (result.best_epoch, result.epochs_run) == (ref.best_epoch, ref.epochs_run), where
        assert all(p.dtype == torch.float32 for p in member.head.parameters()), where  # float32 master weights
        torch.testing.assert_close(_probs(member.head, kind, split), _probs(ref_head, kind, split), rtol=0,
                                   atol=PROB_ATOL, msg=where)


def test_bf16_trains_other_weights_than_fp32_and_unknown_or_impossible_requests_are_refused() -> None:
    heads = {}
    for precision in ("fp32", "bf16"):
        member = _member("audio", 0, 0)
        fit_ensemble([member], lr=LR, max_epochs=2, patience=None, batch_size=BATCH, threads=1, precision=precision)
        heads[precision] = member.head.state_dict()
    assert all(v.dtype == torch.float32 for v in heads["bf16"].values())
    assert not torch.equal(heads["fp32"]["body.layers.0.weight"], heads["bf16"]["body.layers.0.weight"])
    with pytest.raises(FeatcacheError, match="bitwise ensemble runs in fp32 on the CPU only"):
        fit_ensemble([_member("text", 0, 0)], lr=LR, max_epochs=1, batch_size=BATCH, precision="bf16", bitwise=True)
    with pytest.raises(FeatcacheError, match=r"precision \(--precision 'fp16'\): use fp32 or bf16"):
        fit_ensemble([_member("text", 0, 0)], lr=LR, max_epochs=1, batch_size=BATCH, precision="fp16")


def test_fit_heads_stacks_on_every_device_and_passes_its_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """No device keeps heads from the ensemble: fit_heads hands every stackable head to fit_ensemble with the
    device and precision it was given (the layer-weighted heads alone train one at a time)."""
    from featcache.ensemble import fit as fit_module

    seen: dict[str, object] = {}

    def fake(members, **kw):  # type: ignore[no-untyped-def]
        seen.update(kw, n=len(members))
        return [fit_module.FitResult(best_epoch=1, best_dev_acc=0.5, epochs_run=1, history=[], run_dir=None,
                                     stopped_early=False) for _ in members]

    monkeypatch.setattr(fit_module, "fit_ensemble", fake)
    settings = TrainSettings(batch_size=BATCH, lr=LR, max_epochs=1)
    members = [_member(kind, 0, 0) for kind in KINDS]
    fit_heads(members, settings=settings, device="cpu", precision="bf16")
    assert seen["n"] == len(KINDS) and seen["device"] == "cpu" and seen["precision"] == "bf16"


def test_bf16_on_a_cpu_without_native_bfloat16_is_warned_about_once(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture,
                                                                     tmp_path: Path) -> None:
    """Without AVX512-BF16 or AMX torch emulates bfloat16 products (slower than float32): one warning says so;
    fp32, and a CPU that has them, say nothing."""
    import logging

    from featcache.train import precision as prec

    prec._warn_emulated_bf16.cache_clear()
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert prec.native_cpu_bf16(cpuinfo=info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert prec.native_cpu_bf16(cpuinfo=info) is True
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert prec.native_cpu_bf16(cpuinfo=info) is True
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # not x86: it cannot say
    assert prec.native_cpu_bf16(cpuinfo=info) is None
    assert prec.native_cpu_bf16(cpuinfo=tmp_path / "missing") is None
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="featcache"):
        monkeypatch.setattr(prec, "native_cpu_bf16", lambda: True)
        assert prec.compute_dtype("bf16", device=cpu) == torch.bfloat16
        monkeypatch.setattr(prec, "native_cpu_bf16", lambda: False)
        assert prec.compute_dtype("fp32", device=cpu) == torch.float32
        assert not caplog.records
        for _ in range(3):
            assert prec.compute_dtype("bf16", device=cpu) == torch.bfloat16
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "neither AVX512-BF16 nor AMX" in said[0] and "use fp32" in said[0], said
    prec._warn_emulated_bf16.cache_clear()


@pytest.mark.parametrize("kind", ["audio", "mdrop"])
@pytest.mark.parametrize("one_draw", [True, False])
def test_dropout_masks_drawn_in_one_draw_or_by_bernoulli_give_the_heads_trained_alone(
        monkeypatch: pytest.MonkeyPatch, one_draw: bool, kind: str) -> None:
    """A stack draws each member's dropout masks of a step as one float64 draw, which this torch's
    ``bernoulli_`` equals; where a torch draws otherwise, the stack falls back to ``bernoulli_`` itself.
    Both give the one-at-a-time heads' first epochs (audio heads: dropout after both hidden layers; mdrop:
    modality dropout drawn before them)."""
    from featcache.ensemble import stack

    assert stack._uniforms_match_bernoulli() is True  # this torch: the fast draw is the one that runs
    monkeypatch.setattr(stack, "_uniforms_match_bernoulli", lambda: one_draw)
    split, seed = SPLITS[1]
    member = _member(kind, split, seed)
    [result] = fit_ensemble([member], lr=LR, max_epochs=3, patience=None, weight_decay=WEIGHT_DECAY,
                            batch_size=BATCH, threads=1)
    _, ref = _one_at_a_time(kind, split, seed)
    assert ref.epochs_run >= 3
    assert [r["dev_acc"] for r in result.history] == [r["dev_acc"] for r in ref.history[:3]]
    np.testing.assert_allclose([r["train_loss"] for r in result.history], [r["train_loss"] for r in ref.history[:3]],
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_step_clock_times_every_phase_of_both_paths_and_changes_no_result(precision: str) -> None:
    """Inside step_clock() every step's phases are timed (the bitwise path has no weight copies or gradient
    widening; bfloat16 has both), the thread-seconds are bounded by the wall time of the threads, one optimiser
    step is counted per stack and batch, and the heads are those trained without the clock, bit for bit."""
    from featcache.ensemble import PHASES, step_clock

    jobs = [(kind, split, seed) for kind in ("audio", "mdrop") for split, seed in SPLITS[:2]]

    def train(clocked: bool) -> tuple[list[dict[str, torch.Tensor]], float]:
        members = [_member(*job) for job in jobs]
        t = time.perf_counter()
        fit_ensemble(members, lr=LR, max_epochs=3, patience=None, batch_size=BATCH, threads=2, precision=precision)
        return [m.head.state_dict() for m in members], time.perf_counter() - t

    plain, _ = train(False)
    with step_clock() as clock:
        clocked, wall = train(True)
    assert tuple(clock.seconds) == PHASES
    low = precision != "fp32"
    for phase, seconds in clock.seconds.items():
        assert (seconds > 0) == (low or phase not in ("weights", "gradients")), (phase, seconds)
    assert clock.total() <= 2 * wall  # two threads at most
    assert abs(sum(clock.shares().values()) - 1) < 1e-9
    # a stack per kind and thread (2 members of a kind: one each), 3 epochs of ceil(n_train / BATCH) steps
    n_train = [len(_rows(split)[0]) for _, split, _ in jobs]
    assert clock.steps == 3 * sum(-(-n // BATCH) for n in n_train)
    for a, b in zip(plain, clocked):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with step_clock() as idle:
        pass
    assert idle.total() == 0 and idle.steps == 0
