"""Reproducible synthetic defects with exact masks on real CC0 textures (offline).

The textures are scikit-image's ``brick``, ``grass`` and ``gravel`` (CC0, shipped with the
package). Normal images are random crops; defective images add one of

* ``scratch``: a bright or dark line a few pixels wide at a random angle;
* ``blob``: a darkened or brightened ellipse;
* ``patch``: a square cut from another place of a rotated copy of the texture and pasted.

The mask is the defect's region and exactly the set of changed pixels (255 = defect, as in
MVTec AD). Same arguments and seed → byte-identical files (for a given Pillow/zlib).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from skimage.draw import ellipse, polygon

__all__ = ["TEXTURES", "DEFECT_TYPES", "make_synthetic_category", "load_texture", "add_defect"]

TEXTURES = ("brick", "grass", "gravel")
DEFECT_TYPES = ("scratch", "blob", "patch")


def load_texture(name: str) -> np.ndarray:
    """A scikit-image CC0 texture as uint8 (H, W).

    Parameters
    ----------
    name : str
        One of :data:`TEXTURES`.

    Returns
    -------
    np.ndarray
        Grayscale texture, uint8 (H, W).
    """
    if name not in TEXTURES:
        raise ValueError(f"texture={name!r} is not one of {list(TEXTURES)}")
    image = getattr(skimage.data, name)()
    if image.ndim == 3:
        image = image.mean(axis=2)
    return np.asarray(image, dtype=np.uint8)


def _crop(texture: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    crop = 2 * size if min(texture.shape) >= 2 * size else size
    top = rng.integers(0, texture.shape[0] - crop + 1)
    left = rng.integers(0, texture.shape[1] - crop + 1)
    patch = texture[top:top + crop, left:left + crop]
    return np.asarray(Image.fromarray(patch).resize((size, size), Image.BILINEAR))


def _scratch(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    centre = rng.uniform(0.3, 0.7, size=2) * size
    angle = rng.uniform(0, np.pi)
    half_len, half_w = rng.uniform(0.15, 0.35) * size, max(1.0, size / 40)
    d, n = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    corners = [centre + sl * half_len * d + sw * half_w * n for sl, sw in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    rr, cc = polygon([c[0] for c in corners], [c[1] for c in corners], shape=image.shape)
    mask = np.zeros(image.shape, bool)
    mask[rr, cc] = True
    return mask


def _blob(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    r, c = rng.uniform(0.3, 0.7, size=2) * size
    rr, cc = ellipse(r, c, rng.uniform(0.06, 0.15) * size, rng.uniform(0.06, 0.15) * size,
                     shape=image.shape, rotation=rng.uniform(0, np.pi))
    mask = np.zeros(image.shape, bool)
    mask[rr, cc] = True
    return mask


def _square(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    side = max(3, int(rng.uniform(0.15, 0.3) * size))
    top, left = rng.integers(0, size - side + 1, size=2)
    mask = np.zeros(image.shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def add_defect(kind: str, image: np.ndarray, texture: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add one defect of type ``kind`` to a uint8 (H, W) ``image``; return (defective image, mask).

    The mask (bool (H, W)) is the defect's region, and it is *exactly* the set of pixels
    that differ from ``image``: a region pixel that the defect would leave unchanged (e.g.
    darkening a 0) is set to ``255 - value`` instead, which always differs.
    ``texture`` is the donor for ``patch``. Deterministic given ``rng``'s state.

    Parameters
    ----------
    kind : str
        One of :data:`DEFECT_TYPES`.
    image : np.ndarray
        uint8 (H, W) image.
    texture : np.ndarray
        uint8 (H, W) donor texture for ``patch``.
    rng : np.random.Generator
        Random generator.

    Returns
    -------
    tuple of np.ndarray
        Defective image uint8 (H, W) and mask bool (H, W).
    """
    region: dict[str, Callable] = {"scratch": _scratch, "blob": _blob, "patch": _square}
    if kind not in region:
        raise ValueError(f"defect type {kind!r} is not one of {list(DEFECT_TYPES)}")
    mask = region[kind](image, rng)
    out = image.astype(np.int16)
    if kind == "patch":
        donor = np.rot90(_crop(texture, image.shape[0], rng), k=int(rng.integers(1, 4)))
        out[mask] = 255 - donor[mask]
    else:
        dark = rng.random() < 0.5
        out[mask] = out[mask] // 3 if dark else 255 - (255 - out[mask]) // 3
    same = mask & (out == image)
    out[same] = 255 - out[same]
    return out.astype(np.uint8), mask


def make_synthetic_category(
    root: str | os.PathLike,
    category: str = "brick",
    *,
    texture: str | None = None,
    n_train: int = 12,
    n_test_good: int = 4,
    defect_types: Sequence[str] = ("scratch", "blob"),
    n_per_defect: int = 3,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write an MVTec-layout category of synthetic defects on a real texture; return its folder.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset root; the category goes to ``root/category``.
    category : str
        Category name (folder name).
    texture : str, optional
        One of :data:`TEXTURES` (default: ``category`` if it is one, else ``brick``).
    n_train, n_test_good, n_per_defect : int
        Image counts.
    defect_types : sequence of str
        Subset of :data:`DEFECT_TYPES`.
    size : int
        Side of the square grayscale PNGs, pixels.
    seed : int
        The images depend on nothing else.

    Returns
    -------
    Path
        ``root/category``.
    """
    texture = texture or (category if category in TEXTURES else "brick")
    unknown = [k for k in defect_types if k not in DEFECT_TYPES]
    if unknown:
        raise ValueError(f"defect_types {unknown} not in {list(DEFECT_TYPES)}")
    if len(set(defect_types)) != len(tuple(defect_types)):
        raise ValueError(f"defect_types {list(defect_types)} has repeats")
    for name, value in (("n_train", n_train), ("n_test_good", n_test_good), ("n_per_defect", n_per_defect)):
        if int(value) < (1 if name == "n_train" else 0):
            raise ValueError(f"{name}={value} must be >= {1 if name == 'n_train' else 0}")
    if not 16 <= int(size) <= 256:
        raise ValueError(f"size={size} must be in [16, 256] (the textures are 512x512)")
    source = load_texture(texture)
    rng = np.random.default_rng(seed)
    folder = Path(root) / category

    def save(array: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    for i in range(n_train):
        save(_crop(source, size, rng), folder / "train" / "good" / f"{i:03d}.png")
    for i in range(n_test_good):
        save(_crop(source, size, rng), folder / "test" / "good" / f"{i:03d}.png")
    for kind in defect_types:
        for i in range(n_per_defect):
            image, mask = add_defect(kind, _crop(source, size, rng), source, rng)
            save(image, folder / "test" / kind / f"{i:03d}.png")
            save(mask.astype(np.uint8) * 255, folder / "ground_truth" / kind / f"{i:03d}_mask.png")
    return folder
