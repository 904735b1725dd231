"""Image and mask preprocessing, faithful to the official code by default.

Files are decoded by :mod:`stfpm_lib.data.imageio` (EXIF orientation, 16-bit scaling, the
empty-mask rule, errors naming the file). Images: RGB (grayscale replicated to 3 channels) → resize to ``cfg.image_size``² with
PIL bilinear (antialiased, as torchvision's ``Resize`` on PIL images) → optional centre
crop → ``[0, 1]`` → ImageNet normalisation.

Masks, by ``cfg.mask_rule``:

* ``gt0`` (official): bilinear resize without antialiasing (as ``cv2.resize`` INTER_LINEAR), any value > 0.
* ``nearest``: nearest-neighbour resize, value > 0 (XIA).
* ``eq1``: PIL bilinear resize, only pixels that stay exactly 255 (HCW's truncation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import STFPMConfig
from .imageio import check_mask_has_defect, image_size_of, read_image, read_mask_values
from .mvtec import DataError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "read_image_uint8", "read_mask_uint8", "normalize",
           "denormalize", "load_image", "load_mask", "image_size_of"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _center_crop(array: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return array
    h, w = array.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return array[top:top + size, left:left + size]


def read_image_uint8(path: str | Path, cfg: STFPMConfig) -> np.ndarray:
    """Decoded, resized and cropped RGB image, uint8 of shape (S, S, 3), S = ``cfg.input_size``."""
    img = read_image(path).convert("RGB").resize((cfg.image_size, cfg.image_size), Image.BILINEAR)
    return np.ascontiguousarray(_center_crop(np.asarray(img, dtype=np.uint8), cfg.crop_size))


def normalize(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) → ImageNet-normalised float32 (..., 3, H, W)."""
    if isinstance(images_uint8, np.ndarray):
        x = torch.tensor(images_uint8, dtype=torch.float32)
    else:
        x = images_uint8.float()
    x = x.div_(255.0).movedim(-1, -3) if x is not images_uint8 else x.div(255.0).movedim(-1, -3)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def denormalize(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Normalised float (..., 3, H, W) → RGB float in [0, 1] of shape (..., H, W, 3), for plotting."""
    x = torch.as_tensor(images).float()
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1).movedim(-3, -1).numpy()


def load_image(path: str | Path, cfg: STFPMConfig) -> torch.Tensor:
    """Network input for one image: float32 (3, S, S), ImageNet-normalised."""
    return normalize(read_image_uint8(path, cfg))


def read_mask_uint8(mask_path: str | Path | None, image_size_wh: tuple[int, int] | None,
                    cfg: STFPMConfig, image_path: str | Path | None = None, *,
                    allow_empty: bool = False) -> np.ndarray:
    """Binarised mask at network resolution as uint8 0/1 of shape (S, S); zeros when ``mask_path`` is None.

    ``image_size_wh`` is the (width, height) of the image the mask belongs to; a mask of
    another size raises :class:`DataError` naming both files. A mask without any value > 0
    raises :class:`DataError` too, or warns with ``allow_empty`` (:func:`check_mask_has_defect`).
    """
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
        raw = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
        resized = F.interpolate(raw, size=(s, s), mode="bilinear", align_corners=False, antialias=False)[0, 0]
        binary = (resized > 0).numpy()
    elif cfg.mask_rule == "nearest":
        binary = np.asarray(mask.resize((s, s), Image.NEAREST)) > 0
    else:  # eq1
        binary = np.asarray(mask.resize((s, s), Image.BILINEAR)) == 255
    return np.ascontiguousarray(_center_crop(binary.astype(np.uint8), cfg.crop_size))


def load_mask(mask_path: str | Path | None, image_size_wh: tuple[int, int] | None,
              cfg: STFPMConfig, image_path: str | Path | None = None, *, allow_empty: bool = False) -> torch.Tensor:
    """Binarised mask at network resolution: bool (S, S) (see :func:`read_mask_uint8`)."""
    mask = read_mask_uint8(mask_path, image_size_wh, cfg, image_path, allow_empty=allow_empty)
    return torch.from_numpy(mask.astype(bool))
