"""The study runner end to end (``python -m stfpm_lib.batch study``): the real notebooks 02_train and
03_evaluate on the tiny synthetic dataset (32 px, one epoch), a 2-variant grid, on the local process
pool, a Dask LocalCluster, and a real Dask scheduler with two worker processes on 127.0.0.1 of which
one is killed mid-run (the rerun completes the grid)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SPEC = """name: {name}
preset: official
overrides: {{epochs: 1, image_size: 32, batch_size: 4, eval_batch_size: 16, teacher_weights: random}}
parameters: {{k_examples: 1}}
variants:
  base: {{}}
  l12: {{layers: [layer1, layer2]}}
seeds: [{seeds}]
categories: [brick]
baseline: base
"""


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.pop("MVTEC_ROOT", None)
    env.update(extra)
    return env


def _study_cmd(spec: Path, out: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stfpm_lib.batch", "study", str(spec), "--data-root", str(data), "--out", str(out),
            "--no-progress", *extra]


def _cli(spec: Path, out: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_study_cmd(spec, out, data, *extra), cwd=out.parent, env=_env(), capture_output=True,
                          text=True, timeout=600)


def _spec(tmp: Path, name: str, seeds: str = "0") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, seeds=seeds))
    return path


def _job_dir(out: Path, variant: str, seed: int = 0, category: str = "brick") -> Path:
    return out / "runs" / variant / f"seed{seed}" / category


def _check_job(out: Path, name: str, variant: str, overrides: dict, seed: int = 0) -> dict:
    metrics = json.loads((_job_dir(out, variant, seed) / "metrics.json").read_text())
    assert metrics["study"] == {"study": name, "variant": variant, "overrides": overrides, "seed": seed,
                                "category": "brick"}
    assert metrics["config"]["seed"] == seed and metrics["config"]["epochs"] == 1
    assert metrics["config"]["layers"] == overrides.get("layers", ["layer1", "layer2", "layer3"])
    assert 0.0 <= metrics["metrics"]["image_auroc"] <= 1.0
    return metrics


@pytest.fixture(scope="module")
def local_run(tiny_mvtec, tmp_path_factory) -> dict:
    """The grid on the local pool (2 processes), then the same command again."""
    tmp = tmp_path_factory.mktemp("study_local")
    spec, out = _spec(tmp, "grid"), tmp / "grid_out"
    first = _cli(spec, out, tiny_mvtec, "--jobs", "2")
    mtimes = {v: _job_dir(out, v).joinpath("metrics.json").stat().st_mtime_ns for v in ("base", "l12")
              if _job_dir(out, v).joinpath("metrics.json").is_file()}
    second = _cli(spec, out, tiny_mvtec, "--jobs", "2")
    return {"first": first, "second": second, "out": out, "spec": spec, "mtimes": mtimes}


def test_local_pool_runs_the_grid(local_run, tiny_mvtec):
    first, out = local_run["first"], local_run["out"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 variants x 1 seeds x 1 categories = 2 jobs" in first.stdout
    assert "2 of 2 jobs done (2 run, 0 already done), 0 failed" in first.stdout
    # the study's tables over the finished jobs, baseline first
    assert f"study tables: {out / 'tables' / 'compare.md'}" in first.stdout
    results = (out / "tables" / "results.md").read_text()
    assert results.index("| base |") < results.index("| l12 |")
    _check_job(out, "grid", "base", {})
    _check_job(out, "grid", "l12", {"layers": ["layer1", "layer2"]})
    study = json.loads((out / "study.json").read_text())
    assert {k: study[k] for k in ("name", "preset", "variants", "seeds", "categories", "notebooks", "baseline")} == {
        "name": "grid", "preset": "official", "variants": {"base": {}, "l12": {"layers": ["layer1", "layer2"]}},
        "seeds": [0], "categories": ["brick"], "notebooks": ["02_train.ipynb", "03_evaluate.ipynb"],
        "baseline": "base"}
    assert study["spec_text"] == local_run["spec"].read_text() and study["data_root"] == str(tiny_mvtec)
    assert study["jobs"] == 2 and study["packages"]["torch"] != "not installed"
    # runs/<variant>/seed<seed> is an ordinary run directory of the notebook runner
    run = json.loads((out / "runs" / "l12" / "seed0" / "run.json").read_text())
    assert run["overrides"] == {"batch_size": 4, "epochs": 1, "eval_batch_size": 16, "image_size": 32,
                                "k_examples": 1, "layers": ["layer1", "layer2"], "seed": 0,
                                "teacher_weights": "random"}
    assert run["categories"] == ["brick"] and run["preset"] == "official"
    # the category locks were released and removed by the pool processes that held them
    assert not any(_job_dir(out, v).joinpath(".lock").exists() for v in ("base", "l12"))


def test_local_rerun_skips_finished_jobs(local_run):
    second, out = local_run["second"], local_run["out"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 of 2 jobs done (0 run, 2 already done), 0 failed" in second.stdout
    assert len(local_run["mtimes"]) == 2
    for variant, mtime in local_run["mtimes"].items():
        assert _job_dir(out, variant).joinpath("metrics.json").stat().st_mtime_ns == mtime


def test_a_job_without_its_study_stamp_is_not_done(local_run, tiny_mvtec):
    """A job killed after its last notebook but before the stamp: the rerun stamps it, re-executing nothing."""
    out = local_run["out"]
    path = _job_dir(out, "base") / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["study"]
    path.write_text(json.dumps(metrics))
    third = _cli(local_run["spec"], out, tiny_mvtec)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "2 of 2 jobs done (1 run, 1 already done)" in third.stdout
    _check_job(out, "grid", "base", {})
    assert (_job_dir(out, "base") / "02_train.ipynb").stat().st_mtime_ns < path.stat().st_mtime_ns


def test_local_cluster_runs_the_grid(tiny_mvtec, tmp_path):
    spec, out = _spec(tmp_path, "lc"), tmp_path / "lc_out"
    proc = _cli(spec, out, tiny_mvtec, "--cluster", "local:2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "dask LocalCluster (2 worker processes on 127.0.0.1)" in proc.stdout
    assert "2 of 2 jobs done (2 run, 0 already done), 0 failed" in proc.stdout
    _check_job(out, "lc", "base", {})
    _check_job(out, "lc", "l12", {"layers": ["layer1", "layer2"]})
    assert json.loads((out / "study.json").read_text())["executor"].startswith("dask LocalCluster")
    workers = [json.loads((_job_dir(out, v) / "metrics.json").read_text())["study_worker"] for v in ("base", "l12")]
    assert all(w["pid"] != os.getpid() and w["host"] == platform.node() for w in workers)  # stamped by the workers


# ----------------------------------------------------------------------------- a real scheduler, a killed worker
def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def dask_cluster(tmp_path):
    """A ``dask scheduler`` and two ``dask worker`` processes (with nannies) on 127.0.0.1, as subprocesses.

    The scheduler does not resubmit the job of a dead worker (allowed-failures 0): that job fails and
    a rerun resumes it."""
    from distributed import Client

    sched_file = tmp_path / "scheduler.json"
    env = _env(DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_for(sched_file.is_file, 120, "the scheduler")
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                 "--host", "127.0.0.1", "--nthreads", "1", "--name", f"w-{i}", "--no-dashboard"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(scheduler_file=str(sched_file), timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            address = client.scheduler.address
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_killed_worker_fails_only_its_job_and_the_rerun_completes(dask_cluster, tiny_mvtec, tmp_path):
    spec, out = _spec(tmp_path, "killed"), tmp_path / "killed_out"
    log = tmp_path / "first.log"
    with open(log, "w") as handle:
        first = subprocess.Popen(_study_cmd(spec, out, tiny_mvtec, "--scheduler", dask_cluster), cwd=tmp_path,
                                 env=_env(), stdout=handle, stderr=subprocess.STDOUT, text=True)
        victim = _job_dir(out, "l12")
        # 02_train.log is opened once the job holds its lock, before its kernel starts: the job is mid-run.
        _wait_for(lambda: (victim / "02_train.log").is_file() or first.poll() is not None, 300, "the job to start")
        worker_pid = int((victim / ".lock").read_text().split()[1])
        assert worker_pid not in (os.getpid(), first.pid)
        os.kill(worker_pid, signal.SIGKILL)
        assert first.wait(timeout=600) == 1, log.read_text()[-3000:]
    text = log.read_text()
    assert "1 of 2 jobs done (1 run, 0 already done), 1 failed" in text, text[-3000:]
    table = text[text.index("failed jobs (rerun the same command to resume them):"):].splitlines()
    row = next(line for line in table if line.strip().startswith("l12 "))
    assert row.split()[:4] == ["l12", "0", "brick", "(worker)"] and "KilledWorker" in row
    _check_job(out, "killed", "base", {})
    assert not (victim / "metrics.json").exists()
    base_mtime = (_job_dir(out, "base") / "metrics.json").stat().st_mtime_ns

    second = _cli(spec, out, tiny_mvtec, "--scheduler", dask_cluster)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 of 2 jobs done (1 run, 1 already done), 0 failed" in second.stdout
    _check_job(out, "killed", "l12", {"layers": ["layer1", "layer2"]})
    assert (_job_dir(out, "base") / "metrics.json").stat().st_mtime_ns == base_mtime
