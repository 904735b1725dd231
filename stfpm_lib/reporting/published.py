"""Published STFPM numbers (paper, official code, anomalib, other reproductions), with their sources.

The numbers live in ``stfpm_lib/reporting/published/stfpm_published.csv`` (tidy long format, one number
per row; see ``stfpm_lib/reporting/published/SOURCES.md`` for where each came from)::

    df = load_published(metrics="pixel_auroc")
    wide = published_table("pixel_auroc")      # categories × sources
    check_means()                              # stated means vs recomputed ones

``official_pro`` is the official code's min-max-rescaled PRO, **not** MVTec AU-PRO.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.mvtec import MVTEC_CATEGORIES

__all__ = [
    "PUBLISHED_DIR", "PUBLISHED_CSV", "SOURCE_IDS", "METRICS", "COLUMNS", "PublishedDataError",
    "load_published", "source_labels", "published_table", "check_means",
]

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
PUBLISHED_CSV = PUBLISHED_DIR / "stfpm_published.csv"
SOURCE_IDS = ("PAPER", "OFF", "ANO_R18", "ANO_WRN50", "HCW", "HCW_LEGACY", "XIA", "PADDLE", "PPI")
METRICS = ("image_auroc", "pixel_auroc", "official_pro", "image_f1")
COLUMNS = ("source_id", "source", "category", "metric", "value", "decimals", "backbone", "note", "reference_section")
_CATEGORY_ORDER = MVTEC_CATEGORIES + ("mean",)


class PublishedDataError(ValueError):
    """The published-numbers CSV is malformed; the message names the file and the row."""


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _validate(df: pd.DataFrame, path: Path) -> None:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise PublishedDataError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)}")
    checks = (
        ("source_id", ~df["source_id"].isin(SOURCE_IDS), f"one of {list(SOURCE_IDS)}"),
        ("metric", ~df["metric"].isin(METRICS), f"one of {list(METRICS)}"),
        ("category", ~df["category"].isin(_CATEGORY_ORDER), "an MVTec AD category or 'mean'"),
        ("value", ~df["value"].between(0.0, 1.0), "a fraction in [0, 1]"),
        ("decimals", ~df["decimals"].isin([1, 2, 3, 4, 5, 6]), "an integer 1..6"),
    )
    for column, bad, expected in checks:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = df[column].iloc[row]
            value = value.item() if hasattr(value, "item") else value
            raise PublishedDataError(f"{path}: row {row + 2}: {column}={value!r} is not {expected}")
    dup = df.duplicated(["source_id", "category", "metric"])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise PublishedDataError(f"{path}: row {row + 2}: duplicate (source_id, category, metric) "
                                 f"{tuple(str(v) for v in df.iloc[row][['source_id', 'category', 'metric']])}")


def load_published(*, sources: str | Iterable[str] | None = None, metrics: str | Iterable[str] | None = None,
                   categories: str | Iterable[str] | None = None, path: str | Path | None = None) -> pd.DataFrame:
    """All published numbers as a long DataFrame, optionally filtered.

    Parameters
    ----------
    sources, metrics, categories : str or iterable of str, optional
        Keep only these source ids, metrics, categories.
    path : str or Path, optional
        Another CSV of the same format (default: the packaged one).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`; ``value`` is a float fraction, ``decimals`` the number of decimals
        the source printed. Rows in source, metric and MVTec category order (``mean`` last).

    Raises
    ------
    PublishedDataError
        A malformed CSV (file and row named).
    """
    csv_path = Path(path) if path is not None else PUBLISHED_CSV
    if not csv_path.is_file():
        raise PublishedDataError(f"published-numbers file not found: {csv_path}")
    df = pd.read_csv(csv_path, dtype={"value": float, "decimals": int, "reference_section": str},
                     keep_default_na=False)
    _validate(df, csv_path)
    for name, wanted in (("source_id", _as_tuple(sources)), ("metric", _as_tuple(metrics)),
                         ("category", _as_tuple(categories))):
        if wanted is not None:
            df = df[df[name].isin(wanted)]
    order = (df["source_id"].map(SOURCE_IDS.index) * 10_000 + df["metric"].map(METRICS.index) * 100
             + df["category"].map(_CATEGORY_ORDER.index))
    return df.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def source_labels() -> dict[str, str]:
    """Human-readable name of each source.

    Returns
    -------
    dict of str to str
        ``source_id`` → label, in :data:`SOURCE_IDS` order.
    """
    df = load_published()
    labels = dict(zip(df["source_id"], df["source"]))
    return {sid: labels[sid] for sid in SOURCE_IDS if sid in labels}


def published_table(metric: str, *, sources: Iterable[str] | None = None) -> pd.DataFrame:
    """Wide table of one metric.

    Parameters
    ----------
    metric : str
    sources : iterable of str, optional
        Source ids (default: all).

    Returns
    -------
    pandas.DataFrame
        Index = category (MVTec order, ``mean`` last), columns = source ids; missing numbers are NaN,
        sources without any value for ``metric`` are left out.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not one of {list(METRICS)}")
    df = load_published(metrics=metric, sources=sources)
    wide = df.pivot(index="category", columns="source_id", values="value")
    rows = [c for c in _CATEGORY_ORDER if c in wide.index]
    cols = [s for s in SOURCE_IDS if s in wide.columns]
    wide = wide.loc[rows, cols]
    wide.columns.name = None
    return wide


def check_means(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stated means against the mean of the per-category values, for every source/metric with all 15
    categories.

    The tolerance is half a unit of the last printed decimal for the mean plus the same for the
    (rounded) values.

    Parameters
    ----------
    df : pandas.DataFrame, optional
        As :func:`load_published` returns it (default: all published numbers).

    Returns
    -------
    pandas.DataFrame
        Columns ``source_id, metric, stated, recomputed, difference, tolerance, ok``.
    """
    df = load_published() if df is None else df
    out = []
    for (sid, metric), group in df.groupby(["source_id", "metric"], sort=False):
        per_cat = group[group["category"] != "mean"]
        stated = group[group["category"] == "mean"]
        if stated.empty or set(per_cat["category"]) != set(MVTEC_CATEGORIES):
            continue
        recomputed = float(per_cat["value"].mean())
        tol = 0.5 * 10.0 ** -int(stated["decimals"].iloc[0]) + 0.5 * 10.0 ** -int(per_cat["decimals"].max()) + 1e-12
        diff = recomputed - float(stated["value"].iloc[0])
        out.append({"source_id": sid, "metric": metric, "stated": float(stated["value"].iloc[0]),
                    "recomputed": recomputed, "difference": diff, "tolerance": tol, "ok": abs(diff) <= tol})
    return pd.DataFrame(out, columns=["source_id", "metric", "stated", "recomputed", "difference", "tolerance", "ok"])
