"""Figures: right number of axes, RGB handling, titles with the random-teacher suffix, PNG/PDF files written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import index_category, normalize
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.reporting import figures as F


def _n_axes(fig: Figure, *, visible_only: bool = False) -> int:
    """Data axes (colour bars excluded)."""
    axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    return len([a for a in axes if a.axison or a.images]) if visible_only else len(axes)


def _png_ok(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_to_rgb_conversions():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    out = F.to_rgb(rgb)
    assert out.shape == (4, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [1, 0, 0])
    # the normalised network input (3, H, W) is de-normalised back to the same RGB (channel order kept)
    back = F.to_rgb(normalize(rgb))
    np.testing.assert_allclose(back, out, atol=1e-6)
    np.testing.assert_allclose(F.to_rgb(torch.as_tensor(normalize(rgb))), out, atol=1e-6)
    assert F.to_rgb(np.full((2, 2), 0.5)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.to_rgb(np.full((2, 2, 3), 2.0))
    with pytest.raises(ValueError, match="shape"):
        F.to_rgb(np.zeros((2, 2, 4)))


def test_load_rgb_is_rgb_and_network_sized(tiny_mvtec):
    cfg = STFPMConfig.from_preset("official", image_size=32)
    sample = index_category(tiny_mvtec, "brick").test[0]
    from PIL import Image

    ref = np.asarray(Image.open(sample.image_path).convert("RGB").resize((32, 32), Image.BILINEAR)) / 255.0
    out = F.load_rgb(sample.image_path, cfg.to_dict())
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_normalise_map():
    m = np.array([[1.0, 3.0], [2.0, 5.0]])
    np.testing.assert_allclose(F.normalise_map(m), [[0, 0.5], [0.25, 1]])
    np.testing.assert_allclose(F.normalise_map(m, (1.0, 3.0)), [[0, 1], [0.5, 1]])  # clipped
    assert not F.normalise_map(np.ones((2, 2))).any()  # constant map -> zeros, no division by zero


def test_heatmap_overlay_and_save(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3)).astype(np.float32)
    amap = rng.random((16, 16)).astype(np.float32)  # resized to the image
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:16] = True
    fig = F.plot_heatmap_overlay(image, amap, mask, title="cat", title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 2
    assert RANDOM_TEACHER_LABEL in fig._suptitle.get_text()
    ov = fig.axes[1]
    assert len(ov.images) == 2 and ov.images[1].get_cmap().name == F.HEATMAP_CMAP == "inferno"
    assert ov.images[1].get_array().shape == (32, 32)
    paths = F.save_figure(fig, tmp_path / "sub" / "overlay.png")
    assert [p.name for p in paths] == ["overlay.png", "overlay.pdf"]
    assert _png_ok(paths[0]) and paths[1].read_bytes()[:4] == b"%PDF"
    assert not list((tmp_path / "sub").glob(".*tmp*"))  # no temporary files left behind


def test_training_curves():
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9],
                         "val_map": [0.5, 0.3, 0.35], "epoch_time_s": [1, 1, 1]})
    fig = F.plot_training_curves(hist, best_epoch=2, title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 2
    loss_ax, val_ax = fig.axes
    assert len(loss_ax.lines) == 3  # train, val, selected-epoch marker
    np.testing.assert_array_equal(val_ax.lines[0].get_ydata(), [0.5, 0.3, 0.35])
    assert fig._suptitle.get_text().endswith(RANDOM_TEACHER_LABEL)
    fig2 = F.plot_training_curves(hist[["epoch", "train_loss"]])
    assert len(fig2.axes[0].lines) == 1
    with pytest.raises(ValueError, match="train_loss"):
        F.plot_training_curves(pd.DataFrame({"epoch": [1]}))


def test_examples_grid_axes():
    imgs = [np.zeros((8, 8, 3))] * 5
    maps = [np.arange(64.0).reshape(8, 8)] * 5
    fig = F.plot_examples_grid(imgs, maps, None, titles=list("abcde"), ncols=3, value_range=(0, 63))
    assert _n_axes(fig) == 6 and _n_axes(fig, visible_only=True) == 5  # 2x3 grid, last panel blank
    assert [a.get_title() for a in fig.axes[:5]] == list("abcde")
    with pytest.raises(ValueError, match="same non-zero length"):
        F.plot_examples_grid(imgs, maps[:2])


def _curves():
    fpr = np.linspace(0, 1, 11)
    return {
        "image_roc": {"fpr": fpr, "tpr": np.sqrt(fpr), "auc": 0.66},
        "pixel_roc": {"fpr": fpr, "tpr": fpr ** 0.25, "auc": 0.8},
        "pro": {"fpr": np.linspace(0, 0.3, 5), "pro": np.linspace(0, 0.9, 5), "auc": 0.45},
        "official_pro": {"fpr": np.arange(11) / 10, "pro": np.arange(11) / 10, "auc": 0.5},
    }


def test_roc_and_pro_curves():
    fig = F.plot_roc_curves(_curves(), title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 2
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "image AUROC 0.660"
    fig = F.plot_pro_curve(_curves())
    assert _n_axes(fig) == 1
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 0.3)
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 4  # official grid cut at FPR 0.3
    assert "AU-PRO 0.450" in ax.get_legend().get_texts()[0].get_text()
    fig = F.plot_curves(_curves())
    assert _n_axes(fig) == 3
    empty = F.plot_curves({"image_roc": None})
    assert _n_axes(empty) == 3 and "undefined" in [t.get_text() for t in empty.axes[0].texts]


def test_per_defect_type_bars(tmp_path):
    table = pd.DataFrame({"n_anomalous": [3, 2, 5], "image_auroc": [1.0, 0.5, 0.8], "pixel_auroc": [0.9, np.nan, 0.7],
                          "au_pro": [0.8, 0.6, 0.7]}, index=pd.Index(["blob", "scratch", "(all)"], name="defect_type"))
    fig = F.plot_per_defect_type(table, title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 3 + 2 + 3  # NaN bar left out
    assert [t.get_text() for t in ax.get_xticklabels()] == ["blob", "scratch", "(all)"]
    assert _png_ok(F.save_figure(fig, tmp_path / "bars", formats=("png",))[0])
    with pytest.raises(ValueError, match="none of the metrics"):
        F.plot_per_defect_type(table, metrics=("f1",))


def test_best_worst_grid_from_predictions(tiny_mvtec, tmp_path):
    from stfpm_lib.data import load_mask
    from stfpm_lib.records.evaluation import evaluate_predictions
    from stfpm_lib.records.predictions import Predictions

    cfg = STFPMConfig.from_preset("official", image_size=32)
    test = index_category(tiny_mvtec, "grass").test
    masks = np.stack([load_mask(s.mask_path, None, cfg).numpy() for s in test])
    rng = np.random.default_rng(0)
    maps = (rng.random(masks.shape) * 0.5 + masks).astype(np.float32)
    n = len(test)
    pred = Predictions(
        maps=maps, scores=maps.astype(np.float32).reshape(n, -1).max(1), labels=np.array([s.label for s in test], np.int8),
        defect_types=np.array([s.defect_type for s in test]), image_paths=np.array([str(s.image_path) for s in test]),
        mask_paths=np.array(["" if s.mask_path is None else str(s.mask_path) for s in test]), config=cfg.to_dict(),
        teacher_weights={"source": "random"}, dataset={}, masks_packed=np.packbits(masks.reshape(n, -1), axis=1))
    sel = evaluate_predictions(pred).best_worst(2)
    fig = F.plot_best_worst(pred, sel, title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 8  # 4 groups x 2 examples
    titles = [a.get_title() for a in fig.axes if a.get_label() != "<colorbar>"]
    i = int(sel["anomalous_best"][0])
    assert titles[0] == f"{pred.defect_types[i]}, score {float(pred.scores[i]):.3f}"
    assert all(t.startswith("good") for t in titles[4:])
    assert fig.axes[4].get_ylabel() == "normals, lowest scores"
    # the background is the RGB image file, not BGR: compare with PIL's RGB decode
    rgb = F.load_rgb(pred.image_paths[i], cfg)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), rgb)
    assert len(fig.axes[0].collections) >= 1  # GT contour drawn on a defective image
    assert _png_ok(F.save_figure(fig, tmp_path / "bw.png", formats=("png",))[0])


def test_published_comparison_bars():
    runs = pd.DataFrame({"category": ["carpet", "transistor", "widget"], "pixel_auroc": [0.9, 0.8, 0.5]})
    fig = F.plot_published_comparison(runs, "pixel_auroc", sources=("PAPER", "OFF", "XIA"),
                                      title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 1
    ax = fig.axes[0]
    # 2 MVTec categories (widget left out) x (run, PAPER, OFF) + XIA transistor only (no carpet value)
    assert len(ax.patches) == 2 * 3 + 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["this run", "paper", "official README", "xiahaifeng1995 reproduction"]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([0.9, 0.8, 0.988, 0.825, 0.990292, 0.819404, 0.921])
    with pytest.raises(ValueError, match="no MVTec AD category"):
        F.plot_published_comparison(runs.iloc[2:], "pixel_auroc")


# ----------------------------------------------------------------------------- thesis figures (05_figures)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from PIL import Image  # noqa: E402


def _saved_at_size(fig: Figure, path) -> tuple[int, int]:
    """Save ``fig`` as PNG + PDF; check both are written and non-empty; return the PNG's pixel size."""
    png, pdf = F.save_figure(fig, path)
    assert png.stat().st_size > 1000 and pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1000
    w, h = fig.get_size_inches()
    with Image.open(png) as im:
        assert im.size == (round(w * F.DPI), round(h * F.DPI))  # exactly figsize x 300 dpi, nothing cropped
        return im.size


def _n_colorbars(fig: Figure) -> int:
    return sum(a.get_label() == "<colorbar>" for a in fig.axes)


def _rendered(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def _centre_pixel(fig: Figure, ax) -> np.ndarray:
    """The rendered RGB pixel at the centre of ``ax`` (display coordinates, origin bottom left)."""
    pixels = _rendered(fig)
    box = ax.get_window_extent()
    x, y = int((box.x0 + box.x1) / 2), int((box.y0 + box.y1) / 2)
    return pixels[pixels.shape[0] - 1 - y, x]


def test_style_is_one_seaborn_theme_with_colourblind_palette():
    import seaborn as sns

    with F.figure_style("thesis"):
        import matplotlib as mpl

        colours = [c["color"] for c in mpl.rcParams["axes.prop_cycle"]]
        assert colours[:3] == [tuple(c) for c in sns.color_palette("colorblind")[:3]]
        assert mpl.rcParams["font.size"] == 9 and mpl.rcParams["xtick.labelsize"] >= 7
    with pytest.raises(ValueError, match="style='poster' is not one of"):
        F.set_style("poster")


def test_image_panel_keeps_red_red_and_segments_above_threshold(tmp_path):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    amap = np.zeros((32, 32), np.float32)
    amap[:, 16:] = 1.0  # right half above the threshold
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    fig = F.plot_image_panel(red, amap, mask, threshold=0.5, value_range=(0.0, 1.0), title="cat",
                             title_suffix=RANDOM_TEACHER_LABEL)
    data_axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(data_axes) == 4 and _n_colorbars(fig) == 1
    assert [a.get_title() for a in data_axes] == ["image", "ground truth", "anomaly map", "segmentation"]
    assert RANDOM_TEACHER_LABEL in fig._suptitle.get_text()
    assert "score > 0.500 (validation normals)" in fig._supxlabel.get_text()
    np.testing.assert_array_equal(_centre_pixel(fig, data_axes[0]), [255, 0, 0])  # RGB, never BGR
    seg_layer = data_axes[3].images[1].get_array()
    assert (seg_layer[:, 16:, 3] > 0).all() and (seg_layer[:, :16, 3] == 0).all()
    assert len(data_axes[1].collections) == 1  # the ground-truth contour
    assert _saved_at_size(fig, tmp_path / "panel") == (1890, 600)


def test_category_panel_one_row_per_category(tmp_path):
    rng = np.random.default_rng(1)
    rows = [{"category": c, "image": rng.random((16, 16, 3)), "map": rng.random((16, 16)), "mask": None,
             "threshold": 0.9, "value_range": (0.0, 1.0), "caption": "blob, score 0.900"} for c in ("a", "b", "c")]
    fig = F.plot_category_panel(rows, title_suffix=RANDOM_TEACHER_LABEL)
    assert _n_axes(fig) == 12 and _n_colorbars(fig) == 3
    assert [fig.axes[4 * r].get_ylabel() for r in range(3)] == [f"{c}\nblob, score 0.900" for c in "abc"]
    _saved_at_size(fig, tmp_path / "all")
    with pytest.raises(ValueError, match="rows is empty"):
        F.plot_category_panel([])


def test_examples_grid_has_one_shared_colour_bar():
    fig = F.plot_examples_grid([np.zeros((8, 8, 3))] * 2, [np.zeros((8, 8)), np.full((8, 8), 4.0)])
    assert _n_colorbars(fig) == 1
    assert fig.axes[0].images[1].get_clim() == (0.0, 4.0)  # default: the range over all maps


def test_training_curves_log_axis_over_decades(tmp_path):
    hist = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9],
                         "val_map": [120.0, 0.3, 0.35]})
    fig = F.plot_training_curves(hist, best_epoch=2)
    loss_ax, val_ax = [a for a in fig.axes]
    assert val_ax.get_yscale() == "log" and loss_ax.get_yscale() == "linear"  # 400x span vs 2x span
    assert loss_ax.get_ylabel() == "loss (a.u.)" and val_ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["training loss", "validation loss",
                                                                        "selected epoch 2"]
    _saved_at_size(fig, tmp_path / "train")


def test_roc_and_pro_of_all_categories(tmp_path):
    curves = {"carpet": _curves(), "widget": {**_curves(), "pixel_roc": None}}
    fig = F.plot_roc_all(curves, title_suffix=RANDOM_TEACHER_LABEL)
    image_ax, pixel_ax = fig.axes
    assert [t.get_text() for t in image_ax.get_legend().get_texts()] == ["carpet (AUROC 0.660)", "widget (AUROC 0.660)"]
    assert [t.get_text() for t in pixel_ax.get_legend().get_texts()] == ["carpet (AUROC 0.800)"]
    assert image_ax.get_xlabel() == "false positive rate (fraction)"
    assert RANDOM_TEACHER_LABEL in fig._suptitle.get_text()
    _saved_at_size(fig, tmp_path / "roc")
    fig = F.plot_pro_all(curves, fpr_limit=0.3)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 0.3) and ax.get_ylabel() == "per-region overlap (fraction)"
    assert ax.get_legend().get_texts()[0].get_text() == "carpet (AU-PRO 0.450)"
    assert ax.lines[0].get_color() != ax.lines[1].get_color()
    _saved_at_size(fig, tmp_path / "pro")
    with pytest.raises(ValueError, match="empty"):
        F.plot_roc_all({})


def test_published_bars_grouped_textures_objects_other(tmp_path):
    runs = pd.DataFrame({"category": ["transistor", "widget", "carpet"], "pixel_auroc": [0.8, 0.5, 0.9]})
    fig = F.plot_published_comparison(runs, "pixel_auroc", include_other=True, title_suffix=RANDOM_TEACHER_LABEL)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["carpet", "transistor", "widget"]  # textures first
    assert [t.get_text() for t in ax.texts] == ["textures", "objects", "other categories (no published numbers)"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["this run", "paper", "official README"] and "anomalib (ResNet-18)" in legend
    assert ax.get_ylabel() == "pixel AUROC (fraction)"
    this_run = sorted(round(p.get_height(), 6) for p in ax.containers[0].patches)
    assert this_run == [0.5, 0.8, 0.9]
    _saved_at_size(fig, tmp_path / "bars")


def test_score_distributions_with_threshold(tmp_path):
    d = {"a": {"scores": [0.1, 0.2, 0.8, 0.9], "labels": [0, 0, 1, 1], "threshold": 0.5},
         "b": {"scores": [0.3, 0.6], "labels": [0, 1], "threshold": None}}
    fig = F.plot_score_distributions(d, ncols=2, title_suffix=RANDOM_TEACHER_LABEL)
    ax_a, ax_b = fig.axes
    assert [t.get_text() for t in ax_a.get_legend().get_texts()] == ["normal (2)", "anomalous (2)", "threshold 0.500"]
    assert ax_a.lines[0].get_xdata()[0] == 0.5 and not ax_b.lines
    assert ax_a.get_ylabel() == "number of images" and "a.u." in ax_a.get_xlabel()
    _saved_at_size(fig, tmp_path / "scores")


def test_heatmap_gif_one_frame_per_image(tmp_path):
    images = [np.full((16, 16, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
    maps = [np.full((16, 16), v, np.float32) for v in (0.0, 1.0, 2.0)]
    path = F.write_heatmap_gif(images, maps, tmp_path / "anim.gif", titles=["a", "b", "c"],
                               title_suffix=RANDOM_TEACHER_LABEL, frame_ms=100)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 3 and im.size == (324, 180)  # 3.6 x 2.0 in at 90 dpi
        assert im.info["duration"] == 100
    with pytest.raises(ValueError, match="same non-zero length"):
        F.write_heatmap_gif(images, maps[:1], tmp_path / "bad.gif")


@pytest.mark.parametrize("name", ["overlay", "grid", "roc", "pro", "curves", "per_defect_type", "published"])
def test_every_older_figure_is_written_at_figsize_times_dpi(name, tmp_path):
    rng = np.random.default_rng(0)
    build = {
        "overlay": lambda: F.plot_heatmap_overlay(rng.random((16, 16, 3)), rng.random((16, 16))),
        "grid": lambda: F.plot_examples_grid([rng.random((16, 16, 3))] * 3, [rng.random((16, 16))] * 3, ncols=3),
        "roc": lambda: F.plot_roc_curves(_curves()),
        "pro": lambda: F.plot_pro_curve(_curves()),
        "curves": lambda: F.plot_curves(_curves()),
        "per_defect_type": lambda: F.plot_per_defect_type(pd.DataFrame({"image_auroc": [0.5]},
                                                                       index=pd.Index(["a"], name="defect_type"))),
        "published": lambda: F.plot_published_comparison(pd.DataFrame({"category": ["carpet"], "pixel_auroc": [0.9]})),
    }[name]
    fig = build()
    assert isinstance(fig, Figure)
    width, height = _saved_at_size(fig, tmp_path / name)
    assert width <= round(F.TEXT_WIDTH_IN * 1.4 * F.DPI) and height > 300
