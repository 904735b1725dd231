"""Figures for notebooks and reports; every function returns a :class:`matplotlib.figure.Figure`.

Figures are built with the object API (``Figure()``, no ``pyplot``): no global figure
registry, nothing shown, safe under any backend (Agg in batch runs). In Jupyter a returned
figure displays itself; :func:`save_figure` writes PNG and PDF atomically.

Every plotting function takes ``title_suffix``: a second title line, e.g.
``RANDOM_TEACHER_LABEL`` for a random-teacher run.

Images are RGB. Use :func:`load_rgb` (PIL, RGB, same resize/crop as the network input) or
pass the normalised network input, which :func:`to_rgb` de-normalises; never cv2's BGR.

Style: every figure is built under one seaborn style (:data:`STYLES`, ``thesis`` by default: seaborn
``whitegrid``, the colour-blind-safe ``colorblind`` palette, 8-9 pt fonts at the figures' natural
size, which is at most a thesis text width of 6.3 in); heatmaps use the perceptually uniform,
colour-blind-safe ``inferno`` map with a colour bar. :func:`save_figure` writes PNG at 300 dpi and a
vector PDF at the figure's exact size (``figsize x dpi`` pixels).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..config import STFPMConfig
from ..data import denormalize
from ..data.mvtec import MVTEC_CATEGORIES
from ..data.transforms import read_image_uint8
from ..io import atomic_save
from .published import published_table

__all__ = [
    "to_rgb", "load_rgb", "normalise_map", "overlay_heatmap", "plot_heatmap_overlay", "plot_training_curves",
    "plot_examples_grid", "plot_best_worst", "plot_roc_curves", "plot_pro_curve", "plot_curves",
    "plot_per_defect_type", "plot_published_comparison", "save_figure", "STYLES", "set_style", "figure_style",
    "styled", "plot_image_panel", "plot_category_panel", "plot_roc_all", "plot_pro_all", "plot_score_distributions",
    "write_heatmap_gif", "metric_label", "SOURCE_NAMES", "HEATMAP_CMAP", "DPI", "TEXT_WIDTH_IN",
]

#: Okabe-Ito colours (colour-blind safe): ground-truth contour, thresholded prediction.
CONTOUR_COLOUR = "#56B4E9"
PREDICTION_COLOUR = "#E69F00"
#: Colour map of every heatmap (perceptually uniform, colour-blind safe).
HEATMAP_CMAP = "inferno"
#: Figure width of a full thesis text width, inches.
TEXT_WIDTH_IN = 6.3
DPI = 300

_FONTS = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
          "legend.fontsize": 7.5, "legend.title_fontsize": 8, "figure.titlesize": 10}
#: Named styles: seaborn axes style + palette + font sizes (points at the figure's natural size).
STYLES: dict[str, dict[str, Any]] = {
    "thesis": {"axes_style": "whitegrid", "palette": "colorblind", "rc": _FONTS},
    "slides": {"axes_style": "whitegrid", "palette": "colorblind", "rc": {k: v * 1.4 for k, v in _FONTS.items()}},
}
_current_style = ["thesis"]


def _style_rc(name: str) -> dict[str, Any]:
    if name not in STYLES:
        raise ValueError(f"style={name!r} is not one of {list(STYLES)}")
    spec = STYLES[name]
    rc = dict(sns.axes_style(spec["axes_style"]))
    rc.update(spec["rc"])
    rc["axes.prop_cycle"] = mpl.cycler(color=sns.color_palette(spec["palette"]))
    rc["image.cmap"] = HEATMAP_CMAP
    rc["savefig.dpi"] = DPI
    rc["pdf.fonttype"] = 42  # embedded TrueType: text stays text in the PDF
    return rc


def set_style(name: str) -> None:
    """Make ``name`` (a key of :data:`STYLES`) the style of every figure built from now on.

    Parameters
    ----------
    name : str
        A key of :data:`STYLES`.
    """
    _style_rc(name)
    _current_style[0] = name


@contextlib.contextmanager
def figure_style(name: str | None = None) -> Iterator[None]:
    """Context in which matplotlib uses the style ``name`` (default: the current one, see :func:`set_style`).

    Parameters
    ----------
    name : str, optional
        A key of :data:`STYLES`.

    Yields
    ------
    None
        Inside the style's ``rc_context``.
    """
    with mpl.rc_context(_style_rc(name or _current_style[0])):
        yield


def styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under :func:`figure_style` and lay it out once inside it (tick labels keep its fonts).

    Parameters
    ----------
    func : callable
        A function returning a Figure.

    Returns
    -------
    callable
        The wrapped function.
    """
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with figure_style():
            fig = func(*args, **kwargs)
            fig.draw_without_rendering()
        return fig
    return wrapper


def _title(text: str, suffix: str | None) -> str:
    return f"{text}\n{suffix}" if suffix else text


# ====================================================================== images and maps
def to_rgb(image: Any) -> np.ndarray:
    """RGB float image in [0, 1] of shape (H, W, 3).

    Accepts an ImageNet-normalised tensor/array (3, H, W) (de-normalised with
    :func:`stfpm_lib.data.denormalize`), a uint8 (H, W, 3) RGB array, a float (H, W, 3) array
    in [0, 1], or a grayscale (H, W) array (replicated).

    Parameters
    ----------
    image : array-like or torch.Tensor
        (3, H, W) normalised, (H, W, 3) uint8 or float, or (H, W) grayscale.

    Returns
    -------
    np.ndarray
        float32 (H, W, 3) in [0, 1].
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

    Parameters
    ----------
    path : str or os.PathLike
        Image file.
    cfg : STFPMConfig or mapping
        Size and crop settings.

    Returns
    -------
    np.ndarray
        float32 (S, S, 3) in [0, 1].
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
    """Min-max normalise a 2-D map to [0, 1] (over ``value_range`` if given, else its own min/max).

    Parameters
    ----------
    amap : array-like
        Anomaly map (H, W).
    value_range : tuple of float, optional
        (min, max) to normalise over, in map units.

    Returns
    -------
    np.ndarray
        float32 (H, W) in [0, 1] (zeros for a constant map).
    """
    a = np.asarray(amap, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"anomaly map must be 2-D (H, W); got shape {a.shape}")
    lo, hi = (float(a.min()), float(a.max())) if value_range is None else map(float, value_range)
    if not hi > lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def _draw_contour(ax: Any, mask: Any, shape: tuple[int, int]) -> None:
    """The ground-truth contour (level 0.5 of the mask resized to ``shape``) on ``ax``; nothing for an empty mask."""
    if mask is None:
        return
    m = np.asarray(mask).astype(np.float32)
    if m.shape != tuple(shape):
        m = _resize_to(m, shape)
    if m.max() > 0.5:
        ax.contour(m, levels=[0.5], colors=CONTOUR_COLOUR, linewidths=1.0)


def overlay_heatmap(ax: Any, image: Any, amap: Any, mask: Any = None, *, alpha: float = 0.5,
                    value_range: tuple[float, float] | None = None, title: str | None = None) -> Any:
    """Draw the RGB image, the map in :data:`HEATMAP_CMAP` on top and the GT contour on ``ax``.

    The map is shown in its own units between ``value_range`` (default: its min and max) and
    bilinearly resized to the image size when they differ. Returns the heat image artist (for a
    colour bar, whose values are then the map's).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    image : array-like
        RGB (H, W, 3) or normalised (3, H, W) image (see :func:`to_rgb`).
    amap : array-like
        Anomaly map (h, w).
    mask : array-like, optional
        Ground truth (H, W) bool; ``None`` draws no contour.
    alpha : float
        Opacity of the heatmap.
    value_range : tuple of float, optional
        (min, max) of the colour scale in map units (default: this map's min and max).
    title : str, optional
        Axis title.

    Returns
    -------
    matplotlib.image.AxesImage
        The heat image artist.
    """
    rgb = to_rgb(image)
    a = np.asarray(amap, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"anomaly map must be 2-D (H, W); got shape {a.shape}")
    lo, hi = (float(a.min()), float(a.max())) if value_range is None else map(float, value_range)
    ax.imshow(rgb, interpolation="nearest")
    artist = ax.imshow(_resize_to(a, rgb.shape[:2]), cmap=HEATMAP_CMAP, alpha=alpha, vmin=lo,
                       vmax=hi if hi > lo else lo + 1e-12, interpolation="bilinear")
    _draw_contour(ax, mask, rgb.shape[:2])
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return artist


def _colorbar(fig: Figure, artist: Any, ax: Any, threshold: float | None = None, label: str = "anomaly score (a.u.)"):
    """A colour bar for ``artist`` beside ``ax`` in the map's units, with the threshold marked when given."""
    opaque = mpl.cm.ScalarMappable(norm=artist.norm, cmap=artist.get_cmap())  # the bar without the overlay's alpha
    cbar = fig.colorbar(opaque, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label(label, fontsize=7)
    cbar.ax.tick_params(labelsize=7)
    lo, hi = artist.get_clim()
    if threshold is not None and lo <= threshold <= hi:
        cbar.ax.axhline(threshold, color=PREDICTION_COLOUR, linewidth=1.5)
    return cbar


@styled
def plot_heatmap_overlay(image: Any, amap: Any, mask: Any = None, *, title: str = "", title_suffix: str | None = None,
                         alpha: float = 0.5, value_range: tuple[float, float] | None = None) -> Figure:
    """Two panels: the RGB image with the GT contour, and the heatmap overlay (with a colour bar).

    Parameters
    ----------
    image : array-like
        RGB (H, W, 3) or normalised (3, H, W) image.
    amap : array-like
        Anomaly map (h, w).
    mask : array-like, optional
        Ground truth (H, W) bool.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.
    alpha : float
        Opacity of the heatmap.
    value_range : tuple of float, optional
        (min, max) of the colour scale in map units (default: this map's min and max).

    Returns
    -------
    Figure
        The figure.
    """
    fig = Figure(figsize=(4.7, 2.6), layout="constrained")
    ax_img, ax_ov = fig.subplots(1, 2)
    rgb = to_rgb(image)
    ax_img.imshow(rgb)
    _draw_contour(ax_img, mask, rgb.shape[:2])
    ax_img.set_axis_off()
    ax_img.set_title("image + ground truth")
    artist = overlay_heatmap(ax_ov, rgb, amap, mask, alpha=alpha, value_range=value_range, title="anomaly map")
    _colorbar(fig, artist, ax_ov)
    if title or title_suffix:
        fig.suptitle(_title(title, title_suffix))
    return fig


_PANEL_TITLES = ("image", "ground truth", "anomaly map", "segmentation")


def _panel_row(fig: Figure, axes: Sequence[Any], image: Any, amap: Any, mask: Any, threshold: float | None,
               value_range: tuple[float, float] | None, titles: bool) -> None:
    """image | image + GT contour | heatmap overlay (colour bar, threshold marked) | map > threshold, on 4 axes."""
    rgb = to_rgb(image)
    ax_img, ax_gt, ax_map, ax_seg = axes
    ax_img.imshow(rgb, interpolation="nearest")
    ax_gt.imshow(rgb, interpolation="nearest")
    _draw_contour(ax_gt, mask, rgb.shape[:2])
    artist = overlay_heatmap(ax_map, rgb, amap, mask, value_range=value_range)
    _colorbar(fig, artist, ax_map, threshold)
    ax_seg.imshow(rgb, interpolation="nearest")
    if threshold is not None:
        pred = _resize_to(np.asarray(amap, dtype=np.float32), rgb.shape[:2]) > threshold
        layer = np.zeros(rgb.shape[:2] + (4,), np.float32)
        layer[pred] = (*mpl.colors.to_rgb(PREDICTION_COLOUR), 0.6)
        ax_seg.imshow(layer, interpolation="nearest")
    else:
        ax_seg.text(0.5, 0.5, "no threshold", ha="center", va="center", transform=ax_seg.transAxes)
    _draw_contour(ax_seg, mask, rgb.shape[:2])
    for ax, name in zip(axes, _PANEL_TITLES):
        ax.set_axis_off()
        if titles:
            ax.set_title(name)


def _threshold_note(threshold: float | None, threshold_source: str) -> str:
    return "no threshold" if threshold is None else f"segmentation: score > {threshold:.3f} ({threshold_source})"


@styled
def plot_image_panel(image: Any, amap: Any, mask: Any = None, *, threshold: float | None = None,
                     value_range: tuple[float, float] | None = None, threshold_source: str = "validation normals",
                     title: str = "", title_suffix: str | None = None) -> Figure:
    """One test image in four panels: image | ground-truth contour | heatmap overlay | thresholded segmentation.

    Parameters
    ----------
    image : array-like
        (H, W, 3) RGB or normalised (3, H, W).
    amap : array-like
        (h, w) anomaly map, resized to the image.
    mask : array-like, optional
        (H, W) bool ground truth, or None (normal image).
    threshold : float, optional
        Pixels with ``amap > threshold`` form the segmentation (orange); marked on the colour bar.
    value_range : tuple of float, optional
        (min, max) of the colour scale in map units (default: this map's).
    threshold_source : str
        Where the threshold comes from, stated under the figure.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        Figure of size (6.3, 2.0) inches.
    """
    fig = Figure(figsize=(TEXT_WIDTH_IN, 2.0), layout="constrained")
    _panel_row(fig, fig.subplots(1, 4), image, amap, mask, threshold, value_range, titles=True)
    fig.supxlabel(_threshold_note(threshold, threshold_source), fontsize=7.5)
    if title or title_suffix:
        fig.suptitle(_title(title, title_suffix))
    return fig


@styled
def plot_category_panel(rows: Sequence[Mapping[str, Any]], *, threshold_source: str = "validation normals",
                        title: str = "One test image per category", title_suffix: str | None = None) -> Figure:
    """A one-page panel of all categories, one row each: image | ground truth | heatmap | segmentation.

    ``rows``: mappings with ``category``, ``image``, ``map``, ``mask``, ``threshold``, ``value_range``
    and optionally ``caption`` (e.g. the image name and score). Figure width 6.3 in, 1.55 in per row.

    Parameters
    ----------
    rows : sequence of mapping
        One mapping per category (keys above).
    threshold_source : str
        Where the threshold comes from, stated in the figure.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    if not rows:
        raise ValueError("rows is empty: no category to draw")
    fig = Figure(figsize=(TEXT_WIDTH_IN, 1.55 * len(rows) + 0.7), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), 4, squeeze=False))
    for r, row in enumerate(rows):
        _panel_row(fig, axes[r], row["image"], row["map"], row.get("mask"), row.get("threshold"),
                   row.get("value_range"), titles=r == 0)
        axes[r, 0].set_axis_on()
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        axes[r, 0].grid(False)
        axes[r, 0].set_ylabel(str(row["category"]) + (f"\n{row['caption']}" if row.get("caption") else ""),
                              fontsize=7)
    fig.supxlabel(f"segmentation: score > the category's threshold ({threshold_source})", fontsize=7.5)
    fig.suptitle(_title(title, title_suffix))
    return fig


# ====================================================================== training
def _log_if_decades(ax: Any, values: Sequence[np.ndarray]) -> None:
    """Logarithmic y axis when the positive values span more than a decade (one first epoch would squash the rest)."""
    v = np.concatenate([np.asarray(x, dtype=float) for x in values])
    v = v[np.isfinite(v)]
    if v.size and v.min() > 0 and v.max() / v.min() > 10:
        ax.set_yscale("log")


@styled
def plot_training_curves(history: pd.DataFrame, *, best_epoch: int | None = None, title: str = "Training",
                         title_suffix: str | None = None) -> Figure:
    """Loss per epoch (train, and val when present) and the validation anomaly-map mean per epoch.

    ``history`` has columns ``epoch``, ``train_loss`` and optionally ``val_loss``, ``val_map``
    (the official selection criterion). ``best_epoch`` is marked on both axes. An axis whose
    values span more than a decade is logarithmic. Figure size (6.3, 2.6) inches.

    Parameters
    ----------
    history : pandas.DataFrame
        Per-epoch history (columns above).
    best_epoch : int, optional
        Epoch marked on both axes.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    if not isinstance(history, pd.DataFrame) or "epoch" not in history or "train_loss" not in history:
        raise ValueError("history must be a DataFrame with columns 'epoch' and 'train_loss' "
                         f"(got {list(getattr(history, 'columns', []))})")
    fig = Figure(figsize=(TEXT_WIDTH_IN, 2.6), layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    ep = history["epoch"].to_numpy()
    plotted = [history["train_loss"].to_numpy()]
    ax_loss.plot(ep, plotted[0], marker=".", label="training loss")
    if "val_loss" in history and history["val_loss"].notna().any():
        plotted.append(history["val_loss"].to_numpy())
        ax_loss.plot(ep, plotted[-1], marker=".", label="validation loss")
    _log_if_decades(ax_loss, plotted)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (a.u.)")
    ax_loss.set_title("loss")
    if "val_map" in history and history["val_map"].notna().any():
        ax_val.plot(ep, history["val_map"].to_numpy(), marker=".", color="C2", label="mean anomaly map")
        _log_if_decades(ax_val, [history["val_map"].to_numpy()])
    else:
        ax_val.text(0.5, 0.5, "no validation map recorded", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("mean anomaly score (a.u.)")
    ax_val.set_title("validation criterion (normal images)")
    if best_epoch is not None:
        for ax in (ax_loss, ax_val):
            ax.axvline(best_epoch, color="k", linestyle="--", linewidth=0.8, label=f"selected epoch {best_epoch}")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(_title(title, title_suffix))
    return fig


# ====================================================================== examples
@styled
def plot_examples_grid(images: Sequence[Any], maps: Sequence[Any], masks: Sequence[Any] | None = None, *,
                       titles: Sequence[str] | None = None, ncols: int | None = None,
                       value_range: tuple[float, float] | None = None, title: str = "",
                       title_suffix: str | None = None, row_labels: Sequence[str] | None = None) -> Figure:
    """A grid of heatmap overlays, one axis per example (row-major, ``ncols`` per row), one shared colour bar.

    ``value_range`` = the (min, max) of the colour scale in map units; ``None`` = the min and max
    over all the maps (colours are always comparable between panels).

    Parameters
    ----------
    images : sequence of array-like
        RGB or normalised images.
    maps : sequence of array-like
        Anomaly maps (h, w), one per image.
    masks : sequence of array-like, optional
        Ground truths (H, W) bool, one per image.
    titles : sequence of str, optional
        One per image.
    ncols : int, optional
        Axes per row (default: all in one row).
    value_range : tuple of float, optional
        (min, max) of the colour scale in map units.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.
    row_labels : sequence of str, optional
        Label at the left of each row.

    Returns
    -------
    Figure
        The figure.
    """
    n = len(images)
    if n == 0 or len(maps) != n or (masks is not None and len(masks) != n) or (titles is not None and len(titles) != n):
        raise ValueError(f"images, maps, masks and titles must have the same non-zero length; got {n} images, "
                         f"{len(maps)} maps, {None if masks is None else len(masks)} masks, "
                         f"{None if titles is None else len(titles)} titles")
    if value_range is None:
        value_range = (min(float(np.min(m)) for m in maps), max(float(np.max(m)) for m in maps))
    ncols = min(n, ncols or n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(min(TEXT_WIDTH_IN, 1.7 * ncols + 1.2), 1.75 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    artist = None
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        artist = overlay_heatmap(ax, images[i], maps[i], None if masks is None else masks[i], value_range=value_range,
                                 title=None if titles is None else titles[i])
    _colorbar(fig, artist, list(axes))
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r * ncols].set_axis_on()
            axes[r * ncols].set_xticks([])
            axes[r * ncols].set_yticks([])
            axes[r * ncols].grid(False)
            axes[r * ncols].set_ylabel(label, fontsize=7)
    if title or title_suffix:
        fig.suptitle(_title(title, title_suffix))
    return fig


_BEST_WORST_LABELS = {
    "anomalous_best": "defects, highest scores",
    "anomalous_worst": "defects, lowest scores (missed)",
    "normal_best": "normals, lowest scores",
    "normal_worst": "normals, highest scores (false alarms)",
}


def plot_best_worst(predictions: Any, selection: Mapping[str, Sequence[int]], *, cfg: Any = None,
                    masks: np.ndarray | None = None, images: Sequence[Any] | None = None,
                    title: str = "Best and worst test images",
                    title_suffix: str | None = None) -> Figure:
    """Overlays of the examples chosen by ``Evaluation.best_worst(k)``: one row per group, k columns.

    Images are read from ``predictions.image_paths`` as RGB (:func:`load_rgb` with ``cfg``, default
    ``predictions.config``) unless ``images`` gives every test image already loaded; masks from ``masks`` or
    ``predictions.masks()``. Colours share one
    range: the min and max over all test maps.

    Parameters
    ----------
    predictions : stfpm_lib.records.predictions.Predictions
        Test-split predictions (maps (N, S, S), image paths, config).
    selection : mapping of str to sequence of int
        Group -> test indices, as ``Evaluation.best_worst(k)`` gives.
    cfg : STFPMConfig or mapping, optional
        Size and crop settings (default ``predictions.config``).
    masks : np.ndarray, optional
        Ground truths (N, S, S) (default ``predictions.masks()``).
    images : sequence of array-like, optional
        Every test image already loaded.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
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
    shown, amaps, gts, titles = [], [], [], []
    blank = np.zeros(maps.shape[1:], np.float32)
    for g in groups:
        idx = list(selection[g]) + [None] * (k - len(selection[g]))
        for i in idx:
            if i is None:  # fewer examples than k in this group: empty panel
                shown.append(np.zeros(maps.shape[1:] + (3,), np.float32))
                amaps.append(blank)
                gts.append(None)
                titles.append("")
                continue
            shown.append(load_rgb(predictions.image_paths[i], cfg) if images is None else images[i])
            amaps.append(maps[i])
            gts.append(masks[i])
            titles.append(f"{predictions.defect_types[i]}, score {float(predictions.scores[i]):.3f}")
    return plot_examples_grid(shown, amaps, gts, titles=titles, ncols=k, value_range=value_range, title=title,
                              title_suffix=title_suffix, row_labels=[_BEST_WORST_LABELS[g] for g in groups])


# ====================================================================== curves
_FPR = "false positive rate (fraction)"


def _curve(curves: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    c = curves.get(key)
    return c if c is not None and len(np.asarray(c.get("fpr", []))) else None


def _auc_text(name: str, auc: Any) -> str | None:
    return f"{name} {float(auc):.3f}" if auc is not None and math.isfinite(float(auc)) else None


@styled
def plot_roc_curves(curves: Mapping[str, Any], *, title: str = "ROC", title_suffix: str | None = None) -> Figure:
    """Image-level and pixel-level ROC curves (``curves["image_roc"]``, ``curves["pixel_roc"]``: dicts with
    ``fpr``, ``tpr`` and optionally ``auc``), one axis each, with the chance diagonal.

    Parameters
    ----------
    curves : mapping
        Curves dict with ``image_roc`` and ``pixel_roc``.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    fig = Figure(figsize=(TEXT_WIDTH_IN, 3.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, name in zip(axes, ("image_roc", "pixel_roc"), ("image level", "pixel level")):
        _draw_roc(ax, _curve(curves, key), name)
    fig.suptitle(_title(title, title_suffix))
    return fig


def _roc_axes(ax: Any, name: str) -> None:
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(_FPR)
    ax.set_ylabel("true positive rate (fraction)")
    ax.set_title(name)


def _draw_roc(ax: Any, c: Mapping[str, Any] | None, name: str) -> None:
    _roc_axes(ax, name)
    if c is None:
        ax.text(0.5, 0.5, "undefined", ha="center", va="center", transform=ax.transAxes)
        return
    label = _auc_text(f"{name.split()[0]} AUROC", c.get("auc"))
    ax.plot(np.asarray(c["fpr"]), np.asarray(c["tpr"]), label=label)
    if label:
        ax.legend(loc="lower right")


def _draw_pro(ax: Any, curves: Mapping[str, Any], fpr_limit: float) -> None:
    c = _curve(curves, "pro")
    if c is None:
        ax.text(0.5, 0.5, "undefined", ha="center", va="center", transform=ax.transAxes)
    else:
        auc = _auc_text("AU-PRO", c.get("auc"))
        ax.plot(np.asarray(c["fpr"]), np.asarray(c["pro"]), label="MVTec PRO" + (f" ({auc})" if auc else ""))
    o = _curve(curves, "official_pro")
    if o is not None:
        auc = _auc_text("rescaled PRO", o.get("auc"))
        sel = np.asarray(o["fpr"]) <= fpr_limit
        ax.plot(np.asarray(o["fpr"])[sel], np.asarray(o["pro"])[sel], linestyle="--",
                label="official 4000-step grid" + (f" ({auc})" if auc else ""))
    _pro_axes(ax, fpr_limit)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")


def _pro_axes(ax: Any, fpr_limit: float) -> None:
    ax.set_xlim(0, fpr_limit)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(_FPR)
    ax.set_ylabel("per-region overlap (fraction)")
    ax.set_title(f"PRO up to false positive rate {fpr_limit:g}")


@styled
def plot_pro_curve(curves: Mapping[str, Any], *, fpr_limit: float = 0.3, title: str = "PRO curve",
                   title_suffix: str | None = None) -> Figure:
    """The MVTec PRO curve up to ``fpr_limit`` (``curves["pro"]``: ``fpr``, ``pro``, ``auc``) and, when present,
    the official code's grid curve (``curves["official_pro"]``) before its min-max rescaling.

    Parameters
    ----------
    curves : mapping
        Curves dict with ``pro`` (and optionally ``official_pro``).
    fpr_limit : float
        Largest false-positive rate shown.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    fig = Figure(figsize=(TEXT_WIDTH_IN * 0.6, 3.2), layout="constrained")
    _draw_pro(fig.subplots(), curves, fpr_limit)
    fig.suptitle(_title(title, title_suffix))
    return fig


@styled
def plot_curves(curves: Mapping[str, Any], *, fpr_limit: float = 0.3, title: str = "ROC and PRO curves",
                title_suffix: str | None = None) -> Figure:
    """Image ROC, pixel ROC and PRO side by side (three axes).

    Parameters
    ----------
    curves : mapping
        Curves dict with ``image_roc``, ``pixel_roc`` and ``pro``.
    fpr_limit : float
        Largest false-positive rate of the PRO axis.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    fig = Figure(figsize=(TEXT_WIDTH_IN * 1.4, 3.0), layout="constrained")
    a, b, c = fig.subplots(1, 3)
    _draw_roc(a, _curve(curves, "image_roc"), "image level")
    _draw_roc(b, _curve(curves, "pixel_roc"), "pixel level")
    _draw_pro(c, curves, fpr_limit)
    fig.suptitle(_title(title, title_suffix))
    return fig


_LINESTYLES = ("-", "--", "-.", ":")


def _category_style(k: int) -> dict[str, Any]:
    """Colour (colour-blind palette, 10 colours) and line style of the ``k``-th category: 40 distinct lines."""
    return {"color": f"C{k % 10}", "linestyle": _LINESTYLES[(k // 10) % len(_LINESTYLES)]}


def _check_by_category(curves_by_category: Mapping[str, Mapping[str, Any]]) -> None:
    if not curves_by_category:
        raise ValueError("curves_by_category is empty: no category to draw")


@styled
def plot_roc_all(curves_by_category: Mapping[str, Mapping[str, Any]], *, title: str = "ROC curves of all categories",
                 title_suffix: str | None = None) -> Figure:
    """Image-level and pixel-level ROC curves of every category in one figure; AUROC in the legend.

    ``curves_by_category``: category -> curves dict (``image_roc`` / ``pixel_roc`` with ``fpr``,
    ``tpr``, ``auc``), as :attr:`stfpm_lib.records.evaluation.Evaluation.curves`. Figure (6.3, 3.4) in.

    Parameters
    ----------
    curves_by_category : mapping of str to mapping
        Category -> curves dict.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    _check_by_category(curves_by_category)
    fig = Figure(figsize=(TEXT_WIDTH_IN, 3.4), layout="constrained")
    for ax, key, name in zip(fig.subplots(1, 2), ("image_roc", "pixel_roc"), ("image level", "pixel level")):
        _roc_axes(ax, name)
        for k, (category, curves) in enumerate(curves_by_category.items()):
            c = _curve(curves, key)
            if c is not None:
                auc = _auc_text("AUROC", c.get("auc"))
                ax.plot(np.asarray(c["fpr"]), np.asarray(c["tpr"]), label=f"{category}" + (f" ({auc})" if auc else ""),
                        linewidth=1.0, **_category_style(k))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=6.5)
    fig.suptitle(_title(title, title_suffix))
    return fig


@styled
def plot_pro_all(curves_by_category: Mapping[str, Mapping[str, Any]], *, fpr_limit: float = 0.3,
                 title: str = "PRO curves of all categories", title_suffix: str | None = None) -> Figure:
    """The MVTec PRO curve of every category up to ``fpr_limit``; AU-PRO in the legend. Figure (4.4, 3.4) in.

    Parameters
    ----------
    curves_by_category : mapping of str to mapping
        Category -> curves dict with ``pro``.
    fpr_limit : float
        Largest false-positive rate shown.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    _check_by_category(curves_by_category)
    fig = Figure(figsize=(TEXT_WIDTH_IN * 0.7, 3.4), layout="constrained")
    ax = fig.subplots()
    for k, (category, curves) in enumerate(curves_by_category.items()):
        c = _curve(curves, "pro")
        if c is not None:
            sel = np.asarray(c["fpr"]) <= fpr_limit
            auc = _auc_text("AU-PRO", c.get("auc"))
            ax.plot(np.asarray(c["fpr"])[sel], np.asarray(c["pro"])[sel], linewidth=1.0,
                    label=f"{category}" + (f" ({auc})" if auc else ""), **_category_style(k))
    _pro_axes(ax, fpr_limit)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=6.5)
    fig.suptitle(_title(title, title_suffix))
    return fig


# ====================================================================== bars
def metric_label(metric: str) -> str:
    """``image_auroc`` -> ``image AUROC``: the words used on axes and legends.

    Parameters
    ----------
    metric : str
        Metric column name.

    Returns
    -------
    str
        Its label.
    """
    from .tables import METRIC_LABELS  # same layer; tables never imports figures

    label = METRIC_LABELS.get(metric, metric.replace("_", " "))
    return label[0].lower() + label[1:] if label[:2] != label[:2].upper() else label


@styled
def plot_per_defect_type(table: pd.DataFrame, metrics: Sequence[str] = ("image_auroc", "pixel_auroc", "au_pro"), *,
                         title: str = "Per defect type", title_suffix: str | None = None) -> Figure:
    """Grouped bars: one group per defect type (``defect_type`` column or the index), one bar per metric.

    Metrics absent from ``table`` are skipped; NaN values leave a gap.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per defect type, one column per metric.
    metrics : sequence of str
        Metric columns to draw.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    df = table.reset_index() if "defect_type" not in table.columns else table
    if "defect_type" not in df.columns:
        raise ValueError(f"table needs a 'defect_type' column or index; got columns {list(table.columns)}")
    present = [m for m in metrics if m in df.columns]
    if not present:
        raise ValueError(f"none of the metrics {list(metrics)} is a column of the table ({list(df.columns)})")
    types = [str(t) for t in df["defect_type"]]
    fig = Figure(figsize=(min(TEXT_WIDTH_IN, max(3.5, 0.4 * len(types) * len(present) + 2.0)), 3.0),
                 layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(types))
    width = 0.8 / len(present)
    for j, m in enumerate(present):
        values = df[m].to_numpy(dtype=float)
        ok = np.isfinite(values)
        ax.bar((x - 0.4 + width * (j + 0.5))[ok], values[ok], width, label=metric_label(m), color=f"C{j}")
    ax.set_xticks(x, types, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("metric value (fraction)")
    ax.legend(ncols=len(present), loc="lower right")
    fig.suptitle(_title(title, title_suffix))
    return fig


#: Source ids -> words for legends.
SOURCE_NAMES = {"PAPER": "paper", "OFF": "official README", "ANO_R18": "anomalib (ResNet-18)",
                "ANO_WRN50": "anomalib (WRN-50-2)", "HCW": "hcw-00 reproduction", "HCW_LEGACY": "hcw-00 (legacy code)",
                "XIA": "xiahaifeng1995 reproduction", "PADDLE": "STFPM-Paddle", "PPI": "PPI"}
_GROUP_ORDER = ("texture", "object", "other")
_GROUP_NAMES = {"texture": "textures", "object": "objects", "other": "other categories (no published numbers)"}


def _grouped_categories(categories: Sequence[str], include_other: bool) -> list[tuple[str, str]]:
    """(category, group) in texture, object, other order (MVTec order inside a group)."""
    from .tables import category_group  # same layer; tables never imports figures

    pairs = [(c, category_group(c)) for c in categories]
    if not include_other:
        pairs = [p for p in pairs if p[1] != "other"]
    return sorted(pairs, key=lambda p: (_GROUP_ORDER.index(p[1]), MVTEC_CATEGORIES.index(p[0])
                                       if p[0] in MVTEC_CATEGORIES else 0, p[0]))


def _group_separators(ax: Any, groups: Sequence[str]) -> None:
    """Vertical lines between groups and the group names above the bars."""
    starts = [i for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(groups)
        if start:
            ax.axvline(start - 0.5, color="0.3", linewidth=0.8)
        ax.text((start + end - 1) / 2, 1.0, _GROUP_NAMES[groups[start]], ha="center", va="bottom", fontsize=7,
                transform=ax.get_xaxis_transform())


@styled
def plot_published_comparison(runs: pd.DataFrame, metric: str = "pixel_auroc", sources: Sequence[str] | None = None,
                              *, include_other: bool = False, title: str | None = None,
                              title_suffix: str | None = None) -> Figure:
    """Per-category bars of this run's ``metric`` beside every published source's, textures and objects grouped.

    ``runs`` is :func:`stfpm_lib.reporting.tables.collect_run`'s frame (columns ``category`` and ``metric``).
    ``sources``: source ids (default: all with a value for ``metric``); legends use :data:`SOURCE_NAMES`.
    Sources without a value for a category leave a gap. Non-MVTec categories are left out unless
    ``include_other`` (then drawn last, this run only); with none left a ``ValueError`` is raised.

    Parameters
    ----------
    runs : pandas.DataFrame
        This run's per-category metrics.
    metric : str
        Metric to compare.
    sources : sequence of str, optional
        Published source ids.
    include_other : bool
        Also draw non-MVTec categories.
    title : str, optional
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    if "category" not in runs.columns or metric not in runs.columns:
        raise ValueError(f"runs needs columns 'category' and {metric!r}; got {list(runs.columns)}")
    pairs = _grouped_categories(list(runs["category"]), include_other)
    if not pairs:
        raise ValueError(f"no MVTec AD category in the run ({list(runs['category'])}): nothing to compare")
    cats, groups = [p[0] for p in pairs], [p[1] for p in pairs]
    ours = runs.set_index("category")[metric].astype(float)
    wide = published_table(metric)
    cols = [s for s in (sources if sources is not None else wide.columns) if s in wide.columns]
    series = [("this run", np.array([ours[c] for c in cats], dtype=float))]
    series += [(SOURCE_NAMES.get(s, s), np.array([wide[s].get(c, np.nan) for c in cats], dtype=float)) for s in cols]
    series = [series[0]] + [s for s in series[1:] if np.isfinite(s[1]).any()]
    fig = Figure(figsize=(TEXT_WIDTH_IN, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(cats))
    width = 0.8 / len(series)
    for j, (name, values) in enumerate(series):
        ok = np.isfinite(values)
        ax.bar((x - 0.4 + width * (j + 0.5))[ok], values[ok], width, label=name, color=f"C{j}")
    ax.set_xticks(x, cats, rotation=30, ha="right")
    finite = np.concatenate([v[np.isfinite(v)] for _, v in series])
    ax.set_ylim(max(0.0, float(finite.min()) - 0.05) if finite.size else 0.0, 1.01)
    ax.set_ylabel(f"{metric_label(metric)} (fraction)")
    _group_separators(ax, groups)
    ax.legend(ncols=min(3, len(series)), loc="lower left", fontsize=6.5)
    fig.suptitle(_title(title or f"{metric_label(metric)}: this run and published results", title_suffix))
    return fig


# ====================================================================== score distributions
@styled
def plot_score_distributions(scores_by_category: Mapping[str, Mapping[str, Any]], *, ncols: int = 3,
                             threshold_source: str = "maximum score of the validation normals",
                             title: str = "Image scores of normal and anomalous test images",
                             title_suffix: str | None = None) -> Figure:
    """Histograms of the image scores of normal vs anomalous test images, one panel per category.

    ``scores_by_category``: category -> ``{"scores": (N,), "labels": (N,) 0/1, "threshold": float or None}``;
    the threshold (anomalous iff score > threshold) is a vertical line. Width 6.3 in, 1.9 in per row.

    Parameters
    ----------
    scores_by_category : mapping of str to mapping
        Category -> scores, labels and threshold.
    ncols : int
        Panels per row.
    threshold_source : str
        Where the threshold comes from, stated in the figure.
    title : str
        Figure title.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    Figure
        The figure.
    """
    if not scores_by_category:
        raise ValueError("scores_by_category is empty: no category to draw")
    n = len(scores_by_category)
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(TEXT_WIDTH_IN, 1.9 * nrows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (category, d) in zip(axes, scores_by_category.items()):
        scores, labels = np.asarray(d["scores"], dtype=float), np.asarray(d["labels"]).astype(int)
        bins = np.histogram_bin_edges(scores, bins=20)
        for label, name, colour in ((0, "normal", "C0"), (1, "anomalous", "C1")):
            if (labels == label).any():
                ax.hist(scores[labels == label], bins=bins, histtype="stepfilled", alpha=0.55, color=colour,
                        edgecolor=colour, label=f"{name} ({int((labels == label).sum())})")
        threshold = d.get("threshold")
        if threshold is not None and math.isfinite(float(threshold)):
            ax.axvline(float(threshold), color="k", linestyle="--", linewidth=1.0,
                       label=f"threshold {float(threshold):.3f}")
        ax.set_title(str(category))
        ax.set_xlabel("image score (max of the map, a.u.)")
        ax.set_ylabel("number of images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6.5)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.supxlabel(f"threshold: {threshold_source}; anomalous iff score > threshold", fontsize=7.5)
    fig.suptitle(_title(title, title_suffix))
    return fig


# ====================================================================== animation
def _frame_figure(shape: tuple[int, int], value_range: tuple[float, float]) -> tuple[Figure, Any, Any, Any]:
    """A reusable two-panel figure (image | heatmap overlay with colour bar) for GIF frames."""
    fig = Figure(figsize=(3.6, 2.0), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)  # pixels to read back
    ax_img, ax_map = fig.subplots(1, 2)
    blank = np.zeros(shape + (3,), np.float32)
    im_rgb = ax_img.imshow(blank)
    im_bg = ax_map.imshow(blank)
    heat = ax_map.imshow(np.zeros(shape, np.float32), cmap=HEATMAP_CMAP, alpha=0.5, vmin=value_range[0],
                         vmax=value_range[1], interpolation="bilinear")
    _colorbar(fig, heat, ax_map)
    for ax in (ax_img, ax_map):
        ax.set_axis_off()
    return fig, (ax_img, ax_map), (im_rgb, im_bg), heat


def write_heatmap_gif(images: Sequence[Any], maps: Sequence[Any], path: str | os.PathLike, *,
                      masks: Sequence[Any] | None = None, titles: Sequence[str] | None = None,
                      value_range: tuple[float, float] | None = None, title_suffix: str | None = None,
                      frame_ms: int = 700) -> Path:
    """An animated GIF cycling through ``images`` (RGB) with their heatmaps (one shared colour scale), atomically.

    Each frame: the image | the heatmap overlay with the GT contour and a colour bar; ``titles`` (one
    per image) and ``title_suffix`` above. ``frame_ms`` milliseconds per frame, looping.

    Parameters
    ----------
    images : sequence of array-like
        RGB or normalised images.
    maps : sequence of array-like
        Anomaly maps (h, w), one per image.
    path : str or os.PathLike
        The GIF file.
    masks : sequence of array-like, optional
        Ground truths (H, W) bool, one per image.
    titles : sequence of str, optional
        One per image.
    value_range : tuple of float, optional
        (min, max) of the shared colour scale in map units (default: over all maps).
    title_suffix : str, optional
        Second line of each frame's title.
    frame_ms : int
        Milliseconds per frame.

    Returns
    -------
    Path
        The GIF's path.
    """
    from PIL import Image  # only the GIF writer needs PIL

    n = len(images)
    if n == 0 or len(maps) != n or (titles is not None and len(titles) != n) or (masks is not None and len(masks) != n):
        raise ValueError(f"images, maps, masks and titles must have the same non-zero length; got {n} images, "
                         f"{len(maps)} maps")
    if value_range is None:
        value_range = (min(float(np.min(m)) for m in maps), max(float(np.max(m)) for m in maps))
    frames = []
    with figure_style():
        rgb0 = to_rgb(images[0])
        fig, axes, (im_rgb, im_bg), heat = _frame_figure(rgb0.shape[:2], value_range)
        for i in range(n):
            rgb = to_rgb(images[i])
            im_rgb.set_data(rgb)
            im_bg.set_data(rgb)
            heat.set_data(_resize_to(np.asarray(maps[i], dtype=np.float32), rgb.shape[:2]))
            for c in list(axes[1].collections):
                c.remove()
            _draw_contour(axes[1], None if masks is None else masks[i], rgb.shape[:2])
            fig.suptitle(_title(titles[i] if titles is not None else f"image {i + 1} of {n}", title_suffix),
                         fontsize=8)
            fig.canvas.draw()
            frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
    palette = frames[0].quantize(colors=255, method=Image.Quantize.MEDIANCUT)  # one palette: small, no flicker
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    return atomic_save(Path(path), lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, optimize=True,
                                                              append_images=frames[1:], duration=frame_ms, loop=0))


# ====================================================================== saving
def save_figure(fig: Figure, path: str | os.PathLike, *, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = DPI) -> list[Path]:
    """Write ``fig`` atomically in each format (``path`` with its suffix replaced); return the paths.

    PNG at ``dpi`` (300) of exactly ``figsize x dpi`` pixels (no tight cropping: the constrained
    layout keeps everything inside); PDF is vector (images inside it stay raster).

    Parameters
    ----------
    fig : Figure
        The figure.
    path : str or os.PathLike
        Target path (its suffix is replaced).
    formats : sequence of str
        File formats.
    dpi : int
        PNG resolution, dots per inch.

    Returns
    -------
    list of Path
        The written files.
    """
    base = Path(path)
    if base.suffix.lower() in (".png", ".pdf", ".svg"):
        base = base.with_suffix("")
    out = []
    with figure_style():
        for fmt in formats:
            target = base.with_name(base.name + f".{fmt.lower()}")
            out.append(atomic_save(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi)))
    return out
