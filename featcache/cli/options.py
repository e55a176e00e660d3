"""Click options of the command line, built from the one definition of each option.

The study options (:class:`~featcache.options.StudyOptions`) become click options here, field by field
(:func:`study_option_set`): their flags, help, defaults and ranges come from each field's
:class:`~featcache.options.Flag`, and a command reads them back with :func:`study_from` into the same
options that :func:`featcache.api.open_study` takes. Options of the executors and the common group
class live here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from featcache.errors import FeatcacheError
from featcache.options import COMMAND_FLAGS, CORPUS_FIELDS, Flag, StudyOptions, option_fields

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}
SHARD_SIZE_DEFAULT = 256  # featcache.extract.DEFAULT_SHARD_SIZE (not imported here: it would load torch)


class Group(click.Group):
    """A click group that turns :class:`FeatcacheError` into a one-line error, and so a write that failed on
    a full disk or a read-only folder anywhere (:func:`featcache.cache.atomic.write_failure` names the file)."""

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except FeatcacheError as e:
            logging.getLogger("featcache").debug("the error's traceback (shown with -v)", exc_info=True)
            raise click.ClickException(str(e)) from None
        except OSError as e:
            from featcache.cache.atomic import write_failure

            failure = write_failure(e, e.filename or ".") if e.filename is not None else None
            if failure is None:
                raise
            logging.getLogger("featcache").debug("the error's traceback (shown with -v)", exc_info=True)
            raise click.ClickException(str(failure)) from None


def _click_type(flag: Flag) -> Any:
    if flag.kind == "choice":
        return click.Choice(list(flag.choices))
    if flag.kind == "path":
        return click.Path(file_okay=False, path_type=Path)
    if flag.kind in ("int", "float"):
        if flag.minimum is None and flag.maximum is None:
            return int if flag.kind == "int" else float
        if flag.kind == "int":
            return click.IntRange(min=flag.minimum, max=flag.maximum)
        return click.FloatRange(min=flag.minimum, max=flag.maximum, min_open=flag.min_open, max_open=flag.max_open)
    return str


def _option(field: Any, *, command: str | None, required: bool) -> Callable[[Any], Any]:
    """The click option of one :class:`StudyOptions` field (named as ``command`` names it)."""
    flag: Flag = field.metadata["flag"]
    name = COMMAND_FLAGS.get(command or "", {}).get(field.name, flag.name)
    help_text = flag.help + (f" [default: {flag.default_help}]" if flag.default_help else "")
    if flag.kind == "bool":
        return click.option(f"{name}/{flag.off}", field.name, default=field.default, help=help_text)
    default = None if field.default == "" else field.default  # no default (--corpus): nothing to show
    return click.option(name, field.name, type=_click_type(flag), default=default, required=required,
                        metavar=flag.metavar, envvar=flag.envvar, show_envvar=flag.envvar is not None,
                        help=help_text)


def study_option_set(command: str | None = None, *, fields: Sequence[str] | None = None,
                     corpus_required: bool = True) -> Callable[[Any], Any]:
    """Decorate a command with the study options it takes, in field order.

    Args:
        command: ``extract`` or ``finetune`` (their own field sets and flag names,
            :data:`~featcache.options.COMMAND_FIELDS`), or None for a study command (every field).
        fields: Only these fields (e.g. :data:`~featcache.options.CORPUS_FIELDS`).
        corpus_required: Whether ``--corpus`` must be given.
    """
    chosen = [f for f in option_fields(command) if fields is None or f.name in fields]

    def deco(f: Any) -> Any:
        for field in reversed(chosen):
            f = _option(field, command=command, required=corpus_required and field.name == "corpus")(f)
        return f

    return deco


corpus_options = study_option_set(fields=CORPUS_FIELDS)
"""``--corpus``, ``--labels`` and ``--merge`` (commands that read a corpus but are no study)."""
optional_corpus_options = study_option_set(fields=CORPUS_FIELDS, corpus_required=False)
cache_dir_option = study_option_set(fields=("cache_dir",))


def study_options_of(kw: dict[str, Any], command: str | None = None) -> StudyOptions:
    """Take the study options out of a command's keyword arguments (they are removed from ``kw``).

    Raises:
        FeatcacheError: An option that fails its check.
    """
    names = [f.name for f in option_fields(command)]
    return StudyOptions.from_text(**{n: kw.pop(n) for n in names if n in kw})


def study_from(kw: dict[str, Any], command: str | None = None):  # type: ignore[no-untyped-def]
    """The :class:`~featcache.study.Study` of a command's study options (taken out of ``kw``)."""
    from featcache.study import Study

    return Study.open(study_options_of(kw, command))


def load_corpus_from_options(corpus: str, labels: str | None, merge: str | None):  # type: ignore[no-untyped-def]
    """The :class:`~featcache.data.Corpus` of the corpus options (commands that are no study)."""
    from featcache.data import load_corpus

    o = StudyOptions.from_text(corpus=corpus, labels=labels, merge=merge)
    return load_corpus(o.corpus, labels=o.labels, merge=dict(o.merge) if o.merge is not None else None)


def executor_options(*, shards: bool):  # type: ignore[no-untyped-def]
    """``--executor`` and the options of the Ray executor (see :mod:`featcache.executors`); with ``shards``,
    ``--shard-size`` too (commands that extract)."""

    def deco(f):  # type: ignore[no-untyped-def]
        f = click.option("--max-retries", type=click.IntRange(min=0), default=3,
                         help="Ray: times a job whose worker died (a killed process, a lost node) is started again.")(f)
        f = click.option("--job-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
                         help="Ray: CPUs each job asks for (torch uses as many threads in it).")(f)
        f = click.option("--job-gpus", type=click.FloatRange(min=0), default=None,
                         help="Ray: GPUs each fine-tuning or encoding job asks for. [default: 1 when the cluster has "
                              "GPUs, else 0]")(f)
        if shards:
            f = click.option("--shard-size", type=click.IntRange(min=1), default=SHARD_SIZE_DEFAULT,
                             help="Utterances per shard of an entry: Ray extracts an entry's shards in parallel. "
                                  "Batches never cross a shard, so every executor stores the same vectors.")(f)
        f = click.option("--address", default=None, metavar="ADDR", envvar="RAY_ADDRESS", show_envvar=True,
                         help="Ray: the cluster to join (auto, HOST:6379, ray://HOST:10001). [default: a new Ray "
                              "instance on this machine]")(f)
        f = click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                         help="local: every job in order in this process; ray: every fine-tuning run and extraction "
                              "shard as a Ray task, one GPU each (pip install 'featcache[ray]').")(f)
        return f

    return deco


def executor_from(kw: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The :mod:`featcache.executors` executor of a command's executor options (taken out of ``kw``).

    Raises:
        FeatcacheError: ``ray`` without Ray installed (one line saying how to install it).
    """
    from featcache.executors import make_executor

    return make_executor(kw.pop("executor"), address=kw.pop("address"), job_gpus=kw.pop("job_gpus"),
                         job_cpus=kw.pop("job_cpus"), max_retries=kw.pop("max_retries"))


def fold_list(text: str, corpus) -> list[int] | None:  # type: ignore[no-untyped-def]  (Corpus, imported lazily)
    """``--fold`` of extract and finetune: ``all`` -> None, ``K`` or ``K,K,...`` -> the folds, once the corpus is
    known to have them.

    Raises:
        FeatcacheError: Neither ``all`` nor whole numbers, or a fold the corpus does not have.
    """
    from featcache.data.corpus import fold_noun
    from featcache.folds import check_fold

    if text.strip().lower() == "all":
        return None
    try:
        folds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        folds = []
    if not folds:
        raise FeatcacheError(f"--fold {text!r}: not a fold number; {corpus.name} has folds "
                             f"1..{len(corpus.sessions)} (one per {fold_noun(corpus.sessions)[:-1]}), or pass all")
    for k in folds:
        check_fold(corpus, k)
    return list(dict.fromkeys(folds))
