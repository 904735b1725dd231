"""The main job (``python -m stfpm_lib.batch reproduce``, behind ``make reproduce``) on the embedded demo
dataset, with few epochs and small images so it takes well under two minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stfpm_lib.data.demo import DEMO_CATEGORIES, demo_root
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.runner import papermill_runner as batch
from stfpm_lib.runner.teacher import DEMO_OVERRIDES

REPO = Path(__file__).resolve().parents[2]


def _reproduce(results: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.pop("MVTEC_ROOT", None)
    env["STFPM_OFFLINE"] = "1"  # no network probe: the demo falls back to the random teacher, loudly
    cmd = [sys.executable, "-m", "stfpm_lib.batch", "reproduce", "--results-dir", str(results), "--run-name", "demo_ci",
           "-p", "epochs", "2", "-p", "image_size", "64", "-p", "per_image", "False", "--no-progress", *extra]
    return subprocess.run(cmd, cwd=results.parent, env=env, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("repro") / "runs"
    first = _reproduce(results)
    run_dir = results / "demo_ci"
    mtimes = {c: (run_dir / c / "metrics.json").stat().st_mtime_ns for c in DEMO_CATEGORIES
              if (run_dir / c / "metrics.json").is_file()}
    run_level = {name: (run_dir / name).stat().st_mtime_ns for name in ("tables/results.md", "figures/all_categories.png",
                                                                        "report/index.html") if (run_dir / name).is_file()}
    second = _reproduce(results)
    return {"first": first, "second": second, "run_dir": run_dir, "mtimes": mtimes, "run_level": run_level}


def test_demo_reproduce_produces_metrics(demo_run):
    first, run_dir = demo_run["first"], demo_run["run_dir"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for category in DEMO_CATEGORIES:
        cat_dir = run_dir / category
        for name in ("02_train.ipynb", "03_evaluate.ipynb", "checkpoint.pt", "predictions_test.npz", "02_train.log"):
            assert (cat_dir / name).is_file(), cat_dir / name
        record = json.loads((cat_dir / "metrics.json").read_text())
        for key in ("image_auroc", "pixel_auroc", "au_pro", "official_pro", "image_f1", "pixel_f1"):
            assert 0.0 <= record["metrics"][key] <= 1.0, (category, key)
        # -p overrides beat the demo parameter set; the rest of it applies.
        config = record["config"]
        assert (config["epochs"], config["image_size"]) == (2, 64)
        assert config["batch_size"] == DEMO_OVERRIDES["batch_size"]
        assert config["teacher_weights"] == "random" and record["teacher_weights"]["source"] == "random"
        assert record["dataset"]["root"] == str(demo_root().resolve())
        assert record["dataset"]["counts"]["train_good"] == 32 and record["wall_time_s"] > 0
    assert (run_dir / "04_report.ipynb").is_file() and (run_dir / "05_figures.ipynb").is_file()
    assert (run_dir / "figures" / "all_categories.png").is_file() and (run_dir / "report" / "index.html").is_file()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["data_root"] == str(demo_root().resolve()) and run["preset"] == "official"
    assert run["overrides"] == {**DEMO_OVERRIDES, "epochs": 2, "image_size": 64, "teacher_weights": "random",
                                "per_image": False}
    assert run["notebooks"] == ["02_train.ipynb", "03_evaluate.ipynb", "04_report.ipynb", "05_figures.ipynb"]


def test_demo_reproduce_prints_tables_and_warns_loudly(demo_run):
    out, run_dir = demo_run["first"].stdout, demo_run["run_dir"]
    lines = out.strip().splitlines()
    # The random-teacher warning opens the run's output and stands again just before where the results are:
    # the last lines printed are the places to open.
    assert "NOT available" in "\n".join(lines[:4]) and lines[0].startswith("!!!!")
    assert out.count("RANDOMLY INITIALISED teacher") == 2 and lines[-3].startswith("!!!!")
    assert lines[-2:] == [f"tables: {run_dir / 'tables'}", f"report: {run_dir / 'report' / 'index.html'}"]
    assert "2 of 2 categories succeeded" in out
    md = (run_dir / "tables" / "results.md").read_text()
    assert RANDOM_TEACHER_LABEL in md and all(f"| {c} |" in md for c in DEMO_CATEGORIES)
    # The main job prints its metrics table, values included, before the path of the tables.
    assert md.strip() in out and out.index(md.strip()) < out.index(f"tables: {run_dir / 'tables'}")
    record = json.loads((run_dir / DEMO_CATEGORIES[0] / "metrics.json").read_text())
    assert f"{record['metrics']['image_auroc']:.4f}" in out


def test_demo_reproduce_resumes(demo_run):
    second, run_dir = demo_run["second"], demo_run["run_dir"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("02_train skipped, 03_evaluate skipped") == 2
    for category, mtime in demo_run["mtimes"].items():
        assert (run_dir / category / "metrics.json").stat().st_mtime_ns == mtime
    assert len(demo_run["mtimes"]) == 2
    # nothing changed: the tables, figures and report are not redone either, and the run says so
    assert "04_report skipped, 05_figures skipped" in second.stdout and "up to date (inputs unchanged)" in second.stdout
    assert "everything was up to date" in second.stdout
    assert f"report: {run_dir / 'report' / 'index.html'} (up to date)" in second.stdout
    assert len(demo_run["run_level"]) == 3
    for name, mtime in demo_run["run_level"].items():
        assert (run_dir / name).stat().st_mtime_ns == mtime, name


def test_run_level_inputs_change_with_a_category_result(tmp_path):
    """The record that lets an unchanged run skip its run-level notebooks follows the category results' content."""
    from stfpm_lib.runner.jobs import run_level_inputs

    notebook = tmp_path / "04_report.ipynb"
    notebook.write_text("{}")
    (tmp_path / "bottle").mkdir()
    (tmp_path / "bottle" / "metrics.json").write_text('{"a": 1}')
    steps = [(str(notebook), ("tables",), {"run_dir": str(tmp_path)})]
    first = run_level_inputs(tmp_path, steps)
    assert list(first["categories"]) == ["bottle"] and first == run_level_inputs(tmp_path, steps)
    (tmp_path / "bottle" / "metrics.json").write_text('{"a": 2}')
    assert run_level_inputs(tmp_path, steps) != first
    assert run_level_inputs(tmp_path, [(str(notebook), ("tables",), {"run_dir": "elsewhere"})]) != \
        run_level_inputs(tmp_path, steps)


def test_mvtec_reproduce_never_falls_back(tiny_mvtec, tmp_path, monkeypatch, capsys):
    """With a data root, unavailable ImageNet weights stop the run before anything runs (no random teacher)."""
    from stfpm_lib.method import weights
    from stfpm_lib.runner import teacher

    def offline(spec, backbone):
        raise weights.WeightsUnavailableError(f"ImageNet weights for {backbone} are not cached and could not be "
                                              "downloaded (offline)")

    monkeypatch.setattr(teacher, "resolve_teacher_weights", offline)  # where the runner's teacher check looks it up
    code = batch.main(["reproduce", "--data-root", str(tiny_mvtec), "--results-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "teacher weights 'imagenet' unavailable" in err and "not cached" in err
    assert not (tmp_path / "runs").exists()


def test_demo_category_folder_holds_only_declared_outputs(demo_run):
    """Every file the pipeline notebooks leave in a category folder is a declared output (so --force
    removes it before a rerun), besides the runner's own files."""
    runner = {".lock", "02_train.ipynb", "02_train.log", "03_evaluate.ipynb", "03_evaluate.log"}
    declared = set(batch.NOTEBOOK_OUTPUTS["02_train"]) | set(batch.NOTEBOOK_OUTPUTS["03_evaluate"])
    for category in DEMO_CATEGORIES:
        files = {p.name for p in (demo_run["run_dir"] / category).iterdir()}
        assert files - runner == declared, category


def test_a_killed_forced_rerun_leaves_no_old_run_level_output(tmp_path):
    """``reproduce --force`` killed during training used to leave the old run's tables, figures, report and
    report notebooks, which looked complete beside the deleted category results."""
    import shutil
    import signal
    import time

    run_dir = tmp_path / "runs" / "demo_ci"
    shutil.copytree(REPO / "results" / "demo", run_dir)  # a finished run: tables, figures, report, notebooks
    env = dict(os.environ, PYTHONPATH=str(REPO), STFPM_OFFLINE="1")
    env.pop("MVTEC_ROOT", None)
    proc = subprocess.Popen([sys.executable, "-m", "stfpm_lib.batch", "reproduce", "--results-dir", str(run_dir.parent),
                             "--run-name", "demo_ci", "--force", "-p", "epochs", "200", "-p", "image_size", "64",
                             "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not (run_dir / DEMO_CATEGORIES[0] / "last.pt").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # a hard kill, mid-training
    proc.communicate(timeout=60)
    left = {p.name for p in run_dir.iterdir()}
    assert not left & {"tables", "figures", "report", "04_report.ipynb", "05_figures.ipynb"}, left
    assert not (run_dir / DEMO_CATEGORIES[0] / "metrics.json").exists()
