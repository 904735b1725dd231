"""Per-region overlap (PRO): the MVTec AU-PRO (exact) and the official STFPM code's PRO.

Two different numbers; report both, labelled:

* :func:`au_pro` — the **MVTec AD AU-PRO** (Bergmann et al.), the standard. Ground-truth
  regions are the 8-connected components of each mask, pooled over all images. The curve is
  exact: one point per distinct score (ties: only the last point of a run of equal scores),
  FPR over all normal pixels, PRO = mean over regions of the covered fraction. It is
  integrated with the trapezoid rule up to ``fpr_limit`` (linear interpolation of the end
  point) and divided by ``fpr_limit``. A random detector scores ≈ 0.15 at 0.3.
* :func:`official_pro` — what ``evaluate.py`` of the official STFPM code (adapted from DFR)
  computes. It is **not** the MVTec AU-PRO: 4000 grid thresholds, then the FPR and PRO values
  with FPR <= 0.3 are **both min-max rescaled to [0, 1]** before the trapezoid, which makes it
  ≈ AU-PRO / PRO(FPR=0.3) (a random detector scores ≈ 0.5).

Speed: each mask is labelled once; all pixels are pooled into sorted normal and defect scores
(:mod:`._pool`), and every curve point comes from a binary search, so there is no
per-threshold pass over the images.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np

from ._docs import shared_doc
from ._pool import PixelPool, build_pool
from ._validation import MaskBinarization, UndefinedMetricError

__all__ = ["PROCurve", "au_pro", "pro_curve", "official_pro", "official_pro_curve"]

OFFICIAL_MAX_STEPS = 4000


class PROCurve(NamedTuple):
    """PRO curve: ``pro[i]`` and ``fpr[i]`` for ``score >= thresholds[i]`` (MVTec, :func:`pro_curve`)
    or ``score > thresholds[i]`` (official grid, :func:`official_pro_curve`).

    Attributes
    ----------
    fpr : ndarray of shape (P,), float64
        False-positive rate over all normal pixels, in [0, 1].
    pro : ndarray of shape (P,), float64
        Per-region overlap: mean over all regions of the fraction flagged, in [0, 1].
    thresholds : ndarray of shape (P,), float64
        Score thresholds, descending.
    """

    fpr: np.ndarray
    pro: np.ndarray
    thresholds: np.ndarray


def _check_limit(fpr_limit: float) -> float:
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
    return limit


# ------------------------------------------------------------------------------- MVTec AU-PRO
def au_pro_from_pool(pool: PixelPool, fpr_limit: float = 0.3) -> float:
    """Exact MVTec AU-PRO from a pool built with ``components=True``.

    The curve is piecewise linear between consecutive distinct scores. A defect pixel with
    score s contributes ``w / K`` (``w = 1/|region|``) to PRO; along the curve its share ramps
    linearly from 0 to 1 while the FPR goes from ``a = FPR(> s)`` to ``b = FPR(>= s)`` (the
    segment of the score s; a step when no normal pixel ties with s), then stays at 1. The
    area up to L is therefore ``sum_d w_d/K * g(a_d, b_d)`` with

        g = 0                               if a >= L
        g = (b - a) / 2 + (L - b)           if b <= L
        g = (L - a)^2 / (2 (b - a))         otherwise (segment cut at L by interpolation),

    which equals the trapezoid over the exact curve with the interpolated end point.

    The sum is taken as the definition reads, region by region: ``g / L`` is averaged over the
    pixels of each region, then over the regions, each sum with :func:`math.fsum` (correctly
    rounded, so independent of the summation order, the BLAS kernel and the CPU). A perfect
    detector (every defect pixel above every normal one: ``g = L``) therefore scores exactly 1.
    """
    assert pool.pos_w is not None and pool.pos_region is not None
    limit = _check_limit(fpr_limit)
    n = pool.n_neg
    lt, le = pool.neg_below(pool.pos)
    a = (n - le) / n  # FPR of the pixels scoring > s
    b = (n - lt) / n  # ... and >= s
    g = np.zeros(a.shape, dtype=np.float64)
    full = b <= limit
    g[full] = (b[full] - a[full]) / 2 + (limit - b[full])
    cut = (a < limit) & ~full
    g[cut] = (limit - a[cut]) ** 2 / (2 * (b[cut] - a[cut]))
    return _mean_of_region_means(g / limit, pool.pos_region, pool.n_components)


def _mean_of_region_means(values: np.ndarray, regions: np.ndarray, n_regions: int) -> float:
    """``mean_r mean_{d in r} values[d]`` with every sum correctly rounded (:func:`math.fsum`).

    ``values`` and ``regions`` (region index 0 .. n_regions-1 of each pixel) are aligned; every
    region has at least one pixel.
    """
    order = np.argsort(regions, kind="stable")
    per_region = np.split(values[order], np.flatnonzero(np.diff(regions[order])) + 1)
    return math.fsum(math.fsum(v) / v.size for v in per_region) / n_regions


def pro_curve_from_pool(pool: PixelPool, fpr_limit: float = 0.3) -> PROCurve:
    """Exact MVTec PRO curve up to ``fpr_limit`` incl. the interpolated end point."""
    assert pool.pos_w is not None
    limit = _check_limit(fpr_limit)
    n = pool.n_neg
    # m = fewest normal pixels whose FPR exceeds the limit; the curve is needed down to the
    # m-th largest normal score u (the first point past the limit lies at u).
    m = int(np.floor(limit * n))
    while m <= n and m / n <= limit:
        m += 1
    cut = pool.neg[n - m] if m <= n else pool.neg[0]
    cand = np.concatenate([pool.neg[pool.neg >= cut], pool.pos[pool.pos >= cut]])
    thr = np.unique(cand)[::-1]
    cum_w = np.concatenate([[0.0], np.cumsum(pool.pos_w)])
    fpr = np.concatenate([[0.0], pool.count_neg_ge(thr) / n])
    pro = np.concatenate([[0.0], (cum_w[-1] - cum_w[np.searchsorted(pool.pos, thr, side="left")]) / pool.n_components])
    thr64 = np.concatenate([[np.inf], thr.astype(np.float64)])
    np.minimum(pro, 1.0, out=pro)
    keep = int(np.searchsorted(fpr, limit, side="right"))  # points with fpr <= limit
    if keep < fpr.size and fpr[keep - 1] < limit:
        x0, x1, y0, y1 = fpr[keep - 1], fpr[keep], pro[keep - 1], pro[keep]
        y = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        return PROCurve(
            np.append(fpr[:keep], limit), np.append(pro[:keep], y), np.append(thr64[:keep], thr64[keep])
        )
    return PROCurve(fpr[:keep], pro[:keep], thr64[:keep])


@shared_doc
def au_pro(
    maps: Any,
    masks: Any,
    fpr_limit: float = 0.3,
    *,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> float:
    """MVTec AD AU-PRO (exact curve, trapezoid up to ``fpr_limit``, divided by ``fpr_limit``).

    Parameters
    ----------
    {pixel_inputs}
    fpr_limit : float, default=0.3
        Upper FPR integration limit, in (0, 1].
    {mask_options}

    Returns
    -------
    float
        The normalised area in [0, 1]: 1.0 = perfect, ≈ 0.15 for a random detector at 0.3.

    Raises
    ------
    ValueError
        On bad input (shapes, counts, NaN/inf scores, ``fpr_limit``).
    UndefinedMetricError
        If there are no defect pixels or no normal pixels.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import au_pro
    >>> au_pro(masks.astype(float), masks)  # perfect detector
    1.0
    >>> round(au_pro(np.zeros((1, 2, 2)), masks), 6)  # constant map: diagonal, 0.3² / 2 / 0.3
    0.15

    With one region PRO equals the TPR, so the full-range AU-PRO is the pixel AUROC:

    >>> au_pro(maps, masks, fpr_limit=1.0)
    0.75
    """
    pool = build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps, components=True)
    return au_pro_from_pool(pool, fpr_limit)


@shared_doc
def pro_curve(
    maps: Any,
    masks: Any,
    fpr_limit: float = 0.3,
    *,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> PROCurve:
    """Exact MVTec PRO curve for plotting, up to ``fpr_limit``.

    The curve is (0, 0), then one point per distinct score (descending threshold) while
    FPR <= ``fpr_limit``, plus the interpolated point at ``fpr_limit`` (whose threshold is that
    of the next curve point), so ``trapz(pro, fpr) / fpr_limit == au_pro``.

    Parameters
    ----------
    {pixel_inputs}
    fpr_limit : float, default=0.3
        Last FPR of the curve, in (0, 1].
    {mask_options}

    Returns
    -------
    PROCurve
        ``fpr``, ``pro`` and ``thresholds`` (descending, starting at ``inf``).

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import pro_curve
    >>> c = pro_curve(maps, masks, fpr_limit=1.0)
    >>> c.fpr.tolist(), c.pro.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    >>> c.thresholds.tolist()
    [inf, 0.9, 0.6, 0.4, 0.1]
    """
    pool = build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps, components=True)
    return pro_curve_from_pool(pool, fpr_limit)


# --------------------------------------------------------------------- official STFPM/DFR PRO
def official_thresholds(lo: Any, hi: Any, max_steps: int, dtype: np.dtype) -> np.ndarray:
    """The official grid: ``t_s = max - s * delta`` for ``s = 0 .. max_steps-1``.

    Exact arithmetic (as the official code ran under NumPy < 1.24, which it requires):
    ``range = max - min`` in the score dtype, ``delta = range / max_steps`` and ``t_s`` in
    float64, then ``t_s`` cast to the score dtype, in which ``score > t_s`` is evaluated.

    Parameters
    ----------
    lo, hi : float
        The global minimum and maximum score.
    max_steps : int
        Number of thresholds (4000 in the official code).
    dtype : numpy.dtype
        The score dtype (float32 or float64).

    Returns
    -------
    ndarray of shape (max_steps,), dtype ``dtype``
        Thresholds, descending from ``hi``.

    Examples
    --------
    >>> import numpy as np
    >>> from stfpm_lib.metrics import official_thresholds
    >>> official_thresholds(0.0, 1.0, 4, np.dtype(np.float64)).tolist()
    [1.0, 0.75, 0.5, 0.25]
    """
    hi_d, lo_d = dtype.type(hi), dtype.type(lo)
    delta = float(hi_d - lo_d) / max_steps
    t = float(hi_d) - np.arange(max_steps, dtype=np.float64) * delta
    return t.astype(dtype)


def official_curve_from_pool(pool: PixelPool, max_steps: int = OFFICIAL_MAX_STEPS) -> PROCurve:
    assert pool.pos_w is not None
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1; got {max_steps}")
    lo, hi = min(pool.neg[0], pool.pos[0]), max(pool.neg[-1], pool.pos[-1])  # global min and max score
    t = official_thresholds(lo, hi, max_steps, pool.dtype)
    fpr = pool.count_neg_gt(t) / pool.n_neg
    cum_w = np.concatenate([[0.0], np.cumsum(pool.pos_w)])
    pro = (cum_w[-1] - cum_w[np.searchsorted(pool.pos, t, side="right")]) / pool.n_components
    return PROCurve(fpr, pro, t.astype(np.float64))


def _rescale(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x - x.min()) / (x.max() - x.min())


def official_pro_from_curve(curve: PROCurve, fpr_limit: float = 0.3) -> float:
    """Keep FPR <= limit, min-max rescale FPR and PRO, trapezoid (``sklearn.metrics.auc``)."""
    sel = curve.fpr <= fpr_limit
    if np.count_nonzero(sel) < 2:
        raise UndefinedMetricError(
            "official PRO: fewer than 2 grid thresholds have FPR <= fpr_limit, the official code would fail here"
        )
    x, y = _rescale(curve.fpr[sel]), _rescale(curve.pro[sel])
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        warnings.warn(
            "official PRO is NaN: the FPR (or PRO) is constant over the kept thresholds, e.g. a perfect "
            "separation where normal pixels never pass any grid threshold; the official code gives NaN too",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return math.fsum((y[1:] + y[:-1]) * np.diff(x)) / 2  # correctly rounded: the same on every CPU


@shared_doc
def official_pro(
    maps: Any,
    masks: Any,
    *,
    fpr_limit: float = 0.3,
    max_steps: int = OFFICIAL_MAX_STEPS,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> float:
    """The official STFPM code's PRO (``evaluate.py``, from DFR). **NOT the MVTec AU-PRO.**

    Algorithm (the official ``evaluate.py``; ``docs/metrics.md``), reproduced exactly but without relabelling per threshold:
    ``max_steps`` (4000) thresholds ``t_s = max - s * (max - min) / max_steps``, s = 0..max_steps-1
    (see :func:`official_thresholds` for the exact float arithmetic); a pixel is positive iff
    ``score > t_s``; 8-connected ground-truth regions per image; PRO(t) = mean over all regions of
    all images of the covered fraction; FPR(t) over all normal pixels of all images (normal images
    included); keep points with FPR <= ``fpr_limit``; **min-max rescale both FPR and PRO** to
    [0, 1]; area by the trapezoid rule. Roughly equals ``au_pro / PRO(FPR=fpr_limit)``.

    The official code evaluates 256² masks with ``mask_binarization="gt0"``; the DFR original
    used ``"gt0.5"`` and 20000 steps.

    Parameters
    ----------
    {pixel_inputs}
    fpr_limit : float, default=0.3
        Keep the grid points with FPR <= ``fpr_limit``.
    max_steps : int, default=4000
        Number of grid thresholds.
    {mask_options}

    Returns
    -------
    float
        The rescaled area in [0, 1] (≈ 0.5 for a random detector), or NaN (with a
        ``RuntimeWarning``) where the official formula divides 0 by 0, e.g. if no normal pixel
        passes any kept threshold.

    Raises
    ------
    UndefinedMetricError
        If fewer than 2 grid points have FPR <= ``fpr_limit``, or there are no defect or no
        normal pixels.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import official_pro

    With 4 steps the grid is 0.9, 0.7, 0.5, 0.3 (positive iff ``score > t``): FPR 0, 0, 0.5,
    0.5 and PRO 0, 0.5, 0.5, 1; rescaled, FPR is 0, 0, 1, 1 and PRO 0, 0.5, 0.5, 1, so the
    area is the one middle segment, 1 x 0.5:

    >>> round(official_pro(maps, masks, fpr_limit=1.0, max_steps=4), 6)
    0.5
    """
    pool = build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps, components=True)
    return official_pro_from_curve(official_curve_from_pool(pool, max_steps), fpr_limit)


@shared_doc
def official_pro_curve(
    maps: Any,
    masks: Any,
    *,
    max_steps: int = OFFICIAL_MAX_STEPS,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
) -> PROCurve:
    """The official code's raw grid curve, before selection and rescaling.

    Parameters
    ----------
    {pixel_inputs}
    max_steps : int, default=4000
        Number of grid thresholds (see :func:`official_thresholds`).
    {mask_options}

    Returns
    -------
    PROCurve
        ``max_steps`` points, thresholds descending from the global max score; a pixel is
        positive iff ``score > threshold``.

    Examples
    --------
    {pixel_example}
    >>> from stfpm_lib.metrics import official_pro_curve
    >>> c = official_pro_curve(maps, masks, max_steps=4)
    >>> c.fpr.tolist(), c.pro.tolist()
    ([0.0, 0.0, 0.5, 0.5], [0.0, 0.5, 0.5, 1.0])
    >>> np.round(c.thresholds, 6).tolist()
    [0.9, 0.7, 0.5, 0.3]
    """
    pool = build_pool(maps, masks, mask_binarization=mask_binarization, resize_maps=resize_maps, components=True)
    return official_curve_from_pool(pool, max_steps)
