"""The predictions file: anomaly maps and scores of one split, in a self-describing ``.npz``.

Written by :func:`stfpm_lib.engine.inference.predict` (through :func:`write_predictions`) and read
here by :func:`load_predictions`, so that evaluation, tables and figures can read a file without
the networks (this module imports nothing from the engine).

=================  ==========================  =============================================
key                dtype / shape               meaning
=================  ==========================  =============================================
maps               float32 (N, S, S)           anomaly maps at the network input size S (float16 on request)
fused_maps         float32 (N, S/4, S/4)       ``official`` upsampling only: the fused map before the final
                                               resize (metrics are computed from it in float64)
scores             float32 (N,)                max of each map
labels             int8 (N,)                   1 anomalous, 0 normal
defect_types       str (N,)                    ``good`` for normal images
image_paths        str (N,)                    absolute paths
mask_paths         str (N,)                    ``""`` when the image has no mask
image_sizes        int32 (N, 2)                original (width, height)
masks_packed       uint8 (N, ceil(S²/8))       masks at S² by the config's mask rule (np.packbits)
config             JSON str                    the run's :class:`STFPMConfig` as a dict
teacher_weights    JSON str                    source, name, path, sha256, seed, state_sha256
dataset            JSON str                    root, category, counts, split images
meta               JSON str                    split, checkpoint path and sha256, timings, environment
=================  ==========================  =============================================

Metrics are computed from float32 maps at least: :func:`stfpm_lib.records.evaluation.evaluate_predictions`
refuses a file whose maps were stored as float16 (``maps_dtype="float16"``, half the size, is
for figures and storage; its rounding moves the official-code PRO by ~2.5e-4). With ``official``
upsampling the final map is float64 (the official code's ``cv2.resize`` of a float64 copy): the
file stores it rounded to float32 in ``maps`` and, exactly, the fused map it came from in
``fused_maps``, from which the evaluation recomputes the float64 maps.

"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import STFPMConfig
from ..data import image_size_of, load_mask
from ..data.mvtec import manifest_allows_empty_masks
from ..io import atomic_path, clean_stale_tmp

__all__ = ["FORMAT", "FORMAT_VERSION", "OPTIONAL_ARRAYS", "Predictions", "PredictionsError", "load_predictions",
           "write_predictions"]

FORMAT = "stfpm-predictions"
FORMAT_VERSION = 1
_ARRAYS = ("maps", "scores", "labels", "defect_types", "image_paths", "mask_paths", "image_sizes", "masks_packed")
#: official upsampling only (files from before it was stored lack it)
OPTIONAL_ARRAYS = ("fused_maps",)
_JSON = ("config", "teacher_weights", "dataset", "meta")


class PredictionsError(ValueError):
    """A predictions file that is missing, unreadable or incomplete."""


@dataclass
class Predictions:
    """Contents of a ``predictions_<split>.npz`` file (see the module docstring).

    Attributes
    ----------
    maps : ndarray of shape (N, S, S), float32 (or float16, figures only)
        Anomaly maps at the network input size ``S``.
    scores : ndarray of shape (N,), float32
        Image scores (max of each map).
    labels : ndarray of shape (N,), int8
        1 = anomalous.
    defect_types, image_paths, mask_paths : ndarray of shape (N,), str
        ``mask_paths`` is ``""`` for normal images.
    config, teacher_weights, dataset : dict
        The run's config, teacher description and dataset record.
    meta : dict
        Split, precision, timings, versions.
    image_sizes : ndarray of shape (N, 2), optional
        Original ``(width, height)`` of each image, pixels.
    masks_packed : ndarray, optional
        The binarised masks at map resolution, bit-packed (see :meth:`masks`).
    fused_maps : ndarray of shape (N, S/4, S/4), float32, optional
        ``official`` upsampling: the fused maps before the final resize (the float64 maps of the
        metrics are recomputed from them with :func:`stfpm_lib.method.anomaly_map.final_map`).
    path : Path, optional
        The file read.
    """

    maps: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    defect_types: np.ndarray
    image_paths: np.ndarray
    mask_paths: np.ndarray
    config: dict[str, Any]
    teacher_weights: dict[str, Any]
    dataset: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    image_sizes: np.ndarray | None = None
    masks_packed: np.ndarray | None = field(default=None, repr=False)
    fused_maps: np.ndarray | None = field(default=None, repr=False)
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    @property
    def cfg(self) -> STFPMConfig:
        """The run's configuration."""
        return STFPMConfig.from_dict(self.config)

    @property
    def split(self) -> str:
        """The split predicted (``test``, ``val`` or ``train``)."""
        return str(self.meta.get("split", ""))

    @property
    def category(self) -> str:
        """The dataset category."""
        return str(self.dataset.get("category", ""))

    def masks(self, mask_rule: str | None = None) -> np.ndarray:
        """Ground truth at the map resolution.

        Parameters
        ----------
        mask_rule : {"gt0", "nearest", "eq1"}, optional
            ``None`` (or the run's rule): the masks stored at prediction time. Another rule reloads the
            mask files via :func:`stfpm_lib.data.load_mask` (they must still exist).

        Returns
        -------
        ndarray of shape (N, S, S), bool
        """
        cfg = self.cfg
        n, side = len(self), int(self.maps.shape[-1])
        if (mask_rule is None or mask_rule == cfg.mask_rule) and self.masks_packed is not None:
            bits = np.unpackbits(self.masks_packed, axis=1, count=side * int(self.maps.shape[-2]))
            return bits.reshape(n, int(self.maps.shape[-2]), side).astype(bool)

        cfg = cfg.replace(mask_rule=mask_rule or cfg.mask_rule)
        root = self.dataset.get("root")
        allow_empty = bool(root) and manifest_allows_empty_masks(root)  # the rule prediction applied
        out = np.zeros(self.maps.shape, dtype=bool)
        for i, (image_path, mask_path) in enumerate(zip(self.image_paths, self.mask_paths)):
            if mask_path:
                size = tuple(self.image_sizes[i]) if self.image_sizes is not None else image_size_of(image_path)
                out[i] = load_mask(mask_path, size, cfg, image_path, allow_empty=allow_empty).numpy()
        return out

    def to_frame(self):
        """Per-image table.

        Returns
        -------
        pandas.DataFrame
            Columns ``image_path``, ``defect_type``, ``label``, ``score``; one row per image.
        """
        return pd.DataFrame({"image_path": self.image_paths, "defect_type": self.defect_types,
                             "label": self.labels.astype(int), "score": self.scores})


def write_predictions(out_path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write the arrays of a predictions file atomically (a killed write leaves no file that looks complete).

    Parameters
    ----------
    out_path : Path
        Must end in ``.npz``.
    arrays : mapping of str to ndarray
        The keys of the format (see the module docstring); records as JSON strings.

    Raises
    ------
    ValueError
        ``out_path`` does not end in ``.npz``.
    """
    if out_path.suffix != ".npz":
        raise ValueError(f"out_path must end in .npz, got {out_path}")
    clean_stale_tmp(out_path.parent)  # temporary files of killed writes
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)



def load_predictions(path) -> Predictions:
    """Read a file written by :func:`stfpm_lib.engine.inference.predict` (no pickles).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Predictions

    Raises
    ------
    PredictionsError
        A missing, unreadable or incomplete file.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"predictions file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _ARRAYS + _JSON if k not in data.files]
            if missing:
                raise PredictionsError(f"{path} is not an STFPM predictions file (missing {missing})")
            arrays = {k: data[k] for k in _ARRAYS + tuple(k for k in OPTIONAL_ARRAYS if k in data.files)}
            texts = {k: json.loads(str(data[k])) for k in _JSON}
    except PredictionsError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt zip, bad JSON, ...
        raise PredictionsError(f"cannot read predictions file {path}: {type(exc).__name__}: {exc}") from exc
    if texts["meta"].get("format") != FORMAT:
        raise PredictionsError(f"{path} is not an STFPM predictions file (format {texts['meta'].get('format')!r})")
    return Predictions(**arrays, **texts, path=path)
