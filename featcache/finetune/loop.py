"""Fine-tuning one run: the end-to-end model (:class:`EndToEnd`) and :func:`finetune`, which checks its
arguments, trains (or resumes) the run under its lock and finishes it (encoder weights, head, ``result.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from featcache.backbones.encoders import AudioEncoder, EncoderOptions, TextEncoder, load_encoder
from featcache.backbones.resolve import resolve_backbone
from featcache.cache import FeatureStore
from featcache.cache.atomic import atomic_write, atomic_write_json, atomic_write_text, write_errors_translated
from featcache.cache.integrity import read_json_object, sha256_file
from featcache.cache.locks import held_lock
from featcache.data import Corpus
from featcache.errors import FeatcacheError
from featcache.finetune.inputs import _loader
from featcache.finetune.runs import FinetuneRun, run_config, run_id
from featcache.folds import Fold, make_fold
from featcache.train import resolve_device
from featcache.paper import PAPER_MODELS, TrainSettings, uses
from featcache.presets import Preset

log = logging.getLogger("featcache.finetune")

EVAL_BATCH_FACTOR = 4
"""Dev batches are this many times larger than training batches (no gradients to keep)."""


class EndToEnd(nn.Module):
    """Encoder(s) + head: the paper's text, audio or multimodal classifier.

    Args:
        encoders: ``{"text": TextEncoder, "audio": AudioEncoder}`` (the ones the modality needs).
        head: A head from :mod:`featcache.heads` (unimodal: one vector; multimodal: text, audio).
    """

    def __init__(self, encoders: dict[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = head

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        vecs = [self.encoders[m](**inputs[m]) for m in ("text", "audio") if m in self.encoders]
        return self.head(*vecs)


def _step(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return model(batch["inputs"]), batch["label"]


def _save_state(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _width(resolved: Any) -> int:
    """A backbone's hidden size from its ``config.json`` (0 when it does not say)."""
    cfg, _ = read_json_object(Path(resolved.path) / "config.json")
    return int(cfg.get("hidden_size") or cfg.get("d_model") or 0)


def finetune(
    corpus: Corpus,
    store: FeatureStore,
    *,
    preset: Preset,
    modality: str,
    fold: int,
    seed: int = 0,
    settings: TrainSettings | None = None,
    options: EncoderOptions | None = None,
    fold_options: dict[str, Any] | None = None,
    device: str = "cpu",
    precision: str = "auto",
    num_workers: int = 0,
    progress: bool = True,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> FinetuneRun:
    """Fine-tune one model on one fold (or resume it, or return it when finished).

    Args:
        corpus: The corpus.
        store: The store (the run is written under ``runs/``).
        preset: Backbones and default hyperparameters.
        modality: ``text``, ``audio`` or ``multimodal`` (both backbones fine-tuned jointly).
        fold: Fold index.
        seed: Seed of initialisation, shuffling, batching and dropout.
        settings: Hyperparameters (default: the preset's for the modality).
        options: Encoder options (default: the preset's).
        fold_options: Dev-split options (``dev``, ``dev_fraction``, ``seed``).
        device: ``cpu``, ``cuda`` or ``auto``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (:func:`featcache.train.resolve_precision`);
            part of the run's identity once resolved.
        num_workers: DataLoader workers for decoding and cutting audio (a text-only model tokenises its
            transcripts once, in this process, and uses none).
        progress: Progress bars.
        callbacks: Called with each epoch's log record once the epoch is committed (:func:`featcache.train.fit`).

    Returns:
        The finished run.

    Raises:
        FeatcacheError: Unknown modality, missing modality in the corpus, a fold the corpus lacks, bad
            settings, an unknown precision, or a device that is not there (all checked before the run
            folder is made).
    """
    from featcache.train import has_resume_state, remove_resume_state, resolve_precision

    if modality not in PAPER_MODELS:
        raise FeatcacheError(f"modality (--modality {modality!r}): use text, audio or multimodal")
    for m in uses(modality):
        if m not in corpus.modalities:
            raise FeatcacheError(f"{corpus.name}: the corpus has no {m}; fine-tune another --modality")
    settings = settings or preset.train(modality)
    options = options or preset.encoder_options()
    fold_options = dict(fold_options or {})
    f = make_fold(corpus, fold, **fold_options)  # checks the fold and its options before anything is written
    dev = resolve_device(device)
    resolved = {m: resolve_backbone(preset.backbone(m), models_dir=store.models_dir) for m in uses(modality)}
    plugins = [r.name for r in resolved.values() if r.plugin is not None]
    if plugins:
        raise FeatcacheError(f"backbone {plugins[0]!r} is a plugin encoder, used frozen; fine-tuning needs a "
                             "transformers checkpoint")
    width = max(_width(r) for r in resolved.values()) if dev.type == "cuda" and precision == "auto" else 0
    precision = resolve_precision(precision, device=dev, width=width)
    cfg = run_config(corpus, preset=preset, modality=modality, fold=fold, seed=seed, options=options,
                     settings=settings, fold_options=fold_options, precision=precision)
    run_dir = store.run_dir(run_id(cfg))
    run = FinetuneRun(run_dir, cfg)
    if run.finished and not has_resume_state(run_dir) and run.damage() is None:
        return run  # nothing to write (a read-only store works)
    with write_errors_translated(run_dir):  # a read-only store: one line
        run_dir.mkdir(parents=True, exist_ok=True)
    with held_lock(store.run_lock(run.run_id)):  # refuses a lock file replaced by a symbolic link
        if run.finished:
            problem = run.damage()
            if problem is None:  # killed after result.json, before its checkpoints were gone
                remove_resume_state(run_dir)
                return run
            if has_resume_state(run_dir):
                log.warning("%s: damaged fine-tuning run (%s); finishing it again from its checkpoints", *problem)
            else:
                log.warning("%s: damaged fine-tuning run (%s); its checkpoints went when it finished, so it is "
                            "trained again from scratch", *problem)
            with write_errors_translated(run_dir / "result.json"):
                (run_dir / "result.json").unlink()
        atomic_write_text(run_dir / "config.json", json.dumps(cfg, indent=2, sort_keys=True))
        _train(corpus, run, fold=f, resolved=resolved, settings=settings, options=options, device=dev,
               precision=precision, num_workers=num_workers, progress=progress, callbacks=callbacks)
        remove_resume_state(run_dir)  # only now: a kill before this leaves a resumable or a finished run
    return run


def _train(corpus: Corpus, run: FinetuneRun, *, fold: Fold, resolved: dict[str, Any], settings: TrainSettings,
           options: EncoderOptions, device: torch.device, precision: str, num_workers: int, progress: bool,
           callbacks: Sequence[Callable[[dict[str, Any]], None]]) -> None:
    """Train (or resume) a run under its lock, then write its encoder weights, head and ``result.json``."""
    from featcache.heads import MultimodalHead, audio_head, save_head, text_head
    from featcache.heads.record import file_digests, head_files
    from featcache.train import AMP_DTYPES, class_weights, fit

    seed, modality = int(run.config["seed"]), run.modality
    torch.manual_seed(seed)
    encoders: dict[str, TextEncoder | AudioEncoder] = {m: load_encoder(r, options=options) for m, r in resolved.items()}
    n = len(corpus.labels)
    torch.manual_seed(seed)
    if modality == "text":
        head: nn.Module = text_head(encoders["text"].hidden_size, n)
    elif modality == "audio":
        head = audio_head(encoders["audio"].hidden_size, n)
    else:
        head = MultimodalHead(encoders["text"].hidden_size, encoders["audio"].hidden_size, n)
    model = EndToEnd(dict(encoders), head)
    labels = np.array([corpus.label_index(corpus.by_id(i).label) for i in fold.train])
    gen = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    train_loader = _loader(corpus, list(fold.train), dict(encoders), batch_size=settings.batch_size, shuffle=True,
                           generator=gen, **kw)
    dev_loader = _loader(corpus, list(fold.dev), dict(encoders), batch_size=EVAL_BATCH_FACTOR * settings.batch_size,
                         shuffle=False, generator=None, **kw)
    result = fit(
        model,
        train_loader=train_loader,
        dev_loader=dev_loader,
        step=_step,
        n_classes=n,
        class_weights=class_weights(labels, n),
        lr=settings.lr,
        max_epochs=settings.max_epochs,
        patience=settings.patience,
        seed=seed,
        weight_decay=settings.weight_decay,
        grad_accum=settings.grad_accum,
        device=device,
        amp=precision != "fp32",
        amp_dtype=AMP_DTYPES.get(precision, "float16"),
        generator=gen,
        run_dir=run.path,
        progress=progress,
        lock=False,  # finetune holds the run's lock
        callbacks=callbacks,
    )
    model.cpu()
    weights = {}
    for m, enc in encoders.items():
        path = run.encoder_weights(m)
        _save_state(enc.model, path)
        weights[path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    save_head(head, run.head_dir)
    res = {
        "best_epoch": result.best_epoch,
        "best_dev_acc": result.best_dev_acc,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "n_train": len(fold.train),
        "n_dev": len(fold.dev),
        "weights": weights,
        "files": file_digests(run.path, head_files(run.head_dir)),
    }
    revisions = {m: r.revision for m, r in resolved.items() if r.revision is not None}
    if revisions:  # the hub commit each hub backbone resolved to (aliases and directories have none)
        res["backbone_revisions"] = revisions
    atomic_write_json(run.path / "result.json", res, sort_keys=False)  # after the weights: the run is finished
