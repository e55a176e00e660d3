"""A robustness study over cached vectors: which vectors feed which head, training the light heads,
and evaluating every fold x seed x model x condition from the store alone (no encoder is loaded).

Models
    ``text``, ``audio``, ``multimodal``: the paper's classifiers. With fine-tuned backbones they are the
    heads saved by ``featcache finetune`` applied to the vectors of their own fine-tuned encoders (the
    paper's models, exactly); with frozen backbones they are trained here on the stored clean vectors.
    ``late`` (average of the unimodal probabilities), ``score`` (learned weights over the unimodal
    scores), ``gated`` (a learned per-utterance gate between modalities) and ``mdrop`` (the
    multimodal head trained with modality dropout) are fusion ablations trained here on the unimodal
    models' vectors.

Conditions
    ``clean``; every text variant; every audio variant; ``pitch`` combined with each text variant of
    the paper (``pitch+adj``, ...). A combination is composed from one stored text entry and one
    stored audio entry: it never needs an extraction of its own. By default: the paper's conditions
    plus every other variant the store holds.

Evaluation reads each entry once, gathers each fold's test rows once for every seed and model, and
runs each head's body once per (modality, variant): the conditions that share an input share its
encoding, so a combined condition costs only the fusion layers.

Heads trained here live in ``<store>/heads/<study>/fold-K/seed-S/<model>/`` (safetensors + JSON, with
the resumable training files), keyed by a hash of everything they depend on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featcache.backbones.encoders import EncoderOptions
from featcache.cache import Entry, FeatureStore, digest
from featcache.data import Corpus
from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, plan_entry
from featcache.folds import Fold, make_fold
from featcache.presets import HEAD_SETTINGS, Preset, TrainSettings

log = logging.getLogger(__name__)

PAPER_MODELS = ("text", "audio", "multimodal")
FUSION_MODELS = ("late", "score", "gated", "mdrop")
ALL_MODELS = PAPER_MODELS + FUSION_MODELS
PAPER_TEXT = ("adj", "random-adj", "noun", "random-noun")
MODALITY_DROPOUT = 0.3



def uses(model: str) -> tuple[str, ...]:
    """The modalities a model reads."""
    return {"text": ("text",), "audio": ("audio",)}.get(model, ("text", "audio"))


class MissingEntries(FeatcacheError):
    """Some vectors a study needs are not in the store; the message lists the commands that make them."""


@dataclass
class _CachedEntry:
    """One opened entry held in memory by a study: its vectors, row positions, records, affected flags."""

    entry: Entry
    matrix: np.ndarray
    pos: dict[str, int]
    records: dict[str, dict]
    affected: np.ndarray


@dataclass
class Study:
    """Everything that defines a study's vectors and heads.

    Attributes:
        corpus: The corpus.
        store: The feature store.
        preset: Backbones and options.
        frozen: Frozen backbones (entries shared by folds) or per-fold fine-tuned ones.
        seeds: Seeds of the heads (and of the fine-tuning runs).
        fold_options: Dev-split options of the folds.
        options: Encoder options the entries were extracted with.
        variant_seed: Seed of the perturbations.
        head_settings: Hyperparameters of the heads trained on cached vectors.
    """

    corpus: Corpus
    store: FeatureStore
    preset: Preset
    frozen: bool
    seeds: tuple[int, ...]
    fold_options: dict[str, Any] = field(default_factory=dict)
    options: EncoderOptions = field(default_factory=EncoderOptions)
    variant_seed: int = 0
    head_settings: TrainSettings = HEAD_SETTINGS
    _cache: dict[Any, _CachedEntry] = field(default_factory=dict, repr=False)
    _folds: dict[int, Fold] = field(default_factory=dict, repr=False)
    _runs: dict[tuple[str, int, int, str], EncoderRun] = field(default_factory=dict, repr=False)

    @property
    def folds(self) -> list[int]:
        return list(range(1, len(self.corpus.sessions) + 1))

    def fold(self, k: int) -> Fold:
        if k not in self._folds:
            self._folds[k] = make_fold(self.corpus, k, **self.fold_options)
        return self._folds[k]

    @property
    def key(self) -> str:
        """Hash of the study's identity (names its heads folder)."""
        return digest(
            {
                "corpus": self.corpus.fingerprint,
                "backbones": [self.preset.text_backbone, self.preset.audio_backbone],
                "frozen": self.frozen,
                "options": self.options.__dict__,
                "fold_options": self.fold_options,
                "variant_seed": self.variant_seed,
                "heads": self.head_settings.__dict__,
            },
            10,
        )

    # -- which vectors ------------------------------------------------------------------------

    def encoder_run(self, modality: str, *, fold: int, seed: int, model: str) -> EncoderRun:
        """The encoder whose vectors feed ``model``'s ``modality`` input at (fold, seed).

        Raises:
            MissingEntries: A fine-tuned run is missing (names the finetune command).
        """
        if self.frozen:
            return EncoderRun(modality, self.preset.backbone(modality), self.options)
        from featcache.finetune import find_runs

        owner = "multimodal" if model == "multimodal" else modality
        if (modality, fold, seed, owner) in self._runs:
            return self._runs[modality, fold, seed, owner]
        runs = find_runs(self.store, corpus=self.corpus, fold=fold, seed=seed, modality=owner)
        runs = [r for r in runs if r.config["backbones"].get(modality) == self.preset.backbone(modality)]
        if not runs:
            raise MissingEntries(
                f"{self.store.root}: no fine-tuned {owner} run for fold {fold}, seed {seed}; run `featcache finetune "
                f"--corpus {self.corpus.name} --modality {owner} --fold {fold} --seed {seed}`"
            )
        r = runs[-1]
        run = EncoderRun(modality, self.preset.backbone(modality), r.encoder_options(), r.encoder_weights(modality),
                         r.run_id)
        self._runs[modality, fold, seed, owner] = run
        return run

    def paper_head_dir(self, model: str, *, fold: int, seed: int) -> Path | None:
        """The fine-tuned run's own head for a paper model (None in a frozen study)."""
        if self.frozen or model not in PAPER_MODELS:
            return None
        from featcache.finetune import find_runs

        runs = find_runs(self.store, corpus=self.corpus, fold=fold, seed=seed, modality=model)
        return runs[-1].head_dir if runs else None

    def vectors(
        self, modality: str, *, fold: int, seed: int, model: str, variant: str, ids: Sequence[str]
    ) -> tuple[np.ndarray, dict[str, dict], Entry, np.ndarray]:
        """Stored vectors of ``ids`` (in order), the entry's perturbation records, the entry, and
        whether the variant changed each of these utterances' input.

        Each entry is read from disk once; every fold, seed and model then indexes it in memory.

        Raises:
            MissingEntries: The entry or an utterance is not stored (names the extract command).
        """
        run = self.encoder_run(modality, fold=fold, seed=seed, model=model)
        efold = None if self.frozen else fold
        cache_key = (run, efold, variant)
        cached = self._cache.get(cache_key)
        if cached is None:
            planned = plan_entry(self.corpus, self.store, run=run, variant=variant, fold=efold,
                                 seed=self.variant_seed, fold_options=self.fold_options)
            if planned is None or not self.store.has(planned.key):
                raise MissingEntries(self.extract_command(modality, variant, fold=fold))
            entry = self.store.open(planned.key)
            records = entry.records()
            cached = _CachedEntry(
                entry=entry,
                matrix=entry.vectors(),
                pos={u: i for i, u in enumerate(entry.ids)},
                records=records,
                affected=np.array([_affected(records.get(u, {})) for u in entry.ids], dtype=bool),
            )
            self._cache[cache_key] = cached
        try:
            index = np.fromiter((cached.pos[u] for u in ids), dtype=np.int64, count=len(ids))
        except KeyError as e:
            raise MissingEntries(f"{cached.entry.path}: utterance {e.args[0]!r} is not in this entry; "
                                 f"run `{self.extract_command(modality, variant, fold=fold)}`") from None
        return cached.matrix[index], cached.records, cached.entry, cached.affected[index]

    def extract_command(self, modality: str, variant: str, *, fold: int) -> str:
        """The command that makes a missing entry."""
        where = "--frozen" if self.frozen else f"--finetuned --fold {fold}"
        return (f"featcache extract --corpus {self.corpus.name} --cache-dir {self.store.root} --preset "
                f"{self.preset.name} --modality {modality} {where} --variant {variant}")

    def close(self) -> None:
        for c in self._cache.values():
            c.entry.close()
        self._cache.clear()

    # -- heads ------------------------------------------------------------------------------

    def head_flags(self) -> str:
        """The ``--head-*`` command-line flags that give this study's head settings (empty for the defaults)."""
        st, d = self.head_settings, HEAD_SETTINGS
        flags = [(f"--head-batch-size {st.batch_size}", st.batch_size != d.batch_size),
                 (f"--head-lr {st.lr:g}", st.lr != d.lr),
                 (f"--head-epochs {st.max_epochs}", st.max_epochs != d.max_epochs),
                 (f"--head-patience {st.patience}", st.patience != d.patience)]
        return "".join(f" {flag}" for flag, differs in flags if differs)

    def heads_dir(self, model: str, *, fold: int, seed: int) -> Path:
        return self.store.heads_dir(self.key, fold=fold, seed=seed, model=model)


def _split_vectors(study: Study, model: str, fold: int, seed: int, ids: Sequence[str]) -> list[np.ndarray]:
    return [study.vectors(m, fold=fold, seed=seed, model=model, variant="clean", ids=ids)[0] for m in uses(model)]


def train_heads(
    study: Study,
    *,
    models: Sequence[str] = ALL_MODELS,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train (or load, when already trained) every light head for every fold and seed.

    In a fine-tuned study the paper's three models come from ``featcache finetune`` and are not
    retrained here; the fusion ablations are trained on the unimodal fine-tuned vectors.

    Args:
        study: The study.
        models: Model names to train (see the module docstring).
        device: Where to train.
        progress: Progress bars.

    Returns:
        One record per trained head: fold, seed, model, best epoch, dev accuracy, folder.

    Raises:
        MissingEntries: Clean vectors are missing from the store.
    """
    from tqdm import tqdm

    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown:
        raise FeatcacheError(f"--models: unknown {unknown[0]!r}; choose from {', '.join(ALL_MODELS)}")
    order = [m for m in ("text", "audio", "multimodal", "gated", "mdrop", "late", "score") if m in models]
    if ("late" in order or "score" in order) and study.frozen:
        order = list(dict.fromkeys(["text", "audio", *order]))  # late/score fuse the unimodal heads
    out = []
    jobs = [(k, s, m) for k in study.folds for s in study.seeds for m in order if study.frozen or m not in PAPER_MODELS]
    for k, s, m in tqdm(jobs, desc="heads", unit="head", disable=not progress, leave=False):
        out.append(_train_one(study, m, fold=k, seed=s, device=device))
    return out


def _unimodal_head_dir(study: Study, modality: str, fold: int, seed: int) -> Path:
    if study.frozen:
        return study.heads_dir(modality, fold=fold, seed=seed)
    d = study.paper_head_dir(modality, fold=fold, seed=seed)
    if d is None:
        raise MissingEntries(
            f"{study.store.root}: no fine-tuned {modality} run for fold {fold}, seed {seed}; run `featcache finetune "
            f"--corpus {study.corpus.name} --modality {modality} --fold {fold} --seed {seed}`"
        )
    return d


def _train_one(study: Study, model: str, *, fold: int, seed: int, device: str) -> dict[str, Any]:
    from featcache.heads import build_head, load_head, save_head
    from featcache.train import class_weights, fit, step_pair, step_single, tensor_loader

    out_dir = study.heads_dir(model, fold=fold, seed=seed)
    done = out_dir / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    f = study.fold(fold)
    n = len(study.corpus.labels)
    y_tr = np.array([study.corpus.label_index(study.corpus.by_id(i).label) for i in f.train])
    y_dev = np.array([study.corpus.label_index(study.corpus.by_id(i).label) for i in f.dev])
    x_tr = _split_vectors(study, model, fold, seed, f.train)
    x_dev = _split_vectors(study, model, fold, seed, f.dev)
    dims = {m: x.shape[1] for m, x in zip(uses(model), x_tr)}
    torch.manual_seed(seed)
    options: dict[str, Any] = {}
    kind = model
    if model == "mdrop":
        kind, options = "multimodal", {"modality_dropout": MODALITY_DROPOUT}
    if model in ("late", "score"):
        options = {
            "text_head": load_head(_unimodal_head_dir(study, "text", fold, seed)),
            "audio_head": load_head(_unimodal_head_dir(study, "audio", fold, seed)),
        }
    head = build_head(kind, text_dim=dims.get("text"), audio_dim=dims.get("audio"), n_classes=n, **options)
    result: dict[str, Any] = {"fold": fold, "seed": seed, "model": model, "dir": str(out_dir)}
    if any(p.requires_grad for p in head.parameters()):
        st = study.head_settings
        step = step_single if len(x_tr) == 1 else step_pair
        fr = fit(
            head,
            train_loader=tensor_loader(*x_tr, y_tr, batch_size=st.batch_size, shuffle=True, seed=seed),
            dev_loader=tensor_loader(*x_dev, y_dev, batch_size=256),
            step=step,
            n_classes=n,
            class_weights=class_weights(y_tr, n),
            lr=st.lr,
            max_epochs=st.max_epochs,
            patience=st.patience,
            seed=seed,
            weight_decay=st.weight_decay,
            device=device,
            run_dir=None,  # seconds per head: resumable per head, not per epoch
            progress=False,
        )
        result.update(best_epoch=fr.best_epoch, best_dev_acc=fr.best_dev_acc, epochs_run=fr.epochs_run)
    head.cpu()
    save_head(head, out_dir)
    done.write_text(json.dumps(result, indent=2))
    return result


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------


def default_conditions(store_variants: Iterable[str] | None = None) -> list[str]:
    """The paper's conditions (Table 6 rows), then the other variants the store holds.

    Args:
        store_variants: Variant specs of the store's entries; None lists every registered variant.

    Returns:
        ``clean``, text variants, audio variants (registry order), then ``pitch`` with each of the
        paper's text attacks.
    """
    from featcache.perturb import get_variant, list_variants
    from featcache.presets import PAPER_VARIANTS

    held = None if store_variants is None else set(store_variants)

    def wanted(spec: str) -> bool:
        return held is None or spec in PAPER_VARIANTS or spec in held

    specs = [v.spec for m in ("text", "audio") for v in list_variants(m) if wanted(v.spec)]
    for spec in sorted(held or ()):  # stored variants with other parameters, e.g. noise:snr_db=7
        if spec not in specs and spec != "clean":
            try:
                get_variant(spec)
            except FeatcacheError:
                continue
            specs.append(spec)
    by_modality = {m: [x for x in specs if get_variant(x).modality == m] for m in ("text", "audio")}
    conds = ["clean", *by_modality["text"], *by_modality["audio"], *(f"pitch+{t}" for t in PAPER_TEXT)]
    return list(dict.fromkeys(conds))


def _held_variants(store: FeatureStore) -> set[str]:
    """Variant specs of the store's complete entries."""
    return {info.variant for info in store.iter_entries() if info.status == "complete" and info.variant}


def applies(model: str, condition: str) -> bool:
    """Whether a condition perturbs something a model reads (clean always applies)."""
    from featcache.perturb import parse_condition

    if condition == "clean":
        return True
    audio, text = parse_condition(condition)
    mods = set(uses(model))
    return (audio is None or "audio" in mods) and (text is None or "text" in mods) and bool(
        (audio and "audio" in mods) or (text and "text" in mods)
    )


def _affected(record: dict[str, Any]) -> bool:
    if not record:
        return False
    if "edits" in record:
        return bool(record["edits"])
    if "count" in record:
        return record["count"] > 0
    if "original_length" in record:
        return record["original_length"] > 0
    return True


def evaluate(
    study: Study,
    *,
    models: Sequence[str] = ALL_MODELS,
    conditions: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[Any, list[str]]:
    """Run every head over the stored vectors of every condition.

    Args:
        study: The study.
        models: Models to evaluate (those without trained heads are reported as missing).
        conditions: Conditions (default: :func:`default_conditions` of the variants the store holds, so
            the paper's conditions are always there, reported missing if not extracted).
        progress: Progress bar.

    Returns:
        ``(predictions, missing)``: a :class:`featcache.metrics.Predictions` with one row per
        (fold, seed, model, condition, utterance), and the commands that would make what was missing.
    """
    from featcache.metrics import Predictions

    conditions = list(conditions or default_conditions(_held_variants(study.store)))
    blocks: list[dict[str, np.ndarray]] = []
    texts: dict[tuple[str, str], str] = {}
    missing: list[str] = []
    jobs = [(k, s, m) for k in study.folds for s in study.seeds for m in models]
    try:
        _evaluate_jobs(study, jobs, conditions, blocks, texts, missing, progress)
    finally:
        study.close()
    preds = Predictions.from_blocks(blocks, labels=study.corpus.labels, texts=texts)
    return preds, missing


def _evaluate_jobs(study: Study, jobs: list, conditions: Sequence[str], blocks: list[dict[str, np.ndarray]],
                   texts: dict, missing: list[str], progress: bool) -> None:
    """Fill ``blocks`` (one dict of columns per fold/seed/model/condition), ``texts`` and ``missing``.

    Within a fold, each entry's test rows are gathered once and shared by every seed and model; within
    one head, each (modality, variant) input is encoded once and shared by every condition that uses it
    (``pitch+adj`` reuses the encoded ``adj`` text and ``pitch`` audio).
    """
    from tqdm import tqdm

    from featcache.heads import load_head
    from featcache.perturb import get_variant, parse_condition

    replayed: set[tuple[str, int]] = set()  # (condition, fold) whose texts are rebuilt
    rows: dict[tuple[EncoderRun, str], tuple[torch.Tensor, dict, Entry, np.ndarray]] = {}  # this fold's test rows
    current_fold = None
    for k, s, m in tqdm(jobs, desc="evaluate", unit="model", disable=not progress, leave=False):
        if k != current_fold:
            rows.clear()
            current_fold = k
        head_dir = study.paper_head_dir(m, fold=k, seed=s) or study.heads_dir(m, fold=k, seed=s)
        if not (head_dir / "config.json").is_file():
            cmd = (f"featcache train-heads --corpus {study.corpus.name} --cache-dir {study.store.root}"
                   f"{study.head_flags()}"
                   if study.frozen or m not in PAPER_MODELS else
                   f"featcache finetune --corpus {study.corpus.name} --modality {m} --fold {k} --seed {s}")
            if cmd not in missing:
                missing.append(cmd)
            continue
        head = load_head(head_dir).eval()
        f = study.fold(k)
        ids = list(f.test)
        n = len(ids)
        labels = np.array([study.corpus.label_index(study.corpus.by_id(i).label) for i in ids], dtype=np.int64)
        fixed = {"fold": np.full(n, k, dtype=np.int64), "session": np.full(n, f.test_session, dtype=object),
                 "seed": np.full(n, s, dtype=np.int64), "model": np.full(n, m, dtype=object),
                 "utt_id": np.array(ids, dtype=object), "label": labels}
        encoded: dict[tuple[str, str], torch.Tensor] = {}  # (modality, variant) -> this head's encoded input
        for cond in conditions:
            if not applies(m, cond):
                continue
            audio_v, text_v = parse_condition(cond) if cond != "clean" else (None, None)
            try:
                inputs, affected = [], np.zeros(n, dtype=bool)
                for mod in uses(m):
                    variant = {"text": text_v, "audio": audio_v}[mod] or "clean"
                    run = study.encoder_run(mod, fold=k, seed=s, model=m)
                    if (run, variant) not in rows:  # frozen runs are shared by seeds and models
                        x, records, entry, changed = study.vectors(mod, fold=k, seed=s, model=m, variant=variant,
                                                                   ids=ids)
                        rows[run, variant] = (torch.from_numpy(x), records, entry, changed)
                    x_t, records, entry, changed = rows[run, variant]
                    if (mod, variant) not in encoded:
                        with torch.no_grad():
                            encoded[mod, variant] = head.encode(mod, x_t) if hasattr(head, "join") else head(x_t)
                    inputs.append(encoded[mod, variant])
                    if variant != "clean":
                        affected |= changed
                        if mod == "text" and (cond, k) not in replayed:
                            replayed.add((cond, k))
                            _collect_texts(study, texts, cond, text_v, ids, records, entry, get_variant(variant))
            except MissingEntries as e:
                if str(e) not in missing:
                    missing.append(str(e))
                continue
            with torch.no_grad():
                logits = head.join(*inputs) if len(inputs) == 2 else inputs[0]
                p = torch.softmax(logits, -1).numpy().astype(np.float32, copy=False)
            blocks.append({**fixed, "condition": np.full(n, cond, dtype=object), "pred": p.argmax(1).astype(np.int64),
                           "probs": p, "affected": affected})


def _collect_texts(study: Study, texts: dict, cond: str, text_variant: str, ids: Sequence[str], records: dict,
                   entry: Entry, variant: Any) -> None:
    """Rebuild the perturbed transcriptions from the stored records (for the examples tables).

    Called once per (condition, fold), whatever the number of models and seeds; a combined condition
    (``pitch+adj``) takes the texts of its text variant when they were already replayed.
    """
    mask = entry.provenance.get("mask_token", "[MASK]")
    for i in ids:
        original = study.corpus.by_id(i).text or ""
        texts.setdefault(("clean", i), original)
        if (text_variant, i) in texts:
            texts[(cond, i)] = texts[(text_variant, i)]
            continue
        rec = records.get(i)
        if rec:
            try:
                texts[(cond, i)] = variant.apply(original, rec, mask_token=mask)
            except (FeatcacheError, KeyError, TypeError):  # a record that cannot be replayed: no example text
                continue


# ------------------------------------------------------------------------------------------------
# the whole study
# ------------------------------------------------------------------------------------------------


def run_study(
    study: Study,
    *,
    variants: Sequence[str] | None = None,
    out: Path,
    workers: int = 1,
    device: str = "auto",
    echo: Any = print,
    progress: bool = True,
) -> Path:
    """data -> folds -> finetune (or frozen) -> extract -> heads -> evaluate -> report, skipping stored work.

    Args:
        study: The study.
        variants: Variant specs to extract and evaluate (default: the preset's; ``all``: every registered one).
        out: Report folder.
        workers: DataLoader workers for extraction.
        device: ``cpu``, ``cuda`` or ``auto``.
        echo: Where stage messages go.
        progress: Progress bars.

    Returns:
        The report folder.
    """
    import time

    from featcache.finetune import finetune, parts
    from featcache.perturb import get_variant
    from featcache.pipeline import expand_variants, plan_encoder_runs, run_extractions
    from featcache.report import write_report

    corpus, store = study.corpus, study.store
    specs = expand_variants(variants or study.preset.variants)
    t = time.perf_counter()
    echo(f"[1/5] corpus {corpus.name}: {len(corpus)} utterances, {len(study.folds)} folds, "
         f"modalities {', '.join(corpus.modalities)}")
    models = [m for m in PAPER_MODELS if all(x in corpus.modalities for x in parts(m))]
    if study.frozen:
        echo("[2/5] frozen backbones: no fine-tuning")
    else:
        echo(f"[2/5] fine-tuning {len(models)} models x {len(study.folds)} folds x {len(study.seeds)} seeds")
        for k in study.folds:
            for s in study.seeds:
                for m in models:
                    finetune(corpus, store, preset=study.preset, modality=m, fold=k, seed=s, options=study.options,
                             fold_options=study.fold_options, device=device, num_workers=workers, progress=progress)
    plans = plan_encoder_runs(corpus, store, preset=study.preset, frozen=study.frozen, pad_to=study.options.pad_to)
    reports = run_extractions(corpus, store, plans, variants=["clean", *specs], seed=study.variant_seed,
                              batch_size=study.preset.extract_batch_size, num_workers=workers, device=device,
                              progress=progress)
    done = sum(r.status != "skipped" for r in reports)
    echo(f"[3/5] extraction: {len(reports)} entries ({done} extracted, {len(reports) - done} already stored) "
         f"[{time.perf_counter() - t:.0f} s]")
    heads = [m for m in ALL_MODELS if all(x in corpus.modalities for x in uses(m))]
    train_heads(study, models=heads, device="cpu", progress=progress)
    echo(f"[4/5] heads trained for {len(study.folds)} folds x {len(study.seeds)} seeds "
         f"[{time.perf_counter() - t:.0f} s]")
    text_specs = [x for x in specs if get_variant(x).modality == "text"]
    audio_specs = [x for x in specs if get_variant(x).modality == "audio"]
    combos = [f"pitch+{x}" for x in PAPER_TEXT if "pitch" in audio_specs and x in text_specs]
    conditions = ["clean", *text_specs, *audio_specs, *combos]
    preds, missing = evaluate(study, models=heads, conditions=conditions, progress=progress)
    for cmd in missing:
        echo(f"missing: {cmd}")
    out.mkdir(parents=True, exist_ok=True)
    preds.save(out / "predictions.h5")
    write_report(preds, out, title=f"featcache {study.preset.name} study: {corpus.name}")
    echo(f"[5/5] evaluated {len(preds):,} predictions; report written [{time.perf_counter() - t:.0f} s]")
    return out
