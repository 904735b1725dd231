"""Speed of :mod:`stfpm_lib.metrics` on MVTec-like synthetic data: ``python -m stfpm_lib.bench metrics``.

Data: ``--n`` maps of ``--size`` × ``--size`` pixels (a third normal; anomalous images carry 1–4 blobs, ellipses
or scratches, all of one defect type), maps = smoothed noise + smoothed signal on the defects,
float32. The same defects are also drawn at ``--orig-size`` × ``--orig-size`` pixels (MVTec's original resolution) for
AU-PRO with each map bilinearly upsampled to its mask.

Baselines, measured in the same run (the straightforward implementations live in this file):

* official PRO, per threshold: the official ``evaluate.py`` loop (binarise, relabel every
  image, ``regionprops`` overlap, FPR) — too slow to run in full, so it is timed on a subset
  of images and thresholds and extrapolated linearly to all images × 4000 thresholds;
* AU-PRO, per threshold: label once, then one pass over all pixels per distinct score —
  timed on the first thresholds and extrapolated to the number of distinct scores the exact
  curve needs up to FPR 0.3;
* AU-PRO, sort-based reference: a direct float64 argsort/cumsum implementation of the MVTec
  algorithm over all pixels (run in full);
* pixel AUROC: ``sklearn.metrics.roc_auc_score`` (run in full).

The last line is machine-readable:
``au_pro_s=<s> official_pro_s=<s> all_metrics_s=<s> au_pro_1024_s=<s> peak_mb=<MB>``,
where ``peak_mb`` is the peak resident set size of this process while AU-PRO runs at the
original resolution (VmHWM after resetting it through /proc/self/clear_refs; it includes the
inputs and the interpreter), or the whole-process ``ru_maxrss`` where that reset is unavailable.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import measure
from sklearn.metrics import roc_auc_score

from stfpm_lib import metrics as M

DEFECT_TYPES = ("blob", "ellipse", "scratch")


# ----------------------------------------------------------------------------------- data
def _shape_params(rng: np.random.Generator, kind: str) -> dict[str, float]:
    cy, cx = rng.uniform(0.1, 0.9, 2)
    theta = rng.uniform(0, np.pi)
    if kind == "blob":
        r = rng.uniform(0.02, 0.08)
        return dict(cy=cy, cx=cx, a=r, b=r, theta=0.0)
    if kind == "ellipse":
        return dict(cy=cy, cx=cx, a=rng.uniform(0.04, 0.15), b=rng.uniform(0.015, 0.05), theta=theta)
    return dict(cy=cy, cx=cx, a=rng.uniform(0.1, 0.3), b=rng.uniform(0.004, 0.01), theta=theta, rect=1.0)


def _draw(shapes: list[dict[str, float]], size: int) -> np.ndarray:
    """Rasterise shapes given in unit coordinates at ``size``² (pixel centres), bbox-limited."""
    mask = np.zeros((size, size), bool)
    for s in shapes:
        ext = max(s["a"], s["b"])
        y0, y1 = (int(np.clip(np.floor((s["cy"] + d) * size), 0, size)) for d in (-ext, ext + 2 / size))
        x0, x1 = (int(np.clip(np.floor((s["cx"] + d) * size), 0, size)) for d in (-ext, ext + 2 / size))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = (yy + 0.5) / size - s["cy"], (xx + 0.5) / size - s["cx"]
        c, si = np.cos(s["theta"]), np.sin(s["theta"])
        u, v = (c * dx + si * dy) / s["a"], (-si * dx + c * dy) / max(s["b"], 0.6 / size)
        inside = (np.abs(u) <= 1) & (np.abs(v) <= 1) if s.get("rect") else u * u + v * v <= 1
        mask[y0:y1, x0:x1] |= inside
    return mask


def make_data(n: int, size: int, seed: int, orig_size: int | None = None, n_val: int = 0) -> dict[str, Any]:
    """MVTec-like synthetic category (see module doc).

    Parameters
    ----------
    n : int
        Test images (a third, at least one, normal).
    size : int
        Map side, pixels.
    seed : int
    orig_size : int, optional
        Also the masks at this side ("original resolution"), pixels.
    n_val : int, default=0
        Normal validation maps.

    Returns
    -------
    dict of str to object
        ``maps`` (N, size, size) float32, ``masks`` (N, size, size) bool, ``labels`` (N,) bool,
        ``types`` list of N str, and ``val_maps`` (n_val, size, size) / ``orig_masks`` when asked.
    """
    rng = np.random.default_rng(seed)
    n_normal = max(1, n // 3)
    types = ["good"] * n_normal + [DEFECT_TYPES[i % 3] for i in range(n - n_normal)]
    shapes = [[] if t == "good" else [_shape_params(rng, t) for _ in range(rng.integers(1, 5))] for t in types]
    masks = np.stack([_draw(s, size) for s in shapes])
    sig = max(size / 128, 0.5)

    def noise(k: int) -> np.ndarray:
        x = ndimage.gaussian_filter(rng.standard_normal((k, size, size), dtype=np.float32), sigma=(0, sig, sig))
        return x / x.std()

    amp = rng.uniform(1.0, 4.0, n).astype(np.float32)[:, None, None]
    signal = ndimage.gaussian_filter(masks.astype(np.float32), sigma=(0, sig, sig))
    data: dict[str, Any] = {
        "maps": np.ascontiguousarray(noise(n) + amp * signal, dtype=np.float32),
        "masks": masks,
        "labels": masks.any(axis=(1, 2)),
        "types": types,
    }
    if n_val:
        data["val_maps"] = noise(n_val)
    if orig_size:
        data["orig_masks"] = [_draw(s, orig_size) for s in shapes]
    return data


# -------------------------------------------------------------------- straightforward versions
def naive_official_curve(maps: np.ndarray, masks: np.ndarray, steps: np.ndarray, max_steps: int = 4000):
    """The official evaluate.py loop at the given step indices: binarise, relabel, regionprops.

    Parameters
    ----------
    maps : ndarray of shape (N, H, W), float
    masks : ndarray of shape (N, H, W), bool
    steps : ndarray of int
        Indices into the ``max_steps`` threshold grid.
    max_steps : int, default=4000

    Returns
    -------
    (ndarray, ndarray)
        FPR and PRO at each step, shape (len(steps),).
    """
    gt = masks > 0
    max_th, min_th = maps.max(), maps.min()
    delta = float(max_th - min_th) / max_steps
    neg = ~gt
    fprs, pros = [], []
    for step in steps:
        binary = maps > maps.dtype.type(float(max_th) - int(step) * delta)
        overlaps = []
        for i in range(len(maps)):
            label_map = measure.label(gt[i], connectivity=2)
            for prop in measure.regionprops(label_map, intensity_image=binary[i].astype(np.uint8)):
                overlaps.append(prop.image_intensity.sum() / prop.area)
        pros.append(np.mean(overlaps))
        fprs.append(np.logical_and(neg, binary).sum() / neg.sum())
    return np.array(fprs), np.array(pros)


def naive_au_pro_thresholds(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray) -> None:
    """Per-threshold exact AU-PRO work: label once, then one full pass per distinct score (timed only).

    Parameters
    ----------
    maps : ndarray of shape (N, H, W), float
    masks : ndarray of shape (N, H, W), bool
    thresholds : ndarray of shape (T,)
    """
    labels = np.zeros(maps.shape, np.int64)
    k = 0
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        labels[i] = np.where(lab > 0, lab + k, 0)
        k += n
    sizes = np.bincount(labels.ravel(), minlength=k + 1)
    neg = labels == 0
    for t in thresholds:
        pred = maps >= t
        _fpr = np.count_nonzero(pred & neg) / np.count_nonzero(neg)
        _pro = np.mean(np.bincount(labels[pred], minlength=k + 1)[1:] / sizes[1:])


def sort_based_au_pro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Direct MVTec-style AU-PRO: float64 argsort of all pixels, cumulative sums, tie runs.

    Parameters
    ----------
    maps : ndarray of shape (N, H, W), float
    masks : ndarray of shape (N, H, W), bool
    fpr_limit : float, default=0.3

    Returns
    -------
    float
        AU-PRO normalised by ``fpr_limit``, in [0, 1].
    """
    fp = np.zeros(maps.shape, np.float64)
    pro = np.zeros(maps.shape, np.float64)
    k = 0
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        sizes = np.bincount(lab.ravel())
        fp[i] = lab == 0
        pro[i] = np.where(lab > 0, 1.0 / sizes[lab], 0.0)
        k += n
    order = np.argsort(maps.ravel().astype(np.float64))[::-1]
    s = maps.ravel()[order]
    x = np.cumsum(fp.ravel()[order]) / fp.sum()
    y = np.cumsum(pro.ravel()[order]) / k
    last = np.append(np.diff(s) != 0, True)
    x, y = np.concatenate([[0.0], x[last]]), np.concatenate([[0.0], y[last]])
    j = int(np.searchsorted(x, fpr_limit, side="right"))
    area = np.sum((y[1:j] + y[: j - 1]) * np.diff(x[:j])) / 2
    if x[j - 1] < fpr_limit:
        y_at = y[j - 1] + (y[j] - y[j - 1]) * (fpr_limit - x[j - 1]) / (x[j] - x[j - 1])
        area += (y_at + y[j - 1]) * (fpr_limit - x[j - 1]) / 2
    return float(area / fpr_limit)


# ------------------------------------------------------------------------------------ timing
def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset_ok: bool) -> float:
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stfpm_lib.bench metrics", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=150, help="number of test maps (default 150)")
    p.add_argument("--size", type=int, default=256, help="map size (default 256)")
    p.add_argument("--orig-size", type=int, default=1024, help="original mask size for AU-PRO (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=2, help="timings are the best of this many runs (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (n=12, 64², 128²) for a smoke test")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.size, a.orig_size, a.repeat = 12, 64, 128, 1
    if a.n < 3 or a.size < 8 or a.orig_size < 8:
        p.error("need --n >= 3, --size >= 8 and --orig-size >= 8")
    return a


def _time_metrics(a: argparse.Namespace, d: dict[str, Any]) -> dict[str, float]:
    """Time the library's metrics on ``d`` (best of ``a.repeat``), print them; return times and values."""
    maps, masks = d["maps"], d["masks"]
    t_au, v_au = _best(lambda: M.au_pro(maps, masks), a.repeat)
    t_off, v_off = _best(lambda: M.official_pro(maps, masks), a.repeat)
    t_pix, v_pix = _best(lambda: M.pixel_auroc(maps, masks), a.repeat)
    t_img, v_img = _best(lambda: M.image_auroc(maps, d["labels"]), a.repeat)
    t_all, res = _best(
        lambda: M.compute_all(maps, masks, d["labels"], d["types"], d["val_maps"]), a.repeat
    )
    print(f"  au_pro (MVTec, exact)           {t_au:8.3f} s   value {v_au:.6f}")
    print(f"  official_pro (STFPM code, 4000) {t_off:8.3f} s   value {v_off:.6f}   (NOT the MVTec AU-PRO)")
    print(f"  pixel_auroc                     {t_pix:8.3f} s   value {v_pix:.6f}")
    print(f"  image_auroc                     {t_img:8.3f} s   value {v_img:.6f}")
    print(f"  compute_all (all of the above + F1 best/val + per-defect-type rows) {t_all:.3f} s")
    f1_keys = ("image_f1_best", "pixel_f1_best", "image_f1_val", "pixel_f1_val")
    print("    " + ", ".join(f"{k}={res[k]:.4f}" for k in f1_keys))
    return {"t_au": t_au, "v_au": v_au, "t_off": t_off, "t_pix": t_pix, "v_pix": v_pix, "t_all": t_all}


def _time_baselines(a: argparse.Namespace, maps: np.ndarray, masks: np.ndarray, lib: dict[str, float]) -> None:
    """Time the straightforward implementations on the same data and print the speed-ups over ``lib``."""
    print("straightforward implementations (same data, same run):")
    t_sort, v_sort = _best(lambda: sort_based_au_pro(maps, masks), 1)
    print(f"  AU-PRO sort-based float64 reference (all pixels): {t_sort:.3f} s, value {v_sort:.6f} "
          f"(|diff| {abs(v_sort - lib['v_au']):.1e}) -> speed-up {t_sort / lib['t_au']:.1f}x")

    curve = M.pro_curve(maps, masks)
    n_thr = curve.thresholds.size - 2  # distinct scores down to the first point past FPR 0.3
    k_thr = min(n_thr, 3 if a.quick else 10)
    t_pt, _ = _best(lambda: naive_au_pro_thresholds(maps, masks, curve.thresholds[1 : 1 + k_thr]), 1)
    t_pt_full = t_pt / k_thr * n_thr
    print(f"  AU-PRO per threshold: {t_pt / k_thr * 1e3:.1f} ms/threshold measured on {k_thr} thresholds; the exact "
          f"curve needs {n_thr} -> extrapolated {t_pt_full:.0f} s -> speed-up {t_pt_full / lib['t_au']:.0f}x")

    n_sub, s_sub = min(a.n, 10), (20 if a.quick else 100)
    sub = np.r_[0 : n_sub // 3, a.n - (n_sub - n_sub // 3) : a.n]  # normal and anomalous images
    steps = np.linspace(0, 3999, s_sub).round().astype(int)
    t_no, (f_naive, p_naive) = _best(lambda: naive_official_curve(maps[sub], masks[sub], steps), 1)
    fast_curve = M.official_pro_curve(maps[sub], masks[sub])
    diff = max(np.abs(fast_curve.fpr[steps] - f_naive).max(), np.abs(fast_curve.pro[steps] - p_naive).max())
    t_no_full = t_no / (n_sub * s_sub) * a.n * 4000
    print(f"  official PRO per threshold (relabel + regionprops): {t_no:.2f} s for {n_sub} maps x {s_sub} of 4000 "
          f"thresholds (curve max |diff| vs fast {diff:.1e}); extrapolated to {n_sub} maps x 4000: "
          f"{t_no / s_sub * 4000:.1f} s, to {a.n} maps x 4000: {t_no_full:.0f} s -> speed-up "
          f"{t_no_full / lib['t_off']:.0f}x")

    t_sk, v_sk = _best(lambda: roc_auc_score(masks.ravel(), maps.ravel()), 1)
    print(f"  pixel AUROC sklearn.roc_auc_score: {t_sk:.3f} s (|diff| {abs(v_sk - lib['v_pix']):.1e}) -> "
          f"speed-up {t_sk / lib['t_pix']:.1f}x")


def _time_original_resolution(a: argparse.Namespace, maps: np.ndarray, big: list[np.ndarray]) -> tuple[float, float]:
    """Time ``au_pro`` with the maps upsampled to the original masks; return (seconds, peak MB)."""
    n_big = sum(m.size for m in big)
    print(f"original resolution: {a.n} masks of {a.orig_size}x{a.orig_size} ({n_big / 1e6:.1f} M pixels, "
          f"{int(sum(m.sum() for m in big))} defect pixels); "
          f"maps bilinearly upsampled from {a.size}x{a.size} inside au_pro, one at a time")
    reset_ok = _reset_peak_rss()
    t0 = time.perf_counter()
    v_big = M.au_pro(maps, big, resize_maps=True)
    t_big = time.perf_counter() - t0
    peak = _peak_rss_mb(reset_ok)
    what = ("process peak RSS (VmHWM) during this call, inputs and interpreter included" if reset_ok
            else "process peak RSS (ru_maxrss) over the whole run")
    print(f"  au_pro at {a.orig_size}x{a.orig_size}: {t_big:.3f} s (1 run), value {v_big:.6f}; "
          f"peak memory {peak:.0f} MB = {what}")
    return t_big, peak


def main(argv: list[str] | None = None) -> int:
    """Run the metrics benchmark and print its report (last line machine-readable).

    Parameters
    ----------
    argv : list of str, optional
        ``--n``, ``--size``, ``--orig-size``, ``--seed``, ``--repeat``, ``--quick`` (default: the
        command line).

    Returns
    -------
    int
        0.
    """
    a = _parse(argv)
    print(f"stfpm_lib metrics benchmark: {a.n} maps of {a.size}x{a.size} float32 (+ masks at "
          f"{a.orig_size}x{a.orig_size}), seed {a.seed}, {os.cpu_count()} CPU(s), numpy {np.__version__}")
    t0 = time.perf_counter()
    d = make_data(a.n, a.size, a.seed, orig_size=a.orig_size, n_val=max(2, a.n // 5))
    maps, masks = d["maps"], d["masks"]
    print(f"data: {int(d['labels'].sum())} anomalous + {int((~d['labels']).sum())} normal images, "
          f"{int(masks.sum())} defect pixels ({masks.mean():.2%}), {len(d['val_maps'])} validation maps; "
          f"made in {time.perf_counter() - t0:.1f} s")
    print(f"timings: best of {a.repeat} run(s)")
    lib = _time_metrics(a, d)
    _time_baselines(a, maps, masks, lib)
    t_big, peak = _time_original_resolution(a, maps, d["orig_masks"])
    print(f"au_pro_s={lib['t_au']:.3f} official_pro_s={lib['t_off']:.3f} all_metrics_s={lib['t_all']:.3f} "
          f"au_pro_1024_s={t_big:.3f} peak_mb={peak:.0f}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
