"""Image and mask preprocessing, faithful to the official code by default.

Files are decoded by :mod:`stfpm_lib.data.imageio` (EXIF orientation, 16-bit scaling, the
empty-mask rule, errors naming the file). Images: RGB (grayscale replicated to 3 channels) → resize to ``cfg.image_size`` × ``cfg.image_size`` with
PIL bilinear (antialiased, as torchvision's ``Resize`` on PIL images) → optional centre
crop → ``[0, 1]`` → ImageNet normalisation.

Masks, by ``cfg.mask_rule``:

* ``gt0`` (official): ``cv2.resize`` INTER_LINEAR on the uint8 mask, reproduced bit for bit by
  :func:`resize_linear_uint8` (own numpy code; OpenCV is only a test dependency), then any
  value > 0. Not antialiased: every output pixel reads 2×2 source pixels.
* ``nearest``: nearest-neighbour resize, value > 0 (XIA).
* ``eq1``: PIL bilinear resize, only pixels that stay exactly 255 (HCW's truncation).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from ..config import TransformSettings
from .imageio import check_mask_has_defect, image_size_of, read_image, read_mask_values
from .mvtec import DataError

__all__ = ["TransformSettings", "IMAGENET_MEAN", "IMAGENET_STD", "read_image_uint8", "read_mask_uint8", "normalize",
           "denormalize", "load_image", "load_mask", "image_size_of", "resize_linear_uint8"]

if TYPE_CHECKING:  # only for annotations: the functions read the TransformSettings the config builds
    from ..config import STFPMConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _center_crop(array: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return array
    h, w = array.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return array[top:top + size, left:left + size]


def read_image_uint8(path: str | Path, cfg: TransformSettings | STFPMConfig) -> np.ndarray:
    """Decoded, resized and cropped RGB image, uint8 of shape (S, S, 3), S = ``cfg.input_size``.

    Parameters
    ----------
    path : str or Path
        Image file.
    cfg : TransformSettings or STFPMConfig
        Image size and crop settings.

    Returns
    -------
    np.ndarray
        uint8 (S, S, 3).
    """
    cfg = TransformSettings.from_any(cfg)
    img = read_image(path).convert("RGB").resize((cfg.image_size, cfg.image_size), Image.BILINEAR)
    return np.ascontiguousarray(_center_crop(np.asarray(img, dtype=np.uint8), cfg.crop_size))


def normalize(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) → ImageNet-normalised float32 (..., 3, H, W).

    Parameters
    ----------
    images_uint8 : np.ndarray or torch.Tensor
        uint8 images (..., H, W, 3).

    Returns
    -------
    torch.Tensor
        float32 (..., 3, H, W).
    """
    if isinstance(images_uint8, np.ndarray):
        x = torch.tensor(images_uint8, dtype=torch.float32)
    else:
        x = images_uint8.float()
    x = x.div_(255.0).movedim(-1, -3) if x is not images_uint8 else x.div(255.0).movedim(-1, -3)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def denormalize(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalised float (..., 3, H, W) → RGB float in [0, 1] of shape (..., H, W, 3), for plotting.

    Parameters
    ----------
    images : torch.Tensor or np.ndarray
        ImageNet-normalised images (..., 3, H, W).

    Returns
    -------
    np.ndarray
        RGB float in [0, 1], (..., H, W, 3).
    """
    x = torch.as_tensor(images).float()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1).movedim(-3, -1).numpy()


def load_image(path: str | Path, cfg: TransformSettings | STFPMConfig) -> torch.Tensor:
    """Network input for one image: float32 (3, S, S), ImageNet-normalised.

    Parameters
    ----------
    path : str or Path
        Image file.
    cfg : TransformSettings or STFPMConfig
        Image size and crop settings.

    Returns
    -------
    torch.Tensor
        float32 (3, S, S).
    """
    return normalize(read_image_uint8(path, cfg))


_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS: interpolation weights in units of 1/2048


def _linear_taps(src: int, dst: int, clamp_weight: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and integer weights (w0, w1), w0 + w1 = 2048, of each of ``dst`` outputs.

    Half-pixel centres: position p = (d + 0.5)·(src/dst) − 0.5 in float32 (the scale as
    1/(dst/src) in double), i0 = floor(p), weight of i1 = p − i0, weights rounded half to
    even. Outside the source the indices are clamped; ``clamp_weight`` (OpenCV does it for
    columns, not for rows) also moves the whole weight onto the clamped index.
    """
    pos = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    i0 = np.floor(pos)
    frac = (pos - i0).astype(np.float32)
    i0 = i0.astype(np.int64)
    if clamp_weight:
        frac[(i0 < 0) | (i0 >= src - 1)] = 0
    scale = np.float32(1 << _COEF_BITS)
    w0 = np.rint((np.float32(1) - frac) * scale).astype(np.int64)
    w1 = np.rint(frac * scale).astype(np.int64)
    return np.clip(i0, 0, src - 1), np.clip(i0 + 1, 0, src - 1), w0, w1


def resize_linear_uint8(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)`` of a uint8 (H, W) image, bit for bit.

    OpenCV's fixed-point path: a horizontal pass with 11-bit integer weights gives
    ``row = Σ w·pixel`` (pixel·2048 scale), then the vertical pass (OpenCV's vector kernel;
    it held for every output width tested, odd tails included) computes
    ``((row0 >> 4)·v0 >> 16) + ((row1 >> 4)·v1 >> 16)`` and rounds with ``(· + 2) >> 2``. A 2× reduction (OpenCV switches to INTER_AREA) gives
    the same numbers. Checked against OpenCV itself in ``tests/unit/test_transforms.py``.

    Parameters
    ----------
    image : np.ndarray
        uint8 (H, W) image.
    size_hw : tuple of int
        Output (h, w) in pixels.

    Returns
    -------
    np.ndarray
        uint8 (h, w).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {image.dtype} {image.shape}")
    h, w = (int(v) for v in size_hw)
    if h < 1 or w < 1:
        raise ValueError(f"output size must be positive, got {size_hw}")
    x0, x1, a0, a1 = _linear_taps(image.shape[1], w, clamp_weight=True)
    y0, y1, b0, b1 = _linear_taps(image.shape[0], h, clamp_weight=False)
    src = image.astype(np.int64)
    rows = (src[:, x0] * a0 + src[:, x1] * a1) >> 4  # (H, w)
    out = ((rows[y0] * b0[:, None]) >> 16) + ((rows[y1] * b1[:, None]) >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def read_mask_uint8(mask_path: str | Path | None, image_size_wh: tuple[int, int] | None,
                    cfg: TransformSettings | STFPMConfig, image_path: str | Path | None = None, *,
                    allow_empty: bool = False) -> np.ndarray:
    """Binarised mask at network resolution as uint8 0/1 of shape (S, S); zeros when ``mask_path`` is None.

    ``image_size_wh`` is the (width, height) of the image the mask belongs to; a mask of
    another size raises :class:`DataError` naming both files. A mask without any value > 0
    raises :class:`DataError` too, or warns with ``allow_empty`` (:func:`check_mask_has_defect`).

    Parameters
    ----------
    mask_path : str or Path, optional
        Mask file; ``None`` or ``""`` for a normal image.
    image_size_wh : tuple of int, optional
        (width, height) of the mask's image in pixels; ``None`` skips the size check.
    cfg : TransformSettings or STFPMConfig
        Image size and crop settings.
    image_path : str or Path, optional
        The mask's image, for messages.
    allow_empty : bool
        Warn instead of raising on a mask without defect pixel.

    Returns
    -------
    np.ndarray
        uint8 0/1 mask (S, S).
    """
    cfg = TransformSettings.from_any(cfg)
    size = cfg.input_size
    if mask_path is None or str(mask_path) == "":
        return np.zeros((size, size), dtype=np.uint8)
    values = read_mask_values(mask_path)
    mask = Image.fromarray(values, mode="L")
    if image_size_wh is not None and tuple(mask.size) != tuple(image_size_wh):
        raise DataError(
            f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but its image "
            f"{image_path or ''} is {image_size_wh[0]}x{image_size_wh[1]}"
        )
    check_mask_has_defect(values > 0, mask_path, image_path, allow_empty=allow_empty)
    s = cfg.image_size
    if cfg.mask_rule == "gt0":
        binary = resize_linear_uint8(values, (s, s)) > 0
    elif cfg.mask_rule == "nearest":
        binary = np.asarray(mask.resize((s, s), Image.NEAREST)) > 0
    else:  # eq1
        binary = np.asarray(mask.resize((s, s), Image.BILINEAR)) == 255
    return np.ascontiguousarray(_center_crop(binary.astype(np.uint8), cfg.crop_size))


def load_mask(mask_path: str | Path | None, image_size_wh: tuple[int, int] | None,
              cfg: TransformSettings | STFPMConfig, image_path: str | Path | None = None, *,
              allow_empty: bool = False) -> torch.Tensor:
    """Binarised mask at network resolution: bool (S, S) (see :func:`read_mask_uint8`).

    Parameters
    ----------
    mask_path : str or Path, optional
        Mask file; ``None`` for a normal image.
    image_size_wh : tuple of int, optional
        (width, height) of the mask's image in pixels.
    cfg : TransformSettings or STFPMConfig
        Image size and crop settings.
    image_path : str or Path, optional
        The mask's image, for messages.
    allow_empty : bool
        Warn instead of raising on a mask without defect pixel.

    Returns
    -------
    torch.Tensor
        bool (S, S).
    """
    mask = read_mask_uint8(mask_path, image_size_wh, cfg, image_path, allow_empty=allow_empty)
    return torch.from_numpy(mask.astype(bool))
