"""The ``featcache`` command line: one command or group per stage of the pipeline, one module per group.

Every error caused by input (a missing folder, a malformed line, an unusable cache entry) is printed
as one line, ``Error: <file>: <what is wrong>; <what to do>``, and exits with status 1. The library's
errors (:class:`~featcache.errors.FeatcacheError`) are shown as they are: they speak the library's terms,
which the study options' flags mirror (``head_lr`` is ``--head-lr``).

Modules: :mod:`.options` (click options built from :class:`~featcache.options.StudyOptions`), then one
per stage: :mod:`.data` (``demo-data``, ``data``, ``presets``), :mod:`.store` (``cache``), :mod:`.speech` (``transcribe``),
:mod:`.encoders` (``extract``, ``finetune``), :mod:`.study` (``train-heads``, ``evaluate``, ``ablate``,
``run``), :mod:`.report` (``report``), :mod:`.perturb` (``variants``).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from featcache import __version__
from featcache.cli.options import CONTEXT, Group

__all__ = ["SHARD_SIZE_DEFAULT", "ablate_cmd", "cli", "main", "variants"]


@click.group(cls=Group, context_settings=CONTEXT)
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
    (or all of them with `run`). `presets` lists the named settings, `variants` the perturbations.
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


# the command groups register themselves on `cli` (imported after it, in pipeline order)
from featcache.cli import data, store, speech, encoders, study, report, perturb  # noqa: E402,F401,I001
from featcache.cli.options import SHARD_SIZE_DEFAULT  # noqa: E402
from featcache.cli.study import _study, ablate_cmd  # noqa: E402,F401
from featcache.cli.perturb import variants  # noqa: E402


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="featcache")


if __name__ == "__main__":  # pragma: no cover
    main()
