"""The ablation notebooks (06-10) on a tiny study: 2 variants x 2 seeds on one synthetic category, one epoch,
32 px, random teacher, run by the study command with a ``report`` notebook; then every ablation notebook
executed on that study directory (as a user reruns one interactively or with papermill)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from PIL import Image

from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[01][0-9]_ablation_*.ipynb"))
SPEC = """name: tiny
preset: official
overrides: {epochs: 1, image_size: 32, batch_size: 4, eval_batch_size: 16, teacher_weights: random}
parameters: {k_examples: 1}
variants:
  base: {}
  zero_bn: {random_init: zero_last_bn}
seeds: [0, 1]
categories: [brick]
baseline: base
report: 09_ablation_factors.ipynb
"""


@pytest.fixture(scope="module")
def study(tiny_mvtec, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("ablation")
    (tmp / "tiny.yaml").write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MVTEC_ROOT", None)
    done = subprocess.run([sys.executable, "-m", "stfpm_lib.batch", "study", str(tmp / "tiny.yaml"), "--data-root",
                           str(tiny_mvtec), "--out", str(tmp / "out"), "--no-progress", "--jobs", "2",
                           "--n-resamples", "50"], cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    return {"done": done, "out": tmp / "out"}


def test_the_study_command_runs_its_report_notebook(study):
    done, out = study["done"], study["out"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"study report: ok {out / '09_ablation_factors.ipynb'}" in done.stdout
    nb = nbformat.read(out / "09_ablation_factors.ipynb", as_version=4)
    text = "\n".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells for o in c.get("outputs", []))
    assert "variants vs baseline base" in text and RANDOM_TEACHER_LABEL in text
    costs = pd.read_csv(out / "tables" / "costs.csv")
    assert list(costs["variant"]) == ["base", "zero_bn"] and (costs["n_jobs"] == 2).all()
    assert (costs["train_time_s_mean"] > 0).all() and (costs["peak_memory_mib_mean"] > 100).all()
    assert set(costs["peak_memory_kind"]) == {"process_rss"} and not costs["test_set_leakage"].any()
    record = json.loads((out / "runs" / "zero_bn" / "seed1" / "brick" / "metrics.json").read_text())
    assert record["config"]["random_init"] == "zero_last_bn" and record["extra"]["peak_memory"]["mib"] > 100


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_ablation_notebook_runs_on_the_study(study, notebook, tmp_path):
    assert study["done"].returncode == 0
    out = tmp_path / notebook.name
    papermill.execute_notebook(str(notebook), str(out), parameters={"study_dir": str(study["out"]), "n_resamples": 20},
                               cwd=str(tmp_path), progress_bar=False)
    figures = study["out"] / "figures"
    for name in ("variants", "deltas"):
        png = figures / f"{name}.png"
        assert Image.open(png).size[0] > 1000 and (figures / f"{name}.pdf").stat().st_size > 0
    nb = nbformat.read(out, as_version=4)
    shown = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(shown) == 2  # both figures displayed


def test_there_is_one_notebook_per_ablation_question():
    assert [p.stem for p in NOTEBOOKS] == ["06_ablation_layers", "07_ablation_backbones", "08_ablation_teacher",
                                          "09_ablation_factors", "10_ablation_seeds"]
    reports = {p.stem: __import__("yaml").safe_load(p.read_text()).get("report") for p in (REPO / "studies").glob("*.yaml")}
    assert {r for r in reports.values() if r} == {p.name for p in NOTEBOOKS}
