"""Evaluate saved predictions and write/read ``metrics.json`` with full provenance.

::

    ev = evaluate_predictions("predictions.npz", val_predictions="val_predictions.npz")
    ev.metrics["pixel_auroc"], ev.per_defect_type, ev.curves["pro"]
    write_metrics_json(run_dir / cat / "metrics.json", metrics=ev.metrics, config=cfg,
                       teacher_weights=pred.teacher_weights, dataset=pred.dataset,
                       wall_time_s=elapsed, extra={"train_time_s": result.train_time_s})
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..config import MapSettings
from ..data import image_size_of, index_category
from ..data.imageio import read_mask_values
from ..io import atomic_save, atomic_write_text, sha256_file
from ..method.anomaly_map import final_map
from ..metrics._pool import build_pool  # the pixel pool, built once and shared by the metrics and the curves
from ..metrics.bootstrap import PerImage, per_image_stats
from ..metrics.pro import official_curve_from_pool, pro_curve_from_pool
from ..metrics.roc import roc_from_pool, thin_curve
from ..provenance import environment_info
from .predictions import PredictionsError, load_predictions

__all__ = [
    "METRICS_SCHEMA", "TEACHER_SOURCES", "MetricsFileError", "EvaluationError", "Evaluation", "evaluate_predictions",
    "write_metrics_json", "read_metrics_json", "PER_IMAGE_NAME", "PER_IMAGE_SCHEMA", "PerImageFileError",
    "image_keys", "write_per_image", "read_per_image",
]

#: the per-image file written beside ``metrics.json`` (what studies bootstrap and pair, without the maps)
PER_IMAGE_NAME = "per_image.npz"
PER_IMAGE_SCHEMA = "stfpm-per-image/1"

METRICS_SCHEMA = "stfpm-metrics/1"
TEACHER_SOURCES = ("imagenet", "random", "file")
_REQUIRED_KEYS = ("schema", "metrics", "config", "teacher_weights", "dataset", "wall_time_s", "environment")


class MetricsFileError(ValueError):
    """A ``metrics.json`` that is missing, unreadable or malformed; the message names the file."""


class PerImageFileError(ValueError):
    """A ``per_image.npz`` that is missing, unreadable or malformed; the message names the file."""


class EvaluationError(ValueError):
    """Predictions that cannot be evaluated as asked (validation file of another split, original
    resolution of cropped maps...); the message names the file and the setting at fault."""


# ====================================================================== evaluation
@dataclass
class Evaluation:
    """Metrics of one category's test predictions.

    Attributes
    ----------
    metrics : dict of str to float
        ``image_auroc``, ``pixel_auroc``, ``au_pro`` (MVTec, FPR <= ``fpr_limit``, at map
        resolution), ``official_pro`` (the official code's min-max-rescaled PRO, **not** AU-PRO),
        ``image_f1`` / ``pixel_f1`` (best threshold, "F1-max", ``*_threshold`` in score units),
        ``image_ap`` / ``pixel_ap`` (average precision, sklearn's step-wise sum), ``pixel_iou`` (best
        pooled-pixel IoU, "IoU-max", ``pixel_iou_threshold``); with validation
        predictions ``image_f1_val`` / ``pixel_f1_val`` (threshold = max of the normal validation
        scores, ``*_threshold``); with ``original_resolution`` ``au_pro_orig_res`` /
        ``pixel_auroc_orig_res``; and counts (``n_images``, ``n_anomalous``, ``n_normal``,
        ``n_defect_pixels``, ``n_normal_pixels``, ``n_regions``, ``n_defect_types``, ``map_size``
        in pixels, ``fpr_limit``, ``n_val_images``).
    per_defect_type : pandas.DataFrame
        Indexed by defect type (each type's images vs all normal images; last row ``(all)``):
        ``n_anomalous, n_normal, image_auroc, pixel_auroc, au_pro, official_pro, image_ap, pixel_ap``.
    curves : dict of str to dict
        ``image_roc`` / ``pixel_roc`` (``fpr``, ``tpr``, ``thresholds``, ``auc``; the pixel ROC
        thinned to 2000 points), ``pro`` (MVTec curve up to the FPR limit, thinned: ``fpr``, ``pro``,
        ``thresholds``, ``auc``, ``fpr_limit``) and ``official_pro`` (the official 4000-step grid
        curve before rescaling, ``auc`` = ``official_pro``).
    scores, labels, defect_types, image_paths : ndarray of shape (N,)
        Per test image.
    per_image_stats : PerImage
        The bootstrap summary of the test images (:class:`~stfpm_lib.metrics.bootstrap.PerImage`:
        names from :func:`image_keys`, scores, labels, per-image pixel-score histograms), written by
        :func:`write_per_image`.
    source : str or None
        The predictions file, when read from one.
    mask_rule : str or None
        The rule the masks were binarised with.
    """

    metrics: dict[str, float]
    per_defect_type: pd.DataFrame
    curves: dict[str, dict[str, Any]]
    scores: np.ndarray
    labels: np.ndarray
    defect_types: np.ndarray
    image_paths: np.ndarray
    source: str | None = None
    mask_rule: str | None = None
    per_image_stats: PerImage | None = None

    def best_worst(self, k: int = 3) -> dict[str, np.ndarray]:
        """Indices of test images for figures, ``k`` per group (fewer if the group is smaller).

        ``anomalous_best``: defective images with the highest scores; ``anomalous_worst``: defective
        images with the lowest scores (missed); ``normal_best``: normal images with the lowest scores;
        ``normal_worst``: normal images with the highest scores (false alarms). Ties keep test order.

        Parameters
        ----------
        k : int, default=3
            Positive.

        Returns
        -------
        dict of str to ndarray of int

        Raises
        ------
        ValueError
            If ``k < 1``.
        """
        if int(k) < 1:
            raise ValueError(f"k={k!r} must be a positive integer")
        k = int(k)
        out = {}
        for group, label, highest_first in (("anomalous_best", 1, True), ("anomalous_worst", 1, False),
                                            ("normal_best", 0, False), ("normal_worst", 0, True)):
            idx = np.flatnonzero(self.labels == label)
            key = -self.scores[idx] if highest_first else self.scores[idx]
            out[group] = idx[np.argsort(key, kind="stable")][:k]
        return out

    def per_image(self) -> pd.DataFrame:
        """One row per test image.

        Returns
        -------
        pandas.DataFrame
            Columns ``image_path``, ``defect_type``, ``label``, ``score``.
        """
        return pd.DataFrame({"image_path": self.image_paths, "defect_type": self.defect_types,
                             "label": self.labels, "score": self.scores})


_CURVE_POINTS = 2000


def _original_masks(pred: Any) -> list[np.ndarray]:
    """Ground truth at the original image resolution (any value > 0 is a defect), one 2-D array per image."""

    sizes = getattr(pred, "image_sizes", None)
    masks = []
    for i, (image_path, mask_path) in enumerate(zip(pred.image_paths, pred.mask_paths)):
        if mask_path:
            masks.append(read_mask_values(mask_path) > 0)  # the shared reader (EXIF, 16-bit rules)
        else:
            w, h = (int(v) for v in sizes[i]) if sizes is not None else image_size_of(image_path)
            masks.append(np.zeros((h, w), dtype=bool))
    return masks


def _load(predictions: Any) -> tuple[Any, str | None]:
    if isinstance(predictions, (str, os.PathLike)):
        return load_predictions(predictions), os.fspath(predictions)
    for attr in ("maps", "scores", "labels", "defect_types", "image_paths", "mask_paths", "masks"):
        if not hasattr(predictions, attr):
            raise TypeError(f"predictions must be a Predictions object or a path to one; "
                            f"{type(predictions).__name__} has no attribute {attr!r}")
    return predictions, None


def _float32_maps(maps: Any, where: str) -> np.ndarray:
    """``maps`` as an array, refusing float16 (or any float narrower than float32)."""
    maps = np.asarray(maps)
    if maps.dtype.kind == "f" and maps.dtype.itemsize < 4:
        raise PredictionsError(
            f"{where}: the anomaly maps are stored as {maps.dtype}; metrics are computed from float32 maps only "
            f"(float16 rounding moves them, e.g. the official PRO by ~2.5e-4): predict again with "
            f"maps_dtype='float32' (the default; not --float16)")
    if maps.dtype.kind == "f" and not np.isfinite(maps).all():
        raise EvaluationError(f"{where}: {int(np.size(maps) - np.isfinite(maps).sum())} anomaly-map value(s) are not "
                              "finite (NaN or inf): the model that made them diverged; train it again (lower lr)")
    return maps


def _checked_arrays(pred: Any, where: str, original_resolution: bool,
                    mask_rule: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(maps (N,H,W), scores (N,) float32, labels (N,) int8, masks (N,H,W))`` of ``pred``, checked."""
    crop = (pred.config or {}).get("crop_size")
    if original_resolution and crop:
        raise EvaluationError(f"{where}: original_resolution needs uncropped maps; the predictions were made with "
                              f"crop_size={crop}, which cannot be mapped back onto the original images")
    maps = _float32_maps(pred.maps, where)
    if maps.ndim != 3:
        raise ValueError(f"{where}: maps must have shape (N, H, W); got {maps.shape}")
    scores = np.asarray(pred.scores, dtype=np.float32)
    labels = np.asarray(pred.labels).astype(np.int8)
    n = maps.shape[0]
    if scores.shape != (n,) or labels.shape != (n,) or len(pred.defect_types) != n:
        raise ValueError(f"{where}: {n} maps but scores {scores.shape}, labels {labels.shape}, "
                         f"{len(pred.defect_types)} defect types")
    masks = np.asarray(pred.masks(mask_rule))
    if masks.shape != maps.shape:
        raise ValueError(f"{where}: masks {masks.shape} do not match maps {maps.shape}")
    return maps, scores, labels, masks


def _metric_maps(pred: Any, maps: np.ndarray, scores: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The maps and image scores the metrics use.

    With ``official`` upsampling and the fused maps in the file: the float64 maps the official code
    computes (its ``cv2.resize`` of a float64 copy), recomputed from them by
    :func:`~stfpm_lib.method.anomaly_map.final_map`, and their maxima. Otherwise the stored maps and scores.
    """
    fused, cfg = getattr(pred, "fused_maps", None), dict(pred.config or {})
    if fused is None or cfg.get("map_upsample") != "official":
        return maps, scores
    settings = MapSettings.from_any({k: cfg[k] for k in ("map_scale", "map_upsample", "map_fusion",
                                                         "smoothing_sigma") if k in cfg})
    full = final_map(torch.from_numpy(np.asarray(fused, dtype=np.float32)), settings, maps.shape[1:]).numpy()
    if full.shape != maps.shape or not np.allclose(full, maps, rtol=1e-6, atol=1e-30):
        raise PredictionsError(f"{where}: fused_maps do not give the stored maps (shape {full.shape} vs "
                               f"{maps.shape}); the file is inconsistent: predict again")
    return full, full.max(axis=(1, 2))


def _check_same_model(pred: Any, val: Any) -> None:
    """Refuse validation predictions made by another model or of another category than the test predictions
    (their *_val thresholds would come from that model, silently)."""
    def origin(p: Any) -> tuple[Any, Any]:
        return (getattr(p, "meta", None) or {}).get("checkpoint_sha256"), (getattr(p, "dataset", None) or {}).get("category")

    (model, category), (val_model, val_category) = origin(pred), origin(val)
    names = (str(getattr(pred, "path", None) or "predictions"), str(getattr(val, "path", None) or "val_predictions"))
    if category and val_category and category != val_category:
        raise EvaluationError(f"{names[1]} holds category {val_category!r}, {names[0]} category {category!r}: the "
                              "*_val thresholds must come from the same category's held-out normal images")
    if model and val_model and model != val_model:
        raise EvaluationError(f"{names[1]} was predicted by another model (checkpoint sha256 {val_model[:16]}...) than "
                              f"{names[0]} (checkpoint sha256 {model[:16]}...): predict the val split again with "
                              "this checkpoint (stfpm predict --split val)")


def _load_val(val_predictions: Any) -> Any:
    """The validation predictions, checked to be the ``val`` split's normal images."""
    val, val_source = _load(val_predictions)
    val_split = str((getattr(val, "meta", None) or {}).get("split", ""))
    if val_split and val_split != "val":
        raise EvaluationError(f"{val_source or getattr(val, 'path', None) or 'val_predictions'} holds predictions of the {val_split!r} split; "
                              "the *_val thresholds need the held-out normal images (predict --split val)")
    if np.asarray(val.labels).any():
        raise EvaluationError("val_predictions must hold normal images only (label 0); "
                              f"{int(np.asarray(val.labels).sum())} are labelled anomalous")
    return val


def _metric_values(m: Mapping[str, Any], scores: np.ndarray, labels: np.ndarray, types: np.ndarray,
                   val_scores: np.ndarray | None, map_size: int, fpr_limit: float,
                   original_resolution: bool) -> dict[str, float]:
    """The ``metrics`` dict of an :class:`Evaluation`: image metrics from ``scores``, pixel ones from
    ``m`` (:func:`~stfpm_lib.metrics.compute_all`), and the counts."""
    best = M.image_f1_best(scores, labels)  # image level from the scores (the max of each metric map)
    metrics: dict[str, float] = {
        "image_auroc": M.image_auroc(scores, labels),
        "pixel_auroc": m["pixel_auroc"],
        "au_pro": m["au_pro"],
        "official_pro": m["official_pro"],
        "image_f1": best.f1,
        "image_f1_threshold": best.threshold,
        "pixel_f1": m["pixel_f1_best"],
        "pixel_f1_threshold": m["pixel_f1_best_threshold"],
        "image_ap": M.image_ap(scores, labels),
        "pixel_ap": m["pixel_ap"],
        "pixel_iou": m["pixel_iou_best"],
        "pixel_iou_threshold": m["pixel_iou_best_threshold"],
    }
    if val_scores is not None:
        vres = M.image_f1_val(scores, labels, val_scores)
        metrics.update(image_f1_val=vres.f1, image_f1_val_threshold=vres.threshold,
                       pixel_f1_val=m["pixel_f1_val"], pixel_f1_val_threshold=m["pixel_f1_val_threshold"])
    if original_resolution:
        metrics.update(au_pro_orig_res=m["au_pro_orig_res"], pixel_auroc_orig_res=m["pixel_auroc_orig_res"])
    metrics.update({key: float(m[key]) for key in ("n_images", "n_anomalous", "n_normal", "n_defect_pixels",
                                                    "n_normal_pixels", "n_regions")})
    metrics["n_defect_types"] = float(len(set(types[labels == 1])))
    metrics["map_size"] = float(map_size)
    metrics["fpr_limit"] = float(fpr_limit)
    if val_scores is not None:
        metrics["n_val_images"] = float(len(val_scores))
    return {k: float(v) for k, v in metrics.items()}


def _curves(pool: Any, scores: np.ndarray, labels: np.ndarray, metrics: Mapping[str, float],
            fpr_limit: float) -> dict[str, dict[str, Any]]:
    """Image ROC, pixel ROC (thinned), PRO up to ``fpr_limit`` (thinned) and the official PRO curve;
    the pixel curves from ``pool`` (the test maps' pixel pool, with regions)."""
    image_roc = M.roc_curve(scores, labels)
    pixel_roc = roc_from_pool(pool, _CURVE_POINTS)
    pro = thin_curve(pro_curve_from_pool(pool, fpr_limit), _CURVE_POINTS)
    official = official_curve_from_pool(pool)
    return {
        "image_roc": {"fpr": image_roc.fpr, "tpr": image_roc.tpr, "thresholds": image_roc.thresholds,
                      "auc": metrics["image_auroc"]},
        "pixel_roc": {"fpr": pixel_roc.fpr, "tpr": pixel_roc.tpr, "thresholds": pixel_roc.thresholds,
                      "auc": metrics["pixel_auroc"]},
        "pro": {"fpr": pro.fpr, "pro": pro.pro, "thresholds": pro.thresholds, "auc": metrics["au_pro"],
                "fpr_limit": float(fpr_limit)},
        "official_pro": {"fpr": official.fpr, "pro": official.pro, "thresholds": official.thresholds,
                         "auc": metrics["official_pro"]},
    }


def evaluate_predictions(predictions: Any, *, val_predictions: Any = None, original_resolution: bool = False,
                         fpr_limit: float = 0.3, mask_rule: str | None = None) -> Evaluation:
    """Every metric of one category from its test predictions.

    Every number comes from float32 or float64 maps: with ``official`` upsampling, the float64 maps of
    the official code, recomputed from the file's ``fused_maps`` (the stored float32 ``maps`` are
    those rounded); otherwise the stored maps. Pixel metrics use the maps and
    ``predictions.masks()`` (binarised at map resolution by the config's ``mask_rule``), from one
    pixel pool shared by the metrics, the per-defect-type ``(all)`` row and the curves; image
    metrics use the maximum of each map and the folder labels.

    Parameters
    ----------
    predictions : Predictions or str or path-like
        Test predictions, or the ``.npz`` written by :func:`~stfpm_lib.engine.inference.predict`;
        maps of shape (N, H, W).
    val_predictions : Predictions or str or path-like, optional
        Normal validation images (the ``val`` split): adds the F1 at a threshold chosen without test
        data.
    original_resolution : bool, default=False
        Also AU-PRO and pixel AUROC with each map bilinearly upsampled to its original mask (the
        MVTec protocol; slow for 1024² images; not for cropped maps).
    fpr_limit : float, default=0.3
        FPR limit of AU-PRO and the official PRO, in (0, 1].
    mask_rule : {"gt0", "nearest", "eq1"}, optional
        Re-binarise the masks from the mask files, for a sensitivity check (default: the rule of the
        run, as stored); ``Evaluation.mask_rule`` records it.

    Returns
    -------
    Evaluation

    Raises
    ------
    PredictionsError
        Maps stored as float16 (their rounding moves the official-code PRO by ~2.5e-4; predict with
        ``maps_dtype="float32"``, the default) or a bad file.
    EvaluationError
        Validation predictions of another split or with anomalous images; original resolution of
        cropped maps.
    UndefinedMetricError
        A metric undefined for these images (the file named).
    """

    pred, source = _load(predictions)
    where = source or getattr(pred, "path", None) or "predictions"
    maps, scores, labels, masks = _checked_arrays(pred, where, original_resolution, mask_rule)
    maps, scores = _metric_maps(pred, maps, scores, where)
    used_rule = mask_rule or (pred.config or {}).get("mask_rule")
    val_maps = val_scores = None
    if val_predictions is not None:
        val = _load_val(val_predictions)
        _check_same_model(pred, val)
        val_maps, val_scores = _metric_maps(val, _float32_maps(val.maps, "val_predictions"),
                                            np.asarray(val.scores, dtype=np.float32), "val_predictions")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # official PRO may be NaN by its own formula
            pool = build_pool(maps, masks, components=True)
            m = M.compute_all(maps, masks, labels, val_maps=val_maps, fpr_limit=fpr_limit, pool=pool,
                              orig_masks=_original_masks(pred) if original_resolution else None)
    except M.UndefinedMetricError as exc:
        raise M.UndefinedMetricError(f"{where}: {exc}") from exc
    types = np.asarray([str(t) for t in pred.defect_types])
    metrics = _metric_values(m, scores, labels, types, val_scores, maps.shape[1], fpr_limit, original_resolution)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = M.per_defect_type(maps, masks, types, labels, fpr_limit=fpr_limit, official=True, scores=scores,
                                  pool=pool)
    curves = _curves(pool, scores, labels, metrics, fpr_limit)
    paths = np.asarray([str(p) for p in pred.image_paths])
    stats = per_image_stats(maps, masks, scores, labels, names=image_keys(paths, types), defect_types=types,
                            fpr_limit=fpr_limit)
    return Evaluation(metrics=metrics, per_defect_type=table, curves=curves, scores=scores, labels=labels,
                      defect_types=types, image_paths=paths, source=source, mask_rule=used_rule,
                      per_image_stats=stats)


def image_keys(image_paths: Any, defect_types: Any) -> list[str]:
    """Names that pair the same test image across runs.

    Parameters
    ----------
    image_paths, defect_types : sequence of shape (N,)
        The test images and their defect types.

    Returns
    -------
    list of str
        ``<defect_type>/<file name>`` per image, or the full paths when those names are not unique.
    """
    keys = [f"{t}/{Path(str(p)).name}" for p, t in zip(image_paths, defect_types)]
    return keys if len(set(keys)) == len(keys) else [str(p) for p in image_paths]


# ====================================================================== metrics.json
def _json_safe(value: Any, where: str) -> Any:
    """Plain JSON types; NumPy scalars/arrays converted, NaN/inf → ``None``, Paths → str."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value.tolist())]
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


def _metrics_dict(metrics: Mapping[str, Any]) -> dict[str, float | int | None]:
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"metrics must be a non-empty mapping of name -> number; got {metrics!r}")
    out: dict[str, float | int | None] = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None:
            out[str(key)] = None
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"metrics[{key!r}]={value!r} is not a number")
        elif isinstance(value, numbers.Integral):
            out[str(key)] = int(value)
        else:
            out[str(key)] = float(value) if math.isfinite(float(value)) else None
    return out


def _config_dict(config: Any) -> dict[str, Any]:
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be an STFPMConfig or a mapping; got {type(config).__name__}")
    return _json_safe(dict(config), "config")


def _teacher_dict(teacher_weights: Any) -> dict[str, Any]:
    if hasattr(teacher_weights, "describe"):
        teacher_weights = teacher_weights.describe()
    if not isinstance(teacher_weights, Mapping):
        raise ValueError(f"teacher_weights must be a TeacherWeights or a mapping; got {type(teacher_weights).__name__}")
    tw = dict(teacher_weights)
    tw.pop("state_dict", None)
    if tw.get("source") not in TEACHER_SOURCES:
        raise ValueError(f"teacher_weights['source']={tw.get('source')!r} is not one of {list(TEACHER_SOURCES)}")
    path = tw.get("path")
    if tw["source"] != "random" and not tw.get("sha256") and path and Path(path).is_file():
        tw["sha256"] = sha256_file(path)
    if tw["source"] != "random" and not tw.get("sha256"):
        raise ValueError(f"teacher_weights of source {tw['source']!r} need a sha256 (or an existing 'path' to hash); "
                         f"got {tw!r}")
    return _json_safe(tw, "teacher_weights")


def _dataset_dict(dataset: Any) -> dict[str, Any]:
    if hasattr(dataset, "describe"):
        dataset = dataset.describe()
    if not isinstance(dataset, Mapping) or "root" not in dataset:
        raise ValueError(f"dataset must be a CategoryIndex or a mapping with a 'root' key; got {dataset!r}")
    ds = dict(dataset)
    if "counts" not in ds and ds.get("category") and Path(ds["root"]).is_dir():
        ds["counts"] = index_category(ds["root"], ds["category"]).counts()
    counts = ds.get("counts")
    if counts is not None:
        if not isinstance(counts, Mapping):
            raise ValueError(f"dataset['counts'] must be a mapping of split -> count; got {counts!r}")
        ds["n_files"] = int(sum(int(v) for v in counts.values()))
        ds["n_test"] = int(sum(int(v) for k, v in counts.items() if str(k).startswith("test_")))
    return _json_safe(ds, "dataset")


def _per_defect_dict(table: Any) -> dict[str, dict[str, float | int | None]]:
    """``{defect_type: {column: value}}`` of a per-defect-type DataFrame (index = type) or mapping."""
    if isinstance(table, pd.DataFrame):
        table = {str(name): row.to_dict() for name, row in table.iterrows()}
    if not isinstance(table, Mapping):
        raise ValueError(f"per_defect_type must be a DataFrame indexed by defect type or a mapping; "
                         f"got {type(table).__name__}")
    return {str(k): _metrics_dict(v) for k, v in table.items()}


def write_metrics_json(path: str | os.PathLike, *, metrics: Mapping[str, Any], config: Any, teacher_weights: Any,
                       dataset: Any, wall_time_s: float, extra: Mapping[str, Any] | None = None,
                       per_defect_type: Any = None) -> Path:
    """Write ``metrics.json`` atomically.

    Parameters
    ----------
    path : str or path-like
    metrics : mapping of str to number
        Non-finite values are written as ``null``.
    config : STFPMConfig or mapping
    teacher_weights : TeacherWeights or mapping
        Or its ``describe()`` dict; the sha256 is computed from ``path`` when missing and required
        unless the teacher is random.
    dataset : mapping
        Root, category and per-split file counts (counted from disk when not given).
    wall_time_s : float
        Seconds.
    extra : mapping, optional
        By convention ``train_time_s``, ``best_epoch``, ``predictions`` ...
    per_defect_type : pandas.DataFrame, optional
        :attr:`Evaluation.per_defect_type`, written under the key ``per_defect_type`` as
        ``{defect_type: {"n_anomalous": n, "n_normal": n, "<metric>": value, ...}}``, last ``"(all)"``.

    Returns
    -------
    Path
        The file written; it also records the environment
        (:func:`stfpm_lib.provenance.environment_info`).

    Raises
    ------
    ValueError
        Non-numeric metrics or an unusable config / teacher record.
    """

    wall = float(wall_time_s)
    if not math.isfinite(wall) or wall < 0:
        raise ValueError(f"wall_time_s={wall_time_s!r} must be a finite number of seconds >= 0")
    record = {
        "schema": METRICS_SCHEMA,
        "metrics": _metrics_dict(metrics),
        "config": _config_dict(config),
        "teacher_weights": _teacher_dict(teacher_weights),
        "dataset": _dataset_dict(dataset),
        "wall_time_s": wall,
        "environment": _json_safe(environment_info(), "environment"),
        "extra": _json_safe(dict(extra or {}), "extra"),
    }
    if per_defect_type is not None:
        record["per_defect_type"] = _per_defect_dict(per_defect_type)
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a ``metrics.json``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict of str to object
        The file's content; metric ``null`` values come back as NaN.

    Raises
    ------
    MetricsFileError
        A missing file, invalid JSON, another schema, missing keys or non-numeric metrics (``per_defect_type`` values
        included, when present; the file named).
    """
    path = Path(path)
    if not path.is_file():
        raise MetricsFileError(f"metrics file not found: {path}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetricsFileError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(record, dict):
        raise MetricsFileError(f"{path}: expected a JSON object, got {type(record).__name__}")
    if record.get("schema") != METRICS_SCHEMA:
        raise MetricsFileError(f"{path}: schema={record.get('schema')!r}, expected {METRICS_SCHEMA!r}")
    missing = [k for k in _REQUIRED_KEYS if k not in record]
    if missing:
        raise MetricsFileError(f"{path}: missing key(s) {missing}")
    metrics = record["metrics"]
    if not isinstance(metrics, dict):
        raise MetricsFileError(f"{path}: 'metrics' must be an object")
    tables = [("metrics", metrics)]
    per_type = record.get("per_defect_type")
    if per_type is not None:
        if not isinstance(per_type, dict) or not all(isinstance(v, dict) for v in per_type.values()):
            raise MetricsFileError(f"{path}: 'per_defect_type' must map each defect type to an object of metrics")
        tables += [(f"per_defect_type[{name!r}]", values) for name, values in per_type.items()]
    for where, values in tables:
        for key, value in values.items():
            if value is None:
                values[key] = float("nan")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MetricsFileError(f"{path}: {where}[{key!r}]={value!r} is not a number")
    tw = record["teacher_weights"]
    if not isinstance(tw, dict) or tw.get("source") not in TEACHER_SOURCES:
        raise MetricsFileError(f"{path}: teacher_weights.source must be one of {list(TEACHER_SOURCES)}; got {tw!r}")
    for key in ("config", "dataset", "environment"):
        if not isinstance(record[key], dict):
            raise MetricsFileError(f"{path}: {key!r} must be an object")
    record.setdefault("extra", {})
    record["path"] = str(path)
    return record


# ====================================================================== per_image.npz
def write_per_image(path: str | os.PathLike, stats: PerImage, *, config: Any, teacher_weights: Any,
                    dataset: Any) -> Path:
    """Write ``per_image.npz`` (compressed, atomically) and return its path.

    Parameters
    ----------
    path : str or path-like
    stats : PerImage
        :attr:`Evaluation.per_image_stats`.
    config, teacher_weights, dataset
        The run's records, as for :func:`write_metrics_json`.

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    Arrays: those of :meth:`PerImage.to_arrays` (``names``, ``labels``, ``defect_types``, ``scores``
    ``(N,)``; ``bin_edges`` ``(K,)``; ``hist_normal``, ``hist_defect`` ``(N, K)`` int32 pixel counts;
    ``hist_defect_weight`` ``(N, K)`` float64; ``n_regions`` ``(N,)``; ``fpr_limit``) and ``meta``, a
    JSON string with ``schema`` (:data:`PER_IMAGE_SCHEMA`), config, teacher weights, dataset and
    environment, checked as in :func:`write_metrics_json`.
    """
    if not isinstance(stats, PerImage):
        raise ValueError(f"stats must be a PerImage (Evaluation.per_image_stats); got {type(stats).__name__}")
    meta = {"schema": PER_IMAGE_SCHEMA, "config": _config_dict(config), "teacher_weights": _teacher_dict(teacher_weights),
            "dataset": _dataset_dict(dataset), "environment": _json_safe(environment_info(), "environment")}
    arrays = stats.to_arrays()
    arrays["hist_normal"] = arrays["hist_normal"].astype(np.int32)
    arrays["hist_defect"] = arrays["hist_defect"].astype(np.int32)
    arrays["meta"] = np.asarray(json.dumps(meta, allow_nan=False))

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    return atomic_save(path, save)


def read_per_image(path: str | os.PathLike) -> tuple[PerImage, dict[str, Any]]:
    """Read a ``per_image.npz``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    (PerImage, dict)
        The per-image summary and the file's ``meta`` record (config, teacher weights, dataset, environment).

    Raises
    ------
    PerImageFileError
        A missing, unreadable or foreign file (the file named).
    """
    path = Path(path)
    if not path.is_file():
        raise PerImageFileError(f"per-image file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError) as exc:
        raise PerImageFileError(f"{path}: not a readable per-image file: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("schema") != PER_IMAGE_SCHEMA:
        raise PerImageFileError(f"{path}: schema={meta.get('schema') if isinstance(meta, dict) else None!r}, "
                                f"expected {PER_IMAGE_SCHEMA!r}")
    try:
        return PerImage.from_arrays(arrays), meta
    except (KeyError, ValueError) as exc:
        raise PerImageFileError(f"{path}: {exc}") from exc
