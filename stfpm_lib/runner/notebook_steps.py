"""Small orchestration helpers that keep the notebooks thin (parameters in, tables out).

The notebooks' parameters cells are flat: ``category``, ``data_root``, ``out_dir``, ``preset``
and any :class:`~stfpm_lib.config.STFPMConfig` field (``None`` = the preset's value).
:func:`config_from_namespace` turns such a namespace (``globals()`` of a notebook, after
papermill injected its parameters) into a config.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CONFIG_FIELDS, RUNTIME_FIELDS, STFPMConfig, config_differences, parse_field
from ..io import sha256_file
from .progress import report_progress

# The torch-, pandas- and matplotlib-based layers (data, engine, records.evaluation) are imported inside the
# functions that use them ("lazy"): the notebook runner imports this module for its config reading only.

__all__ = [
    "CONFIG_FIELDS", "RUNTIME_FIELDS", "PREDICTIONS_TEST", "PREDICTIONS_VAL", "METRICS_NAME", "config_overrides",
    "config_from_namespace", "resolve_notebook_data_root", "resolve_category", "resolve_out_dir", "teacher_label",
    "counts_table", "epoch_logger", "check_checkpoint_config", "expected_config", "evaluate_category", "run_category",
    "CategoryEvaluation", "plot_dataset_examples", "figures_progress", "RESULTS_ENV", "results_root", "resolve_run_dir", "notebook_config",
    "metrics_table",
]

#: File names inside a category directory (``results/runs/<run>/<category>/``).
PREDICTIONS_TEST = "predictions_test.npz"
PREDICTIONS_VAL = "predictions_val.npz"
METRICS_NAME = "metrics.json"
#: The environment variable that sets the results root (:func:`results_root`).
RESULTS_ENV = "STFPM_RESULTS"

def config_overrides(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The ``STFPMConfig`` fields set in ``namespace`` (``None`` values mean "the preset's").

    ``crop_size = 0`` means "no crop" (``None`` already means "the preset's value"). Strings
    (papermill's ``-p``, a hand-edited parameters cell) are typed by :func:`~stfpm_lib.config.parse_field`:
    ``loss_half = "no"`` is ``False``, ``epochs = "abc"`` raises ``ConfigError`` naming ``epochs``.

    Parameters
    ----------
    namespace : mapping of str to Any
        A notebook's parameters (e.g. ``globals()``).

    Returns
    -------
    dict of str to Any
        Typed ``STFPMConfig`` overrides.
    """
    values = {}
    for key in CONFIG_FIELDS:
        value = parse_field(key, namespace[key]) if key in namespace else None
        if value is not None:
            values[key] = value
    if values.get("crop_size") == 0:
        values["crop_size"] = None
    return values


def config_from_namespace(namespace: Mapping[str, Any], preset: str | None = None) -> STFPMConfig:
    """``STFPMConfig.from_preset(namespace["preset"], **config_overrides(namespace))``.

    Parameters
    ----------
    namespace : mapping of str to Any
        A notebook's parameters.
    preset : str, optional
        Preset used in place of ``namespace["preset"]`` (default ``official`` when neither is set).

    Returns
    -------
    STFPMConfig
        The configuration.
    """
    name = preset if preset is not None else namespace.get("preset") or "official"
    return STFPMConfig.from_preset(name, **config_overrides(namespace))


def resolve_notebook_data_root(data_root: str | os.PathLike | None) -> Path:
    """``data_root``, else ``$MVTEC_ROOT``, else the embedded demo dataset (interactive use).

    Parameters
    ----------
    data_root : str or os.PathLike, optional
        Dataset root.

    Returns
    -------
    Path
        The dataset root.
    """
    from ..data.mvtec import resolve_data_root  # lazy: see the note at the imports

    return resolve_data_root(data_root, demo_fallback=True)


def resolve_category(data_root: str | os.PathLike, category: str | None) -> str:
    """``category``, checked to exist under ``data_root``; ``None`` -> the first category found.

    Parameters
    ----------
    data_root : str or os.PathLike
        Dataset root.
    category : str, optional
        Category name.

    Returns
    -------
    str
        The category.
    """
    from ..data.mvtec import DataError, index_category, list_categories  # lazy: see the note at the imports

    if category in (None, ""):
        found = list_categories(data_root)
        if not found:
            raise DataError(f"data root {data_root} contains no category (no <category>/train/good)")
        return found[0]
    index_category(data_root, category)  # raises DataError listing the categories found
    return str(category)


def results_root() -> Path:
    """Where results go by default: ``$STFPM_RESULTS``, else ``results/`` of the source checkout, else ``./results``.

    Never relative to the working directory of a source checkout: a notebook opened in JupyterLab (whose
    working directory is ``notebooks/``), run by papermill from the repository root, or run from any other
    folder writes to the same place.

    Returns
    -------
    Path
        The results root (absolute).
    """
    env = os.environ.get(RESULTS_ENV, "")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "stfpm_lib").is_dir():
        return checkout / "results"
    return Path.cwd().resolve() / "results"


def resolve_out_dir(out_dir: str | os.PathLike | None, category: str | None) -> Path:
    """``out_dir`` if given, else ``<results root>/notebooks/<category>`` (interactive use, git-ignored); created.

    Parameters
    ----------
    out_dir : str or os.PathLike, optional
        Output folder.
    category : str, optional
        Category name (``run`` when None).

    Returns
    -------
    Path
        The created folder.
    """
    path = Path(out_dir) if out_dir not in (None, "") else results_root() / "notebooks" / (category or "run")
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_run_dir(run_dir: str | os.PathLike | None) -> Path:
    """``run_dir`` if given, else the latest run under ``<results root>/runs`` (the newest ``run.json``).

    What ``04_report`` and ``05_figures`` read when opened with their defaults: right after
    ``make reproduce`` that is its run (``results/runs/demo`` on the embedded demo).

    Parameters
    ----------
    run_dir : str or os.PathLike, optional
        A run directory.

    Returns
    -------
    Path
        The run directory.

    Raises
    ------
    ReportError
        ``run_dir`` is not a directory, or none is given and there is no run (the message says what to do).
    """
    from ..reporting.tables import ReportError  # lazy: see the note at the imports

    if run_dir not in (None, ""):
        path = Path(run_dir)
        if not path.is_dir():
            raise ReportError(f"run directory not found: {path} (run_dir is relative to the working directory "
                              f"{Path.cwd()}; give an absolute path, or None for the latest run)")
        return path
    runs = results_root() / "runs"
    found = sorted(runs.glob("*/run.json"), key=lambda p: (p.stat().st_mtime, str(p)))
    if not found:
        raise ReportError(f"no run under {runs}: make one with `make reproduce` (or `stfpm reproduce`), or set "
                          f"run_dir to a run directory (e.g. the committed results/demo)")
    return found[-1].parent


def notebook_config(namespace: Mapping[str, Any], data_root: str | os.PathLike) -> tuple[STFPMConfig, str | None]:
    """The config of a training notebook, with the demo run's settings when it is opened by hand on the demo data.

    Opened by hand (``run_dir`` is ``None``: the runner always sets it) on the embedded demo dataset,
    the fields left ``None`` take the runner's demo settings (:data:`~stfpm_lib.runner.teacher.DEMO_OVERRIDES`)
    and, without ``teacher_weights``, the demo's teacher (ImageNet weights when they can be had, else
    the labelled random teacher, with a warning banner), as ``make reproduce`` does. Everything else
    is :func:`config_from_namespace` (MVTec AD keeps the official defaults).

    Parameters
    ----------
    namespace : mapping of str to Any
        A notebook's parameters (e.g. ``globals()``).
    data_root : str or os.PathLike
        The resolved dataset root.

    Returns
    -------
    tuple of (STFPMConfig, str or None)
        The config and the random-teacher banner (``None`` unless the demo fell back).
    """
    from ..data.mvtec import is_demo_root  # lazy: see the note at the imports

    if namespace.get("run_dir") is not None or not is_demo_root(data_root):
        return config_from_namespace(namespace), None
    from .teacher import DEMO_OVERRIDES, banner, demo_teacher_weights  # lazy: it loads torch (the weights)

    given = config_overrides(namespace)
    values = {**dict(namespace), **{k: v for k, v in DEMO_OVERRIDES.items() if k not in given}}
    warning = None
    if "teacher_weights" not in given:
        values["teacher_weights"], warning = demo_teacher_weights(config_from_namespace(values).backbone)
    return config_from_namespace(values), banner(warning) if warning else None


def metrics_table(metrics: Mapping[str, Any], name: str, decimals: int = 4):
    """One column of metrics as a researcher reads them: fixed decimals, counts as integers, ``n/a`` when undefined.

    Parameters
    ----------
    metrics : mapping of str to number or None
        Metric name -> value.
    name : str
        The column's name (e.g. the category).
    decimals : int, default=4
        Decimals of the non-integer values.

    Returns
    -------
    pandas.DataFrame
        One column of formatted values, indexed by metric.

    Examples
    --------
    >>> metrics_table({"image_auroc": 0.52734375, "n_test": 64, "pro": None}, "bottle")
                 bottle
    image_auroc  0.5273
    n_test           64
    pro             n/a
    """
    import pandas as pd  # lazy: see the note at the imports

    def text(value: Any) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "n/a"
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return str(int(value))
        return f"{float(value):.{decimals}f}"

    cells = {key: text(value) for key, value in metrics.items()}
    width = max(map(len, cells.values()), default=0)
    return pd.DataFrame({name: {key: cell.rjust(width) for key, cell in cells.items()}})


def teacher_label(teacher: STFPMConfig | Mapping[str, Any] | str | None) -> str:
    """``RANDOM_TEACHER_LABEL`` for a random teacher (config, weights description or spec), else ``""``.

    Parameters
    ----------
    teacher : STFPMConfig, mapping, str or None
        A config, a teacher-weights description or a weights spec.

    Returns
    -------
    str
        The label, or ``""``.
    """
    if isinstance(teacher, STFPMConfig):
        source = teacher.teacher_weights
    elif isinstance(teacher, Mapping):
        source = teacher.get("source") or teacher.get("teacher_weights") or teacher.get("name")
    else:
        source = teacher
    if source == "random":
        from ..method.weights import RANDOM_TEACHER_LABEL  # lazy: see the note at the imports

        return RANDOM_TEACHER_LABEL
    return ""


def counts_table(data_root: str | os.PathLike, categories: list[str] | None = None):
    """Images per split and defect type: a DataFrame with one row per (category, split, defect_type).

    Columns: ``category``, ``split`` (``train`` | ``test``), ``defect_type``, ``images``, ``masks``.

    Parameters
    ----------
    data_root : str or os.PathLike
        Dataset root.
    categories : list of str, optional
        Categories (default: all found).

    Returns
    -------
    pandas.DataFrame
        One row per (category, split, defect_type).
    """
    import pandas as pd  # lazy: see the note at the imports

    from ..data.mvtec import index_category, list_categories

    rows = []
    for category in categories or list_categories(data_root):
        index = index_category(data_root, category)
        rows.append({"category": category, "split": "train", "defect_type": "good",
                     "images": len(index.train), "masks": 0})
        per_type: dict[str, list[int]] = {}
        for sample in index.test:
            entry = per_type.setdefault(sample.defect_type, [0, 0])
            entry[0] += 1
            entry[1] += sample.mask_path is not None
        for defect_type, (images, masks) in per_type.items():
            rows.append({"category": category, "split": "test", "defect_type": defect_type,
                         "images": images, "masks": masks})
    return pd.DataFrame(rows, columns=["category", "split", "defect_type", "images", "masks"])


def epoch_logger(category: str, epochs: int, *, every: int = 1, printer: Callable[[str], None] = print
                 ) -> Callable[[Mapping[str, Any]], None]:
    """A ``fit(log=...)`` callback printing one line per ``every`` epochs (and the last one).

    Under the batch runner the lines stream into ``<category>/02_train.log``, and the epoch, loss and
    an ETA go to the runner's live progress line (:func:`stfpm_lib.runner.progress.report_progress`).

    Parameters
    ----------
    category : str
        Category name, printed on each line.
    epochs : int
        Total epochs.
    every : int
        Print every this many epochs.
    printer : callable
        Called with each line.

    Returns
    -------
    callable
        The ``log(row)`` callback.
    """
    times: list[float] = []

    def log(row: Mapping[str, Any]) -> None:
        epoch = int(row["epoch"])
        times.append(float(row["epoch_time_s"]))
        report_progress(step="02_train", epoch=epoch, epochs=epochs, loss=float(row["train_loss"]),
                        eta_s=sum(times) / len(times) * max(0, epochs - epoch))  # the runner's live line
        if epoch % max(1, every) == 0 or epoch == epochs:
            printer(f"[{category}] epoch {epoch}/{epochs}  train_loss {row['train_loss']:.5f}  "
                    f"val_loss {row['val_loss']:.5f}  val_map {row['val_map']:.5g}  ({row['epoch_time_s']:.1f} s)")
    return log


def figures_progress(done: int, total: int) -> None:
    """``write_run_figures(on_figure=...)``: the figures drawn so far, for the runner's progress line.

    Parameters
    ----------
    done : int
        Figure files written.
    total : int
        Figure files expected.
    """
    report_progress(step="05_figures", done=done, total=total)


def check_checkpoint_config(checkpoint_config: Mapping[str, Any], cfg: STFPMConfig, where: str = "checkpoint") -> None:
    """Raise ``ValueError`` naming the fields where ``cfg`` differs from a checkpoint's config.

    Runtime fields (:data:`RUNTIME_FIELDS`) are ignored.

    Parameters
    ----------
    checkpoint_config : mapping of str to Any
        The checkpoint's config (as a dict).
    cfg : STFPMConfig
        The notebook's config.
    where : str
        What the checkpoint is, for the message.
    """
    diff = [f"{k}: trained with {a!r}, notebook has {b!r}"
            for k, a, b in config_differences(checkpoint_config, cfg.to_dict())]
    if diff:
        raise ValueError(f"{where} was trained with another config ({len(diff)} difference(s): {'; '.join(diff)}); "
                         "rerun 02_train with these parameters, or evaluate with the training parameters "
                         "(parameters left None, and preset None, take the checkpoint's)")


@dataclass
class CategoryEvaluation:
    """What :func:`evaluate_category` produced: the evaluation, the test predictions and the files.

    Attributes
    ----------
    evaluation : stfpm_lib.records.evaluation.Evaluation
        Metrics of the test split.
    predictions : stfpm_lib.records.predictions.Predictions
        Test-split predictions.
    metrics_path, predictions_path, val_predictions_path : Path
        ``metrics.json``, ``predictions_test.npz``, ``predictions_val.npz``.
    eval_time_s, train_time_s : float
        Evaluation and training wall time, seconds.
    """

    evaluation: Any  # stfpm_lib.records.evaluation.Evaluation
    predictions: Any  # stfpm_lib.records.predictions.Predictions (test split)
    metrics_path: Path
    predictions_path: Path
    val_predictions_path: Path
    eval_time_s: float
    train_time_s: float


def expected_config(checkpoint_config: Mapping[str, Any], preset: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> STFPMConfig | None:
    """The config an evaluation asks for: ``None`` (the checkpoint's) when neither ``preset`` nor
    ``overrides`` is given; else ``preset`` (default: the checkpoint's config) updated by ``overrides``.

    Parameters
    ----------
    checkpoint_config : mapping of str to Any
        The checkpoint's config.
    preset : str, optional
        Preset name.
    overrides : mapping of str to Any, optional
        Config fields.

    Returns
    -------
    STFPMConfig or None
        The expected config, or ``None``.
    """
    if not preset and not overrides:
        return None
    if preset:
        return STFPMConfig.from_preset(preset, **dict(overrides or {}))
    return STFPMConfig.from_dict({**checkpoint_config, **dict(overrides or {})})


def evaluate_category(out_dir: str | os.PathLike, data_root: str | os.PathLike | None = None,
                      category: str | None = None, *, cfg: STFPMConfig | None = None,
                      original_resolution: bool = False, preset: str | None = None,
                      overrides: Mapping[str, Any] | None = None) -> CategoryEvaluation:
    """Predict test and validation images with ``out_dir/checkpoint.pt``, evaluate, write ``metrics.json``.

    Files written in ``out_dir``: ``predictions_test.npz`` (the cached anomaly maps, (N, S, S)
    float32: every metric comes from them), ``predictions_val.npz`` (held-out normals, for the validation-threshold F1),
    ``per_image.npz`` (image scores, labels and pixel-score histograms for bootstrap statistics) and
    ``metrics.json`` (metrics, per-defect-type metrics, config, teacher weights with sha256, dataset root and file counts,
    package versions, ``wall_time_s`` = training + evaluation seconds; ``extra`` has both parts).
    ``cfg`` (optional) must match the checkpoint's config (runtime fields aside); without it,
    ``preset`` and ``overrides`` (a notebook's parameters, see :func:`expected_config`) must, and
    without those the checkpoint's config is used. Every mismatch is reported at once.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The category's folder, holding ``checkpoint.pt``.
    data_root : str or os.PathLike, optional
        Dataset root (see :func:`resolve_notebook_data_root`).
    category : str, optional
        Category name (see :func:`resolve_category`).
    cfg : STFPMConfig, optional
        Config that must match the checkpoint's.
    original_resolution : bool
        Also AU-PRO and pixel AUROC with each map upsampled to its original mask
        (see :func:`~stfpm_lib.records.evaluation.evaluate_predictions`).
    preset : str, optional
        Preset the checkpoint must match (see :func:`expected_config`).
    overrides : mapping of str to Any, optional
        Config fields the checkpoint must match.

    Returns
    -------
    CategoryEvaluation
        The evaluation, predictions and written files.
    """
    from ..engine.checkpoint import CHECKPOINT_NAME, load_checkpoint  # lazy: see the note at the imports
    from ..engine.inference import load_predictions, predict
    from ..records.evaluation import (
        PER_IMAGE_NAME,
        evaluate_predictions,
        write_metrics_json,
        write_per_image,
    )

    out = Path(out_dir)
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.is_file():
        raise FileNotFoundError(f"no trained model at {ckpt}: run 02_train.ipynb for this category first")
    start = time.perf_counter()
    _, ckpt_cfg, meta = load_checkpoint(ckpt)
    cfg = cfg if cfg is not None else expected_config(meta["config"], preset, overrides)
    if cfg is not None:
        check_checkpoint_config(meta["config"], cfg, where=str(ckpt))
    test_path = predict(ckpt, data_root, category, out / PREDICTIONS_TEST, split="test", maps_dtype="float32")
    val_path = predict(ckpt, data_root, category, out / PREDICTIONS_VAL, split="val", maps_dtype="float32")
    evaluation = evaluate_predictions(test_path, val_predictions=val_path, original_resolution=original_resolution)
    predictions = load_predictions(test_path)
    eval_time = time.perf_counter() - start
    train_time = float(meta.get("train_time_s", 0.0))
    write_per_image(out / PER_IMAGE_NAME, evaluation.per_image_stats, config=predictions.config,
                    teacher_weights=predictions.teacher_weights, dataset=predictions.dataset)
    metrics_path = write_metrics_json(
        out / METRICS_NAME, metrics=evaluation.metrics, config=predictions.config,
        teacher_weights=predictions.teacher_weights, dataset=predictions.dataset,
        wall_time_s=train_time + eval_time, per_defect_type=evaluation.per_defect_type,
        extra={
            "train_time_s": train_time, "eval_time_s": eval_time, "best_epoch": int(meta["epoch"]),
            "epochs_trained": int(meta.get("epochs_trained", ckpt_cfg.epochs)),
            "selection": meta.get("selection"), "selection_value": meta.get("selection_value"),
            "test_set_leakage": bool(meta.get("test_set_leakage", False)), "peak_memory": meta.get("peak_memory"),
            "checkpoint": str(ckpt), "predictions": str(test_path), "predictions_sha256": sha256_file(test_path),
            "val_predictions": str(val_path),
        },
    )
    return CategoryEvaluation(evaluation, predictions, Path(metrics_path), Path(test_path), Path(val_path),
                              eval_time, train_time)


def run_category(cfg: STFPMConfig, data_root: str | os.PathLike, category: str, out_dir: str | os.PathLike, *,
                 log: Callable[[Mapping[str, Any]], None] | None = None) -> CategoryEvaluation:
    """Train (``stfpm_lib.engine.training.fit``, resumable) then :func:`evaluate_category`: the whole per-category job.

    Parameters
    ----------
    cfg : STFPMConfig
        The run's configuration.
    data_root : str or os.PathLike
        Dataset root.
    category : str
        Category name.
    out_dir : str or os.PathLike
        The category's folder.
    log : callable, optional
        Per-epoch callback of ``fit`` (see :func:`epoch_logger`).

    Returns
    -------
    CategoryEvaluation
        The evaluation, predictions and written files.
    """
    from ..engine.training import fit  # lazy: see the note at the imports

    fit(cfg, data_root, category, out_dir, progress=False, log=log)
    return evaluate_category(out_dir, data_root, category, cfg=cfg)


def plot_dataset_examples(data_root: str | os.PathLike, category: str, cfg: STFPMConfig | None = None, *,
                          per_type: int = 2, title_suffix: str | None = None):
    """A grid of example images: one row per split/defect type, ``per_type`` columns, GT mask contours in red.

    Images are shown as the network sees them (``cfg.image_size``/crop, default 256).

    Parameters
    ----------
    data_root : str or os.PathLike
        Dataset root.
    category : str
        Category name.
    cfg : STFPMConfig, optional
        Size and crop settings (default ``STFPMConfig()``).
    per_type : int
        Images per split/defect type.
    title_suffix : str, optional
        Second line of the title.

    Returns
    -------
    matplotlib.figure.Figure
        The grid.
    """
    from matplotlib.figure import Figure  # lazy: see the note at the imports

    from ..data import index_category, load_mask
    from ..data.transforms import image_size_of, read_image_uint8

    cfg = cfg or STFPMConfig()
    index = index_category(data_root, category)
    groups: dict[str, list] = {"train/good": [(p, None) for p in index.train[:per_type]]}
    for sample in index.test:
        rows = groups.setdefault(f"test/{sample.defect_type}", [])
        if len(rows) < per_type:
            rows.append((sample.image_path, sample.mask_path))
    fig = Figure(figsize=(2.2 * per_type, 2.2 * len(groups)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(groups), per_type, squeeze=False))
    for r, (name, items) in enumerate(groups.items()):
        for c in range(per_type):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(items):
                continue
            image_path, mask_path = items[c]
            ax.imshow(read_image_uint8(image_path, cfg))
            if mask_path is not None:
                mask = load_mask(mask_path, image_size_of(image_path), cfg, image_path,
                                 allow_empty=index.test[-1].allow_empty_mask).numpy()
                if mask.any():
                    ax.contour(mask.astype(float), levels=[0.5], colors="red", linewidths=1.0)
            ax.set_title(f"{name}\n{Path(image_path).name}", fontsize=7)
    title = f"{category}: examples (red: ground-truth defect)"
    fig.suptitle(f"{title}\n{title_suffix}" if title_suffix else title, fontsize=9)
    return fig
