"""Tables of a run: per-category metrics, means, and the comparison with the published numbers.

A run directory holds one ``<category>/metrics.json`` per category (see
:func:`stfpm_lib.records.evaluation.write_metrics_json`). ``write_tables`` writes, under
``<run_dir>/tables/``, one CSV, Markdown and LaTeX file per table:

* ``results``: image AUROC, pixel AUROC, AU-PRO (MVTec, FPR ≤ 0.3), the official code's
  rescaled PRO, image/pixel F1, image/pixel AP and pixel IoU-max (when the files have them)
  and training time per category, with means over all categories, textures and objects;
* ``f1``: image/pixel F1 at the best threshold and at the validation-normal threshold;
* ``per_defect_type``: per category and defect type (each type's anomalous images against all
  normal test images; ``(all)``: every anomalous image), every metric the ``metrics.json`` files
  hold under ``per_defect_type`` (also ``per_defect_type.csv`` machine-readable);
* ``compare_<metric>``: this run side by side with every published source that reports
  ``<metric>`` (MVTec categories only), with the difference ours − published.

If any category's teacher was random, every table's title says
``random teacher (not comparable with the paper)``.

CLI: ``python -m stfpm_lib.reporting.tables <run_dir> [--out-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import STFPMConfig
from ..data.mvtec import MVTEC_CATEGORIES, MVTEC_OBJECTS, MVTEC_TEXTURES
from ..io import atomic_write_text
from ..method.weights import RANDOM_TEACHER_LABEL
from ..records.evaluation import read_metrics_json
from .published import load_published, source_labels

__all__ = [
    "ReportError", "MAIN_METRICS", "EXTRA_METRICS", "METRIC_LABELS", "category_group", "collect_run",
    "collect_per_defect_type", "results_table", "f1_table", "per_defect_type_table",
    "comparison_table", "write_tables", "format_markdown", "format_latex", "main",
]

log = logging.getLogger(__name__)

MAIN_METRICS = ("image_auroc", "pixel_auroc", "au_pro", "official_pro", "image_f1", "pixel_f1")
METRIC_LABELS = {
    "image_auroc": "Image AUROC",
    "pixel_auroc": "Pixel AUROC",
    "au_pro": "AU-PRO (MVTec, FPR<=0.3)",
    "official_pro": "PRO (official code, rescaled)",
    "image_f1": "Image F1 (best)",
    "pixel_f1": "Pixel F1 (best)",
    "train_time_s": "Train time (s)",
    "wall_time_s": "Wall time (s)",
    "image_f1_val": "Image F1 (val threshold)",
    "pixel_f1_val": "Pixel F1 (val threshold)",
    "au_pro_orig_res": "AU-PRO (original resolution)",
    "pixel_auroc_orig_res": "Pixel AUROC (original resolution)",
    "image_ap": "Image AP",
    "pixel_ap": "Pixel AP",
    "pixel_iou": "Pixel IoU (best)",
}
#: metrics of newer metrics.json files, shown when the run has them (older runs keep their columns)
EXTRA_METRICS = ("image_ap", "pixel_ap", "pixel_iou")
_COMPARABLE = ("image_auroc", "pixel_auroc", "official_pro", "image_f1")
_MEAN_ROWS = ("mean", "mean (textures)", "mean (objects)")


class ReportError(ValueError):
    """A run directory that cannot be reported (missing or without any metrics.json)."""


def _random_label() -> str:

    return RANDOM_TEACHER_LABEL


def category_group(category: str) -> str:
    """``texture`` or ``object`` for MVTec AD categories, ``other`` for anything else.

    Parameters
    ----------
    category : str
        Category name.

    Returns
    -------
    str
        ``texture``, ``object`` or ``other``.
    """
    if category in MVTEC_TEXTURES:
        return "texture"
    if category in MVTEC_OBJECTS:
        return "object"
    return "other"


def _category_sort_key(category: str) -> tuple[int, str]:
    if category in MVTEC_CATEGORIES:
        return (MVTEC_CATEGORIES.index(category), "")
    return (len(MVTEC_CATEGORIES), category)


# ====================================================================== collecting
def _run_config(run_dir: Path) -> dict | None:
    """The config the batch runner recorded in ``run_dir/run.json`` (None without one)."""


    path = run_dir / "run.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    fields = set(STFPMConfig().to_dict())
    overrides = {k: v for k, v in (record.get("overrides") or {}).items() if k in fields and v is not None}
    cfg = STFPMConfig.from_preset(record.get("preset", "official"), **overrides).to_dict()
    return {k: cfg[k] for k in ("preset", *overrides)}


def _check_against_run(path: Path, config: dict, expected: dict | None) -> None:
    """Refuse a ``metrics.json`` made with another config than the run's (a stale or foreign result)."""
    if expected is None:
        return
    diff = {k: (config.get(k), v) for k, v in expected.items() if config.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}={a!r} (run.json: {b!r})" for k, (a, b) in diff.items())
        raise ReportError(f"{path} was made with another config than {path.parent.parent / 'run.json'}: {shown}; "
                          f"rerun that category (--force) or remove its folder")


def collect_run(run_dir: str | Path) -> pd.DataFrame:
    """One row per ``<run_dir>/<category>/metrics.json``, in MVTec order (other categories after, sorted).

    Columns: category, group, the :data:`MAIN_METRICS` (NaN when absent), train_time_s (from
    ``extra.train_time_s`` or ``metrics.train_time_s``), wall_time_s, teacher_weights (source),
    teacher_name, teacher_sha256, backbone, preset, epochs, then every other metric of the files.
    Raises :class:`ReportError` when the directory is missing or holds no metrics file.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    pandas.DataFrame
        One row per category.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory not found: {run_dir}")
    files = sorted(p for p in run_dir.glob("*/metrics.json") if p.is_file())
    if not files:
        raise ReportError(f"run directory {run_dir} has no <category>/metrics.json file")
    expected = _run_config(run_dir)
    rows, extra_keys = [], []
    for path in files:
        record = read_metrics_json(path)
        category = path.parent.name
        _check_against_run(path, record["config"], expected)
        metrics = record["metrics"]
        extra = record.get("extra") or {}
        config = record["config"]
        tw = record["teacher_weights"]
        train_time = extra.get("train_time_s", metrics.get("train_time_s", math.nan))
        row = {"category": category, "group": category_group(category)}
        row.update({m: float(metrics.get(m, math.nan)) for m in MAIN_METRICS})
        row.update({
            "train_time_s": math.nan if train_time is None else float(train_time),
            "wall_time_s": float(record["wall_time_s"]),
            "teacher_weights": tw.get("source"),
            "teacher_name": tw.get("name"),
            "teacher_sha256": tw.get("sha256"),
            "backbone": config.get("backbone"),
            "preset": config.get("preset"),
            "epochs": config.get("epochs"),
        })
        for key, value in metrics.items():
            if key not in row:
                row[key] = value
                if key not in extra_keys:
                    extra_keys.append(key)
        rows.append(row)
    df = pd.DataFrame(rows)
    df = df.iloc[sorted(range(len(df)), key=lambda i: _category_sort_key(df["category"].iloc[i]))]
    return df.reset_index(drop=True)


def collect_per_defect_type(run_dir: str | Path) -> pd.DataFrame:
    """One row per (category, defect type) of the ``per_defect_type`` entries of ``<run_dir>/<category>/metrics.json``.

    Columns: category, defect_type, teacher_weights (source), then every column of the entries in
    the order the files give them (``n_anomalous``, ``n_normal``, ``image_auroc``, ...; NaN where a
    file lacks one). Categories in :func:`collect_run` order; empty when no file has the entry.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    pandas.DataFrame
        One row per (category, defect type).
    """
    rows = []
    for path in sorted(Path(run_dir).glob("*/metrics.json"), key=lambda p: _category_sort_key(p.parent.name)):
        record = read_metrics_json(path)
        for defect_type, values in (record.get("per_defect_type") or {}).items():
            rows.append({"category": path.parent.name, "defect_type": defect_type,
                         "teacher_weights": record["teacher_weights"].get("source"), **values})
    return pd.DataFrame(rows)


def _is_random(df: pd.DataFrame) -> bool:
    return bool((df["teacher_weights"] == "random").any())


def _means(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows ``mean``, ``mean (textures)``, ``mean (objects)`` (the latter two only if present)."""
    out = []
    for label, sel in (("mean", np.ones(len(df), bool)), ("mean (textures)", df["group"] == "texture"),
                       ("mean (objects)", df["group"] == "object")):
        sel = np.asarray(sel, bool)
        if label != "mean" and not sel.any():
            continue
        if label != "mean" and sel.all():
            continue  # identical to the overall mean
        # skipna=False: a metric missing for one category makes the mean missing, never silently partial
        row = {"category": label, "group": ""}
        row.update({c: float(df.loc[sel, c].mean(skipna=False)) for c in columns})
        out.append(row)
    return pd.DataFrame(out)


# ====================================================================== tables
@dataclass
class _Table:
    name: str
    title: str
    data: pd.DataFrame                 # machine-readable (CSV)
    headers: list[str]                 # display headers
    cells: list[list[str]]             # display cells
    align: list[str]                   # "l" / "r" per column
    n_body: int                        # rows before the mean rows
    notes: list[str] = field(default_factory=list)


def _fmt(value: float, decimals: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _metric_table(df: pd.DataFrame, name: str, title: str, columns: Sequence[str], notes: list[str]) -> _Table:
    """Per-category values of ``columns`` plus the mean rows; times with 1 decimal, metrics with 4."""
    body = df[["category", "group", *columns]]
    data = pd.concat([body, _means(body, columns)], ignore_index=True)
    if (df["group"] == "other").any() and len(df) > 1:
        notes = notes + [f"'mean' is over all {len(df)} categories of the run, including non-MVTec ones."]
    if _is_random(df):
        title += f": {_random_label()}"
        data.insert(0, "warning", _random_label())
    headers = ["Category", "Group"] + [METRIC_LABELS.get(c, c) for c in columns]
    cells = [[str(r["category"]), str(r["group"])] + [_fmt(r[c], 1 if c.endswith("_time_s") else 4) for c in columns]
             for _, r in data.iterrows()]
    return _Table(name, title, data, headers, cells, ["l", "l"] + ["r"] * len(columns), len(body), notes)


def _present(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(pd.to_numeric(df[column], errors="coerce").notna().any())


def results_table(df: pd.DataFrame, run_name: str = "run") -> _Table:
    """Per-category metrics and training time with means over all categories, textures and objects.

    Columns: :data:`MAIN_METRICS`, the :data:`EXTRA_METRICS` (AP, IoU-max) and the original-resolution
    AU-PRO and pixel AUROC when the run computed them, and ``train_time_s``.

    Parameters
    ----------
    df : pandas.DataFrame
        The :func:`collect_run` frame.
    run_name : str
        Run name, in the title.

    Returns
    -------
    _Table
        The table.
    """
    optional = (*EXTRA_METRICS, "au_pro_orig_res", "pixel_auroc_orig_res")
    columns = list(MAIN_METRICS) + [c for c in optional if _present(df, c)]
    notes = ["AU-PRO is the MVTec definition (exact curve, FPR <= 0.3, normalised by 0.3) at the map resolution. "
             "PRO (official code) is the min-max-rescaled variant of gdwang08/STFPM; the two are not comparable. "
             "F1 at the best threshold (an oracle choice on the test set)."]
    if any(c in columns for c in EXTRA_METRICS):
        notes.append("AP = average precision (step-wise sum, as sklearn); IoU = TP / (TP + FP + FN) of all pixels "
                     "pooled, at its best threshold (IoU-max = F1-max / (2 - F1-max)). No published STFPM numbers.")
    return _metric_table(df, "results", f"STFPM results, run {run_name}", columns + ["train_time_s"], notes)


def f1_table(df: pd.DataFrame, run_name: str = "run") -> _Table | None:
    """F1 at the best (test-oracle) threshold and at the threshold from normal validation images (``None`` if absent).

    Parameters
    ----------
    df : pandas.DataFrame
        The :func:`collect_run` frame.
    run_name : str
        Run name, in the title.

    Returns
    -------
    _Table or None
        The table (``None`` when it does not apply).
    """
    columns = [c for c in ("image_f1", "image_f1_val", "pixel_f1", "pixel_f1_val") if _present(df, c)]
    if not any(c.endswith("_val") for c in columns):
        return None
    notes = ["best: threshold maximising F1 on the test set (optimistic). val: threshold = maximum score of the "
             "held-out normal validation images (no test data used); anomalous iff score > threshold."]
    return _metric_table(df, "f1", f"F1 scores, run {run_name}", columns, notes)


def _published_over(wide: pd.Series, categories: Sequence[str], stated: float | None) -> float:
    """Mean of a source's per-category values over ``categories``; the stated mean for all 15."""
    if set(categories) == set(MVTEC_CATEGORIES) and stated is not None and math.isfinite(stated):
        return stated
    values = [wide.get(c, math.nan) for c in categories]
    return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan


def comparison_table(df: pd.DataFrame, metric: str, run_name: str = "run") -> _Table | None:
    """This run vs every published source for ``metric`` on the run's MVTec categories (``None`` if none apply).

    Parameters
    ----------
    df : pandas.DataFrame
        The :func:`collect_run` frame.
    metric : str
        Metric compared.
    run_name : str
        Run name, in the title.

    Returns
    -------
    _Table or None
        The table (``None`` when it does not apply).
    """
    mv = df[df["category"].isin(MVTEC_CATEGORIES)]
    if mv.empty or metric not in df.columns or mv[metric].isna().all():
        return None
    pub = load_published(metrics=metric)
    labels = source_labels()
    cats = list(mv["category"])
    groups = {"mean": cats, "mean (textures)": [c for c in cats if c in MVTEC_TEXTURES],
              "mean (objects)": [c for c in cats if c in MVTEC_OBJECTS]}
    ours_means = _means(mv[["category", "group", metric]], [metric])
    rows = [{"category": c, "group": g, "ours": v} for c, g, v in zip(mv["category"], mv["group"], mv[metric])]
    rows += [{"category": r["category"], "group": "", "ours": r[metric]} for _, r in ours_means.iterrows()]
    data = pd.DataFrame(rows)
    sources, decimals = [], {}
    for sid in labels:
        sub = pub[pub["source_id"] == sid]
        if sub.empty:
            continue
        per_cat = sub[sub["category"] != "mean"].set_index("category")["value"]
        stated = sub.loc[sub["category"] == "mean", "value"]
        stated_mean = float(stated.iloc[0]) if len(stated) else None
        values = []
        for cat in data["category"]:
            if cat in _MEAN_ROWS:
                values.append(_published_over(per_cat, groups[cat], stated_mean if cat == "mean" else None))
            else:
                values.append(float(per_cat.get(cat, math.nan)))
        if not any(math.isfinite(v) for v in values):
            continue
        data[sid] = values
        data[f"delta_{sid}"] = data["ours"] - data[sid]
        sources.append(sid)
        decimals[sid] = int(sub["decimals"].max())
    if not sources:
        return None
    title = f"{METRIC_LABELS[metric]}: run {run_name} vs published"
    notes = ["delta = ours - published. Sources: " + "; ".join(f"{s} = {labels[s]}" for s in sources) + "."]
    if set(cats) == set(MVTEC_CATEGORIES):
        notes.append("Published 'mean' is the mean stated by each source; texture/object means are recomputed "
                     "from its per-category values.")
    else:
        notes.append(f"The run covers {len(cats)} of 15 MVTec categories: published means are recomputed over "
                     "the same categories ('–' where a source lacks one).")
    if metric == "official_pro":
        notes.append("Both columns are the official code's min-max-rescaled PRO (not MVTec AU-PRO).")
    if _is_random(df):
        title += f": {_random_label()}"
        data.insert(0, "warning", _random_label())
    headers = ["Category", "Group", "Ours"]
    for sid in sources:
        headers += [sid, f"Δ {sid}"]
    cells = []
    for _, r in data.iterrows():
        line = [str(r["category"]), str(r["group"]), _fmt(r["ours"], 4)]
        for sid in sources:
            line += [_fmt(r[sid], decimals[sid]), _fmt(r[f"delta_{sid}"], 4, signed=True)]
        cells.append(line)
    return _Table(f"compare_{metric}", title, data, headers, cells, ["l", "l"] + ["r"] * (1 + 2 * len(sources)),
                  len(mv), notes)


# ====================================================================== formatting
def format_markdown(title: str, headers: Sequence[str], cells: Sequence[Sequence[str]], align: Sequence[str],
                    notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown table under a ``###`` title, notes as a paragraph below.

    Parameters
    ----------
    title : str
        Table title.
    headers : sequence of str
        Column headers.
    cells : sequence of sequence of str
        Formatted cells, row by row.
    align : sequence of str
        ``"l"`` or ``"r"`` per column.
    notes : sequence of str
        Notes, joined into one paragraph.

    Returns
    -------
    str
        The Markdown text.
    """
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = [f"### {esc(title)}", "", "| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in cells]
    if notes:
        lines += ["", " ".join(notes)]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "Δ": r"$\Delta$", "–": "--", "<=": r"$\le$", ">=": r"$\ge$", "<": r"$<$", ">": r"$>$",
                  "≤": r"$\le$", "≥": r"$\ge$", "±": r"$\pm$", "†": r"$^\dagger$", "×": r"$\times$"}


def _latex_escape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i:i + 2] in ("<=", ">="):
            out.append(_LATEX_ESCAPES[text[i:i + 2]])
            i += 2
            continue
        out.append(_LATEX_ESCAPES.get(text[i], text[i]))
        i += 1
    return "".join(out)


def format_latex(title: str, headers: Sequence[str], cells: Sequence[Sequence[str]], align: Sequence[str],
                 n_body: int, label: str, notes: Sequence[str] = ()) -> str:
    """A ``table`` environment with booktabs rules (needs ``\\usepackage{booktabs}``); a rule before the means.

    Parameters
    ----------
    title : str
        Table title.
    headers : sequence of str
        Column headers.
    cells : sequence of sequence of str
        Formatted cells, row by row.
    align : sequence of str
        ``"l"`` or ``"r"`` per column.
    n_body : int
        Rows before the mean rows (a rule is drawn there).
    label : str
        LaTeX ``\\label`` of the table.
    notes : sequence of str
        Notes, added to the caption.

    Returns
    -------
    str
        The LaTeX text.
    """
    caption = _latex_escape(title) + ("" if not notes else ". " + _latex_escape(" ".join(notes)))
    lines = ["% requires \\usepackage{booktabs}", "\\begin{table}[ht]", "\\centering", "\\small",
             f"\\caption{{{caption}}}", f"\\label{{{label}}}",
             f"\\begin{{tabular}}{{{''.join(align)}}}", "\\toprule",
             " & ".join(_latex_escape(h) for h in headers) + " \\\\", "\\midrule"]
    for i, row in enumerate(cells):
        if i == n_body and 0 < n_body < len(cells):
            lines.append("\\midrule")
        lines.append(" & ".join(_latex_escape(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def per_defect_type_table(per_type: pd.DataFrame, run_name: str = "run") -> _Table | None:
    """Per category and defect type: the counts and every metric column of :func:`collect_per_defect_type`
    (``None`` when it is empty); metrics with 4 decimals.

    Parameters
    ----------
    per_type : pandas.DataFrame
        The :func:`collect_per_defect_type` frame.
    run_name : str
        Run name, in the title.

    Returns
    -------
    _Table or None
        The table (``None`` when it does not apply).
    """
    if per_type.empty:
        return None
    columns = [c for c in per_type.columns if c not in ("category", "defect_type", "teacher_weights")]
    data = per_type.drop(columns="teacher_weights")
    title = f"Per defect type, run {run_name}"
    if _is_random(per_type):
        title += f": {_random_label()}"
        data.insert(0, "warning", _random_label())
    headers = ["Category", "Defect type"] + [{"n_anomalous": "Anomalous", "n_normal": "Normal"}.get(c) or
                                             METRIC_LABELS.get(c, c) for c in columns]
    cells = [[str(r["category"]), str(r["defect_type"])]
             + [str(int(r[c])) if c.startswith("n_") and math.isfinite(r[c]) else _fmt(r[c], 4) for c in columns]
             for _, r in data.iterrows()]
    notes = ["Each defect type's anomalous images against all normal test images of its category; "
             "'(all)': every anomalous image (the results table's values)."]
    return _Table("per_defect_type", title, data, headers, cells, ["l", "l"] + ["r"] * len(columns), len(data), notes)


def _label(run_name: str, table: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-:._" else "-" for ch in f"{run_name}-{table}")
    return f"tab:{safe}"


def write_tables(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write every table of the run as ``.csv``, ``.md`` and ``.tex`` (atomically); return the paths.

    ``out_dir`` defaults to ``<run_dir>/tables``. Also writes ``tables.md`` with all Markdown tables
    and ``run_summary.csv`` (the :func:`collect_run` frame).

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    out_dir : str or Path, optional
        Where to write (default ``<run_dir>/tables``).

    Returns
    -------
    list of Path
        The written files.
    """
    run_dir = Path(run_dir)
    df = collect_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "tables"
    run_name = run_dir.resolve().name
    tables = [results_table(df, run_name)]
    f1 = f1_table(df, run_name)
    if f1 is not None:
        tables.append(f1)
    per_type = per_defect_type_table(collect_per_defect_type(run_dir), run_name)
    if per_type is not None:
        tables.append(per_type)
    for metric in _COMPARABLE:
        table = comparison_table(df, metric, run_name)
        if table is not None:
            tables.append(table)
    written: list[Path] = []
    all_md = []
    for t in tables:
        md = format_markdown(t.title, t.headers, t.cells, t.align, t.notes)
        all_md.append(md)
        written.append(atomic_write_text(out / f"{t.name}.csv", t.data.to_csv(index=False, float_format="%.6g")))
        written.append(atomic_write_text(out / f"{t.name}.md", md))
        written.append(atomic_write_text(out / f"{t.name}.tex", format_latex(
            t.title, t.headers, t.cells, t.align, t.n_body, _label(run_name, t.name), t.notes)))
    written.append(atomic_write_text(out / "tables.md", "\n".join(all_md)))
    written.append(atomic_write_text(out / "run_summary.csv", df.to_csv(index=False, float_format="%.6g")))
    log.info("wrote %d table files to %s", len(written), out)
    return written


# ====================================================================== CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.reporting.tables <run_dir> [--out-dir DIR]``: write the tables, print their paths.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status (2 on bad input).
    """
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.reporting.tables", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="run directory holding <category>/metrics.json files")
    parser.add_argument("--out-dir", default=None, help="where to write the tables (default <run_dir>/tables)")
    args = parser.parse_args(argv)
    try:
        paths = write_tables(args.run_dir, args.out_dir)
    except (ReportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
