"""Run directories and jobs: a run's folder and its locks, and papermill executing notebooks per category.

Layout of a run (``<results-dir>/<run-name>``, default ``results/runs/<run-name>``)::

    run.json                    preset, overrides, data root, notebooks, categories (the run's config)
    <category>/.lock            held (flock) while a runner writes this category (removed afterwards)
    <category>/<nb>.ipynb       the executed notebook (audit trail), renamed into place on success
    <category>/<nb>.failed.ipynb  the executed notebook of a failure (with the traceback)
    <category>/<nb>.log         the kernel's stdout/stderr, streamed while it runs
    <category>/checkpoint.pt, history.csv, predictions_*.npz, metrics.json, *.png   (written by the notebooks,
                                see NOTEBOOK_OUTPUTS)
    <nb>.ipynb, tables/, figures/  run-level notebooks (no ``category`` parameter): 04_report, 05_figures
    report/index.html           the HTML report (``reproduce`` and ``report``)

A category is one :class:`CategoryJob` (its notebooks in order, under the category's lock); the jobs
run on an executor (:mod:`stfpm_lib.runner.executors`: local processes or a Dask cluster) and a
failing category does not stop the others.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..io import atomic_write_text, clean_stale_tmp, sha256_file
from .errors import BatchError
from .executors import ExecutorSpec, run_tasks
from .notebook_specs import NOTEBOOK_OUTPUTS, RUN_LEVEL, RUN_LEVEL_OUT, NotebookSpec
from .progress import PROGRESS_ENV, PROGRESS_NAME, ProgressMonitor, report_progress

# papermill (seconds to import) is imported inside the functions that run notebooks ("lazy").

#: Where a run records the inputs its run-level notebooks last saw (their hash), so an unchanged run skips them.
RUN_LEVEL_INPUTS = ".run_level_inputs.json"
#: The files of a category folder the run-level notebooks read (tables, figures, the HTML report).
RUN_LEVEL_READS = ("metrics.json", "history.csv", "config.json", "per_image.npz", "predictions_test.npz",
                   "predictions_val.npz")

__all__ = ["StepResult", "CategoryResult", "CategoryJob", "BatchResult", "prepare_run_dir", "run_category_job",
           "run_batch", "category_job", "run_jobs", "format_summary", "kernel_config", "ensure_importable", "run_record",
           "run_level_inputs", "RUN_LEVEL_INPUTS"]


# ----------------------------------------------------------------------------- run directory
def run_record(preset: str, overrides: Mapping[str, Any], data_root: Path, notebooks: Sequence[NotebookSpec]) -> dict:
    """The ``run.json`` record of a run: what makes two runs of one folder the same run.

    Parameters
    ----------
    preset : str
        Config preset.
    overrides : mapping of str to Any
        ``-p`` parameters.
    data_root : Path
        Dataset root.
    notebooks : sequence of NotebookSpec
        The notebooks run.

    Returns
    -------
    dict
        ``preset``, ``overrides`` (sorted), ``data_root`` and the notebooks' file names.
    """
    return {
        "preset": preset,
        "overrides": dict(sorted(overrides.items())),
        "data_root": str(data_root),
        "notebooks": [spec.path.name for spec in notebooks],
    }


_COMPARED = ("preset", "overrides", "data_root")


def _locked_handle(path: Path, wait: bool):
    """``path`` opened and exclusively flocked; retried when the file was removed by its previous holder
    between our open and our lock (the lock must be on the file the path names now)."""
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise BatchError(f"{path.parent} is being written by {holder} (lock {path})") from exc
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()


@contextlib.contextmanager
def _flock(path: Path, *, wait: bool) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (``wait=False``: :class:`BatchError` if held); the file is removed on release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked_handle(path, wait) as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still locked: a waiting process then retries on a new file
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_run_dir(run_dir: Path, record: Mapping[str, Any], *, force: bool, categories: Sequence[str],
                    compare: bool = True) -> dict:
    """Create ``run_dir`` and its ``run.json``; refuse a run dir made with another config unless ``force``.

    ``compare=False`` (only run-level notebooks, e.g. re-making the report of a finished run) keeps
    the recorded config and only adds the notebooks.

    Parameters
    ----------
    run_dir : Path
        The run directory (created).
    record : mapping of str to Any
        The run's record (config, notebooks, data root...).
    force : bool
        Overwrite a record made with another config.
    categories : sequence of str
        Categories of this invocation (added to the record's).
    compare : bool
        Compare the config with the recorded one.

    Returns
    -------
    dict
        The ``run.json`` content written.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    with _flock(run_dir / ".run.lock", wait=True):
        old: dict = {}
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise BatchError(f"{path}: unreadable run record ({exc}); remove it or use --force") from exc
        if not compare and old:
            record = {**record, **{k: old[k] for k in _COMPARED if k in old}}
        changed = [k for k in _COMPARED if k in old and old[k] != record[k]]
        if changed and not force:
            diff = "; ".join(f"{k}: {old[k]!r} -> {record[k]!r}" for k in changed)
            raise BatchError(
                f"{run_dir} holds a run with a different config ({diff}); "
                "choose another --run-name or pass --force to overwrite it"
            )
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        keep_old = bool(old) and not changed
        new = {
            **record,
            "notebooks": sorted(set(record["notebooks"]) | set(old.get("notebooks", []) if keep_old else [])),
            "categories": sorted(set(categories) | set(old.get("categories", []) if keep_old else [])),
            "created": old.get("created", now) if keep_old else now,
            "updated": now,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        atomic_write_text(path, json.dumps(new, indent=2) + "\n")
    return new


# ----------------------------------------------------------------------------- execution
@dataclass
class StepResult:
    """One notebook execution (or skip) for one category.

    Attributes
    ----------
    notebook : str
        Notebook name.
    status : str
        ``"ok"``, ``"skipped"`` or ``"failed"``.
    path : str
        Executed notebook (the ``.failed.ipynb`` one for failures).
    seconds : float
        Wall time, seconds.
    error : str
        The error, for failures.
    """

    notebook: str
    status: str  # "ok" | "skipped" | "failed"
    path: str  # executed notebook (the .failed.ipynb one for failures)
    seconds: float = 0.0
    error: str = ""


@dataclass
class CategoryResult:
    """All steps of one category (``_run`` for run-level notebooks).

    Attributes
    ----------
    category : str
        Category name (``_run`` for run-level notebooks).
    steps : list of StepResult
        The steps, in order.
    seconds : float
        Wall time, seconds.
    """

    category: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """``failed`` if any step failed, ``skipped`` if all were skipped, else ``ok``."""
        states = {s.status for s in self.steps}
        if "failed" in states:
            return "failed"
        return "skipped" if states == {"skipped"} else "ok"

    @property
    def failed_step(self) -> StepResult | None:
        """The step that failed, if any."""
        return next((s for s in self.steps if s.status == "failed"), None)


@dataclass(frozen=True)
class CategoryJob:
    """One category's notebooks, as a picklable task for :func:`run_category_job` (any process).

    ``finish(out_dir)`` (optional, module-level so it pickles) runs under the category's lock
    once every step is complete (executed or skipped); it returns a :class:`StepResult` when it
    did something (``None``: nothing to do) and an exception fails the category. ``label`` names
    the job in progress and summaries (default: the category).

    Attributes
    ----------
    category : str
        Category name.
    out_dir : str
        The category's folder.
    notebooks : tuple of (str, tuple of str, dict)
        (notebook path, outputs, parameters) of each step.
    force : bool
        Redo complete steps.
    kernel_name : str, optional
        Jupyter kernel.
    log_output : bool
        Stream the notebooks' output.
    execution_timeout : int, optional
        Seconds per notebook cell.
    threads : int, optional
        ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` default of the worker.
    finish : callable, optional
        ``finish(out_dir)``, see above.
    label : str
        Name of the job in progress and summaries.
    """

    category: str
    out_dir: str
    notebooks: tuple[tuple[str, tuple[str, ...], dict], ...]  # (path, outputs, parameters)
    force: bool
    kernel_name: str | None
    log_output: bool
    execution_timeout: int | None
    threads: int | None
    finish: Callable[[Path], StepResult | None] | None = None
    label: str = ""

    @property
    def name(self) -> str:
        """``label``, else the category."""
        return self.label or self.category


def _step_complete(out_dir: Path, name: str, outputs: Sequence[str]) -> bool:
    return (out_dir / f"{name}.ipynb").is_file() and all((out_dir / o).exists() for o in outputs)


class _QuietUnknownParameter:
    """Drop papermill's "Passed unknown parameter" warning: config fields are validated by the runner
    and read by ``config_from_namespace`` even when a notebook does not declare them."""

    @staticmethod
    def filter(record) -> bool:
        return "Passed unknown parameter" not in record.getMessage()


def ensure_importable() -> None:
    """Make kernels import this very ``stfpm_lib`` (source checkouts without an install)."""
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def kernel_config():
    """The kernels' traitlets config: IPC transport where the OS has Unix sockets (the setting ipykernel's
    "Kernel is running over TCP without encryption" warning names; local kernels need no TCP port)."""
    from traitlets.config import Config  # lazy: only needed to start kernels

    return Config({"KernelManager": {"transport": "ipc"}}) if os.name == "posix" else Config()


def _execute(nb_path: Path, out_dir: Path, params: dict, job: CategoryJob) -> StepResult:
    import papermill  # lazy: see the note at the imports
    from papermill.exceptions import PapermillExecutionError

    name = nb_path.stem
    final, failed = out_dir / f"{name}.ipynb", out_dir / f"{name}.failed.ipynb"
    tmp = out_dir / f".{name}.tmp{os.getpid()}.ipynb"
    for stale in (final, failed):
        stale.unlink(missing_ok=True)
    os.environ[PROGRESS_ENV] = str(out_dir / PROGRESS_NAME)  # the kernel inherits it (see .progress)
    report_progress(step=name)
    start = time.perf_counter()
    error = ""
    with open(out_dir / f"{name}.log", "w", encoding="utf-8") as log:
        log.write(f"# {nb_path} -> {final}\n# parameters: {json.dumps(params, default=str)}\n")
        log.flush()
        try:
            papermill.execute_notebook(
                str(nb_path), str(tmp), parameters=params, kernel_name=job.kernel_name,
                progress_bar=False, log_output=job.log_output, stdout_file=log, stderr_file=log,
                cwd=str(out_dir), execution_timeout=job.execution_timeout, config=kernel_config(),
            )
        except PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}".strip()
        except Exception as exc:  # noqa: BLE001 - kernel death, timeout, bad notebook: reported, not raised
            error = f"{type(exc).__name__}: {exc}".strip()
        if error:
            log.write(f"\n# FAILED: {error}\n")
    seconds = time.perf_counter() - start
    if error:
        if tmp.exists():
            os.replace(tmp, failed)
        return StepResult(name, "failed", str(failed if failed.exists() else out_dir / f"{name}.log"), seconds, error)
    missing = [o for o in NOTEBOOK_OUTPUTS.get(name, ()) if not (out_dir / o).exists()]
    if missing:
        os.replace(tmp, failed)
        return StepResult(name, "failed", str(failed), seconds, f"notebook finished without writing {missing} in {out_dir}")
    os.replace(tmp, final)
    return StepResult(name, "ok", str(final), seconds)


def _remove_outputs(out_dir: Path, steps: Sequence[tuple[str, tuple[str, ...], dict]]) -> None:
    """Delete what ``steps`` wrote before, so a failed rerun leaves no stale result that looks complete.

    ``last.pt`` (an interrupted training's resume point) is not an output and is kept.
    """
    for nb_path, outputs, _ in steps:
        for name in (f"{Path(nb_path).stem}.ipynb", *outputs):
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()


def run_category_job(job: CategoryJob) -> CategoryResult:
    """Worker: run a category's notebooks in order under its lock; stop at the first failure.

    Complete steps are skipped unless ``job.force``; a re-executed step first loses its old outputs
    (and so does every later step). ``job.finish`` runs last, under the lock.

    Parameters
    ----------
    job : CategoryJob
        The category's notebooks.

    Returns
    -------
    CategoryResult
        Its steps.
    """
    ensure_importable()
    papermill_log = logging.getLogger("papermill")
    if not any(isinstance(f, _QuietUnknownParameter) for f in papermill_log.filters):
        papermill_log.addFilter(_QuietUnknownParameter())
    if job.log_output and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if job.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(job.threads))
    out_dir = Path(job.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = CategoryResult(job.category)
    start = time.perf_counter()
    try:
        with _flock(out_dir / ".lock", wait=False):
            for folder in {out_dir, *(out_dir / o for _, outputs, _ in job.notebooks for o in outputs)}:
                clean_stale_tmp(folder)  # temporary files of killed writes (ours and the notebooks')
            _run_steps(job, out_dir, result)
            if job.finish is not None and result.failed_step is None:
                _finish(job, out_dir, result)
    except BatchError as exc:  # locked by another runner
        result.steps.append(StepResult("(lock)", "failed", str(out_dir / ".lock"), 0.0, str(exc)))
    finally:
        if os.environ.get(PROGRESS_ENV):  # the job is over: its progress file goes (the monitor closes its line)
            Path(os.environ.pop(PROGRESS_ENV)).unlink(missing_ok=True)
    result.seconds = time.perf_counter() - start
    return result


def _run_steps(job: CategoryJob, out_dir: Path, result: CategoryResult) -> None:
    rerun = job.force
    if rerun:
        _remove_outputs(out_dir, job.notebooks)
    for index, (nb_path, outputs, params) in enumerate(job.notebooks):
        name = Path(nb_path).stem
        if not rerun and _step_complete(out_dir, name, outputs):
            result.steps.append(StepResult(name, "skipped", str(out_dir / f"{name}.ipynb")))
            continue
        if not rerun:
            _remove_outputs(out_dir, job.notebooks[index:])
        rerun = True  # everything after a re-executed step is re-executed too
        step = _execute(Path(nb_path), out_dir, params, job)
        result.steps.append(step)
        if step.status == "failed":
            break


def _finish(job: CategoryJob, out_dir: Path, result: CategoryResult) -> None:
    start = time.perf_counter()
    try:
        step = job.finish(out_dir)
    except Exception as exc:  # noqa: BLE001 - reported as the category's failure
        step = StepResult("(finish)", "failed", str(out_dir), 0.0, f"{type(exc).__name__}: {exc}")
    if step is not None:
        step.seconds = step.seconds or time.perf_counter() - start
        result.steps.append(step)


@dataclass
class BatchResult:
    """Outcome of :func:`run_batch`.

    Attributes
    ----------
    run_dir : Path
        The run directory.
    categories : list of CategoryResult
        Per-category results.
    run_level : CategoryResult, optional
        Result of the run-level notebooks.
    seconds : float
        Wall time, seconds.
    """

    run_dir: Path
    categories: list[CategoryResult]
    run_level: CategoryResult | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[CategoryResult]:
        """Failed categories (and the run-level step, if it failed)."""
        units = self.categories + ([self.run_level] if self.run_level else [])
        return [c for c in units if c.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, else 1."""
        return 1 if self.failed else 0


def _notebook_params(spec: NotebookSpec, *, category: str | None, data_root: Path, run_dir: Path,
                     out_dir: Path, preset: str, overrides: Mapping[str, Any], force: bool = False) -> dict:
    values: dict[str, Any] = {"category": category, "data_root": str(data_root), "run_dir": str(run_dir),
                              "out_dir": str(out_dir), "preset": preset, "force": force}
    params = {k: v for k, v in values.items() if k in spec.parameters}
    params.update({k: v for k, v in overrides.items() if spec.accepts(k)})
    return params


def run_batch(
    notebooks: Sequence[NotebookSpec],
    *,
    data_root: Path,
    categories: Sequence[str],
    run_dir: Path,
    preset: str = "official",
    overrides: Mapping[str, Any] | None = None,
    jobs: int = 1,
    force: bool = False,
    kernel_name: str | None = None,
    log_output: bool = False,
    execution_timeout: int | None = None,
    progress: bool = True,
    run_level: Sequence[NotebookSpec] = (),
    run_level_params: Mapping[str, Any] | None = None,
) -> BatchResult:
    """Execute the per-category ``notebooks`` (in order) for every category, then ``run_level`` once.

    Inputs are assumed validated (see :func:`main`). Categories run in ``jobs`` processes, each
    writing only its own ``run_dir/<category>`` (flock-protected). Complete steps are skipped
    unless ``force``. A failing category never stops the others.

    Parameters
    ----------
    notebooks : sequence of NotebookSpec
        Per-category notebooks, in order.
    data_root : Path
        Dataset root.
    categories : sequence of str
        Categories to run.
    run_dir : Path
        The run directory.
    preset : str
        Config preset.
    overrides : mapping of str to Any, optional
        ``-p`` parameters.
    jobs : int
        Processes.
    force : bool
        Redo complete steps.
    kernel_name : str, optional
        Jupyter kernel.
    log_output : bool
        Stream the notebooks' output.
    execution_timeout : int, optional
        Seconds per notebook cell.
    progress : bool
        Show a progress bar.
    run_level : sequence of NotebookSpec
        Notebooks run once on the run directory after the categories (when any category succeeded).
    run_level_params : mapping of str to Any, optional
        Further parameters of the run-level notebooks (those they declare).

    Returns
    -------
    BatchResult
        Per-category and run-level results.
    """
    overrides = dict(overrides or {})
    run_dir = Path(run_dir).resolve()  # notebooks execute with their category folder as cwd
    ensure_importable()
    start = time.perf_counter()
    if force and run_level:
        remove_run_level_outputs(run_dir, run_level)
    executor = ExecutorSpec("local", workers=jobs)
    job_list = [category_job(notebooks, category, data_root=data_root, run_dir=run_dir, preset=preset,
                             overrides=overrides, force=force, kernel_name=kernel_name, log_output=log_output,
                             execution_timeout=execution_timeout, threads=executor.threads_per_job)
                for category in categories]
    results = dict(zip(categories, run_jobs(job_list, executor, desc=run_dir.name, progress=progress)))

    run_result = None
    ok = [c for c in categories if results[c].status != "failed"]
    if run_level and (ok or not categories):
        steps = tuple(
            (str(spec.path.resolve()), spec.outputs,
             {**_notebook_params(spec, category=None, data_root=data_root, run_dir=run_dir,
                                 out_dir=run_dir / RUN_LEVEL_OUT.get(spec.name, spec.name),
                                 preset=preset, overrides=overrides),
              **{k: v for k, v in (run_level_params or {}).items() if k in spec.parameters}})
            for spec in run_level
        )
        run_result = _run_level(run_dir, steps, force=force, kernel_name=kernel_name, log_output=log_output,
                                execution_timeout=execution_timeout, progress=progress)
    return BatchResult(run_dir, [results[c] for c in categories], run_result, time.perf_counter() - start)


def category_job(notebooks: Sequence[NotebookSpec], category: str, *, data_root: Path, run_dir: Path, preset: str,
                 overrides: Mapping[str, Any], force: bool = False, kernel_name: str | None = None,
                 log_output: bool = False, execution_timeout: int | None = None, threads: int | None = None,
                 finish: Callable[[Path], StepResult | None] | None = None, label: str = "") -> CategoryJob:
    """The :class:`CategoryJob` of ``category`` in the run directory ``run_dir`` (absolute): the
    notebooks' parameters as :func:`run_batch` passes them, outputs in ``run_dir/<category>``.

    Parameters
    ----------
    notebooks : sequence of NotebookSpec
        Per-category notebooks.
    category : str
        Category name.
    data_root : Path
        Dataset root.
    run_dir : Path
        The run directory (absolute).
    preset : str
        Config preset.
    overrides : mapping of str to Any
        ``-p`` parameters.
    force : bool
        Redo complete steps.
    kernel_name : str, optional
        Jupyter kernel.
    log_output : bool
        Stream the notebooks' output.
    execution_timeout : int, optional
        Seconds per notebook cell.
    threads : int, optional
        Threads per job.
    finish : callable, optional
        See :class:`CategoryJob`.
    label : str
        See :class:`CategoryJob`.

    Returns
    -------
    CategoryJob
        The picklable task.
    """
    out_dir = run_dir / category
    steps = tuple(
        (str(spec.path.resolve()), spec.outputs,
         _notebook_params(spec, category=category, data_root=data_root, run_dir=run_dir, out_dir=out_dir,
                          preset=preset, overrides=overrides, force=force))
        for spec in notebooks
    )
    return CategoryJob(category, str(out_dir), steps, force, kernel_name, log_output, execution_timeout, threads,
                       finish, label)


def run_jobs(job_list: Sequence[CategoryJob], executor: ExecutorSpec, *, desc: str, progress: bool,
             unit: str = "category") -> list[CategoryResult]:
    """Run the jobs on ``executor`` (:mod:`~stfpm_lib.runner.executors`) with one progress bar (the
    last finished job and its status, counts of failures); a dead worker fails its job only.

    Parameters
    ----------
    job_list : sequence of CategoryJob
        The jobs.
    executor : ExecutorSpec
        The backend.
    desc : str
        Progress bar label.
    progress : bool
        Show the progress bar.
    unit : str
        Progress bar unit.

    Returns
    -------
    list of CategoryResult
        The results in the order of ``job_list``.
    """
    results: list[CategoryResult | None] = [None] * len(job_list)
    live = progress and sys.stdout.isatty()  # a log (CI, a file) gets plain lines, no carriage returns
    bar = tqdm(total=len(job_list), desc=desc, unit=unit, disable=not live, file=sys.stdout)

    def done(index: int, res: CategoryResult | None, exc: BaseException | None) -> None:
        job = job_list[index]
        if res is None:
            res = CategoryResult(job.category, [StepResult("(worker)", "failed", job.out_dir, 0.0,
                                                           f"{type(exc).__name__}: {exc}")])
        results[index] = res
        failed = sum(1 for r in results if r is not None and r.status == "failed")
        bar.update(1)
        bar.set_postfix_str(f"{job.name}: {res.status}" + (f"; {failed} failed" if failed else ""))
        if progress and not live:
            print(f"[{sum(r is not None for r in results)}/{len(job_list)}] {job.name}: {res.status}", flush=True)
        if res.status == "failed":
            step = res.failed_step
            bar.write(f"[{job.name}] FAILED in {step.notebook}: {step.error}  ({step.path})")

    if executor.kind == "local" and (executor.workers == 1 or len(job_list) == 1) and job_list:
        bar.set_postfix_str(f"{job_list[0].name}: running")
    with ProgressMonitor([(job.name, Path(job.out_dir) / PROGRESS_NAME) for job in job_list], enabled=progress,
                         live=live):
        run_tasks(run_category_job, list(job_list), executor, done)
    bar.close()
    return [r for r in results if r is not None]


def remove_run_level_outputs(run_dir: Path, run_level: Sequence[NotebookSpec]) -> None:
    """Delete what the run-level steps made (their notebooks and outputs, the HTML report, the inputs record).

    Done first in a forced rerun: killed half-way, it must not leave the old run's tables, figures and
    report beside new (or deleted) category results, looking complete.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    run_level : sequence of NotebookSpec
        The run-level notebooks.
    """
    _remove_outputs(run_dir, [(spec.name, (*spec.outputs, RUN_LEVEL_OUT.get(spec.name, spec.name)), {})
                              for spec in run_level])
    shutil.rmtree(run_dir / "report", ignore_errors=True)
    (run_dir / RUN_LEVEL_INPUTS).unlink(missing_ok=True)


def run_level_inputs(run_dir: Path, steps: Sequence[tuple[str, tuple[str, ...], dict]]) -> dict[str, Any]:
    """What the run-level notebooks read, by content: their files and parameters, and each category's results.

    Parameters
    ----------
    run_dir : Path
        The run directory.
    steps : sequence of (notebook path, outputs, parameters)
        The run-level steps.

    Returns
    -------
    dict
        ``notebooks`` (name -> sha256 of the file and its parameters) and ``categories`` (category ->
        file name -> sha256, for :data:`RUN_LEVEL_READS`).
    """
    notebooks = {Path(nb).name: {"sha256": sha256_file(nb), "parameters": json.loads(json.dumps(params, default=str))}
                 for nb, _, params in steps}
    categories = {}
    for metrics in sorted(run_dir.glob("*/metrics.json")):
        folder = metrics.parent
        categories[folder.name] = {name: sha256_file(folder / name) for name in RUN_LEVEL_READS
                                   if (folder / name).is_file()}
    return {"notebooks": notebooks, "categories": categories}


def _run_level(run_dir: Path, steps: tuple, *, force: bool, kernel_name: str | None, log_output: bool,
               execution_timeout: int | None, progress: bool) -> CategoryResult:
    """The run-level notebooks, skipped when their inputs are those of their last successful run (unless ``force``)."""
    record, inputs = run_dir / RUN_LEVEL_INPUTS, run_level_inputs(run_dir, steps)
    complete = all(_step_complete(run_dir, Path(nb).stem, outputs) for nb, outputs, _ in steps)
    if not force and complete and record.is_file() and json.loads(record.read_text(encoding="utf-8")) == inputs:
        print(f"{', '.join(Path(nb).name for nb, _, _ in steps)}: up to date (inputs unchanged)", flush=True)
        return CategoryResult(RUN_LEVEL, [StepResult(Path(nb).stem, "skipped", str(run_dir / f"{Path(nb).stem}.ipynb"))
                                          for nb, _, _ in steps])
    record.unlink(missing_ok=True)  # a failed or killed rerun must not look up to date
    print(f"running {', '.join(Path(nb).name for nb, _, _ in steps)} on {run_dir}", flush=True)
    with ProgressMonitor([("(run)", run_dir / PROGRESS_NAME)], enabled=progress):
        result = run_category_job(CategoryJob(RUN_LEVEL, str(run_dir), steps, True, kernel_name, log_output,
                                              execution_timeout, None))
    if result.status != "failed":
        atomic_write_text(record, json.dumps(inputs, indent=1, sort_keys=True) + "\n")
    return result


def format_summary(result: BatchResult) -> str:
    """Human-readable summary: one line per category, then the failed notebooks' paths.

    Parameters
    ----------
    result : BatchResult
        A batch's outcome.

    Returns
    -------
    str
        The summary text.
    """
    lines = [f"== summary of {result.run_dir} ({result.seconds:.1f} s) =="]
    units = result.categories + ([result.run_level] if result.run_level else [])
    width = max([len(c.category) for c in units] + [8])
    for unit in units:
        label = "(run)" if unit.category == RUN_LEVEL else unit.category
        steps = ", ".join(f"{s.notebook} {s.status}" for s in unit.steps)
        lines.append(f"  {label:<{width}}  {unit.status.upper():<7}  {unit.seconds:7.1f} s  {steps}")
    failed = result.failed
    n_cat = len(result.categories)
    n_failed = sum(1 for c in result.categories if c.status == "failed")
    lines.append(f"{n_cat - n_failed} of {n_cat} categories succeeded" + (f", {n_failed} failed" if n_failed else ""))
    if units and all(unit.status == "skipped" for unit in units):
        lines.append("everything was up to date: nothing was executed (--force redoes it)")
    if failed:
        lines.append("failed notebooks (open them to see the traceback; logs beside them):")
        for unit in failed:
            step = unit.failed_step
            lines.append(f"  {step.path}\n      {step.error}")
    return "\n".join(lines)

