"""All metrics of one category at once, and the per-defect-type breakdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._pool import PixelPool, build_pool
from ._validation import (
    MaskBinarization,
    UndefinedMetricError,
    as_image_list,
    as_labels,
    as_scores,
    binarize,
    check_mask_binarization,
)
from .pro import OFFICIAL_MAX_STEPS, au_pro_from_pool, official_curve_from_pool, official_pro_from_curve
from .roc import (
    ap_from_pool,
    auroc_from_pool,
    f1_best_from_pool,
    f1_gt_from_pool,
    image_ap,
    image_auroc,
    image_f1_best,
    image_f1_val,
    image_scores,
    iou_best_from_pool,
    val_threshold,
)

__all__ = ["compute_all", "per_defect_type"]

#: per-defect-type metrics (each type's anomalous images against all normal images)
_TYPE_METRICS = ("image_auroc", "pixel_auroc", "au_pro", "image_ap", "pixel_ap")


def _labels_from_masks(mask_list: list[np.ndarray], mask_binarization: MaskBinarization) -> np.ndarray:
    return np.array([bool(binarize(k, mask_binarization).any()) for k in mask_list])


def _full_pool(pool: PixelPool | None, maps: Any, mask_list: list[np.ndarray], mask_binarization: MaskBinarization,
               resize_maps: bool) -> PixelPool:
    """``pool`` (checked to hold every image's pixels, with regions) or a new one built with components."""
    if pool is None:
        return build_pool(maps, mask_list, mask_binarization=mask_binarization, resize_maps=resize_maps,
                          components=True)
    n_pixels = sum(k.size for k in mask_list)
    if pool.pos_w is None or pool.n_pos + pool.n_neg != n_pixels:
        raise ValueError(f"pool must be build_pool(maps, masks, components=True) of these {len(mask_list)} images "
                         f"({n_pixels} pixels); got one of {pool.n_pos + pool.n_neg} pixels"
                         + (" without components" if pool.pos_w is None else ""))
    return pool


def compute_all(
    maps: Any,
    masks: Any,
    labels: Any = None,
    defect_types: Sequence[str] | None = None,
    val_maps: Any = None,
    *,
    fpr_limit: float = 0.3,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
    official: bool = True,
    official_max_steps: int = OFFICIAL_MAX_STEPS,
    image_val_quantile: float = 1.0,
    pixel_val_quantile: float = 1.0,
    orig_masks: Any = None,
    pool: PixelPool | None = None,
) -> dict[str, float]:
    """Every metric of one category in a flat ``dict[str, float]``, from one pixel pool.

    Parameters
    ----------
    maps : array-like of shape (N, H, W), or list of N 2-D arrays
        Test anomaly maps, float; image scores are their maxima.
    masks : array-like of shape (N, H, W), or list of N 2-D arrays
        Ground truth, binarised by ``mask_binarization``.
    labels : array-like of shape (N,), optional
        1 = anomalous; default: the mask has a defect pixel.
    defect_types : sequence of N str, optional
        Type names; adds ``"<metric>/<type>"`` keys (see :func:`per_defect_type`).
    val_maps : array-like of shape (M, H, W), optional
        Maps of **normal** validation images; adds the ``*_val`` F1 keys (threshold = quantile
        of validation scores, anomalous iff ``score > threshold``).
    fpr_limit : float, default=0.3
        FPR limit of ``au_pro`` and ``official_pro``.
    mask_binarization : {"gt0", "gt0.5"}, default="gt0"
        Defect iff ``mask > 0`` or ``mask > 0.5``.
    resize_maps : bool, default=False
        Bilinearly resize each map to its mask's size.
    official : bool, default=True
        Also compute the official code's PRO (``official_pro``, NOT the MVTec AU-PRO).
    official_max_steps : int, default=4000
        Grid size of ``official_pro``.
    image_val_quantile, pixel_val_quantile : float, default=1.0
        Quantiles of the validation scores used as ``*_val`` thresholds.
    orig_masks : list of 2-D arrays, optional
        Masks at the original image resolution; adds ``au_pro_orig_res`` and
        ``pixel_auroc_orig_res`` with each map bilinearly upsampled to its mask's size.
    pool : PixelPool, optional
        The pixel pool of ``maps`` and ``masks`` built by ``build_pool(maps, masks,
        mask_binarization=..., resize_maps=..., components=True)``, when the caller needs it too
        (curves): it is used instead of building it again. Default: built here.

    Returns
    -------
    dict of str to float
        Keys ``n_images, n_anomalous, n_normal, n_defect_pixels, n_normal_pixels, n_regions,
        image_auroc, pixel_auroc, au_pro, image_ap, pixel_ap, official_pro, image_f1_best,
        image_f1_best_threshold, pixel_f1_best, pixel_f1_best_threshold, pixel_iou_best,
        pixel_iou_best_threshold`` (+ ``image_f1_val, image_f1_val_threshold,
        pixel_f1_val, pixel_f1_val_threshold``, the ``*_orig_res`` and per-type keys when
        asked). Counts are floats too; thresholds are in score units.

    Raises
    ------
    UndefinedMetricError
        If a metric is undefined (one image class only, no defect pixels or no normal pixels).

    Examples
    --------
    A normal image (max 0.3) and an anomalous one whose right column is a defect scoring 0.9
    and 0.4; its normal pixels score 0.1 and 0.6. The 6 normal pixels are all below 0.9 and 5
    are below 0.4, so the pixel AUROC is 11 / 12:

    >>> import numpy as np
    >>> from stfpm_lib.metrics import compute_all
    >>> maps = np.array([[[0.1, 0.2], [0.3, 0.2]], [[0.1, 0.9], [0.6, 0.4]]])
    >>> masks = np.array([[[0, 0], [0, 0]], [[0, 1], [0, 1]]])
    >>> m = compute_all(maps, masks, official=False)
    >>> m["n_images"], m["n_anomalous"], m["n_defect_pixels"], m["n_regions"]
    (2.0, 1.0, 2.0, 1.0)
    >>> m["image_auroc"], round(m["pixel_auroc"], 4), round(12 * m["pixel_auroc"], 6)
    (1.0, 0.9167, 11.0)
    >>> m["pixel_f1_best"], m["pixel_f1_best_threshold"]  # 0.4 flags 0.9, 0.4 and 0.6
    (0.8, 0.4)
    """
    check_mask_binarization(mask_binarization)
    mask_list = as_image_list(masks, "masks")
    y = _labels_from_masks(mask_list, mask_binarization) if labels is None else as_labels(labels, len(mask_list))
    pool = _full_pool(pool, maps, mask_list, mask_binarization, resize_maps)
    scores = image_scores(maps)

    out: dict[str, float] = {
        "n_images": float(y.size),
        "n_anomalous": float(y.sum()),
        "n_normal": float((~y).sum()),
        "n_defect_pixels": float(pool.n_pos),
        "n_normal_pixels": float(pool.n_neg),
        "n_regions": float(pool.n_components),
        "image_auroc": image_auroc(scores, y),
        "pixel_auroc": auroc_from_pool(pool),
        "au_pro": au_pro_from_pool(pool, fpr_limit),
        "image_ap": image_ap(scores, y),
        "pixel_ap": ap_from_pool(pool),
    }
    if official:
        out["official_pro"] = official_pro_from_curve(official_curve_from_pool(pool, official_max_steps), fpr_limit)
    out.update(_threshold_metrics(pool, scores, y, val_maps, image_val_quantile, pixel_val_quantile))
    del pool
    if orig_masks is not None:
        pool = build_pool(maps, orig_masks, mask_binarization=mask_binarization, resize_maps=True, components=True)
        out["au_pro_orig_res"] = au_pro_from_pool(pool, fpr_limit)
        out["pixel_auroc_orig_res"] = auroc_from_pool(pool)
        del pool
    if defect_types is not None:
        table = per_defect_type(maps, mask_list, defect_types, y, fpr_limit=fpr_limit,
                                mask_binarization=mask_binarization,
                                resize_maps=resize_maps, include_all=False)
        for dtype_name, row in table.iterrows():
            for col in _TYPE_METRICS:
                out[f"{col}/{dtype_name}"] = float(row[col])
    return out


def _threshold_metrics(pool: PixelPool, scores: np.ndarray, y: np.ndarray, val_maps: Any,
                       image_val_quantile: float, pixel_val_quantile: float) -> dict[str, float]:
    """The thresholded metrics of :func:`compute_all`: F1-max (image, pixel), IoU-max (pixel), and with
    ``val_maps`` the F1 at the validation-normal threshold; each with its threshold in score units."""
    out: dict[str, float] = {}
    best = image_f1_best(scores, y)
    out["image_f1_best"], out["image_f1_best_threshold"] = best.f1, best.threshold
    best = f1_best_from_pool(pool)
    out["pixel_f1_best"], out["pixel_f1_best_threshold"] = best.f1, best.threshold
    iou = iou_best_from_pool(pool)
    out["pixel_iou_best"], out["pixel_iou_best_threshold"] = iou.iou, iou.threshold
    if val_maps is not None:
        val = image_f1_val(scores, y, image_scores(val_maps), image_val_quantile)
        out["image_f1_val"], out["image_f1_val_threshold"] = val.f1, val.threshold
        val = f1_gt_from_pool(pool, val_threshold(as_image_list(val_maps, "val_maps"), pixel_val_quantile))
        out["pixel_f1_val"], out["pixel_f1_val_threshold"] = val.f1, val.threshold
    return out


def per_defect_type(
    maps: Any,
    masks: Any,
    defect_types: Sequence[str],
    labels: Any = None,
    *,
    fpr_limit: float = 0.3,
    mask_binarization: MaskBinarization = "gt0",
    resize_maps: bool = False,
    official: bool = False,
    include_all: bool = True,
    scores: Any = None,
    pool: PixelPool | None = None,
):
    """Per-defect-type breakdown: each type's anomalous images against **all** normal images.

    Parameters
    ----------
    maps : array-like of shape (N, H, W), or list of N 2-D arrays
        Anomaly maps, float.
    masks : array-like of shape (N, H, W), or list of N 2-D arrays
        Ground truth, binarised by ``mask_binarization``.
    defect_types : sequence of N str
        Type names (e.g. the MVTec folder names; normal images may say "good").
    labels : array-like of shape (N,), optional
        1 = anomalous; default: the mask has a defect pixel. Normal images are the ones with
        label 0, whatever their type name.
    fpr_limit : float, default=0.3
        FPR limit of ``au_pro`` (and ``official_pro``).
    mask_binarization : {"gt0", "gt0.5"}, default="gt0"
        Defect iff ``mask > 0`` or ``mask > 0.5``.
    resize_maps : bool, default=False
        Bilinearly resize each map to its mask's size.
    official : bool, default=False
        Add an ``official_pro`` column.
    include_all : bool, default=True
        Add a final ``"(all)"`` row with every anomalous image.
    scores : array-like of shape (N,), optional
        Image scores for the image AUROC; default: the max of each map. Pass the scores the
        headline image AUROC used, so the ``(all)`` row equals it.
    pool : PixelPool, optional
        The pixel pool of all ``maps`` and ``masks`` (as for :func:`compute_all`), used for the
        ``(all)`` row instead of building it again.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``defect_type`` (sorted, then ``"(all)"``), columns ``n_anomalous, n_normal,
        image_auroc, pixel_auroc, au_pro, image_ap, pixel_ap`` (+ ``official_pro``). The AP of a
        type depends on its share of the images (chance level = that share). A metric that is undefined for
        a type (e.g. its masks are empty) is NaN there.

    Raises
    ------
    UndefinedMetricError
        If there is no normal image.

    Examples
    --------
    One normal image, a "crack" found perfectly and a "hole" whose defect pixel (0.4) scores
    below a normal pixel of its own image (0.6): it beats 2 of its 3 normal pixels, and over
    all images the two defect pixels beat 4 + 3 of the 4 normal ones (7 / 8):

    >>> import numpy as np
    >>> from stfpm_lib.metrics import per_defect_type
    >>> maps = np.array([[[0.1, 0.2]], [[0.1, 0.9]], [[0.6, 0.4]]])
    >>> masks = np.array([[[0, 0]], [[0, 1]], [[0, 1]]])
    >>> table = per_defect_type(maps, masks, ["good", "crack", "hole"])
    >>> for name, row in table.iterrows():
    ...     print(name, int(row["n_anomalous"]), row["image_auroc"], round(row["pixel_auroc"], 4))
    crack 1 1.0 1.0
    hole 1 1.0 0.6667
    (all) 2 1.0 0.875
    """
    import pandas as pd  # only for this table: importing stfpm_lib.metrics stays light (NumPy, SciPy)

    check_mask_binarization(mask_binarization)
    map_list = as_image_list(maps, "maps")
    mask_list = as_image_list(masks, "masks")
    types = np.asarray([str(t) for t in defect_types])
    if types.shape != (len(mask_list),):
        raise ValueError(f"defect_types must have {len(mask_list)} entries; got {types.shape[0]}")
    y = _labels_from_masks(mask_list, mask_binarization) if labels is None else as_labels(labels, len(mask_list))
    if not (~y).any():
        raise UndefinedMetricError("per_defect_type needs normal images (label 0); there are none")
    normal = np.flatnonzero(~y)
    image_level = image_scores(map_list) if scores is None else as_scores(scores)
    if image_level.shape != (len(map_list),):
        raise ValueError(f"scores must have {len(map_list)} entries (one per map); got {image_level.shape[0]}")
    groups = [(t, np.flatnonzero(y & (types == t))) for t in sorted(set(types[y]))]
    if include_all:
        groups.append(("(all)", np.flatnonzero(y)))

    rows = []
    for name, anomalous in groups:
        idx = np.concatenate([anomalous, normal])
        sub_maps = [map_list[i] for i in idx]
        sub_masks = [mask_list[i] for i in idx]
        row: dict[str, Any] = {"defect_type": name, "n_anomalous": anomalous.size, "n_normal": normal.size}
        row["image_auroc"] = image_auroc(image_level[idx], y[idx])
        pixel = dict.fromkeys(("pixel_auroc", "au_pro", "pixel_ap") + (("official_pro",) if official else ()), np.nan)
        try:
            if name == "(all)":  # every image: the pool of compute_all
                sub_pool = _full_pool(pool, map_list, mask_list, mask_binarization, resize_maps)
            else:
                sub_pool = build_pool(sub_maps, sub_masks, mask_binarization=mask_binarization,
                                      resize_maps=resize_maps, components=True)
            pixel.update(pixel_auroc=auroc_from_pool(sub_pool), au_pro=au_pro_from_pool(sub_pool, fpr_limit),
                         pixel_ap=ap_from_pool(sub_pool))
            if official:
                pixel["official_pro"] = official_pro_from_curve(official_curve_from_pool(sub_pool), fpr_limit)
        except UndefinedMetricError:
            pass
        row.update(pixel_auroc=pixel["pixel_auroc"], au_pro=pixel["au_pro"], image_ap=image_ap(image_level[idx], y[idx]),
                   pixel_ap=pixel["pixel_ap"], **({"official_pro": pixel["official_pro"]} if official else {}))
        rows.append(row)
    return pd.DataFrame(rows).set_index("defect_type")
