"""Execution backends (stfpm_lib.runner.executors): option parsing, GPU assignment, the local pool's
pinning in real worker processes, and the job script of a real dask-jobqueue SLURMCluster / PBSCluster."""

from __future__ import annotations

import os

import pytest

from stfpm_lib.runner import executors
from stfpm_lib.runner.executors import (
    ClusterOptions,
    ExecutorError,
    ExecutorSpec,
    executor_spec,
    gpu_for_slot,
    make_jobqueue_cluster,
    pin_gpu,
    run_tasks,
    slot_from_name,
    visible_gpus,
)


def test_gpu_for_slot_round_robin():
    gpus = ["0", "1", "2"]
    assert [gpu_for_slot(s, gpus) for s in range(7)] == ["0", "1", "2", "0", "1", "2", "0"]
    assert gpu_for_slot(5, ["GPU-a1", "GPU-b2"]) == "GPU-b2"  # UUIDs / MIG names are kept as given
    assert gpu_for_slot(0, ["3"]) is None and gpu_for_slot(4, []) is None  # one GPU or none: no pinning
    assert gpu_for_slot(None, gpus) is None  # not a pool / cluster worker


def test_visible_gpus_and_pin_gpu_from_the_environment():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4, 6,7"}) == ["4", "6", "7"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    env = {"CUDA_VISIBLE_DEVICES": "4,6,7"}
    assert pin_gpu(4, env) == "6" and env == {"CUDA_VISIBLE_DEVICES": "6"}
    assert pin_gpu(4, env) is None and env == {"CUDA_VISIBLE_DEVICES": "6"}  # pinned already: stays
    env = {"CUDA_VISIBLE_DEVICES": "2"}
    assert pin_gpu(1, env) is None and env == {"CUDA_VISIBLE_DEVICES": "2"}


def test_slot_from_worker_names():
    assert [slot_from_name(n) for n in (0, 3, "2", "SLURMCluster-12-1", "w-0", "tcp://127.0.0.1:40000", "w")] == [
        0, 3, 2, 1, 0, None, None]


def test_local_pool_pins_each_worker_process_to_one_gpu(monkeypatch):
    """Two spawned pool processes with two visible GPU ids: each job sees one of them, never both."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")
    seen: dict[int, str] = {}
    run_tasks(os.getenv, ["CUDA_VISIBLE_DEVICES"] * 4, ExecutorSpec("local", workers=2),
              lambda i, result, exc: seen.setdefault(i, result if exc is None else repr(exc)))
    assert sorted(seen) == [0, 1, 2, 3] and set(seen.values()) <= {"3", "7"}
    # in this process (workers=1) nothing is pinned
    seen.clear()
    run_tasks(os.getenv, ["CUDA_VISIBLE_DEVICES"], ExecutorSpec("local", workers=1),
              lambda i, result, exc: seen.setdefault(i, result))
    assert seen == {0: "3,7"}


def test_local_run_reports_exceptions_and_goes_on():
    done = []
    run_tasks(int, ["1", "x", "3"], ExecutorSpec("local"), lambda i, r, exc: done.append((i, r, type(exc).__name__)))
    assert done == [(0, 1, "NoneType"), (1, None, "ValueError"), (2, 3, "NoneType")]


def test_executor_spec_from_options():
    assert executor_spec() == ExecutorSpec("local", workers=1)
    assert executor_spec(jobs=3).describe() == "local process pool (3 processes)"
    lc = executor_spec(cluster="local:2")
    assert (lc.kind, lc.workers, lc.allowed_failures) == ("localcluster", 2, 0)
    sched = executor_spec(scheduler="tcp://10.1.2.3:8786", allowed_failures=2)
    assert (sched.kind, sched.address, sched.allowed_failures) == ("scheduler", "tcp://10.1.2.3:8786", 2)
    slurm = executor_spec(cluster="slurm", workers=4, options=ClusterOptions(queue="gpu", cores=8, gpus=2))
    assert (slurm.kind, slurm.workers, slurm.cluster.processes, slurm.threads_per_job) == ("slurm", 4, 2, 4)
    for kwargs, message in [
        ({"jobs": 0}, "--jobs must be >= 1"),
        ({"scheduler": "tcp://h:1", "cluster": "local:2"}, "either --scheduler or --cluster"),
        ({"scheduler": "myhost"}, "is not an address like tcp://host:8786"),
        ({"cluster": "local:0"}, "number of workers must be >= 1"),
        ({"cluster": "kubernetes"}, "'kubernetes' is not one of local:N, slurm, pbs"),
        ({"cluster": "slurm", "options": ClusterOptions(walltime="2h")}, "--walltime '2h' is not like HH:MM:SS"),
        ({"cluster": "pbs", "options": ClusterOptions(gpus=-1)}, "--gpus >= 0"),
        ({"cluster": "slurm", "workers": 0}, "--workers must be >= 1"),
        ({"allowed_failures": -1}, "--worker-retries must be >= 0"),
    ]:
        with pytest.raises(ExecutorError, match=message):
            executor_spec(**kwargs)


def test_slurm_cluster_job_script_carries_the_options():
    """A real dask-jobqueue SLURMCluster (its scheduler starts here; no batch job is submitted)."""
    options = ClusterOptions(queue="gpu", cores=8, memory="32GB", gpus=2, walltime="04:30:00", account="proj42",
                             job_extra=("--constraint=a100",))
    cluster = make_jobqueue_cluster(executor_spec(cluster="slurm", workers=3, options=options))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A proj42", "#SBATCH --cpus-per-task=8", "#SBATCH -t 04:30:00",
                      "#SBATCH --gres=gpu:2", "#SBATCH --constraint=a100"):
        assert directive in lines, (directive, script)
    assert any(line.startswith("#SBATCH --mem=") and line.endswith("G") for line in lines)
    command = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nworkers 2" in command and "--nthreads 4" in command and "--resources slot=1" in command
    assert any(line.startswith("export PYTHONPATH=") for line in lines)
    assert len(cluster.workers) == 0  # nothing was submitted


def test_pbs_cluster_job_script_carries_the_options():
    options = ClusterOptions(queue="workq", cores=4, memory="16GB", gpus=1, walltime="01:00:00", account="p1")
    cluster = make_jobqueue_cluster(executor_spec(cluster="pbs", options=options))
    try:
        lines = cluster.job_script().splitlines()
    finally:
        cluster.close()
    for directive in ("#PBS -q workq", "#PBS -A p1", "#PBS -l select=1:ncpus=4:ngpus=1:mem=16GB",
                      "#PBS -l walltime=01:00:00"):
        assert directive in lines, (directive, lines)
    with pytest.raises(ExecutorError, match="not a dask-jobqueue cluster"):
        make_jobqueue_cluster(ExecutorSpec("localcluster", workers=1))


def test_module_docstring_examples_hold():
    """The doctest examples of gpu_for_slot / slot_from_name (stfpm_lib/runner is not under --doctest-modules)."""
    import doctest

    outcome = doctest.testmod(executors)
    assert outcome.attempted >= 2 and outcome.failed == 0
