"""The study runner's parts that need no kernel (stfpm_lib.runner.study_runner): the "study" stamp of
metrics.json, study.json and the run directories, the summary table, and bad input through the CLI
(exit code 2, nothing written). The runs themselves: tests/integration/test_study_runner.py."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest

from stfpm_lib.runner import papermill_runner as runner
from stfpm_lib.runner.executors import ExecutorSpec
from stfpm_lib.runner.study import StudyError, expand_jobs, load_study
from stfpm_lib.runner.study_runner import StudyResult, format_study_summary, prepare_study_dir, stamp_study

REPO = Path(__file__).resolve().parents[2]
SPEC = """name: {name}
overrides: {{epochs: 1, image_size: 32, teacher_weights: random}}
variants:
  a: {{}}
  b: {{layers: [layer1, layer2]}}
seeds: [0, 3]
categories: [brick]
"""


def _study(tmp_path: Path, name: str = "st", text: str | None = None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text if text is not None else SPEC.format(name=name))
    return load_study(path)


def _specs():
    return [runner.load_notebook_spec(REPO / "notebooks" / n) for n in ("02_train.ipynb", "03_evaluate.ipynb")]


#: the process that stamps a job in these tests (run_category_job runs in this process)
WORKER = {"host": platform.node(), "pid": os.getpid()}


def test_stamp_study_writes_the_record_once(tmp_path):
    record = {"study": "st", "variant": "b", "overrides": {"layers": ["layer1", "layer2"]}, "seed": 3,
              "category": "brick"}
    with pytest.raises(FileNotFoundError, match="no metrics.json in"):
        stamp_study(record, tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"image_auroc": 0.75}}))
    step = stamp_study(record, tmp_path)
    assert (step.notebook, step.status) == ("study", "ok")
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"metrics": {"image_auroc": 0.75}, "study": record,
                                                                   "study_worker": WORKER}
    assert stamp_study(record, tmp_path) is None  # there already: nothing to do
    assert not list(tmp_path.glob(".metrics.tmp*"))


def test_prepare_study_dir_writes_study_json_and_run_dirs(tmp_path, tiny_mvtec):
    study = _study(tmp_path)
    jobs = expand_jobs(study)
    out = tmp_path / "out"
    record = prepare_study_dir(out, study, jobs, data_root=tiny_mvtec, notebooks=_specs(),
                               executor=ExecutorSpec("local"), force=False)
    stored = json.loads((out / "study.json").read_text())
    assert stored == record and stored["jobs"] == 4 and stored["executor"] == "local process pool (1 process)"
    assert {k: stored[k] for k in ("name", "preset", "variants", "seeds", "categories", "notebooks", "baseline")} == {
        "name": "st", "preset": "official", "variants": {"a": {}, "b": {"layers": ["layer1", "layer2"]}},
        "seeds": [0, 3], "categories": ["brick"], "notebooks": ["02_train.ipynb", "03_evaluate.ipynb"],
        "baseline": None}
    assert sorted(str(p.relative_to(out)) for p in out.glob("runs/*/*/run.json")) == [
        "runs/a/seed0/run.json", "runs/a/seed3/run.json", "runs/b/seed0/run.json", "runs/b/seed3/run.json"]
    run = json.loads((out / "runs" / "b" / "seed3" / "run.json").read_text())
    assert run["overrides"] == {"epochs": 1, "image_size": 32, "layers": ["layer1", "layer2"], "seed": 3,
                                "teacher_weights": "random"}
    # a changed variant is refused (its run dir holds another config), unless --force
    changed = _study(tmp_path, text=SPEC.format(name="st").replace("layer1, layer2", "layer1"))
    with pytest.raises(runner.BatchError, match=r"runs/b/seed0 holds a run with a different config"):
        prepare_study_dir(out, changed, expand_jobs(changed), data_root=tiny_mvtec, notebooks=_specs(),
                          executor=ExecutorSpec("local"), force=False)
    # another study in the same folder is refused
    other = _study(tmp_path, name="other")
    with pytest.raises(StudyError, match=r"holds the study 'st', not 'other'; choose another --out"):
        prepare_study_dir(out, other, expand_jobs(other), data_root=tiny_mvtec, notebooks=_specs(),
                          executor=ExecutorSpec("local"), force=False)


def test_summary_counts_per_variant_and_lists_failures(tmp_path):
    study = _study(tmp_path)
    jobs = expand_jobs(study)
    ok = runner.CategoryResult("brick", [runner.StepResult("02_train", "ok", "x")])
    skipped = runner.CategoryResult("brick", [runner.StepResult("02_train", "skipped", "x")])
    failed = runner.CategoryResult("brick", [runner.StepResult("02_train", "ok", "x"), runner.StepResult(
        "03_evaluate", "failed", "/o/03_evaluate.failed.ipynb", 1.0, "ValueError: bad map\nsecond line")])
    text = format_study_summary(StudyResult("st", tmp_path, jobs, [ok, skipped, ok, failed], 12.5))
    lines = text.splitlines()
    assert lines[0] == f"== study st: 4 jobs in 12.5 s ({tmp_path}) =="
    assert lines[2].split() == ["a", "1", "1", "0"] and lines[3].split() == ["b", "1", "0", "1"]
    assert "3 of 4 jobs done (2 run, 1 already done), 1 failed" in text
    row = lines[lines.index("failed jobs (rerun the same command to resume them):") + 2]
    assert row.split() == ["b", "3", "brick", "03_evaluate", "ValueError:", "bad", "map"]
    assert lines[-1].strip() == "/o/03_evaluate.failed.ipynb"
    assert StudyResult("st", tmp_path, jobs, [ok, skipped, ok, failed]).exit_code == 1


def _main(argv, capsys) -> tuple[int, str, str]:
    code = runner.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("extra, message", [
    ("parameters: {k_exampels: 2}\n", "variant 'a': unknown notebook parameter 'k_exampels'"),
    ("notebooks: [02_train.ipynb]\n", "none writes metrics.json (end the chain with 03_evaluate.ipynb)"),
    ("notebooks: [02_train.ipynb, 03_evaluate.ipynb, 04_report.ipynb]\n", "['04_report.ipynb'] do not declare 'category'"),
    ("notebooks: [02_train.ipynb, nope.ipynb]\n", "notebook not found"),
    ("categories: [brick, wood]\n", "unknown category ['wood']"),
])
def test_bad_input_exits_2_before_anything_is_written(tmp_path, tiny_mvtec, capsys, extra, message):
    text = SPEC.format(name="bad").replace("categories: [brick]\n", "") + extra
    if "categories" not in extra:
        text += "categories: [brick]\n"
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    code, _, err = _main(["study", str(spec), "--data-root", str(tiny_mvtec), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and err.startswith("python -m stfpm_lib.batch study: error: ") and message in err, err
    assert not (tmp_path / "o").exists()


def test_bad_executor_options_and_spec_errors_exit_2(tmp_path, tiny_mvtec, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="s"))
    base = ["study", str(spec), "--data-root", str(tiny_mvtec), "--out", str(tmp_path / "o")]
    code, _, err = _main(base + ["--cluster", "local:2", "--scheduler", "tcp://127.0.0.1:1"], capsys)
    assert code == 2 and "either --scheduler or --cluster" in err
    code, _, err = _main(base + ["--cluster", "yarn"], capsys)
    assert code == 2 and "'yarn' is not one of local:N, slurm, pbs" in err
    spec.write_text("variants: {a: {epochs: -1}}\n")
    code, _, err = _main(base, capsys)
    assert code == 2 and f"error: {spec}: variants.a.epochs: epochs=-1 must be >= 1" in err
    code, _, err = _main(["study", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "study file not found" in err
    assert not (tmp_path / "o").exists()


def test_dry_run_lists_the_jobs(tmp_path, tiny_mvtec, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(name="s").replace("categories: [brick]", "categories: all"))
    code, out, _ = _main(["study", str(spec), "--data-root", str(tiny_mvtec), "--out", str(tmp_path / "o"),
                          "--dry-run"], capsys)
    assert code == 0
    assert "2 variants x 2 seeds x 2 categories = 8 jobs" in out
    lines = [line.split()[0] for line in out.splitlines()[1:]]
    assert lines == ["a/seed0/brick", "a/seed0/grass", "a/seed3/brick", "a/seed3/grass", "b/seed0/brick",
                     "b/seed0/grass", "b/seed3/brick", "b/seed3/grass"]
    assert not (tmp_path / "o").exists()


def test_a_job_whose_stamp_fails_is_not_done(tmp_path):
    """The finish hook runs under the category's lock after the notebooks; when the chain left no
    metrics.json, the job fails at its "(finish)" step (here a job with no notebooks: no kernel)."""
    import functools

    record = {"study": "st", "variant": "a", "overrides": {}, "seed": 0, "category": "brick"}
    job = runner.CategoryJob("brick", str(tmp_path / "brick"), (), False, None, False, None, None,
                             finish=functools.partial(stamp_study, record), label="a/seed0/brick")
    res = runner.run_category_job(job)
    assert res.status == "failed" and res.failed_step.notebook == "(finish)"
    assert res.failed_step.error.startswith("FileNotFoundError: no metrics.json in")
    (tmp_path / "brick" / "metrics.json").write_text("{}")
    res = runner.run_category_job(job)
    assert [(s.notebook, s.status) for s in res.steps] == [("study", "ok")] and res.status == "ok"
    assert json.loads((tmp_path / "brick" / "metrics.json").read_text()) == {"study": record, "study_worker": WORKER}
    assert job.name == "a/seed0/brick"
