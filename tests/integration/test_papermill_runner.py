"""The notebook runner (stfpm_lib.runner.papermill_runner) on throwaway notebooks built here.

Kernel start-ups cost seconds, so the executed runs are shared through module-scoped fixtures:
one sequential CLI run over two categories (one made to fail), its rerun (resume), and one
parallel run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from stfpm_lib.config import STFPMConfig
from stfpm_lib.runner import jobs
from stfpm_lib.runner import papermill_runner as batch
from stfpm_lib.runner.papermill_runner import BatchError, parse_overrides, parse_value

REPO = Path(__file__).resolve().parents[2]

PARAMS = '''category = None
data_root = None
out_dir = None
run_dir = None
preset = "official"
epochs = None
n_repeat = 1
'''

BODY = '''import json, time
from pathlib import Path
from stfpm_lib.runner.notebook_steps import config_from_namespace
from stfpm_lib.data import index_category, load_image
cfg = config_from_namespace(globals())
index = index_category(data_root, category)
for i, path in enumerate(index.train):
    load_image(path, cfg.replace(image_size=32))
    print(f"checked {i + 1}/{len(index.train)}: {Path(path).name}", flush=True)
Path(out_dir, "result.json").write_text(json.dumps(
    {"category": category, "epochs": cfg.epochs, "preset": cfg.preset, "lr": cfg.lr, "n_repeat": n_repeat,
     "run_dir": run_dir, "pid": __import__("os").getpid(), "t": time.time(),
     "python": __import__("sys").executable}))
'''


def _notebook(path: Path, params: str | None = PARAMS, body: str = BODY) -> Path:
    nb = nbformat.v4.new_notebook()
    if params is not None:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell(body))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.pop("MVTEC_ROOT", None)
    return env


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stfpm_lib.batch", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def work(tiny_mvtec, tmp_path_factory) -> dict:
    """A copy of the tiny dataset whose ``grass`` has a corrupted training image, and a notebook."""
    base = tmp_path_factory.mktemp("batch")
    root = base / "data"
    shutil.copytree(tiny_mvtec, root)
    bad = sorted((root / "grass" / "train" / "good").iterdir())[3]
    bad.write_bytes(bad.read_bytes()[:60])  # truncated PNG: PIL fails on load()
    return {"base": base, "root": root, "bad": bad, "nb": _notebook(base / "check.ipynb")}


@pytest.fixture(scope="module")
def failing_run(work) -> dict:
    """Run twice over brick (ok) and grass (corrupted image) through the real CLI."""
    args = ["run", "--notebook", str(work["nb"]), "--categories", "all", "--data-root", str(work["root"]),
            "--run-name", "r1", "--results-dir", str(work["base"] / "runs"), "-p", "epochs", "3",
            "-p", "n_repeat", "2", "--no-progress"]
    first = _cli(*args, cwd=work["base"])
    run_dir = work["base"] / "runs" / "r1"
    brick_result = json.loads((run_dir / "brick" / "result.json").read_text())
    second = _cli(*args, cwd=work["base"])
    return {"first": first, "second": second, "run_dir": run_dir, "brick_result": brick_result}


# ----------------------------------------------------------------------------- value parsing
@pytest.mark.parametrize("text, value", [
    ("2", 2), ("-3", -3), ("0.5", 0.5), ("1e-4", 1e-4), ("True", True), ("false", False), ("None", None),
    ("none", None), ("random", "random"), ("layer1,layer2", "layer1,layer2"), ("1.0", 1.0),
])
def test_parse_value_like_papermill(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_overrides_rejects_duplicates():
    assert parse_overrides([["epochs", "2"], ["lr", "0.1"]]) == {"epochs": 2, "lr": 0.1}
    with pytest.raises(BatchError, match="'epochs' given twice"):
        parse_overrides([["epochs", "2"], ["epochs", "3"]])


def test_validate_overrides_against_parameters_cell_and_config(tmp_path):
    spec = batch.load_notebook_spec(_notebook(tmp_path / "a.ipynb"))
    assert set(spec.parameters) == {"category", "data_root", "out_dir", "run_dir", "preset", "epochs", "n_repeat"}
    assert spec.per_category and spec.takes_config
    cfg = batch.validate_overrides([spec], "anomalib", {"epochs": 2, "lr": 0.01, "n_repeat": 4})
    assert cfg == STFPMConfig.from_preset("anomalib", epochs=2, lr=0.01)
    with pytest.raises(BatchError, match="unknown notebook parameter 'epoch'.*n_repeat"):
        batch.validate_overrides([spec], "official", {"epoch": 2})
    with pytest.raises(BatchError, match="set by the runner.*--categories"):
        batch.validate_overrides([spec], "official", {"category": "brick"})
    with pytest.raises(BatchError, match="invalid configuration: backbone='vgg'"):
        batch.validate_overrides([spec], "official", {"backbone": "vgg"})
    # A notebook without `preset` does not take config fields.
    plain = batch.load_notebook_spec(_notebook(tmp_path / "b.ipynb", params="category = None\nk = 1\n"))
    assert batch.validate_overrides([plain], "official", {"k": 3}) is None
    with pytest.raises(BatchError, match="unknown notebook parameter 'epochs'"):
        batch.validate_overrides([plain], "official", {"epochs": 3})


def test_resolve_categories(tiny_mvtec, tmp_path):
    assert batch.resolve_categories(tiny_mvtec, "all") == ["brick", "grass"]
    assert batch.resolve_categories(tiny_mvtec, "grass, brick") == ["grass", "brick"]
    with pytest.raises(BatchError, match=r"unknown category \['wood'\].*found: \['brick', 'grass'\]"):
        batch.resolve_categories(tiny_mvtec, "brick,wood")
    (tmp_path / "not_a_category").mkdir()
    with pytest.raises(BatchError, match="contains no category"):
        batch.resolve_categories(tmp_path, "all")


def test_prepare_run_dir_refuses_other_config_unless_forced(tmp_path):
    record = {"preset": "official", "overrides": {"epochs": 2}, "data_root": "/d", "notebooks": ["a.ipynb"]}
    first = batch.prepare_run_dir(tmp_path / "r", record, force=False, categories=["brick"])
    again = batch.prepare_run_dir(tmp_path / "r", {**record, "notebooks": ["b.ipynb"]}, force=False,
                                  categories=["grass"])
    assert again["created"] == first["created"]
    assert again["notebooks"] == ["a.ipynb", "b.ipynb"] and again["categories"] == ["brick", "grass"]
    other = {**record, "overrides": {"epochs": 3}}
    with pytest.raises(BatchError, match=r"different config \(overrides: \{'epochs': 2\} -> \{'epochs': 3\}\).*--force"):
        batch.prepare_run_dir(tmp_path / "r", other, force=False, categories=["brick"])
    forced = batch.prepare_run_dir(tmp_path / "r", other, force=True, categories=["brick"])
    stored = json.loads((tmp_path / "r" / "run.json").read_text())
    assert stored["overrides"] == {"epochs": 3} == forced["overrides"] and stored["categories"] == ["brick"]


# ----------------------------------------------------------------------------- bad input (CLI, exit 2)
def _main(argv, capsys) -> tuple[int, str]:
    code = batch.main(argv)
    return code, capsys.readouterr().err


def test_bad_input_unknown_parameter(work, tmp_path, capsys):
    code, err = _main(["run", "--notebook", str(work["nb"]), "--data-root", str(work["root"]),
                       "--results-dir", str(tmp_path), "-p", "epoch", "2"], capsys)
    assert code == 2 and "unknown notebook parameter 'epoch'" in err
    assert not any(tmp_path.iterdir())  # nothing was written


def test_bad_input_unknown_category(work, tmp_path, capsys):
    code, err = _main(["run", "--notebook", str(work["nb"]), "--data-root", str(work["root"]),
                       "--results-dir", str(tmp_path), "--categories", "brick,wood"], capsys)
    assert code == 2 and "unknown category ['wood']" in err and "found: ['brick', 'grass']" in err


def test_bad_input_data_root_without_category(work, tmp_path, capsys):
    empty = tmp_path / "empty_root"
    (empty / "brick" / "test").mkdir(parents=True)
    code, err = _main(["run", "--notebook", str(work["nb"]), "--data-root", str(empty),
                       "--results-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and f"data root {empty} contains no category" in err
    code, err = _main(["run", "--notebook", str(work["nb"]), "--data-root", str(tmp_path / "missing"),
                       "--results-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "does not exist" in err


def test_bad_input_notebook_without_parameters_cell(work, tmp_path, capsys):
    nb = _notebook(tmp_path / "noparams.ipynb", params=None, body="x = 1\n")
    code, err = _main(["run", "--notebook", str(nb), "--data-root", str(work["root"]),
                       "--results-dir", str(tmp_path / "runs")], capsys)
    assert code == 2 and "noparams.ipynb: no cell tagged 'parameters'" in err
    code, err = _main(["run", "--notebook", str(tmp_path / "nope.ipynb"), "--data-root", str(work["root"])], capsys)
    assert code == 2 and "notebook not found" in err


def test_bad_input_run_dir_with_other_config(failing_run, work, capsys):
    code, err = _main(["run", "--notebook", str(work["nb"]), "--data-root", str(work["root"]),
                       "--run-name", "r1", "--results-dir", str(work["base"] / "runs"), "-p", "epochs", "4",
                       "-p", "n_repeat", "2"], capsys)
    assert code == 2 and "different config" in err and "'epochs': 3" in err and "--force" in err
    assert json.loads((failing_run["run_dir"] / "run.json").read_text())["overrides"] == {"epochs": 3, "n_repeat": 2}


# ----------------------------------------------------------------------------- real runs
def test_failing_category_does_not_stop_the_others(failing_run, work):
    first, run_dir = failing_run["first"], failing_run["run_dir"]
    assert first.returncode == 1, first.stdout + first.stderr
    # The good category ran with the parsed overrides and the runner-set parameters.
    result = failing_run["brick_result"]
    assert result == {**result, "category": "brick", "epochs": 3, "preset": "official", "lr": 0.4,
                      "n_repeat": 2, "run_dir": str(run_dir)}
    # papermill's default kernel "python3" ran on this very interpreter (its ipykernel).
    assert result["python"] == sys.executable
    assert (run_dir / "brick" / "check.ipynb").is_file()
    # The failed notebook is kept, its path is in the summary with the error.
    failed = run_dir / "grass" / "check.failed.ipynb"
    assert failed.is_file() and not (run_dir / "grass" / "check.ipynb").exists()
    assert "1 of 2 categories succeeded, 1 failed" in first.stdout
    assert str(failed) in first.stdout and "DataError" in first.stdout and work["bad"].name in first.stdout
    # The executed notebook is the audit trail: injected parameters and the traceback are in it.
    nb = nbformat.read(failed, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    # Per-category progress streamed to a log file; no temp notebook left behind.
    log = (run_dir / "brick" / "check.log").read_text()
    assert "checked 1/12" in log and "checked 12/12" in log
    assert not list(run_dir.glob("*/.check.tmp*"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["preset"] == "official" and record["data_root"] == str(work["root"].resolve())
    assert record["notebooks"] == ["check.ipynb"] and record["categories"] == ["brick", "grass"]


def test_rerun_skips_complete_categories(failing_run):
    second, run_dir = failing_run["second"], failing_run["run_dir"]
    assert second.returncode == 1
    after = json.loads((run_dir / "brick" / "result.json").read_text())
    assert after == failing_run["brick_result"]  # not re-executed (same pid and timestamp)
    assert "brick" in second.stdout and "SKIPPED" in second.stdout and "check skipped" in second.stdout
    assert str(run_dir / "grass" / "check.failed.ipynb") in second.stdout


def test_parallel_jobs_and_force(work, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(work["root"] / "brick", root / "brick")
    shutil.copytree(work["root"] / "brick", root / "brick2")
    # Relative data root and results dir (as `make reproduce` passes them): the notebooks run with
    # their category folder as working directory, so the runner must hand them absolute paths.
    args = ["run", "--notebook", str(work["nb"]), "--data-root", "data", "--run-name", "par",
            "--results-dir", "runs", "--jobs", "2", "-p", "epochs", "1"]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 categories succeeded" in proc.stdout
    results = [json.loads((tmp_path / "runs" / "par" / c / "result.json").read_text()) for c in ("brick", "brick2")]
    assert [r["category"] for r in results] == ["brick", "brick2"]
    assert all(Path(r["run_dir"]) == tmp_path / "runs" / "par" for r in results)
    assert results[0]["pid"] != results[1]["pid"]
    assert "[2/2] " in proc.stdout and "\r" not in proc.stdout  # a log gets one plain line per finished category
    # --force re-executes a complete category.
    proc = _cli(*args[:-5], "--categories", "brick", "--force", "-p", "epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads((tmp_path / "runs" / "par" / "brick" / "result.json").read_text())
    assert again["t"] > results[0]["t"]


def test_category_lock_prevents_concurrent_writers(work, tmp_path):
    out_dir = tmp_path / "brick"
    job = batch.CategoryJob("brick", str(out_dir), ((str(work["nb"]), (), {}),), False, None, False, None, None)
    with jobs._flock(out_dir / ".lock", wait=False):
        res = batch.run_category_job(job)
    assert res.status == "failed" and "is being written by pid" in res.steps[0].error
    assert not (out_dir / ".lock").exists()  # removed by its holder on release
    with jobs._flock(out_dir / ".lock", wait=False):  # and taken again
        assert (out_dir / ".lock").read_text() == f"pid {os.getpid()}\n"


def test_force_reaches_notebooks_that_declare_it(tmp_path):
    """``--force`` must make 02_train retrain (fit(resume=False)), not just re-execute the notebook."""
    train = batch.load_notebook_spec(REPO / "notebooks" / "02_train.ipynb")
    evaluate = batch.load_notebook_spec(REPO / "notebooks" / "03_evaluate.ipynb")
    kw = dict(category="brick", data_root=tmp_path, run_dir=tmp_path, out_dir=tmp_path / "brick",
              preset="official", overrides={"epochs": 2, "k_examples": 1})
    params = jobs._notebook_params(train, force=True, **kw)
    assert params == {"category": "brick", "data_root": str(tmp_path), "run_dir": str(tmp_path),
                      "out_dir": str(tmp_path / "brick"), "preset": "official", "force": True, "epochs": 2}
    assert jobs._notebook_params(train, **kw)["force"] is False
    assert "force" not in jobs._notebook_params(evaluate, force=True, **kw)
    assert jobs._notebook_params(evaluate, **kw)["k_examples"] == 1
    with pytest.raises(BatchError, match="set by the runner; use --force"):
        batch.validate_overrides([train], "official", {"force": True})
    source = "".join(c.source for c in nbformat.read(train.path, as_version=4).cells)
    assert "resume=not force" in source


def test_rerun_removes_stale_outputs_of_the_steps_it_reexecutes(tmp_path):
    """A re-executed step (and every later one) loses its old outputs first, so a failing rerun
    cannot leave an old metrics.json that looks like the new run's result; resume points stay."""
    out = tmp_path / "cat"
    (out / "tables").mkdir(parents=True)
    names = ["02_train.ipynb", "checkpoint.pt", "history.csv", "last.pt", "03_evaluate.ipynb",
             "predictions_test.npz", "predictions_val.npz", "metrics.json", "tables/results.csv"]
    for name in names:
        (out / name).write_text("old")
    steps = [(str(tmp_path / "03_evaluate.ipynb"), batch.NOTEBOOK_OUTPUTS["03_evaluate"], {}),
             (str(tmp_path / "04_report.ipynb"), batch.NOTEBOOK_OUTPUTS["04_report"], {})]
    jobs._remove_outputs(out, steps)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["02_train.ipynb", "checkpoint.pt", "history.csv", "last.pt"]


# ----------------------------------------------------------------------------- declared outputs, stale files
def _written_by_notebook(path: Path) -> set[str]:
    """Files a notebook's own code writes into ``out``: ``out / "name"`` literals (figures through
    ``save_figure(fig, out / "name", formats=("png",))`` get their ``.png``)."""
    import re

    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    figures = re.findall(r'save_figure\(fig, out / "([^"]+)", formats=\("png",\)\)', code)
    assert len(figures) == code.count("save_figure("), path  # every figure is written as png only
    return {f + ".png" for f in figures} | (set(re.findall(r'\bout / "([^"]+)"', code)) - set(figures))


def test_declared_outputs_cover_every_file_the_notebooks_write():
    for stem in ("01_explore_dataset", "02_train", "03_evaluate"):
        written = _written_by_notebook(REPO / "notebooks" / f"{stem}.ipynb")
        assert written and written <= set(batch.NOTEBOOK_OUTPUTS[stem]), (stem, written)
    # what the library writes for them (fit: 02_train; evaluate_category: 03_evaluate) is checked on a real
    # run in tests/integration/test_reproduce.py::test_demo_category_folder_holds_only_declared_outputs
    figures = {o for outputs in batch.NOTEBOOK_OUTPUTS.values() for o in outputs if o.endswith(".png")}
    assert figures == {"examples.png", "training_curves.png", "per_defect_type.png", "curves.png", "best_worst.png"}


FAILING = '''from pathlib import Path
Path(out_dir, "history.csv").write_text("new run, partial")
raise RuntimeError("killed mid-way")
'''


def test_forced_rerun_failing_mid_way_leaves_no_old_figure_or_temporary_file(tmp_path):
    """--force deletes every declared output (figures too) of the steps it re-executes before running
    them, so a rerun that dies mid-way cannot leave the old run's figures next to its own files; and the
    temporary files of a killed earlier run (writer gone) are removed."""
    out = tmp_path / "cat"
    out.mkdir()
    train = _notebook(tmp_path / "02_train.ipynb", body=FAILING)
    evaluate = _notebook(tmp_path / "03_evaluate.ipynb")
    old = ["02_train.ipynb", *batch.NOTEBOOK_OUTPUTS["02_train"], "03_evaluate.ipynb",
           *batch.NOTEBOOK_OUTPUTS["03_evaluate"]]
    for name in old:
        (out / name).write_text("old run")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [out / f".02_train.tmp{dead}.ipynb", out / f".metrics.tmp{dead}.json", out / f".last.tmp{dead}.pt"]
    for path in stale:
        path.write_text("killed write")
    (out / "last.pt").write_text("resume point")
    steps = tuple((str(p), batch.NOTEBOOK_OUTPUTS[p.stem], {"category": "cat", "out_dir": str(out)})
                  for p in (train, evaluate))
    res = batch.run_category_job(batch.CategoryJob("cat", str(out), steps, True, None, False, 120, None))
    assert res.status == "failed" and "killed mid-way" in res.failed_step.error
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted(["02_train.failed.ipynb", "02_train.log", "history.csv", "last.pt"])  # no lock file left
    assert (out / "history.csv").read_text() == "new run, partial"  # the new run's, not the old one
    assert (out / "last.pt").read_text() == "resume point"


def test_demo_banner_says_which_teacher_is_used(tmp_path, monkeypatch, capsys):
    """``reproduce`` on the demo with ``-p teacher_weights FILE``: no random-teacher banner; the file is
    checked before anything runs and named at the start and the end."""
    import torchvision

    pth = tmp_path / "my_teacher.pth"
    torch_module = __import__("torch")
    torch_module.manual_seed(0)
    torch_module.save(torchvision.models.resnet18(weights=None).state_dict(), pth)
    runs = []
    monkeypatch.setattr(batch, "run_batch", lambda notebooks, **kw: runs.append(kw) or batch.BatchResult(
        kw["run_dir"], [], None))
    monkeypatch.delenv("MVTEC_ROOT", raising=False)
    monkeypatch.setenv("STFPM_OFFLINE", "1")
    base = ["reproduce", "--results-dir", str(tmp_path / "runs"), "--no-progress"]
    assert batch.main(base + ["-p", "teacher_weights", str(pth)]) == 0
    out = capsys.readouterr().out
    from stfpm_lib.io import sha256_file

    assert "RANDOMLY INITIALISED" not in out and "random teacher" not in out
    note = f"teacher weights: file {pth.name} from {pth} (sha256 {sha256_file(pth)[:16]}...)"
    assert out.count(note) == 2 and out.strip().splitlines()[-1] == note
    assert runs[0]["overrides"]["teacher_weights"] == str(pth) and runs[0]["overrides"]["epochs"] == 20
    # without -p teacher_weights (offline): the random-teacher banner, at start and end
    assert batch.main(base + ["--run-name", "r2"]) == 0
    assert capsys.readouterr().out.count("RANDOMLY INITIALISED teacher") == 2
    # an unusable file is one clear error before anything runs
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    assert batch.main(base + ["--run-name", "r3", "-p", "teacher_weights", str(bad)]) == 2
    assert "teacher weights" in capsys.readouterr().err and len(runs) == 2


def test_default_output_shows_each_jobs_epochs_readably_in_a_log(tiny_mvtec, tmp_path):
    """Without --no-progress, output that is not a terminal (CI, a log file) gets plain lines, no carriage
    returns: each category's step, then its epoch, loss and ETA at each quarter of the epochs."""
    done = subprocess.run(
        [sys.executable, "-m", "stfpm_lib.runner.cli", "run", "--notebook", str(REPO / "notebooks" / "02_train.ipynb"),
         "--data-root", str(tiny_mvtec), "--categories", "brick", "--results-dir", str(tmp_path), "--run-name", "p",
         "-p", "epochs", "4", "-p", "image_size", "64", "-p", "batch_size", "8", "-p", "teacher_weights", "random"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    epochs = [line.split(",")[0] for line in lines if line.startswith("brick 02_train: epoch")]
    # the runner looks once a second: a fast epoch between two looks is not shown, the last one always is
    assert epochs and epochs[-1] == "brick 02_train: epoch 4/4" and epochs == sorted(set(epochs)), epochs
    assert all(", loss " in line and ", ETA " in line for line in lines if line.startswith("brick 02_train: epoch"))
    assert "brick 02_train: running" in lines and "\r" not in done.stdout


@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", ".hidden", "a/b"])
def test_run_names_stay_inside_the_results_folder(name, tiny_mvtec, tmp_path, capsys):
    code = batch.main(["run", "--notebook", str(REPO / "notebooks" / "01_explore_dataset.ipynb"), "--data-root",
                       str(tiny_mvtec), "--results-dir", str(tmp_path / "runs"), "--run-name", name, "--no-progress"])
    assert code == 2 and "--run-name: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written, inside or outside


def test_a_title_given_with_p_is_used_not_replaced(tmp_path, monkeypatch):
    """``run 04_report -p title MyTitle`` used to exit 0 with the runner's own title in its place."""
    runs = []
    monkeypatch.setattr(batch, "run_batch", lambda notebooks, **kw: runs.append(kw) or batch.BatchResult(
        kw["run_dir"], [], None))
    report = str(REPO / "notebooks" / "04_report.ipynb")
    assert batch.main(["run", "--notebook", report, "--results-dir", str(tmp_path), "-p", "title", "MyTitle"]) == 0
    assert runs[0]["overrides"]["title"] == "MyTitle" and "title" not in runs[0]["run_level_params"]
    assert batch.main(["run", "--notebook", report, "--results-dir", str(tmp_path), "--run-name", "r"]) == 0
    assert runs[1]["run_level_params"] == {"title": "r (official)"}


def test_ctrl_c_ends_with_one_line_and_exit_130(tiny_mvtec, tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) while a notebook runs: exit status 130 and the
    runner's one line last, not a KeyboardInterrupt traceback and death by the signal."""
    import signal
    import time

    nb = _notebook(tmp_path / "slow.ipynb", body="import time, pathlib\npathlib.Path(out_dir, 'started').touch()\n"
                                                 "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-m", "stfpm_lib.batch", "run", "--notebook", str(nb), "--data-root",
                             str(tiny_mvtec), "--categories", "brick", "--results-dir", str(tmp_path / "runs"),
                             "--run-name", "c", "--no-progress"], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    started = tmp_path / "runs" / "c" / "brick" / "started"
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.communicate(timeout=30)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out[-1000:], err[-2000:])
    assert err.strip().splitlines()[-1] == ("python -m stfpm_lib.batch run: interrupted (finished categories and "
                                            "jobs are kept; rerun to resume)")
    assert "KeyboardInterrupt" not in err.strip().splitlines()[-1]


def test_runs_land_under_the_results_root_whatever_the_working_directory(tmp_path, monkeypatch):
    """Without --results-dir a run goes to <results root>/runs, where 04_report and 05_figures look for it."""
    runs = []
    monkeypatch.setattr(batch, "run_batch", lambda notebooks, **kw: runs.append(kw) or batch.BatchResult(
        kw["run_dir"], [], None))
    monkeypatch.setenv("STFPM_RESULTS", str(tmp_path / "results"))
    monkeypatch.chdir(tmp_path)
    assert batch.main(["run", "--notebook", str(REPO / "notebooks" / "04_report.ipynb"), "--run-name", "r"]) == 0
    assert runs[0]["run_dir"] == tmp_path / "results" / "runs" / "r"
