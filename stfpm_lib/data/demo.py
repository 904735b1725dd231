"""The embedded demo dataset (a small real subset of PIPED).

``demo_root()`` is an MVTec-layout root shipped inside the package (``stfpm_lib/demo_data/piped``),
so a fresh clone runs the main job with no download. It was made by :func:`build_demo`
(``python -m stfpm_lib.data build-demo``) from PIPED (Bianconi et al. 2014, CC BY 4.0);
see ``demo_data/piped/README.md`` for the attribution and the list of changes.

Which teacher a demo run uses (ImageNet weights when they can be had, else a labelled random
teacher) is the runner's policy: :mod:`stfpm_lib.runner.teacher`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .convert import MANIFEST_NAME, convert_to_mvtec, verify_mvtec_root
from .folder import piped_adapter
from .mvtec import DEMO_CATEGORIES, DEMO_NAME, DataError, demo_dir, demo_root, list_categories

__all__ = [
    "DEMO_NAME", "DEMO_CATEGORIES", "DEMO_PARAMS", "demo_root", "demo_categories", "build_demo", "check_demo",
]

#: The converter settings that made the demo (48 normals → 32 train + 16 test; all 48 defects).
DEMO_PARAMS = {"n_train": 32, "n_test_good": 16, "max_defects_per_type": None, "seed": 0,
               "image_format": "png", "compress_level": 9}


def demo_categories() -> list[str]:
    """The demo's categories, sorted."""
    return list_categories(demo_root())


def build_demo(out_root: str | os.PathLike | None = None, *, piped_root: str | os.PathLike | None = None,
               categories: Sequence[str] = DEMO_CATEGORIES, overwrite: bool = False,
               log: Callable[[str], None] | None = None) -> Path:
    """Rebuild the demo dataset from PIPED with the converter; return its root.

    Default ``out_root`` is the package's ``demo_data/piped`` (needs ``overwrite=True`` when it exists).
    The README and licence note beside the data are kept.

    Parameters
    ----------
    out_root : str or os.PathLike, optional
        Where to write; ``None``: the package's ``demo_data/piped``.
    piped_root : str or os.PathLike, optional
        PIPED's folder (see :func:`~stfpm_lib.data.folder.resolve_piped_root`).
    categories : sequence of str
        PIPED categories to convert.
    overwrite : bool
        Replace an existing ``out_root``.
    log : callable, optional
        Called with one line per category.

    Returns
    -------
    Path
        The demo dataset's root.
    """
    target = Path(out_root) if out_root is not None else demo_dir()
    keep = {}
    for name in ("README.md", "LICENSE-DATA.md"):
        if (target / name).is_file():
            keep[name] = (target / name).read_bytes()
    convert_to_mvtec(piped_adapter(piped_root), target, categories=list(categories), overwrite=overwrite, log=log,
                     **DEMO_PARAMS)
    for name, data in keep.items():
        (target / name).write_bytes(data)
    return target


def check_demo(piped_root: str | os.PathLike | None = None, *, rebuild: bool = False) -> dict[str, dict[str, int]]:
    """Verify the shipped demo (counts, masks, sha256 against its manifest); with ``rebuild``, also
    rebuild it from PIPED into a temporary folder and require identical pixels and file lists.

    Parameters
    ----------
    piped_root : str or os.PathLike, optional
        PIPED's folder, for ``rebuild``.
    rebuild : bool
        Also rebuild the demo and compare.

    Returns
    -------
    dict of str to dict of str to int
        ``{category: counts}``.

    Raises
    ------
    DataError
        On any difference.
    """
    root = demo_root()
    counts = verify_mvtec_root(root)
    if rebuild:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = build_demo(Path(tmp) / "piped", piped_root=piped_root)
            shipped = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
            rebuilt = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*.png"))
            if shipped != rebuilt:
                raise DataError(f"rebuilt demo has other files: {sorted(set(shipped) ^ set(rebuilt))[:5]}")
            for rel in shipped:
                with Image.open(root / rel) as a, Image.open(fresh / rel) as b:
                    if a.mode != b.mode or not np.array_equal(np.asarray(a), np.asarray(b)):
                        raise DataError(f"rebuilt demo differs in the pixels of {rel}")
            old = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
            new = json.loads((fresh / MANIFEST_NAME).read_text(encoding="utf-8"))
            if old["counts"] != new["counts"] or old["changes"] != new["changes"]:
                raise DataError("rebuilt demo's manifest differs in counts or changes")
    return counts
