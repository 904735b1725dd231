"""Figures of an ablation study, drawn from its tables (``STUDY_DIR/tables/results.csv`` and ``compare.csv``).

* :func:`plot_variant_metrics`: one group of bars per variant (layer subset, backbone, teacher ...),
  one bar per metric, the height the mean over seeds and the error bar ± 1 std over seeds.
* :func:`plot_factor_deltas`: a factor × metric heatmap of the difference to the baseline, each cell
  annotated with ``Δ`` and its seed std, ``†`` where the difference is within the seed noise.
* :func:`write_ablation_figures`: both for a study directory, PNG (300 dpi) + PDF in ``STUDY_DIR/figures/``,
  titles labelled when a teacher was random.

The tables are written by :func:`stfpm_lib.reporting.study_tables.write_study_tables`; this module
only reads them (CSV), so a figure can be redrawn without the jobs' files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..method.weights import RANDOM_TEACHER_LABEL
from .figures import TEXT_WIDTH_IN, compose_title, metric_label, save_figure, styled  # same layer: one title rule
from .study_tables import DAGGER, StudyResultsError, _is_random, load_study_results

__all__ = ["ABLATION_METRICS", "plot_variant_metrics", "plot_factor_deltas", "write_ablation_figures", "main"]

#: Metrics drawn by default (names as in ``metrics.json`` and the study tables).
ABLATION_METRICS = ("image_auroc", "pixel_auroc", "au_pro")


def _check_columns(frame: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing}; it has {list(frame.columns)}")


@styled
def plot_variant_metrics(results: pd.DataFrame, metrics: Sequence[str] = ABLATION_METRICS, *, category: str = "mean",
                         order: Sequence[str] | None = None, title: str = "Variants",
                         title_suffix: str | None = None) -> Figure:
    """Grouped bars of each variant's metrics with seed error bars.

    Parameters
    ----------
    results : pandas.DataFrame
        ``tables/results.csv``: columns ``variant``, ``category``, ``n_seeds`` and ``<metric>_mean``,
        ``<metric>_std`` (std over seeds, NaN with one seed).
    metrics : sequence of str, default=ABLATION_METRICS
    category : str, default="mean"
        The rows drawn: a category, or ``mean`` (the mean over categories).
    order : sequence of str, optional
        Variants in drawing order (default: the table's order).
    title, title_suffix : str
        The title; the suffix (e.g. the random-teacher label) goes on a second line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_columns(results, ["variant", "category"] + [f"{m}_{k}" for m in metrics for k in ("mean", "std")],
                   "results table")
    rows = results[results["category"] == category].set_index("variant")
    if rows.empty:
        raise ValueError(f"results table has no rows for category {category!r}; it has {sorted(set(results['category']))}")
    variants = list(order) if order is not None else list(rows.index)
    fig = Figure(figsize=(min(TEXT_WIDTH_IN, max(3.5, 0.3 * len(variants) * len(metrics) + 1.5)), 3.2),
                 layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(variants))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        mean = rows.loc[variants, f"{m}_mean"].to_numpy(float)
        std = np.nan_to_num(rows.loc[variants, f"{m}_std"].to_numpy(float))
        ax.bar(x - 0.4 + width * (j + 0.5), mean, width, yerr=std, capsize=2, label=metric_label(m), color=f"C{j}")
    ax.set_xticks(x, variants, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("variant")
    ax.set_ylabel("metric value (fraction)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, ncols=len(metrics), loc="outside lower center")
    fig.suptitle(compose_title(f"{title} ({'mean over categories' if category == 'mean' else category}); "
                        "bars: mean over seeds, error bars: ± 1 std", title_suffix))
    return fig


@styled
def plot_factor_deltas(compare: pd.DataFrame, metrics: Sequence[str] = ABLATION_METRICS, *, category: str = "mean",
                       title: str = "Effect of each factor", title_suffix: str | None = None) -> Figure:
    """Heatmap of ``variant − baseline`` per factor (rows) and metric (columns), seed noise in each cell.

    Parameters
    ----------
    compare : pandas.DataFrame
        ``tables/compare.csv``: columns ``metric``, ``variant``, ``category``, ``delta``,
        ``seed_std_delta`` and ``exceeds_noise``.
    metrics : sequence of str, default=ABLATION_METRICS
    category : str, default="mean"
        A category, or ``mean`` (over categories).
    title, title_suffix : str

    Returns
    -------
    matplotlib.figure.Figure
        Cells read ``+0.012 ± 0.004``; ``†`` marks a difference within the seed noise; a diverging
        colour scale centred on 0 with its colour bar.
    """
    _check_columns(compare, ["metric", "variant", "category", "delta", "seed_std_delta", "exceeds_noise"],
                   "comparison table")
    rows = compare[(compare["category"] == category) & compare["metric"].isin(metrics)]
    if rows.empty:
        raise ValueError(f"comparison table has no rows for category {category!r} and metrics {list(metrics)}")
    variants = list(dict.fromkeys(rows["variant"]))
    cell = rows.set_index(["variant", "metric"])
    delta = np.array([[cell.loc[(v, m), "delta"] if (v, m) in cell.index else np.nan for m in metrics]
                      for v in variants], dtype=float)
    limit = float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 1.0
    fig = Figure(figsize=(min(TEXT_WIDTH_IN, 1.4 * len(metrics) + 2.2), 0.32 * len(variants) + 1.4),
                 layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(delta, cmap="RdBu", vmin=-max(limit, 1e-6), vmax=max(limit, 1e-6), aspect="auto")
    ax.grid(False)  # the style's grid lines would cross the cells
    for i, v in enumerate(variants):
        for j, m in enumerate(metrics):
            if (v, m) in cell.index and np.isfinite(delta[i, j]):
                row = cell.loc[(v, m)]
                noise = "" if bool(row["exceeds_noise"]) else DAGGER
                sd = f" ± {row['seed_std_delta']:.3f}" if np.isfinite(row["seed_std_delta"]) else ""
                dark = abs(delta[i, j]) > 0.6 * limit  # white text on the saturated ends of the scale
                ax.text(j, i, f"{delta[i, j]:+.3f}{sd}{noise}", ha="center", va="center", fontsize=6.5,
                        color="white" if dark else "black")
    ax.set_xticks(np.arange(len(metrics)), [metric_label(m) for m in metrics])
    ax.set_yticks(np.arange(len(variants)), variants)
    ax.set_xlabel("metric")
    ax.set_ylabel("factor (variant)")
    fig.colorbar(image, ax=ax, label="difference to the baseline (metric units)")
    fig.suptitle(compose_title(f"{title} ({'mean over categories' if category == 'mean' else category}); "
                        f"{DAGGER}: within the seed noise", title_suffix))
    return fig


def write_ablation_figures(study_dir: str | Path, metrics: Sequence[str] = ABLATION_METRICS,
                           category: str = "mean") -> dict[str, list[Path]]:
    """Both figures of a study whose tables exist, in ``STUDY_DIR/figures/`` (PNG + PDF).

    Parameters
    ----------
    study_dir : str or path-like
        A study directory with ``tables/results.csv`` (and ``tables/compare.csv`` for the deltas,
        absent with a single variant).
    metrics : sequence of str, default=ABLATION_METRICS
    category : str, default="mean"
        A category, or ``mean`` (over categories; the only category for a one-category study).

    Returns
    -------
    dict of str to list of Path
        ``{"variants": [png, pdf], "deltas": [png, pdf]}`` (no ``deltas`` without a comparison table).

    Raises
    ------
    StudyResultsError
        The directory or its tables are missing.
    """
    study_dir = Path(study_dir)
    tables = study_dir / "tables"
    if not (tables / "results.csv").is_file():
        raise StudyResultsError(f"{tables / 'results.csv'} not found: write the study tables first "
                                "(python -m stfpm_lib.reporting.study_tables STUDY_DIR)")
    study = load_study_results(study_dir)
    if category == "mean" and len(study.spec["categories"]) == 1:  # one category: the tables have no mean rows
        category = study.spec["categories"][0]
    suffix = RANDOM_TEACHER_LABEL if _is_random(study) else None
    name = study.spec["name"]
    out = study_dir / "figures"
    written = {"variants": save_figure(plot_variant_metrics(pd.read_csv(tables / "results.csv"), metrics,
                                                            category=category, order=study.variants,
                                                            title=f"Study {name}", title_suffix=suffix),
                                       out / "variants")}
    if (tables / "compare.csv").is_file():
        fig = plot_factor_deltas(pd.read_csv(tables / "compare.csv"), metrics, category=category,
                                 title=f"Study {name}: difference to {_baseline(study)}", title_suffix=suffix)
        written["deltas"] = save_figure(fig, out / "deltas")
    return written


def _baseline(study: Any) -> str:
    return study.spec.get("baseline") or study.variants[0]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.reporting.ablation_figures STUDY_DIR [--category C] [--metrics a,b]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 (with ``error: ...`` on stderr) on bad input.
    """
    p = argparse.ArgumentParser(prog="python -m stfpm_lib.reporting.ablation_figures", description=__doc__.split("\n")[0])
    p.add_argument("study_dir")
    p.add_argument("--category", default="mean")
    p.add_argument("--metrics", default=",".join(ABLATION_METRICS))
    args = p.parse_args(argv)
    try:
        written = write_ablation_figures(args.study_dir, [m.strip() for m in args.metrics.split(",")], args.category)
    except (StudyResultsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for paths in written.values():
        print(" ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
