"""Docstring parts shared by the image and pixel metrics, written once and put in by :func:`shared_doc`.

A line holding only ``{name}`` (for a name in :data:`FRAGMENTS`) is replaced by that fragment,
indented like the marker.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

FRAGMENTS: dict[str, str] = {
    "pixel_inputs": """\
maps : array-like of shape (N, H, W), or list of N 2-D arrays
    Anomaly maps (NumPy or torch), float; higher = more anomalous.
masks : array-like of shape (N, H, W), or list of N 2-D arrays
    Ground truth, binarised by ``mask_binarization``; PRO regions are the 8-connected
    components of each mask.
""",
    "mask_options": """\
mask_binarization : {"gt0", "gt0.5"}, default="gt0"
    Defect iff ``mask > 0`` (official STFPM code) or ``mask > 0.5`` (DFR); bool masks as is.
resize_maps : bool, default=False
    Bilinearly resize each map to its own mask's size (e.g. 256² maps, 1024² masks), one
    map at a time; masks may then differ in size.
""",
    "image_inputs": """\
scores : array-like of shape (N,), or maps of shape (N, H, W)
    Image anomaly scores (higher = more anomalous); maps are reduced by their max.
labels : array-like of shape (N,)
    1 (or True) = anomalous, 0 = normal.
""",
    "pixel_example": """\
One 2 x 2 image whose right column is one defect region; the defect pixels score 0.9
and 0.4, the normal ones 0.1 and 0.6:

>>> import numpy as np
>>> maps = np.array([[[0.1, 0.9], [0.6, 0.4]]])
>>> masks = np.array([[[0, 1], [0, 1]]])
""",
}


def shared_doc(fn: F) -> F:
    """Put the :data:`FRAGMENTS` into ``fn.__doc__`` in place of their ``{name}`` lines."""
    doc = fn.__doc__ or ""
    for key, text in FRAGMENTS.items():
        doc = re.sub(rf"^( *)\{{{key}\}}\n", lambda m, t=text: textwrap.indent(t, m.group(1)), doc, flags=re.M)
    fn.__doc__ = doc
    return fn
