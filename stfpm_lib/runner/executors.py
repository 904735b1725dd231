"""Where the runner's jobs execute: a local process pool (the default) or a Dask cluster.

Backends (:class:`ExecutorSpec`, built from the command line by :func:`executor_spec`)::

    local           --jobs N: N spawned processes on this machine (N = 1: in this process)
    scheduler       --scheduler tcp://host:8786: the workers of an existing Dask scheduler
    localcluster    --cluster local:N: a Dask LocalCluster of N worker processes on 127.0.0.1
    slurm | pbs     --cluster slurm|pbs: dask-jobqueue batch jobs (--queue --cores --memory --gpus
                    --walltime --account --job-extra; --workers batch jobs)

Every job is a picklable task ``fn(task)``; the workers write its results to a folder every
worker can reach (a shared file system on a cluster). A job whose worker dies fails alone:
:func:`run_tasks` hands its exception (e.g. Dask's ``KilledWorker``) to ``on_done`` and goes on.
Clusters started here tell the scheduler not to resubmit a killed job
(``distributed.scheduler.allowed-failures`` = ``allowed_failures``, default 0); an existing
scheduler uses its own setting (Dask's default resubmits it up to 3 times).

GPU pinning: each worker has a slot (its index in the local pool, a LocalCluster worker's name,
the ``-<n>`` suffix of a dask-jobqueue worker's name). When a worker sees several GPUs
(``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``), a job sets ``CUDA_VISIBLE_DEVICES`` to the
slot's GPU (:func:`gpu_for_slot`) in its process before it runs, so the notebook kernels it
starts see one GPU each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ExecutorError", "ClusterOptions", "ExecutorSpec", "executor_spec", "run_tasks", "gpu_for_slot",
           "visible_gpus", "pin_gpu", "slot_from_name", "worker_slot", "make_jobqueue_cluster", "SLOT_RESOURCE"]

#: Dask worker resource that lets a worker of a cluster started here run one job at a time.
SLOT_RESOURCE = "slot"

_SLOT: int | None = None  # this process's slot in the local pool (set by the pool initializer)


class ExecutorError(ValueError):
    """Bad execution options (``--scheduler``, ``--cluster`` and their settings)."""


@dataclass(frozen=True)
class ClusterOptions:
    """Batch-job settings of ``--cluster slurm|pbs`` (dask-jobqueue), per batch job.

    Attributes
    ----------
    queue : str, optional
        Scheduler queue (partition).
    cores : int
        CPU cores.
    memory : str
        E.g. ``"32GB"``.
    gpus : int
        GPUs (one worker process, so one job at a time, per GPU; 0: one worker process).
    walltime : str
        ``HH:MM:SS``.
    account : str, optional
        Account the batch jobs are charged to.
    job_extra : tuple of str
        Further scheduler directives, e.g. ``("--constraint=a100",)``.
    python : str, optional
        The workers' interpreter (default: this one).
    interface : str, optional
        Network interface of the scheduler (e.g. ``ib0``).
    """

    queue: str | None = None
    cores: int = 1
    memory: str = "8GB"
    gpus: int = 0
    walltime: str = "01:00:00"
    account: str | None = None
    job_extra: tuple[str, ...] = ()
    python: str | None = None
    interface: str | None = None

    @property
    def processes(self) -> int:
        """Worker processes per batch job: one per GPU, else one."""
        return max(1, self.gpus)


@dataclass(frozen=True)
class ExecutorSpec:
    """Which backend runs the jobs (see the module docstring), and its size.

    Attributes
    ----------
    kind : str
        ``local``, ``scheduler``, ``localcluster``, ``slurm`` or ``pbs``.
    workers : int
        Processes of the local pool or the LocalCluster, batch jobs of slurm/pbs.
    address : str, optional
        The Dask scheduler's address (``scheduler``).
    cluster : ClusterOptions
        Batch-job settings (slurm/pbs).
    allowed_failures : int
        Times the scheduler resubmits a job whose worker died (clusters started here).
    """

    kind: str = "local"  # local | scheduler | localcluster | slurm | pbs
    workers: int = 1
    address: str | None = None
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    allowed_failures: int = 0

    def describe(self) -> str:
        """One line for the run's banner and record, e.g. ``dask LocalCluster (2 workers)``."""
        if self.kind == "local":
            return f"local process pool ({self.workers} process{'es' if self.workers > 1 else ''})"
        if self.kind == "scheduler":
            return f"dask scheduler {self.address}"
        if self.kind == "localcluster":
            return f"dask LocalCluster ({self.workers} worker processes on 127.0.0.1)"
        c = self.cluster
        return (f"dask-jobqueue {self.kind.upper()} ({self.workers} jobs x {c.processes} workers; queue {c.queue}, "
                f"{c.cores} cores, {c.memory}, {c.gpus} GPUs, walltime {c.walltime})")

    @property
    def threads_per_job(self) -> int | None:
        """CPU threads one job should use (``OMP_NUM_THREADS``), ``None``: leave it to the worker."""
        if self.kind in ("local", "localcluster"):
            return max(1, (os.cpu_count() or 1) // self.workers) if self.workers > 1 else None
        if self.kind in ("slurm", "pbs"):
            return max(1, self.cluster.cores // self.cluster.processes)
        return None


def executor_spec(*, jobs: int = 1, scheduler: str | None = None, cluster: str | None = None, workers: int | None = None,
                  options: ClusterOptions | None = None, allowed_failures: int = 0) -> ExecutorSpec:
    """The backend of the command-line options ``--jobs``, ``--scheduler``, ``--cluster local:N|slurm|pbs``.

    Parameters
    ----------
    jobs : int
        ``--jobs``: processes of the local pool.
    scheduler : str, optional
        ``--scheduler``: address of a running Dask scheduler.
    cluster : str, optional
        ``--cluster``: ``local:N``, ``slurm`` or ``pbs``.
    workers : int, optional
        ``--workers``: batch jobs of slurm/pbs.
    options : ClusterOptions, optional
        Batch-job settings of slurm/pbs.
    allowed_failures : int
        ``--worker-retries``.

    Returns
    -------
    ExecutorSpec
        The backend.

    Raises
    ------
    ExecutorError
        Naming the option for contradictory or malformed values.
    """
    if jobs < 1:
        raise ExecutorError(f"--jobs must be >= 1, got {jobs}")
    if allowed_failures < 0:
        raise ExecutorError(f"--worker-retries must be >= 0, got {allowed_failures}")
    if scheduler and cluster:
        raise ExecutorError("give either --scheduler or --cluster, not both")
    if scheduler:
        if not re.match(r"^[a-z0-9+]+://\S+$", scheduler):
            raise ExecutorError(f"--scheduler {scheduler!r} is not an address like tcp://host:8786")
        return ExecutorSpec("scheduler", address=scheduler, allowed_failures=allowed_failures)
    if not cluster:
        return ExecutorSpec("local", workers=jobs)
    match = re.fullmatch(r"local:(\d+)", cluster)
    if match:
        if int(match[1]) < 1:
            raise ExecutorError(f"--cluster {cluster!r}: the number of workers must be >= 1")
        return ExecutorSpec("localcluster", workers=int(match[1]), allowed_failures=allowed_failures)
    if cluster not in ("slurm", "pbs"):
        raise ExecutorError(f"--cluster {cluster!r} is not one of local:N, slurm, pbs")
    options = options or ClusterOptions()
    if options.cores < 1 or options.gpus < 0:
        raise ExecutorError(f"--cores must be >= 1 and --gpus >= 0, got {options.cores} and {options.gpus}")
    if not re.fullmatch(r"(\d+-)?\d{1,3}(:\d\d){0,2}", options.walltime):
        raise ExecutorError(f"--walltime {options.walltime!r} is not like HH:MM:SS")
    if workers is not None and workers < 1:
        raise ExecutorError(f"--workers must be >= 1, got {workers}")
    return ExecutorSpec(cluster, workers=workers or 1, cluster=options, allowed_failures=allowed_failures)


# ----------------------------------------------------------------------------- GPU pinning
def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set (``""``/``-1``: none), else
    the indices ``nvidia-smi -L`` lists (none without the tool).

    Parameters
    ----------
    environ : mapping, optional
        Environment to read (default ``os.environ``).

    Returns
    -------
    list of str
        GPU ids.
    """
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        ids = [s.strip() for s in environ["CUDA_VISIBLE_DEVICES"].split(",") if s.strip()]
        return [] if not ids or ids[0].startswith("-") or ids[0] == "NoDevFiles" else ids
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        listing = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]


def gpu_for_slot(slot: int | None, gpus: Sequence[str]) -> str | None:
    """The GPU a worker of ``slot`` is pinned to: ``gpus[slot % len(gpus)]``; ``None`` (no pinning)
    without a slot or with fewer than two GPUs.

    Parameters
    ----------
    slot : int, optional
        The worker's slot.
    gpus : sequence of str
        Visible GPU ids.

    Returns
    -------
    str or None
        The GPU id, or ``None``.

    >>> gpu_for_slot(3, ["0", "1"]), gpu_for_slot(0, ["5"]), gpu_for_slot(None, ["0", "1"])
    ('1', None, None)
    """
    if slot is None or len(gpus) < 2:
        return None
    return gpus[slot % len(gpus)]


def pin_gpu(slot: int | None, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` to the slot's GPU when several are visible; return it (or ``None``).

    Parameters
    ----------
    slot : int, optional
        The worker's slot.
    environ : mutable mapping, optional
        Environment to read and set (default ``os.environ``).

    Returns
    -------
    str or None
        The GPU id set, or ``None``.
    """
    environ = os.environ if environ is None else environ
    gpu = gpu_for_slot(slot, visible_gpus(environ))
    if gpu is not None:
        environ["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def slot_from_name(name: Any) -> int | None:
    """A Dask worker's slot from its name: an integer (LocalCluster: ``0``, ``1``...) or a
    ``-<n>`` suffix (dask-jobqueue: ``SLURMCluster-3-1`` -> 1); else ``None``.

    Parameters
    ----------
    name : Any
        The worker's name.

    Returns
    -------
    int or None
        The slot.

    >>> slot_from_name(2), slot_from_name("SLURMCluster-3-1"), slot_from_name("tcp://10.0.0.1:4000")
    (2, 1, None)
    """
    if isinstance(name, int):
        return name
    match = re.fullmatch(r"(?:.*-)?(\d+)", str(name))
    return int(match[1]) if match else None


def worker_slot() -> int | None:
    """This process's slot: its index in the local pool, else its Dask worker's (see :func:`slot_from_name`)."""
    if _SLOT is not None:
        return _SLOT
    try:
        from distributed import get_worker  # lazy: Dask is imported only when a Dask executor is used

        return slot_from_name(get_worker().name)
    except (ImportError, ValueError):
        return None


def _take_slot(slots) -> None:
    global _SLOT
    _SLOT = slots.get()


def _pinned_call(fn: Callable[[Any], Any], task: Any) -> Any:
    """Run ``fn(task)`` in a worker after pinning it to its slot's GPU."""
    pin_gpu(worker_slot())
    return fn(task)


# ----------------------------------------------------------------------------- running
OnDone = Callable[[int, Any, "BaseException | None"], None]


def run_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], spec: ExecutorSpec, on_done: OnDone) -> None:
    """Run ``fn(task)`` for every task on ``spec``'s backend; call ``on_done(index, result, None)``
    as each finishes, or ``on_done(index, None, exc)`` when it raised or its worker died.

    ``fn`` must be a module-level function and the tasks picklable (they travel to other processes).

    Parameters
    ----------
    fn : callable
        Module-level function run on each task.
    tasks : sequence
        Picklable tasks.
    spec : ExecutorSpec
        The backend.
    on_done : callable
        ``on_done(index, result, exc)``, called as each task finishes.
    """
    if spec.kind == "local":
        _run_local(fn, tasks, spec.workers, on_done)
    else:
        _run_dask(fn, tasks, spec, on_done)


def _run_local(fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int, on_done: OnDone) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for index, task in enumerate(tasks):
            try:
                result = fn(task)
            except Exception as exc:  # noqa: BLE001 - one job's failure is reported, the others go on
                on_done(index, None, exc)
            else:
                on_done(index, result, None)
        return
    import multiprocessing  # lazy: only the local pool needs it

    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for slot in range(workers):
        slots.put(slot)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_take_slot,
                             initargs=(slots,)) as pool:
        futures = {pool.submit(_pinned_call, fn, task): index for index, task in enumerate(tasks)}
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker fails its job only
                on_done(futures[future], None, exc)
            else:
                on_done(futures[future], result, None)


def _run_dask(fn: Callable[[Any], Any], tasks: Sequence[Any], spec: ExecutorSpec, on_done: OnDone) -> None:
    from distributed import as_completed as dask_completed  # lazy: Dask only for Dask executors

    run_id = uuid.uuid4().hex[:8]
    resources = None if spec.kind == "scheduler" else {SLOT_RESOURCE: 1}
    with _dask_client(spec) as client:
        futures = {client.submit(_pinned_call, fn, task, key=f"stfpm-job-{index}-{run_id}", pure=False,
                                 resources=resources): index for index, task in enumerate(tasks)}
        for future in dask_completed(list(futures)):
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker & co.: the job fails, the others go on
                on_done(futures[future], None, exc)
            else:
                on_done(futures[future], result, None)
            future.release()


@contextlib.contextmanager
def _dask_client(spec: ExecutorSpec) -> Iterator[Any]:
    """A ``distributed.Client`` of ``spec``; clusters started here are closed on exit."""
    import dask  # lazy: Dask only for Dask executors
    from distributed import Client, LocalCluster

    if spec.kind == "scheduler":
        try:
            client = Client(spec.address, timeout="30s")
        except OSError as exc:
            raise ExecutorError(f"cannot reach the Dask scheduler {spec.address}: {exc}") from exc
        with client:
            yield client
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": spec.allowed_failures}):
        if spec.kind == "localcluster":
            cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, resources={SLOT_RESOURCE: 1},
                                   silence_logs=logging.ERROR)
        else:
            cluster = make_jobqueue_cluster(spec)
            cluster.scale(jobs=spec.workers)
        with cluster, Client(cluster) as client:
            yield client


def make_jobqueue_cluster(spec: ExecutorSpec):
    """The dask-jobqueue ``SLURMCluster``/``PBSCluster`` of ``spec`` (its scheduler starts here; no batch
    job is submitted until ``cluster.scale``).

    Per batch job: ``cluster.cores`` cores, ``cluster.memory``, ``cluster.gpus`` GPUs
    (SLURM ``--gres=gpu:G``; PBS ``-l select=1:ncpus=C:ngpus=G:mem=M``) and one worker process
    per GPU (else one), each running one job at a time (worker resource ``slot=1``) with
    ``cores // processes`` threads. The workers import this very ``stfpm_lib`` (``PYTHONPATH`` set in
    the job script).

    Parameters
    ----------
    spec : ExecutorSpec
        A ``slurm`` or ``pbs`` spec.

    Returns
    -------
    dask_jobqueue.SLURMCluster or dask_jobqueue.PBSCluster
        The cluster, not yet scaled.
    """
    import dask_jobqueue  # lazy: only for --cluster slurm|pbs

    c = spec.cluster
    directives = list(c.job_extra)
    kwargs: dict[str, Any] = {}
    if spec.kind == "slurm":
        cls = dask_jobqueue.SLURMCluster
        if c.gpus:
            directives.append(f"--gres=gpu:{c.gpus}")
    elif spec.kind == "pbs":
        cls = dask_jobqueue.PBSCluster
        if c.gpus:
            kwargs["resource_spec"] = f"select=1:ncpus={c.cores}:ngpus={c.gpus}:mem={c.memory}"
    else:
        raise ExecutorError(f"not a dask-jobqueue cluster: {spec.kind!r}")
    root = str(Path(__file__).resolve().parents[2])
    return cls(queue=c.queue, account=c.account, cores=c.cores, memory=c.memory, processes=c.processes,
               walltime=c.walltime, job_extra_directives=directives, interface=c.interface,
               python=c.python or sys.executable, worker_extra_args=["--resources", f"{SLOT_RESOURCE}=1"],
               job_script_prologue=[f'export PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"'],
               scheduler_options={"dashboard_address": None}, **kwargs)
