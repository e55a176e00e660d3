from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import featcache.train.loop as train_loop
from featcache.errors import FeatcacheError
from featcache.heads import MultimodalHead, UnimodalHead
from featcache.train import (
    EarlyStopping,
    FitResult,
    class_weights,
    fit,
    optimizer_from_tensors,
    optimizer_to_tensors,
    predict,
    step_pair,
    step_single,
    tensor_loader,
    weighted_loss,
)

N_CLASSES = 4
DIM = 8


def blobs(n: int, *, seed: int, spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around fixed, well separated class centres (the same for every split)."""
    centres = np.random.default_rng(1234).normal(0.0, 2.5, (N_CLASSES, DIM))
    rng = np.random.default_rng(seed)
    y = rng.choice(N_CLASSES, size=n, p=[0.4, 0.3, 0.2, 0.1])
    x = centres[y] + rng.normal(0.0, spread, (n, DIM))
    return x.astype(np.float32), y.astype(np.int64)


def small_head(seed: int, *, dropout: float = 0.2) -> UnimodalHead:
    torch.manual_seed(seed)
    return UnimodalHead(DIM, N_CLASSES, hidden=(16, 8), dropout=dropout, modality="audio")


def run(
    run_dir: Path | None,
    *,
    seed: int = 0,
    max_epochs: int = 6,
    patience: int | None = 10,
    lr: float = 5e-3,
    grad_accum: int = 2,
    n_train: int = 96,
    batch_size: int = 16,
    callbacks: tuple[Any, ...] = (),
    step: Any = step_single,
    model: UnimodalHead | None = None,
    weighted: bool = True,
    shuffle: bool = True,
    dropout: float = 0.2,
) -> tuple[UnimodalHead, FitResult]:
    """One training run on fixed synthetic data; everything derives from the arguments."""
    x, y = blobs(n_train, seed=1)
    xd, yd = blobs(48, seed=2)
    model = model if model is not None else small_head(seed, dropout=dropout)
    result = fit(
        model,
        train_loader=tensor_loader(x, y, batch_size=batch_size, shuffle=shuffle, seed=99),
        dev_loader=tensor_loader(xd, yd, batch_size=32),
        step=step,
        n_classes=N_CLASSES,
        class_weights=class_weights(y, N_CLASSES) if weighted else None,
        lr=lr,
        max_epochs=max_epochs,
        patience=patience,
        grad_accum=grad_accum,
        seed=seed,
        run_dir=run_dir,
        progress=False,
        callbacks=callbacks,
    )
    return model, result


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, value in a.items():
        assert torch.equal(value, b[k]), k


def log_without_time(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in lines:
        rec.pop("time")
    return lines


# ------------------------------------------------------------------------------------------ weights, loss


def test_class_weights_are_balanced_and_absent_classes_get_zero() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2])
    with pytest.warns(UserWarning, match=r"\[3\]"):
        w = class_weights(labels, 4)
    assert w.dtype == torch.float32
    assert torch.allclose(w, torch.tensor([6 / 9, 2.0, 1.0, 0.0]))
    totals = [float(w[c]) * int((labels == c).sum()) for c in range(3)]
    assert totals == pytest.approx([2.0, 2.0, 2.0])  # each present class weighs n / k in total


def test_class_weights_reject_bad_labels() -> None:
    with pytest.raises(ValueError, match="lie in"):
        class_weights(np.array([0, 4]), 4)
    with pytest.raises(ValueError, match="at least one"):
        class_weights(np.array([], dtype=np.int64), 4)
    with pytest.raises(ValueError, match="integer"):
        class_weights(np.array([0.0, 1.0]), 4)


def test_weighted_loss_matches_a_hand_computation() -> None:
    labels = np.array([0, 0, 0, 1, 2, 2, 3, 1])
    w = class_weights(labels, 4)
    logits = torch.tensor(np.random.default_rng(0).normal(size=(8, 4)), dtype=torch.float32)
    y = torch.as_tensor(labels)
    logp = logits.double().log_softmax(-1).numpy()
    wy = w.double().numpy()[labels]
    expected = -(wy * logp[np.arange(8), labels]).sum() / wy.sum()
    assert float(weighted_loss(w)(logits, y)) == pytest.approx(expected, rel=1e-6)
    unweighted = -logp[np.arange(8), labels].mean()
    assert float(weighted_loss(None)(logits, y)) == pytest.approx(unweighted, rel=1e-6)
    assert expected != pytest.approx(unweighted, rel=1e-3)


# ------------------------------------------------------------------------------------------ early stopping


def test_early_stopping_counts_patience_and_keeps_the_earlier_tie() -> None:
    stopper = EarlyStopping(3)
    decisions = []
    for epoch, value in enumerate([0.5, 0.6, 0.6, 0.55, float("nan")], start=1):
        decisions.append((stopper.step(value, epoch), stopper.should_stop))
    assert decisions == [(True, False), (True, False), (False, False), (False, False), (False, True)]
    assert (stopper.best, stopper.best_epoch) == (0.6, 2)

    lower = EarlyStopping(2, mode="min")
    assert lower.step(1.0, 1) and lower.step(0.5, 2) and not lower.step(0.7, 3)


def test_early_stopping_state_roundtrips_through_json() -> None:
    a = EarlyStopping(4)
    for epoch, value in enumerate([0.2, 0.4, 0.3], start=1):
        a.step(value, epoch)
    b = EarlyStopping(10, mode="min")
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    for epoch, value in enumerate([0.35, 0.39, 0.1], start=4):
        assert a.step(value, epoch) == b.step(value, epoch)
    assert a.should_stop and b.should_stop
    with pytest.raises(ValueError):
        EarlyStopping(0)


# ------------------------------------------------------------------------------------------ the loop


def test_fit_learns_separable_blobs(tmp_path: Path) -> None:
    model, result = run(tmp_path / "r", max_epochs=40, patience=5, grad_accum=1, dropout=0.0)
    assert result.history[0]["dev_acc"] < 0.5  # it starts far from the answer
    assert result.best_dev_acc > 0.9
    xd, yd = blobs(48, seed=2)
    probs, labels = predict(model, tensor_loader(xd, yd, batch_size=10), step_single)
    assert probs.shape == (48, N_CLASSES) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(labels, yd)
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(result.best_dev_acc)
    lines = [json.loads(line) for line in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines()]
    assert len(lines) == result.epochs_run
    assert set(lines[0]) >= {
        "epoch",
        "train_loss",
        "dev_loss",
        "dev_acc",
        "dev_uar",
        "time",
        "best_epoch",
        "best_dev_acc",
    }
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]


def test_early_stopping_stops_after_patience_and_restores_the_best_weights(tmp_path: Path) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    holder: dict[str, UnimodalHead] = {"model": small_head(0)}

    def snap(record: dict[str, Any]) -> None:
        snapshots[record["epoch"]] = params(holder["model"])

    model, result = run(tmp_path / "r", model=holder["model"], patience=3, max_epochs=60, lr=5e-3, callbacks=(snap,))
    accs = [rec["dev_acc"] for rec in result.history]
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 3 < 60
    assert result.best_epoch == int(np.argmax(accs)) + 1  # the first epoch reaching the maximum
    assert result.best_epoch > 1
    assert result.best_dev_acc == max(accs)
    assert [rec["improved"] for rec in result.history[result.best_epoch :]] == [False] * 3
    assert_same_params(params(model), snapshots[result.best_epoch])
    assert any(not torch.equal(snapshots[result.epochs_run][k], v) for k, v in params(model).items())
    best_file = load_file(str(tmp_path / "r" / "best.safetensors"))
    assert_same_params(best_file, snapshots[result.best_epoch])


def test_same_seed_gives_bitwise_identical_weights() -> None:
    a, ra = run(None, seed=5)
    b, rb = run(None, seed=5)
    assert_same_params(params(a), params(b))
    assert ra.history[-1]["train_loss"] == rb.history[-1]["train_loss"]
    c, _ = run(None, seed=6)
    assert any(not torch.equal(v, params(c)[k]) for k, v in params(a).items())


def test_gradient_accumulation_matches_a_larger_batch() -> None:
    a, _ = run(None, grad_accum=2, batch_size=8, weighted=False, shuffle=False, dropout=0.0, max_epochs=3)
    b, _ = run(None, grad_accum=1, batch_size=16, weighted=False, shuffle=False, dropout=0.0, max_epochs=3)
    for k, v in params(a).items():
        assert torch.allclose(v, params(b)[k], atol=1e-5), k


class Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_identical_results(tmp_path: Path) -> None:
    ref_model, ref = run(tmp_path / "ref", max_epochs=7)

    def stop_after_3(record: dict[str, Any]) -> None:
        if record["epoch"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "cut", max_epochs=7, callbacks=(stop_after_3,))
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["epoch"] == 3
    seen: list[int] = []
    model, result = run(tmp_path / "cut", max_epochs=7, seed=0, callbacks=(lambda r: seen.append(r["epoch"]),))
    assert seen == [4, 5, 6, 7]
    assert_same_params(params(model), params(ref_model))
    assert_same_params(
        load_file(str(tmp_path / "cut" / "best.safetensors")), load_file(str(tmp_path / "ref" / "best.safetensors"))
    )
    assert_same_params(
        load_file(str(tmp_path / "cut" / "last.safetensors")), load_file(str(tmp_path / "ref" / "last.safetensors"))
    )
    assert log_without_time(tmp_path / "cut" / "train_log.jsonl") == log_without_time(
        tmp_path / "ref" / "train_log.jsonl"
    )
    assert (result.best_epoch, result.best_dev_acc, result.epochs_run) == (
        ref.best_epoch,
        ref.best_dev_acc,
        ref.epochs_run,
    )

    # A finished run returns its result at once, without training, holding the best weights.
    again: list[int] = []
    fresh, done = run(tmp_path / "cut", max_epochs=7, callbacks=(lambda r: again.append(r["epoch"]),))
    assert again == []
    assert done.history == result.history and done.best_epoch == result.best_epoch
    assert_same_params(params(fresh), params(ref_model))


class Crash(Exception):
    pass


def test_a_crash_at_any_file_operation_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw: dict[str, Any] = {"max_epochs": 2, "n_train": 32, "grad_accum": 1}
    ref_model, ref = run(tmp_path / "ref", **kw)
    ref_log = log_without_time(tmp_path / "ref" / "train_log.jsonl")

    real_replace, real_append = os.replace, train_loop._append_log
    counter = {"left": -1, "ops": 0}

    def tick() -> None:
        counter["ops"] += 1
        counter["left"] -= 1
        if counter["left"] == 0:
            raise Crash

    def replace(src: Any, dst: Any) -> None:
        tick()
        real_replace(src, dst)

    def append(path: Path, record: Any) -> None:
        real_append(path, record)
        tick()  # crash after the line is written

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(train_loop, "_append_log", append)
    run(tmp_path / "count", **kw)
    n_ops = counter["ops"]
    assert n_ops >= 18
    for k in range(1, n_ops + 1):
        run_dir = tmp_path / f"crash{k}"
        counter["left"] = k
        with pytest.raises(Crash):
            run(run_dir, **kw)
        counter["left"] = -1
        model, result = run(run_dir, **kw)
        assert_same_params(params(model), params(ref_model))
        assert log_without_time(run_dir / "train_log.jsonl") == ref_log, k
        assert result.history[-1]["dev_acc"] == ref.history[-1]["dev_acc"]
        assert not list(run_dir.glob("*.next")) and not list(run_dir.glob(".*tmp*"))


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
import test_train
from featcache.train import step_single

def slow_step(model, batch):
    time.sleep(0.05)
    return step_single(model, batch)

test_train.run(test_train.Path(sys.argv[2]), max_epochs=6, step=slow_step)
"""


def test_a_killed_process_resumes_to_the_same_result(tmp_path: Path) -> None:
    ref_model, _ = run(tmp_path / "ref", max_epochs=6)
    run_dir = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(Path(__file__).parent), str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state = run_dir / "state.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not json.loads(state.read_text())["finished"]
    model, result = run(run_dir, max_epochs=6)
    assert result.epochs_run == 6
    assert_same_params(params(model), params(ref_model))
    assert log_without_time(run_dir / "train_log.jsonl") == log_without_time(tmp_path / "ref" / "train_log.jsonl")


def test_reusing_a_run_dir_with_other_settings_is_refused(tmp_path: Path) -> None:
    run(tmp_path / "r", max_epochs=2)
    with pytest.raises(FeatcacheError) as exc:
        run(tmp_path / "r", max_epochs=2, lr=1e-3)
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path / "r" / "state.json") in msg and "lr" in msg


def test_corrupt_checkpoint_is_reported_in_one_line(tmp_path: Path) -> None:
    def stop(record: dict[str, Any]) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "r", max_epochs=3, callbacks=(stop,))
    (tmp_path / "r" / "last.safetensors").write_bytes(b"broken")
    with pytest.raises(FeatcacheError) as exc:
        run(tmp_path / "r", max_epochs=3)
    assert "\n" not in str(exc.value) and "last.safetensors" in str(exc.value)


def test_optimizer_state_roundtrips_without_pickle() -> None:
    torch.manual_seed(0)
    model = small_head(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        model(torch.randn(4, DIM)).sum().backward()
        opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    meta = json.loads(json.dumps(meta))
    other = torch.optim.AdamW(small_head(1).parameters(), lr=1.0)
    optimizer_from_tensors(other, tensors, meta)
    a, b = opt.state_dict(), other.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for name, value in a["state"][idx].items():
            assert torch.equal(value, b["state"][idx][name])


def test_fit_trains_a_fusion_head_on_pairs_of_vectors() -> None:
    x, y = blobs(128, seed=1)
    xd, yd = blobs(48, seed=2)
    rng = np.random.default_rng(0)
    audio, audio_dev = rng.normal(size=(128, 6)).astype(np.float32), rng.normal(size=(48, 6)).astype(np.float32)
    torch.manual_seed(0)
    head = MultimodalHead(DIM, 6, N_CLASSES, hidden=(16, 8), fusion_hidden=8, modality_dropout=0.2)
    result = fit(
        head,
        train_loader=tensor_loader(x, audio, y, batch_size=16, shuffle=True),
        dev_loader=tensor_loader(xd, audio_dev, yd, batch_size=16),
        step=step_pair,
        n_classes=N_CLASSES,
        class_weights=class_weights(y, N_CLASSES),
        lr=1e-2,
        max_epochs=25,
        patience=5,
        seed=0,
        run_dir=None,
        progress=False,
    )
    assert result.best_dev_acc > 0.9


def test_fit_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        fit(
            small_head(0),
            train_loader=[],
            dev_loader=[],
            step=step_single,
            n_classes=N_CLASSES,
            class_weights=None,
            lr=1e-3,
            max_epochs=1,
            seed=0,
            amp=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="shape"):
        fit(
            small_head(0),
            train_loader=[],
            dev_loader=[],
            step=step_single,
            n_classes=N_CLASSES,
            class_weights=torch.ones(3),
            lr=1e-3,
            max_epochs=1,
            seed=0,
            progress=False,
        )


def test_a_second_fit_of_the_same_run_waits_for_the_first(tmp_path: Path) -> None:
    import threading

    from filelock import FileLock

    out: dict[str, FitResult] = {}
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    lock = FileLock(str(run_dir / "fit.lock"))
    with lock:
        worker = threading.Thread(target=lambda: out.setdefault("r", run(run_dir, max_epochs=2)[1]))
        worker.start()
        worker.join(timeout=1.0)
        assert not (run_dir / "state.json").exists()  # blocked on the lock
    worker.join()
    assert out["r"].epochs_run == 2


def test_progress_bars_and_log_file_outside_the_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = blobs(32, seed=1)
    log = tmp_path / "logs" / "fit.jsonl"
    fit(
        small_head(0),
        train_loader=tensor_loader(x, y, batch_size=8, shuffle=True),
        dev_loader=tensor_loader(x, y, batch_size=8),
        step=step_single,
        n_classes=N_CLASSES,
        class_weights=None,
        lr=1e-3,
        max_epochs=2,
        seed=0,
        progress=True,
        log_file=log,
    )
    assert "dev_acc" in capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]


def test_tensor_batches_cover_every_sample_once_per_epoch_in_a_seeded_order() -> None:
    x = np.arange(23, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(23)
    loader = tensor_loader(x, y, batch_size=5, shuffle=True, seed=7)
    assert len(loader) == 5 and loader.n_samples == 23
    epochs = [[b for b in loader] for _ in range(2)]
    for batches in epochs:
        assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
        seen = torch.cat([b[1] for b in batches])
        assert sorted(seen.tolist()) == list(range(23))
        for xb, yb in batches:  # rows stay aligned across arrays
            assert torch.equal(xb[:, 0], yb.float())
    assert torch.cat([b[1] for b in epochs[0]]).tolist() != torch.cat([b[1] for b in epochs[1]]).tolist()
    again = tensor_loader(x, y, batch_size=5, shuffle=True, seed=7)
    assert torch.equal(torch.cat([b[1] for b in again]), torch.cat([b[1] for b in epochs[0]]))
    plain = tensor_loader(x, y, batch_size=10)
    assert torch.cat([b[1] for b in plain]).tolist() == list(range(23)) and plain.generator is None


def test_tensor_loader_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        tensor_loader(np.zeros((4, 2)), np.zeros(3), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        tensor_loader(np.zeros((4, 2)), batch_size=0)
