"""Bootstrap confidence intervals over test images, and paired comparisons of two variants.

Pure NumPy (no torch, no config). Everything works on :class:`PerImage`, a run's per-image
summary (image scores, labels, names, and per-image histograms of the pixel scores), so a study
can bootstrap and pair runs without their anomaly maps::

    a = per_image_stats(maps_a, masks_a, names=names)          # or read per_image.npz
    ci = bootstrap_ci(a, n_resamples=1000, seed=0)["pixel_ap"]  # ci.low, ci.estimate, ci.high
    d = paired_bootstrap(a, b, seed=0)["image_auroc"]           # d.difference, d.low, d.high, d.p_value
    s = seed_comparison([0.95, 0.96, 0.94], [0.93, 0.95, 0.92]) # over seeds: mean, std, p_value

**Resampling.** A resample draws whole test images with replacement, stratified by label by
default (normal images among the normal ones, anomalous among the anomalous, so every resample
has both classes and the same class balance as the test set). A resample is a weight vector
``W (N,)`` (how often each image was drawn); for several runs on the same test images (seeds,
or the two variants of a paired comparison) the same ``W`` is used for all of them.

**Metrics** (names as in ``metrics.json``): image level :data:`IMAGE_METRICS` (``image_auroc``,
``image_ap``, ``image_f1`` = F1-max), pixel level :data:`PIXEL_METRICS` (``pixel_auroc``,
``pixel_ap``, ``pixel_f1`` = F1-max, ``pixel_iou`` = IoU-max, ``au_pro`` = MVTec AU-PRO up to
``fpr_limit``). Every metric is computed from counts per score bin: summing the per-image
histograms weighted by ``W`` replaces re-sorting the pixels.

* Image metrics are **exact**: the bins are the distinct image scores (ties are real ties), so
  the estimate equals :func:`~stfpm_lib.metrics.image_auroc` etc.
* Pixel metrics are **binned (an approximation)**: the pixel scores of each image are counted in
  ``n_bins`` bins on one set of edges per run (``n_bins / 2`` order statistics of the normal pixel
  scores and ``n_bins / 2`` of the defect pixel scores, both classes' minimum and maximum
  included, so both classes are resolved and a perfect separation stays perfect). All pixels of
  a bin count as tied: AUROC gives them half credit, AP / F1 / IoU thresholds sit at bin edges
  only, the PRO curve is linear inside a bin. With 2048 bins the full-sample binned values differ
  from the exact ones by less than 1e-3 on the test data (tests/unit/test_bootstrap.py); the
  exact values belong in ``metrics.json``, the binned ones only drive the intervals.

**Intervals and p-values.** Percentile intervals (``confidence`` = 0.95: the 2.5 % and 97.5 %
quantiles of the resample values, ``numpy.quantile`` linear). The paired bootstrap resamples the
difference ``a - b`` on the same images; its two-sided p-value is
``min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (R + 1))``, the smallest ``1 - confidence``
at which the percentile interval of the difference would exclude 0 (identical runs: 1).
:func:`seed_comparison` pairs runs over seeds: mean and std (ddof=1) of the per-seed differences
and an exact sign-flip permutation p-value (all ``2^n`` sign patterns for n <= 16 seeds, else
100 000 random ones, seed 0); with n seeds the smallest possible p-value is ``2 / 2^n`` (n >= 6
is needed for p < 0.05).
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._pool import build_pool, region_weights
from ._validation import (
    MASK_BINARIZATIONS,
    Interval,
    MaskBinarization,
    Options,
    as_image_list,
    as_labels,
    as_scores,
    binarize,
    validate_params,
)
from .roc import image_scores

__all__ = [
    "IMAGE_METRICS", "PIXEL_METRICS", "BOOTSTRAP_METRICS", "PerImage", "BootstrapCI", "PairedDifference",
    "SeedComparison", "per_image_stats", "resample_weights", "resample_values", "percentile_ci",
    "bootstrap_p_value", "bootstrap_ci", "paired_bootstrap", "seed_comparison",
]

IMAGE_METRICS = ("image_auroc", "image_ap", "image_f1")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "pixel_f1", "pixel_iou", "au_pro")
BOOTSTRAP_METRICS = IMAGE_METRICS + PIXEL_METRICS
_CHUNK = 128  # resamples per block: bounds the (block, n_bins) temporaries
_EXACT_FLIPS = 16
_COMMON = {"n_resamples": Interval(numbers.Integral, 1, None), "confidence": Interval(numbers.Real, 0, 1, "neither"),
           "stratify": Options((False, True))}


# ================================================================================ per-image data
@dataclass(frozen=True)
class PerImage:
    """One run's test images, summarised for the bootstrap (no maps).

    Attributes
    ----------
    names : ndarray of shape (N,), str
        Image identifiers, unique; runs are paired by them.
    labels : ndarray of shape (N,), bool
        True = anomalous.
    defect_types : ndarray of shape (N,), str
    scores : ndarray of shape (N,), float64
        Image anomaly scores.
    bin_edges : ndarray of shape (K,), float64
        Left edges, ascending; bin ``k`` holds scores in ``[bin_edges[k], bin_edges[k + 1])``, the
        last bin everything from ``bin_edges[-1]`` up.
    hist_normal, hist_defect : ndarray of shape (N, K), int64
        Normal / defect pixels of each image per bin.
    hist_defect_weight : ndarray of shape (N, K), float64
        Per bin, the sum over defect pixels of ``1 / |region|`` (8-connected region of the pixel).
    n_regions : ndarray of shape (N,), int64
        Ground-truth regions per image.
    fpr_limit : float
        FPR limit of ``au_pro``.
    """

    names: np.ndarray
    labels: np.ndarray
    defect_types: np.ndarray
    scores: np.ndarray
    bin_edges: np.ndarray
    hist_normal: np.ndarray
    hist_defect: np.ndarray
    hist_defect_weight: np.ndarray
    n_regions: np.ndarray
    fpr_limit: float = 0.3

    def __post_init__(self) -> None:
        n, k = len(self.names), len(self.bin_edges)
        for name in ("labels", "defect_types", "scores", "n_regions"):
            if np.shape(getattr(self, name)) != (n,):
                raise ValueError(f"PerImage.{name} must have shape ({n},); got {np.shape(getattr(self, name))}")
        for name in ("hist_normal", "hist_defect", "hist_defect_weight"):
            if np.shape(getattr(self, name)) != (n, k):
                raise ValueError(f"PerImage.{name} must have shape ({n}, {k}); got {np.shape(getattr(self, name))}")
        if len(set(self.names.tolist())) != n:
            raise ValueError("PerImage.names must be unique")
        if k == 0 or np.any(np.diff(self.bin_edges) <= 0):
            raise ValueError("PerImage.bin_edges must be non-empty and strictly increasing")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for ``numpy.savez``); :meth:`from_arrays` reads them back."""
        return {f: np.asarray(getattr(self, f)) for f in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> PerImage:
        """The inverse of :meth:`to_arrays`; raises ``KeyError`` naming a missing array."""
        missing = [f for f in cls.__dataclass_fields__ if f not in arrays]
        if missing:
            raise KeyError(f"missing array(s) {missing}")
        a = {f: np.asarray(arrays[f]) for f in cls.__dataclass_fields__}
        return cls(names=a["names"].astype(str), labels=a["labels"].astype(bool),
                   defect_types=a["defect_types"].astype(str), scores=a["scores"].astype(np.float64),
                   bin_edges=a["bin_edges"].astype(np.float64), hist_normal=a["hist_normal"].astype(np.int64),
                   hist_defect=a["hist_defect"].astype(np.int64),
                   hist_defect_weight=a["hist_defect_weight"].astype(np.float64),
                   n_regions=a["n_regions"].astype(np.int64), fpr_limit=float(a["fpr_limit"]))

    def select(self, names: Sequence[str]) -> PerImage:
        """The images ``names`` in that order; ``KeyError`` naming the first one missing."""
        where = {n: i for i, n in enumerate(self.names.tolist())}
        absent = [n for n in names if n not in where]
        if absent:
            raise KeyError(f"image {absent[0]!r} (and {len(absent) - 1} more) not in this run")
        idx = np.array([where[n] for n in names], dtype=np.intp)
        per_image = ("names", "labels", "defect_types", "scores", "hist_normal", "hist_defect",
                     "hist_defect_weight", "n_regions")
        return PerImage(**{f: getattr(self, f)[idx] for f in per_image}, bin_edges=self.bin_edges,
                        fpr_limit=self.fpr_limit)


def _edges(neg: np.ndarray, pos: np.ndarray, n_bins: int) -> np.ndarray:
    """Left bin edges: order statistics of both sorted classes (incl. their min and max), merged."""
    parts = [v[np.unique(np.linspace(0, v.size - 1, max(n_bins // 2, 2)).round().astype(np.intp))]
             for v in (neg, pos) if v.size]
    return np.unique(np.concatenate(parts).astype(np.float64))


@validate_params({"n_bins": Interval(numbers.Integral, 2, None), "fpr_limit": Interval(numbers.Real, 0, 1, "right"),
                  "mask_binarization": Options(MASK_BINARIZATIONS)})
def per_image_stats(maps: Any, masks: Any, scores: Any = None, labels: Any = None, *, names: Sequence[str] | None = None,
                    defect_types: Sequence[str] | None = None, n_bins: int = 2048, fpr_limit: float = 0.3,
                    mask_binarization: MaskBinarization = "gt0") -> PerImage:
    """Summarise one run's test maps for the bootstrap (see the module doc for the binning).

    Parameters
    ----------
    maps : array-like of shape (N, H, W), or list of N 2-D arrays
        Anomaly maps, float; higher = more anomalous.
    masks : array-like of shape (N, H, W), or list of N 2-D arrays
        Ground truth at map resolution, binarised by ``mask_binarization``.
    scores : array-like of shape (N,), optional
        Image scores; default: the max of each map.
    labels : array-like of shape (N,), optional
        1 = anomalous; default: the mask has a defect pixel.
    names : sequence of N str, optional
        Unique image identifiers (default ``"0"``, ``"1"``, ...).
    defect_types : sequence of N str, optional
        Default: ``"good"`` for normal images, ``"defect"`` for anomalous ones.
    n_bins : int, default=2048
        Bins of the pixel-score histograms (fewer when scores repeat).
    fpr_limit : float, default=0.3
        FPR limit of ``au_pro``, in (0, 1].
    mask_binarization : {"gt0", "gt0.5"}, default="gt0"
        Defect iff ``mask > 0`` or ``mask > 0.5``.

    Returns
    -------
    PerImage

    Examples
    --------
    >>> import numpy as np
    >>> from stfpm_lib.metrics.bootstrap import per_image_stats
    >>> maps = np.array([[[0.1, 0.2], [0.3, 0.2]], [[0.1, 0.9], [0.6, 0.4]]])
    >>> masks = np.array([[[0, 0], [0, 0]], [[0, 1], [0, 1]]])
    >>> p = per_image_stats(maps, masks)
    >>> p.bin_edges.tolist()
    [0.1, 0.2, 0.3, 0.4, 0.6, 0.9]
    >>> p.hist_normal.tolist(), p.hist_defect.tolist()
    ([[1, 2, 1, 0, 0, 0], [1, 0, 0, 0, 1, 0]], [[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 1]])
    """
    map_list, mask_list = as_image_list(maps, "maps"), as_image_list(masks, "masks")
    pool = build_pool(map_list, mask_list, mask_binarization=mask_binarization)
    edges = _edges(pool.neg, pool.pos, n_bins)
    del pool
    n, k = len(map_list), edges.size
    hist_n, hist_d = np.zeros((n, k), np.int64), np.zeros((n, k), np.int64)
    hist_w, n_regions = np.zeros((n, k), np.float64), np.zeros(n, np.int64)
    for i, (m, mask) in enumerate(zip(map_list, mask_list)):
        d = binarize(mask, mask_binarization)
        b = np.searchsorted(edges, m, side="right") - 1
        hist_n[i] = np.bincount(b[~d], minlength=k)
        if d.any():
            w, n_regions[i] = region_weights(d)
            hist_d[i] = np.bincount(b[d], minlength=k)
            hist_w[i] = np.bincount(b[d], weights=w, minlength=k)
    s = image_scores(map_list) if scores is None else as_scores(scores)
    y = (n_regions > 0) if labels is None else as_labels(labels, n)
    names_a = np.array([str(i) for i in range(n)] if names is None else [str(v) for v in names])
    types = np.where(y, "defect", "good") if defect_types is None else np.array([str(t) for t in defect_types])
    return PerImage(names_a, y, types, s.astype(np.float64), edges, hist_n, hist_d, hist_w, n_regions, float(fpr_limit))


# ================================================================================ resampling
def resample_weights(labels: Any, n_resamples: int, seed: int | Sequence[int], stratify: bool = True) -> np.ndarray:
    """How often each image is drawn in each resample, ``(n_resamples, N)`` float64.

    Parameters
    ----------
    labels : array-like of shape (N,)
        1 = anomalous; used for the stratification.
    n_resamples : int
        Number of resamples R.
    seed : int or sequence of int
        ``numpy.random.default_rng`` seed; the same seed gives the same resamples.
    stratify : bool, default=True
        Draw normal and anomalous images separately (each row keeps the class counts).

    Returns
    -------
    ndarray of shape (R, N)
        Row sums are N; with ``stratify`` the normal / anomalous parts sum to their counts.

    Examples
    --------
    >>> from stfpm_lib.metrics.bootstrap import resample_weights
    >>> w = resample_weights([0, 0, 1, 1, 1], 4, seed=0)
    >>> w.shape, w[:, :2].sum(axis=1).tolist(), w[:, 2:].sum(axis=1).tolist()
    ((4, 5), [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0])
    """
    y = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(~y), np.flatnonzero(y)] if stratify else [np.arange(y.size)]
    weights = np.zeros((n_resamples, y.size), np.float64)
    rows = np.arange(n_resamples)[:, None]
    for g in groups:
        if g.size:
            np.add.at(weights, (rows, g[rng.integers(0, g.size, (n_resamples, g.size))]), 1.0)
    return weights


def _image_counts(p: PerImage) -> tuple[np.ndarray, np.ndarray]:
    """One bin per distinct image score: ``(normal (N, U), anomalous (N, U))`` one-hot counts."""
    _, inv = np.unique(p.scores, return_inverse=True)
    onehot = np.zeros((p.scores.size, inv.max() + 1), np.float64)
    onehot[np.arange(p.scores.size), inv] = 1.0
    return onehot * ~p.labels[:, None], onehot * p.labels[:, None]


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> np.ndarray:
    """Row-wise trapezoid area under (x, y) for x in [0, limit], x non-decreasing, cut by interpolation."""
    x0, x1, y0, y1 = x[:, :-1], x[:, 1:], y[:, :-1], y[:, 1:]
    xe = np.minimum(x1, limit)
    with np.errstate(invalid="ignore", divide="ignore"):
        ye = np.where(x1 > x0, y0 + (y1 - y0) * (xe - x0) / (x1 - x0), y0)
    return np.sum(np.where(x0 < limit, (xe - x0) * (y0 + ye) / 2, 0.0), axis=1)


def _binned_metrics(neg: np.ndarray, pos: np.ndarray, metrics: Sequence[str], weight: np.ndarray | None = None,
                    n_regions: np.ndarray | None = None, fpr_limit: float = 0.3) -> dict[str, np.ndarray]:
    """Metrics per row from counts per bin (rows = resamples, bins ascending; a bin's items are tied)."""
    neg_d, pos_d = neg[:, ::-1], pos[:, ::-1]  # thresholds descending: bin j and all above it are flagged
    fp, tp = np.cumsum(neg_d, axis=1), np.cumsum(pos_d, axis=1)
    n_neg, n_pos = fp[:, -1:], tp[:, -1:]
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name in metrics:
            kind = name.split("_", 1)[1] if name != "au_pro" else "au_pro"
            if kind == "auroc":
                out[name] = np.sum(pos_d * (n_neg - fp + neg_d / 2), axis=1) / (n_pos * n_neg)[:, 0]
            elif kind == "ap":
                precision = np.where(pos_d > 0, tp / np.maximum(tp + fp, 1), 0.0)
                out[name] = np.sum(pos_d * precision, axis=1) / n_pos[:, 0]
            elif kind == "f1":
                out[name] = np.max(2 * tp / (tp + fp + n_pos), axis=1)
            elif kind == "iou":
                out[name] = np.max(tp / (fp + n_pos), axis=1)
            elif kind == "au_pro":
                zero = np.zeros((neg.shape[0], 1))
                x = np.hstack([zero, fp / n_neg])
                y = np.minimum(np.hstack([zero, np.cumsum(weight[:, ::-1], axis=1) / n_regions[:, None]]), 1.0)
                out[name] = _area_up_to(x, y, fpr_limit) / fpr_limit
    return out


def _check_metrics(metrics: Sequence[str] | None) -> tuple[str, ...]:
    chosen = BOOTSTRAP_METRICS if metrics is None else tuple(metrics)
    bad = [m for m in chosen if m not in BOOTSTRAP_METRICS]
    if bad:
        raise ValueError(f"unknown bootstrap metric(s) {bad}; choose from {list(BOOTSTRAP_METRICS)}")
    return chosen


def _aligned(runs: PerImage | Sequence[PerImage]) -> list[PerImage]:
    """Runs on the same test images, each in the image order of the first; ValueError otherwise."""
    runs = [runs] if isinstance(runs, PerImage) else list(runs)
    if not runs:
        raise ValueError("need at least one PerImage")
    names = runs[0].names.tolist()
    out = [runs[0]]
    for i, r in enumerate(runs[1:], 1):
        if set(r.names.tolist()) != set(names):
            raise ValueError(f"run {i} has other test images than run 0 ({len(set(r.names.tolist()) ^ set(names))} "
                             "names differ): a bootstrap over images needs the same images in every run")
        r = r.select(names)
        if not np.array_equal(r.labels, runs[0].labels):
            raise ValueError(f"run {i} labels the same images differently from run 0")
        out.append(r)
    return out


def resample_values(runs: PerImage | Sequence[PerImage], weights: np.ndarray,
                    metrics: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Each metric under each resample, averaged over ``runs`` (e.g. seeds on the same images).

    Parameters
    ----------
    runs : PerImage or sequence of PerImage
        Runs on the same test images (paired by ``names``, in the order of the first).
    weights : ndarray of shape (R, N)
        From :func:`resample_weights` (in the first run's image order); a row of ones gives the
        full-sample value.
    metrics : sequence of str, optional
        Names from :data:`BOOTSTRAP_METRICS` (default: all).

    Returns
    -------
    dict of str to ndarray of shape (R,)
        NaN where a resample leaves a metric undefined (no normal or anomalous item).

    Examples
    --------
    >>> import numpy as np
    >>> from stfpm_lib.metrics.bootstrap import per_image_stats, resample_values
    >>> maps = np.array([[[0.1, 0.2]], [[0.1, 0.9]], [[0.6, 0.4]]])
    >>> masks = np.array([[[0, 0]], [[0, 1]], [[0, 1]]])
    >>> p = per_image_stats(maps, masks)
    >>> v = resample_values(p, np.ones((1, 3)), ["image_auroc", "pixel_auroc"])
    >>> v["image_auroc"].tolist(), v["pixel_auroc"].tolist()  # 7 of 8 (defect, normal) pixel pairs
    ([1.0], [0.875])
    """
    chosen = _check_metrics(metrics)
    runs = _aligned(runs)
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 2 or weights.shape[1] != runs[0].names.size:
        raise ValueError(f"weights must have shape (R, {runs[0].names.size}); got {weights.shape}")
    image = [m for m in chosen if m in IMAGE_METRICS]
    pixel = [m for m in chosen if m in PIXEL_METRICS]
    total = {m: np.zeros(weights.shape[0]) for m in chosen}
    for run in runs:
        img_neg, img_pos = _image_counts(run)
        hists = [h.astype(np.float64) for h in (run.hist_normal, run.hist_defect, run.hist_defect_weight)]
        for start in range(0, weights.shape[0], _CHUNK):
            w = weights[start:start + _CHUNK]
            part = _binned_metrics(w @ img_neg, w @ img_pos, image) if image else {}
            if pixel:
                part.update(_binned_metrics(w @ hists[0], w @ hists[1], pixel, w @ hists[2],
                                            w @ run.n_regions.astype(np.float64), run.fpr_limit))
            for m in chosen:
                total[m][start:start + _CHUNK] += part[m]
    return {m: v / len(runs) for m, v in total.items()}


@validate_params({"confidence": Interval(numbers.Real, 0, 1, "neither")})
def percentile_ci(values: Any, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``values`` (NaN resamples ignored; NaN if all are).

    Parameters
    ----------
    values : array-like of shape (R,)
        Resample values of a metric.
    confidence : float, default=0.95
        Central coverage in (0, 1): the ``(1 - c) / 2`` and ``(1 + c) / 2`` quantiles.

    Returns
    -------
    (float, float)
        Lower and upper bound.

    Examples
    --------
    >>> from stfpm_lib.metrics.bootstrap import percentile_ci
    >>> percentile_ci(range(101), confidence=0.5)  # the 25 % and 75 % quantiles
    (25.0, 75.0)
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(v, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def bootstrap_p_value(differences: Any) -> float:
    """Two-sided p-value of a bootstrap distribution of differences against 0 (see module doc).

    Parameters
    ----------
    differences : array-like of shape (R,)
        Resample values of ``a - b`` (NaN ignored).

    Returns
    -------
    float
        ``min(1, 2 * min(#(d <= 0) + 1, #(d >= 0) + 1) / (R + 1))``; NaN without finite values.

    Examples
    --------
    >>> from stfpm_lib.metrics.bootstrap import bootstrap_p_value
    >>> bootstrap_p_value([0.0] * 99)  # no difference at all
    1.0
    >>> bootstrap_p_value([0.01] * 99)  # every resample favours a
    0.02
    """
    d = np.asarray(differences, np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    tail = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0)) + 1
    return float(min(1.0, 2.0 * tail / (d.size + 1)))


# ================================================================================ results
@dataclass(frozen=True)
class BootstrapCI:
    """A metric with its bootstrap interval.

    Attributes
    ----------
    metric : str
    estimate : float
        On all test images (exact for image metrics, binned for pixel metrics), mean over runs.
    low, high : float
        Percentile interval at ``confidence``.
    confidence : float
    n_resamples : int
    values : ndarray of shape (R,)
        The resample values.
    """

    metric: str
    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    values: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` of a metric on the same test images, with its paired bootstrap interval.

    Attributes
    ----------
    metric : str
    difference : float
        ``estimate(a) - estimate(b)`` on all test images.
    low, high : float
        Percentile interval of the resampled differences.
    p_value : float
        Two-sided, against no difference (:func:`bootstrap_p_value`).
    confidence : float
    n_resamples : int
    values : ndarray of shape (R,)
        The resampled differences.
    """

    metric: str
    difference: float
    low: float
    high: float
    p_value: float
    confidence: float
    n_resamples: int
    values: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class SeedComparison:
    """``a - b`` paired over seeds.

    Attributes
    ----------
    n : int
        Seeds with both values.
    mean, std : float
        Mean and standard deviation (ddof=1; NaN for n < 2) of the per-seed differences.
    p_value : float
        Exact sign-flip permutation p-value (two-sided; NaN for n = 0).
    noise : float
        ``2 * std``: the seed noise of the difference.
    exceeds_noise : bool
        ``|mean| > noise`` (False when n < 2: the noise is unknown).
    """

    n: int
    mean: float
    std: float
    p_value: float
    noise: float
    exceeds_noise: bool


# ================================================================================ entry points
@validate_params(_COMMON)
def bootstrap_ci(runs: PerImage | Sequence[PerImage], metrics: Sequence[str] | None = None, *,
                 n_resamples: int = 1000, confidence: float = 0.95, seed: int | Sequence[int] = 0,
                 stratify: bool = True) -> dict[str, BootstrapCI]:
    """Bootstrap confidence intervals over test images (see the module doc).

    Parameters
    ----------
    runs : PerImage or sequence of PerImage
        One run, or several on the same images (e.g. seeds): every resample draws the same
        images for all of them and averages the metric over them.
    metrics : sequence of str, optional
        Names from :data:`BOOTSTRAP_METRICS` (default: all).
    n_resamples : int, default=1000
        Number of resamples, >= 1.
    confidence : float, default=0.95
        Coverage of the percentile interval, in (0, 1).
    seed : int or sequence of int, default=0
        Seed of the resampling (same seed: same intervals).
    stratify : bool, default=True
        Resample normal and anomalous images separately.

    Returns
    -------
    dict of str to BootstrapCI

    Examples
    --------
    A perfect detector: every resample scores 1, so the interval is [1, 1]:

    >>> import numpy as np
    >>> from stfpm_lib.metrics.bootstrap import bootstrap_ci, per_image_stats
    >>> masks = np.zeros((6, 4, 4), bool)
    >>> masks[3:, 1:3, 1:3] = True
    >>> ci = bootstrap_ci(per_image_stats(masks * 1.0, masks), ["image_auroc", "pixel_ap"], n_resamples=50)
    >>> [(c.low, c.estimate, c.high) for c in ci.values()]
    [(1.0, 1.0, 1.0), (1.0, 1.0, 1.0)]
    """
    chosen = _check_metrics(metrics)
    runs = _aligned(runs)
    full = resample_values(runs, np.ones((1, runs[0].names.size)), chosen)
    values = resample_values(runs, resample_weights(runs[0].labels, n_resamples, seed, stratify), chosen)
    return {m: BootstrapCI(m, float(full[m][0]), *percentile_ci(values[m], confidence), confidence, n_resamples,
                           values[m]) for m in chosen}


@validate_params(_COMMON)
def paired_bootstrap(a: PerImage | Sequence[PerImage], b: PerImage | Sequence[PerImage],
                     metrics: Sequence[str] | None = None, *, n_resamples: int = 1000, confidence: float = 0.95,
                     seed: int | Sequence[int] = 0, stratify: bool = True) -> dict[str, PairedDifference]:
    """Paired bootstrap of ``metric(a) - metric(b)``: both resampled with the same images.

    Parameters
    ----------
    a, b : PerImage or sequence of PerImage
        Two variants (each one run or several seeds) on the same test images (paired by name).
    metrics : sequence of str, optional
        Names from :data:`BOOTSTRAP_METRICS` (default: all).
    n_resamples : int, default=1000
        Number of resamples, >= 1.
    confidence : float, default=0.95
        Coverage of the interval of the difference, in (0, 1).
    seed : int or sequence of int, default=0
        Seed of the resampling.
    stratify : bool, default=True
        Resample normal and anomalous images separately.

    Returns
    -------
    dict of str to PairedDifference

    Examples
    --------
    A run against itself: every resampled difference is 0, the interval [0, 0] and p = 1:

    >>> import numpy as np
    >>> from stfpm_lib.metrics.bootstrap import paired_bootstrap, per_image_stats
    >>> rng = np.random.default_rng(0)
    >>> masks = np.zeros((8, 4, 4), bool)
    >>> masks[4:, :2, :2] = True
    >>> p = per_image_stats(rng.random(masks.shape) + masks, masks)
    >>> d = paired_bootstrap(p, p, ["image_ap"], n_resamples=100)["image_ap"]
    >>> d.difference, d.low, d.high, d.p_value
    (0.0, 0.0, 0.0, 1.0)
    """
    chosen = _check_metrics(metrics)
    a_runs, b_runs = _aligned(a), _aligned(b)
    names = a_runs[0].names.tolist()
    b_runs = _aligned([a_runs[0], *b_runs])[1:]  # b in a's image order (same images required)
    weights = resample_weights(a_runs[0].labels, n_resamples, seed, stratify)
    ones = np.ones((1, len(names)))
    fa, fb = resample_values(a_runs, ones, chosen), resample_values(b_runs, ones, chosen)
    va, vb = resample_values(a_runs, weights, chosen), resample_values(b_runs, weights, chosen)
    out = {}
    for m in chosen:
        d = va[m] - vb[m]
        out[m] = PairedDifference(m, float(fa[m][0] - fb[m][0]), *percentile_ci(d, confidence),
                                  bootstrap_p_value(d), confidence, n_resamples, d)
    return out


def _sign_flip_p(d: np.ndarray) -> float:
    """Two-sided sign-flip p-value of mean(d) = 0: exact over all 2^n flips for n <= 16."""
    if d.size <= _EXACT_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(100_000, d.size))
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    return float(np.mean(np.abs(signs @ d / d.size) >= observed - tol))


def seed_comparison(a: Sequence[float], b: Sequence[float]) -> SeedComparison:
    """Compare two variants over seeds: ``d_s = a_s - b_s`` for each seed ``s``.

    Parameters
    ----------
    a, b : sequence of float
        A metric per seed, index ``s`` = the same seed in both (NaN pairs are dropped).

    Returns
    -------
    SeedComparison
        Mean and std of ``d``, the exact sign-flip p-value (the fraction of the ``2^n`` sign
        patterns ``e`` with ``|mean(e * d)| >= |mean(d)|``), ``noise = 2 * std`` and whether
        ``|mean| > noise``.

    Examples
    --------
    Three seeds, all better by about 0.01: consistent, yet 3 seeds cannot give p < 0.25:

    >>> from stfpm_lib.metrics.bootstrap import seed_comparison
    >>> s = seed_comparison([0.95, 0.96, 0.94], [0.94, 0.95, 0.925])
    >>> round(s.mean, 4), round(s.std, 4), s.p_value, s.exceeds_noise
    (0.0117, 0.0029, 0.25, True)
    """
    a_arr, b_arr = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length (one value per seed); got {a_arr.shape}, "
                         f"{b_arr.shape}")
    d = (a_arr - b_arr)[np.isfinite(a_arr) & np.isfinite(b_arr)]
    if d.size == 0:
        return SeedComparison(0, float("nan"), float("nan"), float("nan"), float("nan"), False)
    std = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    mean = float(d.mean())
    return SeedComparison(int(d.size), mean, std, _sign_flip_p(d), 2 * std, bool(d.size > 1 and abs(mean) > 2 * std))
