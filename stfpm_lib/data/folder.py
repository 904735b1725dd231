"""Folder datasets: your own directories of normal images, anomalous images and masks.

Layout (names are parameters; each folder parameter may list *candidates*, of which
exactly one must exist in a category)::

    <root>/<category>/<normal_dir>/*.png|jpg|bmp|...          normal images
    <root>/<category>/<defect_dir>/*                            anomalous images of one defect type
    <root>/<category>/<mask_dir>/<mask file>                    their masks

If ``root`` itself contains a normal folder, ``root`` is a single category named after it.

Mask pairing, explicit and checked on the files: the mask of image ``<stem><ext>`` is the
file named ``mask_template.format(stem=..., name=..., ext=..., defect_type=...)`` inside the
mask folder, where ``stem`` first goes through the ``stem_replace`` substitutions. The
template may be a glob (``"{stem}.*"``), which must then match exactly one file. With
``ignore_leading_zeros`` numbers compare by value (``GT_1_1`` pairs with ``GT_01_1``), used
only when the exact name is absent. Every anomalous image must have exactly one mask, and
every file of a mask folder must be the mask of one image.

PIPED (Bianconi et al. 2014, CC BY 4.0) is this adapter with a parameter set
(:data:`PIPED_PARAMS`, :func:`piped_adapter`).
"""

from __future__ import annotations

import fnmatch
import glob
import inspect
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from .adapters import AdapterIndex, DatasetAdapter, MaskEncoding
from .mvtec import IMAGE_EXTENSIONS, DataError, Sample

__all__ = ["FolderAdapter", "PIPED_PARAMS", "piped_adapter", "resolve_piped_root", "pair_key"]

_TEMPLATE_FIELDS = {"stem": "x", "name": "x.png", "ext": ".png", "defect_type": "t"}


def pair_key(name: str) -> str:
    """``name`` with every run of digits written without leading zeros (``D_01_1`` → ``D_1_1``)."""
    return re.sub(r"\d+", lambda m: str(int(m.group())), name)


def _as_tuple(value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, (str, os.PathLike)):
        return (str(value),)
    out = tuple(str(v) for v in value)
    if not out:
        raise ValueError("a folder parameter needs at least one candidate name")
    return out


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _files(directory: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in extensions
                  and not p.name.startswith("."))


class FolderAdapter(DatasetAdapter):
    """Your own folders of normal and anomalous images with masks.

    Args:
        root: folder of category folders, or one category folder.
        normal_dir: normal-image folder of a category, or candidates (exactly one must exist).
        defect_dirs: ``{defect_type: folder or candidates}``; or ``"parent/*"``: every
            sub-folder of ``parent`` is a defect type; or one folder name (its defect type
            is its last path component). ``None``: no anomalous images. A missing defect
            folder means no images of that type (noted in the index).
        mask_dir: mask folder (or candidates) of a category; may contain ``{defect_type}``.
            ``None``: masks lie beside their images (then files that are some image's mask
            are not images).
        mask_template: mask file name of an image; fields ``{stem}`` (after ``stem_replace``),
            ``{name}``, ``{ext}`` (with the dot), ``{defect_type}``; may be a glob.
        stem_replace: ``[(old, new), ...]`` substring substitutions applied to the stem.
        ignore_leading_zeros: if the exact mask name is absent, compare names with numbers
            by value (:func:`pair_key`).
        mask_polarity, mask_threshold: the :class:`MaskEncoding` of the masks.
        categories: restrict to these categories (default: every sub-folder of ``root``).
        extensions: image file extensions (lower case, with the dot).
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        normal_dir: str | Sequence[str] = "good",
        defect_dirs: Mapping[str, str | Sequence[str]] | str | None = None,
        mask_dir: str | Sequence[str] | None = None,
        mask_template: str = "{stem}_mask.png",
        stem_replace: Sequence[Sequence[str]] = (),
        ignore_leading_zeros: bool = False,
        mask_polarity: str = "high",
        mask_threshold: int = 0,
        categories: Sequence[str] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"folder dataset root {self.root} does not exist or is not a directory")
        self.normal_dir = _as_tuple(normal_dir)
        if defect_dirs is None:
            self.defect_dirs: dict[str, tuple[str, ...]] | str = {}
        elif isinstance(defect_dirs, str):
            self.defect_dirs = defect_dirs if defect_dirs.endswith("/*") else {Path(defect_dirs).name: (defect_dirs,)}
        else:
            self.defect_dirs = {str(k): _as_tuple(v) for k, v in defect_dirs.items()}
        self.mask_dir = None if mask_dir is None else _as_tuple(mask_dir)
        try:
            mask_template.format(**_TEMPLATE_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"mask_template={mask_template!r} is not valid: use the fields "
                             f"{sorted(_TEMPLATE_FIELDS)} ({exc!r})") from exc
        self.mask_template = mask_template
        self.stem_replace = tuple((str(a), str(b)) for a, b in stem_replace)
        self.ignore_leading_zeros = bool(ignore_leading_zeros)
        self.mask_encoding = MaskEncoding(mask_polarity, int(mask_threshold))  # type: ignore[arg-type]
        self._categories = None if categories is None else [str(c) for c in categories]
        self.extensions = tuple(e.lower() for e in extensions)

    # -- discovery -----------------------------------------------------------------------------
    def _single(self) -> bool:
        return any((self.root / d).is_dir() for d in self.normal_dir)

    def categories(self) -> list[str]:
        """Category names: ``categories`` if given, else the root's sub-folders (or the root itself)."""
        if self._single():
            found = [self.root.name]
        else:
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self._categories is not None:
            missing = [c for c in self._categories if c not in found]
            if missing:
                raise DataError(f"folder dataset {self.root}: categories {missing} not found; found {found}")
            return list(self._categories)
        return found

    def category_dir(self, category: str) -> Path:
        """The folder of ``category``."""
        return self.root if self._single() and category == self.root.name else self.root / category

    def _pick(self, folder: Path, candidates: tuple[str, ...], what: str, required: bool) -> Path | None:
        present = [folder / c for c in candidates if (folder / c).is_dir()]
        if len(present) > 1:
            raise DataError(f"{folder}: several {what} folders exist {[p.name for p in present]}; "
                            f"keep one or pass a single name")
        if not present:
            if required:
                raise DataError(f"{folder}: no {what} folder; looked for {list(candidates)}")
            return None
        return present[0]

    def _defect_folders(self, folder: Path) -> tuple[dict[str, Path], list[str]]:
        notes: list[str] = []
        if isinstance(self.defect_dirs, str):
            parent = folder / self.defect_dirs[:-2]
            if not parent.is_dir():
                notes.append(f"no defect folder {parent.relative_to(self.root)}")
                return {}, notes
            return {p.name: p for p in sorted(parent.iterdir()) if p.is_dir() and not p.name.startswith(".")}, notes
        out: dict[str, Path] = {}
        for defect_type, candidates in self.defect_dirs.items():
            chosen = self._pick(folder, candidates, f"defect ({defect_type})", required=False)
            if chosen is None:
                notes.append(f"{folder.name}: no defect folder for type {defect_type!r} (looked for {list(candidates)})")
            else:
                out[defect_type] = chosen
        return out, notes

    # -- pairing -------------------------------------------------------------------------------
    def mask_name(self, image: Path, defect_type: str) -> str:
        """The mask file name (or glob) that ``image`` pairs with, by the template."""
        stem = image.stem
        for old, new in self.stem_replace:
            stem = stem.replace(old, new)
        if _is_glob(self.mask_template):
            fields = {"stem": glob.escape(stem), "name": glob.escape(image.name), "ext": glob.escape(image.suffix),
                      "defect_type": glob.escape(defect_type)}
        else:
            fields = {"stem": stem, "name": image.name, "ext": image.suffix, "defect_type": defect_type}
        return self.mask_template.format(**fields)

    def _match(self, image: Path, defect_type: str, names: list[str], mask_folder: Path) -> str | None:
        wanted = self.mask_name(image, defect_type)
        if _is_glob(self.mask_template):
            hits = [n for n in names if fnmatch.fnmatchcase(n, wanted)]
            if not hits and self.ignore_leading_zeros:
                hits = [n for n in names if fnmatch.fnmatchcase(pair_key(n), pair_key(wanted))]
        else:
            hits = [wanted] if wanted in names else []
            if not hits and self.ignore_leading_zeros:
                hits = [n for n in names if pair_key(n) == pair_key(wanted)]
        if len(hits) > 1:
            raise DataError(f"image {image} pairs with several masks in {mask_folder}: {hits} "
                            f"(template {self.mask_template!r})")
        return hits[0] if hits else None

    def _mask_folder(self, folder: Path, defect_type: str, defect_folder: Path) -> Path:
        if self.mask_dir is None:
            return defect_folder
        candidates = tuple(c.format(defect_type=defect_type) for c in self.mask_dir)
        chosen = self._pick(folder, candidates, f"mask ({defect_type})", required=True)
        assert chosen is not None
        return chosen

    # -- index ---------------------------------------------------------------------------------
    def index(self, category: str) -> AdapterIndex:
        """Normals (``pool``), defects with their masks (``test``); raises :class:`DataError` on
        an empty class, a defect image without a mask, or a mask that pairs with no image."""
        self._check_category(category)
        folder = self.category_dir(category)
        normal_folder = self._pick(folder, self.normal_dir, "normal-image", required=True)
        assert normal_folder is not None
        normals = tuple(_files(normal_folder, self.extensions))
        if not normals:
            raise DataError(f"empty class {category!r}: no normal images in {normal_folder} "
                            f"(extensions {list(self.extensions)})")
        notes = [f"{category}: normal images from {normal_folder.relative_to(self.root)}"]
        defect_folders, more = self._defect_folders(folder)
        notes += more
        defects: list[Sample] = []
        claimed: dict[Path, set[str]] = {}
        for defect_type, defect_folder in sorted(defect_folders.items()):
            mask_folder = self._mask_folder(folder, defect_type, defect_folder)
            notes.append(f"{category}/{defect_type}: images from {defect_folder.relative_to(self.root)}, "
                         f"masks from {mask_folder.relative_to(self.root)}")
            mask_names = [p.name for p in _files(mask_folder, self.extensions)]
            images = _files(defect_folder, self.extensions)
            if mask_folder == defect_folder:
                as_masks = {self._match(img, defect_type, mask_names, mask_folder) for img in images}
                images = [img for img in images if img.name not in as_masks]
            if not images:
                raise DataError(f"defect folder {defect_folder} has no images (extensions {list(self.extensions)})")
            used = claimed.setdefault(mask_folder, set())
            for image in images:
                hit = self._match(image, defect_type, mask_names, mask_folder)
                if hit is None:
                    raise DataError(f"defect image {image} has no mask: expected "
                                    f"{mask_folder / self.mask_name(image, defect_type)} (template "
                                    f"{self.mask_template!r}, stem_replace {list(self.stem_replace)})")
                if hit in used:
                    raise DataError(f"mask {mask_folder / hit} pairs with more than one image (second: {image})")
                used.add(hit)
                defects.append(Sample(image, 1, defect_type, mask_folder / hit))
        normal_set = {p.resolve() for p in normals}
        for mask_folder, used in claimed.items():
            images_here = {s.image_path.name for s in defects if s.image_path.parent == mask_folder}
            extra = [n for n in (p.name for p in _files(mask_folder, self.extensions))
                     if n not in used and n not in images_here and (mask_folder / n).resolve() not in normal_set]
            if extra:
                raise DataError(f"mask folder {mask_folder}: {len(extra)} mask(s) pair with no image, e.g. "
                                f"{mask_folder / extra[0]} (template {self.mask_template!r})")
        defects.sort(key=lambda s: str(s.image_path))
        return AdapterIndex(adapter=self.name, root=self.root, category=category, train=(), test=tuple(defects),
                            pool=normals, mask_encoding=self.mask_encoding, notes=tuple(notes))

    def params(self) -> dict[str, Any]:
        """JSON-safe parameters."""
        return {
            "normal_dir": list(self.normal_dir),
            "defect_dirs": self.defect_dirs if isinstance(self.defect_dirs, str)
            else {k: list(v) for k, v in self.defect_dirs.items()},
            "mask_dir": None if self.mask_dir is None else list(self.mask_dir),
            "mask_template": self.mask_template,
            "stem_replace": [list(p) for p in self.stem_replace],
            "ignore_leading_zeros": self.ignore_leading_zeros,
            "mask_polarity": self.mask_encoding.polarity,
            "mask_threshold": self.mask_encoding.threshold,
            "categories": self._categories,
            "extensions": list(self.extensions),
        }


# --- PIPED -------------------------------------------------------------------------------------

#: PIPED's layout, checked on the files of the public repository (commit 3d89e1f):
#: ``<CLASS>/NoDefects/*.bmp`` (``NoDefect`` in the normal-only class PU_PNG01_TL),
#: ``<CLASS>/Defects/*_S_D_<nn>_<k>.bmp`` and their masks
#: ``<CLASS>/Defects/GroundThruth/*_S_GT_<nn>_<k>.bmp`` (``GroundTruth`` in 2 classes; in
#: PA_ZPB01_RL the masks write ``<nn>`` without its leading zero), 1-bit BMPs with 0 = defect.
PIPED_PARAMS: dict[str, Any] = {
    "normal_dir": ("NoDefects", "NoDefect"),
    "defect_dirs": {"impurity": ("Defects",)},
    "mask_dir": ("Defects/GroundTruth", "Defects/GroundThruth"),
    "mask_template": "{stem}.bmp",
    "stem_replace": (("_S_D_", "_S_GT_"),),
    "ignore_leading_zeros": True,
    "mask_polarity": "low",
    "mask_threshold": 0,
}


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_piped_root(root: str | os.PathLike | None = None) -> Path:
    """PIPED's class folder: ``root`` if given, else ``$PIPED_ROOT``, else ``<project>/../shared/data/PIPED``.

    Accepts the repository folder (with ``data/`` inside) or its ``data/`` folder.
    """
    tried = []
    if root not in (None, ""):
        candidates = [Path(root).expanduser()]
    elif os.environ.get("PIPED_ROOT"):
        candidates = [Path(os.environ["PIPED_ROOT"]).expanduser()]
    else:
        candidates = [_project_root().parent / "shared" / "data" / "PIPED", Path.cwd().parent / "shared" / "data" / "PIPED"]
    for candidate in candidates:
        tried.append(str(candidate))
        if (candidate / "data").is_dir():
            return candidate / "data"
        if candidate.is_dir():
            return candidate
    raise DataError(f"PIPED not found (tried {tried}); pass root=... / --root or set PIPED_ROOT "
                    f"(the repository bianconif/PIPED, CC BY 4.0)")


class PipedAdapter(FolderAdapter):
    """The folder adapter with :data:`PIPED_PARAMS` (name ``piped``)."""

    name = "piped"


def piped_adapter(root: str | os.PathLike | None = None, **overrides: Any) -> FolderAdapter:
    """PIPED through the folder adapter: :data:`PIPED_PARAMS` updated by ``overrides``."""
    params = {**PIPED_PARAMS, **overrides}
    try:
        inspect.signature(FolderAdapter).bind("root", **params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for the piped adapter: {exc}; it accepts FolderAdapter's keywords "
                         f"{[p for p in inspect.signature(FolderAdapter).parameters if p != 'root']}") from exc
    return PipedAdapter(resolve_piped_root(root), **params)
