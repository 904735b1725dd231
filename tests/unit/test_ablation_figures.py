"""Ablation figures from study tables built here (the CSV columns study_tables writes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stfpm_lib.reporting.ablation_figures import plot_factor_deltas, plot_variant_metrics
from stfpm_lib.reporting.figures import DPI, save_figure
from stfpm_lib.reporting.study_tables import DAGGER

METRICS = ("image_auroc", "pixel_auroc")


def results_frame() -> pd.DataFrame:
    rows = []
    for v, base in (("layer123", 0.9), ("layer12", 0.8)):
        for cat in ("a", "mean"):
            rows.append({"variant": v, "category": cat, "n_seeds": 3, "image_auroc_mean": base,
                         "image_auroc_std": 0.02, "pixel_auroc_mean": base - 0.1, "pixel_auroc_std": np.nan})
    return pd.DataFrame(rows)


def compare_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"metric": "image_auroc", "variant": "layer12", "category": "mean", "delta": -0.1, "seed_std_delta": 0.01,
         "exceeds_noise": True},
        {"metric": "pixel_auroc", "variant": "layer12", "category": "mean", "delta": 0.004, "seed_std_delta": 0.01,
         "exceeds_noise": False},
        {"metric": "image_auroc", "variant": "crop224", "category": "mean", "delta": 0.05, "seed_std_delta": np.nan,
         "exceeds_noise": False},
    ])


def test_variant_bars_heights_error_bars_and_file(tmp_path):
    fig = plot_variant_metrics(results_frame(), METRICS, title_suffix="random teacher")
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    assert heights == [0.9, 0.8, 0.8, 0.7]  # image AUROC of both variants, then pixel AUROC (the 'mean' rows)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer123", "layer12"]
    assert ax.get_ylabel().startswith("metric value") and "random teacher" in fig._suptitle.get_text()
    png, pdf = save_figure(fig, tmp_path / "variants")
    w, h = fig.get_size_inches()
    assert Image.open(png).size == (round(w * DPI), round(h * DPI)) and pdf.stat().st_size > 0
    with pytest.raises(ValueError, match="no rows for category 'b'"):
        plot_variant_metrics(results_frame(), METRICS, category="b")
    with pytest.raises(ValueError, match=r"lacks the columns \['au_pro_mean'"):
        plot_variant_metrics(results_frame(), ("au_pro",))


def test_factor_heatmap_cells_noise_marks_and_colour_bar():
    fig = plot_factor_deltas(compare_frame(), METRICS)
    heat = fig.axes[0]
    texts = sorted(t.get_text() for t in heat.texts)
    assert texts == ["+0.004 ± 0.010" + DAGGER, "+0.050" + DAGGER, "-0.100 ± 0.010"]
    data = heat.images[0].get_array()
    np.testing.assert_allclose(data.filled(np.nan), [[-0.1, 0.004], [0.05, np.nan]])  # rows: variants, cols: metrics
    vmin, vmax = heat.images[0].get_clim()
    assert vmin == -vmax == pytest.approx(-0.1)  # symmetric around 0
    assert len(fig.axes) == 2 and "difference to the baseline" in fig.axes[1].get_ylabel()  # the colour bar
    assert [t.get_text() for t in heat.get_yticklabels()] == ["layer12", "crop224"]
