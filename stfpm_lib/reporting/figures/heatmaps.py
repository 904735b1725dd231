"""Images and anomaly maps: overlays, image panels, example grids, best/worst galleries, animated GIFs.

Images are RGB. Use :func:`load_rgb` (PIL, RGB, same resize/crop as the network input) or
pass the normalised network input, which :func:`to_rgb` de-normalises; never cv2's BGR.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...config import STFPMConfig
from ...data import denormalize
from ...data.transforms import read_image_uint8
from ...io import atomic_save
from .style import CONTOUR_COLOUR, HEATMAP_CMAP, PREDICTION_COLOUR, TEXT_WIDTH_IN, compose_title, figure_style, styled


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
        fig.suptitle(compose_title(title, title_suffix))
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
        fig.suptitle(compose_title(title, title_suffix))
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
    fig.suptitle(compose_title(title, title_suffix))
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
        fig.suptitle(compose_title(title, title_suffix))
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
            fig.suptitle(compose_title(titles[i] if titles is not None else f"image {i + 1} of {n}", title_suffix),
                         fontsize=8)
            fig.canvas.draw()
            frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
    palette = frames[0].quantize(colors=255, method=Image.Quantize.MEDIANCUT)  # one palette: small, no flicker
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    return atomic_save(Path(path), lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, optimize=True,
                                                              append_images=frames[1:], duration=frame_ms, loop=0))


