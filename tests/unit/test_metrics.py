"""Tests of stfpm_lib.metrics: fast implementations against slow references, properties, bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from metrics_reference import (  # tests/unit/ is on sys.path (pytest rootdir-relative import)
    ref_au_pro,
    ref_auroc,
    ref_f1_best,
    ref_official_curve,
    ref_official_pro,
    ref_pro_curve,
    trapezoid_upto,
)
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from stfpm_lib import metrics as M
from stfpm_lib.metrics import UndefinedMetricError


# ------------------------------------------------------------------------------------ test data
def make_set(seed, n=12, size=32, n_normal=4, signal=1.5, quant=None, dtype=np.float32):
    """Smoothed-noise maps + signal on defects; defects are discs, rectangles and diagonal
    one-pixel scratches (8-connected only, so 4-connectivity would split them)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_normal, n):
        for _ in range(rng.integers(1, 4)):
            kind = rng.integers(3)
            cy, cx = rng.integers(0, size, 2)
            if kind == 0:
                r = rng.integers(1, size // 6 + 1)
                masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            elif kind == 1:
                h, w = rng.integers(1, size // 4 + 1, 2)
                masks[i, cy : cy + h, cx : cx + w] = True
            else:
                k = np.arange(rng.integers(3, size // 2))
                masks[i, (cy + k) % size, (cx + k) % size] = True
    noise = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 1, 1))
    maps = noise + signal * ndimage.gaussian_filter(masks.astype(float), sigma=(0, 1, 1))
    if quant:
        maps = np.round(maps * quant) / quant  # many ties, also between normal and defect pixels
    return maps.astype(dtype), masks


def tiny_example():
    """Three 2×3 images, hand-checked golden numbers below.

    Defects: image A pixels (0,0)=0.9 and (0,1)=0.8 (one region, each pixel weighs 1/2),
    image B pixel (0,2)=0.4 (one region). K = 2 regions. Image C is normal.
    15 normal pixels, descending: 0.8 0.7 0.6 0.5 0.35 0.3 0.3 0.25 0.2 0.2 0.15 0.1 0.1 0.05 0.05.

    Exact PRO curve (FPR, PRO): (0,0) → t=.9 (0,.25) → t=.8 (1/15,.5) [tie: one normal, one
    defect pixel] → t=.7 (2/15,.5) → t=.6 (3/15,.5) → t=.5 (4/15,.5) → t=.4 (4/15,1) →
    t=.35 (5/15,1) past 0.3.
    Area to 0.3 = (1/15)(.25+.5)/2 + .5(3/15) + 1·(0.3-4/15) = .025 + .1 + 1/30 = 19/120,
    AU-PRO = (19/120)/0.3 = 19/36. Area to 0.5 = .125 + (0.5-4/15) = 43/120, /0.5 = 43/60.
    Pixel AUROC: 0.9 beats 15, 0.8 beats 14 + ties 1 (14.5), 0.4 beats 11: 40.5/45 = 0.9.
    Image scores A .9, B .6, C .7 (labels 1, 1, 0): AUROC = (1 + 0)/2 = 0.5;
    best image F1 at t=.6: TP 2, FP 1 → 4/5 = 0.8; best pixel F1 at t=.8: TP 2, FP 1 → 4/6.
    Official PRO with 10 steps: thresholds .9 - s·.085; points s=0..6 have FPR <= 0.3:
    FPR 0,0,1,2,3,4,4 (/15), PRO 0,.25,.5,.5,.5,.5,1; rescaled FPR 0,0,.25,.5,.75,1,1 →
    area = .25·(.25+.5)/2 + 3·(.25·.5) = 0.09375 + 0.375 = 15/32.
    """
    maps = np.array(
        [
            [[0.9, 0.8, 0.1], [0.8, 0.2, 0.3]],
            [[0.6, 0.05, 0.4], [0.5, 0.15, 0.35]],
            [[0.2, 0.3, 0.25], [0.1, 0.7, 0.05]],
        ]
    )
    masks = np.zeros((3, 2, 3), dtype=np.uint8)
    masks[0, 0, :2] = 255
    masks[1, 0, 2] = 255
    return maps, masks


DATASETS = {
    "smooth": dict(seed=0),
    "ties": dict(seed=1, quant=8),
    "weak64": dict(seed=2, signal=0.5, dtype=np.float64),
    "strong": dict(seed=3, signal=4.0, n_normal=2),
}


# --------------------------------------------------------------------------------- golden tiny
def test_tiny_example_golden_numbers():
    maps, masks = tiny_example()
    assert M.au_pro(maps, masks) == pytest.approx(19 / 36, abs=1e-12)
    assert M.au_pro(maps, masks, fpr_limit=0.5) == pytest.approx(43 / 60, abs=1e-12)
    assert M.pixel_auroc(maps, masks) == pytest.approx(0.9, abs=1e-12)
    assert M.image_auroc(maps, [1, 1, 0]) == pytest.approx(0.5)
    assert M.image_f1_best(maps, [1, 1, 0]) == pytest.approx((0.8, 0.6, 2 / 3, 1.0))
    assert M.pixel_f1_best(maps, masks) == pytest.approx((2 / 3, 0.8, 2 / 3, 2 / 3))
    assert M.official_pro(maps, masks, max_steps=10) == pytest.approx(15 / 32, abs=1e-12)
    curve = M.pro_curve(maps, masks)
    np.testing.assert_allclose(curve.fpr, [0, 0, 1 / 15, 2 / 15, 3 / 15, 4 / 15, 4 / 15, 0.3])
    np.testing.assert_allclose(curve.pro, [0, 0.25, 0.5, 0.5, 0.5, 0.5, 1, 1])


# ------------------------------------------------------------------------- against references
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("limit", [0.3, 0.05])
def test_au_pro_matches_bruteforce(name, limit):
    maps, masks = make_set(**DATASETS[name])
    assert M.au_pro(maps, masks, fpr_limit=limit) == pytest.approx(ref_au_pro(maps, masks, limit), abs=1e-9)


def test_au_pro_full_range_matches_bruteforce():
    maps, masks = make_set(4, n=6, size=24, quant=16)
    assert M.au_pro(maps, masks, fpr_limit=1.0) == pytest.approx(ref_au_pro(maps, masks, 1.0), abs=1e-9)


def test_au_pro_uniform_random_maps_match_bruteforce():
    rng = np.random.default_rng(7)
    masks = make_set(7, n=10, size=24)[1]
    maps = rng.random(masks.shape).astype(np.float32)
    assert M.au_pro(maps, masks) == pytest.approx(ref_au_pro(maps, masks), abs=1e-9)


@pytest.mark.parametrize("name", ["smooth", "ties"])
def test_pro_curve_matches_bruteforce_and_integrates_to_au_pro(name):
    maps, masks = make_set(**DATASETS[name])
    x, y, t = ref_pro_curve(maps, masks, 0.3)
    curve = M.pro_curve(maps, masks, 0.3)
    n = curve.fpr.size - 1  # all but the interpolated end point
    np.testing.assert_allclose(curve.fpr[:n], x[:n], atol=1e-12)
    np.testing.assert_allclose(curve.pro[:n], y[:n], atol=1e-12)
    np.testing.assert_array_equal(curve.thresholds[:n], t[:n])
    assert curve.fpr[-1] == pytest.approx(0.3)
    area = trapezoid_upto(curve.fpr, curve.pro, 0.3) / 0.3
    assert area == pytest.approx(M.au_pro(maps, masks), abs=1e-12)


def test_official_pro_matches_4000_step_reference():
    maps, masks = make_set(5, n=8, size=24)
    ref = ref_official_curve(maps, masks, 4000)
    curve = M.official_pro_curve(maps, masks)
    np.testing.assert_array_equal(curve.thresholds, ref[2])
    np.testing.assert_array_equal(curve.fpr, ref[0])
    np.testing.assert_allclose(curve.pro, ref[1], atol=1e-12)
    assert M.official_pro(maps, masks) == pytest.approx(ref_official_pro(maps, masks, curve=ref), abs=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_official_pro_threshold_edges(dtype):
    """Scores that sit exactly on grid thresholds: the strict ``score > t`` must match."""
    steps = 60
    grid = M.official_thresholds(0.0, 1.0, steps, np.dtype(dtype))
    rng = np.random.default_rng(11)
    masks = make_set(11, n=8, size=16)[1]
    maps = rng.choice(grid, size=masks.shape).astype(dtype)
    maps[masks] = rng.choice(grid[: steps // 2], size=int(masks.sum()))  # defects score higher
    maps[0, 0, 0], maps[0, 0, 1] = 1.0, 0.0  # the grid's max and min
    masks[0, 0, :2] = False
    ref = ref_official_curve(maps, masks, steps)
    curve = M.official_pro_curve(maps, masks, max_steps=steps)
    np.testing.assert_array_equal(curve.fpr, ref[0])
    np.testing.assert_allclose(curve.pro, ref[1], atol=1e-12)
    assert M.official_pro(maps, masks, max_steps=steps) == pytest.approx(
        ref_official_pro(maps, masks, steps, curve=ref), abs=1e-9
    )


@pytest.mark.parametrize("name", ["ties", "weak64"])
def test_official_pro_matches_reference_short_grid(name):
    maps, masks = make_set(**DATASETS[name], n=8, size=20)
    assert M.official_pro(maps, masks, max_steps=300) == pytest.approx(
        ref_official_pro(maps, masks, 300), abs=1e-9
    )


@pytest.mark.parametrize("name", DATASETS)
def test_auroc_matches_sklearn_and_pairwise(name):
    maps, masks = make_set(**DATASETS[name])
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert M.pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    labels = masks.any(axis=(1, 2))
    scores = maps.max(axis=(1, 2))
    assert M.image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert M.image_auroc(maps, labels) == pytest.approx(ref_auroc(scores, labels), abs=1e-12)


def test_roc_curve_integrates_to_auroc():
    maps, masks = make_set(**DATASETS["ties"])
    c = M.pixel_roc_curve(maps, masks, max_points=None)
    assert np.all(np.diff(c.fpr) >= 0) and np.all(np.diff(c.tpr) >= 0)
    assert (c.fpr[-1], c.tpr[-1]) == (1.0, 1.0)
    assert np.trapezoid(c.tpr, c.fpr) == pytest.approx(M.pixel_auroc(maps, masks), abs=1e-12)
    thin = M.pixel_roc_curve(maps, masks, max_points=50)
    assert thin.fpr.size <= 50 and thin.fpr[0] == 0 and thin.fpr[-1] == 1
    img = M.roc_curve(maps, masks.any(axis=(1, 2)))
    assert np.trapezoid(img.tpr, img.fpr) == pytest.approx(M.image_auroc(maps, masks.any(axis=(1, 2))))


@pytest.mark.parametrize("name", ["smooth", "ties"])
def test_f1_best_matches_bruteforce_and_sklearn(name):
    maps, masks = make_set(**DATASETS[name])
    res = M.pixel_f1_best(maps, masks)
    assert res.f1 == pytest.approx(ref_f1_best(maps, masks), abs=1e-12)
    p, r, _ = precision_recall_curve(masks.ravel(), maps.ravel())
    with np.errstate(invalid="ignore"):
        assert res.f1 == pytest.approx(np.nanmax(2 * p * r / (p + r)), abs=1e-12)
    pred = maps >= res.threshold  # the reported threshold reproduces the F1
    tp = np.count_nonzero(pred & masks)
    assert 2 * tp / (pred.sum() + masks.sum()) == pytest.approx(res.f1)
    labels = masks.any(axis=(1, 2))
    assert M.image_f1_best(maps, labels).f1 == pytest.approx(ref_f1_best(maps.max(axis=(1, 2)), labels))


def test_f1_at_validation_threshold():
    maps, masks = make_set(**DATASETS["smooth"])
    val = make_set(99, n=5, n_normal=5)[0]
    labels = masks.any(axis=(1, 2))
    img = M.image_f1_val(maps, labels, val)  # val maps: reduced to image maxima
    t_img = val.max()
    pred = maps.max(axis=(1, 2)) > t_img
    tp = np.count_nonzero(pred & labels)
    assert img.threshold == pytest.approx(t_img)
    assert img.f1 == pytest.approx(2 * tp / (pred.sum() + labels.sum()))
    pix = M.pixel_f1_val(maps, masks, val, quantile=0.99)
    t_pix = np.quantile(val.astype(np.float64), 0.99)
    assert pix.threshold == pytest.approx(t_pix, rel=1e-6)
    pred = maps > pix.threshold
    tp = np.count_nonzero(pred & masks)
    assert pix.f1 == pytest.approx(2 * tp / (pred.sum() + masks.sum()))
    assert pix.precision == pytest.approx(tp / pred.sum())


# ------------------------------------------------------------- average precision, F1-max, IoU-max
def brute_threshold_max(scores, labels):
    """(best F1, best IoU), each with its largest maximising threshold, trying every distinct score
    as ``score >= t`` and counting TP / FP / FN pixel by pixel (ties enter together)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    best = {"f1": (-1.0, None), "iou": (-1.0, None)}
    for t in np.unique(s):  # ascending: ">=" keeps the largest threshold among equal values
        pred = s >= t
        tp, fp, fn = np.sum(pred & y), np.sum(pred & ~y), np.sum(~pred & y)
        for name, value in (("f1", 2 * tp / (2 * tp + fp + fn)), ("iou", tp / (tp + fp + fn))):
            if value >= best[name][0]:
                best[name] = (value, t)
    return best["f1"], best["iou"]


@pytest.mark.parametrize("name", DATASETS)
def test_average_precision_matches_sklearn(name):
    maps, masks = make_set(**DATASETS[name])
    assert M.pixel_ap(maps, masks) == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12)
    labels = masks.any(axis=(1, 2))
    scores = maps.max(axis=(1, 2))
    assert M.image_ap(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert M.image_ap(maps, labels) == M.image_ap(scores, labels)


def test_average_precision_with_ties_by_hand():
    # descending: 0.9 (+), then the tie 0.5 = {+, -, -}, then 0.2 (+), 0.1 (-): recall steps 1/3 each at
    # precision 1, 2/4 and 3/5 -> AP = (1 + 1/2 + 3/5) / 3 = 0.7
    scores, labels = [0.9, 0.5, 0.5, 0.5, 0.2, 0.1], [1, 1, 0, 0, 1, 0]
    assert M.image_ap(scores, labels) == pytest.approx(0.7, abs=1e-12)
    assert average_precision_score(labels, scores) == pytest.approx(0.7, abs=1e-12)


@pytest.mark.parametrize("name", ["smooth", "ties", "weak64"])
def test_f1_max_and_iou_max_match_bruteforce_with_ties(name):
    maps, masks = make_set(**DATASETS[name], n=8, size=20)
    (f1, t_f1), (iou, t_iou) = brute_threshold_max(maps, masks)
    res_f1, res_iou = M.pixel_f1_best(maps, masks), M.pixel_iou_best(maps, masks)
    assert res_f1.f1 == pytest.approx(f1, abs=1e-12) and res_f1.threshold == pytest.approx(t_f1)
    assert res_iou.iou == pytest.approx(iou, abs=1e-12) and res_iou.threshold == pytest.approx(t_iou)
    assert res_iou.iou == pytest.approx(res_f1.f1 / (2 - res_f1.f1), abs=1e-12)  # F1 = 2 IoU / (1 + IoU)


def test_iou_max_ties_between_thresholds_keep_the_largest():
    # one image, defects {0.8, 0.3}, normals {0.9, 0.3, 0.1}: t=0.9 -> 0/3; t=0.8 -> 1/(1+1+1) = 1/3;
    # t=0.3 (tie of a defect and a normal pixel) -> 2/(2+2+0) = 1/2; t=0.1 -> 2/(2+3) = 0.4
    maps = np.array([[[0.8, 0.3, 0.9, 0.3, 0.1]]])
    masks = np.array([[[1, 1, 0, 0, 0]]])
    assert tuple(M.pixel_iou_best(maps, masks)) == pytest.approx((0.5, 0.3))
    # equal IoU at two thresholds: 0.9 -> 1/2 (tp 1, fp 0, fn 1), 0.5 -> 2/4 (tp 2, fp 2): the larger, 0.9, wins
    maps = np.array([[[0.9, 0.5, 0.7, 0.6]]])
    masks = np.array([[[1, 1, 0, 0]]])
    assert tuple(M.pixel_iou_best(maps, masks)) == pytest.approx((0.5, 0.9))
    assert brute_threshold_max(maps, masks)[1] == pytest.approx((0.5, 0.9))


def test_ap_and_iou_properties():
    maps, masks = make_set(**DATASETS["strong"])
    labels = masks.any(axis=(1, 2))
    perfect = np.where(masks, 2.0 + maps, maps * 0.1)
    assert M.pixel_ap(perfect, masks) == 1.0 and M.pixel_iou_best(perfect, masks).iou == 1.0
    assert M.image_ap(np.where(labels, 2.0, 0.0) + labels * perfect.max(axis=(1, 2)), labels) == 1.0
    # inverted: every normal pixel above every defect pixel. The best IoU/F1 flags everything
    # (IoU = P / (P + N), the defect fraction); AP = mean over k = 1..P of k / (N + k)
    inv = -perfect
    p, n = int(masks.sum()), int((~masks).sum())
    assert M.pixel_iou_best(inv, masks).iou == pytest.approx(p / (p + n), abs=1e-12)
    assert M.pixel_f1_best(inv, masks).f1 == pytest.approx(2 * p / (2 * p + n), abs=1e-12)
    expected_ap = np.mean([k / (n + k) for k in range(1, p + 1)])
    assert M.pixel_ap(inv, masks) == pytest.approx(expected_ap, abs=1e-12)
    perm = np.random.default_rng(3).permutation(len(maps))  # order invariance
    assert M.pixel_ap(maps[perm], masks[perm]) == pytest.approx(M.pixel_ap(maps, masks), abs=1e-12)
    assert M.pixel_iou_best(maps[perm], masks[perm]) == M.pixel_iou_best(maps, masks)
    assert M.image_ap(maps[perm], labels[perm]) == M.image_ap(maps, labels)


def test_ap_and_iou_bad_input():
    maps, masks = make_set(**DATASETS["smooth"])
    with pytest.raises(ValueError, match=r"mask_binarization must be one of \('gt0', 'gt0.5'\); got 'gt1'"):
        M.pixel_ap(maps, masks, mask_binarization="gt1")
    with pytest.raises(ValueError, match=r"resize_maps must be one of \(False, True\); got 'yes'"):
        M.pixel_iou_best(maps, masks, resize_maps="yes")
    with pytest.raises(UndefinedMetricError, match="no defect pixels"):
        M.pixel_ap(maps, np.zeros_like(masks))
    with pytest.raises(UndefinedMetricError, match="need both normal and anomalous"):
        M.image_ap(maps, np.zeros(len(maps)))
    bad = maps.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"first at maps\[1\]\[2, 3\]"):
        M.pixel_iou_best(bad, masks)


# ----------------------------------------------------------------------------------- properties
def test_perfect_detector_scores_one():
    maps, masks = make_set(**DATASETS["smooth"])
    rng = np.random.default_rng(0)
    perfect = np.where(masks, 0.6 + 0.4 * rng.random(masks.shape), 0.4 * rng.random(masks.shape))
    labels = masks.any(axis=(1, 2))
    assert M.au_pro(perfect, masks) == 1.0  # exact: g = L for every pixel, sums by math.fsum
    assert M.pixel_auroc(perfect, masks) == 1.0
    assert M.image_auroc(perfect, labels) == 1.0
    assert M.official_pro(perfect, masks) == pytest.approx(1.0, abs=1e-12)
    assert M.pixel_f1_best(perfect, masks).f1 == 1.0
    # binary maps = masks: the official formula divides 0 by 0 (FPR never rises); NaN + warning
    with pytest.warns(RuntimeWarning, match="official PRO is NaN"):
        assert np.isnan(M.official_pro(masks.astype(np.float32), masks))
    assert M.au_pro(masks.astype(np.float32), masks) == 1.0


def test_random_detector():
    rng = np.random.default_rng(1)
    masks = make_set(21, n=60, size=64, n_normal=20)[1]
    maps = rng.random(masks.shape).astype(np.float32)
    assert M.pixel_auroc(maps, masks) == pytest.approx(0.5, abs=0.01)
    assert M.au_pro(maps, masks) == pytest.approx(0.15, abs=0.01)
    assert M.official_pro(maps, masks) == pytest.approx(0.5, abs=0.02)


def test_inverted_detector_scores_zero():
    maps, masks = make_set(**DATASETS["strong"])
    inv = -np.where(masks, 1.0 + maps, maps * 0.1)
    assert M.au_pro(inv, masks) == pytest.approx(0.0, abs=1e-12)
    assert M.pixel_auroc(inv, masks) == pytest.approx(0.0, abs=1e-12)


def test_official_pro_is_au_pro_over_pro_at_limit():
    maps, masks = make_set(31, n=40, size=64, n_normal=10, signal=1.0)
    pro_at_limit = M.pro_curve(maps, masks).pro[-1]
    ratio = M.official_pro(maps, masks) / M.au_pro(maps, masks)
    assert pro_at_limit < 0.95  # a case where the two definitions really differ
    assert ratio == pytest.approx(1 / pro_at_limit, rel=0.01)


def test_results_do_not_depend_on_image_order():
    maps, masks = make_set(**DATASETS["ties"])
    perm = np.random.default_rng(5).permutation(len(maps))
    a = M.compute_all(maps, masks)
    b = M.compute_all(maps[perm], masks[perm])
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12), k


def test_eight_connectivity():
    """A diagonal chain is one region under 8-connectivity (four under 4-connectivity)."""
    masks = np.zeros((2, 8, 8), bool)
    masks[0, [1, 2, 3, 4], [1, 2, 3, 4]] = True
    masks[0, 6, 6] = True  # a separate one-pixel region
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 1, 1] = maps[0, 2, 2] = 1.0  # half of the chain scores above every normal pixel
    curve = M.pro_curve(maps, masks, 0.3)
    # 8-conn: K = 2, PRO = (2/4 + 0)/2 = 0.25; 4-conn would give K = 5, PRO = 2/5
    assert curve.pro[1] == pytest.approx(0.25)
    assert M.official_pro_curve(maps, masks, max_steps=4).pro[1] == pytest.approx(0.25)


# ------------------------------------------------------------------------ resizing and formats
def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    img = rng.random((16, 12)).astype(np.float32)
    for size in [(64, 48), (37, 53), (8, 5), (16, 12)]:
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(img)[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0].numpy()
        np.testing.assert_allclose(M.resize_bilinear(img, size), ref, atol=1e-6)


def test_original_resolution_with_masks_of_different_sizes():
    maps, masks = make_set(**DATASETS["smooth"], n=6, n_normal=2, size=16)
    big = [np.kron(m, np.ones((f, f), bool)) for m, f in zip(masks, [2, 3, 2, 4, 3, 2])]
    with pytest.raises(ValueError, match=r"maps\[0\] has shape \(16, 16\) but masks\[0\] has shape \(32, 32\)"):
        M.au_pro(maps, big)
    up = [M.resize_bilinear(m, k.shape) for m, k in zip(maps, big)]
    assert M.au_pro(maps, big, resize_maps=True) == pytest.approx(M.au_pro(up, big), abs=1e-12)
    same = np.stack([np.kron(m, np.ones((3, 3), bool)) for m in masks])  # one common size: brute force
    up_same = np.stack([M.resize_bilinear(m, same.shape[1:]) for m in maps])
    assert M.au_pro(maps, same, resize_maps=True) == pytest.approx(ref_au_pro(up_same, same), abs=1e-9)
    out = M.compute_all(maps, masks, orig_masks=big)
    assert out["au_pro_orig_res"] == pytest.approx(M.au_pro(up, big), abs=1e-12)
    assert out["pixel_auroc_orig_res"] == pytest.approx(M.pixel_auroc(up, big), abs=1e-12)


def test_torch_and_list_inputs():
    torch = pytest.importorskip("torch")
    maps, masks = make_set(**DATASETS["smooth"])
    expected = M.au_pro(maps, masks)
    assert M.au_pro(torch.from_numpy(maps), torch.from_numpy(masks)) == pytest.approx(expected)
    assert M.au_pro(torch.from_numpy(maps)[:, None].requires_grad_(), masks[:, None]) == pytest.approx(expected)
    assert M.au_pro(list(maps), list(masks)) == pytest.approx(expected)
    assert M.au_pro(torch.from_numpy(maps).half(), masks) == pytest.approx(
        M.au_pro(maps.astype(np.float16), masks)
    )
    assert M.image_auroc(torch.from_numpy(maps), torch.from_numpy(masks.any(axis=(1, 2)))) == pytest.approx(
        M.image_auroc(maps, masks.any(axis=(1, 2)))
    )


def test_mask_binarization():
    maps, masks = make_set(**DATASETS["smooth"])
    soft = ndimage.gaussian_filter(masks.astype(np.float32), sigma=(0, 1, 1))  # values in [0, 1]
    assert M.au_pro(maps, soft) == pytest.approx(M.au_pro(maps, soft > 0))
    assert M.au_pro(maps, soft, mask_binarization="gt0.5") == pytest.approx(M.au_pro(maps, soft > 0.5))
    assert M.au_pro(maps, soft) != pytest.approx(M.au_pro(maps, soft, mask_binarization="gt0.5"))
    assert M.pixel_auroc(maps, (masks * 255).astype(np.uint8)) == pytest.approx(M.pixel_auroc(maps, masks))
    with pytest.raises(ValueError, match="mask_binarization must be one of"):
        M.au_pro(maps, masks, mask_binarization="gt1")


def test_compute_all_and_per_defect_type():
    maps, masks = make_set(**DATASETS["smooth"], n=16, n_normal=6)
    types = ["good"] * 6 + ["scratch"] * 5 + ["blob"] * 5
    val = make_set(98, n=4, n_normal=4)[0]
    out = M.compute_all(maps, masks, defect_types=types, val_maps=val)
    labels = masks.any(axis=(1, 2))
    for key in [
        "image_auroc", "pixel_auroc", "au_pro", "official_pro", "image_f1_best", "pixel_f1_best",
        "image_f1_val", "pixel_f1_val", "image_f1_val_threshold", "pixel_f1_val_threshold",
    ]:
        assert isinstance(out[key], float), key
    assert out["au_pro"] == pytest.approx(M.au_pro(maps, masks))
    assert out["image_ap"] == pytest.approx(M.image_ap(maps, labels))
    assert out["pixel_ap"] == pytest.approx(M.pixel_ap(maps, masks))
    assert (out["pixel_iou_best"], out["pixel_iou_best_threshold"]) == pytest.approx(tuple(M.pixel_iou_best(maps, masks)))
    assert out["official_pro"] == pytest.approx(M.official_pro(maps, masks))
    assert out["image_auroc"] == pytest.approx(M.image_auroc(maps, labels))
    assert out["pixel_f1_val"] == pytest.approx(M.pixel_f1_val(maps, masks, val).f1)
    assert out["image_f1_val"] == pytest.approx(M.image_f1_val(maps, labels, val).f1)
    table = M.per_defect_type(maps, masks, types)
    assert list(table.index) == ["blob", "scratch", "(all)"]
    sub = [i for i, t in enumerate(types) if t in ("good", "blob")]
    assert list(table.columns) == ["n_anomalous", "n_normal", "image_auroc", "pixel_auroc", "au_pro", "image_ap",
                                   "pixel_ap"]
    assert table.loc["blob", "image_ap"] == pytest.approx(M.image_ap(maps[sub], labels[sub]))
    assert table.loc["blob", "pixel_ap"] == pytest.approx(M.pixel_ap(maps[sub], masks[sub]))
    assert out["pixel_ap/scratch"] == pytest.approx(table.loc["scratch", "pixel_ap"])
    assert out["pixel_ap"] == pytest.approx(table.loc["(all)", "pixel_ap"])
    assert table.loc["blob", "au_pro"] == pytest.approx(M.au_pro(maps[sub], masks[sub]))
    assert table.loc["blob", "pixel_auroc"] == pytest.approx(M.pixel_auroc(maps[sub], masks[sub]))
    assert table.loc["(all)", "au_pro"] == pytest.approx(out["au_pro"])
    assert out["au_pro/blob"] == pytest.approx(table.loc["blob", "au_pro"])
    assert table.loc["scratch", "n_anomalous"] == 5 and table.loc["scratch", "n_normal"] == 6


def test_a_pool_built_once_gives_the_same_metrics_as_building_it_again():
    """compute_all / per_defect_type reuse a caller's pixel pool (what evaluate_predictions does for its
    curves too): same numbers, and the (all) row equals the headline pixel metrics exactly."""
    from stfpm_lib.metrics._pool import build_pool

    maps, masks = make_set(**DATASETS["smooth"], n=12, n_normal=4)
    types = ["good"] * 4 + ["scratch"] * 4 + ["blob"] * 4
    pool = build_pool(maps, masks, components=True)
    assert M.compute_all(maps, masks, pool=pool) == M.compute_all(maps, masks)
    table = M.per_defect_type(maps, masks, types, official=True, pool=pool)
    assert table.equals(M.per_defect_type(maps, masks, types, official=True))
    out = M.compute_all(maps, masks)
    assert (table.loc["(all)", "au_pro"], table.loc["(all)", "pixel_auroc"]) == (out["au_pro"], out["pixel_auroc"])
    with pytest.raises(ValueError, match="components"):
        M.compute_all(maps, masks, pool=build_pool(maps, masks))
    with pytest.raises(ValueError, match=r"these 11 images \(\d+ pixels\)"):
        M.compute_all(maps[1:], masks[1:], pool=pool)


def test_thin_curve_keeps_first_last_and_evenly_spaced_points():
    from stfpm_lib.metrics.roc import thin_curve

    curve = M.ROCCurve(np.arange(11.0), np.arange(11.0) * 2, -np.arange(11.0))
    thinned = thin_curve(curve, 3)
    assert type(thinned) is M.ROCCurve and thinned.fpr.tolist() == [0, 5, 10] and thinned.tpr.tolist() == [0, 10, 20]
    assert thin_curve(curve, 4).fpr.tolist() == [0, 3, 7, 10]  # round(linspace(0, 10, 4)) = 0, 3.33, 6.67, 10
    assert thin_curve(curve, None) is curve and thin_curve(curve, 11) is curve
    with pytest.raises(ValueError, match="max_points must be >= 2"):
        thin_curve(curve, 1)


# ------------------------------------------------------------------------------------ bad input
def test_shape_mismatch_names_the_image():
    maps, masks = make_set(**DATASETS["smooth"])
    bad = list(masks)
    bad[3] = bad[3][:, :-1]
    with pytest.raises(ValueError, match=r"maps\[3\] has shape \(32, 32\) but masks\[3\]"):
        M.au_pro(maps, bad)
    with pytest.raises(ValueError, match="got 12 maps but 11 masks"):
        M.pixel_auroc(maps, masks[:11])
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        M.au_pro(maps[0], masks[0])


def test_non_finite_scores_are_rejected():
    maps, masks = make_set(**DATASETS["smooth"])
    maps[2, 5, 7] = np.nan
    maps[4, 0, 0] = np.inf
    maps[4, 1, 0] = -np.inf
    for fn in (M.au_pro, M.official_pro, M.pixel_auroc, M.compute_all):
        with pytest.raises(ValueError, match=r"3 non-finite value\(s\).*first at maps\[2\]\[5, 7\]"):
            fn(maps, masks)
    with pytest.raises(ValueError, match="non-finite"):
        M.image_auroc(maps, masks.any(axis=(1, 2)))


def test_undefined_metrics_raise_clear_errors():
    maps, masks = make_set(**DATASETS["smooth"])
    empty = np.zeros_like(masks)
    for fn in (M.au_pro, M.official_pro, M.pixel_auroc):
        with pytest.raises(UndefinedMetricError, match="no defect pixels"):
            fn(maps, empty)
    with pytest.raises(UndefinedMetricError, match="no normal pixels"):
        M.au_pro(maps, np.ones_like(masks))
    with pytest.raises(UndefinedMetricError, match="need both normal and anomalous"):
        M.image_auroc(maps, np.ones(len(maps)))
    with pytest.raises(UndefinedMetricError, match="needs normal images"):
        M.per_defect_type(maps[4:], masks[4:], ["x"] * 8)
    assert issubclass(UndefinedMetricError, ValueError)


def test_other_bad_arguments():
    maps, masks = make_set(**DATASETS["smooth"])
    with pytest.raises(ValueError, match="fpr_limit must be in"):
        M.au_pro(maps, masks, fpr_limit=0)
    with pytest.raises(ValueError, match="must be binary"):
        M.image_auroc(maps, np.arange(len(maps)))
    with pytest.raises(ValueError, match=r"labels must have shape \(12,\)"):
        M.image_auroc(maps, [0, 1])
    with pytest.raises(ValueError, match="quantile must be in"):
        M.pixel_f1_val(maps, masks, maps[:2], quantile=1.5)
    with pytest.raises(ValueError, match="defect_types must have 12 entries"):
        M.per_defect_type(maps, masks, ["a"])


# ------------------------------------------------------------------------------------ benchmark
def test_benchmark_quick_last_line(capsys):
    from stfpm_lib.bench.metrics_bench import main

    assert main(["--quick"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    num = r"[0-9]+(?:\.[0-9]+)?"
    assert re.fullmatch(
        rf"au_pro_s={num} official_pro_s={num} all_metrics_s={num} au_pro_1024_s={num} peak_mb={num}", last
    ), last
