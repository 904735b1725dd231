"""Speed of the bootstrap over test images (``python -m stfpm_lib.bench bootstrap [--n 100 --size 256]``).

Builds one synthetic category (``n`` maps of ``size`` × ``size`` pixels, a third normal; defects are rectangles
with a weak signal), summarises it with :func:`~stfpm_lib.metrics.bootstrap.per_image_stats` and times
:func:`~stfpm_lib.metrics.bootstrap.bootstrap_ci` over every metric. The last line reads
``per_image_s=... resamples_per_s=... max_binning_error=...`` (the largest ``|binned - exact|`` of the
pixel metrics on all images).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import metrics as M
from ..metrics.bootstrap import bootstrap_ci, per_image_stats, resample_values


def _data(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n // 3, n):
        y, x = rng.integers(0, size * 3 // 4, 2)
        h, w = rng.integers(size // 32 + 1, size // 4, 2)
        masks[i, y:y + h, x:x + w] = True
    maps = rng.normal(size=masks.shape).astype(np.float32) + np.float32(1.5) * masks
    return maps, masks


def main(argv: list[str] | None = None) -> int:
    """Run the bootstrap benchmark and print its figures (the CPU named).

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        The exit code, 0.
    """
    p = argparse.ArgumentParser(prog="python -m stfpm_lib.bench bootstrap", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100, help="test images (default 100)")
    p.add_argument("--size", type=int, default=256, help="map side in pixels (default 256)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--bins", type=int, default=2048, help="histogram bins (default 2048)")
    a = p.parse_args(argv)
    maps, masks = _data(a.n, a.size)
    t0 = time.perf_counter()
    stats = per_image_stats(maps, masks, n_bins=a.bins)
    t_stats = time.perf_counter() - t0
    t0 = time.perf_counter()
    bootstrap_ci(stats, n_resamples=a.resamples, seed=0)
    t_boot = time.perf_counter() - t0
    full = resample_values(stats, np.ones((1, a.n)))
    exact = {"pixel_auroc": M.pixel_auroc(maps, masks), "pixel_ap": M.pixel_ap(maps, masks),
             "pixel_f1": M.pixel_f1_best(maps, masks).f1, "pixel_iou": M.pixel_iou_best(maps, masks).iou,
             "au_pro": M.au_pro(maps, masks)}
    err = max(abs(full[k][0] - v) for k, v in exact.items())
    print(f"{a.n} images of {a.size}x{a.size}, {stats.bin_edges.size} bins, {a.resamples} resamples, all 8 metrics")
    print(f"per_image_s={t_stats:.3f} resamples_per_s={a.resamples / t_boot:.0f} max_binning_error={err:.2e}")
    return 0
