"""Running a study's independent jobs: in order in this process, or as Ray tasks on a cluster.

A :class:`Job` is a small picklable description, ``(kind, args)`` plus the names of the jobs it waits
for; :func:`run_job` does one. The pipeline builds a study's job graph once and hands it to an
executor, so both executors run the very same job functions:

* ``local`` (:class:`LocalExecutor`, the default): every job in order, in this process, with the
  caller's :class:`~featcache.study.Study`; no Ray needed.
* ``ray`` (:class:`RayExecutor`, ``pip install 'featcache[ray]'``): every job is a Ray task asking for one
  GPU when the cluster has GPUs, else one CPU. A job's dependencies are passed as ``ObjectRef``
  arguments, so Ray starts it when they are done; a task whose worker dies is retried
  (``max_retries``). Tasks get a :class:`StudySpec` (paths and settings, not the corpus itself) and
  rebuild the study once per worker process, so every node must see the corpus and the store at the
  same paths (a shared filesystem).

Kinds of jobs:

* ``finetune``: one fine-tuning run (model x fold x seed); its value is the run's folder.
* ``extract``: one whole entry (:func:`~featcache.extract.extract`); its value is the
  :class:`~featcache.extract.ExtractReport`.
* ``shard``: one shard of an entry (``extract(shard=i)``), written to the store's shard file.
* ``assemble``: commits an entry from its shards (:meth:`~featcache.cache.FeatureStore.assemble_shards`),
  extracting any shard that is not stored first, so it also finishes after shards were lost.

An extraction job whose backbone is fine-tuned names the ``finetune`` job it waits for and takes the
run from that job's value. Every job is idempotent: the store's content keys and locks make a retried or
duplicated job find its work done, or do it again with the same bytes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from featcache.errors import FeatcacheError
from featcache.extract import EncoderRun, ExtractReport, entry_shards, extract, plan_entry
from featcache.options import StudyOptions
from featcache.study import Study

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
KINDS = ("finetune", "extract", "shard", "assemble")
RAY_INSTALL = "pip install 'featcache[ray]'"


@dataclass(frozen=True)
class StudySpec:
    """What a worker needs to rebuild a :class:`~featcache.study.Study`: its options (the corpus is read
    again on the worker, not shipped) and the corpus's fingerprint, checked after the rebuild.

    Attributes:
        options: The study's options, with the store's path made absolute.
        fingerprint: The corpus's fingerprint.
    """

    options: StudyOptions
    fingerprint: str

    @classmethod
    def of(cls, study: Study) -> "StudySpec":
        """The spec that rebuilds ``study``."""
        return cls(options=study.options.replace(cache_dir=str(Path(study.store.root).absolute()),
                                                 corpus=study.corpus.name),
                   fingerprint=study.corpus.fingerprint)

    def build(self) -> Study:
        """The study, read again from its options.

        Raises:
            FeatcacheError: The corpus read here differs from the caller's (another copy at that path).
        """
        study = Study.open(self.options)
        if study.corpus.fingerprint != self.fingerprint:
            raise FeatcacheError(f"{self.options.corpus}: the corpus read on this machine differs from the one the "
                                 "study was started with; give every node the same copy (a shared filesystem)")
        return study


@dataclass(frozen=True)
class Job:
    """One unit of work (see the module docstring for the kinds).

    Attributes:
        name: Unique within its graph; readable (``finetune text f1 s0``).
        kind: ``finetune``, ``extract``, ``shard`` or ``assemble``.
        args: The job's arguments (picklable: numbers, strings, small dataclasses).
        deps: Names of the jobs it waits for; their values reach :func:`run_job` in this order.
    """

    name: str
    kind: str
    args: dict[str, Any] = field(hash=False)
    deps: tuple[str, ...] = ()


@dataclass
class JobResult:
    """What one job gave back, when it ran (wall-clock seconds since the epoch) and the CPU seconds its
    process spent on it (its own threads; DataLoader worker processes not counted)."""

    job: Job
    value: Any
    started: float
    finished: float
    cpu: float = 0.0


class Executor(Protocol):
    """Runs a job graph (jobs listed after the jobs they wait for)."""

    name: str

    def run(self, study: Study, jobs: Sequence[Job], *, progress: bool = True) -> list[JobResult]: ...


# -- the job functions -------------------------------------------------------------------------------------


def run_job(study: Study, job: Job, deps: Sequence[Any] = (), *, progress: bool = True) -> Any:
    """Do one job.

    Args:
        study: The study.
        job: The job.
        deps: The values of the jobs it waits for, in ``job.deps`` order.
        progress: Progress bars of the work itself.

    Returns:
        A ``finetune`` job: the run's folder (``str``); the others: an :class:`~featcache.extract.ExtractReport`.

    Raises:
        FeatcacheError: An unknown kind, or what the work raises.
    """
    if job.kind == "finetune":
        return _finetune_job(study, job.args, progress=progress)
    if job.kind in ("extract", "shard", "assemble"):
        return _extract_job(study, job.kind, job.args, deps, progress=progress)
    raise FeatcacheError(f"job {job.name}: unknown kind {job.kind!r}; known: {', '.join(KINDS)}")


def _finetune_job(study: Study, a: dict[str, Any], *, progress: bool) -> str:
    import numpy as np

    from featcache.finetune import finetune

    # wav2vec 2.0 draws its training masks (SpecAugment) from numpy's global generator, which the training
    # loop does not seed: seeded here, a run's weights do not depend on what its process ran before (a Ray
    # worker runs many jobs), so every executor makes the same run
    np.random.seed(a["seed"])
    run = finetune(study.corpus, study.store, preset=study.preset, modality=a["model"], fold=a["fold"], seed=a["seed"],
                   settings=a.get("settings"), options=a.get("options", study.encoder_options),
                   fold_options=a.get("fold_options", study.fold_options), device=a.get("device", "auto"),
                   num_workers=a.get("num_workers", 0), precision=a.get("precision", "auto"), progress=progress)
    return str(run.path)


def finished_run(path: str | os.PathLike[str]) -> Any:
    """The :class:`~featcache.finetune.FinetuneRun` in a run folder a ``finetune`` job returned.

    Raises:
        DamagedError: Its ``config.json`` does not read.
    """
    from featcache.cache.integrity import read_json_object
    from featcache.errors import DamagedError
    from featcache.finetune import FinetuneRun

    cfg, problem = read_json_object(Path(path) / "config.json")
    if problem:
        raise DamagedError(Path(path) / "config.json", problem, what="fine-tuning run")
    return FinetuneRun(Path(path), cfg)


def _encoder_run(study: Study, a: dict[str, Any], deps: Sequence[Any]) -> tuple[EncoderRun, dict[str, Any] | None]:
    """The job's encoder run and fold options: given, or from the fine-tuning run it waited for."""
    if a.get("run") is not None:
        return a["run"], a.get("fold_options")
    ft = finished_run(deps[0])
    m = a["modality"]
    return study.finetuned_encoder(m, ft), ft.config["fold_options"]


_ENCODER: dict[str, Any] = {}


def _encoder(planned: Any, run: EncoderRun) -> Any:
    """The job's encoder: the one the previous job of this process loaded when it is the same, so a
    process that runs an encoder's entries (or shards) one after another loads it once."""
    from featcache.backbones.encoders import load_encoder

    key = repr((str(planned.resolved.path), planned.resolved.weights_hash, run.options, str(run.weights)))
    if key not in _ENCODER:
        _ENCODER.clear()  # one at a time: encoders are big
        _ENCODER[key] = load_encoder(planned.resolved, options=run.options, weights=run.weights)
    return _ENCODER[key]


def _extract_job(study: Study, kind: str, a: dict[str, Any], deps: Sequence[Any], *, progress: bool) -> ExtractReport:
    corpus, store = study.corpus, study.store
    run, fold_options = _encoder_run(study, a, deps)
    kw: dict[str, Any] = dict(run=run, variant=a["variant"], fold=a["fold"], split=a.get("split"),
                              seed=study.variant_seed, fold_options=fold_options)
    planned = plan_entry(corpus, store, **kw)
    if planned is None:
        return ExtractReport(key=_no_key(run, a), status="not-applicable")
    key = planned.key
    if store.has(key) and not store.damage(key):
        return ExtractReport(key=key, status="skipped", n_ids=len(planned.ids), path=store.path(key))
    size = a["shard_size"]
    work = dict(kw, batch_size=a.get("batch_size", 8), num_workers=a.get("num_workers", 0),
                device=a.get("device", "auto"), progress=progress, planned=planned, shard_size=size)
    if kind == "extract":
        return extract(corpus, store, **work, encoder=_encoder(planned, run))
    shards = entry_shards(corpus, planned.ids, modality=run.modality, shard_size=size)
    if kind == "shard":
        part = shards[a["shard"]] if a["shard"] < len(shards) else []
        if part and store.has_shard(key, index=a["shard"], ids=part):  # (no encoder is loaded for that)
            return ExtractReport(key=key, status="skipped", n_ids=len(part))
        return extract(corpus, store, **work, encoder=_encoder(planned, run), shard=a["shard"])
    t0 = time.perf_counter()
    for i, part in enumerate(shards):  # a shard lost since its job ran (or never run): extract it here
        if not store.has_shard(key, index=i, ids=part):
            log.info("%s: shard %d is not stored; extracting it before assembling", key, i)
            extract(corpus, store, **work, encoder=_encoder(planned, run), shard=i)
    status = store.assemble_shards(key, shards=shards)
    return ExtractReport(key=key, status=status, n_ids=len(planned.ids), n_written=len(planned.ids),
                         seconds=time.perf_counter() - t0, path=store.path(key))


def _no_key(run: EncoderRun, a: dict[str, Any]) -> Any:
    from featcache.cache import EntryKey

    return EntryKey(run=run.name, fold=a["fold"], variant=a["variant"])


# -- executors ---------------------------------------------------------------------------------------------


def _check_graph(jobs: Sequence[Job]) -> None:
    """Every job's name is unique and its dependencies come before it.

    Raises:
        FeatcacheError: A repeated name, or a dependency that is unknown or listed later.
    """
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise FeatcacheError(f"job {job.name}: listed twice")
        missing = [d for d in job.deps if d not in seen]
        if missing:
            raise FeatcacheError(f"job {job.name}: waits for {missing[0]}, which is not listed before it")
        seen.add(job.name)


class LocalExecutor:
    """Runs the jobs in order, in this process, with the caller's study (what featcache always did)."""

    name = "local"

    def run(self, study: Study, jobs: Sequence[Job], *, progress: bool = True) -> list[JobResult]:
        """Run every job in order.

        Args:
            study: The study.
            jobs: The graph, each job after the jobs it waits for.
            progress: Each job's own progress bars.

        Returns:
            One result per job, in order.

        Raises:
            FeatcacheError: A malformed graph, or the first job that fails (the rest do not run).
        """
        _check_graph(jobs)
        values: dict[str, Any] = {}
        out = []
        for job in jobs:
            t0, c0 = time.time(), time.process_time()
            values[job.name] = run_job(study, job, [values[d] for d in job.deps], progress=progress)
            out.append(JobResult(job, values[job.name], t0, time.time(), time.process_time() - c0))
        return out


_STUDIES: dict[str, Study] = {}


def _ray_task(spec: StudySpec, job: Job, *deps: JobResult) -> JobResult:
    """The body of every Ray task: rebuild the study (once per worker process), use the CPUs Ray gave the
    task for torch's threads, run the job with the values of the jobs it waited for."""
    import ray
    import torch

    t0, c0 = time.time(), time.process_time()
    key = repr(spec)
    if key not in _STUDIES:
        _STUDIES.clear()
        _STUDIES[key] = spec.build()
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    value = run_job(_STUDIES[key], job, [d.value for d in deps], progress=False)
    return JobResult(job, value, t0, time.time(), time.process_time() - c0)


class RayExecutor:
    """Runs the jobs as Ray tasks (see the module docstring).

    Args:
        address: The cluster to join (``auto``, ``ray://host:10001``, ``host:6379``); None: the one in
            ``$RAY_ADDRESS``, else a new local Ray instance on this machine. A Ray already initialised in
            this process is used as it is.
        job_gpus: GPUs each fine-tuning or encoding job asks for; None: 1 when the cluster has GPUs, else 0.
        job_cpus: CPUs each job asks for (torch uses that many threads in it).
        max_retries: Times Ray starts a job again whose worker died.

    Raises:
        FeatcacheError: Ray is not installed (one line saying how to install it), or the address does not
            parse or answer (:func:`check_address`).
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, job_gpus: float | None = None, job_cpus: float = 1,
                 max_retries: int = 3) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise FeatcacheError(f"--executor ray: Ray is not installed; install it with `{RAY_INSTALL}`") from None
        if job_cpus <= 0 or (job_gpus is not None and job_gpus < 0) or max_retries < 0:
            raise FeatcacheError("--job-cpus must be above 0, --job-gpus and --max-retries at least 0")
        self.address, self.job_gpus, self.job_cpus, self.max_retries = address, job_gpus, job_cpus, max_retries
        check_address(address or os.environ.get("RAY_ADDRESS") or None)  # before any work, in seconds

    def _resources(self, job: Job, cluster_gpus: float) -> dict[str, float]:
        """A job's resource request: assembling needs no GPU; the others one when the cluster has any."""
        gpus = (1.0 if cluster_gpus > 0 else 0.0) if self.job_gpus is None else self.job_gpus
        return {"num_cpus": self.job_cpus, "num_gpus": 0.0 if job.kind == "assemble" else gpus}

    def run(self, study: Study, jobs: Sequence[Job], *, progress: bool = True) -> list[JobResult]:
        """Submit every job, then wait for them all, one progress bar over the jobs.

        Args:
            study: The study (sent to the tasks as a :class:`StudySpec`).
            jobs: The graph, each job after the jobs it waits for.
            progress: The bar over the jobs (the jobs' own bars are off).

        Returns:
            One result per job, in the order given.

        Raises:
            FeatcacheError: A malformed graph, a job that failed (its own one-line error; the jobs not
                started yet are cancelled), or a job whose worker died more than ``max_retries`` times.
        """
        import ray
        from tqdm import tqdm

        _check_graph(jobs)
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address or os.environ.get("RAY_ADDRESS") or None, logging_level=logging.WARNING,
                     include_dashboard=False)
        try:
            task = ray.remote(max_retries=self.max_retries)(_ray_task)
            gpus = float(ray.cluster_resources().get("GPU", 0))
            spec = ray.put(StudySpec.of(study))
            refs: dict[str, Any] = {}
            for job in jobs:
                refs[job.name] = task.options(name=job.name, **self._resources(job, gpus)).remote(
                    spec, job, *[refs[d] for d in job.deps])
            return self._gather(ray, jobs, refs, tqdm(total=len(jobs), desc="jobs", unit="job", disable=not progress))
        finally:
            if started_here:
                ray.shutdown()

    def _gather(self, ray: Any, jobs: Sequence[Job], refs: dict[str, Any], bar: Any) -> list[JobResult]:
        by_ref = {ref: name for name, ref in refs.items()}
        results: dict[str, JobResult] = {}
        pending = list(refs.values())
        with bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                name = by_ref[done[0]]
                try:
                    results[name] = ray.get(done[0])
                except Exception as e:  # noqa: BLE001 - turned into one line below
                    for ref in pending:
                        ray.cancel(ref)
                    raise _job_error(ray, name, e, self.max_retries) from None
                bar.update(1)
                bar.set_postfix_str(name, refresh=False)
        return [results[j.name] for j in jobs]


def _job_error(ray: Any, name: str, e: Exception, retries: int) -> Exception:
    """The one-line error for a failed Ray task: the job's own FeatcacheError, or what happened to it."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, FeatcacheError):
        return cause
    if isinstance(e, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return FeatcacheError(f"job {name}: its worker died {retries + 1} times; see the Ray logs "
                              "(/tmp/ray/session_latest/logs) and run the same command again to finish the study")
    first = str(cause or e).strip().splitlines()
    return FeatcacheError(f"job {name}: {type(cause or e).__name__}: {first[-1] if first else ''}")


CONNECT_TIMEOUT_ENV = "FEATCACHE_RAY_CONNECT_TIMEOUT"
"""Seconds to wait for a Ray cluster's address to answer before giving up (default 30)."""


def check_address(address: str | None) -> None:
    """Check that a Ray cluster answers at ``address`` before Ray is asked to join it (Ray itself retries
    an unreachable address for minutes).

    Args:
        address: ``HOST:PORT``, ``ray://HOST:PORT`` (Ray Client), or None / ``auto`` / ``local`` (nothing to
            check: Ray finds or starts the cluster itself).

    Raises:
        FeatcacheError: An address that does not parse, Ray Client without its package, or no answer within
            ``FEATCACHE_RAY_CONNECT_TIMEOUT`` seconds (30 by default); one line each, with what to do.
    """
    import importlib.util
    import socket

    if address is None or address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    host, _, port_text = address.removeprefix("ray://").rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not host or not 0 < port < 65536 or ":" in host.strip("[]") and not host.startswith("["):
        raise FeatcacheError(f"address (--address {address!r}): not HOST:PORT, ray://HOST:PORT or auto")
    if client and importlib.util.find_spec("grpc") is None:
        raise FeatcacheError(f"address (--address {address}): Ray Client (ray://) needs its extra; install it with "
                             "`pip install 'ray[client]'`, or give the cluster's HOST:6379")
    raw = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    try:
        limit = float(raw) if raw else 30.0
    except ValueError:
        limit = 30.0
    deadline = time.monotonic() + limit
    while True:
        try:
            with socket.create_connection((host.strip("[]"), port), timeout=max(0.1, min(5.0, limit))):
                return
        except OSError as e:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = e.strerror or type(e).__name__
                raise FeatcacheError(f"address (--address {address}): no Ray cluster answered at {host}:{port} "
                                     f"within {limit:g} s ({reason}); start one with `ray start --head` or check "
                                     "the address") from None
            time.sleep(min(1.0, left))


def make_executor(name: str, *, address: str | None = None, job_gpus: float | None = None, job_cpus: float = 1,
                  max_retries: int = 3) -> Executor:
    """The executor called ``name``.

    Args:
        name: ``local`` or ``ray``.
        address: See :class:`RayExecutor` (ignored by ``local``).
        job_gpus: See :class:`RayExecutor`.
        job_cpus: See :class:`RayExecutor`.
        max_retries: See :class:`RayExecutor`.

    Raises:
        FeatcacheError: An unknown name, or ``ray`` without Ray installed (one line each).
    """
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, job_gpus=job_gpus, job_cpus=job_cpus, max_retries=max_retries)
    raise FeatcacheError(f"executor (--executor {name!r}): choose one of {', '.join(EXECUTORS)}")


def span(results: Sequence[JobResult], kinds: Sequence[str]) -> float:
    """Seconds from the first start to the last end of the jobs of these kinds (0 when there are none)."""
    mine = [r for r in results if r.job.kind in kinds]
    return max(r.finished for r in mine) - min(r.started for r in mine) if mine else 0.0
