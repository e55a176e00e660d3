"""Embedding extraction: (encoder run, fold, variant) -> one feature-store entry.

The pipeline per entry: decode the audio or read the text, apply the variant (seeded per utterance),
prepare the encoder input — all in DataLoader worker processes — then bucket items of equal input
length, encode them and write each finished batch to the store. Entries already stored with the same
provenance are skipped; an interrupted extraction resumes at the first batch it had not written.

Which utterances an entry holds:

* a frozen backbone does not depend on the fold, so its entries are shared by all folds (``fold=None``)
  and hold every utterance of the corpus, clean or perturbed;
* a fine-tuned backbone's clean entry holds the fold's train, dev and test utterances (heads are
  trained on it); its perturbed entries hold the test utterances (``split`` changes that).

Shards. An entry's utterances, in length order, fall into shards of ``shard_size`` (:func:`entry_shards`),
and batches never cross a shard: so one process extracting the whole entry and several extracting one
shard each (``shard=i``, into the store's shard files, then :meth:`~featcache.cache.FeatureStore.assemble_shards`)
encode exactly the same batches and store the same vectors, byte for byte on the same hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from featcache import __version__
from featcache.backbones.encoders import (
    AudioEncoder,
    EncoderOptions,
    TextEncoder,
    bf16_inputs,
    bf16_weights,
    input_digest,
    load_encoder,
    select_layers,
)
from featcache.backbones.resolve import ResolvedBackbone, resolve_backbone, split_revision, weights_hash
from featcache.buckets import iter_batches, length_order
from featcache.cache import EntryKey, FeatureStore, ids_digest, slug
from featcache.data import Corpus, load_audio
from featcache.errors import FeatcacheError
from featcache.folds import make_fold
from featcache.perturb.text_analysis import DEFAULT_MODEL as DEFAULT_SPACY_MODEL
from featcache.train.precision import compute_dtype, resolve_device
from featcache.workers import make_loader

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 256
"""Utterances per shard of an entry (batches never cross a shard; see the module docstring)."""


@dataclass(frozen=True)
class EncoderRun:
    """The weights that turn one modality's input into vectors.

    Attributes:
        modality: ``text`` or ``audio``.
        backbone: Backbone name (alias, directory, hub name or hub ``NAME@REVISION``; a pinned revision is
            not part of the run name nor of an entry's key, whose weights digest tells other weights apart;
            or ``plugin:NAME``, :mod:`featcache.backbones.plugins`).
        options: Encoder options (pooling, length limits).
        weights: A fine-tuned encoder state (safetensors) loaded over the pretrained weights, or None
            for the frozen pretrained backbone.
        tag: Short name of the fine-tuning run the weights come from (part of the run name).
        layers: The hidden states stored per utterance (``all`` or ``0,6,12``, as
            :func:`~featcache.backbones.encoders.parse_layers` writes them), or None: the last layer only.
        store_dtype: How the vectors are stored, ``float32`` or ``float16``.
        precision: The forward's arithmetic, ``fp32`` or ``bf16`` (the encoder in bfloat16,
            :func:`~featcache.backbones.encoders.bf16_weights`; the pooling and the stored vectors are float32);
            bf16 entries have keys of their own.
    """

    modality: str
    backbone: str
    options: EncoderOptions = field(default_factory=EncoderOptions)
    weights: Path | None = None
    tag: str = "frozen"
    layers: str | None = None
    store_dtype: str = "float32"
    precision: str = "fp32"

    @property
    def frozen(self) -> bool:
        return self.weights is None

    @property
    def name(self) -> str:
        """Run name used in the store's paths (``text-minilm-frozen``)."""
        backbone = split_revision(self.backbone)[0]
        return f"{self.modality}-{slug(Path(backbone).name if '/' in backbone else backbone)}-{self.tag}"


@dataclass
class ExtractReport:
    """What one :func:`extract` call did."""

    key: EntryKey
    status: str  # written | resumed | replaced (a damaged entry set aside) | skipped | not-applicable
    n_ids: int = 0
    n_written: int = 0
    n_encoded: int = 0  # distinct inputs encoded (repeated inputs reuse their vector)
    seconds: float = 0.0
    path: Path | None = None
    transcribed_audio_seconds: float = 0.0  # audio a speech recogniser decoded for it (``transcribed`` variants)
    transcribe_seconds: float = 0.0  # the time that decoding took


def transcription_time(values: Iterable[Any]) -> tuple[float, float] | None:
    """Seconds of audio a speech recogniser decoded for the extraction jobs' entries, and the seconds it took.

    Args:
        values: The jobs' results (:class:`~featcache.extract.ExtractReport` among them).

    Returns:
        ``(audio seconds, decoding seconds)``, or None when nothing was decoded.
    """
    reports = [v for v in values if isinstance(v, ExtractReport) and v.transcribed_audio_seconds > 0]
    if not reports:
        return None
    return (sum(r.transcribed_audio_seconds for r in reports), sum(r.transcribe_seconds for r in reports))


class _Items(Dataset):
    """Worker-side work for one entry: read, perturb and prepare each utterance."""

    def __init__(
        self,
        corpus: Corpus,
        ids: Sequence[str],
        *,
        encoder: TextEncoder | AudioEncoder,
        variant: Any,
        seed: int,
        analyses: dict[str, Any] | None,
        mask_token: str | None,
        transcripts: dict[str, str] | None = None,
    ) -> None:
        self.corpus, self.ids = corpus, list(ids)
        self.encoder, self.variant, self.seed = encoder, variant, seed
        self.analyses, self.mask_token, self.transcripts = analyses, mask_token, transcripts

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        u = self.corpus.by_id(self.ids[i])
        record: dict[str, Any] = {}
        if self.encoder.modality == "text":
            x: Any = u.text or ""
            if self.variant.modality == "text":
                kw: dict[str, Any] = {"mask_token": self.mask_token}
                if getattr(self.variant, "needs_analysis", False):
                    kw["analysis"] = self.analyses[u.id] if self.analyses is not None else None
                if getattr(self.variant, "needs_transcripts", False):
                    kw["transcripts"] = self.transcripts
                x, record = self.variant(x, utt_id=u.id, seed=self.seed, **kw)
        else:
            if u.audio is None:
                raise FeatcacheError(f"{self.corpus.name}: utterance {u.id} has no audio")
            x = load_audio(u.audio)
            if self.variant.modality == "audio":
                x, record = self.variant(x, utt_id=u.id, seed=self.seed)
        item = self.encoder.prepare(x)
        item["digest"] = input_digest(item)
        item["id"] = u.id
        item["label"] = self.corpus.label_index(u.label)
        item["record"] = record if self.variant.modality is not None else {}
        return item


class _VectorMemo:
    """Each distinct prepared input of an entry encoded once: a repeated input reuses its vector.

    ``no-text`` gives every utterance the same empty string and ``no-audio`` the same silence; their
    entries cost one forward pass of one item instead of one per utterance, and every row holds the same
    bytes. Items are told apart by :func:`~featcache.backbones.encoders.input_digest` (computed in the
    workers). The most recent ``capacity`` vectors are kept, which covers an input repeated throughout
    an entry's shard (length order puts equal inputs next to each other); each shard starts afresh, so
    every executor stores the same bytes.
    """

    def __init__(self, capacity: int = 4096) -> None:
        from collections import OrderedDict

        self.capacity = capacity
        self.vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.encoded = 0

    def forget(self) -> None:
        """Drop the kept vectors (a new shard: its vectors must not depend on another shard's batches)."""
        self.vectors.clear()

    def encode(self, batch: list[dict[str, Any]], forward: Any) -> np.ndarray:
        """The batch's vectors, running ``forward(items) -> ndarray`` on its inputs not seen before."""
        todo: dict[bytes, dict[str, Any]] = {}
        for it in batch:
            if it["digest"] not in self.vectors:
                todo.setdefault(it["digest"], it)
        if todo:
            for d, vec in zip(todo, forward(list(todo.values()))):
                self.vectors[d] = np.array(vec, copy=True)
            self.encoded += len(todo)
        out = np.stack([self.vectors[it["digest"]] for it in batch])
        for it in batch:
            self.vectors.move_to_end(it["digest"])
        while len(self.vectors) > self.capacity:
            self.vectors.popitem(last=False)
        return out


def entry_shards(corpus: Corpus, ids: Sequence[str], *, modality: str, shard_size: int) -> list[list[str]]:
    """The entry's utterance ids cut into shards: ``shard_size`` ids each (the last may be shorter), in the
    length order extraction encodes them in.

    Raises:
        FeatcacheError: ``shard_size`` is below 1.
    """
    if shard_size < 1:
        raise FeatcacheError(f"shard_size (--shard-size {shard_size}): give at least 1 utterance per shard")
    order = length_order(corpus, ids, modality)
    return [order[i:i + shard_size] for i in range(0, len(order), shard_size)]


def _shard_batches(
    items: Iterator[dict[str, Any]], *, shard_of: dict[str, int], batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """:func:`iter_batches` run anew for each shard's items (they arrive shard after shard), so no batch
    mixes two shards."""
    from itertools import groupby

    for _, group in groupby(items, key=lambda it: shard_of[it["id"]]):
        yield from iter_batches(group, batch_size=batch_size)


def entry_ids(corpus: Corpus, *, fold: int | None, variant_modality: str | None, split: str | None,
              fold_options: dict[str, Any] | None = None) -> list[str]:
    """The utterance ids an entry holds (see the module docstring)."""
    if fold is None:
        return [u.id for u in corpus.utterances]
    f = make_fold(corpus, fold, **(fold_options or {}))
    if split is None:
        split = "all" if variant_modality is None else "test"
    return list(f.split(split))


def entry_key(
    corpus: Corpus,
    run: EncoderRun,
    resolved: ResolvedBackbone,
    *,
    fold: int | None,
    variant: Any,
    seed: int,
    ids: Sequence[str],
    analysis_model: str | None,
) -> EntryKey:
    """The store key of an entry: every setting that changes its numbers.

    A hub backbone's pinned revision (``NAME@REVISION``) is left out: its weights digest names the weights,
    so two names of one commit give the same entries (the commit is recorded in the provenance).
    """
    weights = weights_hash(run.weights) if run.weights is not None else resolved.weights_hash
    identity: dict[str, Any] = {
        "backbone": split_revision(run.backbone)[0],
        "model_type": resolved.model_type,
        "weights": weights,
        "frozen": run.frozen,
        # a plugin takes none of featcache's encoder options: its identity is what names its vectors
        "encoder": run.options.identity(run.modality) if resolved.plugin is None else {"plugin": resolved.plugin},
        "variant_params": _jsonable(variant.params),
        "variant_seed": seed if variant.modality is not None else None,
        "corpus": corpus.fingerprint,
        "ids": ids_digest(sorted(ids)),
    }
    if variant.modality == "text" and getattr(variant, "needs_analysis", False):
        identity["analysis"] = analysis_model
    if run.layers is not None:  # (absent for the last layer only: the keys of stores made before stay)
        identity["layers"] = run.layers
    if run.store_dtype != "float32":
        identity["store_dtype"] = run.store_dtype
    if run.precision != "fp32":  # (absent for float32: the keys of stores made before stay)
        identity["precision"] = run.precision
    return EntryKey(run=run.name, fold=fold, variant=variant.spec, identity=identity)


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


@dataclass(frozen=True)
class PlannedEntry:
    """An entry to extract: its variant, ids, backbone checkpoint and store key."""

    variant: Any
    ids: list[str]
    resolved: ResolvedBackbone
    key: EntryKey


def plan_entry(
    corpus: Corpus,
    store: FeatureStore,
    *,
    run: EncoderRun,
    variant: str,
    fold: int | None = None,
    split: str | None = None,
    seed: int = 0,
    fold_options: dict[str, Any] | None = None,
    analysis_model: str = DEFAULT_SPACY_MODEL,
) -> PlannedEntry | None:
    """Work out an entry's key without loading any model; None when the variant is of another modality.

    Raises:
        FeatcacheError: Unknown variant, or the corpus lacks the run's modality.
    """
    from featcache.perturb import get_variant

    v = get_variant(variant)
    if v.modality is not None and v.modality != run.modality:
        return None
    if run.modality not in corpus.modalities:
        raise FeatcacheError(f"{corpus.name}: the corpus has no {run.modality} for every utterance")
    ids = entry_ids(corpus, fold=fold, variant_modality=v.modality, split=split, fold_options=fold_options)
    resolved = resolve_backbone(run.backbone, hash_cache=store.weight_hashes_path)
    if resolved.plugin is not None and resolved.plugin["modality"] != run.modality:
        m = resolved.plugin["modality"]
        raise FeatcacheError(f"backbone {run.backbone!r} is a {m} encoder plugin; pass it as --{m}-backbone")
    key = entry_key(corpus, run, resolved, fold=fold, variant=v, seed=seed, ids=ids, analysis_model=analysis_model)
    return PlannedEntry(variant=v, ids=ids, resolved=resolved, key=key)


def extract(
    corpus: Corpus,
    store: FeatureStore,
    *,
    run: EncoderRun,
    variant: str,
    fold: int | None = None,
    split: str | None = None,
    seed: int = 0,
    fold_options: dict[str, Any] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    encoder: TextEncoder | AudioEncoder | None = None,
    analysis_model: str = DEFAULT_SPACY_MODEL,
    progress: bool = True,
    planned: PlannedEntry | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    shard: int | None = None,
) -> ExtractReport:
    """Extract (or resume, or skip) one entry, or one shard of it.

    Args:
        corpus: The corpus.
        store: The feature store.
        run: Which encoder weights to use.
        variant: Variant spec (``clean``, ``adj``, ``pitch``, ``noise:snr_db=10``, ...).
        fold: Fold index for a fine-tuned run; None for a frozen run (shared by all folds).
        split: ``train``, ``dev``, ``test`` or ``all``; default ``all`` for clean, ``test`` otherwise.
        seed: Variant seed (per-utterance draws derive from it and the utterance id).
        fold_options: Dev-split options of the fold (``dev``, ``dev_fraction``, ``seed``).
        batch_size: Utterances per forward pass.
        num_workers: DataLoader worker processes for decoding, perturbing and preparing.
        device: ``cpu``, ``cuda`` or ``auto``.
        encoder: A loaded encoder to reuse across calls (must match ``run``).
        analysis_model: spaCy pipeline for part-of-speech variants.
        progress: Show a progress bar.
        planned: The entry as :func:`plan_entry` planned it for these arguments (planned here if None).
        shard_size: Utterances per shard (:func:`entry_shards`); batches never cross a shard.
        shard: Extract only this shard (0-based) into the store's shard file
            (:meth:`~featcache.cache.FeatureStore.shard_writer`); None: the whole entry.

    Returns:
        The report; ``status`` is ``skipped`` when the entry (or the shard) was already stored and intact,
        ``replaced`` when a damaged one was set aside (one log line says why) and written again. For a
        shard, ``n_ids`` counts its utterances.

    Raises:
        FeatcacheError: Unknown variant, missing modality, unreadable input.
        StoreError: The store is read-only or the disk full (one line).
    """
    import time

    from tqdm import tqdm

    if planned is None:
        planned = plan_entry(corpus, store, run=run, variant=variant, fold=fold, split=split, seed=seed,
                             fold_options=fold_options, analysis_model=analysis_model)
    if planned is None:
        return ExtractReport(key=EntryKey(run=run.name, fold=fold, variant=variant), status="not-applicable")
    v, ids, resolved, key = planned.variant, planned.ids, planned.resolved, planned.key
    if store.has(key) and not store.damage(key):  # a damaged entry is written again (the writer sets it aside)
        return ExtractReport(key=key, status="skipped", n_ids=len(ids), path=store.path(key))
    shards = entry_shards(corpus, ids, modality=run.modality, shard_size=shard_size)
    shard_of = {u: i for i, part in enumerate(shards) for u in part}
    if shard is not None:
        if not 0 <= shard < len(shards):
            raise FeatcacheError(f"{key}: no shard {shard}; the entry has {len(shards)} of {shard_size} utterances")
        if store.has_shard(key, index=shard, ids=shards[shard]):
            return ExtractReport(key=key, status="skipped", n_ids=len(shards[shard]),
                                 path=store.shard_path(key, index=shard, size=len(shards[shard])))
    t0 = time.perf_counter()
    dev = resolve_device(device)
    bf16 = compute_dtype(run.precision, device=dev) == torch.bfloat16
    if encoder is None:
        encoder = load_encoder(resolved, options=run.options, weights=run.weights)
    encoder.to(dev).eval()
    layers = select_layers(encoder, run.layers)
    analyses = None
    made_from = None
    mask_token = None
    if v.modality == "text":
        mask_token = encoder.mask_token  # type: ignore[union-attr]
        if getattr(v, "needs_analysis", False):
            from featcache.perturb.text_analysis import analysis_digest, analysis_file, analyze_corpus

            analyses = analyze_corpus(corpus, model=analysis_model, cache_dir=store.root, progress=progress)
            analysis = analysis_file(corpus, model=analysis_model, cache_dir=store.root)
            made_from = {"file": analysis.name, "sha256": analysis_digest(analysis)}
    transcripts = None
    heard_timing: dict[str, float] = {}
    if v.modality == "text" and getattr(v, "needs_transcripts", False):
        from featcache.cache.integrity import digest_bytes
        from featcache.transcribe import transcribe

        heard = transcribe(corpus, cache_dir=store.root, recognizer=str(v.params["recognizer"]),
                           window_seconds=v.window, audio_variant=v.audio_variant, variant_seed=seed,
                           workers=torch.get_num_threads(),
                           progress=progress)
        heard_timing = {"transcribed_audio_seconds": heard.audio_seconds, "transcribe_seconds": heard.decode_seconds}
        transcripts = {r["id"]: r["text"] for r in heard.records}
        transcript_file = {"file": heard.path.name, "sha256": digest_bytes(heard.path.read_bytes())}
    provenance = {
        "backbone": run.backbone,
        "backbone_path": str(resolved.path),
        "modality": run.modality,
        "variant": v.spec,
        "variant_params": _jsonable(v.params),
        "seed": seed,
        "fold_options": fold_options or {},
        "corpus_name": corpus.name,
        "device": str(dev),
        "torch": torch.__version__,
        "featcache": __version__,
        "pooling": run.options.pooling if run.modality == "text" else "mean-valid-frames",
    }
    if resolved.plugin is not None:  # its own pooling; what names it (featcache.backbones.plugins)
        provenance["pooling"] = "plugin"
        provenance["plugin"] = resolved.plugin
    if run.precision != "fp32":  # (also in the key's identity)
        provenance["precision"] = run.precision
    if resolved.revision is not None:  # the hub commit (aliases and directories have none)
        provenance["revision"] = resolved.revision
    if mask_token is not None:
        provenance["mask_token"] = mask_token
    if layers is not None:  # the hidden states along the vectors' second axis
        provenance["layers"] = list(layers)
    if made_from is not None:  # the text analysis it was made from (``featcache cache verify`` checks it)
        provenance["text_analysis"] = made_from
    if transcripts is not None:  # the transcripts it was made from
        provenance["transcripts"] = transcript_file
    status = "written"
    written = 0
    memo = _VectorMemo()
    if shard is None:
        writer: Any = store.writer(key, ids=ids, provenance=provenance)
    else:
        ids = shards[shard]
        writer = store.shard_writer(key, index=shard, ids=ids, provenance=provenance)
    with writer as w:
        if w.complete:
            return ExtractReport(key=key, status="skipped", n_ids=len(ids), path=w.final, **heard_timing)
        if w.replaced:
            status = "replaced"
        elif w.n_done:
            status = "resumed"
        pending = length_order(corpus, w.pending, run.modality)
        if num_workers and v.modality == "audio":
            # pay the variant's first-call cost (imports, caches) once here, not in every forked worker
            v(np.zeros(1600, dtype=np.float32), utt_id="warm-up", seed=seed)
        ds = _Items(corpus, pending, encoder=encoder, variant=v, seed=seed, analyses=analyses, mask_token=mask_token,
                    transcripts=transcripts)
        # single items, handed over as numpy arrays (make_loader). A transcript costs a worker ~0.1 ms: with 1,024
        # in flight it runs far ahead in bursts and then sleeps, rather than waking for every item the forward
        # takes and pre-empting one of the forward's threads (docs/benchmarks.md). A clip costs milliseconds to
        # decode and perturb: 8 in flight.
        prefetch = (1024 if run.modality == "text" else 8) if num_workers else None
        loader = make_loader(ds, batch_size=None, shuffle=False, num_workers=num_workers, prefetch_factor=prefetch)
        bar = tqdm(total=len(ids), initial=w.n_done, desc=f"{key}", unit="utt", disable=not progress, leave=False)
        def forward(items: list[dict[str, Any]]) -> np.ndarray:
            # --precision bf16: the encoder in bfloat16 (bf16_weights) on its inputs cast after they were prepared
            # (a log-mel, tokens: in float32, never under autocast); pooled and returned in float32
            inputs = {k: t.to(dev) for k, t in encoder.collate(items).items()}  # type: ignore[union-attr]
            return encoder(**(bf16_inputs(inputs) if bf16 else inputs)).float().cpu().numpy()  # type: ignore[operator]

        with bar, torch.inference_mode(), bf16_weights(encoder, enabled=bf16):
            current_shard = None
            for batch in _shard_batches(iter(loader), shard_of=shard_of, batch_size=batch_size):
                if shard_of[batch[0]["id"]] != current_shard:
                    current_shard = shard_of[batch[0]["id"]]
                    memo.forget()
                vecs = memo.encode(batch, forward)
                w.add(
                    [it["id"] for it in batch],
                    vecs,
                    labels=[it["label"] for it in batch],
                    records=[it["record"] for it in batch],
                )
                written += len(batch)
                bar.update(len(batch))
    return ExtractReport(
        key=key, status=status, n_ids=len(ids), n_written=written, n_encoded=memo.encoded,
        seconds=time.perf_counter() - t0, path=w.final, **heard_timing,
    )


