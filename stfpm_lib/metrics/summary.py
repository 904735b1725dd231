"""All metrics of one category at once, and the per-defect-type breakdown."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._pool import build_pool
from ._validation import (
    MaskBinarization,
    UndefinedMetricError,
    as_image_list,
    as_labels,
    as_scores,
    binarize,
    check_mask_binarization,
)
from .pro import au_pro_from_pool, official_curve_from_pool, official_pro_from_curve, OFFICIAL_MAX_STEPS
from .roc import (
    auroc_from_pool,
    f1_best_from_pool,
    f1_gt_from_pool,
    image_auroc,
    image_f1_best,
    image_f1_val,
    image_scores,
    val_threshold,
)

__all__ = ["compute_all", "per_defect_type"]


def _labels_from_masks(mask_list: list[np.ndarray], mask_binarization: MaskBinarization) -> np.ndarray:
    return np.array([bool(binarize(k, mask_binarization).any()) for k in mask_list])


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
) -> dict[str, float]:
    """Every metric of one category in a flat ``dict[str, float]``.

    Args:
        maps: float ``(N, H, W)`` test anomaly maps; masks: ``(N, H, W)`` ground truth.
        labels: ``(N,)`` image labels (1 = anomalous); default: mask has a defect pixel.
        defect_types: ``N`` type names; adds ``"<metric>/<type>"`` keys (see :func:`per_defect_type`).
        val_maps: ``(M, H, W)`` maps of **normal** validation images; adds the ``*_val`` F1 keys
            (threshold = quantile of validation scores, anomalous iff ``score > threshold``).
        official: also compute the official code's PRO (``official_pro``, NOT the MVTec AU-PRO).
        orig_masks: masks at the original image resolution (list of 2-D arrays); adds
            ``au_pro_orig_res`` and ``pixel_auroc_orig_res`` with each map bilinearly upsampled
            to its mask's size.

    Keys: ``n_images, n_anomalous, n_normal, n_defect_pixels, n_normal_pixels, n_regions,
    image_auroc, pixel_auroc, au_pro, official_pro, image_f1_best, image_f1_best_threshold,
    pixel_f1_best, pixel_f1_best_threshold`` (+ ``image_f1_val, image_f1_val_threshold,
    pixel_f1_val, pixel_f1_val_threshold``, the ``*_orig_res`` and per-type keys when asked).
    Raises :class:`UndefinedMetricError` if a metric is undefined (one image class only, no
    defect pixels or no normal pixels).
    """
    check_mask_binarization(mask_binarization)
    mask_list = as_image_list(masks, "masks")
    y = _labels_from_masks(mask_list, mask_binarization) if labels is None else as_labels(labels, len(mask_list))
    pool = build_pool(maps, mask_list, mask_binarization=mask_binarization, resize_maps=resize_maps, components=True)
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
    }
    if official:
        out["official_pro"] = official_pro_from_curve(official_curve_from_pool(pool, official_max_steps), fpr_limit)
    best = image_f1_best(scores, y)
    out["image_f1_best"], out["image_f1_best_threshold"] = best.f1, best.threshold
    best = f1_best_from_pool(pool)
    out["pixel_f1_best"], out["pixel_f1_best_threshold"] = best.f1, best.threshold
    if val_maps is not None:
        val = image_f1_val(scores, y, image_scores(val_maps), image_val_quantile)
        out["image_f1_val"], out["image_f1_val_threshold"] = val.f1, val.threshold
        val = f1_gt_from_pool(pool, val_threshold(as_image_list(val_maps, "val_maps"), pixel_val_quantile))
        out["pixel_f1_val"], out["pixel_f1_val_threshold"] = val.f1, val.threshold
    del pool
    if orig_masks is not None:
        pool = build_pool(maps, orig_masks, mask_binarization=mask_binarization, resize_maps=True, components=True)
        out["au_pro_orig_res"] = au_pro_from_pool(pool, fpr_limit)
        out["pixel_auroc_orig_res"] = auroc_from_pool(pool)
        del pool
    if defect_types is not None:
        table = per_defect_type(maps, mask_list, defect_types, y, fpr_limit=fpr_limit, mask_binarization=mask_binarization,
                                resize_maps=resize_maps, include_all=False)
        for dtype_name, row in table.iterrows():
            for col in ("image_auroc", "pixel_auroc", "au_pro"):
                out[f"{col}/{dtype_name}"] = float(row[col])
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
):
    """Per-defect-type breakdown: each type's anomalous images against **all** normal images.

    Args:
        maps: float ``(N, H, W)``; masks: ``(N, H, W)`` (or lists of 2-D arrays).
        defect_types: ``N`` names (e.g. the MVTec folder names; normal images may say "good").
        labels: ``(N,)`` 1 = anomalous; default: mask has a defect pixel. Normal images are the
            ones with label 0, whatever their type name.
        scores: ``(N,)`` image scores for the image AUROC; default: the max of each map. Pass the
            scores the headline image AUROC used, so the ``(all)`` row equals it.

    Returns a ``pandas.DataFrame`` indexed by ``defect_type`` (sorted; plus a final ``"(all)"``
    row when ``include_all``) with columns ``n_anomalous, n_normal, image_auroc, pixel_auroc,
    au_pro`` (+ ``official_pro``). A metric that is undefined for a type (e.g. its masks are
    empty) is NaN there. Raises :class:`UndefinedMetricError` if there is no normal image.
    """
    import pandas as pd

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
        try:
            pool = build_pool(sub_maps, sub_masks, mask_binarization=mask_binarization, resize_maps=resize_maps, components=True)
            row["pixel_auroc"] = auroc_from_pool(pool)
            row["au_pro"] = au_pro_from_pool(pool, fpr_limit)
            if official:
                row["official_pro"] = official_pro_from_curve(official_curve_from_pool(pool), fpr_limit)
        except UndefinedMetricError:
            row.update(pixel_auroc=np.nan, au_pro=np.nan, **({"official_pro": np.nan} if official else {}))
        rows.append(row)
    return pd.DataFrame(rows).set_index("defect_type")
