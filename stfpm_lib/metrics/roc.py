"""AUROC (image and pixel), ROC curves and F1 scores.

AUROC is the area under the exact ROC curve with ties counted half (identical to
``sklearn.metrics.roc_auc_score``), computed as a Mann-Whitney statistic from sorted scores.

F1 rules (documented once, used everywhere):

* *best*: the threshold maximising F1 over all thresholds; a sample/pixel is anomalous iff
  ``score >= threshold``. The maximum is always reached at a score of an anomalous item; among
  equal F1 values the largest threshold is returned.
* *val*: the threshold is chosen on **normal validation data only**, as the ``quantile``
  (``numpy.quantile``, linear interpolation) of the validation normal scores; the default
  ``quantile=1.0`` is their maximum. A test item is anomalous iff ``score > threshold`` (strict,
  so with the maximum no validation image/pixel is flagged). Image level: validation scores are
  the per-image maxima of the validation maps; pixel level: all validation pixels.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._pool import PixelPool, build_pool, floor_to_dtype
from ._validation import (
    MaskBinarization,
    UndefinedMetricError,
    as_image_list,
    as_labels,
    as_scores,
    check_finite_maps,
    score_dtype,
    to_numpy,
)

__all__ = [
    "ROCCurve",
    "F1Result",
    "image_scores",
    "image_auroc",
    "pixel_auroc",
    "roc_curve",
    "pixel_roc_curve",
    "image_f1_best",
    "image_f1_val",
    "pixel_f1_best",
    "pixel_f1_val",
    "val_threshold",
]


class ROCCurve(NamedTuple):
    """Exact ROC curve, thresholds descending; point ``i`` = rates for ``score >= thresholds[i]``.

    The first point is (0, 0) with threshold ``+inf``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


class F1Result(NamedTuple):
    """F1 at ``threshold`` with its precision and recall (see module doc for the >=/> rule)."""

    f1: float
    threshold: float
    precision: float
    recall: float


# --------------------------------------------------------------------------------------- helpers
def _split_sorted(scores: np.ndarray, labels: np.ndarray) -> PixelPool:
    pos, neg = np.sort(scores[labels]), np.sort(scores[~labels])
    if pos.size == 0 or neg.size == 0:
        raise UndefinedMetricError(
            f"need both normal and anomalous samples; got {neg.size} normal and {pos.size} anomalous"
        )
    return PixelPool(neg=neg, pos=pos, pos_w=None, n_components=0)


def _image_pool(scores: Any, labels: Any) -> PixelPool:
    s = as_scores(scores)
    return _split_sorted(s, as_labels(labels, s.size))


def auroc_from_pool(pool: PixelPool) -> float:
    """Mann-Whitney U / (n_pos n_neg): each positive counts normals below it, ties count half."""
    below, below_or_tie = (c.sum(dtype=np.int64) for c in pool.neg_below(pool.pos))
    return float((below + below_or_tie) / 2 / pool.n_pos / pool.n_neg)


def roc_from_pool(pool: PixelPool, max_points: int | None = None) -> ROCCurve:
    thr = np.unique(np.concatenate([pool.neg, pool.pos]))[::-1]
    fpr = pool.count_neg_ge(thr) / pool.n_neg
    tpr = (pool.n_pos - np.searchsorted(pool.pos, thr, side="left")) / pool.n_pos
    curve = ROCCurve(
        np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), np.concatenate([[np.inf], thr.astype(np.float64)])
    )
    return _thin(curve, max_points)


def _thin(curve: Any, max_points: int | None) -> Any:
    n = curve[0].size
    if max_points is None or n <= max_points:
        return curve
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.intp))
    return type(curve)(*(a[idx] for a in curve))


def f1_best_from_pool(pool: PixelPool) -> F1Result:
    thr = np.unique(pool.pos)
    tp = pool.n_pos - np.searchsorted(pool.pos, thr, side="left")
    fp = pool.count_neg_ge(thr)
    f1 = 2.0 * tp / (tp + fp + pool.n_pos)
    i = f1.size - 1 - int(np.argmax(f1[::-1]))  # largest threshold among ties
    return F1Result(float(f1[i]), float(thr[i]), float(tp[i] / (tp[i] + fp[i])), float(tp[i] / pool.n_pos))


def f1_gt_from_pool(pool: PixelPool, threshold: float) -> F1Result:
    """F1 when anomalous iff ``score > threshold`` (exact comparison against the float64 value)."""
    t = floor_to_dtype(threshold, pool.dtype)
    tp = int(pool.n_pos - np.searchsorted(pool.pos, t, side="right"))
    fp = int(pool.count_neg_gt(t))
    precision = tp / (tp + fp) if tp + fp else 0.0
    return F1Result(2.0 * tp / (tp + fp + pool.n_pos), float(threshold), precision, tp / pool.n_pos)


def val_threshold(val_scores: Any, quantile: float = 1.0) -> float:
    """``quantile`` of validation normal scores (any shape, all values pooled; 1.0 = max)."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1]; got {quantile}")
    items = val_scores if isinstance(val_scores, (list, tuple)) else [val_scores]
    parts = [to_numpy(v).reshape(-1) for v in items]
    check_finite_maps(parts, "val scores")
    if sum(p.size for p in parts) == 0:
        raise ValueError("validation scores are empty")
    v = np.concatenate([p.ravel().astype(score_dtype(parts), copy=False) for p in parts])
    return float(np.quantile(v, quantile))


# ----------------------------------------------------------------------------------- image level
def image_scores(maps: Any) -> np.ndarray:
    """Image scores ``(N,)`` = max of each map ``(N, H, W)`` (list of 2-D maps accepted)."""
    maps_l = as_image_list(maps, "maps")
    check_finite_maps(maps_l)
    return np.array([m.max() for m in maps_l], dtype=score_dtype(maps_l))


def image_auroc(scores: Any, labels: Any) -> float:
    """Image AUROC. ``scores`` ``(N,)`` (or maps ``(N, H, W)``, reduced by max); ``labels`` ``(N,)`` 0/1."""
    return auroc_from_pool(_image_pool(scores, labels))


def roc_curve(scores: Any, labels: Any) -> ROCCurve:
    """Exact image ROC curve (:class:`ROCCurve`); ``scores`` ``(N,)`` or maps ``(N, H, W)``, ``labels`` ``(N,)``."""
    return roc_from_pool(_image_pool(scores, labels))


def image_f1_best(scores: Any, labels: Any) -> F1Result:
    """Best image F1 (anomalous iff ``score >= threshold``).

    ``scores`` ``(N,)`` or maps ``(N, H, W)`` (reduced by max); ``labels`` ``(N,)`` 0/1.
    """
    return f1_best_from_pool(_image_pool(scores, labels))


def image_f1_val(scores: Any, labels: Any, val_scores: Any, quantile: float = 1.0) -> F1Result:
    """Image F1 at a threshold from validation normal images only.

    ``val_scores``: ``(M,)`` image scores or ``(M, H, W)`` maps (reduced by max) of normal
    validation images. Threshold = ``quantile`` of them; anomalous iff ``score > threshold``.
    """
    return f1_gt_from_pool(_image_pool(scores, labels), val_threshold(as_scores(val_scores, "val_scores"), quantile))


# ----------------------------------------------------------------------------------- pixel level
def pixel_auroc(maps: Any, masks: Any, *, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False) -> float:
    """Pixel AUROC over all pixels of all images; ``maps`` ``(N, H, W)`` float, ``masks`` ``(N, H, W)``.

    ``resize_maps=True`` bilinearly resizes each map to its mask's size (masks may then be a
    list of differently sized 2-D arrays).
    """
    return auroc_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps))


def pixel_roc_curve(
    maps: Any, masks: Any, *, max_points: int | None = 10_000, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False
) -> ROCCurve:
    """Exact pixel ROC curve of ``maps`` ``(N, H, W)`` vs ``masks`` ``(N, H, W)``, thinned to at most
    ``max_points`` evenly spaced curve points (``None``: all distinct scores)."""
    return roc_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps), max_points)


def pixel_f1_best(maps: Any, masks: Any, *, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False) -> F1Result:
    """Best pixel F1 (anomalous iff ``score >= threshold``); ``maps`` ``(N, H, W)`` float, ``masks`` ``(N, H, W)``."""
    return f1_best_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps))


def pixel_f1_val(
    maps: Any,
    masks: Any,
    val_maps: Any,
    quantile: float = 1.0,
    *,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> F1Result:
    """Pixel F1 at the ``quantile`` of all pixels of normal validation maps ``(M, H', W')``.

    ``maps`` ``(N, H, W)`` float, ``masks`` ``(N, H, W)``. Anomalous iff ``score > threshold``.
    The validation maps are used at their own resolution.
    """
    t = val_threshold(val_maps, quantile)
    return f1_gt_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps), t)
