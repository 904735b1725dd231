"""Bootstrap intervals and paired comparisons: binned metrics vs the exact ones, known answers, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from stfpm_lib import metrics as M
from stfpm_lib.metrics.bootstrap import (
    BOOTSTRAP_METRICS,
    PerImage,
    bootstrap_ci,
    bootstrap_p_value,
    paired_bootstrap,
    per_image_stats,
    percentile_ci,
    resample_values,
    resample_weights,
    seed_comparison,
)


def make_set(seed, n=24, size=32, n_normal=8, signal=1.5, quant=None):
    """Smoothed noise maps; anomalous images get 1-2 rectangles of signal (float32)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n_normal, n):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, size - 6, 2)
            h, w = rng.integers(2, 7, 2)
            masks[i, y:y + h, x:x + w] = True
    maps = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 1, 1))
    maps = maps + signal * ndimage.gaussian_filter(masks.astype(float), sigma=(0, 1, 1))
    if quant:
        maps = np.round(maps * quant) / quant
    return maps.astype(np.float32), masks


def exact(maps, masks):
    """The exact metrics of :mod:`stfpm_lib.metrics` under the bootstrap's names."""
    labels = masks.any(axis=(1, 2))
    return {"image_auroc": M.image_auroc(maps, labels), "image_ap": M.image_ap(maps, labels),
            "image_f1": M.image_f1_best(maps, labels).f1, "pixel_auroc": M.pixel_auroc(maps, masks),
            "pixel_ap": M.pixel_ap(maps, masks), "pixel_f1": M.pixel_f1_best(maps, masks).f1,
            "pixel_iou": M.pixel_iou_best(maps, masks).iou, "au_pro": M.au_pro(maps, masks)}


@pytest.fixture(scope="module")
def data():
    maps, masks = make_set(0, n=40, n_normal=15, signal=1.0)  # image AUROC 0.80, pixel AP 0.43
    return maps, masks, per_image_stats(maps, masks, names=[f"img{i:02d}" for i in range(len(maps))])


# ------------------------------------------------------------------------- binned vs exact metrics
def test_full_sample_values_match_the_exact_metrics(data):
    maps, masks, p = data
    full = resample_values(p, np.ones((1, len(maps))))
    ref = exact(maps, masks)
    for m in ("image_auroc", "image_ap", "image_f1"):
        assert full[m][0] == pytest.approx(ref[m], abs=1e-12), m  # image level: exact
    for m in ("pixel_auroc", "pixel_ap", "pixel_f1", "pixel_iou", "au_pro"):
        assert abs(full[m][0] - ref[m]) < 1e-3, (m, full[m][0], ref[m])  # pixel level: binned


def test_a_resample_equals_the_metrics_of_the_repeated_images(data):
    """Row r of the weights is the test set with image i repeated w[r, i] times."""
    maps, masks, p = data
    w = resample_weights(p.labels, 3, seed=7)
    values = resample_values(p, w)
    for r in range(3):
        idx = np.repeat(np.arange(len(maps)), w[r].astype(int))
        ref = exact(maps[idx], masks[idx])
        for m in BOOTSTRAP_METRICS:
            tol = 1e-12 if m.startswith("image") else 1e-3
            assert values[m][r] == pytest.approx(ref[m], abs=tol), (r, m)


def test_binned_metrics_are_exact_when_every_score_has_its_bin():
    maps, masks = make_set(1, quant=4)  # ties everywhere, far fewer distinct scores than bins
    p = per_image_stats(maps, masks, n_bins=4096)
    assert p.bin_edges.size == np.unique(maps).size
    full = resample_values(p, np.ones((1, len(maps))))
    for m, v in exact(maps, masks).items():
        assert full[m][0] == pytest.approx(v, abs=1e-12), m


def test_per_image_histograms_by_hand():
    maps = np.array([[[0.1, 0.2], [0.3, 0.2]], [[0.1, 0.9], [0.6, 0.4]]])
    masks = np.array([[[0, 0], [0, 0]], [[0, 1], [0, 1]]])
    p = per_image_stats(maps, masks, names=["a", "b"], defect_types=["good", "hole"])
    assert p.bin_edges.tolist() == [0.1, 0.2, 0.3, 0.4, 0.6, 0.9]
    assert p.hist_defect_weight[1].tolist() == [0, 0, 0, 0.5, 0, 0.5]  # one region of 2 pixels
    assert p.n_regions.tolist() == [0, 1] and p.labels.tolist() == [False, True]
    assert p.scores.tolist() == [0.3, 0.9] and p.defect_types.tolist() == ["good", "hole"]
    back = PerImage.from_arrays(p.to_arrays())
    assert all(np.array_equal(getattr(back, f), getattr(p, f)) for f in ("names", "hist_normal", "bin_edges"))
    assert p.select(["b", "a"]).names.tolist() == ["b", "a"]
    assert p.select(["b", "a"]).hist_defect[0].tolist() == p.hist_defect[1].tolist()


# ------------------------------------------------------------------------- resampling
def test_resample_weights_stratified_and_seeded():
    labels = np.array([0] * 5 + [1] * 7)
    w = resample_weights(labels, 200, seed=3)
    assert w.shape == (200, 12)
    assert np.all(w[:, :5].sum(axis=1) == 5) and np.all(w[:, 5:].sum(axis=1) == 7)
    assert np.array_equal(w, resample_weights(labels, 200, seed=3))
    assert not np.array_equal(w, resample_weights(labels, 200, seed=4))
    plain = resample_weights(labels, 200, seed=3, stratify=False)
    assert np.all(plain.sum(axis=1) == 12) and len(set(plain[:, :5].sum(axis=1))) > 1
    assert w.mean() == pytest.approx(1.0)


def test_several_runs_are_averaged_with_the_same_resamples(data):
    maps, masks, p = data
    q = per_image_stats(maps * 0.5 + np.float32(0.3) * masks, masks, names=p.names)
    w = resample_weights(p.labels, 20, seed=1)
    both = resample_values([p, q], w, ["pixel_ap", "image_auroc"])
    one, two = resample_values(p, w, ["pixel_ap", "image_auroc"]), resample_values(q, w, ["pixel_ap", "image_auroc"])
    for m in both:
        np.testing.assert_allclose(both[m], (one[m] + two[m]) / 2, atol=1e-12)
    shuffled = q.select(list(q.names[::-1]))  # image order does not matter: paired by name
    np.testing.assert_allclose(resample_values([p, shuffled], w, ["pixel_ap"])["pixel_ap"], both["pixel_ap"])


# ------------------------------------------------------------------------- known answers
def test_perfect_detector_interval_is_one_one():
    _, masks = make_set(2)
    rng = np.random.default_rng(0)
    perfect = np.where(masks, 0.6 + 0.4 * rng.random(masks.shape), 0.5 * rng.random(masks.shape))
    for m, ci in bootstrap_ci(per_image_stats(perfect, masks), n_resamples=200).items():
        assert (ci.low, ci.estimate, ci.high) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12), m


def test_seeds_reproduce_and_change_the_interval_slightly(data):
    _, _, p = data
    a = bootstrap_ci(p, ["image_auroc", "pixel_ap"], n_resamples=300, seed=0)
    b = bootstrap_ci(p, ["image_auroc", "pixel_ap"], n_resamples=300, seed=0)
    c = bootstrap_ci(p, ["image_auroc", "pixel_ap"], n_resamples=300, seed=1)
    for m in a:
        assert (a[m].low, a[m].high) == (b[m].low, b[m].high)
        assert (a[m].low, a[m].high) != (c[m].low, c[m].high)
        assert a[m].low <= a[m].estimate <= a[m].high
        width = a[m].high - a[m].low
        assert 0 < width < 0.5
        assert abs(a[m].low - c[m].low) < 0.25 * width and abs(a[m].high - c[m].high) < 0.25 * width


def test_identical_runs_differ_by_exactly_zero(data):
    _, _, p = data
    for m, d in paired_bootstrap(p, p, n_resamples=200).items():
        assert (d.difference, d.low, d.high, d.p_value) == (0.0, 0.0, 0.0, 1.0), m
        assert np.all(d.values == 0)


def test_a_clearly_better_detector_is_detected(data):
    maps, masks, p = data
    better = per_image_stats(maps + np.float32(1.0) * masks, masks, names=p.names)  # defects score higher
    res = paired_bootstrap(better, p, n_resamples=500, seed=0)
    for m in BOOTSTRAP_METRICS:
        d = res[m]
        assert d.difference > 0 and d.low > 0 and d.p_value < 0.05, m
    worse = paired_bootstrap(p, better, ["pixel_ap"], n_resamples=500)["pixel_ap"]
    assert worse.high < 0 and worse.p_value < 0.05
    assert worse.difference == pytest.approx(-res["pixel_ap"].difference)


def test_a_small_random_change_is_not_significant(data):
    maps, masks, p = data
    rng = np.random.default_rng(5)
    other = per_image_stats(maps + 0.01 * rng.normal(size=maps.shape).astype(np.float32), masks, names=p.names)
    d = paired_bootstrap(other, p, ["pixel_auroc"], n_resamples=500)["pixel_auroc"]
    assert d.low < 0 < d.high and d.p_value > 0.05


def test_p_value_and_interval_helpers():
    assert bootstrap_p_value([1.0] * 9 + [-1.0]) == pytest.approx(2 * 2 / 11)
    assert bootstrap_p_value([np.nan, np.nan]) != bootstrap_p_value([np.nan, np.nan])  # NaN
    assert percentile_ci([3.0, np.nan, 1.0, 2.0], 0.5) == (1.5, 2.5)


def test_seed_comparison_known_answers():
    # d = 1, 2, 3: |mean of a sign-flipped d| >= 2 only for +++ and ---: p = 2/8
    s = seed_comparison([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert (s.n, s.mean, s.std, s.p_value, s.noise, s.exceeds_noise) == (3, 2.0, 1.0, 0.25, 2.0, False)
    six = seed_comparison([0.9] * 6, [0.89, 0.885, 0.888, 0.881, 0.889, 0.887])
    assert six.p_value == pytest.approx(2 / 64) and six.exceeds_noise
    same = seed_comparison([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert (same.mean, same.std, same.p_value, same.exceeds_noise) == (0.0, 0.0, 1.0, False)
    one = seed_comparison([0.9, np.nan], [0.8, 0.7])  # NaN pairs are dropped; one seed: noise unknown
    assert one.n == 1 and np.isnan(one.std) and not one.exceeds_noise


def test_sign_flip_matches_scipy_exact_permutation_test():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=7), rng.normal(size=7) + 0.5
    ref = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                 n_resamples=np.inf, alternative="two-sided")
    assert seed_comparison(a, b).p_value == pytest.approx(ref.pvalue, abs=1e-12)


# ------------------------------------------------------------------------- bad input
def test_bad_input(data):
    maps, masks, p = data
    with pytest.raises(ValueError, match=r"n_resamples must be an integer in \[1, inf\); got 0"):
        bootstrap_ci(p, n_resamples=0)
    with pytest.raises(ValueError, match=r"confidence must be a number in \(0, 1\); got 1.5"):
        paired_bootstrap(p, p, confidence=1.5)
    with pytest.raises(ValueError, match=r"unknown bootstrap metric\(s\) \['official_pro'\]"):
        bootstrap_ci(p, ["official_pro"])
    other = per_image_stats(maps[:-1], masks[:-1])
    with pytest.raises(ValueError, match="other test images"):
        paired_bootstrap(p, other)
    with pytest.raises(ValueError, match=r"weights must have shape \(R, 40\)"):
        resample_values(p, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"n_bins must be an integer in \[2, inf\); got 1"):
        per_image_stats(maps, masks, n_bins=1)
    with pytest.raises(ValueError, match="names must be unique"):
        per_image_stats(maps, masks, names=["x"] * len(maps))
    with pytest.raises(ValueError, match=r"PerImage.scores must have shape \(40,\)"):
        PerImage(**{**p.to_arrays(), "scores": p.scores[:3]})
    with pytest.raises(KeyError, match="missing array"):
        PerImage.from_arrays({"names": p.names})
    with pytest.raises(ValueError, match="one value per seed"):
        seed_comparison([1.0, 2.0], [1.0])
    with pytest.raises(M.UndefinedMetricError, match="no defect pixels"):
        per_image_stats(maps, np.zeros_like(masks))


# ------------------------------------------------------------------------- benchmark
def test_benchmark_smoke_last_line(capsys):
    import re

    from stfpm_lib.bench.__main__ import main

    assert main(["bootstrap", "--n", "12", "--size", "32", "--resamples", "20", "--bins", "512"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.fullmatch(r"per_image_s=[0-9.]+ resamples_per_s=[0-9]+ max_binning_error=([0-9.e+-]+)", last)
    assert m, last
    assert float(m.group(1)) < 1e-2  # 512 bins on 12 tiny maps: coarse, yet close
