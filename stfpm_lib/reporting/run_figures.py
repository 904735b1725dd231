"""Every figure of a finished run, drawn from what the run left on disk (no network is run again).

Inputs per category (``<run_dir>/<category>/``): ``predictions_test.npz`` (the cached anomaly maps,
scores, masks and image paths), ``predictions_val.npz`` (the held-out normal validation images),
``metrics.json`` (metrics and the validation threshold) and ``history.csv`` (training curves).
The test images themselves are read again from the paths recorded in the predictions (RGB).

Output (``<run_dir>/figures/`` by default; every static figure as PNG at 300 dpi and vector PDF)::

    roc_curves, pro_curves            image/pixel ROC and PRO (FPR <= 0.3) of all categories
    compare_<metric>                  per-category bars of this run beside the published numbers
    score_distributions               normal vs anomalous image scores with the threshold
    all_categories                    one row per category: image | GT | heatmap | segmentation
    <category>/training_curves        loss, validation criterion, selected epoch
    <category>/best_worst             best and worst test images
    <category>/test_images.gif        animation over all test images with their heatmaps
    <category>/images/<type>_<name>   the four-panel figure of every test image
    manifest.json                     every file written, with its caption (read by the HTML report)

The segmentation threshold is the one the metrics use for ``pixel_f1_val``: the maximum anomaly
score over the normal validation images (no test image involved); it is stated on every figure.

CLI: ``python -m stfpm_lib.reporting.run_figures RUN_DIR [--categories a,b] [--style thesis] [--no-per-image]``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import metrics as M
from ..data.demo import DEMO_NAME, demo_root
from ..io import atomic_write_text
from ..method.weights import RANDOM_TEACHER_LABEL
from ..records.evaluation import Evaluation, MetricsFileError, read_metrics_json
from ..records.predictions import Predictions, PredictionsError, load_predictions
from . import figures as F
from .published import METRICS as PUBLISHED_METRICS
from .tables import ReportError, collect_run

__all__ = ["CategoryData", "FIGURES_DIR", "MANIFEST", "load_category", "category_curves", "run_categories", "image_path",
           "preview_png",
           "write_run_figures", "main"]

FIGURES_DIR = "figures"
MANIFEST = "manifest.json"


@dataclass
class CategoryData:
    """What the figures of one category need: test predictions, masks (N, S, S), the validation threshold.

    Attributes
    ----------
    category : str
        Category name.
    predictions : Predictions
        Test-split predictions (maps (N, S, S), scores (N,), labels (N,)).
    masks : np.ndarray
        Ground truths, bool (N, S, S).
    threshold : float, optional
        Validation threshold in map units (``pixel_f1_val_threshold``, else the maximum map value
        of the validation normals; ``None`` without either).
    n_val : int
        Number of validation images (0 without ``predictions_val.npz``).
    metrics : dict of str to float
        The ``metrics`` of ``metrics.json``.
    history : pandas.DataFrame, optional
        ``history.csv``.
    best_epoch : int, optional
        The selected epoch (``extra.best_epoch``).
    random_teacher : bool
        The teacher was randomly initialised.
    """

    category: str
    predictions: Predictions
    masks: np.ndarray
    threshold: float | None
    n_val: int
    metrics: dict[str, float]
    history: pd.DataFrame | None
    best_epoch: int | None
    random_teacher: bool

    @property
    def label(self) -> str | None:
        """The title suffix: :data:`~stfpm_lib.data.demo.RANDOM_TEACHER_LABEL` for a random teacher, else None."""
        return RANDOM_TEACHER_LABEL if self.random_teacher else None

    @property
    def threshold_source(self) -> str:
        return f"max score of the {self.n_val} normal validation images"


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def load_category(run_dir: str | Path, category: str) -> CategoryData:
    """Read ``<run_dir>/<category>``'s predictions, metrics and history; errors name the missing file.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    category : str
        Category name.

    Returns
    -------
    CategoryData
        The category's data.
    """
    cat_dir = Path(run_dir) / category
    test = load_predictions(cat_dir / "predictions_test.npz")
    val_path = cat_dir / "predictions_val.npz"
    val = load_predictions(val_path) if val_path.is_file() else None
    record = read_metrics_json(cat_dir / "metrics.json")
    metrics = record["metrics"]
    threshold = _finite(metrics.get("pixel_f1_val_threshold"))
    if threshold is None and val is not None:
        threshold = float(np.max(val.maps))
    history_path = cat_dir / "history.csv"
    history = pd.read_csv(history_path) if history_path.is_file() else None
    best = (record.get("extra") or {}).get("best_epoch")
    return CategoryData(category, test, np.asarray(test.masks()), threshold, 0 if val is None else len(val),
                        metrics, history, None if best is None else int(best),
                        record["teacher_weights"].get("source") == "random")


def category_curves(data: CategoryData, fpr_limit: float = 0.3) -> dict[str, dict[str, Any]]:
    """Image ROC, pixel ROC and PRO curves from the cached maps; ``auc`` values from ``metrics.json``.

    Parameters
    ----------
    data : CategoryData
        The category's data.
    fpr_limit : float
        Largest false-positive rate of the PRO curve.

    Returns
    -------
    dict of str to dict
        ``image_roc``, ``pixel_roc`` and ``pro`` curves (those that can be computed).
    """
    p = data.predictions
    maps = np.asarray(p.maps, dtype=np.float32)
    labels = np.asarray(p.labels).astype(int)
    out: dict[str, dict[str, Any]] = {}
    if 0 < labels.sum() < len(labels):
        roc = M.roc_curve(np.asarray(p.scores, dtype=np.float32), labels)
        out["image_roc"] = {"fpr": roc.fpr, "tpr": roc.tpr, "auc": data.metrics.get("image_auroc")}
    if data.masks.any() and (~data.masks).any():
        pix = M.pixel_roc_curve(maps, data.masks, max_points=2000)
        out["pixel_roc"] = {"fpr": pix.fpr, "tpr": pix.tpr, "auc": data.metrics.get("pixel_auroc")}
        pro = M.pro_curve(maps, data.masks, fpr_limit)
        out["pro"] = {"fpr": pro.fpr, "pro": pro.pro, "auc": data.metrics.get("au_pro")}
    return out


def run_categories(run_dir: str | Path, categories: str | Sequence[str] | None = None) -> list[str]:
    """``categories`` (``None``/``"all"``/``"a,b"``/a list) checked against the run's ``<category>/metrics.json``.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    categories : str or sequence of str, optional
        ``None``/``"all"``, comma-separated names or a list.

    Returns
    -------
    list of str
        The categories.
    """
    found = sorted(p.parent.name for p in Path(run_dir).glob("*/metrics.json"))
    if not found:
        raise ReportError(f"run directory {run_dir} has no <category>/metrics.json file")
    if categories in (None, "", "all"):
        return found
    names = [categories] if isinstance(categories, str) else list(categories)
    names = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ReportError(f"categories {unknown} have no metrics.json in {run_dir}; found: {found}")
    return names


class _Writer:
    """Saves figures under ``out`` and records them (path relative to ``out``, caption) for the manifest."""

    def __init__(self, out: Path, total: int = 0, on_figure: Callable[[int, int], None] | None = None) -> None:
        self.out = out
        self.entries: list[dict[str, str]] = []
        self.total, self.on_figure = total, on_figure

    def _added(self, entry: dict[str, str]) -> None:
        self.entries.append(entry)
        if self.on_figure is not None:
            self.on_figure(len(self.entries), max(self.total, len(self.entries)))

    def figure(self, fig: Figure, name: str, caption: str, kind: str, *, pdf: bool = True) -> None:
        paths = F.save_figure(fig, self.out / name, formats=("png", "pdf") if pdf else ("png",))
        entry = {"name": name, "png": str(paths[0].relative_to(self.out)), "caption": caption, "kind": kind}
        if pdf:
            entry["pdf"] = str(paths[1].relative_to(self.out))
        self._added(entry)

    def file(self, path: Path, caption: str, kind: str) -> None:
        self._added({"name": str(path.relative_to(self.out).with_suffix("")),
                     "png": str(path.relative_to(self.out)), "caption": caption, "kind": kind})


def image_path(predictions: Predictions, i: int, data_root: str | Path | None = None) -> Path:
    """The ``i``-th test image file: its recorded path, else the same path under ``data_root`` (a moved dataset).

    Without ``data_root``, a run made on the embedded demo dataset (recorded root ``.../demo_data/piped``)
    is looked up in this package's copy, so a committed run (e.g. ``results/demo``) draws on any clone.

    Parameters
    ----------
    predictions : Predictions
        Test-split predictions.
    i : int
        Test image index.
    data_root : str or Path, optional
        Where the dataset is now.

    Returns
    -------
    Path
        The image file.
    """
    recorded = Path(str(predictions.image_paths[i]))
    if recorded.is_file():
        return recorded
    root = Path(str(predictions.dataset.get("root", "")))
    new_root = Path(data_root) if data_root not in (None, "") else \
        (demo_root() if (root.name, root.parent.name) == (DEMO_NAME, "demo_data") else None)
    if new_root is not None:
        try:
            moved = new_root / recorded.relative_to(root)
        except ValueError:
            moved = None
        if moved is not None and moved.is_file():
            return moved
    raise FileNotFoundError(f"test image {recorded} (recorded in {predictions.path}) not found"
                            + (f", nor under data_root {new_root}" if new_root is not None else
                               "; pass data_root= the dataset's new location"))


def _value_range(data: CategoryData) -> tuple[float, float]:
    maps = np.asarray(data.predictions.maps, dtype=np.float32)
    return float(maps.min()), float(maps.max())


def _image_caption(data: CategoryData, i: int) -> str:
    p = data.predictions
    return f"{Path(str(p.image_paths[i])).name} ({p.defect_types[i]}), score {float(p.scores[i]):.3f}"


def _per_image(w: _Writer, data: CategoryData, images: list[np.ndarray], pdf: bool) -> None:
    p, vr = data.predictions, _value_range(data)
    for i, image in enumerate(images):
        name = f"{data.category}/images/{p.defect_types[i]}_{Path(str(p.image_paths[i])).stem}"
        fig = F.plot_image_panel(image, p.maps[i], data.masks[i] if data.masks[i].any() else None,
                                 threshold=data.threshold, value_range=vr, threshold_source=data.threshold_source,
                                 title=f"{data.category}: {_image_caption(data, i)}", title_suffix=data.label)
        w.figure(fig, name, f"{data.category}: {_image_caption(data, i)}", "image", pdf=pdf)


def _category_figures(w: _Writer, data: CategoryData, *, per_image: bool, per_image_pdf: bool, gif: bool, k: int,
                      data_root: str | Path | None) -> dict[str, Any]:
    """The figures of one category; returns its row of the all-categories panel."""
    p, cat = data.predictions, data.category
    images = [F.load_rgb(image_path(p, i, data_root), p.config) for i in range(len(p))]
    if data.history is not None:
        w.figure(F.plot_training_curves(data.history, best_epoch=data.best_epoch, title=f"{cat}: training",
                                        title_suffix=data.label), f"{cat}/training_curves",
                 f"{cat}: training and validation loss, validation criterion, selected epoch {data.best_epoch}",
                 "training")
    sel = Evaluation(metrics={}, per_defect_type=pd.DataFrame(), curves={}, scores=np.asarray(p.scores),
                     labels=np.asarray(p.labels), defect_types=np.asarray(p.defect_types),
                     image_paths=np.asarray(p.image_paths)).best_worst(k)  # its selection rule, on the cached scores
    w.figure(F.plot_best_worst(p, sel, masks=data.masks, images=images, title=f"{cat}: best and worst test images",
                               title_suffix=data.label), f"{cat}/best_worst", f"{cat}: best and worst test images",
             "gallery")
    if gif:
        path = F.write_heatmap_gif(images, list(p.maps), w.out / cat / "test_images.gif", masks=list(data.masks),
                                   titles=[f"{cat}: {_image_caption(data, i)}" for i in range(len(p))],
                                   value_range=_value_range(data), title_suffix=data.label)
        w.file(path, f"{cat}: all {len(p)} test images with their heatmaps (animation)", "animation")
    if per_image:
        _per_image(w, data, images, per_image_pdf)
    anomalous = np.flatnonzero(np.asarray(p.labels) == 1)
    order = anomalous[np.argsort(np.asarray(p.scores)[anomalous], kind="stable")] if anomalous.size else \
        np.argsort(-np.asarray(p.scores), kind="stable")
    i = int(order[len(order) // 2]) if anomalous.size else int(order[0])
    return {"category": cat, "image": images[i], "map": p.maps[i], "mask": data.masks[i],
            "threshold": data.threshold, "value_range": _value_range(data),
            "caption": f"{p.defect_types[i]}, score {float(p.scores[i]):.3f}"}


def _run_figures(w: _Writer, run_dir: Path, datas: list[CategoryData], rows: list[dict[str, Any]], label: str | None,
                 fpr_limit: float) -> None:
    """The figures over all categories: curves, published comparison, score distributions, the one-page panel."""
    curves = {d.category: category_curves(d, fpr_limit) for d in datas}
    w.figure(F.plot_roc_all(curves, title_suffix=label), "roc_curves", "Image- and pixel-level ROC curves", "curves")
    w.figure(F.plot_pro_all(curves, fpr_limit=fpr_limit, title_suffix=label), "pro_curves",
             f"PRO curves up to a false positive rate of {fpr_limit:g}", "curves")
    runs = collect_run(run_dir)
    runs = runs[runs["category"].isin([d.category for d in datas])]
    for metric in PUBLISHED_METRICS:
        if metric in runs and runs[metric].notna().any():
            w.figure(F.plot_published_comparison(runs, metric, include_other=True, title_suffix=label),
                     f"compare_{metric}", f"{F.metric_label(metric)}: this run beside the published results",
                     "comparison")
    scores = {d.category: {"scores": d.predictions.scores, "labels": d.predictions.labels, "threshold": d.threshold}
              for d in datas}
    w.figure(F.plot_score_distributions(scores, threshold_source="max score of the normal validation images",
                                        title_suffix=label), "score_distributions",
             "Image scores of normal and anomalous test images, with the validation threshold", "scores")
    w.figure(F.plot_category_panel(rows, threshold_source="max score of the normal validation images",
                                   title="Median-score defective test image of each category", title_suffix=label),
             "all_categories", "One defective test image per category (the one of median score)", "panel")


def _n_test(category_dir: Path) -> int:
    """The number of test images a category's ``metrics.json`` records (0 when it does not say)."""
    counts = read_metrics_json(category_dir / "metrics.json").get("dataset", {}).get("counts", {})
    return sum(int(n) for key, n in counts.items() if key.startswith("test_"))


def write_run_figures(run_dir: str | Path, out_dir: str | Path | None = None,
                      categories: str | Sequence[str] | None = None, *, style: str = "thesis", per_image: bool = True,
                      per_image_pdf: bool = False, gif: bool = True, k: int = 3, fpr_limit: float = 0.3,
                      data_root: str | Path | None = None,
                      on_figure: Callable[[int, int], None] | None = None) -> list[dict[str, str]]:
    """Write every figure of the run (see the module docstring) and ``manifest.json``; return the manifest.

    Parameters
    ----------
    run_dir : str or Path
        Run directory with ``<category>/predictions_test.npz``, ``metrics.json``, ``history.csv``.
    out_dir : str or Path, optional
        Default ``<run_dir>/figures``.
    categories : str or sequence of str, optional
        ``None``/``"all"`` or names (comma-separated or a list).
    style : str
        A key of :data:`stfpm_lib.reporting.figures.STYLES`.
    per_image : bool
        Also the four-panel figure of every test image (PNG).
    per_image_pdf : bool, default=False
        Also a vector PDF of each per-image figure (about 2/3 of their time and disk; every other
        figure always has its PDF).
    gif : bool
        Also the animated GIF of each category.
    k : int
        Best/worst examples per group.
    fpr_limit : float
        Largest false-positive rate of the PRO curves.
    data_root : str or Path, optional
        Where the test images are now, if the dataset moved since the run (see :func:`image_path`).
    on_figure : callable, optional
        ``on_figure(done, total)`` after each figure file (a progress display; ``total`` is estimated
        from the test-image counts in ``metrics.json``).

    Returns
    -------
    list of dict of str to str
        The manifest's figure entries.
    """
    run_dir = Path(run_dir)
    names = run_categories(run_dir, categories)
    F.set_style(style)
    total = sum(2 + gif + (_n_test(run_dir / name) if per_image else 0) for name in names) + 4 + len(PUBLISHED_METRICS)
    w = _Writer(Path(out_dir) if out_dir is not None else run_dir / FIGURES_DIR, total, on_figure)
    datas, rows = [], []
    for name in names:
        data = load_category(run_dir, name)
        rows.append(_category_figures(w, data, per_image=per_image, per_image_pdf=per_image_pdf, gif=gif, k=k,
                                      data_root=data_root))
        datas.append(data)
    label = RANDOM_TEACHER_LABEL if any(d.random_teacher for d in datas) else None
    _run_figures(w, run_dir, datas, rows, label, fpr_limit)
    manifest = {"run_dir": run_dir.name, "categories": names, "style": style, "random_teacher": label is not None,
                "figures": w.entries}
    atomic_write_text(w.out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return w.entries


def preview_png(path: str | Path, width: int = 800) -> bytes:
    """A ``width``-pixel-wide PNG preview of a figure file (for notebooks: the 300 dpi files stay on disk).

    Parameters
    ----------
    path : str or Path
        A figure file.
    width : int
        Preview width, pixels.

    Returns
    -------
    bytes
        The PNG.
    """
    from PIL import Image  # lazy: only for the GIF frames

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        buffer = io.BytesIO()
        im.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.reporting.run_figures RUN_DIR ...``: write the figures, print their folder.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status (2 on bad input).
    """
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.reporting.run_figures", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out-dir", default=None, help="default RUN_DIR/figures")
    parser.add_argument("--categories", default="all", help="'all' (default) or a comma-separated list")
    parser.add_argument("--style", default="thesis", help=f"one of {list(F.STYLES)}")
    parser.add_argument("--no-per-image", action="store_true", help="skip the figure of every test image")
    parser.add_argument("--no-gif", action="store_true", help="skip the animated GIFs")
    parser.add_argument("--per-image-pdf", action="store_true", help="also a PDF of every per-image figure")
    args = parser.parse_args(argv)
    try:
        entries = write_run_figures(args.run_dir, args.out_dir, args.categories, style=args.style,
                                    per_image=not args.no_per_image, per_image_pdf=args.per_image_pdf,
                                    gif=not args.no_gif)
    except (ReportError, MetricsFileError, PredictionsError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(entries)} figures in {Path(args.out_dir) if args.out_dir else Path(args.run_dir) / FIGURES_DIR}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
