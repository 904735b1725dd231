"""A new user's path on a public surface-defect dataset's shape (JPEG images with PNG masks beside them,
three image sizes, six top-level folders, anti-aliased masks, one empty mask): the one documented
``convert`` command (docs/datasets.md, "Worked example"), then ``python -m stfpm_lib.batch reproduce`` trains and
evaluates it end to end, and the run's tables hold per-defect-type rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import SURFACE_COMMAND, SURFACE_TYPES  # tests/ is on sys.path (rootdir conftest)

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.pop("MVTEC_ROOT", None)
    env["STFPM_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=500)


def test_surface_dataset_converts_trains_and_reports_per_defect_type(surface_defects: Path) -> None:
    work = surface_defects.parent
    # the command of docs/datasets.md (tests/unit/test_convert.py checks they are the same)
    converted = _run(["stfpm_lib.data", *SURFACE_COMMAND, "--root", "Magnetic-tile-defect", "--out", "magnetic_mvtec"],
                     work)
    assert converted.returncode == 0, converted.stderr[-3000:]
    assert "Magnetic-tile-defect: {'train_good': 8, 'test_good': 4" in converted.stdout

    run = _run(["stfpm_lib.batch", "reproduce", "--data-root", "magnetic_mvtec", "--results-dir", "runs",
                "--run-name", "magnetic", "-p", "teacher_weights", "random", "-p", "epochs", "1",
                "-p", "image_size", "32", "-p", "batch_size", "4", "--no-progress"], work)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    run_dir = work / "runs" / "magnetic"
    assert "without encryption" not in run.stdout + run.stderr  # the kernels use IPC, not TCP
    assert not list(run_dir.rglob("*.lock"))  # no lock file left by a finished run
    assert "IProgress not found" not in (run_dir / "Magnetic-tile-defect" / "02_train.log").read_text()
    record = json.loads((run_dir / "Magnetic-tile-defect" / "metrics.json").read_text())
    per_type = record["per_defect_type"]
    assert list(per_type) == [*SURFACE_TYPES, "(all)"]
    assert [per_type[t]["n_anomalous"] for t in SURFACE_TYPES] == [2] * 5 and per_type["(all)"]["n_normal"] == 4
    assert per_type["(all)"]["image_auroc"] == record["metrics"]["image_auroc"]  # the headline number
    assert record["config"]["image_size"] == 32 and record["teacher_weights"]["source"] == "random"
    table = pd.read_csv(run_dir / "tables" / "per_defect_type.csv")
    assert table["defect_type"].tolist() == [*SURFACE_TYPES, "(all)"]
    assert set(table["category"]) == {"Magnetic-tile-defect"}
    for column in ("image_auroc", "pixel_auroc", "au_pro"):
        assert table[column].between(0, 1).all(), column
    md = (run_dir / "tables" / "per_defect_type.md").read_text()
    assert "| Magnetic-tile-defect | Crack | 2 | 4 |" in md
    assert "\\midrule" in (run_dir / "tables" / "per_defect_type.tex").read_text()
