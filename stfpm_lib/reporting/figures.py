"""Figures for notebooks and reports; every function returns a :class:`matplotlib.figure.Figure`.

Figures are built with the object API (``Figure()``, no ``pyplot``): no global figure
registry, nothing shown, safe under any backend (Agg in batch runs). In Jupyter a returned
figure displays itself; :func:`save_figure` writes PNG and PDF atomically.

Every plotting function takes ``title_suffix``: a second title line, e.g.
``RANDOM_TEACHER_LABEL`` for a random-teacher run.

Images are RGB. Use :func:`load_rgb` (PIL, RGB, same resize/crop as the network input) or
pass the normalised network input, which :func:`to_rgb` de-normalises; never cv2's BGR.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..config import STFPMConfig
from ..data import denormalize
from ..data.mvtec import MVTEC_CATEGORIES
from ..data.transforms import read_image_uint8
from ..records.io import atomic_save
from .published import published_table

__all__ = [
    "to_rgb", "load_rgb", "normalise_map", "overlay_heatmap", "plot_heatmap_overlay", "plot_training_curves",
    "plot_examples_grid", "plot_best_worst", "plot_roc_curves", "plot_pro_curve", "plot_curves",
    "plot_per_defect_type", "plot_published_comparison", "save_figure",
]

CONTOUR_COLOUR = "lime"


def _title(text: str, suffix: str | None) -> str:
    return f"{text}\n{suffix}" if suffix else text


# ====================================================================== images and maps
def to_rgb(image: Any) -> np.ndarray:
    """RGB float image in [0, 1] of shape (H, W, 3).

    Accepts an ImageNet-normalised tensor/array (3, H, W) (de-normalised with
    :func:`stfpm_lib.data.denormalize`), a uint8 (H, W, 3) RGB array, a float (H, W, 3) array
    in [0, 1], or a grayscale (H, W) array (replicated).
    """
    if type(image).__module__.split(".")[0] == "torch":
        image = image.detach().cpu().float().numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        return np.asarray(denormalize(a), dtype=np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image must be (3, H, W) normalised or (H, W, 3) RGB; got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if a.min() < -1e-3 or a.max() > 1 + 1e-3:
        raise ValueError(f"float RGB images must lie in [0, 1]; got range [{a.min():.3g}, {a.max():.3g}] "
                         "(pass the normalised (3, H, W) tensor to de-normalise it)")
    return np.clip(a, 0.0, 1.0)


def load_rgb(path: str | os.PathLike, cfg: Any) -> np.ndarray:
    """The image file as the network saw it: RGB float (S, S, 3) in [0, 1], resized/cropped per ``cfg``.

    ``cfg`` is an :class:`~stfpm_lib.config.STFPMConfig` or its dict (e.g. ``Predictions.config``).
    """

    if isinstance(cfg, Mapping):
        cfg = STFPMConfig.from_dict(cfg)
    return read_image_uint8(path, cfg).astype(np.float32) / 255.0


def _resize_to(amap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if amap.shape == tuple(shape):
        return amap
    t = torch.from_numpy(np.ascontiguousarray(amap, dtype=np.float32))[None, None]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def normalise_map(amap: Any, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Min-max normalise a 2-D map to [0, 1] (over ``value_range`` if given, else its own min/max)."""
    a = np.asarray(amap, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"anomaly map must be 2-D (H, W); got shape {a.shape}")
    lo, hi = (float(a.min()), float(a.max())) if value_range is None else map(float, value_range)
    if not hi > lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def overlay_heatmap(ax: Any, image: Any, amap: Any, mask: Any = None, *, alpha: float = 0.5,
                    value_range: tuple[float, float] | None = None, title: str | None = None) -> Any:
    """Draw the RGB image, the min-max-normalised map in ``jet`` on top and the GT contour on ``ax``.

    The map is bilinearly resized to the image size when they differ. Returns the heat image artist.
    """
    rgb = to_rgb(image)
    heat = _resize_to(normalise_map(amap, value_range), rgb.shape[:2])
    ax.imshow(rgb, interpolation="nearest")
    artist = ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if mask is not None:
        m = np.asarray(mask).astype(np.float32)
        if m.shape != rgb.shape[:2]:
            m = _resize_to(m, rgb.shape[:2])
        if m.max() > 0:
            ax.contour(m, levels=[0.5], colors=CONTOUR_COLOUR, linewidths=1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return artist


def plot_heatmap_overlay(image: Any, amap: Any, mask: Any = None, *, title: str = "", title_suffix: str | None = None,
                         alpha: float = 0.5, value_range: tuple[float, float] | None = None) -> Figure:
    """Two panels: the RGB image with the GT contour, and the heatmap overlay (with a colour bar)."""
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax_img, ax_ov = fig.subplots(1, 2)
    rgb = to_rgb(image)
    ax_img.imshow(rgb)
    if mask is not None and np.asarray(mask).any():
        m = np.asarray(mask).astype(np.float32)
        ax_img.contour(_resize_to(m, rgb.shape[:2]), levels=[0.5], colors=CONTOUR_COLOUR, linewidths=1.0)
    ax_img.set_axis_off()
    ax_img.set_title("image + ground truth", fontsize=9)
    artist = overlay_heatmap(ax_ov, rgb, amap, mask, alpha=alpha, value_range=value_range, title="anomaly map")
    fig.colorbar(artist, ax=ax_ov, fraction=0.046, label="normalised score")
    if title or title_suffix:
        fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


# ====================================================================== training
def plot_training_curves(history: pd.DataFrame, *, best_epoch: int | None = None, title: str = "Training",
                         title_suffix: str | None = None) -> Figure:
    """Loss per epoch (train, and val when present) and the validation anomaly-map mean per epoch.

    ``history`` has columns ``epoch``, ``train_loss`` and optionally ``val_loss``, ``val_map``
    (the official selection criterion). ``best_epoch`` is marked on both axes.
    """
    if not isinstance(history, pd.DataFrame) or "epoch" not in history or "train_loss" not in history:
        raise ValueError("history must be a DataFrame with columns 'epoch' and 'train_loss' "
                         f"(got {list(getattr(history, 'columns', []))})")
    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    ep = history["epoch"].to_numpy()
    ax_loss.plot(ep, history["train_loss"].to_numpy(), marker=".", label="train loss")
    if "val_loss" in history and history["val_loss"].notna().any():
        ax_loss.plot(ep, history["val_loss"].to_numpy(), marker=".", label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss", fontsize=9)
    if "val_map" in history and history["val_map"].notna().any():
        ax_val.plot(ep, history["val_map"].to_numpy(), marker=".", color="C2", label="val mean anomaly map")
    else:
        ax_val.text(0.5, 0.5, "no validation map recorded", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("mean anomaly map (val normals)")
    ax_val.set_title("validation criterion", fontsize=9)
    if best_epoch is not None:
        for ax in (ax_loss, ax_val):
            ax.axvline(best_epoch, color="k", linestyle="--", linewidth=0.8, label=f"selected epoch {best_epoch}")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


# ====================================================================== examples
def plot_examples_grid(images: Sequence[Any], maps: Sequence[Any], masks: Sequence[Any] | None = None, *,
                       titles: Sequence[str] | None = None, ncols: int | None = None,
                       value_range: tuple[float, float] | None = None, title: str = "",
                       title_suffix: str | None = None, row_labels: Sequence[str] | None = None) -> Figure:
    """A grid of heatmap overlays, one axis per example (row-major, ``ncols`` per row).

    ``value_range`` = one (min, max) for all panels (comparable colours); ``None`` = per-map min-max.
    """
    n = len(images)
    if n == 0 or len(maps) != n or (masks is not None and len(masks) != n) or (titles is not None and len(titles) != n):
        raise ValueError(f"images, maps, masks and titles must have the same non-zero length; got {n} images, "
                         f"{len(maps)} maps, {None if masks is None else len(masks)} masks, "
                         f"{None if titles is None else len(titles)} titles")
    ncols = min(n, ncols or n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(2.0 * ncols + 0.4, 2.1 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        overlay_heatmap(ax, images[i], maps[i], None if masks is None else masks[i], value_range=value_range,
                        title=None if titles is None else titles[i])
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r * ncols].set_axis_on()
            axes[r * ncols].set_xticks([])
            axes[r * ncols].set_yticks([])
            axes[r * ncols].set_ylabel(label, fontsize=8)
    if title or title_suffix:
        fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


_BEST_WORST_LABELS = {
    "anomalous_best": "defects, highest scores",
    "anomalous_worst": "defects, lowest scores (missed)",
    "normal_best": "normals, lowest scores",
    "normal_worst": "normals, highest scores (false alarms)",
}


def plot_best_worst(predictions: Any, selection: Mapping[str, Sequence[int]], *, cfg: Any = None,
                    masks: np.ndarray | None = None, title: str = "Best and worst test images",
                    title_suffix: str | None = None) -> Figure:
    """Overlays of the examples chosen by ``Evaluation.best_worst(k)``: one row per group, k columns.

    Images are read from ``predictions.image_paths`` as RGB (:func:`load_rgb` with ``cfg``, default
    ``predictions.config``); masks from ``masks`` or ``predictions.masks()``. Colours share one
    range: the min and max over all test maps.
    """
    groups = [g for g in _BEST_WORST_LABELS if g in selection and len(selection[g])]
    if not groups:
        raise ValueError(f"selection has no non-empty group among {list(_BEST_WORST_LABELS)}")
    k = max(len(selection[g]) for g in groups)
    cfg = predictions.config if cfg is None else cfg
    if masks is None:
        masks = predictions.masks()
    maps = np.asarray(predictions.maps, dtype=np.float32)
    value_range = (float(maps.min()), float(maps.max()))
    images, amaps, gts, titles = [], [], [], []
    blank = np.zeros(maps.shape[1:], np.float32)
    for g in groups:
        idx = list(selection[g]) + [None] * (k - len(selection[g]))
        for i in idx:
            if i is None:  # fewer examples than k in this group: empty panel
                images.append(np.zeros(maps.shape[1:] + (3,), np.float32))
                amaps.append(blank)
                gts.append(None)
                titles.append("")
                continue
            images.append(load_rgb(predictions.image_paths[i], cfg))
            amaps.append(maps[i])
            gts.append(masks[i])
            titles.append(f"{predictions.defect_types[i]}  s={float(predictions.scores[i]):.3g}")
    return plot_examples_grid(images, amaps, gts, titles=titles, ncols=k, value_range=value_range, title=title,
                              title_suffix=title_suffix, row_labels=[_BEST_WORST_LABELS[g] for g in groups])


# ====================================================================== curves
def _curve(curves: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    c = curves.get(key)
    return c if c is not None and len(np.asarray(c.get("fpr", []))) else None


def plot_roc_curves(curves: Mapping[str, Any], *, title: str = "ROC", title_suffix: str | None = None) -> Figure:
    """Image-level and pixel-level ROC curves (``curves["image_roc"]``, ``curves["pixel_roc"]``: dicts with
    ``fpr``, ``tpr`` and optionally ``auc``), one axis each, with the chance diagonal."""
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, name in zip(axes, ("image_roc", "pixel_roc"), ("image level", "pixel level")):
        _draw_roc(ax, _curve(curves, key), name)
    fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


def _draw_roc(ax: Any, c: Mapping[str, Any] | None, name: str) -> None:
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=0.8)
    if c is None:
        ax.text(0.5, 0.5, "undefined", ha="center", va="center", transform=ax.transAxes)
    else:
        auc = c.get("auc")
        label = f"AUROC {auc:.4f}" if auc is not None and math.isfinite(auc) else None
        ax.plot(np.asarray(c["fpr"]), np.asarray(c["tpr"]), label=label)
        if label:
            ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(name, fontsize=9)


def _draw_pro(ax: Any, curves: Mapping[str, Any], fpr_limit: float) -> None:
    c = _curve(curves, "pro")
    if c is None:
        ax.text(0.5, 0.5, "undefined", ha="center", va="center", transform=ax.transAxes)
    else:
        auc = c.get("auc")
        label = "MVTec PRO" + (f" (AU-PRO {auc:.4f})" if auc is not None and math.isfinite(auc) else "")
        ax.plot(np.asarray(c["fpr"]), np.asarray(c["pro"]), label=label)
    o = _curve(curves, "official_pro")
    if o is not None:
        auc = o.get("auc")
        label = "official 4000-step grid" + (f" (rescaled PRO {auc:.4f})" if auc is not None and math.isfinite(auc) else "")
        sel = np.asarray(o["fpr"]) <= fpr_limit
        ax.plot(np.asarray(o["fpr"])[sel], np.asarray(o["pro"])[sel], linestyle="--", label=label)
    ax.set_xlim(0, fpr_limit)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("per-region overlap")
    ax.set_title(f"PRO (FPR <= {fpr_limit:g})", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7)


def plot_pro_curve(curves: Mapping[str, Any], *, fpr_limit: float = 0.3, title: str = "PRO curve",
                   title_suffix: str | None = None) -> Figure:
    """The MVTec PRO curve up to ``fpr_limit`` (``curves["pro"]``: ``fpr``, ``pro``, ``auc``) and, when present,
    the official code's grid curve (``curves["official_pro"]``) before its min-max rescaling."""
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    _draw_pro(fig.subplots(), curves, fpr_limit)
    fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


def plot_curves(curves: Mapping[str, Any], *, fpr_limit: float = 0.3, title: str = "ROC and PRO curves",
                title_suffix: str | None = None) -> Figure:
    """Image ROC, pixel ROC and PRO side by side (three axes)."""
    fig = Figure(figsize=(10.5, 3.5), layout="constrained")
    a, b, c = fig.subplots(1, 3)
    _draw_roc(a, _curve(curves, "image_roc"), "image level")
    _draw_roc(b, _curve(curves, "pixel_roc"), "pixel level")
    _draw_pro(c, curves, fpr_limit)
    fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


# ====================================================================== per defect type
def plot_per_defect_type(table: pd.DataFrame, metrics: Sequence[str] = ("image_auroc", "pixel_auroc", "au_pro"), *,
                         title: str = "Per defect type", title_suffix: str | None = None) -> Figure:
    """Grouped bars: one group per defect type (``defect_type`` column or the index), one bar per metric.

    Metrics absent from ``table`` are skipped; NaN values leave a gap.
    """
    df = table.reset_index() if "defect_type" not in table.columns else table
    if "defect_type" not in df.columns:
        raise ValueError(f"table needs a 'defect_type' column or index; got columns {list(table.columns)}")
    present = [m for m in metrics if m in df.columns]
    if not present:
        raise ValueError(f"none of the metrics {list(metrics)} is a column of the table ({list(df.columns)})")
    types = [str(t) for t in df["defect_type"]]
    fig = Figure(figsize=(max(4.0, 0.45 * len(types) * len(present) + 2.0), 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(types))
    width = 0.8 / len(present)
    for j, m in enumerate(present):
        values = df[m].to_numpy(dtype=float)
        ok = np.isfinite(values)
        ax.bar((x - 0.4 + width * (j + 0.5))[ok], values[ok], width, label=m, color=f"C{j}")
    ax.set_xticks(x, types, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("metric value")
    ax.legend(fontsize=8, ncols=len(present))
    fig.suptitle(_title(title, title_suffix), fontsize=10)
    return fig


def plot_published_comparison(runs: pd.DataFrame, metric: str = "pixel_auroc",
                              sources: Sequence[str] = ("PAPER", "OFF", "ANO_R18"), *, title: str | None = None,
                              title_suffix: str | None = None) -> Figure:
    """Grouped bars per MVTec category of the run: this run's ``metric`` next to each published source's.

    ``runs`` is :func:`stfpm_lib.reporting.tables.collect_run`'s frame (columns ``category`` and ``metric``).
    Sources without a value for a category leave a gap; non-MVTec categories are left out.
    """

    if "category" not in runs.columns or metric not in runs.columns:
        raise ValueError(f"runs needs columns 'category' and {metric!r}; got {list(runs.columns)}")
    mv = runs[runs["category"].isin(MVTEC_CATEGORIES)]
    if mv.empty:
        raise ValueError(f"no MVTec AD category in the run ({list(runs['category'])}): nothing to compare")
    wide = published_table(metric)
    cols = [s for s in sources if s in wide.columns]
    cats = list(mv["category"])
    fig = Figure(figsize=(max(5.0, 0.35 * len(cats) * (1 + len(cols)) + 2.0), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(cats))
    width = 0.8 / (1 + len(cols))
    series = [("this run", mv[metric].to_numpy(dtype=float))]
    series += [(s, np.array([wide[s].get(c, np.nan) for c in cats], dtype=float)) for s in cols]
    for j, (name, values) in enumerate(series):
        ok = np.isfinite(values)
        ax.bar((x - 0.4 + width * (j + 0.5))[ok], values[ok], width, label=name, color=f"C{j}")
    ax.set_xticks(x, cats, rotation=30, ha="right")
    finite = np.concatenate([v[np.isfinite(v)] for _, v in series])
    ax.set_ylim(max(0.0, float(finite.min()) - 0.05) if finite.size else 0.0, 1.01)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, ncols=min(4, len(series)))
    fig.suptitle(_title(title or f"{metric}: this run vs published", title_suffix), fontsize=10)
    return fig


# ====================================================================== saving
def save_figure(fig: Figure, path: str | os.PathLike, *, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[Path]:
    """Write ``fig`` atomically in each format (``path`` with its suffix replaced); return the paths."""
    base = Path(path)
    if base.suffix.lower() in (".png", ".pdf", ".svg"):
        base = base.with_suffix("")
    out = []
    for fmt in formats:
        target = base.with_name(base.name + f".{fmt.lower()}")
        out.append(atomic_save(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi,
                                                                        bbox_inches="tight")))
    return out
