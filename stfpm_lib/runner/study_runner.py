"""Run a study (``stfpm study studies/x.yaml``; alias ``python -m stfpm_lib.batch study``): every job of the grid, resumable.

Layout of a study directory (``--out``, default ``<results root>/studies/<name>``: ``$STFPM_RESULTS``, else the checkout's ``results/``)::

    study.json                              the expanded spec (name, preset, variants, seeds, categories,
                                            notebooks, baseline) + provenance (spec file and sha256,
                                            data root, packages, executor, command, times)
    runs/<variant>/seed<seed>/              an ordinary run directory of the notebook runner (run.json)
    runs/<variant>/seed<seed>/<category>/   one job: the notebooks' outputs; its metrics.json carries
                                            "study": {study, variant, overrides, seed, category}

A job counts as done when its notebooks' outputs are complete *and* its ``metrics.json`` carries
its ``"study"`` entry, which the job writes (atomically, under the category's lock) after its last
notebook. Reruns skip finished jobs and resume the others (same locking and failure rules as
``run``); ``--force`` redoes them. Jobs run on the local process pool (``--jobs N``) or a Dask
cluster (``--scheduler``, ``--cluster local:N|slurm|pbs``; see :mod:`stfpm_lib.runner.executors`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.mvtec import DEMO_DATA_ROOT, is_demo_root, resolve_data_root
from ..io import atomic_write_text
from ..method.weights import RANDOM_TEACHER_LABEL
from ..provenance import package_versions
from ..reporting.study_tables import StudyResultsError, write_study_tables
from . import jobs as batch_jobs
from . import teacher
from .errors import BatchError
from .executors import ClusterOptions, ExecutorSpec, executor_spec
from .notebook_params import resolve_categories, validate_overrides
from .notebook_specs import NotebookSpec, default_notebooks_dir, load_notebook_spec
from .notebook_steps import METRICS_NAME, results_root
from .study import Job, Study, StudyError, expand_jobs, load_study, narrow_study, study_spec

__all__ = ["StudyResult", "add_study_parser", "run_study_cli", "prepare_study_dir", "run_study", "stamp_study",
           "format_study_summary", "DEFAULT_STUDIES_DIR"]

DEFAULT_STUDIES_DIR = "studies"  # under the results root (notebook_steps.results_root)
STUDY_JSON = "study.json"


# ----------------------------------------------------------------------------- the "study" stamp
def stamp_study(record: Mapping[str, Any], out_dir: Path) -> batch_jobs.StepResult | None:
    """A job's last step: put ``record`` under ``"study"`` in ``out_dir/metrics.json`` (atomically), and
    the process that ran the job (host, pid) under ``"study_worker"``.

    Returns ``None`` when it is there already (nothing to do), else the step's result. Raises
    ``FileNotFoundError`` when the notebooks wrote no ``metrics.json``.

    Parameters
    ----------
    record : mapping of str to Any
        The job's ``"study"`` entry (:attr:`Job.record`).
    out_dir : Path
        The job's category folder.

    Returns
    -------
    StepResult or None
        The step's result, or ``None`` when nothing was to do.
    """
    path = Path(out_dir) / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {path.name} in {out_dir}: the study's notebooks must write it")
    metrics = json.loads(path.read_text(encoding="utf-8"))
    if metrics.get("study") == dict(record):
        return None
    metrics["study"] = dict(record)
    metrics["study_worker"] = {"host": platform.node(), "pid": os.getpid()}
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return batch_jobs.StepResult("study", "ok", str(path))


# ----------------------------------------------------------------------------- preparing
def _resolve_data_root(study: Study, given: str | None) -> tuple[Path, bool]:
    """``--data-root``, else the spec's ``data_root`` (relative paths from the spec's folder), else
    ``$MVTEC_ROOT`` (``demo`` names the embedded demo in both). Returns the root and whether it is the demo."""
    chosen: str | Path | None = given or study.data_root or None
    if chosen and not given and chosen != DEMO_DATA_ROOT:
        path = Path(os.path.expandvars(os.path.expanduser(str(chosen))))
        chosen = path if path.is_absolute() else study.path.parent / path
    return resolve_data_root(chosen).resolve(), is_demo_root(chosen)


def _notebook_specs(study: Study, notebooks_dir: Path) -> list[NotebookSpec]:
    specs = [load_notebook_spec(Path(n) if Path(n).is_absolute() else notebooks_dir / n)
             for n in study.notebooks]
    run_level = [s.path.name for s in specs if not s.per_category]
    if run_level:
        raise StudyError(f"{study.path}: notebooks {run_level} do not declare 'category'; a study runs "
                         "per-category notebooks only")
    if not any("metrics.json" in s.outputs for s in specs):
        raise StudyError(f"{study.path}: notebooks {list(study.notebooks)}: none writes metrics.json "
                         "(end the chain with 03_evaluate.ipynb)")
    return specs


def _job_overrides(study: Study, job: Job) -> dict[str, Any]:
    """What the job's notebooks get: its config overrides (``crop_size None`` as ``0``: the notebooks'
    "no crop", their ``None`` means "the preset's") and the study's notebook parameters."""
    overrides = {**job.overrides, **study.parameters}
    if "crop_size" in overrides and overrides["crop_size"] is None:
        overrides["crop_size"] = 0
    return overrides


def _validate(study: Study, specs: Sequence[NotebookSpec], *, check_teacher: bool) -> list[str]:
    """Check every variant against the notebooks and the config; return the random-teacher variants."""
    random, teachers = [], {}
    for variant in study.variants:
        job = Job(study, variant, study.seeds[0], "")
        try:
            cfg = validate_overrides(specs, study.preset, _job_overrides(study, job))
        except BatchError as exc:
            raise StudyError(f"{study.path}: variant {variant.name!r}: {exc}") from None
        if cfg is not None and cfg.teacher_weights == "random":
            random.append(variant.name)
        elif cfg is not None:
            teachers.setdefault((cfg.teacher_weights, cfg.backbone), cfg)
    if check_teacher:
        for cfg in teachers.values():
            teacher.check_teacher(cfg)
    return random


def prepare_study_dir(study_dir: Path, study: Study, jobs: Sequence[Job], *, data_root: Path,
                      notebooks: Sequence[NotebookSpec], executor: ExecutorSpec, force: bool) -> dict:
    """Write ``study.json`` (atomically) and the ``run.json`` of every ``runs/<variant>/seed<seed>``.

    Refuses (:class:`StudyError`) a folder holding another study, and (``BatchError``, from
    :func:`~stfpm_lib.runner.jobs.prepare_run_dir`) a run directory made with another
    config, unless ``force``.

    Parameters
    ----------
    study_dir : Path
        The study directory.
    study : Study
        The study.
    jobs : sequence of Job
        The jobs to run.
    data_root : Path
        The dataset root.
    notebooks : sequence of NotebookSpec
        The per-category notebooks.
    executor : ExecutorSpec
        The backend (recorded).
    force : bool
        Take over a folder holding another study or a run directory made with another config.

    Returns
    -------
    dict
        The ``study.json`` content written.
    """
    path = study_dir / STUDY_JSON
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if old and old.get("name") != study.name and not force:
        raise StudyError(f"{study_dir} holds the study {old.get('name')!r}, not {study.name!r}; "
                         "choose another --out or pass --force")
    categories = list(dict.fromkeys(job.category for job in jobs))
    names = [spec.path.name for spec in notebooks]
    for run_subdir in dict.fromkeys(job.run_subdir for job in jobs):
        job = next(j for j in jobs if j.run_subdir == run_subdir)
        record = batch_jobs.run_record(study.preset, _job_overrides(study, job), data_root, notebooks)
        batch_jobs.prepare_run_dir(study_dir / run_subdir, record, force=force, categories=categories)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    spec_bytes = study.path.read_bytes()
    record = {
        **study_spec(study, categories, names),
        "jobs": len(jobs), "data_root": str(data_root), "spec_file": str(study.path.resolve()),
        "spec_sha256": hashlib.sha256(spec_bytes).hexdigest(), "spec_text": spec_bytes.decode("utf-8"),
        "executor": executor.describe(), "packages": package_versions(),
        "python": platform.python_version(), "platform": platform.platform(),
        "created": old.get("created", now) if old.get("name") == study.name else now, "updated": now,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


# ----------------------------------------------------------------------------- running
@dataclass
class StudyResult:
    """Outcome of :func:`run_study`: each job with its result.

    Attributes
    ----------
    name : str
        Study name.
    study_dir : Path
        The study directory.
    jobs : list of Job
        The jobs run.
    results : list of CategoryResult
        Their results, in the same order.
    seconds : float
        Wall time, seconds.
    """

    name: str
    study_dir: Path
    jobs: list[Job]
    results: list[batch_jobs.CategoryResult]
    seconds: float = 0.0

    @property
    def failed(self) -> list[tuple[Job, batch_jobs.CategoryResult]]:
        """The failed jobs with their results."""
        return [(j, r) for j, r in zip(self.jobs, self.results) if r.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when no job failed, else 1."""
        return 1 if self.failed else 0


def run_study(study: Study, jobs: Sequence[Job], specs: Sequence[NotebookSpec], *, study_dir: Path,
              data_root: Path, executor: ExecutorSpec, force: bool = False, kernel_name: str | None = None,
              log_output: bool = False, execution_timeout: int | None = None, progress: bool = True) -> StudyResult:
    """Run ``jobs`` (from :func:`~stfpm_lib.runner.study.expand_jobs`) on ``executor``; one progress bar.

    Each job is the notebook runner's category job in ``study_dir/runs/<variant>/seed<seed>``
    (absolute, on a folder every worker reaches), finished by :func:`stamp_study`. Inputs are
    assumed validated and the directory prepared (:func:`prepare_study_dir`).

    Parameters
    ----------
    study : Study
        The study.
    jobs : sequence of Job
        The jobs to run.
    specs : sequence of NotebookSpec
        The per-category notebooks.
    study_dir : Path
        The study directory.
    data_root : Path
        The dataset root.
    executor : ExecutorSpec
        The backend.
    force : bool
        Redo work already on disk.
    kernel_name : str, optional
        Jupyter kernel.
    log_output : bool
        Stream the notebooks' output.
    execution_timeout : int, optional
        Seconds per notebook cell.
    progress : bool
        Show a progress bar.

    Returns
    -------
    StudyResult
        Each job with its result.
    """
    study_dir = Path(study_dir).resolve()
    batch_jobs.ensure_importable()
    start = time.perf_counter()
    tasks = [batch_jobs.category_job(specs, job.category, data_root=data_root, run_dir=study_dir / job.run_subdir,
                                 preset=study.preset, overrides=_job_overrides(study, job), force=force,
                                 kernel_name=kernel_name, log_output=log_output,
                                 execution_timeout=execution_timeout, threads=executor.threads_per_job,
                                 finish=functools.partial(stamp_study, job.record), label=job.label)
             for job in jobs]
    results = batch_jobs.run_jobs(tasks, executor, desc=f"study {study.name}", progress=progress, unit="job")
    return StudyResult(study.name, study_dir, list(jobs), results, time.perf_counter() - start)


def format_study_summary(result: StudyResult) -> str:
    """Counts per variant (ok / skipped / failed), then a table of the failed jobs with their errors.

    Parameters
    ----------
    result : StudyResult
        A study's outcome.

    Returns
    -------
    str
        The summary text.
    """
    lines = [f"== study {result.name}: {len(result.jobs)} jobs in {result.seconds:.1f} s "
             f"({result.study_dir}) =="]
    per_variant: dict[str, Counter] = {}
    for job, res in zip(result.jobs, result.results):
        per_variant.setdefault(job.variant.name, Counter())[res.status] += 1
    width = max([len(v) for v in per_variant] + [7])
    lines.append(f"  {'variant':<{width}}  {'ok':>4}  {'skipped':>7}  {'failed':>6}")
    for name, counts in per_variant.items():
        lines.append(f"  {name:<{width}}  {counts['ok']:>4}  {counts['skipped']:>7}  {counts['failed']:>6}")
    total = Counter(res.status for res in result.results)
    lines.append(f"{total['ok'] + total['skipped']} of {len(result.jobs)} jobs done ({total['ok']} run, "
                 f"{total['skipped']} already done), {total['failed']} failed")
    if result.failed:
        rows = [(job.variant.name, str(job.seed), job.category, res.failed_step.notebook, res.failed_step.error,
                 res.failed_step.path) for job, res in result.failed]
        head = ("variant", "seed", "category", "step", "error")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head[:4])]
        lines.append("failed jobs (rerun the same command to resume them):")
        lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  error")
        for row in rows:
            error = row[4].splitlines()[0][:200] if row[4] else ""
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + f"  {error}")
            lines.append(f"      {row[5]}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def add_study_parser(sub: argparse._SubParsersAction) -> None:
    """The ``study`` subcommand of ``python -m stfpm_lib.batch``.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The batch parser's subcommands.
    """
    p = sub.add_parser("study", help="run a study: a YAML grid of variants x seeds x categories (studies/*.yaml)")
    p.add_argument("spec", help="the study file (YAML), e.g. studies/demo.yaml")
    p.add_argument("--data-root", default=None,
                   help="dataset root, or demo for the embedded demo data (default: the spec's data_root, else $MVTEC_ROOT)")
    p.add_argument("--out", default=None, help="study directory (default: studies/<name> of the results root, the checkout's results/)")
    p.add_argument("--notebooks-dir", default=None, help="where the spec's notebooks live (default notebooks/)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit (writes nothing)")
    nar = p.add_argument_group("adjusting the study from the command line (recorded in study.json)")
    nar.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                     help="config field added to the study's common overrides (a variant's own overrides win), "
                          "e.g. -p epochs 3 -p image_size 64")
    nar.add_argument("--seeds", default=None, help="comma-separated seeds replacing the study's, e.g. 0,1,2")
    nar.add_argument("--categories", default=None, help="comma-separated categories replacing the study's")
    nar.add_argument("--variants", default=None, help="comma-separated variants to run (default: all)")
    p.add_argument("--force", action="store_true", help="redo finished jobs; overwrite runs made with another config")
    tb = p.add_argument_group("tables (written to <out>/tables/ after the jobs; python -m stfpm_lib.reporting.study_tables)")
    tb.add_argument("--baseline", default=None, help="variant the others are compared with (default: the spec's)")
    tb.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ex = p.add_argument_group("execution (default: the local process pool)")
    ex.add_argument("--jobs", type=int, default=1, help="jobs in parallel on the local process pool")
    ex.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786")
    ex.add_argument("--cluster", default=None, help="local:N (a Dask LocalCluster of N workers), slurm or pbs")
    ex.add_argument("--worker-retries", type=int, default=0,
                    help="times a cluster started here resubmits a job whose worker died (default 0)")
    jq = p.add_argument_group("--cluster slurm|pbs (dask-jobqueue; per batch job)")
    jq.add_argument("--workers", type=int, default=None, help="batch jobs to submit (default 1)")
    jq.add_argument("--queue", default=None, help="partition / queue")
    jq.add_argument("--account", default=None, help="account / project to charge")
    jq.add_argument("--cores", type=int, default=1, help="CPU cores per batch job (default 1)")
    jq.add_argument("--memory", default="8GB", help="memory per batch job, e.g. 32GB (default 8GB)")
    jq.add_argument("--gpus", type=int, default=0, help="GPUs per batch job, one worker (one job at a time) each")
    jq.add_argument("--walltime", default="01:00:00", help="HH:MM:SS per batch job (default 01:00:00)")
    jq.add_argument("--job-extra", action="append", default=[], help="extra scheduler directive (repeatable)")
    jq.add_argument("--interface", default=None, help="network interface the workers reach the scheduler on")
    for flag, kw in (("--kernel", {"help": "Jupyter kernel name"}), ("--timeout", {"type": int, "help": "per cell, s"})):
        p.add_argument(flag, default=None, **kw)
    p.add_argument("--log-output", action="store_true", help="also echo notebook output to this terminal")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _executor(args: argparse.Namespace) -> ExecutorSpec:
    options = ClusterOptions(queue=args.queue, cores=args.cores, memory=args.memory, gpus=args.gpus,
                             walltime=args.walltime, account=args.account, job_extra=tuple(args.job_extra),
                             interface=args.interface)
    return executor_spec(jobs=args.jobs, scheduler=args.scheduler, cluster=args.cluster, workers=args.workers,
                         options=options, allowed_failures=args.worker_retries)


def _report_spec(study: Study, notebooks_dir: Path) -> NotebookSpec | None:
    """The study's ``report`` notebook, checked before any job runs (it must take ``study_dir``)."""
    if study.report is None:
        return None
    spec = load_notebook_spec(Path(study.report) if Path(study.report).is_absolute()
                                     else notebooks_dir / study.report)
    if not spec.accepts("study_dir"):
        raise StudyError(f"{study.path}: report {spec.path.name} has no 'study_dir' parameter")
    return spec


def _run_report(spec: NotebookSpec, study: Study, study_dir: Path, args: argparse.Namespace) -> batch_jobs.StepResult:
    """Execute the report notebook in ``study_dir`` (always: it reads every finished job), under its lock."""
    params = {"study_dir": str(study_dir), "baseline": study.baseline, "n_resamples": args.n_resamples}
    params = {k: v for k, v in params.items() if spec.accepts(k)}
    job = batch_jobs.CategoryJob("(study)", str(study_dir), ((str(spec.path.resolve()), spec.outputs, params),),
                             True, args.kernel, args.log_output, args.timeout, None, label=f"{study.name} report")
    result = batch_jobs.run_category_job(job)
    step = result.steps[-1]
    print(f"study report: {step.status} {step.path}" + (f" ({step.error})" if step.error else ""), flush=True)
    return step


def _write_tables(study_dir: Path, baseline: str | None, n_resamples: int) -> None:
    """The study's tables over every job that finished (a study with none gets a message, not tables)."""
    try:
        written = write_study_tables(study_dir, baseline=baseline, n_resamples=n_resamples)
    except StudyResultsError as exc:
        print(f"no study tables: {exc}", file=sys.stderr, flush=True)
        return
    tables = sorted(p for p in written.values() if p.suffix == ".md")
    print(f"study tables: {', '.join(str(p) for p in tables)}", flush=True)


def run_study_cli(args: argparse.Namespace) -> int:
    """``python -m stfpm_lib.batch study``: validate everything, prepare the folder, run, summarise.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``study`` arguments.

    Returns
    -------
    int
        Exit status.
    """
    study = narrow_study(load_study(args.spec), params=args.param, seeds=args.seeds, categories=args.categories,
                         variants=args.variants, baseline=args.baseline)
    if args.n_resamples < 1:
        raise StudyError(f"--n-resamples must be >= 1; got {args.n_resamples}")
    executor = _executor(args)
    data_root, demo = _resolve_data_root(study, args.data_root)
    nb_dir = Path(args.notebooks_dir) if args.notebooks_dir else default_notebooks_dir()
    specs = _notebook_specs(study, nb_dir)
    report = _report_spec(study, nb_dir)
    categories = resolve_categories(data_root, "all" if study.categories == "all" else list(study.categories))
    jobs = expand_jobs(study, categories)
    random = _validate(study, specs, check_teacher=not args.dry_run)
    study_dir = (Path(args.out) if args.out else results_root() / DEFAULT_STUDIES_DIR / study.name).resolve()
    head = (f"study {study.name} ({study.path}): {len(study.variants)} variants x {len(study.seeds)} seeds x "
            f"{len(categories)} categories = {len(jobs)} jobs; data {data_root}{' [embedded demo]' if demo else ''}; "
            f"preset {study.preset}; {executor.describe()}; out {study_dir}")
    if args.dry_run:
        print(head + "\n" + "\n".join(f"  {job.label}  {job.overrides}" for job in jobs), flush=True)
        return 0
    prepare_study_dir(study_dir, study, jobs, data_root=data_root, notebooks=specs, executor=executor,
                      force=args.force)
    note = teacher.banner(f"teacher_weights=random in variant(s) {random}: their results are a "
                          f"{RANDOM_TEACHER_LABEL}") if random else None
    for line in filter(None, (note, head)):
        print(line, flush=True)
    result = run_study(study, jobs, specs, study_dir=study_dir, data_root=data_root, executor=executor,
                       force=args.force, kernel_name=args.kernel, log_output=args.log_output,
                       execution_timeout=args.timeout, progress=not args.no_progress)
    print(format_study_summary(result), flush=True)
    failed_report = report is not None and _run_report(report, study, study_dir, args).status == "failed"
    if report is None:
        _write_tables(study_dir, args.baseline, args.n_resamples)
    if note:
        print(note, flush=True)
    return result.exit_code or int(failed_report)
