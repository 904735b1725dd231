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

The runner's parts: :mod:`~stfpm_lib.runner.notebook_specs` (the notebook contract),
:mod:`~stfpm_lib.runner.notebook_params` (``-p`` overrides, categories), :mod:`~stfpm_lib.runner.jobs`
(run directories, locks, execution) and :mod:`~stfpm_lib.runner.teacher` (the teacher policy); this
module is their command line, ``stfpm run|reproduce|report|study`` (``python -m stfpm_lib.batch`` is
an alias).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import check_safe_name
from .errors import BatchError, guarded
from .jobs import (
    BatchResult,
    CategoryJob,
    CategoryResult,
    StepResult,
    category_job,
    format_summary,
    prepare_run_dir,
    run_batch,
    run_category_job,
    run_jobs,
    run_record,
)
from .notebook_params import parse_overrides, parse_value, resolve_categories, validate_overrides
from .notebook_specs import (
    NOTEBOOK_OUTPUTS,
    PIPELINE,
    REPORTS,
    RUNNER_KEYS,
    NotebookSpec,
    default_notebooks_dir,
    load_notebook_spec,
)
from .notebook_steps import results_root

# The torch-based layers (data, method, the teacher policy) and the report (nbconvert) are imported inside
# the functions that use them ("lazy"): ``stfpm run --help`` and bad input answer at once.

#: the names this module has always offered (they live in the modules above; kept here for old imports)
__all__ = [
    "BatchError", "NOTEBOOK_OUTPUTS", "RUNNER_KEYS", "NotebookSpec", "CategoryResult",
    "BatchResult", "StepResult", "CategoryJob", "parse_value", "parse_overrides", "load_notebook_spec",
    "validate_overrides", "resolve_categories", "prepare_run_dir", "category_job", "run_category_job", "run_jobs",
    "run_batch", "reproduce", "main", "default_notebooks_dir", "add_batch_commands", "run_command",
]


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--categories", default="all", help="'all' (default) or a comma-separated list")
    parser.add_argument("--data-root", default=None, help="dataset root in MVTec AD layout (default: $MVTEC_ROOT)")
    parser.add_argument("--run-name", default=None, help="name of the run directory under --results-dir")
    parser.add_argument("--results-dir", default=None,
                        help="parent of run directories (default: runs/ of the results root: $STFPM_RESULTS, else "
                             "the checkout's results/)")
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


def add_batch_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``reproduce``, ``report`` and ``study`` to a command line's sub-commands.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        The sub-parsers of ``stfpm`` (or of the ``python -m stfpm_lib.batch`` alias).
    """
    run = sub.add_parser("run", help="execute notebook(s) once per category")
    run.add_argument("--notebook", action="append", required=True,
                     help="notebook to execute per category (repeat for a chain, run in order)")
    _common_args(run)
    rep = sub.add_parser("reproduce", help="the main job: train -> evaluate per category, then the report")
    rep.add_argument("--notebooks-dir", default=None, help="where 02_train/03_evaluate/04_report/05_figures live")
    _common_args(rep)
    html_rep = sub.add_parser("report", help="write RUN_DIR/report/index.html from a finished run")
    html_rep.add_argument("run_dir", help="run directory (e.g. results/runs/demo)")
    html_rep.add_argument("--out-dir", default=None, help="default RUN_DIR/report")
    html_rep.add_argument("--no-notebooks", action="store_true", help="do not render the executed notebooks")
    from .study_runner import add_study_parser  # the study runner builds on the jobs (no circle: it never imports this)

    add_study_parser(sub)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.batch",
                                     description="the notebook runner (an alias of stfpm run|reproduce|report|study)")
    add_batch_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _cli_inputs(args: argparse.Namespace, reproduce_mode: bool, overrides: dict[str, Any],
                teacher_given: bool) -> tuple[list, list, Path, dict[str, Any], str | None, bool, str]:
    """``(notebooks, run_level, data_root, overrides, warning, demo, run_name)`` of the command line:
    the pipeline (``reproduce``, on the embedded demo without a data root) or the given notebooks."""
    from ..data.mvtec import is_demo_root, resolve_data_root  # lazy: see the note at the imports

    warning = None
    demo = False
    if reproduce_mode:
        nb_dir = Path(args.notebooks_dir) if args.notebooks_dir else default_notebooks_dir()
        notebooks = [load_notebook_spec(nb_dir / name) for name in PIPELINE]
        run_level = [load_notebook_spec(nb_dir / name) for name in REPORTS]
        data_root = resolve_data_root(args.data_root, demo_fallback=True).resolve()
        demo = is_demo_root(data_root)
        if demo:
            from .teacher import DEMO_OVERRIDES, demo_teacher_weights  # lazy: see the note at the imports

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


def _print_results(result: BatchResult, run_dir: Path, *, note: str | None, reproduce_mode: bool) -> None:
    """The end of a run's output: the metrics table, the teacher banner or note, then where the results are.

    The last lines printed are the places to open (``tables:``, ``report:``), after any banner.
    """
    tables = result.run_level is not None and result.run_level.status != "failed" and (run_dir / "tables").is_dir()
    if tables and (run_dir / "tables" / "results.md").is_file():
        print("\n" + (run_dir / "tables" / "results.md").read_text(encoding="utf-8").strip() + "\n", flush=True)
    if note:
        print(note, flush=True)
    if tables:
        print(f"tables: {run_dir / 'tables'}", flush=True)
    if reproduce_mode and result.exit_code == 0 and result.run_level is not None:  # the tables and figures exist
        report = run_dir / "report" / "index.html"
        if result.run_level.status == "skipped" and report.is_file():
            print(f"report: {report} (up to date)", flush=True)
        else:
            from ..reporting.html_report import write_report  # lazy: nbconvert is slow to import

            print(f"report: {write_report(run_dir)}", flush=True)


def _execute_cli(args: argparse.Namespace, *, reproduce_mode: bool) -> int:
    overrides = parse_overrides(args.parameter)
    teacher_given = "teacher_weights" in overrides
    notebooks, run_level, data_root, overrides, warning, demo, run_name = _cli_inputs(
        args, reproduce_mode, overrides, teacher_given)
    if args.jobs < 1:
        raise BatchError(f"--jobs must be >= 1, got {args.jobs}")
    cfg = validate_overrides(notebooks + run_level, args.preset, overrides)
    from . import teacher  # lazy: see the note at the imports

    if cfg is not None and cfg.teacher_weights == "random" and warning is None:
        warning = f"teacher_weights=random: results are a {teacher.RANDOM_TEACHER_LABEL}"
    categories = resolve_categories(data_root, args.categories) if notebooks else []
    resolved = None
    if (not demo or teacher_given) and any("teacher_weights" in spec.parameters for spec in notebooks + run_level):
        resolved = teacher.check_teacher(cfg)
    note = teacher.banner(warning) if warning else teacher.teacher_note(cfg, resolved)
    results_dir = Path(args.results_dir) if args.results_dir else results_root() / "runs"
    run_dir = results_dir.resolve() / check_safe_name(run_name, "--run-name")
    record = run_record(args.preset, overrides, data_root, notebooks + run_level)
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
        run_level=run_level, run_level_params={} if "title" in overrides else {"title": f"{run_name} ({args.preset})"},
    )
    print(format_summary(result), flush=True)
    _print_results(result, run_dir, note=note, reproduce_mode=reproduce_mode)
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
    args = _parser().parse_args(argv)
    return run_command(args)


def run_command(args: argparse.Namespace, prog: str = "python -m stfpm_lib.batch") -> int:
    """Run a parsed ``run``, ``reproduce``, ``report`` or ``study`` command; user errors exit 2.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed by a parser that :func:`add_batch_commands` built.
    prog : str, default="python -m stfpm_lib.batch"
        The program name in error messages.

    Returns
    -------
    int
        0 on success, 1 when a notebook or job failed, 2 on bad input, 130 when interrupted.
    """
    def command() -> int:
        if args.command == "report":
            from ..reporting.html_report import write_report  # lazy: nbconvert is slow to import

            print(f"report: {write_report(args.run_dir, args.out_dir, notebooks=not args.no_notebooks)}")
            return 0
        if args.command == "study":
            from .study_runner import run_study_cli  # lazy: the study runner loads the tables (pandas)

            return run_study_cli(args)
        return _execute_cli(args, reproduce_mode=args.command == "reproduce")

    return guarded(f"{prog} {args.command}", command,
                   interrupted="interrupted (finished categories and jobs are kept; rerun to resume)")


if __name__ == "__main__":  # pragma: no cover
    # Go through the package module so worker processes and pickles see one set of classes.
    from stfpm_lib.runner.papermill_runner import main as _main

    sys.exit(_main())
