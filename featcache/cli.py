"""The ``featcache`` command line: one command or group per stage of the pipeline.

Every error caused by input (a missing folder, a malformed line, an unusable cache entry) is printed
as one line, ``Error: <file>: <what is wrong>; <what to do>``, and exits with status 1.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import click

from featcache import __version__
from featcache.errors import FeatcacheError
from featcache.paper import ALL_MODELS, FUSION_HIDDEN, HEAD_SETTINGS, HIDDEN

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


class _Group(click.Group):
    """A click group that turns :class:`FeatcacheError` into a one-line error."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except FeatcacheError as e:
            logging.getLogger("featcache").debug("the error's traceback (shown with -v)", exc_info=True)
            raise click.ClickException(str(e)) from None


def corpus_option(required: bool = True):  # type: ignore[no-untyped-def]
    """``--corpus SPEC`` with ``--labels`` and ``--merge``."""

    def deco(f):  # type: ignore[no-untyped-def]
        f = click.option(
            "--merge",
            default=None,
            metavar="SRC=DST,...",
            help="Merge raw labels (IEMOCAP default: exc=hap; pass '' for none).",
        )(f)
        f = click.option(
            "--labels",
            default=None,
            metavar="A,B,...",
            help="Labels to keep, in class order (IEMOCAP default: ang,sad,hap,fru; manifest: all).",
        )(f)
        f = click.option(
            "--corpus",
            "corpus_spec",
            required=required,
            envvar="FEATCACHE_CORPUS",
            metavar="SPEC",
            help="iemocap:DIR (release layout, also the demo corpus) or manifest:FILE.csv|.jsonl. "
            "Env: FEATCACHE_CORPUS.",
        )(f)
        return f

    return deco


def cache_dir_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default="./cache",
        envvar="FEATCACHE_CACHE",
        show_envvar=True,
        help="Feature store directory.",
    )(f)


def load_corpus_from_options(corpus_spec: str, labels: str | None, merge: str | None):  # type: ignore[no-untyped-def]
    """Build a :class:`~featcache.data.Corpus` from the CLI's corpus options."""
    from featcache.data import load_corpus, parse_merge

    label_list = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
    merge_map = parse_merge(merge) if merge is not None else None
    return load_corpus(corpus_spec, labels=label_list, merge=merge_map)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="featcache")
@click.option("-v", "--verbose", is_flag=True, help="Show debug messages.")
@click.option("--threads", type=click.IntRange(min=1), default=None, envvar="FEATCACHE_THREADS", show_envvar=True,
              help="CPU threads: heads are trained on this many threads (each running single-threaded operations, "
                   "which stay fast when other jobs share the cores), and torch's CPU operations (extraction, "
                   "fine-tuning on CPU) use this many. [default: heads on the usable cores, at most 2 "
                   "(bench/bench_evaluate.py: fastest on 2 cores, idle or busy); torch's own default elsewhere]")
def cli(verbose: bool, threads: int | None) -> None:
    """featcache: cached embeddings for robustness studies of speech+text emotion classifiers.

    Backbones are fine-tuned once per fold; embeddings of the clean test set and of every perturbed
    variant are extracted to an HDF5 store, so heads, fusion and evaluation run from cached vectors.

    Stages: demo-data -> data -> finetune -> extract -> train-heads -> evaluate -> report
    (or all of them with `run`).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("numba", "urllib3", "filelock", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if threads is not None:
        import torch

        from featcache.ensemble import THREADS_ENV

        os.environ[THREADS_ENV] = str(threads)  # head training reads it (featcache.ensemble.head_threads)
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# demo-data
# ----------------------------------------------------------------------------------------------


@cli.command("demo-data", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, help="Seed of the synthetic corpus (same seed, same bytes).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty DIRECTORY.")
def demo_data(directory: Path, seed: int, overwrite: bool) -> None:
    """Write the embedded demo corpus to DIRECTORY in the IEMOCAP release layout.

    Read it back with --corpus iemocap:DIRECTORY.
    """
    from featcache.demo import write_demo_corpus

    summary = write_demo_corpus(directory, seed=seed, overwrite=overwrite)
    click.echo(f"wrote the demo corpus to {directory} ({summary})")
    click.echo(f"next: featcache data stats --corpus iemocap:{directory}")


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=CONTEXT)
def data() -> None:
    """Inspect a corpus: label breakdown and folds."""


@data.command("stats", context_settings=CONTEXT)
@corpus_option()
def data_stats(corpus_spec: str, labels: str | None, merge: str | None) -> None:
    """Print the label x session breakdown (the paper's Table 2 layout) with durations."""
    from featcache.data import corpus_stats

    corpus = load_corpus_from_options(corpus_spec, labels, merge)
    stats = corpus_stats(corpus)
    click.echo(f"{corpus.name}: {stats.total:,} utterances, modalities: {', '.join(corpus.modalities) or 'none'}")
    click.echo(stats.format())


@data.command("folds", context_settings=CONTEXT)
@corpus_option()
@click.option("--dev", type=click.Choice(["stratified", "session", "speaker"]), default="stratified",
              help="How the early-stopping dev set is taken from the training sessions.")
@click.option("--dev-fraction", default=0.1, help="Share of training utterances in a stratified dev set.")
@click.option("--seed", default=0, help="Seed of the dev split.")
def data_folds(corpus_spec: str, labels: str | None, merge: str | None, dev: str, dev_fraction: float, seed: int) -> None:
    """List the leave-one-session-out folds with their split sizes."""
    from featcache.folds import make_folds

    corpus = load_corpus_from_options(corpus_spec, labels, merge)
    click.echo(f"{'fold':>4}  {'test session':>12}  {'train':>6}  {'dev':>5}  {'test':>5}  digest")
    for f in make_folds(corpus, dev=dev, dev_fraction=dev_fraction, seed=seed):
        click.echo(f"{f.index:>4}  {f.test_session:>12}  {len(f.train):>6}  {len(f.dev):>5}  {len(f.test):>5}  {f.digest}")


# ----------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------


@cli.group(cls=_Group, context_settings=CONTEXT)
def cache() -> None:
    """List and check the feature store."""


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _identity_settings(provenance: dict) -> dict[str, str]:
    """The settings in an entry's stored identity, flattened to ``name -> short text``.

    ``encoder`` options appear under their own names (``pooling``, ``whisper_input``, ``pad_to``,
    ``max_samples``, ...), ``variant_seed`` as ``seed``, other nested values as ``parent.key``.
    """
    import json

    out: dict[str, str] = {}

    def put(name: str, value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                put(k if name == "encoder" else f"{name}.{k}", v)
            return
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
        out["seed" if name == "variant_seed" else name] = text

    identity = provenance.get("identity")
    for k, v in (identity if isinstance(identity, dict) else {}).items():
        if k not in ("run", "fold", "variant"):
            put(k, v)
    return out


def entry_settings_column(infos: list) -> list[str]:  # type: ignore[type-arg]  (EntryInfo, imported lazily)
    """For each entry, the identity settings in which it differs from the other listed entries of the same
    run, fold and variant (``pooling=mean``, ``seed=1``, ...); ``-`` for an entry that has no such twin.

    Args:
        infos: The listed entries (:class:`~featcache.cache.store.EntryInfo`).

    Returns:
        One text per entry, in the same order.
    """
    settings = [_identity_settings(i.provenance or {}) for i in infos]
    groups: dict[tuple, list[int]] = {}
    for n, i in enumerate(infos):
        groups.setdefault((i.run, i.fold, i.variant), []).append(n)
    column = ["-"] * len(infos)
    for members in groups.values():
        if len(members) < 2:
            continue
        names = sorted({k for n in members for k in settings[n]})
        differing = [k for k in names if len({settings[n].get(k) for n in members}) > 1]
        for n in members:
            text = " ".join(f"{k}={_short(settings[n].get(k, '?'))}" for k in differing)
            column[n] = text or "-"
    return column


def _short(text: str) -> str:
    """A hex digest cut to 12 digits; any other text unchanged."""
    return text[:12] if len(text) > 12 and all(c in "0123456789abcdef" for c in text) else text


@cache.command("ls", context_settings=CONTEXT)
@cache_dir_option
@click.option("--long", "-l", "long_", is_flag=True, help="Also print each entry's full provenance.")
def cache_ls(cache_dir: Path, long_: bool) -> None:
    """List entries with their provenance and size, then fine-tuning runs.

    Entries of the same run, fold and variant that differ in a setting (pooling, input length, variant
    seed, ...) show the settings that tell them apart in the last column. Runs show their modality,
    fold, seed, status (finished, unfinished, damaged, or old: made by another fine-tuning loop and not
    used), size and best dev accuracy.
    """
    from featcache.cache import FeatureStore

    store = FeatureStore(cache_dir)
    infos = list(store.iter_entries())
    runs = _runs(store, deep=False)
    if not infos and not runs:
        click.echo(f"{cache_dir}: no entries")
        return
    if infos:
        _echo_entries(infos, cache_dir, long_=long_)
    if runs:
        _echo_runs(runs, cache_dir)


def _runs(store, *, deep: bool) -> list:  # type: ignore[no-untyped-def,type-arg]  (FeatureStore, RunInfo: lazy)
    """The store's fine-tuning runs (:func:`featcache.finetune.list_runs`; torch is imported only when
    there is a ``runs/`` folder)."""
    if not store.runs_dir.is_dir():
        return []
    from featcache.finetune import list_runs

    return list_runs(store, deep=deep)


def _echo_runs(runs: list, cache_dir: Path) -> None:  # type: ignore[type-arg]  (RunInfo, imported lazily)
    """Print the runs table of ``cache ls``: id, modality, fold, seed, status, size, best dev accuracy."""
    iw = max(len("run"), *(len(r.run_id) for r in runs))
    click.echo(f"{'run':<{iw}} {'modality':<10} {'fold':>4} {'seed':>4} {'status':<10} {'size':>9} "
               f"{'epochs':>6} {'best dev acc':>12}")
    for r in runs:
        best = "-" if r.best_dev_acc is None else f"{r.best_dev_acc:.4f}"
        epochs = "-" if r.epochs is None else str(r.epochs)
        fold = "?" if r.fold is None else str(r.fold)
        seed = "?" if r.seed is None else str(r.seed)
        click.echo(f"{r.run_id:<{iw}} {r.modality or '?':<10} {fold:>4} {seed:>4} {r.status:<10} "
                   f"{_human(r.size_bytes):>9} {epochs:>6} {best:>12}")
        if r.problem:
            click.echo(f"          {r.problem}")
    click.echo(f"{len(runs)} runs, {_human(sum(r.size_bytes for r in runs))} in {cache_dir / 'runs'}")


def _echo_entries(infos: list, cache_dir: Path, *, long_: bool) -> None:  # type: ignore[type-arg]
    """Print the entries table of ``cache ls`` (see :func:`cache_ls`)."""
    import json

    backbones = [(i.provenance.get("backbone", "") if i.provenance else "") or "-" for i in infos]
    settings = entry_settings_column(infos)
    bw = max(len("backbone"), *(len(b) for b in backbones))
    click.echo(f"{'status':<9} {'run':<28} {'fold':<7} {'variant':<22} {'rows':>6} {'dim':>5} {'size':>9}  "
               f"{'backbone':<{bw}}  settings")
    total = 0
    for i, backbone, setting in zip(infos, backbones, settings, strict=True):
        total += i.size_bytes
        fold = "shared" if i.fold is None else str(i.fold)
        click.echo(
            f"{i.status:<9} {i.run[:28]:<28} {fold:<7} {i.variant[:22]:<22} {i.rows:>6} {i.dim:>5} "
            f"{_human(i.size_bytes):>9}  {backbone:<{bw}}  {setting}".rstrip()
        )
        if i.problem:
            click.echo(f"          {i.problem}")
        if long_ and i.provenance:
            for k, v in sorted(i.provenance.items()):
                click.echo(f"          {k} = {json.dumps(v, sort_keys=True)}")
    click.echo(f"{len(infos)} entries, {_human(total)} in {cache_dir}")


@cache.command("verify", context_settings=CONTEXT)
@cache_dir_option
def cache_verify(cache_dir: Path) -> None:
    """Check every entry (opens, shapes, finite values, checksum) and every finished fine-tuning run (config,
    result, head, encoder weights' checksum); exit 1 if any is broken."""
    from featcache.cache import FeatureStore

    store = FeatureStore(cache_dir)
    infos = store.verify()
    broken = [i for i in infos if i.status == "broken"]
    partial = [i for i in infos if i.status == "partial"]
    for i in broken:
        click.echo(f"BROKEN   {i.path}: {i.problem}; delete it and extract again")
    for i in partial:
        click.echo(f"PARTIAL  {i.path}: {i.problem}")
    ok = len(infos) - len(broken) - len(partial)
    click.echo(f"{ok} complete, {len(partial)} partial, {len(broken)} broken")
    runs = _runs(store, deep=True)
    bad_runs = [r for r in runs if r.status == "damaged"]
    for r in bad_runs:
        click.echo(f"BROKEN   {r.problem}; {r.fix}")
    if runs:
        done = sum(r.status in ("finished", "old") for r in runs)
        click.echo(f"runs: {done} finished, {sum(r.status == 'unfinished' for r in runs)} unfinished, "
                   f"{len(bad_runs)} broken")
    if broken or bad_runs:
        sys.exit(1)


@cache.command("clean", context_settings=CONTEXT)
@cache_dir_option
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cache_clean(cache_dir: Path, dry_run: bool) -> None:
    """Remove interrupted extractions (.partial), leftovers of killed writers and damaged entries set
    aside; complete entries and the work of running processes stay."""
    from featcache.cache import FeatureStore

    removed = FeatureStore(cache_dir).clean(dry_run=dry_run,
                                            on_skip=lambda path, why: click.echo(f"skipping {path}: {why}"))
    for path in removed:
        click.echo(f"{'would remove' if dry_run else 'removing'} {path}")
    click.echo(f"{len(removed)} item(s) {'to remove' if dry_run else 'removed'}")


# ----------------------------------------------------------------------------------------------
# executors (where fine-tuning and extraction jobs run)
# ----------------------------------------------------------------------------------------------

SHARD_SIZE_DEFAULT = 256  # featcache.extract.DEFAULT_SHARD_SIZE (not imported here: it would load torch)


def executor_options(*, shards: bool):  # type: ignore[no-untyped-def]
    """``--executor`` and the options of the Ray executor (see :mod:`featcache.executors`); with ``shards``,
    ``--shard-size`` too (commands that extract)."""
    return lambda f: _executor_options(f, shards=shards)


def _executor_options(f, *, shards: bool):  # type: ignore[no-untyped-def]
    f = click.option("--max-retries", type=click.IntRange(min=0), default=3,
                     help="Ray: times a job whose worker died (a killed process, a lost node) is started again.")(f)
    f = click.option("--job-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     help="Ray: CPUs each job asks for (torch uses as many threads in it).")(f)
    f = click.option("--job-gpus", type=click.FloatRange(min=0), default=None,
                     help="Ray: GPUs each fine-tuning or encoding job asks for. [default: 1 when the cluster has "
                          "GPUs, else 0]")(f)
    if shards:
        f = click.option("--shard-size", type=click.IntRange(min=1), default=SHARD_SIZE_DEFAULT,
                         help="Utterances per shard of an entry: Ray extracts an entry's shards in parallel. Batches "
                              "never cross a shard, so every executor stores the same vectors.")(f)
    f = click.option("--address", default=None, metavar="ADDR", envvar="RAY_ADDRESS", show_envvar=True,
                     help="Ray: the cluster to join (auto, HOST:6379, ray://HOST:10001). [default: a new Ray "
                          "instance on this machine]")(f)
    f = click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                     help="local: every job in order in this process; ray: every fine-tuning run and extraction "
                          "shard as a Ray task, one GPU each (pip install 'featcache[ray]').")(f)
    return f


def _executor(executor: str, address: str | None, job_gpus: float | None, job_cpus: float, max_retries: int):  # type: ignore[no-untyped-def]
    """The :mod:`featcache.executors` executor the options name.

    Raises:
        FeatcacheError: ``ray`` without Ray installed (one line saying how to install it).
    """
    from featcache.executors import make_executor

    return make_executor(executor, address=address, job_gpus=job_gpus, job_cpus=job_cpus, max_retries=max_retries)


# ----------------------------------------------------------------------------------------------
# extract
# ----------------------------------------------------------------------------------------------


def encoder_options(f):  # type: ignore[no-untyped-def]
    """Options that change the vectors an encoder produces."""
    f = click.option("--whisper-input", type=click.Choice(["trim", "30s"]), default=None,
                     help="Whisper encoder input: 30 s windows (as trained) or trimmed to the clip "
                          "(much faster). [default: preset's]")(f)
    f = click.option("--pad-to", type=int, default=None,
                     help="Pad every clip to this many samples and pool all frames (246000 = the paper).")(f)
    f = click.option("--max-samples", type=int, default=None,
                     help="Cut longer clips here. [default: preset's, 246000 = 15.375 s]")(f)
    f = click.option("--pooling", type=click.Choice(["auto", "cls", "mean"]), default=None,
                     help="Text pooling: the [CLS] vector, the mean over tokens, or auto = the backbone's own "
                          "(a sentence-embedding model's pooling config, else cls). [default: preset's: "
                          "demo auto (MiniLM: mean), paper cls]")(f)
    f = click.option("--audio-backbone", default=None, metavar="NAME",
                     help="Speech encoder: alias (whisper-base), directory or hub name. [default: preset's]")(f)
    f = click.option("--text-backbone", default=None, metavar="NAME",
                     help="Text encoder: alias (minilm), directory or hub name. [default: preset's]")(f)
    f = click.option("--preset", default="demo", type=click.Choice(["demo", "paper"]),
                     help="Backbones and hyperparameters (see `featcache presets`).")(f)
    return f


def _preset_from_options(preset: str, text_backbone: str | None, audio_backbone: str | None,
                         pooling: str | None, max_samples: int | None, whisper_input: str | None):  # type: ignore[no-untyped-def]
    from featcache.presets import get_preset, with_overrides

    return with_overrides(get_preset(preset), text_backbone=text_backbone, audio_backbone=audio_backbone,
                          pooling=pooling, max_samples=max_samples, whisper_input=whisper_input)


def _variant_list(variants: tuple[str, ...]) -> list[str]:
    """Extraction variants: ``all`` means clean and every registered perturbation."""
    from featcache.pipeline import expand_variants

    return expand_variants(["clean", *variants] if "all" in variants else variants)


@cli.command("extract", context_settings=CONTEXT)
@corpus_option()
@cache_dir_option
@encoder_options
@click.option("--fold", "folds", default="all", metavar="K|all",
              help="Fold(s) whose fine-tuned backbones to use (ignored with frozen backbones).")
@click.option("--variant", "variants", multiple=True, default=("clean",), metavar="NAME",
              help="Variant to extract (repeatable), or 'all' for clean and every registered variant.")
@click.option("--modality", type=click.Choice(["text", "audio", "all"]), default="all",
              help="Encoders to run (only those the corpus has).")
@click.option("--frozen/--finetuned", default=None,
              help="Pretrained backbones (shared by all folds) or the folds' fine-tuned ones. [default: preset's]")
@click.option("--seed", default=0, help="Variant seed (per-utterance draws derive from it and the id).")
@click.option("--split", type=click.Choice(["train", "dev", "test", "all"]), default=None,
              help="Utterances of a fine-tuned fold to embed. [default: all for clean, test for variants]")
@click.option("--batch-size", type=int, default=None, help="Utterances per forward pass. [default: preset's]")
@click.option("--workers", default=1, help="DataLoader workers for decoding, perturbing and preparing inputs.")
@click.option("--device", default="auto", help="cpu, cuda or auto.")
@executor_options(shards=True)
def extract_cmd(corpus_spec: str, labels: str | None, merge: str | None, cache_dir: Path, preset: str,
                text_backbone: str | None, audio_backbone: str | None, pooling: str | None,
                max_samples: int | None, pad_to: int | None, whisper_input: str | None, folds: str,
                variants: tuple[str, ...], modality: str, frozen: bool | None, seed: int, split: str | None,
                batch_size: int | None, workers: int, device: str, executor: str, address: str | None,
                shard_size: int, job_gpus: float | None, job_cpus: float, max_retries: int) -> None:
    """Embed the clean input and perturbed variants into the feature store.

    Entries already stored with the same provenance are skipped; an interrupted run resumes.
    Text x audio combinations (pitch+adj, ...) need no extraction: `evaluate` composes them.

    \b
    Examples:
      featcache extract --corpus iemocap:demo-corpus --variant all
      featcache extract --corpus iemocap:/data/IEMOCAP --preset paper --fold 2 --variant pitch
      featcache extract --corpus iemocap:/data/IEMOCAP --preset paper --variant all --executor ray --address auto
    """
    from featcache.pipeline import plan_encoder_runs, run_extractions

    ex = _executor(executor, address, job_gpus, job_cpus, max_retries)
    study = _study(corpus_spec, labels, merge, cache_dir, preset, text_backbone, audio_backbone, pooling, max_samples,
                   pad_to, whisper_input, frozen, None, seed, "stratified")
    fold_list = _fold_list(folds, study.corpus)
    plans = plan_encoder_runs(study, modality=modality, folds=fold_list)
    reports = run_extractions(study, plans, variants=_variant_list(variants), split=split,
                              batch_size=batch_size or study.preset.extract_batch_size, num_workers=workers,
                              device=device, executor=ex, shard_size=shard_size)
    for r in reports:
        if r.status == "not-applicable":
            continue
        click.echo(f"{r.status:<8} {str(r.key):<60} {r.n_ids:>6} utt  {r.seconds:7.1f} s")
    click.echo(f"store: {cache_dir}")


def _fold_list(text: str, corpus) -> list[int] | None:  # type: ignore[no-untyped-def]  (Corpus, imported lazily)
    """``--fold`` of extract and finetune: ``all`` -> None, ``K`` or ``K,K,...`` -> the folds, once the corpus is
    known to have them.

    Args:
        text: The option as given.
        corpus: The study's corpus (:class:`~featcache.data.Corpus`).

    Returns:
        The folds, or None for all of them.

    Raises:
        FeatcacheError: Neither ``all`` nor whole numbers, or a fold the corpus does not have.
    """
    from featcache.folds import check_fold

    if text.strip().lower() == "all":
        return None
    try:
        folds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        folds = []
    if not folds:
        raise FeatcacheError(f"--fold {text!r}: not a fold number; {corpus.name} has folds "
                             f"1..{len(corpus.sessions)} (one per session), or pass all")
    for k in folds:
        check_fold(corpus, k)
    return list(dict.fromkeys(folds))


@cli.command("finetune", context_settings=CONTEXT)
@corpus_option()
@cache_dir_option
@encoder_options
@click.option("--modality", type=click.Choice(["text", "audio", "multimodal"]), required=True,
              help="Which of the paper's models to fine-tune (multimodal fine-tunes both backbones jointly).")
@click.option("--fold", "folds", required=True, metavar="K[,K...]|all",
              help="Fold K: tests on session K, trains on the others; several (1,2,3) or all make one run each.")
@click.option("--seed", "seeds", default="0", metavar="S[,S...]",
              help="Seed of initialisation, shuffling and dropout; several (0,1,2) make one run each.")
@click.option("--batch-size", type=int, default=None, help="[default: preset's: paper 16 text, 8 audio, 4 multimodal]")
@click.option("--lr", type=float, default=None, help="[default: preset's: paper 1e-6 text/audio, 5e-6 multimodal]")
@click.option("--max-epochs", type=int, default=None, help="[default: preset's]")
@click.option("--patience", type=int, default=None, help="Early-stopping patience on dev accuracy. [default: preset's, 10]")
@click.option("--grad-accum", type=int, default=None, help="Batches per optimiser step (for small memory).")
@click.option("--dev", "dev_mode", type=click.Choice(["stratified", "session", "speaker"]), default="stratified",
              help="How the early-stopping dev set is taken from the training sessions.")
@click.option("--dev-fraction", default=0.1, help="Share of training utterances in a stratified dev set.")
@click.option("--workers", default=1, help="DataLoader workers for decoding and cutting audio (a text-only model "
              "tokenises its transcripts once, in the main process).")
@click.option("--device", default="auto", help="cpu, cuda or auto.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              help="fp32, or bf16/fp16 autocast on CUDA; auto: bf16 on CUDA for backbones of 768 dims or more "
                   "(BERT-base, wav2vec2-base), else fp32.")
@executor_options(shards=False)
def finetune_cmd(corpus_spec: str, labels: str | None, merge: str | None, cache_dir: Path, preset: str,
                 text_backbone: str | None, audio_backbone: str | None, pooling: str | None,
                 max_samples: int | None, pad_to: int | None, whisper_input: str | None, modality: str, folds: str,
                 seeds: str, batch_size: int | None, lr: float | None, max_epochs: int | None,
                 patience: int | None, grad_accum: int | None, dev_mode: str, dev_fraction: float,
                 workers: int, device: str, precision: str, executor: str, address: str | None,
                 job_gpus: float | None, job_cpus: float, max_retries: int) -> None:
    """Fine-tune the text, audio or multimodal model on one fold (weighted CE, early stopping).

    The run is stored under CACHE/runs/ (safetensors + JSON); rerunning the same command resumes a
    killed run from its last completed epoch, or returns at once when it is finished. Then embed with
    `featcache extract --finetuned --fold K`. Several folds or seeds make one run each, in order or, with
    `--executor ray`, side by side (one GPU each).
    """
    from dataclasses import replace

    from featcache.executors import finished_run
    from featcache.pipeline import finetune_jobs

    ex = _executor(executor, address, job_gpus, job_cpus, max_retries)
    study = _study(corpus_spec, labels, merge, cache_dir, preset, text_backbone, audio_backbone, pooling, max_samples,
                   pad_to, whisper_input, False, None, 0, dev_mode)
    fold_list = _fold_list(folds, study.corpus)
    settings = replace(study.preset.train(modality), **{
        k: v for k, v in dict(batch_size=batch_size, lr=lr, max_epochs=max_epochs, patience=patience,
                              grad_accum=grad_accum).items() if v is not None})
    jobs = finetune_jobs(study, models=[modality], folds=fold_list, seeds=_seed_list(seeds), settings=settings,
                         fold_options={"dev": dev_mode, "dev_fraction": dev_fraction}, device=device, workers=workers,
                         precision=precision)
    for result in ex.run(study, jobs, progress=True):
        run = finished_run(result.value)
        res = run.result
        click.echo(f"{run.run_id}: best epoch {res['best_epoch']} of {res['epochs_run']}, "
                   f"dev accuracy {res['best_dev_acc']:.4f} ({res['n_train']} train, {res['n_dev']} dev)")
        click.echo(f"run: {run.path}")


# ----------------------------------------------------------------------------------------------
# heads, evaluation, report, run
# ----------------------------------------------------------------------------------------------


def study_options(f):  # type: ignore[no-untyped-def]
    """Options that define a study (which vectors, which heads)."""
    f = click.option("--dev", "dev_mode", type=click.Choice(["stratified", "session", "speaker"]),
                     default="stratified", help="How the early-stopping dev set is taken from the training sessions.")(f)
    f = click.option("--variant-seed", default=0, help="Seed of the perturbations (as given to extract --seed).")(f)
    f = click.option("--seeds", default=None, metavar="S,S,...", help="Seeds of the heads / fine-tuning runs. [default: preset's, 0,1,2]")(f)
    f = click.option("--frozen/--finetuned", default=None,
                     help="Frozen backbones (entries shared by folds) or per-fold fine-tuned ones. [default: preset's]")(f)
    f = click.option("--head-patience", type=click.IntRange(min=1), default=HEAD_SETTINGS.patience, show_default=True,
                     help="Early-stopping patience (epochs) of the heads trained on cached vectors.")(f)
    f = click.option("--head-epochs", type=click.IntRange(min=1), default=HEAD_SETTINGS.max_epochs, show_default=True,
                     help="Most epochs of the heads trained on cached vectors.")(f)
    f = click.option("--head-lr", type=click.FloatRange(min=0, min_open=True), default=HEAD_SETTINGS.lr,
                     show_default=True, help="AdamW learning rate of the heads trained on cached vectors.")(f)
    f = click.option("--head-batch-size", type=click.IntRange(min=1), default=HEAD_SETTINGS.batch_size,
                     show_default=True,
                     help="Batch size of the heads trained on cached vectors (other settings train other heads; "
                          "pass the same ones to evaluate).")(f)
    return f


def _corpus_flags(labels: str | None, merge: str | None) -> tuple[str, ...]:
    """The corpus options as given, repeated in every command the study prints."""
    return (*(("--labels", labels) if labels is not None else ()), *(("--merge", merge) if merge is not None else ()))


def _study(corpus_spec, labels, merge, cache_dir, preset, text_backbone, audio_backbone, pooling,  # type: ignore[no-untyped-def]
           max_samples, pad_to, whisper_input, frozen, seeds, variant_seed, dev_mode, head_batch_size=None,
           head_lr=None, head_epochs=None, head_patience=None):
    """The :class:`~featcache.study.Study` that a command's corpus, store, encoder and study options define."""
    from featcache.cache import FeatureStore
    from featcache.study import Study

    corpus = load_corpus_from_options(corpus_spec, labels, merge)
    p = _preset_from_options(preset, text_backbone, audio_backbone, pooling, max_samples, whisper_input)
    heads = {k: v for k, v in dict(batch_size=head_batch_size, lr=head_lr, max_epochs=head_epochs,
                                   patience=head_patience).items() if v is not None}
    return Study(corpus=corpus, store=FeatureStore(cache_dir), preset=p,
                 frozen=p.frozen if frozen is None else frozen, seeds=_seed_list(seeds) if seeds else p.seeds,
                 fold_options={"dev": dev_mode}, options=p.encoder_options(pad_to=pad_to), variant_seed=variant_seed,
                 head_settings=dataclasses.replace(HEAD_SETTINGS, **heads), corpus_flags=_corpus_flags(labels, merge))


def _seed_list(text: str) -> tuple[int, ...]:
    """``0,1,2`` -> (0, 1, 2).

    Raises:
        FeatcacheError: A part that is not a whole number.
    """
    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise FeatcacheError(f"--seeds {text!r}: write whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise FeatcacheError(f"--seeds {text!r}: give at least one seed, e.g. 0")
    return seeds


@cli.command("train-heads", context_settings=CONTEXT)
@corpus_option()
@cache_dir_option
@encoder_options
@study_options
@click.option("--models", default=",".join(ALL_MODELS),
              help="Heads to train on the stored clean vectors of each fold and seed (those the corpus's "
                   "modalities allow).")
@click.option("--device", default="cpu", help="cpu or cuda.")
def train_heads_cmd(models: str, device: str, **kw: object) -> None:
    """Train the paper's heads and fusion ablations on cached vectors (seconds per fold on a CPU).

    text/audio/multimodal: the paper's heads; late: average of the unimodal probabilities; score:
    learned weights over the unimodal scores; gated: a per-utterance gate between modalities; mdrop:
    the multimodal head trained with modality dropout. Weighted cross-entropy and early stopping on the
    dev set, as in the paper. Trained heads are kept in the store and not retrained.
    """
    from featcache.study import train_heads

    study = _study(**kw)  # type: ignore[arg-type]
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    usable = study.models(wanted)
    if usable != wanted:
        click.echo(f"{study.corpus.name}: modalities {', '.join(study.corpus.modalities) or 'none'}; "
                   f"training {', '.join(usable) or 'no head'}")
    rows = train_heads(study, models=usable, device=device)
    for r in rows:
        acc = r.get("best_dev_acc")
        click.echo(f"fold {r['fold']} seed {r['seed']} {r['model']:<10} "
                   + (f"dev acc {acc:.4f} (epoch {r['best_epoch']})" if acc is not None else "no training needed"))
    click.echo(f"heads: {study.store.heads_root(study.key)}")


@cli.command("evaluate", context_settings=CONTEXT)
@corpus_option()
@cache_dir_option
@encoder_options
@study_options
@click.option("--condition", "conditions", multiple=True, metavar="COND",
              help="Condition to evaluate (repeatable), e.g. adj, pitch, pitch+adj. [default: the paper's conditions "
                   "(Table 6 rows; missing ones are listed with the command that makes them), then every other "
                   "variant the store holds]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("featcache-report"),
              help="Folder for predictions.h5, results.csv and the report.")
@click.option("--ablation", "ablations", multiple=True, metavar="NAME",
              help="Also evaluate an ablation trained by `featcache ablate` (repeatable; its name or label, see "
                   "`featcache ablate --list`); it is the model ablate:NAME in the predictions and the report.")
def evaluate_cmd(conditions: tuple[str, ...], out: Path, ablations: tuple[str, ...], **kw: object) -> None:
    """Evaluate every fold x seed x model x condition from the store only (no encoder is loaded).

    Writes one tidy results file (one row per fold/seed/model/condition), the per-utterance predictions
    and the report. Missing entries are listed with the exact command that makes them.
    """
    from featcache.pipeline import evaluate_and_report

    study = _study(**kw)  # type: ignore[arg-type]
    evaluate_and_report(study, out=out, conditions=list(conditions) or None, ablations=ablations,
                        title=f"featcache report: {study.corpus.name}", echo=click.echo)
    click.echo(f"results and report: {out}")
    click.echo(f"open: {out / 'report.html'}")


@cli.command("ablate", context_settings=CONTEXT)
@corpus_option()
@cache_dir_option
@encoder_options
@study_options
@click.option("--list", "list_", is_flag=True, help="List this study's ablations in the store and exit.")
@click.option("--name", "label", default=None, metavar="LABEL",
              help="A label for the ablation (the name is LABEL-<digest of the options>). [default: the fusion, or "
                   "the one modality]")
@click.option("--fusion", type=click.Choice(["concat", "late", "score", "gated"]), default="concat",
              help="concat: the paper's multimodal head (bodies concatenated, FC layers); late: average of the "
                   "unimodal probabilities; score: learned weights over the unimodal scores; gated: a per-utterance "
                   "gate.")
@click.option("--modalities", type=click.Choice(["both", "text", "audio"]), default="both",
              help="The inputs the head reads (one modality: a unimodal head, compared with the paper's).")
@click.option("--hidden", default=",".join(map(str, HIDDEN)), metavar="N,N,...",
              help="Layer sizes of each modality's body.")
@click.option("--fusion-hidden", type=click.IntRange(min=1), default=FUSION_HIDDEN,
              help="Size of the layer after the fusion (concat, gated).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Body dropout of both modalities. [default: the paper's, text 0 and audio 0.2]")
@click.option("--modality-dropout", type=click.FloatRange(0, 1), default=0.0,
              help="Probability of zeroing one modality of a training example (concat, gated).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="AdamW learning rate. [default: --head-lr]")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Most epochs. [default: --head-epochs]")
@click.option("--train-on", default=None, metavar="V,V,...",
              help="Train on attacks: mix the stored training vectors of these variants (e.g. adj,pitch) into the "
                   "training set. [default: clean only]")
@click.option("--mix", type=click.FloatRange(0, 1), default=0.5,
              help="With --train-on: probability that a training utterance's vector of a modality is replaced by "
                   "its attacked one (drawn once per seed, modality and utterance).")
@click.option("--text-pooling", type=click.Choice(["cls", "mean"]), default=None,
              help="Train and evaluate the variant on text vectors pooled this way while the paper's heads keep the "
                   "study's --pooling (frozen backbones; the entries must be extracted with that pooling). "
                   "[default: the study's]")
@click.option("--condition", "conditions", multiple=True, metavar="COND",
              help="Condition to evaluate (repeatable). [default: as `featcache evaluate`]")
@click.option("--resamples", type=click.IntRange(min=0), default=1000,
              help="Bootstrap resamples of the confidence intervals (0: none).")
@click.option("--device", default="cpu", help="cpu or cuda.")
def ablate_cmd(list_: bool, label: str | None, fusion: str, modalities: str, hidden: str, fusion_hidden: int,
               dropout: float | None, modality_dropout: float, lr: float | None, epochs: int | None, train_on: str | None,
               mix: float, text_pooling: str | None, conditions: tuple[str, ...], resamples: int, device: str,
               **kw: object) -> None:
    """Train a head or fusion variant over all folds x seeds and compare it with the paper's heads.

    The variant is trained on the study's cached vectors (with --train-on, on a mix of clean and attacked
    training vectors), evaluated under every condition, and printed side by side with the paper's text,
    audio and multimodal heads: Avg. accuracy, impact per attack, and the paired bootstrap CI of the
    differences. It is kept in the store under its name; add it to a report with
    `featcache evaluate --ablation NAME`.

    \b
    Example:
      featcache ablate --corpus iemocap:demo-corpus --train-on adj,pitch --mix 0.5
    """
    from featcache.ablate import AblationSpec, list_ablations, parse_variant_list, run_ablation

    study = _study(**kw)  # type: ignore[arg-type]
    if list_:
        infos = list_ablations(study)
        if not infos:
            click.echo(f"{study.store.root}: no ablations of this study yet")
        for i in infos:
            click.echo(f"{i.ablation.name:<28} {i.trained}/{i.expected} heads  {i.description}")
        return
    try:
        sizes = tuple(int(x) for x in hidden.split(",") if x.strip())
    except ValueError:
        raise FeatcacheError(f"--hidden {hidden!r}: write layer sizes separated by commas, e.g. 512,256") from None
    spec = AblationSpec(fusion=fusion, modalities=("text", "audio") if modalities == "both" else (modalities,),
                        hidden=sizes, fusion_hidden=fusion_hidden, dropout=dropout, modality_dropout=modality_dropout,
                        lr=lr, epochs=epochs, train_on=parse_variant_list(train_on or ""), mix=mix,
                        pooling=text_pooling, label=label)
    result = run_ablation(study, spec, conditions=list(conditions) or None, device=device, n_resamples=resamples,
                          echo=click.echo)
    click.echo(f"ablation: {result.ablation.folder(study)}; in a report: "
               f"{study.command('evaluate')} --ablation {result.ablation.name}")


@cli.command("report", context_settings=CONTEXT)
@click.option("--predictions", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=Path("featcache-report/predictions.h5"), help="Predictions written by `featcache evaluate`.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder. [default: the predictions' folder]")
@click.option("--title", default="featcache report", help="Title of the report.")
@corpus_option(required=False)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="FEATCACHE_CACHE",
              show_envvar=True,
              help="Feature store the predictions were evaluated from: its perturbation records replay the perturbed "
                   "audio of the examples. [default: none]")
@click.option("--variant-seed", type=int, default=None,
              help="Seed of the perturbations to replay (as given to extract --seed). [default: any stored]")
def report_cmd(predictions: Path, out: Path | None, title: str, corpus_spec: str | None, labels: str | None,
               merge: str | None, cache_dir: Path | None, variant_seed: int | None) -> None:
    """Write report.html, tables (Markdown, CSV, LaTeX), examples and plots from saved predictions.

    With --corpus (its wavs) and --cache-dir (the perturbation records), report.html gets audio
    players for the examples' clean and perturbed audio; without them it says once that they are left out.
    """
    from featcache.metrics import Predictions
    from featcache.report import StoreAudio, write_report

    out = out or predictions.parent
    audio = None
    if corpus_spec:
        from featcache.cache import FeatureStore

        corpus = load_corpus_from_options(corpus_spec, labels, merge)
        store = FeatureStore(cache_dir) if cache_dir is not None else None
        audio = StoreAudio(corpus, store, variant_seed=variant_seed)
    written = write_report(Predictions.load(predictions), out, title=title, audio=audio)
    for note in written.notes:
        click.echo(f"note: {note}")
    click.echo(f"report: {out}")
    click.echo(f"open: {written.html}")


@cli.command("run", context_settings=CONTEXT)
@corpus_option(required=False)
@cache_dir_option
@encoder_options
@study_options
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Variants to extract and evaluate (repeatable; 'all' for every registered one). [default: preset's]")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder. [default: featcache-report/<preset>]")
@click.option("--workers", default=1, help="DataLoader workers for decoding and perturbing.")
@click.option("--device", default="auto", help="cpu, cuda or auto.")
@executor_options(shards=True)
def run_cmd(variants: tuple[str, ...], out: Path | None, workers: int, device: str, executor: str,
            address: str | None, shard_size: int, job_gpus: float | None, job_cpus: float, max_retries: int,
            **kw: object) -> None:
    """Run the whole study: data -> folds -> finetune (or frozen) -> extract -> heads -> evaluate -> report.

    Whatever the store already holds is skipped, so a rerun after a crash or after adding one variant
    does only the missing work. Without --corpus, the demo corpus is written to ./demo-corpus first.

    With --executor ray, every fine-tuning run and every shard of an entry is a Ray task (one GPU each
    when the cluster has GPUs); extraction with a fine-tuned backbone starts as soon as its run is done.

    \b
    Example (the README's main command):
      featcache run --preset demo
    """
    import time

    from featcache.pipeline import run_study

    t0 = time.perf_counter()
    ex = _executor(executor, address, job_gpus, job_cpus, max_retries)
    if not kw.get("corpus_spec"):
        from featcache.demo import write_demo_corpus

        root = Path("demo-corpus")
        if not root.is_dir():
            click.echo("writing the demo corpus to ./demo-corpus")
            write_demo_corpus(root)
        kw["corpus_spec"] = f"iemocap:{root}"
    study = _study(**kw)  # type: ignore[arg-type]
    out = out or Path("featcache-report") / study.preset.name
    run_study(study, variants=list(variants) or None, out=out, workers=workers, device=device, echo=click.echo,
              executor=ex, shard_size=shard_size)
    click.echo(f"done in {time.perf_counter() - t0:.0f} s in all")
    click.echo(f"tables: {out / 'tables.md'} (also .csv, .tex); examples: {out / 'examples.md'}; "
               f"summary: {out / 'summary.md'}; plots: {out}/*.png, *.svg")
    click.echo(f"open: {out / 'report.html'}")


# ----------------------------------------------------------------------------------------------
# variants
# ----------------------------------------------------------------------------------------------


def variant_text_options(f):  # type: ignore[no-untyped-def]
    """``--mask-token`` and ``--spacy-model``: what the text variants insert and how they find words."""
    from featcache.perturb.base import DEFAULT_MASK_TOKEN
    from featcache.perturb.text_analysis import DEFAULT_MODEL

    f = click.option("--spacy-model", default=DEFAULT_MODEL, help="spaCy pipeline for part-of-speech variants.")(f)
    f = click.option("--mask-token", default=DEFAULT_MASK_TOKEN, help="The text backbone tokenizer's mask token.")(f)
    return f


@cli.group("variants", cls=_Group, context_settings=CONTEXT, invoke_without_command=True)
@click.pass_context
def variants(ctx: click.Context) -> None:
    """Perturbation variants; without a subcommand, list them."""
    if ctx.invoked_subcommand is None:
        from featcache.perturb.inspect import variants_hint, variants_table

        click.echo(variants_table())
        click.echo("\n" + variants_hint())


@variants.command("show", context_settings=CONTEXT)
@click.argument("utt_id")
@click.option("--variant", "variant_spec", required=True, help="Variant spec, e.g. adj, pitch, noise:snr_db=10.")
@corpus_option()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the perturbed audio (float wav); required for audio variants.")
@variant_text_options
@cache_dir_option
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Variant seed.")
def variants_show(*, utt_id: str, variant_spec: str, corpus_spec: str, labels: str | None, merge: str | None,
                  out: Path | None, mask_token: str, spacy_model: str, cache_dir: Path, seed: int) -> None:
    """Apply one variant to utterance UTT_ID and print what it did.

    Text variants print the original and perturbed text; audio variants write the perturbed wav to
    --out. Both print the record, which replays the perturbation exactly.
    """
    from featcache.perturb.inspect import show_variant

    corpus = load_corpus_from_options(corpus_spec, labels, merge)
    shown = show_variant(corpus, utt_id, variant=variant_spec, seed=seed, out=out, mask_token=mask_token,
                         spacy_model=spacy_model, cache_dir=cache_dir)
    click.echo(shown.format())


@variants.command("stats", context_settings=CONTEXT)
@corpus_option()
@variant_text_options
@cache_dir_option
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Variant seed.")
def variants_stats(*, corpus_spec: str, labels: str | None, merge: str | None, mask_token: str, spacy_model: str,
                   cache_dir: Path, seed: int) -> None:
    """Share of nouns and adjectives among all spaCy tokens, and utterances each text attack changes."""
    from featcache.perturb.inspect import corpus_text_stats

    corpus = load_corpus_from_options(corpus_spec, labels, merge)
    result = corpus_text_stats(corpus, seed=seed, mask_token=mask_token, spacy_model=spacy_model, cache_dir=cache_dir)
    click.echo(f"corpus: {corpus_spec}  seed: {seed}")
    click.echo(result.format())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featcache")


if __name__ == "__main__":  # pragma: no cover
    main()
