"""Decoding image and mask files: the one reader behind training, prediction, evaluation, the converter and ``verify``.

Rules, the same on every path:

* **EXIF orientation** is applied (``PIL.ImageOps.exif_transpose``) to images and masks alike,
  so a rotated JPEG is read as it is displayed; :func:`image_size_of` reports that size too.
* **16-bit images** (modes ``I;16*`` and ``I``, e.g. 16-bit grayscale PNG or TIFF) are scaled
  to 8 bit over the full 16-bit range: ``round(v / 257)`` (0 → 0, 65535 → 255, exact
  inverse of 8→16-bit scaling by 257). Values outside 0..65535 and floating-point images
  (mode ``F``) are refused. (16-bit colour PNGs are reduced to 8 bit by Pillow itself.)
* **Masks** are label values, not intensities: 1-bit masks give 0/255, ``L`` its values,
  ``P`` its palette indices, colour masks their grey level. 16-bit (or float) masks whose
  values are all ≤ 255 keep them (0/1 or 0/255 labels); full-range 16-bit masks (max > 255)
  are scaled like images.
* **A defect image whose mask has no defect pixel** is an error naming the mask
  (:func:`check_mask_has_defect`), unless the dataset was converted with
  ``allow_empty_masks`` (recorded in ``manifest.json``); then it is accepted with an
  :class:`EmptyMaskWarning` naming the file.
* Unreadable, truncated, missing and over-large files (Pillow's decompression-bomb limit,
  ``PIL.Image.MAX_IMAGE_PIXELS``) raise :class:`~stfpm_lib.data.mvtec.DataError` naming the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .mvtec import DataError

__all__ = ["read_image", "read_mask_values", "image_size_of", "check_mask_has_defect", "EmptyMaskWarning",
           "to_8bit"]

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # orientations that rotate by 90° or 270°
_SIXTEEN_BIT_MAX = 65535


class EmptyMaskWarning(UserWarning):
    """A defect image's mask has no defect pixel and the dataset allows it (``allow_empty_masks``)."""


def _decode(path: str | os.PathLike, what: str) -> Image.Image:
    """The fully decoded file, EXIF orientation applied; every failure is a DataError naming ``path``."""
    try:
        with Image.open(path) as img:
            img.load()  # forces full decoding: truncated files fail here
            return ImageOps.exif_transpose(img)  # a new image (a copy when there is no orientation)
    except FileNotFoundError as exc:
        raise DataError(f"{what} file not found: {path}") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{what} {path} is too large to decode safely ({exc}); if the file is trusted, raise "
                        f"PIL.Image.MAX_IMAGE_PIXELS") from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read {what} {path} (unreadable or truncated): {exc}") from exc


def image_size_of(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as displayed (EXIF orientation applied), read from its header.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.

    Returns
    -------
    tuple of int
        (width, height) in pixels.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except FileNotFoundError as exc:
        raise DataError(f"image file not found: {path}") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"image {path} is too large to decode safely ({exc})") from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def to_8bit(values: np.ndarray) -> np.ndarray:
    """Full-range 16-bit values (0..65535, any integer dtype) → uint8 ``round(v / 257)``.

    Parameters
    ----------
    values : np.ndarray
        Integer values 0..65535, any shape.

    Returns
    -------
    np.ndarray
        uint8 values of the same shape.
    """
    return ((values.astype(np.int64) + 128) // 257).astype(np.uint8)


def _wide_values(img: Image.Image, path: str | os.PathLike, what: str) -> np.ndarray:
    raw = np.asarray(img)
    if raw.size and (raw.min() < 0 or raw.max() > _SIXTEEN_BIT_MAX):
        raise DataError(f"{what} {path} (mode {img.mode}) has values outside 0..65535 (min {raw.min()}, "
                        f"max {raw.max()}); save it as 8- or 16-bit")
    return raw


def read_image(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit ``L`` (grayscale, 16-bit scaled) or ``RGB`` (anything else), EXIF-oriented.

    Parameters
    ----------
    path : str or os.PathLike
        Image file.

    Returns
    -------
    PIL.Image.Image
        The image in mode ``L`` or ``RGB``.
    """
    img = _decode(path, "image")
    if img.mode in ("L", "RGB"):
        return img
    if img.mode == "F":
        raise DataError(f"image {path} is floating-point (mode F); save it as 8- or 16-bit")
    if img.mode.startswith("I"):
        return Image.fromarray(to_8bit(_wide_values(img, path, "image")), mode="L")
    return img.convert("RGB")


def read_mask_values(path: str | os.PathLike) -> np.ndarray:
    """A mask file's label values as uint8 (H, W), EXIF-oriented (rules in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        Mask file.

    Returns
    -------
    np.ndarray
        uint8 label values, shape (H, W).
    """
    img = _decode(path, "mask")
    mode = img.mode
    if mode == "1":
        values = np.asarray(img, dtype=bool).astype(np.uint8) * 255
    elif mode in ("L", "P"):
        values = np.asarray(img, dtype=np.uint8)
    elif mode.startswith("I") or mode == "F":
        raw = _wide_values(img, path, "mask")
        if raw.size and raw.max() > 255:
            if mode == "F":
                raise DataError(f"mask {path} (mode F) has values above 255 (max {raw.max()})")
            values = to_8bit(raw)
        else:
            values = raw.astype(np.uint8)
    else:
        values = np.asarray(img.convert("L"), dtype=np.uint8)
    if values.ndim != 2:
        raise DataError(f"mask {path} is not a single-channel image (shape {values.shape})")
    return values


def check_mask_has_defect(defect: np.ndarray, mask_path: str | Path, image_path: str | Path | None = None, *,
                          allow_empty: bool = False, detail: str = "") -> None:
    """The one rule for a defect image whose mask has no defect pixel (``defect`` is its boolean mask).

    An error (:class:`DataError` naming the mask and the image), or, with ``allow_empty`` (a
    dataset converted with ``allow_empty_masks``), an :class:`EmptyMaskWarning` naming them.

    Parameters
    ----------
    defect : np.ndarray
        Boolean defect mask, shape (H, W).
    mask_path : str or Path
        The mask file, for the message.
    image_path : str or Path, optional
        Its defect image, for the message.
    allow_empty : bool
        Warn instead of raising.
    detail : str
        Text added to the message after "no defect pixel".
    """
    if defect.any():
        return
    owner = f" (defect image {image_path})" if image_path else ""
    message = f"mask {mask_path} has no defect pixel{detail}{owner}"
    if not allow_empty:
        raise DataError(f"{message}; every defect image needs a defect in its mask (a dataset converted with "
                        f"--allow-empty-masks, recorded in its manifest.json, accepts this with a warning)")
    warnings.warn(f"{message} (accepted: the dataset allows empty masks)", EmptyMaskWarning, stacklevel=2)
