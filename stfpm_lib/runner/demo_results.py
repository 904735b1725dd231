"""The committed demo run ``results/demo/``: regenerate it in one command, and check it with nbval.

``python -m stfpm_lib.runner.demo_results regenerate`` (``make demo-results``):

1. runs the main job on the embedded demo (``python -m stfpm_lib.batch reproduce --force``, the
   :data:`~stfpm_lib.runner.teacher.DEMO_OVERRIDES`, ``-p per_image False``) into
   ``results/runs/demo`` (git-ignored);
2. copies what is committed into a fresh ``results/demo/``: ``run.json`` and, per category,
   :data:`CATEGORY_FILES` (metrics, history, the cached predictions the figures are drawn from,
   the executed 02/03 notebooks and their figures; no checkpoint);
3. executes ``04_report`` and ``05_figures`` **inside** ``results/demo`` (``run_dir="."``), so their
   tables, figures and executed notebooks depend only on committed files;
4. writes ``results/demo/report/index.html``.

``python -m stfpm_lib.runner.demo_results nbval`` (the second half of ``make test``) copies
``results/demo`` to a temporary directory and re-executes its ``04_report.ipynb`` and
``05_figures.ipynb`` with ``pytest --nbval`` (outputs compared after ``tests/nbval_sanitize.cfg``:
times, paths, dates and digits beyond the third decimal): the committed tables and figures still
follow from the committed cached maps and metrics. Training is not re-executed: it is not bitwise
reproducible across machines (the demo's epoch-1 loss moves in the 4th digit), and it is covered by
``tests/integration/test_reproduce.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .jobs import kernel_config

__all__ = ["REPO", "DEMO_DIR", "CATEGORY_FILES", "RUN_LEVEL_NOTEBOOKS", "SANITIZE", "copy_committed",
           "execute_run_level", "regenerate", "nbval", "main"]

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "results" / "demo"
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"
#: Files of each category folder that are committed (the checkpoint is not: 11 MB, and not needed).
CATEGORY_FILES = ("metrics.json", "history.csv", "predictions_test.npz", "predictions_val.npz", "02_train.ipynb",
                  "03_evaluate.ipynb", "training_curves.png", "curves.png", "per_defect_type.png")
#: Run-level notebooks executed inside results/demo and re-executed by nbval, in order.
RUN_LEVEL_NOTEBOOKS = ("04_report.ipynb", "05_figures.ipynb")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def copy_committed(run_dir: Path, dest: Path) -> None:
    """Replace ``dest`` by the committed part of ``run_dir``: ``run.json`` and :data:`CATEGORY_FILES` per category.

    Parameters
    ----------
    run_dir : Path
        The finished demo run.
    dest : Path
        The committed demo folder (replaced).
    """
    from ..io import atomic_write_bytes  # lazy: --help answers without the library

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    atomic_write_bytes(dest / "run.json", (run_dir / "run.json").read_bytes())
    for metrics in sorted(run_dir.glob("*/metrics.json")):
        for name in CATEGORY_FILES:
            src = metrics.parent / name
            if not src.is_file():
                raise FileNotFoundError(f"{src} missing: the demo run did not finish")
            atomic_write_bytes(dest / metrics.parent.name / name, src.read_bytes())


def execute_run_level(demo_dir: Path, notebooks_dir: Path | None = None, per_image: bool = False) -> None:
    """Execute :data:`RUN_LEVEL_NOTEBOOKS` in ``demo_dir`` with ``run_dir="."`` (papermill), in place.

    Parameters
    ----------
    demo_dir : Path
        The committed demo folder.
    notebooks_dir : Path, optional
        Where the notebooks live (default: the repository's ``notebooks/``).
    per_image : bool
        The ``per_image`` parameter of the notebooks other than ``04``.
    """
    import papermill  # lazy: seconds to import

    nb_dir = notebooks_dir or REPO / "notebooks"
    os.environ["PYTHONPATH"] = _env()["PYTHONPATH"]
    for name in RUN_LEVEL_NOTEBOOKS:
        params = {"run_dir": "."} if name.startswith("04") else {"run_dir": ".", "per_image": per_image}
        papermill.execute_notebook(str(nb_dir / name), str(demo_dir / name), parameters=params, cwd=str(demo_dir),
                                   progress_bar=False, config=kernel_config())


def regenerate(results_dir: Path = REPO / "results" / "runs", demo_dir: Path = DEMO_DIR) -> float:
    """The whole regeneration (module docstring, steps 1-4); returns its wall time in seconds.

    Parameters
    ----------
    results_dir : Path
        Where the demo run is made (``<results_dir>/demo``).
    demo_dir : Path
        The committed demo folder.

    Returns
    -------
    float
        Wall time, seconds.
    """
    from ..reporting.html_report import write_report  # lazy: nbconvert is slow to import

    start = time.perf_counter()
    cmd = [sys.executable, "-m", "stfpm_lib.batch", "reproduce", "--results-dir", str(results_dir),
           "--run-name", "demo", "--force", "--no-progress", "-p", "per_image", "False"]
    subprocess.run(cmd, check=True, cwd=REPO, env=_env())
    copy_committed(results_dir / "demo", demo_dir)
    execute_run_level(demo_dir)
    write_report(demo_dir)
    return time.perf_counter() - start


def nbval(demo_dir: Path = DEMO_DIR, extra: Sequence[str] = ()) -> int:
    """Re-execute the committed run-level notebooks of ``demo_dir`` (on a copy) with ``pytest --nbval``; exit code.

    Parameters
    ----------
    demo_dir : Path
        The committed demo folder.
    extra : sequence of str
        Further pytest arguments.

    Returns
    -------
    int
        pytest's exit code (2 when a notebook is missing).
    """
    missing = [n for n in RUN_LEVEL_NOTEBOOKS if not (demo_dir / n).is_file()]
    if missing:
        print(f"error: {demo_dir} lacks {missing}: run make demo-results", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="stfpm_nbval_") as tmp:
        copy = Path(tmp) / "demo"
        shutil.copytree(demo_dir, copy)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
               "--nbval-sanitize-with", str(SANITIZE), "--rootdir", str(copy), *extra,
               *[str(copy / n) for n in RUN_LEVEL_NOTEBOOKS]]
        return subprocess.run(cmd, cwd=copy, env=_env()).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.runner.demo_results regenerate|nbval``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.runner.demo_results", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("regenerate", "nbval"))
    args = parser.parse_args(argv)
    if args.command == "nbval":
        return nbval()
    seconds = regenerate()
    print(f"results/demo regenerated in {seconds:.0f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
