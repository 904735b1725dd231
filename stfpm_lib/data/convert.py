"""Write any adapter's dataset into the MVTec AD layout, checking it as it goes.

Output (``out_root``)::

    <category>/train/good/<stem>.png
    <category>/test/good/<stem>.png
    <category>/test/<defect_type>/<stem>.png
    <category>/ground_truth/<defect_type>/<stem>_mask.png     8-bit, 0 = normal, 255 = defect
    manifest.json                                             source, parameters, counts, changes, sha256 of every file

Normals without an official split (folder datasets) are split into train/good and test/good
by a seeded permutation; official splits (MVTec AD, VisA) are kept (optionally subsampled).
Masks are read with the adapter's :class:`~stfpm_lib.data.adapters.MaskEncoding` and written as 0/255.
Every defect must have exactly one mask of its image's size with at least one defect pixel
(or, with ``allow_empty_masks``, none: recorded in the manifest's ``empty_masks``), and no mask
may be left without its image. Images of a category may differ in size (``size_mismatch="allow"``,
the default: every image is resized to ``image_size`` for the network, each mask is checked against
its own image, AU-PRO at original resolution uses each image's size); ``"skip"`` keeps only the
most common size but refuses to drop half of a category or more, ``"error"`` refuses mixed sizes.
Everything is written into a temporary folder beside ``out_root``, verified by re-indexing
(:func:`verify_mvtec_root`), and renamed into place: nothing half-written is ever visible.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..io import atomic_write_text, relative_posix, sha256_file
from .adapters import AdapterIndex, DatasetAdapter, binarize_mask
from .imageio import check_mask_has_defect, image_size_of, read_image, read_mask_values
from .mvtec import MANIFEST_NAME, DataError, index_category, list_categories, list_images, manifest_allows_empty_masks

__all__ = ["convert_to_mvtec", "verify_mvtec_root", "MANIFEST_NAME", "ConversionPlan", "plan_category"]

_KEEP_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class ConversionPlan:
    """What will be written for one category: (source, destination relative to the category) pairs.

    Attributes
    ----------
    category : str
        Category name.
    index : AdapterIndex
        The category's files as the adapter found them.
    train, test_good : list of Path
        Normal images chosen for ``train/good`` and ``test/good``.
    defects : list of Sample
        Anomalous test samples chosen.
    size_wh : tuple of int, optional
        The category's one image size (W, H) in pixels, else None.
    skipped : list of dict
        Images left out (by size), for the manifest.
    changes : list of str
        One line per choice made (subsampling, splitting, sizes left out), for the manifest.
    sizes : dict of str to int
        ``"WxH"`` -> number of images.
    empty_masks : list of str
        Masks without a defect pixel (kept with ``allow_empty_masks``).
    """

    category: str
    index: AdapterIndex
    train: list[Path] = field(default_factory=list)
    test_good: list[Path] = field(default_factory=list)
    defects: list = field(default_factory=list)  # list[Sample]
    size_wh: tuple[int, int] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> number of images
    empty_masks: list[str] = field(default_factory=list)  # masks without a defect pixel (allow_empty_masks)

    def counts(self) -> dict[str, int]:
        """Planned counts in :meth:`CategoryIndex.counts` form."""
        counts = {"train_good": len(self.train), "test_good": len(self.test_good)}
        for sample in self.defects:
            key = f"test_{sample.defect_type}"
            counts[key] = counts.get(key, 0) + 1
        return counts


def _rng(seed: int, category: str) -> np.random.Generator:
    # Per-category stream: adding or removing a category never changes another one's selection.
    return np.random.default_rng([int(seed), zlib.crc32(category.encode("utf-8"))])


def _subset(paths: Sequence, n: int | None, rng: np.random.Generator, what: str) -> list:
    items = list(paths)
    if n is None or n >= len(items):
        if n is not None and n > len(items):
            raise DataError(f"{what}: asked for {n} images but only {len(items)} exist")
        return items
    if n < 0:
        raise ValueError(f"{what}: count must be >= 0, got {n}")
    chosen = sorted(rng.choice(len(items), size=n, replace=False).tolist())
    return [items[i] for i in chosen]


def _size_filter(plan: ConversionPlan, index: AdapterIndex, category: str,
                 size_mismatch: str) -> Callable[[Path], bool]:
    """Which images to keep (masks are checked against their own image when written). Sets
    ``plan.size_wh`` (one size, else None) and ``plan.sizes``, records skipped images; ``size_mismatch``
    as in :func:`plan_category`."""
    if size_mismatch not in ("error", "skip", "allow"):
        raise ValueError(f"size_mismatch={size_mismatch!r} must be 'allow', 'skip' or 'error'")
    everything = list(index.train) + list(index.pool) + [s.image_path for s in index.test]
    sizes = {p: image_size_of(p) for p in everything}
    common = Counter(sizes.values()).most_common()
    size = common[0][0]
    plan.sizes = {f"{w}x{h}": n for (w, h), n in common}
    odd = [p for p in everything if sizes[p] != size]
    if odd and size_mismatch == "skip" and 2 * len(odd) >= len(everything):
        raise DataError(f"category {category!r}: size_mismatch='skip' would leave out {len(odd)} of "
                        f"{len(everything)} images ({len(odd) / len(everything):.0%}): only {common[0][1]} are "
                        f"{size[0]}x{size[1]}, the most common of {len(common)} sizes; use size_mismatch='allow' "
                        f"(the default: every image is resized to image_size)")
    if odd and size_mismatch != "allow":
        if size_mismatch == "error":
            listed = ", ".join(f"{p} ({sizes[p][0]}x{sizes[p][1]})" for p in odd[:5])
            raise DataError(f"category {category!r}: images of different sizes; most are {size[0]}x{size[1]} but "
                            f"{len(odd)} differ: {listed} (size_mismatch='allow', the default, accepts them; "
                            f"'skip' leaves them out)")
        if size_mismatch == "skip":
            for p in odd:
                plan.skipped.append({"source": relative_posix(p, index.root, p.name),
                                     "reason": f"size {sizes[p][0]}x{sizes[p][1]} differs from the category's "
                                               f"{size[0]}x{size[1]}"})
            plan.changes.append(f"{category}: {len(odd)} image(s) of another size than {size[0]}x{size[1]} left out")
    elif odd:
        plan.changes.append(f"{category}: images of {len(common)} sizes kept as they are ({plan.sizes})")
    plan.size_wh = None if odd and size_mismatch == "allow" else size
    return (lambda p: True) if size_mismatch == "allow" else (lambda p: sizes[p] == size)


def _choose_normals(plan: ConversionPlan, index: AdapterIndex, category: str, keep: Callable[[Path], bool],
                    n_train: int | None, n_test_good: int | None, rng: np.random.Generator, seed: int) -> None:
    """Set ``plan.train`` and ``plan.test_good``: the official split (subsampled) or a seeded split of the pool."""
    train = [p for p in index.train if keep(p)]
    pool = [p for p in index.pool if keep(p)]
    good = [p for p in index.test_good if keep(p)]
    if index.has_official_split:
        plan.train = _subset(train, n_train, rng, f"{category} train/good")
        plan.test_good = _subset(good, n_test_good, rng, f"{category} test/good")
        if len(plan.train) < len(train) or len(plan.test_good) < len(good):
            plan.changes.append(f"{category}: official split subsampled (seed {seed}): train/good "
                                f"{len(plan.train)} of {len(train)}, test/good {len(plan.test_good)} of {len(good)}")
        return
    n_test = len(pool) // 3 if n_test_good is None else int(n_test_good)
    n_tr = len(pool) - n_test if n_train is None else int(n_train)
    if n_test < 0 or n_tr < 1 or n_tr + n_test > len(pool):
        raise DataError(f"category {category!r}: cannot take {n_tr} train + {n_test} test normal images "
                        f"from {len(pool)} (need n_train >= 1 and n_train + n_test_good <= {len(pool)})")
    order = rng.permutation(len(pool)).tolist()
    plan.test_good = sorted(pool[i] for i in order[:n_test])
    plan.train = sorted(pool[i] for i in order[n_test:n_test + n_tr])
    plan.changes.append(f"{category}: the {len(pool)} normal images split by a seeded permutation (seed {seed}) "
                        f"into train/good ({n_tr}) and test/good ({n_test})"
                        + (f"; {len(pool) - n_tr - n_test} left out" if n_tr + n_test < len(pool) else ""))


def plan_category(
    adapter: DatasetAdapter, category: str, *, n_train: int | None = None, n_test_good: int | None = None,
    max_defects_per_type: int | None = None, seed: int = 0, size_mismatch: str = "allow",
    index: AdapterIndex | None = None,
) -> ConversionPlan:
    """Index ``category`` (unless ``index`` is given), check image sizes and choose the files (seeded); writes nothing.

    Parameters
    ----------
    adapter : DatasetAdapter
        The dataset's adapter.
    category : str
        Category name.
    n_train, n_test_good : int, optional
        Normal images for train/good and test/good (see :func:`convert_to_mvtec`).
    max_defects_per_type : int, optional
        Keep at most this many anomalous images per defect type.
    seed : int
        Selection seed.
    size_mismatch : str
        ``allow``, ``skip`` or ``error`` (see :func:`convert_to_mvtec`).
    index : AdapterIndex, optional
        An index already made; ``None`` calls ``adapter.index(category)``.

    Returns
    -------
    ConversionPlan
        The files to write.
    """
    index = adapter.index(category) if index is None else index
    plan = ConversionPlan(category=category, index=index)
    rng = _rng(seed, category)
    keep = _size_filter(plan, index, category, size_mismatch)
    _choose_normals(plan, index, category, keep, n_train, n_test_good, rng, seed)
    if not plan.train:
        raise DataError(f"category {category!r}: no training images left")
    by_type: dict[str, list] = {}
    for sample in index.defects:
        if keep(sample.image_path):
            by_type.setdefault(sample.defect_type, []).append(sample)
    for defect_type, samples in sorted(by_type.items()):
        chosen = _subset(samples, None if max_defects_per_type is None else min(max_defects_per_type, len(samples)),
                         rng, f"{category} test/{defect_type}")
        if len(chosen) < len(samples):
            plan.changes.append(f"{category}: {len(chosen)} of {len(samples)} '{defect_type}' images kept "
                                f"(seeded subset, seed {seed})")
        plan.defects.extend(chosen)
    return plan


def _write_image(source: Path, dest_dir: Path, image_format: str, compress_level: int) -> Path:
    """Copy (``keep``) or re-encode as 8-bit PNG; decoded by :func:`read_image` either way (same rules as training)."""
    suffix = source.suffix.lower()
    image = read_image(source)  # fully decodable; EXIF-oriented, 16-bit scaled, L or RGB
    if image_format == "keep" and suffix in _KEEP_SUFFIXES:
        dest = dest_dir / f"{source.stem}{suffix}"
        _check_free(dest, source)
        shutil.copyfile(source, dest)  # read later by the same reader: the same pixels
        return dest
    dest = dest_dir / f"{source.stem}.png"
    _check_free(dest, source)
    image.save(dest, format="PNG", compress_level=compress_level)
    return dest


def _check_free(dest: Path, source: Path) -> None:
    if dest.exists():
        raise DataError(f"two source images map to {dest.name} in {dest.parent.name}/ (second: {source}); "
                        f"file stems must be unique within a folder")


def _write_category(plan: ConversionPlan, folder: Path, image_format: str, compress_level: int,
                    allow_empty_masks: bool, check_polarity: bool) -> list[dict[str, Any]]:
    index = plan.index
    records: list[dict[str, Any]] = []
    fractions: list[float] = []

    def record(dest: Path, source: Path, **extra: Any) -> None:
        records.append({"path": dest.relative_to(folder.parent).as_posix(),
                        "source": relative_posix(source, index.root, source.name), "sha256": sha256_file(dest), **extra})

    for sources, sub in ((plan.train, "train/good"), (plan.test_good, "test/good")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for source in sources:
            record(_write_image(source, folder / sub, image_format, compress_level), source)
    for sample in plan.defects:
        image_dir = folder / "test" / sample.defect_type
        mask_dir = folder / "ground_truth" / sample.defect_type
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        if sample.mask_path is None:
            raise DataError(f"defect image {sample.image_path} has no mask")
        values = read_mask_values(sample.mask_path)
        width, height = image_size_of(sample.image_path)
        if values.shape != (height, width):
            raise DataError(f"mask {sample.mask_path} is {values.shape[1]}x{values.shape[0]} but its image "
                            f"{sample.image_path} is {width}x{height}")
        binary = binarize_mask(values, index.mask_encoding)
        n_defect = int(binary.sum())
        if not n_defect:
            plan.empty_masks.append(relative_posix(sample.mask_path, index.root, sample.mask_path.name))
        check_mask_has_defect(binary, sample.mask_path, sample.image_path, allow_empty=allow_empty_masks,
                              detail=f" under the rule '{index.mask_encoding.describe()}' (values found: "
                                     f"{np.unique(values).tolist()[:8]}); check mask_polarity / mask_threshold")
        dest = _write_image(sample.image_path, image_dir, image_format, compress_level)
        mask_dest = mask_dir / f"{dest.stem}_mask.png"
        _check_free(mask_dest, sample.mask_path)
        Image.fromarray(binary.astype(np.uint8) * 255).save(mask_dest, format="PNG",
                                                                      compress_level=compress_level)
        record(dest, sample.image_path)
        record(mask_dest, sample.mask_path, defect_fraction=round(n_defect / binary.size, 6))
        fractions.append(n_defect / binary.size)
    if check_polarity and fractions and float(np.median(fractions)) > 0.5:
        raise DataError(f"category {plan.category!r}: the median mask marks {np.median(fractions):.0%} of its image "
                        f"as defect under '{index.mask_encoding.describe()}' (e.g. {plan.defects[0].mask_path}); the mask "
                        f"polarity is probably inverted (set mask_polarity), or pass check_polarity=False")
    return records


def _verify_category_files(root: Path, category: str, allow_empty_masks: bool) -> dict[str, int]:
    """One category of :func:`verify_mvtec_root` (without the manifest): returns its counts."""
    idx = index_category(root, category)
    folder = root / category
    paired = set()
    for sample in idx.test:
        if sample.mask_path is None:
            continue
        paired.add(sample.mask_path.resolve())
        values = read_mask_values(sample.mask_path)
        size = image_size_of(sample.image_path)
        if values.shape != (size[1], size[0]):
            raise DataError(f"mask {sample.mask_path} is {values.shape[1]}x{values.shape[0]} but its image "
                            f"{sample.image_path} is {size[0]}x{size[1]}")
        bad = set(np.unique(values).tolist()) - {0, 255}
        if bad:
            raise DataError(f"mask {sample.mask_path} has values {sorted(bad)[:5]} other than 0/255")
        check_mask_has_defect(values == 255, sample.mask_path, sample.image_path, allow_empty=allow_empty_masks)
    gt = folder / "ground_truth"
    if gt.is_dir():
        for sub in sorted(p for p in gt.iterdir() if p.is_dir()):
            for mask in list_images(sub):
                if mask.resolve() not in paired:
                    raise DataError(f"mask {mask} pairs with no test image "
                                    f"(expected test/{sub.name}/{mask.name.replace('_mask', '')})")
    return idx.counts()


def _verify_against_manifest(root: Path, category: str, counts: dict[str, int], manifest: dict[str, Any]) -> None:
    """The category's counts, file list and sha256s are those of ``manifest``."""
    folder = root / category
    entry = manifest.get("categories", {}).get(category)
    if entry is None:
        raise DataError(f"{root / MANIFEST_NAME}: no entry for category {category!r}")
    if entry["counts"] != counts:
        raise DataError(f"{folder}: counts {counts} differ from the manifest's {entry['counts']}")
    listed = {rec["path"]: rec["sha256"] for rec in entry["files"]}
    present = {p.relative_to(root).as_posix() for p in folder.rglob("*") if p.is_file()}
    if present != set(listed):
        extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
        raise DataError(f"{folder}: files differ from the manifest: unlisted {extra[:3]}, missing {missing[:3]}")
    for rel, digest in listed.items():
        if sha256_file(root / rel) != digest:
            raise DataError(f"{root / rel}: sha256 differs from the manifest (file changed or corrupted)")


def verify_mvtec_root(root: str | os.PathLike, *, check_manifest: bool = True,
                      categories: Sequence[str] | None = None,
                      allow_empty_masks: bool | None = None) -> dict[str, dict[str, int]]:
    """Check an MVTec-layout dataset; return ``{category: counts}`` or raise :class:`DataError`.

    Checks, per category: it indexes (:func:`index_category`: training images, one mask per
    defect); each mask has its image's size (images may differ in size), only values 0/255 and at least
    one 255 (unless ``allow_empty_masks``; default: the manifest's setting, else False); no
    file in ``ground_truth/`` without its image. With ``check_manifest`` (and a
    ``manifest.json``): the counts and the sha256 of every file match, and no file is unlisted.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset root in the MVTec AD layout.
    check_manifest : bool
        Also check ``manifest.json`` (counts, sha256, no unlisted file) when present.
    categories : sequence of str, optional
        Categories to check (default: all found).
    allow_empty_masks : bool, optional
        Accept masks without a defect pixel; ``None``: the manifest's setting, else False.

    Returns
    -------
    dict of str to dict of str to int
        ``{category: counts}``.
    """
    root = Path(root)
    manifest = None
    if check_manifest and (root / MANIFEST_NAME).is_file():
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    if allow_empty_masks is None:
        allow_empty_masks = manifest_allows_empty_masks(root)
    names = list(categories) if categories is not None else list_categories(root)
    if not names:
        raise DataError(f"{root}: no category (no <category>/train/good folder)")
    result: dict[str, dict[str, int]] = {}
    for category in names:
        result[category] = _verify_category_files(root, category, allow_empty_masks)
        if manifest is not None:
            _verify_against_manifest(root, category, result[category], manifest)
    return result


def _changes(plans: list[ConversionPlan], adapter: DatasetAdapter, image_format: str) -> list[str]:
    suffixes = sorted({p.suffix.lower() for plan in plans
                       for p in plan.train + plan.test_good + [s.image_path for s in plan.defects]})
    mask_suffixes = sorted({s.mask_path.suffix.lower() for plan in plans for s in plan.defects if s.mask_path})
    recoded = [s for s in suffixes if not (image_format == "keep" and s in _KEEP_SUFFIXES)]
    changes = []
    if recoded:
        changes.append(f"image format: {', '.join(s.lstrip('.').upper() for s in recoded)} -> PNG "
                       f"(lossless; pixel values unchanged; modes other than RGB/L converted to RGB)")
    rules = {plan.index.mask_encoding for plan in plans}
    for rule in sorted(rules, key=lambda r: (r.polarity, r.threshold)):
        text = (f"masks ({', '.join(s.lstrip('.').upper() for s in mask_suffixes)}) binarised by "
                f"'{rule.describe()}' and written as 8-bit PNG with 255 = defect, 0 = normal")
        if rule.polarity == "low":
            text += " (inverted: the source marks defects with low values)"
        changes.append(text)
    changes.append("files renamed and rearranged into the MVTec AD layout: images keep their stem "
                   "(<stem>.png), masks become ground_truth/<type>/<stem>_mask.png")
    for plan in plans:
        changes.extend(plan.changes)
    return changes


def _check_convert_args(adapter: DatasetAdapter, out_root: Path, categories: Sequence[str] | None,
                        image_format: str, normal_only: str, overwrite: bool) -> list[str]:
    """Refuse bad arguments of :func:`convert_to_mvtec` before any work; return the category names."""
    if out_root.exists() and not overwrite:
        raise DataError(f"output {out_root} already exists (pass overwrite=True / --overwrite to replace it)")
    if image_format not in ("png", "keep"):
        raise ValueError(f"image_format={image_format!r} must be 'png' or 'keep'")
    if normal_only not in ("skip", "error", "keep"):
        raise ValueError(f"normal_only={normal_only!r} must be 'skip', 'error' or 'keep'")
    names = list(categories) if categories is not None else adapter.categories()
    if not names:
        raise DataError(f"{adapter.name} dataset at {adapter.root}: no categories")
    available = adapter.categories()
    unknown = [c for c in names if c not in available]
    if unknown:
        raise DataError(f"{adapter.name} dataset at {adapter.root}: categories {unknown} not found; found {available}")
    return names


def _write_categories(tmp: Path, plans: list[ConversionPlan], image_format: str, compress_level: int,
                      allow_empty_masks: bool, check_polarity: bool,
                      log: Callable[[str], None] | None) -> dict[str, Any]:
    """Write every planned category under ``tmp``; return their manifest entries."""
    manifest_categories: dict[str, Any] = {}
    for plan in plans:
        files = _write_category(plan, tmp / plan.category, image_format, compress_level, allow_empty_masks,
                                check_polarity)
        manifest_categories[plan.category] = {
            "counts": plan.counts(), "source_counts": plan.index.counts(), "image_size_wh": plan.size_wh,
            "image_sizes_wh": plan.sizes, "notes": list(plan.index.notes), "skipped_files": plan.skipped,
            "empty_masks": plan.empty_masks, "files": files,
        }
        if log:
            log(f"{plan.category}: {plan.counts()}")
    return manifest_categories


def _plan_categories(adapter: DatasetAdapter, names: Sequence[str], normal_only: str,
                     log: Callable[[str], None] | None, **plan_kw: Any) -> tuple[list[ConversionPlan], dict[str, str]]:
    """A :func:`plan_category` per category (``plan_kw``), and the normal-only categories skipped (with why)."""
    plans: list[ConversionPlan] = []
    skipped_categories: dict[str, str] = {}
    for category in names:
        index = adapter.index(category)
        if not index.defects:
            reason = "no anomalous images (normal-only class)"
            if normal_only == "error":
                raise DataError(f"category {category!r} of {adapter.root}: {reason}; pass normal_only='skip' or 'keep'")
            if normal_only == "skip":
                skipped_categories[category] = reason
                if log:
                    log(f"{category}: skipped, {reason}")
                continue
        plans.append(plan_category(adapter, category, **plan_kw, index=index))
    return plans, skipped_categories


def _manifest(adapter: DatasetAdapter, plans: list[ConversionPlan], skipped_categories: dict[str, str],
              conversion: dict[str, Any], manifest_categories: dict[str, Any], image_format: str,
              out_root: Path) -> dict[str, Any]:
    """The ``manifest.json`` of a converted dataset (``source.root_relative``: the source root relative to
    the folder holding the manifest; no absolute path is written)."""
    changes = _changes(plans, adapter, image_format)
    changes += [f"category {c} skipped: {r}" for c, r in skipped_categories.items()]
    return {
        "format": "MVTec AD layout",
        "created_by": "stfpm_lib.data.convert.convert_to_mvtec",
        "source": {**adapter.describe(),
                   "root_relative": Path(os.path.relpath(adapter.root.resolve(), out_root.resolve())).as_posix()},
        "mask_rules": {p.category: p.index.mask_encoding.to_dict() for p in plans},
        "conversion": conversion,
        "counts": {p.category: p.counts() for p in plans},
        "skipped_categories": skipped_categories,
        "changes": changes,
        "categories": manifest_categories,
    }


def _replace_dir(tmp: Path, out_root: Path) -> None:
    """Move the finished ``tmp`` to ``out_root``; an existing ``out_root`` is removed only afterwards."""
    if out_root.exists():
        old = out_root.parent / f".{out_root.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(out_root, old)
        os.replace(tmp, out_root)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out_root)


def convert_to_mvtec(
    adapter: DatasetAdapter,
    out_root: str | os.PathLike,
    *,
    categories: Sequence[str] | None = None,
    n_train: int | None = None,
    n_test_good: int | None = None,
    max_defects_per_type: int | None = None,
    seed: int = 0,
    image_format: Literal["png", "keep"] = "png",
    size_mismatch: Literal["allow", "skip", "error"] = "allow",
    normal_only: Literal["skip", "error", "keep"] = "skip",
    allow_empty_masks: bool = False,
    check_polarity: bool = True,
    compress_level: int = 9,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Convert ``adapter``'s dataset into the MVTec AD layout at ``out_root``; return ``out_root``.

    Parameters
    ----------
    adapter : DatasetAdapter
        Any adapter from :func:`~stfpm_lib.data.adapters.get_adapter`.
    out_root : str or os.PathLike
        The new dataset root (must not exist unless ``overwrite``).
    categories : sequence of str, optional
        Which categories (default: all the adapter finds).
    n_train, n_test_good : int, optional
        Normal images for train/good and test/good. Unsplit normals
        (folder datasets): default all but a third / a third (48 → 32 + 16); official
        splits: a seeded subsample when smaller than the split.
    max_defects_per_type : int, optional
        Keep at most this many anomalous images per defect type (seeded).
    seed : int
        Selection seed (per category, independent of the other categories).
    image_format : {"png", "keep"}
        ``png`` re-encodes every image losslessly as PNG; ``keep`` copies
        PNG/JPEG files byte for byte (others become PNG).
    size_mismatch : {"allow", "skip", "error"}
        Images of another size than the category's most common one: ``allow``
        (default; every image is resized to ``image_size`` for the network and each mask must
        match its own image), ``skip`` (left out and recorded; refused when that would leave
        out half of a category or more) or ``error``.
    normal_only : {"skip", "error", "keep"}
        Categories without anomalous images: ``skip`` (recorded), ``error`` or ``keep``.
    allow_empty_masks : bool
        Accept masks with no defect pixel (otherwise an error); they are
        listed in the manifest's ``categories.<category>.empty_masks``.
    check_polarity : bool
        Refuse a category whose median mask marks more than half of its
        image as defect (the sign of an inverted mask polarity).
    compress_level : int
        Zlib level of the PNGs (0–9; does not change pixels).
    overwrite : bool
        Replace an existing ``out_root`` (only after the new one is complete).
    log : callable, optional
        Called with one line per category.

    Returns
    -------
    Path
        ``out_root``.
    """
    out_root = Path(out_root).expanduser()
    names = _check_convert_args(adapter, out_root, categories, image_format, normal_only, overwrite)

    plans, skipped_categories = _plan_categories(adapter, names, normal_only, log, n_train=n_train,
                                                 n_test_good=n_test_good, max_defects_per_type=max_defects_per_type,
                                                 seed=seed, size_mismatch=size_mismatch)
    if not plans:
        raise DataError(f"nothing to convert: every category was skipped ({skipped_categories})")

    out_root.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_root.parent / f".{out_root.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()
        manifest_categories = _write_categories(tmp, plans, image_format, compress_level, allow_empty_masks,
                                                check_polarity, log)
        conversion = {"categories": names, "n_train": n_train, "n_test_good": n_test_good,
                      "max_defects_per_type": max_defects_per_type, "seed": seed, "image_format": image_format,
                      "size_mismatch": size_mismatch, "normal_only": normal_only,
                      "allow_empty_masks": allow_empty_masks, "check_polarity": check_polarity,
                      "compress_level": compress_level}
        manifest = _manifest(adapter, plans, skipped_categories, conversion, manifest_categories, image_format,
                             out_root)
        atomic_write_text(tmp / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
        verified = verify_mvtec_root(tmp, categories=[p.category for p in plans])
        for plan in plans:
            if verified[plan.category] != plan.counts():
                raise DataError(f"{plan.category}: wrote {verified[plan.category]} but planned {plan.counts()}")
        _replace_dir(tmp, out_root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_root
