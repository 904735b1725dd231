"""Anomaly-detection metrics: MVTec AU-PRO (exact), the official STFPM code's PRO, AUROC, F1.

Shapes: ``maps`` float ``(N, H, W)``, ``masks`` ``(N, H, W)`` (or lists of 2-D arrays; NumPy
arrays or torch tensors). Masks are binarised by ``mask_binarization`` (:data:`MaskBinarization`:
``"gt0"``: > 0, default and official; ``"gt0.5"``: > 0.5). This is not the config's
``mask_rule`` (how masks are resized) nor a dataset adapter's mask encoding. Image scores are the max of each map.

* :func:`au_pro` — the MVTec AD AU-PRO (the standard; report this one).
* :func:`official_pro` — the official STFPM ``evaluate.py`` PRO: min-max rescaled, **not** the
  MVTec AU-PRO, ≈ AU-PRO / PRO(FPR=0.3); only for comparing with the STFPM README.
* :func:`pixel_auroc`, :func:`image_auroc` (== ``sklearn.metrics.roc_auc_score``).
* :func:`image_ap`, :func:`pixel_ap`: average precision (== ``sklearn.metrics.average_precision_score``).
* :func:`pixel_iou_best`: IoU-max, the best pooled-pixel IoU over thresholds.
* F1: ``*_f1_best`` (oracle threshold) and ``*_f1_val`` (threshold from normal validation data).
* Curves: :func:`roc_curve`, :func:`pixel_roc_curve`, :func:`pro_curve`, :func:`official_pro_curve`.
* :func:`compute_all` (flat dict) and :func:`per_defect_type` (DataFrame).
* :mod:`.bootstrap`: confidence intervals over test images and paired comparisons.

Undefined cases (no defect pixels, no normal pixels, one image class) raise
:class:`UndefinedMetricError`, a ``ValueError``.
"""

from ._resize import resize_bilinear
from ._validation import MaskBinarization, UndefinedMetricError
from .pro import PROCurve, au_pro, official_pro, official_pro_curve, official_thresholds, pro_curve
from .roc import (
    F1Result,
    IoUResult,
    ROCCurve,
    image_ap,
    image_auroc,
    image_f1_best,
    image_f1_val,
    image_scores,
    pixel_ap,
    pixel_auroc,
    pixel_f1_best,
    pixel_f1_val,
    pixel_iou_best,
    pixel_roc_curve,
    roc_curve,
    val_threshold,
)
from .summary import compute_all, per_defect_type

__all__ = [
    "au_pro",
    "pro_curve",
    "official_pro",
    "official_pro_curve",
    "official_thresholds",
    "pixel_auroc",
    "image_auroc",
    "image_ap",
    "pixel_ap",
    "pixel_iou_best",
    "image_scores",
    "roc_curve",
    "pixel_roc_curve",
    "image_f1_best",
    "image_f1_val",
    "pixel_f1_best",
    "pixel_f1_val",
    "val_threshold",
    "compute_all",
    "per_defect_type",
    "resize_bilinear",
    "UndefinedMetricError",
    "MaskBinarization",
    "F1Result",
    "IoUResult",
    "ROCCurve",
    "PROCurve",
]
