"""Slow, obviously-correct reference metrics, written straight from the definitions.

Only for small inputs (a few thousand pixels): every threshold is evaluated by brute force.
Connected components come from scikit-image here (the fast code uses SciPy), so the two
implementations share nothing but NumPy.
"""

from __future__ import annotations

import bisect

import numpy as np
from skimage import measure


def trapezoid_upto(x, y, x_max: float) -> float:
    """Trapezoid area under (x, y) for x in [x[0], x_max]; x non-decreasing.

    If x_max is not a sample point, the segment that crosses it is cut there, with the curve
    value at x_max interpolated linearly (the MVTec evaluation convention).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    extra = 0.0
    if x_max not in x:
        j = bisect.bisect(list(x), x_max)  # first sample beyond x_max
        assert 0 < j < len(x)
        y_at = y[j - 1] + (y[j] - y[j - 1]) * (x_max - x[j - 1]) / (x[j] - x[j - 1])
        extra = 0.5 * (y_at + y[j - 1]) * (x_max - x[j - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + extra)


def gt_regions(masks: np.ndarray) -> list[np.ndarray]:
    """Flat pixel indices (into masks.ravel()) of every 8-connected region of every image."""
    regions = []
    hw = masks[0].size
    for i, m in enumerate(masks):
        lab = measure.label(m, connectivity=2)
        for r in range(1, lab.max() + 1):
            regions.append(i * hw + np.flatnonzero(lab.ravel() == r))
    return regions


def ref_pro_curve(maps, masks, fpr_limit: float = 0.3):
    """Exact MVTec PRO curve by brute force: one point per distinct score t (pixels >= t),
    from the highest score down to the first point with FPR > fpr_limit; starts at (0, 0)."""
    maps = np.asarray(maps)
    gt = np.asarray(masks) > 0
    regions = gt_regions(gt)
    flat, neg = maps.ravel(), ~gt.ravel()
    xs, ys, ts = [0.0], [0.0], [np.inf]
    for t in np.unique(flat)[::-1]:
        pred = flat >= t
        fpr = np.count_nonzero(pred & neg) / np.count_nonzero(neg)
        pro = np.mean([pred[r].mean() for r in regions])
        xs.append(fpr)
        ys.append(pro)
        ts.append(float(t))
        if fpr > fpr_limit:
            break
    return np.array(xs), np.array(ys), np.array(ts)


def ref_au_pro(maps, masks, fpr_limit: float = 0.3) -> float:
    """MVTec AU-PRO: trapezoid of the exact curve up to fpr_limit, divided by fpr_limit."""
    x, y, _ = ref_pro_curve(maps, masks, fpr_limit)
    return trapezoid_upto(x, y, fpr_limit) / fpr_limit


def ref_official_curve(maps, masks, max_steps: int = 4000):
    """The official STFPM evaluate.py loop: per threshold, binarise, label, regionprops.

    Threshold arithmetic as under NumPy < 1.24 (what the official code needs): max/min and their
    difference in the maps' dtype, ``delta`` and ``max - step * delta`` as Python floats (the
    old scalar promotion gives float64), compared with the float32/float64 array in the array's
    dtype (old value-based casting).
    """
    scores = np.asarray(maps)
    gt = np.asarray(masks) > 0
    max_th, min_th = scores.max(), scores.min()
    delta = float(max_th - min_th) / max_steps
    neg = ~gt
    fprs, pros, thrs = [], [], []
    for step in range(max_steps):
        thred = float(max_th) - step * delta
        binary = scores > scores.dtype.type(thred)
        overlaps = []
        for i in range(len(scores)):
            label_map = measure.label(gt[i], connectivity=2)
            for prop in measure.regionprops(label_map, intensity_image=binary[i].astype(np.uint8)):
                overlaps.append(prop.image_intensity.sum() / prop.area)
        pros.append(np.array(overlaps).mean())
        fprs.append(np.logical_and(neg, binary).sum() / neg.sum())
        thrs.append(float(scores.dtype.type(thred)))
    return np.array(fprs), np.array(pros), np.array(thrs)


def ref_official_pro(maps, masks, max_steps: int = 4000, fpr_limit: float = 0.3, curve=None) -> float:
    """Official PRO: keep FPR <= limit, min-max rescale FPR and PRO, sklearn.metrics.auc.
    ``curve``: the output of :func:`ref_official_curve` if already computed."""
    from sklearn.metrics import auc

    fprs, pros, _ = ref_official_curve(maps, masks, max_steps) if curve is None else curve
    keep = fprs <= fpr_limit

    def rescale(v):
        return (v - v.min()) / (v.max() - v.min())

    return float(auc(rescale(fprs[keep]), rescale(pros[keep])))


def ref_auroc(scores, labels) -> float:
    """Probability that an anomalous sample outscores a normal one (ties count half), all pairs."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    p, n = s[y][:, None], s[~y][None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def ref_f1_best(scores, labels) -> float:
    """Max F1 over every distinct threshold (anomalous iff score >= t)."""
    s = np.asarray(scores).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        tp = np.count_nonzero(pred & y)
        fp = np.count_nonzero(pred & ~y)
        fn = np.count_nonzero(~pred & y)
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best
