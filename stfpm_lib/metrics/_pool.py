"""All test pixels of a category, split into sorted normal and sorted defect scores.

Every pixel metric is computed from this pool with binary searches instead of per-threshold
passes over the images:

* ``neg``: scores of normal pixels (mask false), sorted ascending, dtype ``dtype``;
* ``pos``: scores of defect pixels, sorted ascending;
* ``pos_w``: for each defect pixel, ``1 / |component|`` of its 8-connected ground-truth
  region (aligned with ``pos``), when built with ``components=True``;
* ``pos_region``: for each defect pixel, the index (0 .. n_components-1) of that region,
  pooled over the images (aligned with ``pos``), when built with ``components=True``;
* ``n_components``: number of regions, counted per image and pooled over the category.

Memory: one buffer for the normal scores (4 bytes per pixel for float32 maps) that is sorted
in place; the maps are resized one at a time, so nothing else of full size is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ._resize import BilinearResizer
from ._validation import (
    MaskBinarization,
    UndefinedMetricError,
    as_image_list,
    binarize,
    check_finite_maps,
    check_mask_binarization,
    check_pairs,
    score_dtype,
)

__all__ = ["PixelPool", "build_pool", "floor_to_dtype", "region_labels", "region_weights"]

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class PixelPool:
    neg: np.ndarray
    pos: np.ndarray
    pos_w: np.ndarray | None
    n_components: int
    pos_region: np.ndarray | None = None

    @property
    def dtype(self) -> np.dtype:
        return self.neg.dtype

    @property
    def n_neg(self) -> int:
        return int(self.neg.size)

    @property
    def n_pos(self) -> int:
        return int(self.pos.size)

    def count_neg_ge(self, t: np.ndarray) -> np.ndarray:
        """Number of normal pixels with score >= t (``t`` in the pool's dtype)."""
        return self.n_neg - np.searchsorted(self.neg, t, side="left")

    def count_neg_gt(self, t: np.ndarray) -> np.ndarray:
        return self.n_neg - np.searchsorted(self.neg, t, side="right")

    def neg_below(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(#normal < t, #normal <= t) for sorted ``t``; the second search only where ties exist."""
        lt = np.searchsorted(self.neg, t, side="left")
        le = lt.copy()
        tie = lt < self.n_neg
        tie[tie] = self.neg[lt[tie]] == t[tie]
        if tie.any():
            le[tie] = np.searchsorted(self.neg, t[tie], side="right")
        return lt, le


def floor_to_dtype(t: float, dtype: np.dtype) -> np.generic:
    """Largest value of ``dtype`` that is <= ``t``: for x in dtype, ``x > t`` iff ``x > result``."""
    r = np.asarray(t, dtype=np.float64).astype(dtype)[()]
    if float(r) > t:
        r = np.nextafter(r, dtype.type(-np.inf))
    return r


def region_labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``(comp, n)``: for each defect pixel of the bool ``mask`` (in ``mask[mask]`` order) the label
    (1 .. n) of its 8-connected ground-truth region, and the number ``n`` of regions."""
    lab, n_lab = ndimage.label(mask, structure=_EIGHT)
    return lab[mask], int(n_lab)


def region_weights(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``(w, n)``: for each defect pixel of the bool ``mask`` (in ``mask[mask]`` order) ``1 / |region|``
    of its 8-connected ground-truth region, and the number ``n`` of regions."""
    comp, n_lab = region_labels(mask)
    return _inverse_sizes(comp, n_lab), n_lab


def _inverse_sizes(comp: np.ndarray, n_lab: int) -> np.ndarray:
    """``1 / |region|`` for each pixel of the region labels ``comp`` (1 .. n_lab)."""
    sizes = np.bincount(comp, minlength=n_lab + 1).astype(np.float64)
    sizes[0] = 1.0  # unused (label 0 is background)
    return (1.0 / sizes)[comp]


def build_pool(
    maps: Any,
    masks: Any,
    *,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
    components: bool = False,
    require_pos: bool = True,
) -> PixelPool:
    """Validate ``maps``/``masks`` and pool their pixels (see module doc).

    Raises ``ValueError`` for mismatched counts/shapes and NaN/inf scores, and
    :class:`UndefinedMetricError` when there are no normal pixels, or no defect pixels
    and ``require_pos``.
    """
    check_mask_binarization(mask_binarization)
    map_list = as_image_list(maps, "maps")
    mask_list = as_image_list(masks, "masks")
    check_pairs(map_list, mask_list, resize_maps)
    check_finite_maps(map_list)
    dtype = score_dtype(map_list)
    n_pos_img = _count_defect_pixels(mask_list, mask_binarization, require_pos)

    neg = np.empty(sum(k.size for k in mask_list) - sum(n_pos_img), dtype=dtype)
    pos_parts: list[np.ndarray] = []
    w_parts: list[np.ndarray] = []
    r_parts: list[np.ndarray] = []
    n_components = 0
    off = 0
    resize = BilinearResizer()  # reuses its buffers; its output is consumed before the next call
    for m, k, npos in zip(map_list, mask_list, n_pos_img):
        k = binarize(k, mask_binarization)
        s = (resize(m, k.shape) if m.shape != k.shape else m).astype(dtype, copy=False)
        if npos == 0:
            neg[off : off + s.size] = s.ravel()
            off += s.size
            continue
        neg[off : off + s.size - npos] = s[~k]
        off += s.size - npos
        pos_parts.append(s[k])
        if components:
            comp, n_lab = region_labels(k)
            w_parts.append(_inverse_sizes(comp, n_lab))
            r_parts.append(comp - 1 + n_components)
            n_components += n_lab
    neg.sort()
    if not components:
        return PixelPool(neg=neg, pos=_sorted_positives(pos_parts, dtype)[0], pos_w=None, n_components=0)
    pos, (pos_w, pos_region) = _sorted_positives(pos_parts, dtype, w_parts, r_parts)
    return PixelPool(neg=neg, pos=pos, pos_w=pos_w, n_components=n_components, pos_region=pos_region)


def _count_defect_pixels(mask_list: list[np.ndarray], mask_binarization: MaskBinarization,
                         require_pos: bool) -> list[int]:
    """Defect pixels of each mask; raises :class:`UndefinedMetricError` when no pixel is normal
    (or none is a defect and ``require_pos``)."""
    n_pos_img = [int(np.count_nonzero(binarize(k, mask_binarization))) for k in mask_list]
    if sum(k.size for k in mask_list) - sum(n_pos_img) == 0:
        raise UndefinedMetricError("masks contain no normal pixels: the metric needs normal pixels (FPR undefined)")
    if require_pos and sum(n_pos_img) == 0:
        raise UndefinedMetricError(
            "masks contain no defect pixels (after mask_binarization): pixel AUROC / PRO are undefined for this set"
        )
    return n_pos_img


def _sorted_positives(pos_parts: list[np.ndarray], dtype: np.dtype,
                      *aligned: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The defect scores sorted ascending, and each list of ``aligned`` per-pixel arrays (region
    weights, region indices) concatenated and put in the same order."""
    pos = np.concatenate(pos_parts) if pos_parts else np.empty(0, dtype=dtype)
    if not aligned:
        pos.sort()
        return pos, []
    order = np.argsort(pos, kind="stable")
    return pos[order], [np.concatenate(parts)[order] if parts else np.empty(0) for parts in aligned]
