"""Inference: anomaly maps and scores of one category, saved to a self-describing ``.npz``.

``predict`` runs a trained checkpoint over a split and writes (atomically) one file with
everything the metrics and figures need, so they can be recomputed without the networks:

The file's format (keys, dtypes, what the metrics recompute from it) is described in
:mod:`stfpm_lib.records.predictions`, which also reads it back (:func:`~stfpm_lib.records.predictions.load_predictions`).

Order: the dataset's order (test: ``good`` first, then defects by path, as the official code).

Speed: images go through the networks in batches of ``eval_batch_size`` under
``torch.inference_mode`` (teacher and student in one pass per batch), as uint8 until they
reach the device, in the channels-last layout when ``cfg.channels_last``. With a mixed
``precision`` (``bf16``/``fp16``/``auto`` resolving to one) the forward passes run under
autocast on BatchNorm-folded copies of the networks (:func:`stfpm_lib.method.model.inference_copy`)
and, on CUDA, with cuDNN autotuning; maps are always computed in float32 (the final resize of
``official`` upsampling in float64). ``fp32`` keeps the networks as trained (faithful, deterministic).
"""

from __future__ import annotations

import datetime as _dt
import json
import numbers
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import ConfigError, STFPMConfig
from ..data import DataError, ImageDataset, Sample, image_size_of, index_category, split_train_val
from ..io import sha256_file
from ..method.anomaly_map import final_map, fused_map, image_scores
from ..method.model import STFPM, inference_copy
from ..provenance import environment_info
from ..records.predictions import (
    FORMAT,
    FORMAT_VERSION,
    OPTIONAL_ARRAYS,
    Predictions,
    PredictionsError,
    load_predictions,
    write_predictions,
)
from .checkpoint import load_checkpoint
from .device import amp_dtype, autocast, kernel_policy, prepare_input, prepare_model, resolve_device, tune_cpu_allocator

__all__ = ["predict", "Predictions", "load_predictions", "PredictionsError", "SPLITS", "prepare_for_inference",
           "predict_batch", "recorded_split"]

SPLITS = ("test", "val", "train")
_F16_TINY = float(np.finfo(np.float16).tiny)  # 6.1e-5, the smallest normal float16


def prepare_for_inference(model: STFPM, cfg: STFPMConfig, device: torch.device) -> STFPM:
    """``model`` ready for :func:`predict_batch` on ``device``.

    Eval mode, memory format of ``cfg.channels_last``, and BatchNorm folded into the convolutions
    when ``cfg.precision`` is a mixed precision on ``device`` (fp32 keeps the networks as they are).

    Parameters
    ----------
    model : STFPM
    cfg : STFPMConfig
    device : torch.device

    Returns
    -------
    STFPM
    """
    device = torch.device(device)
    if amp_dtype(cfg.precision, device) is not None:
        model = inference_copy(model)
    return prepare_model(model, device, cfg.channels_last).eval()


def predict_batch(model: STFPM, images: torch.Tensor, cfg: STFPMConfig, device: torch.device,
                  output_size: int | None = None, *, return_fused: bool = False) -> tuple[torch.Tensor, ...]:
    """Anomaly maps and image scores of one batch, on ``device``.

    Call under ``torch.inference_mode`` (and :func:`stfpm_lib.engine.device.kernel_policy`) with a
    model from :func:`prepare_for_inference`.

    Parameters
    ----------
    model : STFPM
    images : torch.Tensor of shape (B, S, S, 3) uint8, or (B, 3, S, S) normalised float
        On any device.
    cfg : STFPMConfig
        Precision, memory format and map settings.
    device : torch.device
    output_size : int, optional
        Side of the maps, pixels (default ``cfg.input_size``).
    return_fused : bool, default=False
        Also return the fused maps before the final resize.

    Returns
    -------
    (torch.Tensor of shape (B, S, S), torch.Tensor of shape (B,)[, torch.Tensor of shape (B, h, w)])
        Maps and scores (float64 with ``official`` upsampling, else float32), and with ``return_fused``
        the fused maps (float32; ``h = S // 4`` with ``official`` upsampling).
    """
    x = prepare_input(images, device, cfg.channels_last)
    size = output_size or cfg.input_size
    with autocast(cfg.precision, device):
        t_feats, s_feats = model(x)
    fused = fused_map(t_feats, s_feats, cfg, size)
    maps = final_map(fused, cfg, size)
    return (maps, image_scores(maps), fused) if return_fused else (maps, image_scores(maps))


class _Uint8Items(torch.utils.data.Dataset):
    """``(image uint8 (S,S,3), mask bool (S,S))`` of an ImageDataset (normalised on the device)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.dataset.arrays(index)
        return torch.tensor(image), torch.from_numpy(mask.astype(bool))


def default_predictions_path(checkpoint_path, split: str = "test") -> Path:
    """Where :func:`predict` writes by default: ``<checkpoint dir>/predictions_<split>.npz``.

    Parameters
    ----------
    checkpoint_path : str or path-like
    split : str, default="test"

    Returns
    -------
    Path
    """
    return Path(checkpoint_path).parent / f"predictions_{split}.npz"


def _check_predict_args(split: str, maps_dtype: str, batch_size: int | None) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {list(SPLITS)}")
    if maps_dtype not in ("float16", "float32"):
        raise ValueError(f"maps_dtype={maps_dtype!r} is not one of ['float16', 'float32']")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1):
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer (default: the checkpoint's "
                          f"eval_batch_size)")


def _split_samples(meta: Mapping[str, Any], cfg: STFPMConfig, data_root, category: str | None,
                   split: str) -> tuple[Any, str, list[Sample]]:
    """(index, category, samples) of ``split``: the test images, or the ``val``/``train`` images the checkpoint recorded."""
    root = data_root if data_root not in (None, "") else meta["dataset"]["root"]
    category = category or meta["dataset"]["category"]
    index = index_category(root, category)
    if split == "test":
        samples = list(index.test)
    else:
        samples = [Sample(p, 0, "good", None) for p in recorded_split(meta["dataset"], index, split, cfg)]
    if not samples:
        raise PredictionsError(f"split {split!r} of {index.root / category} has no images")
    return index, category, samples


def _run_batches(model: STFPM, loader, run_cfg: STFPMConfig, dev: torch.device, n: int, maps_dtype: str,
                 progress: bool, desc: str) -> tuple[dict[str, np.ndarray], int, float, float]:
    """``maps`` (n, S, S) in ``maps_dtype``, ``scores`` (n,), ``masks`` (n, S, S) bool and, with official
    upsampling, ``fused_maps`` (n, S/4, S/4) float32 over ``loader``; the number of float16-subnormal
    map values, and the network and total times in seconds."""
    side = run_cfg.input_size
    out = {"maps": np.zeros((n, side, side), dtype=maps_dtype), "scores": np.zeros(n, dtype=np.float32),
           "masks": np.zeros((n, side, side), dtype=bool)}
    keep_fused = run_cfg.map_upsample == "official"
    torch_maps_dtype = torch.float16 if maps_dtype == "float16" else torch.float32
    n_subnormal = 0
    t_net, i = 0.0, 0
    t_all = time.perf_counter()
    with torch.inference_mode(), kernel_policy(dev, run_cfg.precision):
        for images, batch_masks in tqdm(loader, disable=not progress, desc=desc, leave=False):
            t0 = time.perf_counter()
            amap, score, fused = predict_batch(model, images, run_cfg, dev, side, return_fused=True)
            n_subnormal += int(((amap.abs() < _F16_TINY) & (amap != 0)).sum())
            # cast on the device (round to nearest even, as NumPy's astype): half the bytes to move
            amap, score = amap.float().to(torch_maps_dtype).cpu(), score.float().cpu()  # float16: of the float32 map
            t_net += time.perf_counter() - t0
            b = amap.shape[0]
            if keep_fused:
                out.setdefault("fused_maps", np.zeros((n, *fused.shape[1:]), dtype=np.float32))
                out["fused_maps"][i:i + b] = fused.float().cpu().numpy()
            out["maps"][i:i + b] = amap.numpy()
            out["scores"][i:i + b] = score.numpy()
            out["masks"][i:i + b] = batch_masks.numpy()
            i += b
    return out, n_subnormal, t_net, time.perf_counter() - t_all


def _predictions_meta(split: str, checkpoint_path: Path, checkpoint_epoch: int, run_cfg: STFPMConfig,
                      dev: torch.device, maps_dtype: str, subnormal: float, batch_size: int,
                      timing: Mapping[str, Any]) -> dict[str, Any]:
    """The ``meta`` record of a predictions file: its source checkpoint, run settings, timing, environment."""
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "split": split, "checkpoint": str(checkpoint_path.resolve()),
        "checkpoint_sha256": sha256_file(checkpoint_path), "checkpoint_epoch": checkpoint_epoch,
        "mask_rule": run_cfg.mask_rule, "device": str(dev), "maps_dtype": maps_dtype,
        "float16_subnormal_fraction": subnormal, "batch_size": batch_size,
        "precision": run_cfg.precision, "channels_last": run_cfg.channels_last, "timing": dict(timing),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment_info(),
    }


def _prediction_arrays(samples: list[Sample], computed: Mapping[str, np.ndarray], image_sizes: np.ndarray,
                       cfg: STFPMConfig, meta: Mapping[str, Any], dataset: Mapping[str, Any],
                       info: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of the predictions ``.npz`` (its format; records as JSON strings); ``computed`` as
    :func:`_run_batches` returns them."""
    masks = computed["masks"]
    optional = {k: computed[k] for k in OPTIONAL_ARRAYS if k in computed}
    return {
        "maps": computed["maps"], "scores": computed["scores"], **optional,
        "labels": np.array([s.label for s in samples], dtype=np.int8),
        "defect_types": np.array([s.defect_type for s in samples], dtype=str),
        "image_paths": np.array([str(Path(s.image_path).resolve()) for s in samples], dtype=str),
        "mask_paths": np.array(["" if s.mask_path is None else str(Path(s.mask_path).resolve()) for s in samples],
                               dtype=str),
        "image_sizes": image_sizes,
        "masks_packed": np.packbits(masks.reshape(len(samples), -1), axis=1),
        "config": np.array(json.dumps(cfg.to_dict())),
        "teacher_weights": np.array(json.dumps(meta["teacher_weights"])),
        "dataset": np.array(json.dumps(dataset)),
        "meta": np.array(json.dumps(info, default=str)),
    }


def predict(checkpoint_path, data_root=None, category: str | None = None, out_path=None, *, split: str = "test",
            device: str | None = None, batch_size: int | None = None, progress: bool = False,
            maps_dtype: str = "float32", precision: str | None = None, channels_last: bool | None = None,
            expect: STFPMConfig | None = None) -> Path:
    """Run the checkpoint over ``split`` of ``category`` and write the ``.npz``.

    Parameters
    ----------
    checkpoint_path : str or path-like
        A finished ``checkpoint.pt`` from :func:`stfpm_lib.engine.training.fit`.
    data_root, category : str, optional
        Default to those recorded in the checkpoint.
    out_path : str or path-like, optional
        Default ``predictions_<split>.npz`` next to the checkpoint.
    split : {"test", "val", "train"}, default="test"
        ``test``: all test images; ``val`` (held-out normals) and ``train``: the images recorded in
        the checkpoint (not a split recomputed from the folder); they must still exist, unchanged
        (sha256), under the data root, else :class:`stfpm_lib.data.DataError` names them.
    device : str, optional
        Default the checkpoint config's device (``auto``: CUDA when present).
    batch_size : int, optional
        Positive; default ``cfg.eval_batch_size``.
    progress : bool, default=False
        Show a progress bar.
    maps_dtype : {"float32", "float16"}, default="float32"
        ``float32``: exact, what metrics need. ``float16``: half the size, for figures only
        (:func:`stfpm_lib.records.evaluation.evaluate_predictions` refuses it); it keeps ~3
        significant digits down to 6.1e-5, below that (subnormal) precision drops: the share of such
        values is recorded in ``meta["float16_subnormal_fraction"]`` and a warning is issued above 1%
        (product maps of a well-trained student can be tiny).
    precision, channels_last : optional
        Inference settings, default the checkpoint config's (e.g. a student trained in fp32 can be
        run with ``precision="bf16"``); recorded in ``meta``.
    expect : STFPMConfig, optional
        The config the checkpoint must have been built with (backbone, layer set, teacher weights).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        An unknown ``split`` or ``maps_dtype``, or an ``out_path`` not ending in ``.npz``.
    ConfigError
        A ``batch_size`` that is not a positive integer.
    CheckpointError
        A bad checkpoint, or a mismatch with ``expect``.
    DataError
        Missing or changed images.
    """
    _check_predict_args(split, maps_dtype, batch_size)
    checkpoint_path = Path(checkpoint_path)
    model, cfg, meta = load_checkpoint(checkpoint_path, expect=expect, device="cpu")
    batch_size = batch_size or cfg.eval_batch_size
    run_cfg = cfg.replace(**{k: v for k, v in (("precision", precision), ("channels_last", channels_last))
                             if v is not None})
    index, category, samples = _split_samples(meta, cfg, data_root, category, split)
    image_sizes = np.array([image_size_of(s.image_path) for s in samples], dtype=np.int32).reshape(-1, 2)

    dev = resolve_device(device or cfg.device)
    amp_dtype(run_cfg.precision, dev)  # an impossible precision fails before any work
    if dev.type == "cpu":
        tune_cpu_allocator()  # reuse freed activation memory; results unchanged
    model = prepare_for_inference(model, run_cfg, dev)
    ds = _Uint8Items(ImageDataset(samples, cfg, cache=False))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                         num_workers=cfg.num_workers, pin_memory=dev.type == "cuda")
    computed, n_subnormal, t_net, t_all = _run_batches(model, loader, run_cfg, dev, len(samples), maps_dtype,
                                                       progress, f"{category} {split}")
    subnormal = n_subnormal / computed["maps"].size
    if maps_dtype == "float16" and subnormal > 0.01:
        warnings.warn(f"{category} {split}: {subnormal:.1%} of the anomaly-map values are below 6.1e-5, where "
                      f"float16 loses precision; store float32 maps instead: predict(..., maps_dtype='float32'), "
                      f"'stfpm predict' without --float16 (the notebooks and the batch runner always store float32)",
                      stacklevel=2)

    info = _predictions_meta(split, checkpoint_path, meta["epoch"], run_cfg, dev, maps_dtype, subnormal, batch_size,
                             {"n_images": len(samples), "network_and_map_s": t_net, "total_s": t_all,
                              "images_per_s": len(samples) / t_net if t_net > 0 else None})
    dataset = dict(meta["dataset"])
    dataset["root"], dataset["category"] = str(Path(index.root).resolve()), category
    arrays = _prediction_arrays(samples, computed, image_sizes, cfg, meta, dataset, info)
    out_path = Path(out_path) if out_path is not None else default_predictions_path(checkpoint_path, split)
    write_predictions(out_path, arrays)
    return out_path


def recorded_split(dataset: dict[str, Any], index, split: str, cfg: STFPMConfig) -> list[Path]:
    """The ``split`` images recorded in a checkpoint's dataset record, under ``index``'s root.

    Each recorded file (``<split>_files``, relative to ``root/category``) must exist and have its
    recorded sha256. Checkpoints that record only image names (``<split>_images``, version 1) are
    resolved in ``train/good`` without the content check; with no record at all the split is
    recomputed (with a warning).

    Parameters
    ----------
    dataset : dict
        The checkpoint's dataset record.
    index : CategoryIndex
        The category as found now.
    split : {"train", "val"}
    cfg : STFPMConfig
        For recomputing a split that was not recorded.

    Returns
    -------
    list of Path

    Raises
    ------
    DataError
        Missing or changed files (named).
    """

    base = Path(index.root).resolve() / index.category
    if f"{split}_files" in dataset:
        paths = [base / rel for rel in dataset[f"{split}_files"]]
    elif f"{split}_images" in dataset:
        paths = [base / "train" / "good" / name for name in dataset[f"{split}_images"]]
    else:
        warnings.warn(f"the checkpoint records no {split} split; recomputing it from {base} (it may differ "
                      f"from the one used in training)", stacklevel=3)
        return split_train_val(index.train, cfg)[0 if split == "train" else 1]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} of the {len(paths)} {split} images recorded in the checkpoint are gone: "
                        f"{_first_five(missing)}")
    hashes = dataset.get(f"{split}_sha256")
    changed = [str(p) for p, h in zip(paths, hashes or ()) if sha256_file(p) != h]
    if changed:
        raise DataError(f"{len(changed)} of the {len(paths)} {split} images recorded in the checkpoint have changed "
                        f"since training (sha256 differs): {_first_five(changed)}")
    return paths


def _first_five(names: list[str]) -> str:
    """``a, b, c, d, e ...``: the first five of ``names``, with `` ...`` when there are more."""
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
