"""``featcache cache``: list, check and clean the feature store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from featcache.cli import cli
from featcache.cli.options import CONTEXT, Group, cache_dir_option


@cli.group(cls=Group, context_settings=CONTEXT)
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
    dims = [f"{i.layers}x{i.dim}" if i.layers else str(i.dim) for i in infos]  # layer-wise: hidden states x dim
    dw = max(5, *(len(d) for d in dims))
    click.echo(f"{'status':<9} {'run':<28} {'fold':<7} {'variant':<22} {'rows':>6} {'dim':>{dw}} {'size':>9}  "
               f"{'backbone':<{bw}}  settings")
    total = 0
    for i, backbone, setting, dim in zip(infos, backbones, settings, dims, strict=True):
        total += i.size_bytes
        fold = "shared" if i.fold is None else str(i.fold)
        click.echo(
            f"{i.status:<9} {i.run[:28]:<28} {fold:<7} {i.variant[:22]:<22} {i.rows:>6} {dim:>{dw}} "
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
    """Check every entry (opens, shapes, finite values, checksum), every finished fine-tuning run (config,
    result, head, encoder weights' checksum), every text analysis and trained head (their files' checksums),
    and the chain between them: entries against the run weights and text analysis they were made from,
    heads against their place and the entries they were trained on; exit 1 if anything is broken or stale."""
    from featcache.cache import FeatureStore
    from featcache.lineage import verify_lineage

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
    findings = verify_lineage(store, infos)
    for f in findings:
        click.echo(f"{'STALE' if f.problem.startswith(('stale', 'made from')) else 'BROKEN':<8} {f.line()}")
    heads = len(store.head_records())
    if heads or findings:
        click.echo(f"heads and lineage: {heads} head(s) checked, {len(findings)} finding(s)")
    if broken or bad_runs or findings:
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
