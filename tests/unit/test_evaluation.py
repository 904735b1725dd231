"""evaluate_predictions on hand-built Predictions (perfect detector, hand-computed golden case) and metrics.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import index_category
from stfpm_lib.records.evaluation import (
    METRICS_SCHEMA,
    Evaluation,
    EvaluationError,
    MetricsFileError,
    evaluate_predictions,
    read_metrics_json,
    write_metrics_json,
)
from stfpm_lib.records.predictions import Predictions, PredictionsError

CFG = STFPMConfig.from_preset("official").to_dict()
RANDOM_TW = {"source": "random", "name": "random", "path": None, "sha256": None, "seed": 0}


def _predictions(maps, masks, labels, types, scores=None, image_paths=None, mask_paths=None, config=CFG, sizes=None,
                 split="test", checkpoint="a" * 64, category="toy"):
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks, dtype=bool)
    n = maps.shape[0]
    if scores is None:
        scores = maps.astype(np.float32).reshape(n, -1).max(axis=1)
    return Predictions(
        maps=maps, scores=np.asarray(scores, np.float32), labels=np.asarray(labels, np.int8),
        defect_types=np.asarray(types), image_paths=np.asarray(image_paths or [f"/x/{i}.png" for i in range(n)]),
        mask_paths=np.asarray(mask_paths or [""] * n), config=config, teacher_weights=RANDOM_TW,
        dataset={"root": "/x", "category": category}, meta={"split": split, "checkpoint_sha256": checkpoint},
        image_sizes=sizes,
        masks_packed=np.packbits(masks.reshape(n, -1), axis=1))


# ---------------------------------------------------------------------------------------------- golden case
# 3 test images of 2x2 pixels; the expected values below are worked out by hand in the comments.
GOLD_MAPS = [[[0.1, 0.2], [0.3, 0.4]],      # normal, score 0.4
             [[0.9, 0.1], [0.2, 0.3]],      # type "a", 1-pixel region {0.9}, score 0.9
             [[0.35, 0.38], [0.05, 0.15]]]  # type "b", 2-pixel region {0.35, 0.38}, score 0.38
GOLD_MASKS = [[[0, 0], [0, 0]], [[1, 0], [0, 0]], [[1, 1], [0, 0]]]
GOLD_LABELS = [0, 1, 1]
GOLD_TYPES = ["good", "a", "b"]


@pytest.fixture(scope="module")
def gold() -> Evaluation:
    val = _predictions([[[0.2, 0.3], [0.1, 0.36]]], [[[0, 0], [0, 0]]], [0], ["good"], split="val")
    return evaluate_predictions(_predictions(GOLD_MAPS, GOLD_MASKS, GOLD_LABELS, GOLD_TYPES), val_predictions=val)


def test_golden_image_metrics(gold):
    m = gold.metrics
    # positives 0.9, 0.38 vs the negative 0.4: one of two pairs ordered correctly
    assert m["image_auroc"] == 0.5
    # best F1 at t=0.38 (score >= t): TP 2, FP 1 (0.4), FN 0 -> 2*2/(4+1) = 0.8
    assert m["image_f1"] == pytest.approx(0.8)
    assert m["image_f1_threshold"] == pytest.approx(0.38, abs=1e-3)
    # val threshold = max normal val score 0.36, anomalous iff score > 0.36: TP 2, FP 1 -> 0.8
    assert m["image_f1_val"] == pytest.approx(0.8)
    assert m["image_f1_val_threshold"] == pytest.approx(0.36, abs=1e-3)
    # AP: 0.9 (+) precision 1 at recall 1/2, then 0.4 (-), 0.38 (+) precision 2/3 at recall 1 -> 1/2 + 1/3
    assert m["image_ap"] == pytest.approx(5 / 6)


def test_golden_pixel_metrics(gold):
    m = gold.metrics
    # 3 defect pixels (0.9, 0.35, 0.38) vs 9 normal pixels; normals below each: 9, 8, 8 -> 25/27
    assert m["pixel_auroc"] == pytest.approx(25 / 27)
    # best pixel F1 at t=0.35: TP 3, FP 1 (0.4), FN 0 -> 6/7
    assert m["pixel_f1"] == pytest.approx(6 / 7)
    # pixel AP: 0.9 (+) P 1; 0.4 (-); 0.38 (+) P 2/3; 0.35 (+) P 3/4; each recall step 1/3 -> 29/36
    assert m["pixel_ap"] == pytest.approx(29 / 36)
    # IoU-max at t=0.35: TP 3, FP 1, FN 0 -> 3/4 (= F1 / (2 - F1) = (6/7) / (8/7))
    assert m["pixel_iou"] == pytest.approx(3 / 4) and m["pixel_iou_threshold"] == pytest.approx(0.35)
    # val pixel threshold 0.36 (> strictly): TP 0.9, 0.38; FP 0.4; FN 0.35 -> 4/6
    assert m["pixel_f1_val"] == pytest.approx(2 / 3)
    # MVTec AU-PRO: 2 regions. Curve (0,0)->(0,.5) [0.9] ->(1/9,.5) [0.4] ->(1/9,1) [0.38, 0.35] ->(3/9,1)
    # area to 0.3 = 0.5/9 + (0.3 - 1/9) -> / 0.3 = 1 - 5/27 = 22/27
    assert m["au_pro"] == pytest.approx(22 / 27)
    # official grid: kept FPRs {0, 1/9}; PRO jumps 0 -> 0.5 at FPR 0, is still 0.5 at the first point with
    # FPR 1/9, then rises to 1 there: after min-max rescaling only the step x 0 -> 1 at y 0.5 has area
    assert m["official_pro"] == pytest.approx(0.5)


def test_golden_counts_and_tables(gold):
    m = gold.metrics
    assert {k: m[k] for k in ("n_images", "n_anomalous", "n_normal", "n_defect_pixels", "n_normal_pixels",
                              "n_regions", "n_defect_types", "map_size", "n_val_images")} == \
        {"n_images": 3, "n_anomalous": 2, "n_normal": 1, "n_defect_pixels": 3, "n_normal_pixels": 9,
         "n_regions": 2, "n_defect_types": 2, "map_size": 2, "n_val_images": 1}
    assert all(isinstance(v, float) for v in m.values())
    t = gold.per_defect_type
    assert list(t.index) == ["a", "b", "(all)"]
    assert t.loc["a", "image_auroc"] == 1.0 and t.loc["b", "image_auroc"] == 0.0
    # "b" vs the normal image: defect 0.35, 0.38 over normals {0.1,0.2,0.3,0.4,0.05,0.15}: 10/12
    assert t.loc["b", "pixel_auroc"] == pytest.approx(10 / 12)
    # "b": curve (0,0)->(1/6,0) [0.4] ->(1/6,1) -> area (0.3 - 1/6)/0.3 = 4/9
    assert t.loc["b", "au_pro"] == pytest.approx(4 / 9)
    assert t.loc["(all)", "au_pro"] == pytest.approx(22 / 27)
    assert "official_pro" in t.columns


def test_golden_curves_and_best_worst(gold):
    c = gold.curves
    pro = c["pro"]
    assert np.trapezoid(pro["pro"], pro["fpr"]) / 0.3 == pytest.approx(22 / 27)
    assert pro["fpr"][-1] == pytest.approx(0.3)
    assert c["image_roc"]["auc"] == 0.5 and c["image_roc"]["fpr"][0] == 0 and c["image_roc"]["tpr"][-1] == 1
    assert np.trapezoid(c["pixel_roc"]["tpr"], c["pixel_roc"]["fpr"]) == pytest.approx(25 / 27)
    assert len(c["official_pro"]["fpr"]) == 4000
    bw = gold.best_worst(1)
    assert {k: v.tolist() for k, v in bw.items()} == {
        "anomalous_best": [1], "anomalous_worst": [2], "normal_best": [0], "normal_worst": [0]}
    assert gold.best_worst(5)["anomalous_best"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="k=0"):
        gold.best_worst(0)
    assert gold.per_image()["score"].tolist() == pytest.approx([0.4, 0.9, 0.38], abs=1e-3)


def test_curves_equal_the_public_curve_functions():
    """The curves, computed from the pool built once for the metrics, are those of the public functions
    (pixel ROC thinned to 2000 points, PRO thinned to 2000 points, the official 4000-step grid)."""
    from stfpm_lib import metrics as M

    rng = np.random.default_rng(5)
    maps = rng.random((6, 48, 48)).astype(np.float32)
    masks = np.zeros((6, 48, 48), bool)
    masks[3:, 10:30, 5:25] = True
    maps[masks] += 0.3
    ev = evaluate_predictions(_predictions(maps, masks, [0, 0, 0, 1, 1, 1], ["good"] * 3 + ["a"] * 3))
    roc = M.pixel_roc_curve(maps, masks, max_points=2000)
    pro = M.pro_curve(maps, masks, 0.3)
    official = M.official_pro_curve(maps, masks)
    assert len(ev.curves["pixel_roc"]["fpr"]) == 2000 < len(M.pixel_roc_curve(maps, masks, max_points=None).fpr)
    assert pro.fpr.size > 2000 and len(ev.curves["pro"]["fpr"]) == 2000
    idx = np.unique(np.linspace(0, pro.fpr.size - 1, 2000).round().astype(int))
    for name, ref in (("fpr", pro.fpr[idx]), ("pro", pro.pro[idx]), ("thresholds", pro.thresholds[idx])):
        np.testing.assert_array_equal(ev.curves["pro"][name], ref)
    for key, ref in (("pixel_roc", roc), ("official_pro", official)):
        for name in ref._fields:
            np.testing.assert_array_equal(ev.curves[key][name], getattr(ref, name))


# ---------------------------------------------------------------------------------------------- perfect detector
def test_perfect_detector_scores_one_everywhere():
    rng = np.random.default_rng(0)
    n, side = 6, 16
    masks = np.zeros((n, side, side), bool)
    masks[3, 2:6, 2:6] = True
    masks[4, 8:12, 1:4] = True
    masks[4, 0:2, 12:16] = True  # a second region in the same image
    masks[5, 10:15, 10:15] = True
    maps = rng.uniform(0.0, 0.4, (n, side, side))
    maps[masks] = rng.uniform(0.6, 1.0, masks.sum())
    types = ["good"] * 3 + ["scratch", "blob", "scratch"]
    val_maps = rng.uniform(0.0, 0.4, (2, side, side))
    val_maps[:, 0, 0] = 0.5  # val threshold 0.5: above every test normal pixel, below every defect pixel
    val = _predictions(val_maps, np.zeros((2, side, side)), [0, 0], ["good"] * 2, split="val")
    ev = evaluate_predictions(_predictions(maps, masks, [0, 0, 0, 1, 1, 1], types), val_predictions=val)
    for key in ("image_auroc", "pixel_auroc", "au_pro", "image_f1", "pixel_f1", "image_f1_val", "pixel_f1_val",
                "image_ap", "pixel_ap", "pixel_iou"):
        assert ev.metrics[key] == pytest.approx(1.0, abs=1e-12), key
    assert ev.metrics["official_pro"] == pytest.approx(1.0, abs=1e-9)
    assert ev.metrics["n_regions"] == 4
    np.testing.assert_allclose(ev.per_defect_type[["image_auroc", "pixel_auroc", "au_pro", "image_ap", "pixel_ap"]].to_numpy(), 1.0,
                               rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- real files
def _from_index(root, category, cfg, seed=0):
    idx = index_category(root, category)
    from stfpm_lib.data import load_mask

    masks = np.stack([load_mask(s.mask_path, None, cfg).numpy() for s in idx.test])
    rng = np.random.default_rng(seed)
    maps = rng.random(masks.shape) * 0.5 + masks * rng.random(masks.shape)
    return _predictions(maps, masks, [s.label for s in idx.test], [s.defect_type for s in idx.test],
                        image_paths=[str(s.image_path) for s in idx.test],
                        mask_paths=["" if s.mask_path is None else str(s.mask_path) for s in idx.test],
                        config=cfg.to_dict())


def test_original_resolution_equals_map_resolution_when_sizes_match(tiny_mvtec):
    cfg = STFPMConfig.from_preset("official", image_size=64)  # the synthetic images are 64x64
    ev = evaluate_predictions(_from_index(tiny_mvtec, "brick", cfg), original_resolution=True)
    assert 0.0 < ev.metrics["au_pro"] < 1.0
    assert ev.metrics["au_pro_orig_res"] == pytest.approx(ev.metrics["au_pro"], abs=1e-12)
    assert ev.metrics["pixel_auroc_orig_res"] == pytest.approx(ev.metrics["pixel_auroc"], abs=1e-12)
    assert set(ev.per_defect_type.index) == {"scratch", "blob", "(all)"}
    assert ev.mask_rule == "gt0"


def test_mask_rule_sensitivity_reloads_masks(tiny_mvtec):
    cfg = STFPMConfig.from_preset("official", image_size=32)  # 64 -> 32: the rules differ at the borders
    pred = _from_index(tiny_mvtec, "brick", cfg)
    gt0 = evaluate_predictions(pred)
    eq1 = evaluate_predictions(pred, mask_rule="eq1")
    assert (gt0.mask_rule, eq1.mask_rule) == ("gt0", "eq1")
    # eq1 keeps only fully-defective pixels: fewer defect pixels than the dilating gt0 rule
    assert eq1.metrics["n_defect_pixels"] < gt0.metrics["n_defect_pixels"]
    assert eq1.metrics["n_defect_pixels"] == pred.masks("eq1").sum()


def test_original_resolution_refuses_cropped_maps(tiny_mvtec):
    cfg = STFPMConfig.from_preset("official", image_size=64, crop_size=48)
    pred = _from_index(tiny_mvtec, "brick", cfg)
    with pytest.raises(EvaluationError, match="crop_size=48"):
        evaluate_predictions(pred, original_resolution=True)


def test_bad_inputs():
    pred = _predictions(GOLD_MAPS, GOLD_MASKS, GOLD_LABELS, GOLD_TYPES)
    with pytest.raises(EvaluationError, match="holds predictions of the 'test' split"):
        evaluate_predictions(pred, val_predictions=pred)
    normals_of_train = _predictions(GOLD_MAPS[:1], GOLD_MASKS[:1], [0], ["good"], split="train")
    with pytest.raises(EvaluationError, match="the 'train' split"):  # all normal, but not held out
        evaluate_predictions(pred, val_predictions=normals_of_train)
    with pytest.raises(EvaluationError, match="normal images only"):
        evaluate_predictions(pred, val_predictions=_predictions(GOLD_MAPS, GOLD_MASKS, GOLD_LABELS, GOLD_TYPES,
                                                                split="val"))
    with pytest.raises(PredictionsError, match="not found"):
        evaluate_predictions("/nonexistent/predictions_test.npz")


def test_val_thresholds_never_come_from_another_model_or_category():
    """Validation predictions of another checkpoint or category are refused, naming both (they used to be taken)."""
    pred = _predictions(GOLD_MAPS, GOLD_MASKS, GOLD_LABELS, GOLD_TYPES)
    val = dict(maps=[[[0.2, 0.3], [0.1, 0.36]]], masks=[[[0, 0], [0, 0]]], labels=[0], types=["good"], split="val")
    assert evaluate_predictions(pred, val_predictions=_predictions(**val)).metrics["image_f1_val"] >= 0
    with pytest.raises(EvaluationError, match=r"another model \(checkpoint sha256 bbbbbbbbbbbbbbbb\.\.\.\) than .*aaaaaaaa"):
        evaluate_predictions(pred, val_predictions=_predictions(**val, checkpoint="b" * 64))
    with pytest.raises(EvaluationError, match="holds category 'bottle', .* category 'toy'"):
        evaluate_predictions(pred, val_predictions=_predictions(**val, category="bottle"))
    with pytest.raises(TypeError, match="no attribute 'maps'"):
        evaluate_predictions(object())
    only_normals = _predictions(GOLD_MAPS, np.zeros((3, 2, 2)), [0, 0, 0], ["good"] * 3)
    from stfpm_lib.metrics import UndefinedMetricError

    with pytest.raises(UndefinedMetricError, match="predictions"):
        evaluate_predictions(only_normals)


# ---------------------------------------------------------------------------------------------- metrics.json
def test_metrics_json_round_trip(tmp_path, tiny_mvtec):
    weights = tmp_path / "teacher.pth"
    weights.write_bytes(b"not really weights")
    import hashlib

    tw = {"source": "file", "name": "teacher.pth", "path": str(weights), "sha256": None}
    metrics = {"image_auroc": np.float32(0.75), "au_pro": float("nan"), "n_images": np.int64(10), "pixel_auroc": 0.5}
    path = write_metrics_json(tmp_path / "run" / "brick" / "metrics.json", metrics=metrics,
                              config=STFPMConfig.from_preset("official", epochs=2), teacher_weights=tw,
                              dataset={"root": str(tiny_mvtec), "category": "brick"}, wall_time_s=12.5,
                              extra={"train_time_s": 10.0, "history": np.arange(3)})
    assert path.name == "metrics.json" and not list(path.parent.glob(".*tmp*"))
    raw = json.loads(path.read_text())  # strict JSON: NaN is written as null
    assert raw["metrics"]["au_pro"] is None and raw["schema"] == METRICS_SCHEMA
    rec = read_metrics_json(path)
    assert rec["metrics"]["image_auroc"] == pytest.approx(0.75) and math.isnan(rec["metrics"]["au_pro"])
    assert rec["metrics"]["n_images"] == 10
    assert rec["config"]["epochs"] == 2 and rec["config"]["preset"] == "official"
    assert rec["teacher_weights"]["sha256"] == hashlib.sha256(b"not really weights").hexdigest()
    assert rec["dataset"]["counts"] == {"train_good": 12, "test_good": 4, "test_blob": 3, "test_scratch": 3}
    assert rec["dataset"]["n_files"] == 22 and rec["dataset"]["n_test"] == 10
    assert rec["wall_time_s"] == 12.5 and rec["extra"] == {"train_time_s": 10.0, "history": [0, 1, 2]}
    env = rec["environment"]
    assert {"python", "platform", "packages", "utc_time"} <= set(env)
    assert {"torch", "numpy", "scikit-learn"} <= set(env["packages"])


def test_metrics_json_validation(tmp_path):
    ok = dict(metrics={"a": 1.0}, config=CFG, teacher_weights=RANDOM_TW, dataset={"root": "/x", "counts": {}},
              wall_time_s=1.0)
    with pytest.raises(ValueError, match="sha256"):
        write_metrics_json(tmp_path / "m.json", **{**ok, "teacher_weights": {"source": "imagenet", "name": "x"}})
    with pytest.raises(ValueError, match="source"):
        write_metrics_json(tmp_path / "m.json", **{**ok, "teacher_weights": {"source": "timm"}})
    with pytest.raises(ValueError, match=r"metrics\['a'\]='x'"):
        write_metrics_json(tmp_path / "m.json", **{**ok, "metrics": {"a": "x"}})
    with pytest.raises(ValueError, match="wall_time_s"):
        write_metrics_json(tmp_path / "m.json", **{**ok, "wall_time_s": -1})
    with pytest.raises(ValueError, match="root"):
        write_metrics_json(tmp_path / "m.json", **{**ok, "dataset": {"category": "x"}})
    assert not (tmp_path / "m.json").exists()

    with pytest.raises(MetricsFileError, match="not found"):
        read_metrics_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MetricsFileError, match="bad.json: not a readable JSON"):
        read_metrics_json(bad)
    good = write_metrics_json(tmp_path / "good.json", **ok)
    rec = json.loads(good.read_text())
    for mutate, message in ((lambda r: r.update(schema="other/9"), "schema"),
                            (lambda r: r.pop("config"), "missing key"),
                            (lambda r: r["metrics"].update(a="high"), "is not a number"),
                            (lambda r: r["teacher_weights"].update(source="x"), "teacher_weights.source")):
        broken = json.loads(json.dumps(rec))
        mutate(broken)
        bad.write_text(json.dumps(broken))
        with pytest.raises(MetricsFileError, match=message):
            read_metrics_json(bad)


def test_metrics_json_per_defect_type(tmp_path):
    table = pd.DataFrame({"n_anomalous": [2, 3, 5], "n_normal": [4, 4, 4], "image_auroc": [1.0, 0.5, 0.7],
                          "pixel_auroc": [0.9, np.nan, 0.8]},
                         index=pd.Index(["crack", "hole", "(all)"], name="defect_type"))
    path = write_metrics_json(tmp_path / "m.json", metrics={"a": 1.0}, config=CFG, teacher_weights=RANDOM_TW,
                              dataset={"root": "/x", "counts": {}}, wall_time_s=1.0, per_defect_type=table)
    raw = json.loads(path.read_text())
    assert list(raw["per_defect_type"]) == ["crack", "hole", "(all)"]
    assert raw["per_defect_type"]["hole"] == {"n_anomalous": 3, "n_normal": 4, "image_auroc": 0.5, "pixel_auroc": None}
    rec = read_metrics_json(path)
    assert rec["per_defect_type"]["crack"]["image_auroc"] == 1.0 and math.isnan(rec["per_defect_type"]["hole"]["pixel_auroc"])
    raw["per_defect_type"]["crack"]["image_auroc"] = "high"
    path.write_text(json.dumps(raw))
    with pytest.raises(MetricsFileError, match=r"per_defect_type\['crack'\]\['image_auroc'\]='high' is not a number"):
        read_metrics_json(path)
    with pytest.raises(ValueError, match="per_defect_type must be a DataFrame indexed by defect type"):
        write_metrics_json(tmp_path / "n.json", metrics={"a": 1.0}, config=CFG, teacher_weights=RANDOM_TW,
                           dataset={"root": "/x", "counts": {}}, wall_time_s=1.0, per_defect_type=[1, 2])


def test_per_defect_type_all_row_uses_the_headline_scores():
    """The table's image AUROC comes from the same float32 scores as the headline number."""
    import numpy as np

    from stfpm_lib.metrics import image_auroc, per_defect_type

    rng = np.random.default_rng(0)
    maps = rng.random((6, 4, 4)).astype(np.float32)
    masks = np.zeros((6, 4, 4), bool)
    masks[3:, 0, 0] = True
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.7], np.float32)  # deliberately not the maps' max
    table = per_defect_type(maps, masks, ["good"] * 3 + ["a", "a", "b"], labels, scores=scores)
    # Pairs (anomalous > normal) of 3x3: 0.3 beats 0.1, 0.2; 0.8 beats 0.1, 0.2; 0.7 beats 0.1, 0.2 -> 6/9.
    assert table.loc["(all)", "image_auroc"] == pytest.approx(6 / 9) == image_auroc(scores, labels)
    assert table.loc["b", "image_auroc"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="scores must have 6 entries"):
        per_defect_type(maps, masks, ["good"] * 3 + ["a", "a", "b"], labels, scores=scores[:5])


# ---------------------------------------------------------------------------------------------- per_image.npz
def test_per_image_file_round_trip_and_bootstrap_values(tmp_path, gold):
    from stfpm_lib.metrics.bootstrap import bootstrap_ci
    from stfpm_lib.records.evaluation import PER_IMAGE_SCHEMA, read_per_image, write_per_image

    stats = gold.per_image_stats
    assert stats.names.tolist() == ["good/0.png", "a/1.png", "b/2.png"]
    assert stats.labels.tolist() == [False, True, True] and stats.n_regions.tolist() == [0, 1, 1]
    assert stats.hist_defect.sum() == 3 and stats.hist_normal.sum() == 9  # every pixel counted once
    path = write_per_image(tmp_path / "cat" / "per_image.npz", stats, config=CFG, teacher_weights=RANDOM_TW,
                           dataset={"root": "/x", "category": "toy", "counts": {"test_good": 1}})
    assert path.name == "per_image.npz" and sorted(p.name for p in path.parent.iterdir()) == ["per_image.npz"]
    back, meta = read_per_image(path)
    assert meta["schema"] == PER_IMAGE_SCHEMA and meta["teacher_weights"]["source"] == "random"
    assert meta["config"]["preset"] == "official" and "packages" in meta["environment"]
    for field in ("names", "labels", "defect_types", "scores", "bin_edges", "hist_normal", "hist_defect",
                  "hist_defect_weight", "n_regions"):
        np.testing.assert_array_equal(getattr(back, field), getattr(stats, field))
    ci = bootstrap_ci(back, ["image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_iou", "au_pro"],
                      n_resamples=20)
    # every pixel score is its own bin here, so even the pixel metrics equal metrics.json's exact values
    for key, metric in (("image_auroc", "image_auroc"), ("image_ap", "image_ap"), ("pixel_auroc", "pixel_auroc"),
                        ("pixel_ap", "pixel_ap"), ("pixel_iou", "pixel_iou"), ("au_pro", "au_pro")):
        assert ci[key].estimate == pytest.approx(gold.metrics[metric], abs=1e-6), key


def test_per_image_file_errors(tmp_path, gold):
    from stfpm_lib.records.evaluation import PerImageFileError, read_per_image, write_per_image

    with pytest.raises(PerImageFileError, match="not found"):
        read_per_image(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PerImageFileError, match="bad.npz: not a readable per-image file"):
        read_per_image(bad)
    np.savez(bad, meta=np.asarray(json.dumps({"schema": "other/1"})))
    with pytest.raises(PerImageFileError, match="schema='other/1'"):
        read_per_image(bad)
    np.savez(bad, meta=np.asarray(json.dumps({"schema": "stfpm-per-image/1"})), names=np.array(["a"]))
    with pytest.raises(PerImageFileError, match="missing array"):
        read_per_image(bad)
    with pytest.raises(ValueError, match="stats must be a PerImage"):
        write_per_image(tmp_path / "x.npz", {"names": []}, config=CFG, teacher_weights=RANDOM_TW,
                        dataset={"root": "/x"})
    with pytest.raises(ValueError, match="sha256"):  # the same provenance checks as metrics.json
        write_per_image(tmp_path / "x.npz", gold.per_image_stats, config=CFG, teacher_weights={"source": "file"},
                        dataset={"root": "/x"})
    assert not (tmp_path / "x.npz").exists()


def test_image_keys_pair_runs_by_type_and_file_name():
    from stfpm_lib.records.evaluation import image_keys

    assert image_keys(["/r1/cat/test/good/000.png", "/r1/cat/test/hole/000.png"], ["good", "hole"]) == \
        ["good/000.png", "hole/000.png"]
    assert image_keys(["/a/x/1.png", "/a/y/1.png"], ["t", "t"]) == ["/a/x/1.png", "/a/y/1.png"]  # not unique


def test_non_finite_maps_are_an_evaluation_error_naming_the_cause():
    maps = np.array(GOLD_MAPS, dtype=np.float32)
    maps[1, 0, 0] = np.nan
    with pytest.raises(EvaluationError, match=r"1 anomaly-map value\(s\) are not finite .* diverged"):
        evaluate_predictions(_predictions(maps, GOLD_MASKS, GOLD_LABELS, GOLD_TYPES, scores=[0.4, 0.9, 0.38]))
