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

import math
from typing import Any, NamedTuple

import numpy as np

from ._docs import shared_doc
from ._pool import PixelPool, build_pool, floor_to_dtype
from ._validation import (
    MASK_BINARIZATIONS,
    MaskBinarization,
    Options,
    UndefinedMetricError,
    as_image_list,
    as_labels,
    as_scores,
    check_finite_maps,
    score_dtype,
    to_numpy,
    validate_params,
)

__all__ = [
    "ROCCurve",
    "F1Result",
    "IoUResult",
    "BinaryCounts",
    "binary_counts",
    "image_ap",
    "pixel_ap",
    "pixel_iou_best",
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
    "thin_curve",
]


class ROCCurve(NamedTuple):
    """Exact ROC curve, thresholds descending; point ``i`` = rates for ``score >= thresholds[i]``.

    The first point is (0, 0) with threshold ``+inf``.

    Attributes
    ----------
    fpr : ndarray of shape (P,), float64
        False-positive rate (fraction of normal items flagged), non-decreasing, in [0, 1].
    tpr : ndarray of shape (P,), float64
        True-positive rate (fraction of anomalous items flagged), non-decreasing, in [0, 1].
    thresholds : ndarray of shape (P,), float64
        Score thresholds, descending; ``thresholds[0] == inf``.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


class IoUResult(NamedTuple):
    """Best IoU ``TP / (TP + FP + FN)`` and its threshold (anomalous iff ``score >= threshold``).

    Attributes
    ----------
    iou : float
        IoU in [0, 1].
    threshold : float
        The score threshold, in score units.
    """

    iou: float
    threshold: float


class F1Result(NamedTuple):
    """F1 at ``threshold`` with its precision and recall (see module doc for the >=/> rule).

    Attributes
    ----------
    f1 : float
        F1 score in [0, 1].
    threshold : float
        The score threshold, in score units.
    precision, recall : float
        Precision and recall at that threshold, in [0, 1].
    """

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


class BinaryCounts(NamedTuple):
    """Counts at every distinct threshold, descending (``sklearn.metrics._ranking._binary_clf_curve``).

    ``tp[i]`` / ``fp[i]``: anomalous / normal items with ``score >= thresholds[i]``; ``n_pos``,
    ``n_neg``: all anomalous / normal items. The one helper behind every curve and threshold
    metric of this module (ROC, F1, IoU, average precision).
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_pos: int
    n_neg: int


def binary_counts(pool: PixelPool, *, anomalous_only: bool = False) -> BinaryCounts:
    """:class:`BinaryCounts` of ``pool`` at every distinct score (descending).

    ``anomalous_only``: only the distinct scores of anomalous items, where recall changes; enough
    for F1, IoU and average precision, which never peak or step at a threshold that adds only
    normal items (``tp`` stays, ``fp`` grows).
    """
    thr = np.unique(pool.pos if anomalous_only else np.concatenate([pool.neg, pool.pos]))[::-1]
    tp = pool.n_pos - np.searchsorted(pool.pos, thr, side="left")
    return BinaryCounts(thr, tp, pool.count_neg_ge(thr), pool.n_pos, pool.n_neg)


def roc_from_pool(pool: PixelPool, max_points: int | None = None) -> ROCCurve:
    c = binary_counts(pool)
    curve = ROCCurve(np.concatenate([[0.0], c.fp / c.n_neg]), np.concatenate([[0.0], c.tp / c.n_pos]),
                     np.concatenate([[np.inf], c.thresholds.astype(np.float64)]))
    return thin_curve(curve, max_points)


def thin_curve(curve: Any, max_points: int | None) -> Any:
    """At most ``max_points`` evenly spaced points of a curve (first and last kept), for plots and files.

    Parameters
    ----------
    curve : NamedTuple of equally long 1-D arrays
        E.g. a :class:`ROCCurve` or a ``PROCurve``.
    max_points : int or None
        Most points kept (>= 2); ``None``: the curve unchanged.

    Returns
    -------
    NamedTuple
        Same type as ``curve``, arrays indexed by ``unique(round(linspace(0, P - 1, max_points)))``.

    Raises
    ------
    ValueError
        If ``max_points < 2`` and the curve is longer.
    """
    n = curve[0].size
    if max_points is None or n <= max_points:
        return curve
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.intp))
    return type(curve)(*(a[idx] for a in curve))


def f1_best_from_pool(pool: PixelPool) -> F1Result:
    c = binary_counts(pool, anomalous_only=True)
    f1 = 2.0 * c.tp / (c.tp + c.fp + c.n_pos)
    i = int(np.argmax(f1))  # thresholds descend: the first maximum is the largest threshold
    return F1Result(float(f1[i]), float(c.thresholds[i]), float(c.tp[i] / (c.tp[i] + c.fp[i])),
                    float(c.tp[i] / c.n_pos))


def iou_best_from_pool(pool: PixelPool) -> IoUResult:
    """IoU = TP / (TP + FP + FN) = tp / (fp + n_pos), maximised over thresholds."""
    c = binary_counts(pool, anomalous_only=True)
    iou = c.tp / (c.fp + c.n_pos)
    i = int(np.argmax(iou))
    return IoUResult(float(iou[i]), float(c.thresholds[i]))


def ap_from_pool(pool: PixelPool) -> float:
    """Step-wise average precision ``sum_i (R_i - R_{i-1}) P_i`` (``sklearn.metrics.average_precision_score``)."""
    c = binary_counts(pool, anomalous_only=True)
    new_tp = np.diff(c.tp, prepend=0)  # recall step = new_tp / n_pos (summed first: a perfect ranking gives 1.0)
    # math.fsum, not a BLAS dot: correctly rounded, so the same value on every CPU
    return math.fsum(new_tp * (c.tp / (c.tp + c.fp))) / c.n_pos


def f1_gt_from_pool(pool: PixelPool, threshold: float) -> F1Result:
    """F1 when anomalous iff ``score > threshold`` (exact comparison against the float64 value)."""
    t = floor_to_dtype(threshold, pool.dtype)
    tp = int(pool.n_pos - np.searchsorted(pool.pos, t, side="right"))
    fp = int(pool.count_neg_gt(t))
    precision = tp / (tp + fp) if tp + fp else 0.0
    return F1Result(2.0 * tp / (tp + fp + pool.n_pos), float(threshold), precision, tp / pool.n_pos)


def val_threshold(val_scores: Any, quantile: float = 1.0) -> float:
    """Threshold from normal validation data: the ``quantile`` of all their scores.

    Parameters
    ----------
    val_scores : array-like of any shape, or list of arrays
        Scores (or maps) of **normal** validation images; all values are pooled.
    quantile : float, default=1.0
        In [0, 1], ``numpy.quantile`` with linear interpolation; 1.0 is the maximum.

    Returns
    -------
    float
        The threshold, in score units.

    Examples
    --------
    >>> from stfpm_lib.metrics import val_threshold
    >>> val_threshold([0.2, 0.5, 0.3])
    0.5
    >>> round(val_threshold([0.2, 0.5, 0.3], quantile=0.5), 6)
    0.3
    """
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
    """Image scores: the maximum of each anomaly map.

    Parameters
    ----------
    maps : array-like of shape (N, H, W), or list of N 2-D arrays
        Anomaly maps (NumPy or torch); ``(N, 1, H, W)`` is squeezed.

    Returns
    -------
    ndarray of shape (N,)
        float32 for float16/float32 maps, else float64.

    Examples
    --------
    >>> import numpy as np
    >>> from stfpm_lib.metrics import image_scores
    >>> maps = np.array([[[0.1, 0.2], [0.3, 0.0]], [[0.9, 0.5], [0.4, 0.6]]])
    >>> image_scores(maps).tolist()
    [0.3, 0.9]
    """
    maps_l = as_image_list(maps, "maps")
    check_finite_maps(maps_l)
    return np.array([m.max() for m in maps_l], dtype=score_dtype(maps_l))


@shared_doc
def image_auroc(scores: Any, labels: Any) -> float:
    """Image-level AUROC (equal to ``sklearn.metrics.roc_auc_score``; ties count half).

    Parameters
    ----------
    {image_inputs}

    Returns
    -------
    float
        Area under the ROC curve in [0, 1]; 1.0 = perfect ranking, 0.5 = chance.

    Raises
    ------
    UndefinedMetricError
        If only one class is present.

    Examples
    --------
    Of the 2 x 2 (anomalous, normal) pairs, 3 are ranked correctly:

    >>> from stfpm_lib.metrics import image_auroc
    >>> image_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    >>> image_auroc([0.1, 0.2, 0.7, 0.8], [0, 0, 1, 1])  # perfect detector
    1.0
    """
    return auroc_from_pool(_image_pool(scores, labels))


@shared_doc
def roc_curve(scores: Any, labels: Any) -> ROCCurve:
    """Exact image-level ROC curve, one point per distinct score.

    Parameters
    ----------
    {image_inputs}

    Returns
    -------
    ROCCurve
        ``fpr``, ``tpr``, ``thresholds`` of shape (P,), P = distinct scores + 1.

    Examples
    --------
    >>> from stfpm_lib.metrics import roc_curve
    >>> c = roc_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> c.fpr.tolist(), c.tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    >>> c.thresholds.tolist()
    [inf, 0.8, 0.4, 0.35, 0.1]
    """
    return roc_from_pool(_image_pool(scores, labels))


@shared_doc
def image_f1_best(scores: Any, labels: Any) -> F1Result:
    """Best image F1 over all thresholds (oracle threshold; anomalous iff ``score >= threshold``).

    Parameters
    ----------
    {image_inputs}

    Returns
    -------
    F1Result
        The best F1, its threshold (the largest among ties), precision and recall.

    Examples
    --------
    At threshold 0.35 both anomalous images and one normal one are flagged:
    F1 = 2 * 2 / (2 + 1 + 2) = 0.8.

    >>> from stfpm_lib.metrics import image_f1_best
    >>> r = image_f1_best([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> round(r.f1, 4), r.threshold, round(r.precision, 4), r.recall
    (0.8, 0.35, 0.6667, 1.0)
    """
    return f1_best_from_pool(_image_pool(scores, labels))


def image_f1_val(scores: Any, labels: Any, val_scores: Any, quantile: float = 1.0) -> F1Result:
    """Image F1 at a threshold chosen on normal validation images only.

    Parameters
    ----------
    scores : array-like of shape (N,), or maps of shape (N, H, W)
        Test image scores; maps are reduced by their max.
    labels : array-like of shape (N,)
        1 = anomalous, 0 = normal.
    val_scores : array-like of shape (M,), or maps of shape (M, H, W)
        Scores (or maps, reduced by max) of **normal** validation images.
    quantile : float, default=1.0
        Threshold = this quantile of ``val_scores`` (1.0: their maximum).

    Returns
    -------
    F1Result
        F1, threshold, precision and recall; a test image is anomalous iff ``score > threshold``.

    Examples
    --------
    The threshold is the validation maximum 0.3; 0.35, 0.4 and 0.8 exceed it (tp 2, fp 1):

    >>> from stfpm_lib.metrics import image_f1_val
    >>> r = image_f1_val([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], val_scores=[0.2, 0.3])
    >>> round(r.f1, 4), r.threshold
    (0.8, 0.3)
    """
    return f1_gt_from_pool(_image_pool(scores, labels), val_threshold(as_scores(val_scores, "val_scores"), quantile))


@shared_doc
def image_ap(scores: Any, labels: Any) -> float:
    """Image-level average precision (AUPR), equal to ``sklearn.metrics.average_precision_score``.

    The step-wise sum ``AP = sum_i (R_i - R_{i-1}) P_i`` over the distinct thresholds in
    descending order (anomalous iff ``score >= threshold``; tied items enter together), not the
    trapezoid under the PR curve.

    Parameters
    ----------
    {image_inputs}

    Returns
    -------
    float
        AP in [0, 1]; 1.0 = perfect ranking, about the anomalous fraction for chance.

    Raises
    ------
    UndefinedMetricError
        If only one class is present.

    Examples
    --------
    Recall 1/2 at precision 1 (0.8), then recall 1 at precision 2/3 (0.35, after 0.4):

    >>> from stfpm_lib.metrics import image_ap
    >>> round(image_ap([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]), 6)  # 0.5 * 1 + 0.5 * 2/3
    0.833333
    >>> image_ap([0.1, 0.2, 0.7, 0.8], [0, 0, 1, 1])  # perfect detector
    1.0
    """
    return ap_from_pool(_image_pool(scores, labels))


# ----------------------------------------------------------------------------------- pixel level
@shared_doc
def pixel_auroc(
    maps: Any, masks: Any, *, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False
) -> float:
    """Pixel-level AUROC over all pixels of all images pooled.

    Parameters
    ----------
    {pixel_inputs}
    {mask_options}

    Returns
    -------
    float
        Area under the pixel ROC curve in [0, 1].

    Raises
    ------
    UndefinedMetricError
        If there are no defect pixels or no normal pixels.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pixel_auroc
    >>> pixel_auroc(maps, masks)  # 3 of the 4 (defect, normal) pixel pairs are ordered right
    0.75
    >>> pixel_auroc(masks.astype(float), masks)  # perfect detector
    1.0
    """
    return auroc_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps))


@shared_doc
def pixel_roc_curve(
    maps: Any,
    masks: Any,
    *,
    max_points: int | None = 10_000,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> ROCCurve:
    """Exact pixel-level ROC curve, thinned for plotting.

    Parameters
    ----------
    {pixel_inputs}
    max_points : int or None, default=10_000
        Keep at most this many evenly spaced curve points (``None``: one per distinct score).
    {mask_options}

    Returns
    -------
    ROCCurve
        ``fpr``, ``tpr``, ``thresholds`` (descending, starting at ``inf``).

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pixel_roc_curve
    >>> c = pixel_roc_curve(maps, masks)
    >>> c.fpr.tolist(), c.tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    pool = build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps)
    return roc_from_pool(pool, max_points)


@shared_doc
def pixel_f1_best(
    maps: Any, masks: Any, *, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False
) -> F1Result:
    """Best pixel F1 over all thresholds (oracle threshold; defect iff ``score >= threshold``).

    Parameters
    ----------
    {pixel_inputs}
    {mask_options}

    Returns
    -------
    F1Result
        The best F1, its threshold (the largest among ties), precision and recall.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pixel_f1_best
    >>> r = pixel_f1_best(maps, masks)  # at 0.4: tp 2, fp 1, F1 = 4 / 5
    >>> round(r.f1, 4), r.threshold, r.recall
    (0.8, 0.4, 1.0)
    """
    return f1_best_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps))


@shared_doc
def pixel_f1_val(
    maps: Any,
    masks: Any,
    val_maps: Any,
    quantile: float = 1.0,
    *,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> F1Result:
    """Pixel F1 at a threshold chosen on the pixels of normal validation maps only.

    Parameters
    ----------
    {pixel_inputs}
    val_maps : array-like of shape (M, H', W'), or list of 2-D arrays
        Maps of **normal** validation images, used at their own resolution.
    quantile : float, default=1.0
        Threshold = this quantile of all validation pixels (1.0: their maximum).
    {mask_options}

    Returns
    -------
    F1Result
        F1, threshold, precision and recall; a pixel is a defect iff ``score > threshold``.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pixel_f1_val
    >>> val_maps = np.array([[[0.5, 0.2], [0.1, 0.3]]])
    >>> r = pixel_f1_val(maps, masks, val_maps)  # threshold 0.5: tp 1 (0.9), fp 1 (0.6)
    >>> round(r.f1, 4), r.threshold, r.precision, r.recall
    (0.5, 0.5, 0.5, 0.5)
    """
    t = val_threshold(val_maps, quantile)
    return f1_gt_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps), t)


_PIXEL_OPTIONS = {"mask_binarization": Options(MASK_BINARIZATIONS), "resize_maps": Options((False, True))}


@validate_params(_PIXEL_OPTIONS)
@shared_doc
def pixel_ap(
    maps: Any, masks: Any, *, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False
) -> float:
    """Pixel-level average precision (AUPR) over all pixels pooled (``average_precision_score``).

    The step-wise sum ``AP = sum_i (R_i - R_{i-1}) P_i`` over the distinct pixel scores in
    descending order (see :func:`image_ap`).

    Parameters
    ----------
    {pixel_inputs}
    {mask_options}

    Returns
    -------
    float
        AP in [0, 1]; a random detector scores about the fraction of defect pixels.

    Raises
    ------
    UndefinedMetricError
        If there are no defect pixels or no normal pixels.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pixel_ap
    >>> round(pixel_ap(maps, masks), 6)  # 0.9: P 1, R 1/2; 0.4 (after 0.6): P 2/3, R 1
    0.833333
    >>> pixel_ap(masks.astype(float), masks)  # perfect detector
    1.0
    """
    return ap_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps))


@validate_params(_PIXEL_OPTIONS)
@shared_doc
def pixel_iou_best(
    maps: Any, masks: Any, *, mask_binarization: MaskBinarization = "gt0", resize_maps: bool = False
) -> IoUResult:
    """Best pixel IoU over all thresholds ("IoU-max"; oracle threshold, defect iff ``score >= threshold``).

    IoU = TP / (TP + FP + FN) of all pixels pooled (one intersection over union of the whole
    set, not a mean over images). Since F1 = 2 IoU / (1 + IoU) at every threshold, the best IoU
    is ``F1 / (2 - F1)`` of :func:`pixel_f1_best` and sits at the same threshold.

    Parameters
    ----------
    {pixel_inputs}
    {mask_options}

    Returns
    -------
    IoUResult
        The best IoU and its threshold (the largest among ties).

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pixel_iou_best
    >>> r = pixel_iou_best(maps, masks)  # at 0.4: tp 2, fp 1, fn 0 -> 2 / 3
    >>> round(r.iou, 6), r.threshold
    (0.666667, 0.4)
    """
    return iou_best_from_pool(build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps))
