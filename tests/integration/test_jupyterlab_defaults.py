"""The run notebooks as a user opens them in JupyterLab: working directory ``notebooks/``, every parameter at its
default, offline, no MVTEC_ROOT. Outputs land under the results root (``$STFPM_RESULTS`` here, ``<repo>/results``
otherwise), never beside the notebooks, and the checkout stays clean. Also the helpers behind those defaults."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import papermill
import pytest

from stfpm_lib.data.mvtec import DEMO_CATEGORIES, demo_root
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.reporting.tables import ReportError
from stfpm_lib.runner.jobs import kernel_config
from stfpm_lib.runner.notebook_steps import notebook_config, resolve_out_dir, resolve_run_dir, results_root
from stfpm_lib.runner.teacher import DEMO_OVERRIDES

REPO = Path(__file__).resolve().parents[2]


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


# ----------------------------------------------------------------------------- the helpers (no kernel)
def test_results_root_is_the_checkouts_not_the_working_directorys(tmp_path, monkeypatch):
    monkeypatch.delenv("STFPM_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert results_root() == REPO / "results"
    monkeypatch.setenv("STFPM_RESULTS", str(tmp_path / "elsewhere"))
    assert results_root() == tmp_path / "elsewhere"
    assert resolve_out_dir(None, "bottle") == tmp_path / "elsewhere" / "notebooks" / "bottle"
    assert resolve_out_dir(tmp_path / "mine", "bottle") == tmp_path / "mine"


def test_the_latest_run_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STFPM_RESULTS", str(tmp_path))
    with pytest.raises(ReportError, match=r"no run under .*runs: make one with `make reproduce`"):
        resolve_run_dir(None)
    for name, mtime in (("older", 1_000_000), ("newer", 2_000_000)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "run.json").write_text("{}")
        os.utime(tmp_path / "runs" / name / "run.json", (mtime, mtime))
    assert resolve_run_dir(None) == tmp_path / "runs" / "newer"
    assert resolve_run_dir(tmp_path / "runs" / "older") == tmp_path / "runs" / "older"
    with pytest.raises(ReportError, match="run directory not found: .*nowhere"):
        resolve_run_dir(tmp_path / "nowhere")


def test_training_defaults_on_the_demo_are_the_demo_runs(tiny_mvtec, monkeypatch):
    monkeypatch.setenv("STFPM_OFFLINE", "1")
    blank = {"preset": "official", "epochs": None, "image_size": None, "teacher_weights": None, "run_dir": None}
    cfg, warning = notebook_config(blank, demo_root())
    assert (cfg.epochs, cfg.image_size, cfg.batch_size) == (DEMO_OVERRIDES["epochs"], DEMO_OVERRIDES["image_size"],
                                                            DEMO_OVERRIDES["batch_size"])
    assert cfg.teacher_weights == "random" and RANDOM_TEACHER_LABEL in warning and "RANDOMLY INITIALISED" in warning
    cfg, warning = notebook_config({**blank, "epochs": 3, "teacher_weights": "random"}, demo_root())
    assert (cfg.epochs, cfg.image_size, warning) == (3, DEMO_OVERRIDES["image_size"], None)  # given values win
    official = notebook_config(blank, tiny_mvtec)[0]  # another dataset: the preset's values
    assert (official.epochs, official.image_size, official.teacher_weights) == (100, 256, "imagenet")
    assert notebook_config({**blank, "run_dir": "runs/x"}, demo_root())[0] == official  # the runner's run


# ----------------------------------------------------------------------------- as JupyterLab runs them
def _run(name: str, out: Path) -> nbformat.NotebookNode:
    """Execute notebooks/<name>.ipynb with its defaults in notebooks/ (JupyterLab's working directory)."""
    papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                               parameters={}, cwd=str(REPO / "notebooks"), progress_bar=False,
                               config=kernel_config())
    return nbformat.read(out / f"{name}.ipynb", as_version=4)


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_run_notebooks_with_their_defaults_from_the_notebooks_folder(tmp_path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("STFPM_RESULTS", str(results))
    monkeypatch.setenv("STFPM_OFFLINE", "1")
    monkeypatch.delenv("MVTEC_ROOT", raising=False)
    before = _git_status()
    category = DEMO_CATEGORIES[0]  # the first demo category: the notebooks' default
    out = results / "notebooks" / category

    _run("01_explore_dataset", tmp_path)
    assert (out / "dataset_counts.csv").is_file() and (out / "examples.png").is_file()

    train = _text(_run("02_train", tmp_path))
    assert "RANDOMLY INITIALISED" in train and "kept epoch" in train and f"of {DEMO_OVERRIDES['epochs']}" in train
    assert (out / "checkpoint.pt").is_file() and (out / "training_curves.png").is_file()

    evaluate = _text(_run("03_evaluate", tmp_path))
    assert (out / "metrics.json").is_file() and (out / "per_image.npz").is_file()
    assert "e-0" not in evaluate.split("anomaly maps:")[-1]  # metrics in fixed decimals, not 5.273438e-01

    with pytest.raises(papermill.PapermillExecutionError, match="make reproduce"):
        _run("04_report", tmp_path)  # no run yet: the message says what to do
    shutil.copytree(REPO / "results" / "demo", results / "runs" / "demo")  # what `make reproduce` leaves
    report = _text(_run("04_report", tmp_path))
    assert f"run: {results / 'runs' / 'demo'}" in report
    assert (results / "runs" / "demo" / "tables" / "results.md").is_file()
    figures = _text(_run("05_figures", tmp_path))
    assert f"run: {results / 'runs' / 'demo'}" in figures
    assert (results / "runs" / "demo" / "figures" / "all_categories.png").is_file()

    assert not (REPO / "notebooks" / "results").exists()
    assert _git_status() == before  # nothing written into the checkout
