"""Folder datasets: your own directories of normal images, anomalous images and masks.

Layout (names are parameters; each folder parameter may list *candidates*, of which
exactly one must exist in a category; folder names are paths relative to the category and
may be globs)::

    <root>/<category>/<normal_dir>/*.png|jpg|bmp|...          normal images
    <root>/<category>/<defect_dir>/*                            anomalous images of one defect type
    <root>/<category>/<mask_dir>/<mask file>                    their masks

If ``root`` itself contains a normal folder, ``root`` is a single category named after it:
one category may gather several top-level folders, e.g. normals in ``MT_Free/Imgs`` and
each defect type in ``MT_<type>/Imgs`` (``normal_dir="MT_Free/Imgs"``, ``defect_dirs="MT_*/Imgs"``).

Images are the files whose extension is in ``extensions``; masks are found by the template
among all image files (any extension of :data:`IMAGE_EXTENSIONS`), and a file that is the
mask of another image is never an image (masks beside their images, also beside the normals).

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .adapters import AdapterIndex, DatasetAdapter, MaskEncoding
from .mvtec import IMAGE_EXTENSIONS, DataError, Sample

__all__ = ["FolderAdapter", "PIPED_PARAMS", "piped_adapter", "resolve_piped_root", "pair_key"]

_TEMPLATE_FIELDS = {"stem": "x", "name": "x.png", "ext": ".png", "defect_type": "t"}


def pair_key(name: str) -> str:
    """``name`` with every run of digits written without leading zeros (``D_01_1`` → ``D_1_1``).

    Parameters
    ----------
    name : str
        File name or stem.

    Returns
    -------
    str
        The name with numbers written by value.
    """
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


def _glob_dirs(folder: Path, pattern: str) -> list[Path]:
    """Sub-folders of ``folder`` matching the relative glob ``pattern`` (hidden ones left out), sorted."""
    return sorted(p for p in folder.glob(pattern) if p.is_dir()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _wildcards(pattern: str, name: str) -> str:
    """What the wildcards of the glob component ``pattern`` matched in ``name`` (``MT_*``, ``MT_Crack`` → ``Crack``)."""
    regex = ""
    for token in re.findall(r"\[[^\]]*\]|\*|\?|[^*?\[]+", pattern):
        if token == "*":
            regex += "(.*)"
        elif token == "?" or token.startswith("["):  # the name matched the glob already: one character
            regex += "(.)"
        else:
            regex += re.escape(token)
    match = re.fullmatch(regex, name)
    return "".join(match.groups()) if match else name


def _glob_type(pattern: str, path: Path, folder: Path) -> str:
    """Defect type of ``path`` found by ``pattern``: what its wildcards matched, components joined by ``_``."""
    parts = path.relative_to(folder).parts
    wild = [_wildcards(pat, part) for part, pat in zip(parts, Path(pattern).parts) if _is_glob(pat)]
    return "_".join(w for w in wild if w) or path.name


def _plain_types(paths: Sequence[str]) -> dict[str, str]:
    """``{defect_type: folder}`` for plain folders: the last path component in which they differ."""
    split = [Path(p).parts for p in paths]
    depth = min(len(parts) for parts in split)
    differ = [i for i in range(-1, -depth - 1, -1) if len({parts[i] for parts in split}) > 1]
    pos = differ[0] if differ else -1
    out: dict[str, str] = {}
    for path, parts in zip(paths, split):
        name = parts[pos] if len(split) > 1 else parts[-1]
        if name in out:
            raise ValueError(f"defect_dirs: {out[name]!r} and {path!r} both give the defect type {name!r}; "
                             f"pass a mapping {{defect_type: folder}}")
        out[name] = path
    return out


class FolderAdapter(DatasetAdapter):
    """Your own folders of normal and anomalous images with masks.

    Parameters
    ----------
    root : str or os.PathLike
        Folder of category folders, or one category folder.
    normal_dir : str or sequence of str
        Normal-image folder of a category, or candidates (exactly one must exist);
        a path relative to the category, may be a glob (then every folder it matches holds
        normal images).
    defect_dirs : mapping, str, sequence of str or None
        ``{defect_type: folder or candidates}``; or a glob (``"nok/*"``,
        ``"MT_*/Imgs"``) or a list of globs: every matching folder that is not a normal
        folder is a defect type, named by the path components the wildcards matched
        (joined by ``_``); or a folder or a list of folders: the defect type of each is its
        last path component in which the listed folders differ (one folder: its name).
        ``None``: no anomalous images. A missing defect folder means no images of that type
        (noted in the index).
    mask_dir : str, sequence of str, mapping or None
        Mask folder (or candidates) of a category; may contain ``{defect_type}``; or
        ``{defect_type: folder or candidates}``. ``None``: masks lie beside their images
        (then files that are some image's mask are not images, in the normal folders too).
    mask_template : str
        Mask file name of an image; fields ``{stem}`` (after ``stem_replace``),
        ``{name}``, ``{ext}`` (with the dot), ``{defect_type}``; may be a glob.
    stem_replace : sequence of (str, str)
        ``[(old, new), ...]`` substring substitutions applied to the stem.
    ignore_leading_zeros : bool
        If the exact mask name is absent, compare names with numbers
        by value (:func:`pair_key`).
    mask_polarity, mask_threshold : str, int
        The :class:`MaskEncoding` of the masks.
    categories : sequence of str, optional
        Restrict to these categories (default: every sub-folder of ``root``).
    extensions : sequence of str
        Image file extensions (lower case, with the dot); they select images
        only: masks are looked up among files of any image extension.
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        normal_dir: str | Sequence[str] = "good",
        defect_dirs: Mapping[str, str | Sequence[str]] | str | Sequence[str] | None = None,
        mask_dir: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None = None,
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
        self.defect_dirs = _defect_dirs_param(defect_dirs)
        self.mask_dir: tuple[str, ...] | dict[str, tuple[str, ...]] | None = (
            None if mask_dir is None else {str(k): _as_tuple(v) for k, v in mask_dir.items()}
            if isinstance(mask_dir, Mapping) else _as_tuple(mask_dir))
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
        return bool(self._present(self.root, self.normal_dir))

    @staticmethod
    def _present(folder: Path, candidates: tuple[str, ...]) -> list[tuple[str, list[Path]]]:
        """The candidates that exist under ``folder``, with their folders (a glob: all it matches)."""
        found = [(c, _glob_dirs(folder, c) if _is_glob(c) else [folder / c] if (folder / c).is_dir() else [])
                 for c in candidates]
        return [(c, dirs) for c, dirs in found if dirs]

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
        """The folder of ``category``.

        Parameters
        ----------
        category : str
            Category name.

        Returns
        -------
        Path
            The category's folder (the root itself for a single-category root).
        """
        return self.root if self._single() and category == self.root.name else self.root / category

    def _pick_all(self, folder: Path, candidates: tuple[str, ...], what: str) -> list[Path]:
        """The folders of the one candidate that exists (a glob candidate: every folder it matches)."""
        present = self._present(folder, candidates)
        if len(present) > 1:
            raise DataError(f"{folder}: several {what} folders exist {[c for c, _ in present]}; "
                            f"keep one or pass a single name")
        if not present:
            raise DataError(f"{folder}: no {what} folder; looked for {list(candidates)}")
        return present[0][1]

    def _pick(self, folder: Path, candidates: tuple[str, ...], what: str, required: bool) -> Path | None:
        present = self._present(folder, candidates)
        if len(present) > 1 or (present and len(present[0][1]) > 1):
            names = [d.relative_to(folder).as_posix() for _, dirs in present for d in dirs]
            raise DataError(f"{folder}: several {what} folders exist {names}; keep one or pass a single name")
        if not present:
            if required:
                raise DataError(f"{folder}: no {what} folder; looked for {list(candidates)}")
            return None
        return present[0][1][0]

    def _defect_folders(self, folder: Path, normal_folders: Sequence[Path]) -> tuple[dict[str, Path], list[str]]:
        notes: list[str] = []
        if isinstance(self.defect_dirs, tuple):  # globs: every matching folder that is not a normal folder
            out = {}
            for pattern in self.defect_dirs:
                matches = [p for p in _glob_dirs(folder, pattern) if p not in normal_folders]
                if not matches:
                    notes.append(f"{folder.name}: no defect folder matches {pattern!r}")
                for path in matches:
                    name = _glob_type(pattern, path, folder)
                    if name in out:
                        raise DataError(f"{folder}: {out[name]} and {path} both give the defect type {name!r} "
                                        f"(defect_dirs {list(self.defect_dirs)}); pass a mapping {{type: folder}}")
                    out[name] = path
            return out, notes
        out = {}
        for defect_type, candidates in self.defect_dirs.items():
            chosen = self._pick(folder, candidates, f"defect ({defect_type})", required=False)
            if chosen is None:
                notes.append(f"{folder.name}: no defect folder for type {defect_type!r} (looked for {list(candidates)})")
            else:
                out[defect_type] = chosen
        return out, notes

    # -- pairing -------------------------------------------------------------------------------
    def mask_name(self, image: Path, defect_type: str) -> str:
        """The mask file name (or glob) that ``image`` pairs with, by the template.

        Parameters
        ----------
        image : Path
            The image file.
        defect_type : str
            Its defect type.

        Returns
        -------
        str
            The mask file name, or a glob when the template is one.
        """
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
        own = image.name if image.parent == mask_folder else None  # an image is never its own mask
        if _is_glob(self.mask_template):
            hits = [n for n in names if fnmatch.fnmatchcase(n, wanted) and n != own]
            if not hits and self.ignore_leading_zeros:
                hits = [n for n in names if fnmatch.fnmatchcase(pair_key(n), pair_key(wanted)) and n != own]
        else:
            hits = [wanted] if wanted in names and wanted != own else []
            if not hits and self.ignore_leading_zeros:
                hits = [n for n in names if pair_key(n) == pair_key(wanted) and n != own]
        if len(hits) > 1:
            raise DataError(f"image {image} pairs with several masks in {mask_folder}: {hits} "
                            f"(template {self.mask_template!r})")
        return hits[0] if hits else None

    def _mask_folder(self, folder: Path, defect_type: str, defect_folder: Path) -> Path:
        if self.mask_dir is None:
            return defect_folder
        if isinstance(self.mask_dir, dict):
            if defect_type not in self.mask_dir:
                raise DataError(f"{folder}: mask_dir has no folder for the defect type {defect_type!r} "
                                f"(it has {sorted(self.mask_dir)})")
            candidates = self.mask_dir[defect_type]
        else:
            candidates = tuple(c.format(defect_type=defect_type) for c in self.mask_dir)
        try:
            chosen = self._pick(folder, candidates, f"mask ({defect_type})", required=True)
        except DataError as exc:
            raise DataError(f"{exc} (mask_dir lists candidates of which one must exist; one mask folder per "
                            f"defect type: put '{{defect_type}}' in mask_dir; masks beside their images: "
                            f"mask_dir=None)") from exc
        assert chosen is not None
        return chosen

    def _images(self, folder: Path, defect_type: str, masks_here: bool) -> tuple[list[Path], list[str], set[str]]:
        """``(images, mask names, masks taken out)`` of ``folder``: images have an extension of
        ``extensions``; mask names are the image files of any extension; with ``masks_here`` a file that
        is another image's mask (by the template) is a mask, not an image."""
        names = [p.name for p in _files(folder, IMAGE_EXTENSIONS + self.extensions)]
        images = _files(folder, self.extensions)
        if not masks_here:
            return images, names, set()
        as_masks = {self._match(img, defect_type, names, folder) for img in images} - {None}
        return [img for img in images if img.name not in as_masks], names, as_masks  # type: ignore[misc]

    def _no_mask(self, image: Path, defect_type: str, mask_folder: Path) -> DataError:
        """The error for a defect image without mask; says why an expected file that exists was not taken."""
        wanted = mask_folder / self.mask_name(image, defect_type)
        why = ""
        if not _is_glob(self.mask_template) and (wanted.exists() or wanted.is_symlink()):
            if wanted == image:
                why = ("; that is the image itself: the template maps the image onto its own name (masks beside "
                       "images need another name or extension, e.g. '{stem}_mask.png')")
            elif wanted.is_dir():
                why = "; it exists but is a folder"
            elif wanted.name.startswith("."):
                why = "; it exists but is a hidden file (name starts with '.')"
            elif wanted.suffix.lower() not in IMAGE_EXTENSIONS + self.extensions:
                why = f"; it exists but {wanted.suffix!r} is not an image file extension {list(IMAGE_EXTENSIONS)}"
            elif not wanted.is_file():
                why = "; it is a broken link"
        return DataError(f"defect image {image} has no mask: expected {wanted}{why} (template "
                         f"{self.mask_template!r}, stem_replace {list(self.stem_replace)})")

    def _normals(self, folder: Path, category: str) -> tuple[tuple[Path, ...], list[str]]:
        """The normal images of ``category`` (every normal folder) and the index notes about them."""
        normal_folders = self._pick_all(folder, self.normal_dir, "normal-image")
        normals: list[Path] = []
        notes = []
        for normal_folder in normal_folders:
            images, _, masks = self._images(normal_folder, "good", masks_here=self.mask_dir is None)
            normals += images
            notes.append(f"{category}: normal images from {normal_folder.relative_to(self.root)}"
                         + (f" ({len(masks)} file(s) there are masks by the template, not images)" if masks else ""))
        if not normals:
            raise DataError(f"empty class {category!r}: no normal images in "
                            f"{', '.join(str(f) for f in normal_folders)} (extensions {list(self.extensions)})")
        return tuple(normals), notes

    # -- index ---------------------------------------------------------------------------------
    def index(self, category: str) -> AdapterIndex:
        """Normals (``pool``), defects with their masks (``test``); raises :class:`DataError` on
        an empty class, a defect image without a mask, or a mask that pairs with no image.

        Parameters
        ----------
        category : str
            Category name.

        Returns
        -------
        AdapterIndex
            The category's pool of normals and its defect samples.
        """
        self._check_category(category)
        folder = self.category_dir(category)
        normals, notes = self._normals(folder, category)
        defect_folders, more = self._defect_folders(folder, sorted({p.parent for p in normals}))
        notes += more
        defects: list[Sample] = []
        claimed: dict[Path, set[str]] = {}
        for defect_type, defect_folder in sorted(defect_folders.items()):
            mask_folder = self._mask_folder(folder, defect_type, defect_folder)
            notes.append(f"{category}/{defect_type}: images from {defect_folder.relative_to(self.root)}, "
                         f"masks from {mask_folder.relative_to(self.root)}")
            images, _, _ = self._images(defect_folder, defect_type, masks_here=mask_folder == defect_folder)
            mask_names = self._images(mask_folder, defect_type, masks_here=False)[1]
            if not images:
                raise DataError(f"defect folder {defect_folder} has no images (extensions {list(self.extensions)})")
            used = claimed.setdefault(mask_folder, set())
            for image in images:
                hit = self._match(image, defect_type, mask_names, mask_folder)
                if hit is None:
                    raise self._no_mask(image, defect_type, mask_folder)
                if hit in used:
                    raise DataError(f"mask {mask_folder / hit} pairs with more than one image (second: {image})")
                used.add(hit)
                defects.append(Sample(image, 1, defect_type, mask_folder / hit))
        self._check_unpaired(claimed, defects, normals)
        defects.sort(key=lambda s: str(s.image_path))
        return AdapterIndex(adapter=self.name, root=self.root, category=category, train=(), test=tuple(defects),
                            pool=normals, mask_encoding=self.mask_encoding, notes=tuple(notes))

    def _check_unpaired(self, claimed: Mapping[Path, set[str]], defects: Sequence[Sample],
                        normals: Sequence[Path]) -> None:
        """Every image file of a mask folder is a defect image, a normal image or the mask of one image."""
        normal_set = {p.resolve() for p in normals}
        for mask_folder, used in claimed.items():
            images_here = {s.image_path.name for s in defects if s.image_path.parent == mask_folder}
            extra = [n for n in self._images(mask_folder, "", masks_here=False)[1]
                     if n not in used and n not in images_here and (mask_folder / n).resolve() not in normal_set]
            if extra:
                raise DataError(f"mask folder {mask_folder}: {len(extra)} mask(s) pair with no image, e.g. "
                                f"{mask_folder / extra[0]} (template {self.mask_template!r})")

    def params(self) -> dict[str, Any]:
        """JSON-safe parameters."""
        return {
            "normal_dir": list(self.normal_dir),
            "defect_dirs": list(self.defect_dirs) if isinstance(self.defect_dirs, tuple)
            else {k: list(v) for k, v in self.defect_dirs.items()},
            "mask_dir": None if self.mask_dir is None else {k: list(v) for k, v in self.mask_dir.items()}
            if isinstance(self.mask_dir, dict) else list(self.mask_dir),
            "mask_template": self.mask_template,
            "stem_replace": [list(p) for p in self.stem_replace],
            "ignore_leading_zeros": self.ignore_leading_zeros,
            "mask_polarity": self.mask_encoding.polarity,
            "mask_threshold": self.mask_encoding.threshold,
            "categories": self._categories,
            "extensions": list(self.extensions),
        }


def _defect_dirs_param(defect_dirs: Any) -> dict[str, tuple[str, ...]] | tuple[str, ...]:
    """``defect_dirs`` as ``{defect_type: candidates}``, or a tuple of globs (see :class:`FolderAdapter`)."""
    if defect_dirs is None:
        return {}
    if isinstance(defect_dirs, (str, os.PathLike)):
        text = os.fspath(defect_dirs)
        return (text,) if _is_glob(text) else {Path(text).name: (text,)}
    if isinstance(defect_dirs, Mapping):
        return {str(k): _as_tuple(v) for k, v in defect_dirs.items()}
    if isinstance(defect_dirs, (list, tuple)) and defect_dirs and all(isinstance(v, str) for v in defect_dirs):
        globs = [v for v in defect_dirs if _is_glob(v)]
        if len(globs) == len(defect_dirs):
            return tuple(defect_dirs)
        if not globs:
            return {k: (v,) for k, v in _plain_types(list(defect_dirs)).items()}
        raise ValueError(f"defect_dirs={list(defect_dirs)!r} mixes globs and plain folders; use one kind")
    raise ValueError(f"defect_dirs={defect_dirs!r} must be a folder, a glob, a list of folders or of globs, or a "
                     f"mapping {{defect_type: folder}}")


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

    Parameters
    ----------
    root : str or os.PathLike, optional
        PIPED's repository folder or its ``data/`` folder.

    Returns
    -------
    Path
        The folder of PIPED's classes.
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
    """PIPED through the folder adapter: :data:`PIPED_PARAMS` updated by ``overrides``.

    Parameters
    ----------
    root : str or os.PathLike, optional
        PIPED's folder (see :func:`resolve_piped_root`).
    **overrides : Any
        :class:`FolderAdapter` keywords replacing those of :data:`PIPED_PARAMS`.

    Returns
    -------
    FolderAdapter
        The PIPED adapter.
    """
    params = {**PIPED_PARAMS, **overrides}
    try:
        inspect.signature(FolderAdapter).bind("root", **params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for the piped adapter: {exc}; it accepts FolderAdapter's keywords "
                         f"{[p for p in inspect.signature(FolderAdapter).parameters if p != 'root']}") from exc
    return PipedAdapter(resolve_piped_root(root), **params)
