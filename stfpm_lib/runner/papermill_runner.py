"""Notebook runner: execute the project's notebooks once per category with papermill.

Command line (``python -m stfpm_lib.batch``)::

    run        --notebook NB.ipynb [--notebook NB2.ipynb ...] --categories all|a,b --data-root DIR
               --run-name NAME --preset P -p key value ... --jobs N --force
    reproduce  [--data-root DIR] [--categories ...] [--run-name NAME] [-p key value ...]
               the main job: train -> evaluate per category, then the report and figures notebooks
               once and the HTML report (``report/index.html``); on MVTec AD (``--data-root`` /
               ``$MVTEC_ROOT``) or, without one, the embedded demo.
    report     RUN_DIR [--no-notebooks]: write RUN_DIR/report/index.html (tables, figures, executed
               notebooks rendered as HTML), readable offline
    study      studies/x.yaml [--data-root DIR] [--out DIR] [--jobs N | --scheduler ADDR | --cluster local:N|slurm|pbs]
               a grid of variants x seeds x categories (:mod:`stfpm_lib.runner.study_runner`).

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

Notebook contract: one cell tagged ``parameters`` (the first cell) declaring flat parameters.
A per-category notebook declares ``category``; the runner sets ``category``, ``data_root``,
``out_dir``, ``run_dir`` and ``force`` (``--force``: redo work already on disk) when declared. A notebook that declares ``preset`` builds its
configuration with ``STFPMConfig.from_preset(preset, **overrides)``, so any ``STFPMConfig``
field may be passed with ``-p`` (see :func:`stfpm_lib.runner.notebook_steps.config_from_namespace`).
Unknown keys fail before anything runs (papermill itself only warns).
"""

from __future__ import annotations

import argparse
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

from ..config import CONFIG_FIELDS, ConfigError, STFPMConfig, parse_field
from ..records.io import atomic_write_text, clean_stale_tmp
from .executors import ExecutorError, ExecutorSpec, run_tasks
from .notebook_steps import config_overrides  # the notebooks' own reading: the config they will build

# papermill and nbformat (seconds to import) and the torch-based layers (data, method) are imported inside
# the functions that use them ("lazy"): ``python -m stfpm_lib.batch --help`` and bad input answer at once.

__all__ = [
    "BatchError", "DEMO_OVERRIDES", "NOTEBOOK_OUTPUTS", "RUNNER_KEYS", "NotebookSpec", "CategoryResult",
    "BatchResult", "StepResult", "CategoryJob", "parse_value", "parse_overrides", "load_notebook_spec",
    "validate_overrides", "resolve_categories", "prepare_run_dir", "category_job", "run_category_job", "run_jobs",
    "run_batch", "reproduce", "main", "default_notebooks_dir",
]

#: Overrides of the embedded-demo run (``reproduce`` without a data root), chosen so that the whole
#: ``make reproduce`` (2 demo categories x (train + evaluate) + the report: 5 kernel start-ups)
#: stays well under 10 minutes on 2 CPU cores. image_size 128 is the demo images' native size;
#: batch_size 8 gives 4 SGD steps per epoch on the 26 training images (the official 32 would give
#: one), so 20 epochs = 80 steps. Measured on 2 cores (Python 3.11, torch 2.14.1 CPU): 3 min 39 s
#: and 4 min 47 s wall time with other jobs loading the machine (load average 3-4); one epoch takes
#: 0.42 s on an idle machine, so an idle run should take about 1.5 min (an estimate, not measured).
#: 60 epochs gave no better metrics (random teacher, PA_BRG03_TL).
DEMO_OVERRIDES: dict[str, Any] = {"epochs": 20, "image_size": 128, "batch_size": 8}

#: Every file (relative to the category directory) a notebook writes, figures included: all must
#: exist for its step to count as done, and all are deleted before the step is re-executed, so a
#: killed or failing rerun cannot leave an old figure beside a new result (tests/integration/test_papermill_runner.py
#: checks this list against the notebooks' code).
NOTEBOOK_OUTPUTS: dict[str, tuple[str, ...]] = {
    "01_explore_dataset": ("dataset_counts.csv", "examples.png"),
    "02_train": ("checkpoint.pt", "history.csv", "config.json", "training_curves.png"),
    "03_evaluate": ("predictions_test.npz", "predictions_val.npz", "per_image.npz", "metrics.json",
                    "per_defect_type.png", "curves.png", "best_worst.png"),
    "04_report": ("tables",),
    "05_figures": ("figures",),
    # study-level reports (a study's ``report``, run in the study directory)
    **{f"{n:02d}_ablation_{q}": ("tables", "figures")
       for n, q in enumerate(("layers", "backbones", "teacher", "factors", "seeds"), start=6)},
}

#: Parameters the runner sets itself; passing them with ``-p`` is an error.
RUNNER_KEYS = ("category", "data_root", "out_dir", "run_dir", "force")

#: Output sub-directory of run-level notebooks (default: the notebook's stem).
RUN_LEVEL_OUT: dict[str, str] = {"04_report": "tables", "05_figures": "figures"}

PIPELINE = ("02_train.ipynb", "03_evaluate.ipynb")
REPORTS = ("04_report.ipynb", "05_figures.ipynb")
RUN_LEVEL = "_run"


class BatchError(ValueError):
    """Bad input to the runner (unknown parameter, category, notebook, run dir...)."""


# ----------------------------------------------------------------------------- parameters
def parse_value(text: str) -> Any:
    """Parse a ``-p`` value like papermill: ``True``/``False``/``None``, int, float, else the string.

    ``true``/``false``/``none`` (any case) are accepted too.

    Parameters
    ----------
    text : str
        The value as typed.

    Returns
    -------
    Any
        bool, None, int, float or the string.
    """
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_overrides(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``[["epochs", "2"], ...]`` -> ``{"epochs": 2}``; a key given twice is an error.

    ``STFPMConfig`` fields are typed by :func:`stfpm_lib.config.parse_field` (``-p loss_half no``
    is ``False``; ``-p epochs abc`` raises ``ConfigError`` naming ``epochs``); other notebook
    parameters by :func:`parse_value`.

    Parameters
    ----------
    pairs : sequence of (str, str), optional
        ``-p KEY VALUE`` pairs.

    Returns
    -------
    dict of str to Any
        Typed parameters.
    """
    values: dict[str, Any] = {}
    for key, text in pairs or ():
        if key in values:
            raise BatchError(f"parameter {key!r} given twice with -p")
        values[key] = parse_field(key, text) if key in CONFIG_FIELDS else parse_value(text)
    return values




@dataclass(frozen=True)
class NotebookSpec:
    """A notebook and the parameters its ``parameters`` cell declares (name -> papermill's record).

    Attributes
    ----------
    path : Path
        The notebook file.
    parameters : mapping of str to mapping
        Declared parameter name -> papermill's record of it.
    """

    path: Path
    parameters: Mapping[str, Mapping[str, Any]]

    @property
    def name(self) -> str:
        """File stem, e.g. ``02_train``."""
        return self.path.stem

    @property
    def per_category(self) -> bool:
        """True when the notebook is executed once per category (it declares ``category``)."""
        return "category" in self.parameters

    @property
    def takes_config(self) -> bool:
        """True when the notebook builds an ``STFPMConfig`` (it declares ``preset``)."""
        return "preset" in self.parameters

    def accepts(self, key: str) -> bool:
        """Whether ``-p key ...`` is meaningful for this notebook.

        Parameters
        ----------
        key : str
            Parameter name.

        Returns
        -------
        bool
            Declared, or an ``STFPMConfig`` field of a notebook that takes a config.
        """
        return key in self.parameters or (self.takes_config and key in CONFIG_FIELDS)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Files the notebook must leave behind (besides the executed notebook)."""
        return NOTEBOOK_OUTPUTS.get(self.name, ())


def load_notebook_spec(path: str | os.PathLike) -> NotebookSpec:
    """Read a notebook's parameters cell (papermill's ``inspect_notebook``); errors name the file.

    Parameters
    ----------
    path : str or os.PathLike
        The notebook.

    Returns
    -------
    NotebookSpec
        The notebook and its parameters.
    """
    import nbformat  # lazy: see the note at the imports
    import papermill

    path = Path(path)
    if not path.is_file():
        raise BatchError(f"notebook not found: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise BatchError(f"{path}: not a readable notebook: {exc}") from exc
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise BatchError(
            f"{path}: no cell tagged 'parameters'; papermill cannot parameterise it "
            "(tag the first code cell 'parameters' in JupyterLab: Property Inspector -> Cell Tags)"
        )
    return NotebookSpec(path=path, parameters=papermill.inspect_notebook(str(path)))


def validate_overrides(specs: Sequence[NotebookSpec], preset: str, overrides: Mapping[str, Any]) -> STFPMConfig | None:
    """Check every override key against the notebooks and the config; return the config (or None).

    Each key must be accepted by at least one of the notebooks (declared in its parameters cell,
    or an ``STFPMConfig`` field for a notebook that declares ``preset``). Keys the runner sets
    itself are refused. The config values are validated by building the config.

    Parameters
    ----------
    specs : sequence of NotebookSpec
        The notebooks to run.
    preset : str
        Config preset.
    overrides : mapping of str to Any
        ``-p`` parameters.

    Returns
    -------
    STFPMConfig or None
        The config (``None`` when no notebook takes one).
    """
    for key in overrides:
        if key in RUNNER_KEYS:
            flag = {"category": "--categories", "data_root": "--data-root", "force": "--force"}.get(
                key, "--run-name/--results-dir")
            raise BatchError(f"parameter {key!r} is set by the runner; use {flag} instead of -p {key}")
        if key == "preset":
            raise BatchError("use --preset instead of -p preset")
        if not any(spec.accepts(key) for spec in specs):
            known = sorted({name for spec in specs for name in spec.parameters} - set(RUNNER_KEYS))
            config_note = f"; STFPMConfig fields: {list(CONFIG_FIELDS)}" if any(s.takes_config for s in specs) else ""
            names = ", ".join(spec.path.name for spec in specs)
            raise BatchError(f"unknown notebook parameter {key!r} for {names}; parameters: {known}{config_note}")
    if not any(spec.takes_config for spec in specs):
        return None
    try:
        return STFPMConfig.from_preset(preset, **config_overrides(overrides))
    except (ConfigError, TypeError) as exc:
        raise BatchError(f"invalid configuration: {exc}") from exc


def resolve_categories(data_root: Path, spec: str | Sequence[str]) -> list[str]:
    """``"all"`` -> every category of ``data_root``; ``"a,b"`` -> checked against those found.

    Parameters
    ----------
    data_root : Path
        Dataset root.
    spec : str or sequence of str
        ``"all"``, comma-separated names, or a list of them.

    Returns
    -------
    list of str
        The categories.
    """
    from ..data.mvtec import list_categories  # lazy: see the note at the imports

    found = list_categories(data_root)
    if not found:
        raise BatchError(f"data root {data_root} contains no category (no <category>/train/good directory)")
    names = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if not names or names == ["all"]:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise BatchError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} under {data_root}; found: {found}")
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------- run directory
def _run_record(preset: str, overrides: Mapping[str, Any], data_root: Path, notebooks: Sequence[NotebookSpec]) -> dict:
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


def _ensure_importable() -> None:
    """Make kernels import this very ``stfpm_lib`` (source checkouts without an install)."""
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *parts])


def _kernel_config():
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
    start = time.perf_counter()
    error = ""
    with open(out_dir / f"{name}.log", "w", encoding="utf-8") as log:
        log.write(f"# {nb_path} -> {final}\n# parameters: {json.dumps(params, default=str)}\n")
        log.flush()
        try:
            papermill.execute_notebook(
                str(nb_path), str(tmp), parameters=params, kernel_name=job.kernel_name,
                progress_bar=False, log_output=job.log_output, stdout_file=log, stderr_file=log,
                cwd=str(out_dir), execution_timeout=job.execution_timeout, config=_kernel_config(),
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
    _ensure_importable()
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
    _ensure_importable()
    start = time.perf_counter()
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
        print(f"running {', '.join(s.path.name for s in run_level)} on {run_dir}", flush=True)
        run_result = run_category_job(CategoryJob(RUN_LEVEL, str(run_dir), steps, True, kernel_name, log_output,
                                                  execution_timeout, None))
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
    bar = tqdm(total=len(job_list), desc=desc, unit=unit, disable=not progress, file=sys.stdout)

    def done(index: int, res: CategoryResult | None, exc: BaseException | None) -> None:
        job = job_list[index]
        if res is None:
            res = CategoryResult(job.category, [StepResult("(worker)", "failed", job.out_dir, 0.0,
                                                           f"{type(exc).__name__}: {exc}")])
        results[index] = res
        failed = sum(1 for r in results if r is not None and r.status == "failed")
        bar.update(1)
        bar.set_postfix_str(f"{job.name}: {res.status}" + (f"; {failed} failed" if failed else ""))
        if res.status == "failed":
            step = res.failed_step
            bar.write(f"[{job.name}] FAILED in {step.notebook}: {step.error}  ({step.path})")

    if executor.kind == "local" and (executor.workers == 1 or len(job_list) == 1) and job_list:
        bar.set_postfix_str(f"{job_list[0].name}: running")
    run_tasks(run_category_job, list(job_list), executor, done)
    bar.close()
    return [r for r in results if r is not None]


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
    if failed:
        lines.append("failed notebooks (open them to see the traceback; logs beside them):")
        for unit in failed:
            step = unit.failed_step
            lines.append(f"  {step.path}\n      {step.error}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout this package lives in, else ``./notebooks``."""
    beside = Path(__file__).resolve().parents[2] / "notebooks"
    return beside if beside.is_dir() else Path.cwd() / "notebooks"


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--categories", default="all", help="'all' (default) or a comma-separated list")
    parser.add_argument("--data-root", default=None, help="dataset root in MVTec AD layout (default: $MVTEC_ROOT)")
    parser.add_argument("--run-name", default=None, help="name of the run directory under --results-dir")
    parser.add_argument("--results-dir", default="results/runs", help="parent of run directories (default results/runs)")
    parser.add_argument("--preset", default="official", help="STFPMConfig preset (official, anomalib, hcw, xia)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
                        help="notebook parameter or STFPMConfig field, parsed like papermill (int/float/bool/None/str)")
    parser.add_argument("--jobs", type=int, default=1, help="categories run in parallel (processes)")
    parser.add_argument("--force", action="store_true",
                        help="re-execute complete categories; overwrite a run dir made with another config")
    parser.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's, python3)")
    parser.add_argument("--log-output", action="store_true", help="also echo notebook output to this terminal")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell execution timeout, seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.batch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebook(s) once per category")
    run.add_argument("--notebook", action="append", required=True,
                     help="notebook to execute per category (repeat for a chain, run in order)")
    _common_args(run)
    rep = sub.add_parser("reproduce", help="the main job: train -> evaluate per category, then the report")
    rep.add_argument("--notebooks-dir", default=None, help="where 02_train/03_evaluate/04_report/05_figures live")
    _common_args(rep)
    html_rep = sub.add_parser("report", help="write RUN_DIR/report/index.html from a finished run")
    html_rep.add_argument("run_dir", help="run directory (e.g. results/runs/demo)")
    html_rep.add_argument("--no-notebooks", action="store_true", help="do not render the executed notebooks")
    from .study_runner import add_study_parser  # the study runner builds on this module

    add_study_parser(sub)
    return parser


def _banner(text: str) -> str:
    if text.lstrip().startswith("!!!"):  # already a banner (demo_teacher_weights' warning)
        return text
    bar = "!" * 78
    return f"{bar}\n!! WARNING: {text}\n{bar}"


def _check_teacher(cfg: STFPMConfig | None):
    """Fail fast when ImageNet (or file) teacher weights cannot be loaded (never fall back).

    Done before anything runs for notebooks that declare ``teacher_weights`` (those that build
    the model), so a missing weights file is one clear error, not one failed notebook per category.
    Returns the resolved :class:`~stfpm_lib.method.weights.TeacherWeights` (``None`` for a random teacher).
    """
    if cfg is None or cfg.teacher_weights == "random":
        return None
    from ..method.weights import WeightsError, resolve_teacher_weights  # lazy: see the note at the imports

    try:
        return resolve_teacher_weights(cfg.teacher_weights, cfg.backbone)
    except WeightsError as exc:
        raise BatchError(f"teacher weights {cfg.teacher_weights!r} unavailable: {exc}") from exc


def _teacher_note(cfg: STFPMConfig | None, weights) -> str | None:
    """The line that opens and closes a run with a non-random teacher: what it actually uses."""
    if cfg is None or cfg.teacher_weights == "random":
        return None
    if weights is None:
        return f"teacher weights: {cfg.teacher_weights} ({cfg.backbone}; resolved by the notebooks)"
    info = weights.describe()
    where = f" from {info['path']}" if info.get("path") else ""
    sha = f" (sha256 {info['sha256'][:16]}...)" if info.get("sha256") else ""
    return f"teacher weights: {info['source']} {info['name']}{where}{sha}"


def _cli_inputs(args: argparse.Namespace, reproduce_mode: bool, overrides: dict[str, Any],
                teacher_given: bool) -> tuple[list, list, Path, dict[str, Any], str | None, bool, str]:
    """``(notebooks, run_level, data_root, overrides, warning, demo, run_name)`` of the command line:
    the pipeline (``reproduce``, on the embedded demo without a data root) or the given notebooks."""
    from ..data.mvtec import resolve_data_root  # lazy: see the note at the imports

    warning = None
    demo = False
    if reproduce_mode:
        nb_dir = Path(args.notebooks_dir) if args.notebooks_dir else default_notebooks_dir()
        notebooks = [load_notebook_spec(nb_dir / name) for name in PIPELINE]
        run_level = [load_notebook_spec(nb_dir / name) for name in REPORTS]
        if args.data_root or os.environ.get("MVTEC_ROOT"):
            data_root = resolve_data_root(args.data_root).resolve()
        else:
            from ..data.demo import demo_root, demo_teacher_weights  # lazy: see the note at the imports

            demo = True
            data_root = Path(demo_root()).resolve()
            if not teacher_given:  # the user's -p teacher_weights is used as given (and checked below)
                teacher, warning = demo_teacher_weights()
                overrides = {**DEMO_OVERRIDES, "teacher_weights": teacher, **overrides}
            else:
                overrides = {**DEMO_OVERRIDES, **overrides}
        run_name = args.run_name or ("demo" if demo else f"mvtec_{args.preset}")
    else:
        notebooks = [load_notebook_spec(p) for p in args.notebook]
        run_level = [s for s in notebooks if not s.per_category]
        notebooks = [s for s in notebooks if s.per_category]
        if notebooks or args.data_root or os.environ.get("MVTEC_ROOT"):
            data_root = resolve_data_root(args.data_root).resolve()
        else:  # only run-level notebooks (e.g. the report): no dataset needed
            data_root = Path("")
        run_name = args.run_name or f"{'+'.join(s.name for s in notebooks + run_level)}_{args.preset}"
    return notebooks, run_level, data_root, overrides, warning, demo, run_name


def _print_tables(result: BatchResult, run_dir: Path) -> None:
    """After a successful report step: print ``tables/results.md`` and where the tables are."""
    if result.run_level and result.run_level.status != "failed" and (run_dir / "tables").is_dir():
        results_md = run_dir / "tables" / "results.md"
        if results_md.is_file():
            print("\n" + results_md.read_text(encoding="utf-8").strip() + "\n", flush=True)
        print(f"tables: {run_dir / 'tables'}", flush=True)


def _execute_cli(args: argparse.Namespace, *, reproduce_mode: bool) -> int:
    overrides = parse_overrides(args.parameter)
    teacher_given = "teacher_weights" in overrides
    notebooks, run_level, data_root, overrides, warning, demo, run_name = _cli_inputs(
        args, reproduce_mode, overrides, teacher_given)
    if args.jobs < 1:
        raise BatchError(f"--jobs must be >= 1, got {args.jobs}")
    cfg = validate_overrides(notebooks + run_level, args.preset, overrides)
    if cfg is not None and cfg.teacher_weights == "random" and warning is None:
        from ..data.demo import RANDOM_TEACHER_LABEL  # lazy: see the note at the imports

        warning = f"teacher_weights=random: results are a {RANDOM_TEACHER_LABEL}"
    categories = resolve_categories(data_root, args.categories) if notebooks else []
    resolved = None
    if (not demo or teacher_given) and any("teacher_weights" in spec.parameters for spec in notebooks + run_level):
        resolved = _check_teacher(cfg)
    note = _banner(warning) if warning else _teacher_note(cfg, resolved)
    run_dir = Path(args.results_dir).resolve() / run_name
    record = _run_record(args.preset, overrides, data_root, notebooks + run_level)
    prepare_run_dir(run_dir, record, force=args.force, categories=categories, compare=bool(notebooks))

    if note:
        print(note, flush=True)
    print(f"run {run_dir}: {len(categories)} categor{'y' if len(categories) == 1 else 'ies'} "
          f"({', '.join(categories)}) from {data_root}{' [embedded demo]' if demo else ''}; "
          f"preset {args.preset}; overrides {overrides}; jobs {args.jobs}", flush=True)
    result = run_batch(
        notebooks, data_root=data_root, categories=categories, run_dir=run_dir, preset=args.preset,
        overrides=overrides, jobs=args.jobs, force=args.force, kernel_name=args.kernel,
        log_output=args.log_output, execution_timeout=args.timeout, progress=not args.no_progress,
        run_level=run_level, run_level_params={"title": f"{run_name} ({args.preset})"},
    )
    print(format_summary(result), flush=True)
    _print_tables(result, run_dir)
    if reproduce_mode and result.exit_code == 0 and result.run_level is not None:  # the tables and figures exist
        from ..reporting.html_report import write_report

        print(f"report: {write_report(run_dir)}", flush=True)
    if note:
        print(note, flush=True)
    return result.exit_code


def reproduce(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.batch reproduce ...`` as a function (returns the exit code).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after ``reproduce``.

    Returns
    -------
    int
        Exit code.
    """
    return main(["reproduce", *(argv or [])])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 0 on success, 1 when a notebook failed, 2 on bad input.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status.
    """
    from ..data.mvtec import DataError  # lazy: see the note at the imports

    args = _parser().parse_args(argv)
    if args.command == "report":
        from ..reporting.html_report import main as report_main  # lazy: nbconvert is slow to import

        return report_main([args.run_dir, *(["--no-notebooks"] if args.no_notebooks else [])])
    try:
        if args.command == "study":
            from .study_runner import run_study_cli  # lazy: the study runner loads the tables (pandas)

            return run_study_cli(args)
        return _execute_cli(args, reproduce_mode=args.command == "reproduce")
    except (BatchError, DataError, ConfigError, ExecutorError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":  # pragma: no cover
    # Go through the package module so worker processes and pickles see one set of classes.
    from stfpm_lib.runner.papermill_runner import main as _main

    sys.exit(_main())
