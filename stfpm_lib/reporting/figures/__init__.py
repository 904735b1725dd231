"""Figures for notebooks and reports; every function returns a :class:`matplotlib.figure.Figure`.

By topic: :mod:`.style` (the style, titles, saving), :mod:`.heatmaps` (images and anomaly maps),
:mod:`.curves` (training, ROC and PRO curves, score distributions) and :mod:`.comparisons` (per defect
type, published numbers). Every public name is offered here too: ``from stfpm_lib.reporting import
figures as F`` then ``F.plot_curves(...)``.

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

from .comparisons import SOURCE_NAMES, plot_per_defect_type, plot_published_comparison
from .curves import (
    plot_curves,
    plot_pro_all,
    plot_pro_curve,
    plot_roc_all,
    plot_roc_curves,
    plot_score_distributions,
    plot_training_curves,
)
from .heatmaps import (
    load_rgb,
    normalise_map,
    overlay_heatmap,
    plot_best_worst,
    plot_category_panel,
    plot_examples_grid,
    plot_heatmap_overlay,
    plot_image_panel,
    to_rgb,
    write_heatmap_gif,
)
from .style import (
    DPI,
    HEATMAP_CMAP,
    STYLES,
    TEXT_WIDTH_IN,
    compose_title,
    figure_style,
    metric_label,
    save_figure,
    set_style,
    styled,
)

__all__ = [
    "to_rgb", "load_rgb", "normalise_map", "overlay_heatmap", "plot_heatmap_overlay", "plot_training_curves",
    "plot_examples_grid", "plot_best_worst", "plot_roc_curves", "plot_pro_curve", "plot_curves",
    "plot_per_defect_type", "plot_published_comparison", "save_figure", "STYLES", "set_style", "figure_style",
    "styled", "plot_image_panel", "plot_category_panel", "plot_roc_all", "plot_pro_all", "plot_score_distributions",
    "write_heatmap_gif", "metric_label", "compose_title", "SOURCE_NAMES", "HEATMAP_CMAP", "DPI", "TEXT_WIDTH_IN",
]
