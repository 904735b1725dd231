"""Comparisons: metrics per defect type, and this run beside the published numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...data.mvtec import MVTEC_CATEGORIES
from ..published import published_table
from .style import TEXT_WIDTH_IN, compose_title, metric_label, styled


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
    fig.suptitle(compose_title(title, title_suffix))
    return fig


#: Source ids -> words for legends.
SOURCE_NAMES = {"PAPER": "paper", "OFF": "official README", "ANO_R18": "anomalib (ResNet-18)",
                "ANO_WRN50": "anomalib (WRN-50-2)", "HCW": "hcw-00 reproduction", "HCW_LEGACY": "hcw-00 (legacy code)",
                "XIA": "xiahaifeng1995 reproduction", "PADDLE": "STFPM-Paddle", "PPI": "PPI"}
_GROUP_ORDER = ("texture", "object", "other")
_GROUP_NAMES = {"texture": "textures", "object": "objects", "other": "other categories (no published numbers)"}


def _grouped_categories(categories: Sequence[str], include_other: bool) -> list[tuple[str, str]]:
    """(category, group) in texture, object, other order (MVTec order inside a group)."""
    from ..tables import category_group  # same layer; tables never imports figures

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
    fig.suptitle(compose_title(title or f"{metric_label(metric)}: this run and published results", title_suffix))
    return fig


