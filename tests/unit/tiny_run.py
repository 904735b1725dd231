"""A finished run directory made without training, for the figure and report tests.

Per category of the tiny synthetic dataset: ``predictions_test.npz`` and ``predictions_val.npz`` in the
format of :func:`stfpm_lib.engine.inference.predict` (maps = the real ground-truth masks at 32 px plus
noise, so detection is good but not perfect), ``metrics.json`` from
:func:`stfpm_lib.records.evaluation.evaluate_predictions` on those files, ``history.csv``, and the
tables (:func:`stfpm_lib.reporting.tables.write_tables`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import index_category, load_mask
from stfpm_lib.records.evaluation import evaluate_predictions, write_metrics_json
from stfpm_lib.reporting.run_figures import write_run_figures
from stfpm_lib.reporting.tables import write_tables

SIZE = 32
CFG = STFPMConfig.from_preset("official", image_size=SIZE, teacher_weights="random", epochs=3)


def _write_predictions(path: Path, samples, maps: np.ndarray, masks: np.ndarray, split: str, root: Path,
                       category: str) -> None:
    n = len(samples)
    arrays = {
        "maps": maps.astype(np.float32), "scores": maps.reshape(n, -1).max(1).astype(np.float32),
        "labels": np.array([s.label for s in samples], np.int8),
        "defect_types": np.array([s.defect_type for s in samples], dtype=str),
        "image_paths": np.array([str(Path(s.image_path).resolve()) for s in samples], dtype=str),
        "mask_paths": np.array(["" if s.mask_path is None else str(s.mask_path) for s in samples], dtype=str),
        "image_sizes": np.full((n, 2), 64, np.int32),
        "masks_packed": np.packbits(masks.reshape(n, -1), axis=1),
        "config": np.array(json.dumps(CFG.to_dict())),
        "teacher_weights": np.array(json.dumps({"source": "random", "name": "resnet18", "seed": 0})),
        "dataset": np.array(json.dumps({"root": str(root), "category": category})),
        "meta": np.array(json.dumps({"format": "stfpm-predictions", "version": 1, "split": split})),
    }
    np.savez_compressed(path, **arrays)


def make_category(run_dir: Path, root: Path, category: str, seed: int) -> None:
    """Write one category's predictions, metrics.json and history.csv under ``run_dir/category``."""
    out = run_dir / category
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    test = index_category(root, category).test
    masks = np.stack([load_mask(s.mask_path, None, CFG).numpy() if s.mask_path else np.zeros((SIZE, SIZE), bool)
                      for s in test])
    maps = masks * rng.uniform(0.3, 1.0, (len(test), 1, 1)) + rng.random(masks.shape) * 0.5
    _write_predictions(out / "predictions_test.npz", test, maps, masks, "test", root, category)
    val = [s for s in test if s.label == 0][:3]
    val_maps = rng.random((len(val), SIZE, SIZE)) * 0.5
    _write_predictions(out / "predictions_val.npz", val, val_maps, np.zeros(val_maps.shape, bool), "val", root,
                       category)
    ev = evaluate_predictions(out / "predictions_test.npz", val_predictions=out / "predictions_val.npz")
    write_metrics_json(out / "metrics.json", metrics=ev.metrics, config=CFG, teacher_weights={"source": "random"},
                       dataset={"root": str(root), "category": category}, wall_time_s=1.5,
                       extra={"train_time_s": 1.0, "best_epoch": 2})
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 1.0, 0.9], "val_loss": [3.2, 1.2, 1.1],
                  "val_map": [50.0, 0.4, 0.5], "epoch_time_s": [0.1, 0.1, 0.1]}).to_csv(out / "history.csv",
                                                                                         index=False)


def make_run(run_dir: Path, root: Path) -> Path:
    """The whole run: categories brick and grass, then its tables."""
    for seed, category in enumerate(("brick", "grass")):
        make_category(run_dir, root, category, seed)
    write_tables(run_dir)
    return run_dir


def make_report_run(tiny_run: Path, dest: Path) -> Path:
    """A copy of the tiny run with its figures (no per-image panels) and one executed notebook per level."""
    run = dest / "run"
    shutil.copytree(tiny_run, run)
    write_run_figures(run, per_image=False, gif=True, k=1)
    for where in (run / "05_figures.ipynb", run / "brick" / "03_evaluate.ipynb"):
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print(1 + 1)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {where.stem}"), cell]
        nbformat.write(nb, where)
    return run
