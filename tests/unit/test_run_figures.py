"""Every figure of a run from its cached predictions, metrics and history (tests/unit/tiny_run.py: real files)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.records.predictions import load_predictions
from stfpm_lib.reporting import figures as F
from stfpm_lib.reporting import run_figures as R
from stfpm_lib.reporting.tables import ReportError


@pytest.fixture(scope="module")
def figures(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("figs") / "figures"
    entries = R.write_run_figures(tiny_run, out, "brick", per_image=True, gif=True, k=1)  # one category: fast
    return out, entries


def test_every_figure_written_and_listed(figures, tiny_run):
    out, entries = figures
    names = {e["name"] for e in entries}
    assert {"roc_curves", "pro_curves", "score_distributions", "all_categories", "compare_image_auroc",
            "compare_pixel_auroc", "brick/training_curves", "brick/best_worst", "brick/test_images"} <= names
    assert not any(n.startswith("grass/") for n in names)
    n_test = {"brick": len(load_predictions(tiny_run / "brick" / "predictions_test.npz"))}
    assert sum(e["kind"] == "image" for e in entries) == n_test["brick"] == 10  # one panel per test image
    for e in entries:
        png = out / e["png"]
        with Image.open(png) as im:  # decodes
            assert im.size[0] > 100
        if "pdf" in e:
            assert (out / e["pdf"]).read_bytes()[:4] == b"%PDF"
    manifest = json.loads((out / R.MANIFEST).read_text())
    assert manifest["figures"] == entries and manifest["categories"] == ["brick"]
    assert manifest["random_teacher"] is True
    with Image.open(out / "brick" / "test_images.gif") as gif:
        assert gif.n_frames == n_test["brick"]
    with Image.open(out / "roc_curves.png") as im:
        assert im.size == (round(F.TEXT_WIDTH_IN * F.DPI), round(3.4 * F.DPI))


def test_threshold_is_the_validation_maximum(tiny_run):
    data = R.load_category(tiny_run, "brick")
    val = load_predictions(tiny_run / "brick" / "predictions_val.npz")
    assert data.threshold == pytest.approx(float(val.maps.max()), rel=1e-6)
    assert data.n_val == 3 and data.threshold_source == "max score of the 3 normal validation images"
    assert data.label == RANDOM_TEACHER_LABEL and data.best_epoch == 2


def test_curves_from_cached_maps_match_the_metrics(tiny_run):
    from sklearn.metrics import auc

    data = R.load_category(tiny_run, "grass")
    curves = R.category_curves(data)
    roc = curves["image_roc"]
    assert auc(roc["fpr"], roc["tpr"]) == pytest.approx(data.metrics["image_auroc"], abs=1e-9)
    pix = curves["pixel_roc"]
    assert auc(pix["fpr"], pix["tpr"]) == pytest.approx(data.metrics["pixel_auroc"], abs=2e-3)  # thinned curve
    pro = curves["pro"]
    assert pro["fpr"].max() == pytest.approx(0.3) and pro["auc"] == data.metrics["au_pro"]


def test_images_found_again_after_the_dataset_moved(tiny_run, tiny_mvtec, tmp_path):
    pred = load_predictions(tiny_run / "brick" / "predictions_test.npz")
    assert R.image_path(pred, 0) == R.Path(str(pred.image_paths[0]))
    moved = tmp_path / "moved"
    shutil.copytree(tiny_mvtec, moved)
    pred.image_paths = np.array([p.replace(str(tiny_mvtec), str(tmp_path / "gone")) for p in pred.image_paths])
    pred.dataset = {**pred.dataset, "root": str(tmp_path / "gone")}
    assert R.image_path(pred, 0, moved) == moved / "brick" / R.Path(str(pred.image_paths[0])).relative_to(
        tmp_path / "gone" / "brick")
    with pytest.raises(FileNotFoundError, match="pass data_root"):
        R.image_path(pred, 0)


def test_categories_and_cli_errors(tiny_run, tmp_path, capsys):
    assert R.run_categories(tiny_run) == ["brick", "grass"]
    assert R.run_categories(tiny_run, "grass") == ["grass"]
    with pytest.raises(ReportError, match=r"\['wood'\] have no metrics.json"):
        R.run_categories(tiny_run, "wood,brick")
    assert R.main([str(tmp_path)]) == 2
    assert f"error: run directory {tmp_path} has no <category>/metrics.json" in capsys.readouterr().err
    assert R.main([str(tiny_run), "--style", "poster", "--out-dir", str(tmp_path / "f")]) == 2
    assert "style='poster'" in capsys.readouterr().err


def test_preview_png_is_a_smaller_png(figures):
    out, _ = figures
    data = R.preview_png(out / "roc_curves.png", width=400)
    import io

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.size == (400, round(400 * 1020 / 1890))
