"""The MVTec AD folder layout: listing categories, indexing images and masks, splits.

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect_type>/*.png          (``good`` for normal images)
    <root>/<category>/ground_truth/<defect_type>/<stem>_mask.png

Every dataset adapter of this project converts to this layout, so the runner and the
notebooks treat all datasets alike.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import STFPMConfig

__all__ = [
    "DataError", "Sample", "CategoryIndex", "IMAGE_EXTENSIONS", "MVTEC_CATEGORIES", "MVTEC_TEXTURES", "MVTEC_OBJECTS",
    "list_categories", "index_category", "split_train_val", "resolve_data_root", "demo_root", "demo_dir", "is_demo_root",
    "DEMO_NAME", "DEMO_CATEGORIES", "DEMO_DATA_ROOT", "list_images", "MANIFEST_NAME",
    "manifest_allows_empty_masks",
]

#: A converted dataset's record of its source and conversion (written by :mod:`stfpm_lib.data.convert`).
MANIFEST_NAME = "manifest.json"

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS = (
    "bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill", "screw", "toothbrush", "transistor", "zipper",
)
MVTEC_CATEGORIES = MVTEC_TEXTURES + MVTEC_OBJECTS


class DataError(ValueError):
    """A dataset problem; the message names the file or directory at fault."""


@dataclass(frozen=True)
class Sample:
    """One test image: its path, label (0 normal, 1 anomalous), defect type and mask path.

    Attributes
    ----------
    image_path : Path
        The image file.
    label : int
        0 normal, 1 anomalous.
    defect_type : str
        Defect type (``"good"`` for normals).
    mask_path : Path, optional
        The mask file (``None`` for normals).
    allow_empty_mask : bool
        The dataset accepts a mask without defect pixel (converted with
        ``allow_empty_masks``, read from its ``manifest.json``): a warning instead of an error.
    """

    image_path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None
    allow_empty_mask: bool = False


@dataclass(frozen=True)
class CategoryIndex:
    """All files of one category. ``test`` is in the official order: good first, then defects by path.

    Attributes
    ----------
    root : Path
        Dataset root.
    category : str
        Category name.
    train : tuple of Path
        Normal training images, sorted.
    test : tuple of Sample
        Test samples: good first, then defects by path.
    """

    root: Path
    category: str
    train: tuple[Path, ...]
    test: tuple[Sample, ...]

    def counts(self) -> dict[str, int]:
        """Number of images per split and defect type, e.g. ``{"train_good": 209, "test_good": 40, ...}``."""
        counts = {"train_good": len(self.train)}
        for sample in self.test:
            key = f"test_{sample.defect_type}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Sorted defect types of the test split (``good`` excluded)."""
        return tuple(sorted({s.defect_type for s in self.test if s.label == 1}))

    def describe(self) -> dict[str, object]:
        """JSON-safe description for provenance records."""
        return {"root": str(self.root), "category": self.category, "counts": self.counts()}


#: The embedded demo dataset's folder name under ``stfpm_lib/demo_data`` (see :mod:`stfpm_lib.data.demo`).
DEMO_NAME = "piped"
#: PIPED classes in the demo, chosen for clearly visible impurities of two kinds:
#: PA_BFT01_TL (dark compact specks and spots) and PA_BRG03_TL (long dark fibres).
DEMO_CATEGORIES = ("PA_BFT01_TL", "PA_BRG03_TL")
#: The ``data_root`` value that names the embedded demo dataset, everywhere a data root is taken.
DEMO_DATA_ROOT = "demo"


def demo_dir() -> Path:
    """Where the embedded demo dataset lives in the package (whether or not it is there).

    Returns
    -------
    Path
        ``stfpm_lib/demo_data/piped``.
    """
    return Path(__file__).resolve().parents[1] / "demo_data" / DEMO_NAME


def demo_root() -> Path:
    """Root of the embedded demo dataset (MVTec AD layout, categories :data:`DEMO_CATEGORIES`).

    It is package data (``stfpm_lib/demo_data/piped``), found from this file's location (works for a
    source checkout and for regular/editable installs).

    Returns
    -------
    Path
        The root folder.

    Raises
    ------
    DataError
        The embedded dataset is missing (the message says how to rebuild it).
    """
    root = demo_dir()
    if not (root / DEMO_CATEGORIES[0] / "train" / "good").is_dir():
        raise DataError(f"the embedded demo dataset is missing at {root}: reinstall the package, or rebuild it "
                        f"with `stfpm data build-demo` (needs PIPED, see stfpm_lib/demo_data/README)")
    return root


def is_demo_root(data_root: str | os.PathLike | None) -> bool:
    """Whether ``data_root`` names the embedded demo dataset (``"demo"``, or its folder).

    Parameters
    ----------
    data_root : str or os.PathLike, optional
        A data root as given.

    Returns
    -------
    bool
    """
    if data_root in (None, ""):
        return False
    if str(data_root) == DEMO_DATA_ROOT:
        return True
    return Path(data_root).expanduser().resolve() == demo_dir().resolve()


def resolve_data_root(data_root: str | os.PathLike | None = None, *, demo_fallback: bool = False) -> Path:
    """The dataset root, by the one rule of every command: the argument, else ``$MVTEC_ROOT``.

    ``"demo"`` names the embedded demo dataset (:func:`demo_root`). With ``demo_fallback`` (the main
    job and the notebooks opened interactively) no argument and no ``$MVTEC_ROOT`` mean the demo too;
    without it they are an error.

    Parameters
    ----------
    data_root : str or os.PathLike, optional
        Dataset root, or ``"demo"``; ``None`` or ``""`` reads ``$MVTEC_ROOT``.
    demo_fallback : bool, default=False
        Use the embedded demo when neither ``data_root`` nor ``$MVTEC_ROOT`` is set.

    Returns
    -------
    Path
        The existing root directory.

    Raises
    ------
    DataError
        No root given (without ``demo_fallback``), or not a directory.
    """
    if data_root in (None, ""):
        data_root = os.environ.get("MVTEC_ROOT") or None
        if data_root is None:
            if demo_fallback:
                return demo_root()
            raise DataError("no data root given: pass data_root / --data-root (a folder, or 'demo' for the "
                            "embedded demo data) or set MVTEC_ROOT")
    if str(data_root) == DEMO_DATA_ROOT:
        return demo_root()
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a directory")
    return root


def list_images(directory: Path) -> list[Path]:
    """Sorted image files (by extension) directly inside ``directory``; hidden files are not images.

    Hidden files (``._000.png`` that macOS leaves, anything starting with ``.``) are skipped, as the
    converter skips them; a broken link with an image extension is skipped with a warning naming it.

    Parameters
    ----------
    directory : Path
        Folder to list (missing: no images).

    Returns
    -------
    list of Path
        Image files with an extension in :data:`IMAGE_EXTENSIONS`, sorted.
    """
    if not directory.is_dir():
        return []
    images = []
    for p in directory.iterdir():
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.is_file():
            images.append(p)
        elif p.is_symlink():
            warnings.warn(f"skipping the broken link {p} (its target {os.readlink(p)} does not exist)", stacklevel=2)
    return sorted(images)


def list_categories(root: str | os.PathLike) -> list[str]:
    """Sorted names of the sub-directories of ``root`` that contain ``train/good``.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset root.

    Returns
    -------
    list of str
        Category names, sorted.
    """
    root = resolve_data_root(root)
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "train" / "good").is_dir())


def index_category(root: str | os.PathLike, category: str) -> CategoryIndex:
    """Index one category, checking that it exists, has training images and a mask per defect image.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset root.
    category : str
        Category name.

    Returns
    -------
    CategoryIndex
        The category's train and test files.
    """
    root = resolve_data_root(root)
    if not isinstance(category, str) or Path(category).name != category or category in ("", ".", ".."):
        raise DataError(f"category {category!r} is not a folder name under {root} (no path: a category never "
                        "leaves its data root)")
    folder = root / category
    if not (folder / "train" / "good").is_dir():
        found = list_categories(root)
        raise DataError(
            f"category {category!r} not found under {root} (no {folder / 'train' / 'good'}); "
            f"categories found: {found or 'none'}"
        )
    train = tuple(list_images(folder / "train" / "good"))
    if not train:
        raise DataError(f"no training images in {folder / 'train' / 'good'} (extensions {IMAGE_EXTENSIONS})")
    good = [Sample(p, 0, "good", None) for p in list_images(folder / "test" / "good")]
    defects = []
    test_dir = folder / "test"
    types = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name != "good" and not p.name.startswith(".")) \
        if test_dir.is_dir() else []
    allow_empty = manifest_allows_empty_masks(root)
    for defect_type in types:
        for image in list_images(test_dir / defect_type):
            defects.append(Sample(image, 1, defect_type, _find_mask(folder, defect_type, image), allow_empty))
    defects.sort(key=lambda s: str(s.image_path))
    return CategoryIndex(root=root, category=category, train=train, test=tuple(good + defects))


def manifest_allows_empty_masks(root: str | os.PathLike) -> bool:
    """Whether ``root/manifest.json`` records a conversion with ``allow_empty_masks`` (False without one).

    Parameters
    ----------
    root : str or os.PathLike
        Dataset root.

    Returns
    -------
    bool
        The manifest's ``conversion.allow_empty_masks``.
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable manifest: {exc}") from exc
    return bool(isinstance(manifest, dict) and manifest.get("conversion", {}).get("allow_empty_masks"))


def _find_mask(folder: Path, defect_type: str, image: Path) -> Path:
    mask_dir = folder / "ground_truth" / defect_type
    for ext in (".png", image.suffix):
        candidate = mask_dir / f"{image.stem}_mask{ext}"
        if candidate.is_file():
            return candidate
    raise DataError(f"defect image {image} has no mask: expected {mask_dir / (image.stem + '_mask.png')}")


def split_train_val(paths: Sequence[Path], cfg: STFPMConfig) -> tuple[list[Path], list[Path]]:
    """Split normal training images into (train, validation).

    ``cfg.split == "seeded"`` reproduces the official code: the sorted paths go through
    ``sklearn.model_selection.train_test_split(test_size=cfg.val_fraction,
    random_state=cfg.split_seed)``. ``"random"`` uses a torch permutation seeded by ``cfg.seed``.

    Parameters
    ----------
    paths : sequence of Path
        Normal training images (at least 2).
    cfg : STFPMConfig
        Supplies ``split``, ``val_fraction``, ``split_seed`` and ``seed``.

    Returns
    -------
    tuple of (list of Path, list of Path)
        (train, validation) paths.
    """
    paths = sorted(Path(p) for p in paths)
    if len(paths) < 2:
        raise DataError(f"need at least 2 training images to hold out a validation set, got {len(paths)}")
    if cfg.split == "seeded":
        from sklearn.model_selection import train_test_split  # ~1 s to import: only for this split

        train, val = train_test_split(paths, test_size=cfg.val_fraction, random_state=cfg.split_seed)
        return list(train), list(val)
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    n_val = max(1, int(round(cfg.val_fraction * len(paths))))
    return [paths[i] for i in order[n_val:]], [paths[i] for i in order[:n_val]]
