"""Small orchestration helpers that keep the notebooks thin (parameters in, tables out).

The notebooks' parameters cells are flat: ``category``, ``data_root``, ``out_dir``, ``preset``
and any :class:`~stfpm_lib.config.STFPMConfig` field (``None`` = the preset's value).
:func:`config_from_namespace` turns such a namespace (``globals()`` of a notebook, after
papermill injected its parameters) into a config.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from .config import STFPMConfig

__all__ = [
    "CONFIG_FIELDS", "config_overrides", "config_from_namespace", "resolve_notebook_data_root",
    "resolve_out_dir", "teacher_label", "counts_table",
]

#: STFPMConfig fields that a notebook parameter may set (everything but ``preset``).
CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(STFPMConfig) if f.name != "preset")


def config_overrides(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The ``STFPMConfig`` fields set in ``namespace`` (``None`` values mean "the preset's").

    ``crop_size = 0`` means "no crop" (``None`` already means "the preset's value").
    """
    values = {}
    for key in CONFIG_FIELDS:
        if key in namespace and namespace[key] is not None:
            values[key] = namespace[key]
    if values.get("crop_size") == 0:
        values["crop_size"] = None
    return values


def config_from_namespace(namespace: Mapping[str, Any], preset: str | None = None) -> STFPMConfig:
    """``STFPMConfig.from_preset(namespace["preset"], **config_overrides(namespace))``."""
    name = preset if preset is not None else namespace.get("preset") or "official"
    return STFPMConfig.from_preset(name, **config_overrides(namespace))


def resolve_notebook_data_root(data_root: str | os.PathLike | None) -> Path:
    """``data_root``, else ``$MVTEC_ROOT``, else the embedded demo dataset (interactive use)."""
    if data_root in (None, "") and not os.environ.get("MVTEC_ROOT"):
        from .data.demo import demo_root

        return Path(demo_root())
    from .data.mvtec import resolve_data_root

    return resolve_data_root(data_root)


def resolve_out_dir(out_dir: str | os.PathLike | None, category: str | None, base: str = "results/notebooks") -> Path:
    """``out_dir`` if given, else ``<base>/<category>`` (interactive use); created."""
    path = Path(out_dir) if out_dir not in (None, "") else Path(base) / (category or "run")
    path.mkdir(parents=True, exist_ok=True)
    return path


def teacher_label(teacher: STFPMConfig | Mapping[str, Any] | str | None) -> str:
    """``RANDOM_TEACHER_LABEL`` for a random teacher (config, weights description or spec), else ``""``."""
    if isinstance(teacher, STFPMConfig):
        source = teacher.teacher_weights
    elif isinstance(teacher, Mapping):
        source = teacher.get("source") or teacher.get("teacher_weights") or teacher.get("name")
    else:
        source = teacher
    if source == "random":
        from .data.demo import RANDOM_TEACHER_LABEL

        return RANDOM_TEACHER_LABEL
    return ""


def counts_table(data_root: str | os.PathLike, categories: list[str] | None = None):
    """Images per split and defect type: a DataFrame with one row per (category, split, defect_type).

    Columns: ``category``, ``split`` (``train`` | ``test``), ``defect_type``, ``images``, ``masks``.
    """
    import pandas as pd

    from .data.mvtec import index_category, list_categories

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
