"""The committed notebooks: structure (thin, parameters cell first, no outputs), execution of every
notebook through papermill (via the batch runner) on the tiny synthetic dataset, and their outputs.
Also the notebook helpers of stfpm_lib.runner.notebook_steps.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import DataError
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.runner import papermill_runner as batch
from stfpm_lib.runner.notebook_steps import (
    CONFIG_FIELDS,
    check_checkpoint_config,
    config_from_namespace,
    counts_table,
    evaluate_category,
    resolve_category,
    teacher_label,
)

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: what the runner executes per run (the ablation notebooks are study reports: test_ablation_notebooks.py)
RUN_NOTEBOOKS = [p for p in NOTEBOOKS if "_ablation_" not in p.stem]
REQUIRED = ("01_explore_dataset", "02_train", "03_evaluate", "04_report", "05_figures")
RATE_METRICS = ("image_auroc", "pixel_auroc", "au_pro", "official_pro", "image_f1", "pixel_f1")


# ----------------------------------------------------------------------------- structure (no kernel)
def test_required_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= set(REQUIRED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "code" and first.metadata.get("tags") == ["parameters"]
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Committed without outputs.
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    # The parameters cell holds flat assignments of literals only.
    tree = ast.parse(first.source)
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ast.literal_eval(node.value)
    params = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}
    # Config fields default to None (= the preset's value), so a preset alone decides.
    assert all(params[k] is None for k in params if k in CONFIG_FIELDS)
    # Thin: logic comes from stfpm_lib; no functions or classes defined in the notebook; short cells.
    body = "\n".join(c.source for c in code[1:])
    assert "from stfpm_lib" in body
    for cell in code[1:]:
        source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        nodes = list(ast.walk(ast.parse(source)))
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) for n in nodes), cell.source
        assert len(cell.source.splitlines()) <= 20


def test_runner_sees_per_category_and_run_level_notebooks():
    specs = {p.stem: batch.load_notebook_spec(p) for p in NOTEBOOKS}
    for name in ("01_explore_dataset", "02_train", "03_evaluate"):
        assert specs[name].per_category and specs[name].takes_config
        assert {"category", "data_root", "out_dir", "preset"} <= set(specs[name].parameters)
    assert not specs["04_report"].per_category and {"run_dir", "out_dir"} <= set(specs["04_report"].parameters)
    assert not specs["05_figures"].per_category
    assert {"run_dir", "out_dir", "categories", "style", "per_image"} <= set(specs["05_figures"].parameters)
    assert "teacher_weights" in specs["02_train"].parameters  # the runner pre-checks the weights for it


# ----------------------------------------------------------------------------- helpers (no kernel)
def test_config_from_namespace():
    ns = {"preset": "anomalib", "epochs": 2, "image_size": None, "lr": 0.1, "crop_size": None, "n_examples": 3,
          "category": "brick"}
    assert config_from_namespace(ns) == STFPMConfig.from_preset("anomalib", epochs=2, lr=0.1)
    xia = config_from_namespace({"preset": "xia"})
    assert xia.crop_size == 224
    assert config_from_namespace({"preset": "xia", "crop_size": 0}).crop_size is None  # 0 = no crop
    assert config_from_namespace({}) == STFPMConfig()


def test_counts_table(tiny_mvtec):
    table = counts_table(tiny_mvtec)
    rows = {(r.category, r.split, r.defect_type): (r.images, r.masks) for r in table.itertuples()}
    assert rows == {
        ("brick", "train", "good"): (12, 0), ("brick", "test", "good"): (4, 0),
        ("brick", "test", "scratch"): (3, 3), ("brick", "test", "blob"): (3, 3),
        ("grass", "train", "good"): (12, 0), ("grass", "test", "good"): (4, 0),
        ("grass", "test", "blob"): (3, 3), ("grass", "test", "patch"): (3, 3),
    }


def test_resolve_category_and_teacher_label(tiny_mvtec, tmp_path):
    assert resolve_category(tiny_mvtec, None) == "brick"
    assert resolve_category(tiny_mvtec, "grass") == "grass"
    with pytest.raises(DataError, match="'wood' not found"):
        resolve_category(tiny_mvtec, "wood")
    with pytest.raises(FileNotFoundError, match="run 02_train.ipynb"):
        evaluate_category(tmp_path, tiny_mvtec, "brick")
    assert teacher_label(STFPMConfig(teacher_weights="random")) == RANDOM_TEACHER_LABEL
    assert teacher_label({"source": "random"}) == RANDOM_TEACHER_LABEL
    assert teacher_label(STFPMConfig()) == "" and teacher_label({"source": "imagenet"}) == ""


def test_check_checkpoint_config():
    trained = STFPMConfig(epochs=2, image_size=64).to_dict()
    check_checkpoint_config(trained, STFPMConfig(epochs=2, image_size=64, device="cpu", eval_batch_size=4))
    with pytest.raises(ValueError, match="epochs: trained with 2, notebook has 3"):
        check_checkpoint_config(trained, STFPMConfig(epochs=3, image_size=64))


# ----------------------------------------------------------------------------- execution
@pytest.fixture(scope="module")
def executed(tiny_mvtec, tmp_path_factory):
    """Every notebook executed once by the runner (papermill) on ``brick``: 1 epoch, 64 px, random teacher."""
    results = tmp_path_factory.mktemp("nb_runs")
    argv = ["run", *[a for p in RUN_NOTEBOOKS for a in ("--notebook", str(p))], "--categories", "brick",
            "--data-root", str(tiny_mvtec), "--run-name", "ci", "--results-dir", str(results),
            "-p", "epochs", "1", "-p", "image_size", "64", "-p", "teacher_weights", "random",
            "-p", "batch_size", "8", "-p", "k_examples", "2", "-p", "n_examples", "2", "--no-progress"]
    code = batch.main(argv)
    return {"code": code, "run_dir": results / "ci", "cat_dir": results / "ci" / "brick", "root": tiny_mvtec}


def _outputs(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_all_notebooks_execute(executed):
    assert executed["code"] == 0
    run_dir, cat_dir = executed["run_dir"], executed["cat_dir"]
    executed_paths = [cat_dir / f"{n}.ipynb" for n in REQUIRED[:3]] + [run_dir / f"{n}.ipynb" for n in REQUIRED[3:]]
    for path in executed_paths:
        outputs = _outputs(path)
        assert not [o for o in outputs if o["output_type"] == "error"], path
        # Every notebook shows at least one figure (rendered PNG, not a repr string).
        assert any("image/png" in o.get("data", {}) for o in outputs), path
        nb = nbformat.read(path, as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert sum("image/png" in o.get("data", {}) for o in _outputs(cat_dir / "03_evaluate.ipynb")) == 3


def test_explore_outputs(executed):
    counts = pd.read_csv(executed["cat_dir"] / "dataset_counts.csv")
    brick = counts[counts.category == "brick"].set_index(["split", "defect_type"]).images.to_dict()
    assert brick == {("train", "good"): 12, ("test", "good"): 4, ("test", "blob"): 3, ("test", "scratch"): 3}
    assert (executed["cat_dir"] / "examples.png").stat().st_size > 1000


def test_train_outputs(executed):
    cat_dir = executed["cat_dir"]
    history = pd.read_csv(cat_dir / "history.csv")
    assert list(history.epoch) == [1] and np.isfinite(history[["train_loss", "val_loss", "val_map"]].values).all()
    assert (cat_dir / "checkpoint.pt").is_file() and (cat_dir / "training_curves.png").is_file()
    log = (cat_dir / "02_train.log").read_text()
    assert "[brick] epoch 1/1  train_loss" in log and RANDOM_TEACHER_LABEL in log


def test_evaluate_writes_metrics_json(executed):
    cat_dir = executed["cat_dir"]
    record = json.loads((cat_dir / "metrics.json").read_text())
    metrics = record["metrics"]
    for key in RATE_METRICS:
        assert metrics[key] is not None and 0.0 <= metrics[key] <= 1.0, key
    assert record["config"]["epochs"] == 1 and record["config"]["image_size"] == 64
    assert record["teacher_weights"]["source"] == "random"
    assert record["dataset"]["root"] == str(executed["root"]) and record["dataset"]["category"] == "brick"
    assert record["dataset"]["counts"] == {"train_good": 12, "test_good": 4, "test_blob": 3, "test_scratch": 3}
    assert "torch" in json.dumps(record["environment"])
    extra = record["extra"]
    assert 0 < extra["train_time_s"] < record["wall_time_s"]
    assert record["wall_time_s"] == pytest.approx(extra["train_time_s"] + extra["eval_time_s"], rel=1e-6)
    assert extra["best_epoch"] == 1 and Path(extra["predictions"]) == cat_dir / "predictions_test.npz"
    # The metrics agree with sklearn recomputed from the cached anomaly maps.
    from stfpm_lib.records.predictions import load_predictions

    pred = load_predictions(cat_dir / "predictions_test.npz")
    assert pred.maps.shape == (10, 64, 64) and list(pred.labels) == [0] * 4 + [1] * 6
    assert metrics["image_auroc"] == pytest.approx(roc_auc_score(pred.labels, pred.scores), abs=1e-9)
    masks = pred.masks()
    assert metrics["pixel_auroc"] == pytest.approx(
        roc_auc_score(masks.ravel(), pred.maps.astype(np.float64).ravel()), abs=1e-6)
    for name in ("per_defect_type", "curves", "best_worst"):
        assert (cat_dir / f"{name}.png").is_file()
    from sklearn.metrics import average_precision_score

    from stfpm_lib.records.evaluation import read_per_image

    assert metrics["pixel_ap"] == pytest.approx(
        average_precision_score(masks.ravel(), pred.maps.astype(np.float64).ravel()), abs=1e-6)
    stats, meta = read_per_image(cat_dir / "per_image.npz")  # the study statistics' input, beside metrics.json
    # official preset: the scores are the maxima of the float64 maps; the file stores them rounded to float32
    np.testing.assert_array_equal(stats.scores.astype(np.float32), pred.scores)
    np.testing.assert_allclose(stats.scores, pred.scores, rtol=1e-7)
    assert stats.labels.tolist() == [False] * 4 + [True] * 6 and meta["teacher_weights"]["source"] == "random"
    assert int(stats.hist_normal.sum() + stats.hist_defect.sum()) == pred.maps.size


def test_evaluate_alone_takes_the_checkpoint_config_and_lists_every_mismatch(executed, tmp_path):
    import shutil

    shutil.copy(executed["cat_dir"] / "checkpoint.pt", tmp_path / "checkpoint.pt")
    res = evaluate_category(tmp_path, executed["root"], "brick")  # no parameters: the checkpoint's config
    assert (res.predictions.config["epochs"], res.predictions.config["image_size"]) == (1, 64)
    assert set(json.loads(res.metrics_path.read_text())["per_defect_type"]) == {"blob", "scratch", "(all)"}
    given = {"epochs": 3, "image_size": 32, "teacher_weights": "imagenet"}
    with pytest.raises(ValueError, match=r"3 difference\(s\): image_size: trained with 64, notebook has 32; "
                                        r"teacher_weights: trained with 'random', notebook has 'imagenet'; epochs: "
                                        r"trained with 1, notebook has 3\).*preset None, take the checkpoint's"):
        evaluate_category(tmp_path, executed["root"], "brick", overrides=given)
    evaluate_category(tmp_path, executed["root"], "brick", overrides={"epochs": 1, "device": "cpu"})  # agrees


def test_report_tables(executed):
    tables = executed["run_dir"] / "tables"
    assert {"results.csv", "results.md", "results.tex", "tables.md"} <= {p.name for p in tables.iterdir()}
    md = (tables / "results.md").read_text()
    assert RANDOM_TEACHER_LABEL in md and "| brick |" in md
    results = pd.read_csv(tables / "results.csv")
    brick = results.set_index("category").loc["brick"]
    record = json.loads((executed["cat_dir"] / "metrics.json").read_text())
    assert float(brick["pixel_auroc"]) == pytest.approx(record["metrics"]["pixel_auroc"], abs=1e-5)


def test_figures_notebook_outputs(executed):
    """05_figures drew every figure of the run from the cached maps, the per-image panels included."""
    import json

    figures = executed["run_dir"] / "figures"
    manifest = json.loads((figures / "manifest.json").read_text())
    kinds = [e["kind"] for e in manifest["figures"]]
    assert kinds.count("image") == 10 and kinds.count("animation") == 1  # brick: 10 test images
    for name in ("roc_curves", "pro_curves", "score_distributions", "all_categories", "brick/training_curves"):
        assert (figures / f"{name}.png").stat().st_size > 1000 and (figures / f"{name}.pdf").is_file()
    out = "".join(o.get("text", "") for o in _outputs(executed["run_dir"] / "05_figures.ipynb"))
    assert f"{len(manifest['figures'])} figures written to figures/" in out and "per-image panels: 10" in out


def test_rerun_skips_complete_notebooks(executed, capsys):
    before = (executed["cat_dir"] / "02_train.ipynb").stat().st_mtime_ns
    per_category = [a for p in RUN_NOTEBOOKS if p.stem not in ("04_report", "05_figures") for a in ("--notebook", str(p))]
    argv = ["run", *per_category, "--categories", "brick",
            "--data-root", str(executed["root"]), "--run-name", "ci", "--results-dir", str(executed["run_dir"].parent),
            "-p", "epochs", "1", "-p", "image_size", "64", "-p", "teacher_weights", "random", "-p", "batch_size", "8",
            "-p", "k_examples", "2", "-p", "n_examples", "2", "--no-progress"]
    assert batch.main(argv) == 0
    assert "01_explore_dataset skipped, 02_train skipped, 03_evaluate skipped" in capsys.readouterr().out
    assert (executed["cat_dir"] / "02_train.ipynb").stat().st_mtime_ns == before


def test_report_alone_over_an_existing_run(executed, capsys):
    """Re-making the tables of a finished run needs no data root and keeps the run's recorded config."""
    run_dir = executed["run_dir"]
    before = json.loads((run_dir / "run.json").read_text())
    (run_dir / "tables" / "results.md").unlink()
    argv = ["run", "--notebook", str(REPO / "notebooks" / "04_report.ipynb"), "--run-name", "ci",
            "--results-dir", str(run_dir.parent), "--no-progress"]
    assert batch.main(argv) == 0
    assert f"tables: {run_dir / 'tables'}" in capsys.readouterr().out
    assert RANDOM_TEACHER_LABEL in (run_dir / "tables" / "results.md").read_text()
    after = json.loads((run_dir / "run.json").read_text())
    assert {k: after[k] for k in ("preset", "overrides", "data_root")} == \
        {k: before[k] for k in ("preset", "overrides", "data_root")}
