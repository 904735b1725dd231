"""A torch ``Dataset`` over MVTec-layout files that decodes and resizes each image once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import STFPMConfig
from .mvtec import Sample
from .transforms import image_size_of, normalize, read_image_uint8, read_mask_uint8

__all__ = ["ImageDataset"]


class ImageDataset(torch.utils.data.Dataset):
    """Images (and masks) ready for the network.

    Parameters
    ----------
    items : sequence of Path, str or Sample
        Training image paths (label 0, no mask) or test :class:`Sample` objects.
    cfg : STFPMConfig
        The run's configuration (sizes, crop, mask rule).
    cache : bool
        Keep each decoded, resized uint8 image and mask in memory, so every
        epoch after the first skips decoding (3·S² + S² bytes per image).

    ``dataset[i]`` is a dict: ``image`` float32 (3, S, S) normalised, ``mask`` bool (S, S),
    ``label`` int, ``defect_type`` str, ``image_path`` str, ``mask_path`` str ("" if none).
    """

    def __init__(self, items: Sequence[Path | str | Sample], cfg: STFPMConfig, cache: bool = True) -> None:
        self.samples = [it if isinstance(it, Sample) else Sample(Path(it), 0, "good", None) for it in items]
        self.cfg = cfg
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image uint8 (S, S, 3), mask uint8 (S, S)) of item ``index``, decoded once when caching.

        Parameters
        ----------
        index : int
            Item index.

        Returns
        -------
        tuple of np.ndarray
            Image uint8 (S, S, 3) and mask uint8 (S, S) (S = the configured image size in pixels).
        """
        if index in self._cache:
            return self._cache[index]
        sample = self.samples[index]
        image = read_image_uint8(sample.image_path, self.cfg)
        size = image_size_of(sample.image_path) if sample.mask_path is not None else None
        mask = read_mask_uint8(sample.mask_path, size, self.cfg, sample.image_path,
                               allow_empty=sample.allow_empty_mask)
        if self.cache:
            self._cache[index] = (image, mask)
            return self._cache[index]
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.arrays(index)
        sample = self.samples[index]
        return {
            "image": normalize(image),
            "mask": torch.from_numpy(mask.astype(bool)),
            "label": int(sample.label),
            "defect_type": sample.defect_type,
            "image_path": str(sample.image_path),
            "mask_path": "" if sample.mask_path is None else str(sample.mask_path),
        }
