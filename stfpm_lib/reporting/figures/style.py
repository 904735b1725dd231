"""The figure style: one seaborn style, colour-blind colours, thesis sizes, titles, and saving (PNG + PDF).

Style: every figure is built under one seaborn style (:data:`STYLES`, ``thesis`` by default: seaborn
``whitegrid``, the colour-blind-safe ``colorblind`` palette, 8-9 pt fonts at the figures' natural
size, which is at most a thesis text width of 6.3 in); heatmaps use the perceptually uniform,
colour-blind-safe ``inferno`` map with a colour bar. :func:`save_figure` writes PNG at 300 dpi and a
vector PDF at the figure's exact size (``figsize x dpi`` pixels).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import seaborn as sns
from matplotlib.figure import Figure

from ...io import atomic_save

#: Okabe-Ito colours (colour-blind safe): ground-truth contour, thresholded prediction.
CONTOUR_COLOUR = "#56B4E9"
PREDICTION_COLOUR = "#E69F00"
#: Colour map of every heatmap (perceptually uniform, colour-blind safe).
HEATMAP_CMAP = "inferno"
#: Figure width of a full thesis text width, inches.
TEXT_WIDTH_IN = 6.3
DPI = 300

_FONTS = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
          "legend.fontsize": 7.5, "legend.title_fontsize": 8, "figure.titlesize": 10}
#: Named styles: seaborn axes style + palette + font sizes (points at the figure's natural size).
STYLES: dict[str, dict[str, Any]] = {
    "thesis": {"axes_style": "whitegrid", "palette": "colorblind", "rc": _FONTS},
    "slides": {"axes_style": "whitegrid", "palette": "colorblind", "rc": {k: v * 1.4 for k, v in _FONTS.items()}},
}
_current_style = ["thesis"]


def _style_rc(name: str) -> dict[str, Any]:
    if name not in STYLES:
        raise ValueError(f"style={name!r} is not one of {list(STYLES)}")
    spec = STYLES[name]
    rc = dict(sns.axes_style(spec["axes_style"]))
    rc.update(spec["rc"])
    rc["axes.prop_cycle"] = mpl.cycler(color=sns.color_palette(spec["palette"]))
    rc["image.cmap"] = HEATMAP_CMAP
    rc["savefig.dpi"] = DPI
    rc["pdf.fonttype"] = 42  # embedded TrueType: text stays text in the PDF
    return rc


def set_style(name: str) -> None:
    """Make ``name`` (a key of :data:`STYLES`) the style of every figure built from now on.

    Parameters
    ----------
    name : str
        A key of :data:`STYLES`.
    """
    _style_rc(name)
    _current_style[0] = name


@contextlib.contextmanager
def figure_style(name: str | None = None) -> Iterator[None]:
    """Context in which matplotlib uses the style ``name`` (default: the current one, see :func:`set_style`).

    Parameters
    ----------
    name : str, optional
        A key of :data:`STYLES`.

    Yields
    ------
    None
        Inside the style's ``rc_context``.
    """
    with mpl.rc_context(_style_rc(name or _current_style[0])):
        yield


def styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under :func:`figure_style` and lay it out once inside it (tick labels keep its fonts).

    Parameters
    ----------
    func : callable
        A function returning a Figure.

    Returns
    -------
    callable
        The wrapped function.
    """
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with figure_style():
            fig = func(*args, **kwargs)
            fig.draw_without_rendering()
        return fig
    return wrapper


def compose_title(text: str, suffix: str | None) -> str:
    """A figure title with an optional second line (e.g. the random-teacher label).

    Parameters
    ----------
    text : str
        The title.
    suffix : str, optional
        The second line.

    Returns
    -------
    str
        ``text``, or ``text`` and ``suffix`` on two lines.
    """
    return f"{text}\n{suffix}" if suffix else text


# ====================================================================== labels
def metric_label(metric: str) -> str:
    """``image_auroc`` -> ``image AUROC``: the words used on axes and legends.

    Parameters
    ----------
    metric : str
        Metric column name.

    Returns
    -------
    str
        Its label.
    """
    from ..tables import METRIC_LABELS  # same layer; tables never imports figures

    label = METRIC_LABELS.get(metric, metric.replace("_", " "))
    return label[0].lower() + label[1:] if label[:2] != label[:2].upper() else label


# ====================================================================== saving
def save_figure(fig: Figure, path: str | os.PathLike, *, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = DPI) -> list[Path]:
    """Write ``fig`` atomically in each format (``path`` with its suffix replaced); return the paths.

    PNG at ``dpi`` (300) of exactly ``figsize x dpi`` pixels (no tight cropping: the constrained
    layout keeps everything inside); PDF is vector (images inside it stay raster).

    Parameters
    ----------
    fig : Figure
        The figure.
    path : str or os.PathLike
        Target path (its suffix is replaced).
    formats : sequence of str
        File formats.
    dpi : int
        PNG resolution, dots per inch.

    Returns
    -------
    list of Path
        The written files.
    """
    base = Path(path)
    if base.suffix.lower() in (".png", ".pdf", ".svg"):
        base = base.with_suffix("")
    out = []
    with figure_style():
        for fmt in formats:
            target = base.with_name(base.name + f".{fmt.lower()}")
            out.append(atomic_save(target, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=dpi)))
    return out
