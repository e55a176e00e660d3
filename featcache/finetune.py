"""Per-fold fine-tuning of the paper's three models, end to end (encoders + heads).

A run is identified by (corpus, modality, backbone(s), encoder options, hyperparameters, fold, dev
split, seed) and lives in the store's ``runs/<run_id>/`` (``FeatureStore.run_dir``)::

    config.json                 the run's identity
    state.json, last.safetensors, optimizer.safetensors, rng.safetensors, best.safetensors,
    train_log.jsonl             the resumable training loop's files (see featcache.train)
    text_encoder.safetensors    fine-tuned encoder weights of the best epoch (one per modality)
    audio_encoder.safetensors
    head/                       the head (model.safetensors + config.json), applied later to stored vectors
    result.json                 best epoch, dev accuracy; written last: a run is finished when it exists

Weights are safetensors and configs JSON; nothing is pickled. Every file is written under a temporary
name and renamed into place (:mod:`featcache.cache.atomic`). A killed run started again with the
same command resumes from its last completed epoch.

A finished run whose ``config.json``, ``result.json`` or head no longer reads is damaged: it is never
used (:func:`find_runs` raises :class:`~featcache.errors.DamagedError` naming the file and the command),
and the same ``featcache finetune`` command finishes it again from its checkpoints.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from featcache.backbones.encoders import AudioEncoder, EncoderOptions, TextEncoder, load_encoder
from featcache.backbones.resolve import resolve_backbone
from featcache.cache import FeatureStore, digest
from featcache.cache.atomic import atomic_write, atomic_write_json, atomic_write_text, write_errors_translated
from featcache.cache.integrity import read_json_object
from featcache.data import Corpus, load_audio
from featcache.errors import DamagedError, FeatcacheError
from featcache.folds import make_fold
from featcache.paper import PAPER_MODELS, TrainSettings, uses
from featcache.presets import Preset
from featcache.workers import make_loader

log = logging.getLogger(__name__)

_RUN_NAME = re.compile(r"^ft-(?P<modality>[a-z]+)-f(?P<fold>\d+)-s(?P<seed>\d+)-[0-9a-f]+$")


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


class _Items(Dataset):
    """Prepared clean inputs of one split (decoding and tokenizing run in workers)."""

    def __init__(self, corpus: Corpus, ids: list[str], encoders: dict[str, Any]) -> None:
        self.corpus, self.ids, self.encoders = corpus, ids, encoders

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        u = self.corpus.by_id(self.ids[i])
        item: dict[str, Any] = {"label": self.corpus.label_index(u.label)}
        if "text" in self.encoders:
            item["text"] = self.encoders["text"].prepare(u.text or "")
        if "audio" in self.encoders:
            item["audio"] = self.encoders["audio"].prepare(load_audio(u.audio))  # type: ignore[arg-type]
        return item


def _collate(encoders: dict[str, Any]):  # type: ignore[no-untyped-def]
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "inputs": {m: enc.collate([it[m] for it in items]) for m, enc in encoders.items()},
            "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        }

    return collate


@dataclass(frozen=True)
class FinetuneRun:
    """A fine-tuning run directory in the store."""

    path: Path
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def modality(self) -> str:
        return str(self.config["modality"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return uses(self.modality)

    @property
    def finished(self) -> bool:
        return (self.path / "result.json").is_file()

    @property
    def result(self) -> dict[str, Any]:
        """The run's ``result.json`` (best epoch, dev accuracy, ...).

        Raises:
            DamagedError: The file does not read as a JSON object (names the command that redoes it).
        """
        path = self.path / "result.json"
        result, problem = read_json_object(path)
        if problem:
            raise DamagedError(path, problem, what="fine-tuning run", fix=self.fix)
        return result

    @property
    def fix(self) -> str:
        """What to do about a damaged run: the finetune command that finishes it again."""
        return (f"run `featcache finetune --modality {self.config.get('modality', '?')} --fold "
                f"{self.config.get('fold', '?')} --seed {self.config.get('seed', '?')}` with the options that made it "
                f"(it finishes the run again from its checkpoints), or delete {self.path}")

    def damage(self) -> tuple[Path, str] | None:
        """The first unreadable file of a finished run and what is wrong with it, or None.

        Checks ``config.json`` (it must hold this run's config), ``result.json`` and the head.
        """
        from featcache.heads import HeadFileError, load_head

        cfg_path = self.path / "config.json"
        stored, problem = read_json_object(cfg_path)
        if problem:
            return cfg_path, problem
        if stored != self.config:
            return cfg_path, "holds another run's config"
        _, problem = read_json_object(self.path / "result.json")
        if problem:
            return self.path / "result.json", problem
        try:
            load_head(self.head_dir)
        except HeadFileError as e:
            return e.path, e.problem
        return None

    def encoder_weights(self, modality: str) -> Path:
        return self.path / f"{modality}_encoder.safetensors"

    def encoder_options(self) -> EncoderOptions:
        return EncoderOptions(**self.config["encoder_options"])

    @property
    def head_dir(self) -> Path:
        return self.path / "head"


def run_config(
    corpus: Corpus,
    *,
    preset: Preset,
    modality: str,
    fold: int,
    seed: int,
    options: EncoderOptions,
    settings: TrainSettings,
    fold_options: dict[str, Any],
) -> dict[str, Any]:
    """The identity of a fine-tuning run (everything that changes its weights)."""
    return {
        "corpus": corpus.fingerprint,
        "corpus_name": corpus.name,
        "labels": list(corpus.labels),
        "modality": modality,
        "backbones": {m: preset.backbone(m) for m in uses(modality)},
        "encoder_options": asdict(options),
        "settings": asdict(settings),
        "fold": fold,
        "fold_options": fold_options,
        "seed": seed,
    }


def run_id(config: dict[str, Any]) -> str:
    """``ft-text-f2-s0-<hash>``."""
    return f"ft-{config['modality']}-f{config['fold']}-s{config['seed']}-{digest(config, 10)}"


def find_runs(
    store: FeatureStore,
    *,
    corpus: Corpus,
    fold: int | None = None,
    seed: int | None = None,
    modality: str | None = None,
) -> list[FinetuneRun]:
    """Finished fine-tuning runs of this corpus in the store, filtered, sorted by id.

    Raises:
        DamagedError: A finished run that the filters select (by its folder name when its config does not
            read) has a file that no longer reads; the message names it and the command that redoes it.
    """
    runs_dir = store.runs_dir
    out: list[FinetuneRun] = []
    if not runs_dir.is_dir():
        return out

    def wanted(m: object, k: object, s: object) -> bool:
        return (fold is None or k == fold) and (seed is None or s == seed) and (modality is None or m == modality)

    for d in sorted(runs_dir.iterdir()):
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            continue
        cfg, problem = read_json_object(cfg_path)
        if problem:
            named = _RUN_NAME.match(d.name)
            if (d / "result.json").is_file() and named and wanted(
                    named["modality"], int(named["fold"]), int(named["seed"])):
                guess = FinetuneRun(d, {"modality": named["modality"], "fold": int(named["fold"]),
                                        "seed": int(named["seed"])})
                raise DamagedError(cfg_path, problem, what="fine-tuning run", fix=guess.fix)
            log.warning("%s: unreadable run config (%s), ignored", cfg_path, problem)
            continue
        run = FinetuneRun(d, cfg)
        if not run.finished or cfg.get("corpus") != corpus.fingerprint:
            continue
        if wanted(cfg.get("modality"), cfg.get("fold"), cfg.get("seed")):
            problem = run.damage()
            if problem is not None:
                raise DamagedError(problem[0], problem[1], what="fine-tuning run", fix=run.fix)
            out.append(run)
    return out


def _save_state(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


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
    num_workers: int = 0,
    progress: bool = True,
) -> FinetuneRun:
    """Fine-tune one model on one fold (or resume it, or return it when finished).

    Args:
        corpus: The corpus.
        store: The store (the run is written under ``runs/``).
        preset: Backbones and default hyperparameters.
        modality: ``text``, ``audio`` or ``multimodal`` (both backbones fine-tuned jointly).
        fold: Fold index.
        seed: Seed of initialisation, shuffling and dropout.
        settings: Hyperparameters (default: the preset's for the modality).
        options: Encoder options (default: the preset's).
        fold_options: Dev-split options (``dev``, ``dev_fraction``, ``seed``).
        device: ``cpu``, ``cuda`` or ``auto``; mixed precision on CUDA.
        num_workers: DataLoader workers for decoding and preparing inputs.
        progress: Progress bars.

    Returns:
        The finished run.

    Raises:
        FeatcacheError: Unknown modality, missing modality in the corpus, a fold the corpus lacks, or bad
            settings (all checked before the run folder is made).
    """
    from featcache.heads import MultimodalHead, audio_head, save_head, text_head
    from featcache.train import class_weights, fit

    if modality not in PAPER_MODELS:
        raise FeatcacheError(f"--modality {modality!r}: use text, audio or multimodal")
    for m in uses(modality):
        if m not in corpus.modalities:
            raise FeatcacheError(f"{corpus.name}: the corpus has no {m}; fine-tune another --modality")
    settings = settings or preset.train(modality)
    options = options or preset.encoder_options()
    fold_options = dict(fold_options or {})
    f = make_fold(corpus, fold, **fold_options)  # checks the fold and its options before anything is written
    cfg = run_config(corpus, preset=preset, modality=modality, fold=fold, seed=seed, options=options,
                     settings=settings, fold_options=fold_options)
    run_dir = store.run_dir(run_id(cfg))
    run = FinetuneRun(run_dir, cfg)
    if run.finished:
        problem = run.damage()
        if problem is None:
            return run
        log.warning("%s: damaged fine-tuning run (%s); finishing it again from its checkpoints", *problem)
        with write_errors_translated(run_dir / "result.json"):
            (run_dir / "result.json").unlink()
    with write_errors_translated(run_dir):  # a read-only store: one line
        run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg, indent=2, sort_keys=True))

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(seed)
    encoders: dict[str, TextEncoder | AudioEncoder] = {}
    for m in uses(modality):
        resolved = resolve_backbone(preset.backbone(m), models_dir=store.models_dir)
        encoders[m] = load_encoder(resolved, options=options)
    n = len(corpus.labels)
    torch.manual_seed(seed)
    if modality == "text":
        head: nn.Module = text_head(encoders["text"].hidden_size, n)
    elif modality == "audio":
        head = audio_head(encoders["audio"].hidden_size, n)
    else:
        head = MultimodalHead(encoders["text"].hidden_size, encoders["audio"].hidden_size, n)
    model = EndToEnd(dict(encoders), head)
    labels = np.array([corpus.label_index(corpus.by_id(i).label) for i in f.train])
    gen = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"num_workers": num_workers, "collate_fn": _collate(dict(encoders))}
    if num_workers:
        kw["persistent_workers"] = False
    train_loader = make_loader(_Items(corpus, list(f.train), dict(encoders)), batch_size=settings.batch_size,
                               shuffle=True, generator=gen, **kw)
    dev_loader = make_loader(_Items(corpus, list(f.dev), dict(encoders)), batch_size=settings.batch_size, **kw)
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
        device=dev,
        generator=gen,
        run_dir=run_dir,
        progress=progress,
    )
    model.cpu()
    for m, enc in encoders.items():
        _save_state(enc.model, run.encoder_weights(m))
    save_head(head, run.head_dir)
    res = {
        "best_epoch": result.best_epoch,
        "best_dev_acc": result.best_dev_acc,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "n_train": len(f.train),
        "n_dev": len(f.dev),
    }
    atomic_write_json(run_dir / "result.json", res, sort_keys=False)  # last: the run is finished
    return run
