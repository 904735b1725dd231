"""Curves: training history, ROC and PRO curves (one category or all), score distributions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .style import TEXT_WIDTH_IN, compose_title, styled


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
    fig.suptitle(compose_title(title, title_suffix))
    return fig


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
    fig.suptitle(compose_title(title, title_suffix))
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
    fig.suptitle(compose_title(title, title_suffix))
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
    fig.suptitle(compose_title(title, title_suffix))
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
    fig.suptitle(compose_title(title, title_suffix))
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
    fig.suptitle(compose_title(title, title_suffix))
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
    fig.suptitle(compose_title(title, title_suffix))
    return fig


