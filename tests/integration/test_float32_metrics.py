"""Every reported metric comes from the full-precision anomaly maps, never from float16-rounded ones.

The runner/notebook path (:func:`stfpm_lib.runner.notebook_steps.evaluate_category`, what 03_evaluate and
``python -m stfpm_lib.batch`` run) is compared with metrics computed here from maps recomputed from the
checkpoint (float64 under the ``official`` preset, whose final resize is float64 as the official code's),
at a tolerance far below the float16 rounding effect (which the test measures on the same data, so it
is known to matter there) and below the float32 one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stfpm_lib import metrics as M
from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import index_category, load_image, load_mask, split_train_val
from stfpm_lib.data.transforms import image_size_of
from stfpm_lib.engine.checkpoint import load_checkpoint
from stfpm_lib.engine.inference import PredictionsError, predict
from stfpm_lib.engine.training import fit
from stfpm_lib.method.anomaly_map import anomaly_map
from stfpm_lib.records.evaluation import evaluate_predictions, read_metrics_json
from stfpm_lib.runner import cli
from stfpm_lib.runner.notebook_steps import evaluate_category

CFG = STFPMConfig.from_preset("official", teacher_weights="random", image_size=64, batch_size=4, epochs=1)
PIXEL_KEYS = ("pixel_auroc", "au_pro", "official_pro", "pixel_f1", "pixel_f1_val")
TOL = 1e-9  # the same float64 maps (same images, same batch): equal up to summation order

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def evaluated(tiny_mvtec, tmp_path_factory):
    out = tmp_path_factory.mktemp("f32")
    fit(CFG, tiny_mvtec, "grass", out, progress=False)
    return out, evaluate_category(out, tiny_mvtec, "grass", cfg=CFG)


def _full_maps(model, cfg, paths) -> np.ndarray:
    """Maps of ``paths`` from the model, in one batch (as predict's default eval batch of 32)."""
    x = torch.stack([load_image(p, cfg) for p in paths])
    with torch.inference_mode():
        t, s = model(x)
        return anomaly_map(t, s, cfg, cfg.input_size).numpy()


def _metrics(maps, masks, labels, val_maps) -> dict[str, float]:
    m = M.compute_all(maps, masks, labels, val_maps=val_maps)
    return {"pixel_auroc": m["pixel_auroc"], "au_pro": m["au_pro"], "official_pro": m["official_pro"],
            "pixel_f1": m["pixel_f1_best"], "pixel_f1_val": m["pixel_f1_val"],
            "image_auroc": M.image_auroc(maps.reshape(len(maps), -1).max(axis=1), labels)}


def test_reported_metrics_are_those_of_the_full_precision_maps(evaluated, tiny_mvtec):
    out, res = evaluated
    reported = read_metrics_json(res.metrics_path)["metrics"]
    model, cfg, _ = load_checkpoint(out / "checkpoint.pt")
    index = index_category(tiny_mvtec, "grass")
    test = list(index.test)
    maps = _full_maps(model, cfg, [s.image_path for s in test])
    val_maps = _full_maps(model, cfg, split_train_val(index.train, cfg)[1])
    assert maps.dtype == np.float64  # official preset: the final resize in float64
    masks = np.stack([load_mask(s.mask_path, image_size_of(s.image_path), cfg, s.image_path).numpy() for s in test])
    labels = np.array([s.label for s in test])
    exact = _metrics(maps, masks, labels, val_maps)
    rounded = _metrics(maps.astype(np.float16).astype(np.float32), masks, labels,
                       val_maps.astype(np.float16).astype(np.float32))
    effect = max(abs(rounded[k] - exact[k]) for k in PIXEL_KEYS)
    assert effect > 100 * TOL  # float16 rounding moves the pixel metrics on this data
    as_float32 = _metrics(maps.astype(np.float32), masks, labels, val_maps.astype(np.float32))
    assert max(abs(as_float32[k] - exact[k]) for k in PIXEL_KEYS) > 10 * TOL  # ... and so does float32's
    for key, value in exact.items():
        assert reported[key] == pytest.approx(value, abs=TOL), key
    assert res.predictions.maps.dtype == np.float32


def test_float16_maps_are_refused_for_metrics(evaluated, tiny_mvtec, tmp_path, capsys):
    out, _ = evaluated
    path = predict(out / "checkpoint.pt", tiny_mvtec, "grass", tmp_path / "predictions_test.npz",
                   maps_dtype="float16")
    with pytest.raises(PredictionsError, match="float16.*float32 maps only"):
        evaluate_predictions(path)
    assert cli.main(["evaluate", "--predictions", str(path)]) == 2
    assert "float32 maps only" in capsys.readouterr().err
    # the CLI's predict stores float32 unless asked for float16
    f32 = tmp_path / "cli.npz"
    assert cli.main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--out", str(f32), "--no-progress"]) == 0
    assert cli.main(["evaluate", "--predictions", str(f32)]) == 0
