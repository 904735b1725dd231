"""Training (``fit``) with model selection and resumable checkpoints (format: :mod:`stfpm_lib.engine.checkpoint`).

Recipe (official defaults from the config): SGD(lr, momentum, weight_decay) on the student
only, ``epochs`` passes over the 80% training split (shuffled, last batch kept), student in
train mode (BN batch statistics), teacher in eval mode without autograd. After every epoch
both validation criteria are computed on the held-out normal images and recorded:

* ``val_map``: mean anomaly map over the validation images (the official selection
  criterion). With ``map_upsample="official"`` this is the mean of the fused map at a
  quarter of the input size (64×64 at 256, before the final resize) taken as the official
  code takes it: one float64 mean over every pixel of every image; with ``direct`` it is the
  mean of the per-image means of the full-size map (smoothing included), in float32.
* ``val_loss``: mean per-image loss (``½`` and layer reduction as configured; per image, so
  it does not depend on ``loss_reduction`` or the batch size).

``cfg.selection`` keeps the epoch with the lowest ``val_map`` or ``val_loss`` (strictly
lower wins, so ties keep the earlier epoch), or the ``last`` one. ``test_pixel_auroc`` is
test-set leakage, for measuring its effect only: after every epoch the pixel AUROC over the
*test* images (maps at the input size, masks by ``cfg.mask_rule``) is recorded, the highest
is kept, and training stops after ``cfg.patience`` epochs without a gain (anomalib's early
stopping); the checkpoint says ``test_set_leakage: true``. Those test images are batched
without a DataLoader, so the global RNG (the batch order) is the same as without them.

Batch order (every preset): the official code's RNG stream. ``fit`` seeds Python, NumPy and
torch with ``cfg.seed``, builds teacher then student in the global torch RNG
(:func:`~stfpm_lib.method.model.build_stfpm` with ``advance_global_rng=True``), and shuffles with a
``DataLoader(shuffle=True)`` without a generator, so each epoch's iterator draws from the
global RNG (its worker base seed, then the sampler's permutation seed), followed by the
validation loader's own draw, exactly as ``main.py`` does. The same seed therefore gives
the official code's batches. The draws happen in the main process, so ``num_workers`` does
not change the order (no persistent workers, which would skip the per-epoch base-seed draw).

Files in ``out_dir``:

* ``last.pt``: written atomically after every epoch: student, optimiser, RNG states
  (Python, NumPy, torch; the global torch state also drives the shuffling), history and best-so-far
  (:class:`TrainingState`, its ``to_dict``/``from_dict`` are the file's content). ``fit`` with
  ``resume=True`` continues from it and ends with exactly the result of an uninterrupted
  run. It is deleted once ``checkpoint.pt`` is written.
* ``checkpoint.pt``: written once, at the end (its presence means a finished run): config,
  selected student, teacher weights description with file sha256 and a fingerprint of the
  teacher tensors, dataset description, history, timings, environment.
* ``history.csv`` and ``config.json``.

Integrity: both ``.pt`` files record ``student_sha256`` (:func:`stfpm_lib.method.weights.state_dict_sha256`
of the student tensors) and ``content_sha256``
(:func:`~stfpm_lib.engine.checkpoint.checkpoint_sha256`: every tensor and every other value in
the file); they are verified whenever a file is loaded, so a damaged file (bytes flipped on disk
or in transfer) raises :class:`~stfpm_lib.engine.checkpoint.CheckpointError` naming it instead
of being used. The dataset record holds the absolute data root and the relative path and sha256
of every training and validation image (``train_files``/``train_sha256``,
``val_files``/``val_sha256``), which ``predict(split="val"|"train")`` uses instead of
recomputing the split. Before training, ``out_dir`` is probed for writing
(:func:`stfpm_lib.io.check_writable`), temporary files of killed writes are removed, and a
batch size that would leave a training batch of one image where the deepest student layer
is 1×1 (BatchNorm cannot train on a single value per channel) is refused.

Speed (see :mod:`stfpm_lib.engine.device` and :mod:`stfpm_lib.engine.feature_cache`): ``precision``
``bf16``/``fp16``/``auto`` runs the forward passes under autocast (loss and maps stay in
float32), ``channels_last`` uses that memory layout, and ``cache_teacher_features`` computes
the frozen teacher's features of each training and validation image once (first epoch) and
reads them back afterwards, within ``cache_memory_mb``. Images are decoded and resized once
(uint8, in memory). The defaults (fp32, NCHW, no cache) are the faithful recipe. On CPU
``fit`` also calls :func:`stfpm_lib.engine.device.tune_cpu_allocator` (freed activation memory is
reused instead of page-faulted in again every step; numbers unchanged).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..config import LAYERS, ConfigError, STFPMConfig, config_differences
from ..data import ImageDataset, index_category, split_train_val
from ..io import atomic_write_text, check_writable, clean_stale_tmp, relative_posix, sha256_file
from ..method.anomaly_map import anomaly_map, fused_map
from ..method.loss import loss_from_config, per_image_loss
from ..method.model import STFPM, build_stfpm, feature_shapes
from ..method.weights import TeacherWeights, resolve_teacher_weights
from ..metrics import pixel_auroc
from ..provenance import environment_info
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    LAST_FORMAT,
    LAST_NAME,
    read_checkpoint,
    save_checkpoint,
)
from .device import (
    amp_dtype,
    autocast,
    grad_scaler,
    kernel_policy,
    peak_memory,
    prepare_input,
    prepare_model,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    tune_cpu_allocator,
)
from .feature_cache import TeacherFeatureCache
from .inference import predict_batch

__all__ = ["fit", "TrainResult", "TrainError", "TrainingState", "validate", "train_step", "train_epoch", "IndexedImages"]

log = logging.getLogger(__name__)

_SHUFFLE = "global_rng"  # last.pt marker: batches drawn from the global torch RNG (official stream)
# Runtime settings that may differ between an interrupted run and its resumption (they do
# not change the result: the cache is exact, the loader only moves data).
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_map", "epoch_time_s"]
#: selections that read the test set (labelled test-set leakage wherever a result is shown)
LEAKAGE_SELECTIONS = ("test_pixel_auroc",)
#: selection -> (history column, +1: the lowest value is kept / -1: the highest)
_SELECTION = {"val_map": ("val_map", 1), "val_loss": ("val_loss", 1), "last": (None, 1),
              "test_pixel_auroc": ("test_pixel_auroc", -1)}


def history_columns(selection: str) -> list[str]:
    """Columns of ``history.csv``.

    Parameters
    ----------
    selection : str
        The run's ``cfg.selection``.

    Returns
    -------
    list of str
        :data:`HISTORY_COLUMNS`, plus ``test_pixel_auroc`` for a leakage selection.
    """
    return HISTORY_COLUMNS + (["test_pixel_auroc"] if selection in LEAKAGE_SELECTIONS else [])


class TrainError(RuntimeError):
    """Training cannot start or resume (e.g. ``out_dir`` holds a run with another config)."""


@dataclass
class TrainResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    checkpoint_path : Path
        ``out_dir/checkpoint.pt``.
    history : pandas.DataFrame
        One row per epoch: ``epoch, train_loss, val_loss, val_map, epoch_time_s`` (seconds).
    best_epoch : int
        The kept epoch (1-based).
    train_time_s : float
        Wall time of all epochs, seconds (summed over resumed sessions).
    teacher_weights : dict
        The teacher's description (source, name, path, sha256, seed, state_sha256).
    selection_value : float or None
        The kept epoch's criterion (``None`` for ``last``).
    resumed_from_epoch : int
        Epochs already done when this session started (0: a fresh run).
    teacher_cache : dict or None
        Summaries of the teacher feature caches (``None`` without the cache).
    """

    checkpoint_path: Path
    history: pd.DataFrame
    best_epoch: int
    train_time_s: float
    teacher_weights: dict[str, Any]
    selection_value: float | None = None
    resumed_from_epoch: int = 0
    teacher_cache: dict[str, Any] | None = None


# ---------------------------------------------------------------------------- helpers
def _selection_key(cfg: STFPMConfig) -> str | None:
    return _SELECTION[cfg.selection][0]


def _improves(row: Mapping[str, Any], best: Mapping[str, Any], cfg: STFPMConfig) -> bool:
    """Whether epoch ``row`` replaces ``best`` as the kept epoch (strictly better; ``last``: always)."""
    key, sign = _SELECTION[cfg.selection]
    return key is None or best["student"] is None or sign * row[key] < sign * best["value"]


def _early_stopped(state: TrainingState, cfg: STFPMConfig) -> bool:
    """``test_pixel_auroc``: ``cfg.patience`` epochs have passed since the kept one."""
    return cfg.selection in LEAKAGE_SELECTIONS and state.best["epoch"] > 0 and \
        state.epoch - state.best["epoch"] >= cfg.patience


def _config_diff(saved: Mapping[str, Any], cfg: STFPMConfig) -> list[str]:
    return [f"{k}: {a!r} vs {b!r}" for k, a, b in config_differences(saved, cfg.to_dict())]


def _numpy_state_to_torch(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_torch(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached))


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _teacher_record(model: STFPM) -> dict[str, Any]:
    record = model.teacher_weights.describe() if model.teacher_weights is not None else {}
    record["state_sha256"] = model.teacher_fingerprint()
    return record


def _dataset_record(index, train_paths, val_paths) -> dict[str, Any]:
    """The index's description with an absolute ``root`` and the split: image names, and
    paths relative to ``root/category`` with each file's sha256 (what predict re-checks)."""
    record = dict(index.describe())
    base = Path(index.root).resolve() / index.category
    record["root"] = str(Path(index.root).resolve())
    for split, paths in (("train", train_paths), ("val", val_paths)):
        record[f"{split}_images"] = [p.name for p in paths]
        record[f"{split}_files"] = [relative_posix(p, base) for p in paths]
        record[f"{split}_sha256"] = [sha256_file(p) for p in paths]
    return record


def _check_batchnorm(cfg: STFPMConfig, n_train: int) -> None:
    """Refuse a run whose last (or every) training batch is one image while the deepest student
    layer is 1×1: BatchNorm in train mode then sees one value per channel and cannot normalise."""
    _, h, w = feature_shapes(cfg.backbone, cfg.layers, cfg.input_size)[-1]
    last = n_train % cfg.batch_size or min(cfg.batch_size, n_train)
    if h * w == 1 and last == 1:
        deepest = cfg.ordered_layers[-1]
        min_size = 2 ** (2 + LAYERS.index(deepest)) + 1  # each stride-2 stage halves the side, rounding up
        raise TrainError(
            f"batch_size={cfg.batch_size} with {n_train} training images leaves a training batch of one image, "
            f"and at input size {cfg.input_size} (image_size={cfg.image_size}, crop_size={cfg.crop_size}) the "
            f"deepest layer {deepest} is 1x1: BatchNorm cannot train on a single value per channel; choose a "
            f"batch_size that leaves no batch of one image, or an input size >= {min_size}")


# ---------------------------------------------------------------------------- steps
class IndexedImages(torch.utils.data.Dataset):
    """``(image, index)`` items of an :class:`~stfpm_lib.data.ImageDataset`: what training needs.

    ``image`` is the uint8 (S, S, 3) array the dataset decoded and resized once (cached in memory);
    batches of it are normalised by :func:`stfpm_lib.engine.device.prepare_input` on the device,
    bit-identical to normalising each image. Masks, labels and paths are skipped. ``index`` keys the
    teacher feature cache.

    Parameters
    ----------
    dataset : ImageDataset
    """

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.tensor(self.dataset.arrays(index)[0]), index  # a copy: the cached array is read-only


def _unpack(batch) -> tuple[torch.Tensor, Any]:
    """(images, indices or None) of a loader batch: ``(x, idx)`` tuples or ImageDataset dicts."""
    if isinstance(batch, Mapping):
        return batch["image"], batch.get("index")
    x, idx = batch
    return x, idx


def _teacher(model: STFPM, x: torch.Tensor, indices, cache: TeacherFeatureCache | None) -> list[torch.Tensor]:
    """Teacher features of ``x``, from ``cache`` when given (call inside the autocast context)."""
    if cache is None:
        return model.teacher_features(x)
    if indices is None:
        raise ValueError("the teacher feature cache needs the dataset index of every image (IndexedImages)")
    return cache.features(indices, x, model.teacher_features)


def train_step(model: STFPM, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, x: torch.Tensor,
               cfg: STFPMConfig, device: torch.device, *, indices=None,
               cache: TeacherFeatureCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step of the student on a batch already on ``device``.

    Forward passes under ``cfg.precision`` autocast; the loss in float32 with the config's ½, batch
    and layer reductions (:func:`~stfpm_lib.method.loss.loss_from_config`).

    Parameters
    ----------
    model : STFPM
    optimizer : torch.optim.Optimizer
        SGD over the student's parameters.
    scaler : torch.amp.GradScaler
        From :func:`stfpm_lib.engine.device.grad_scaler` (enabled for fp16 only).
    x : torch.Tensor of shape (B, 3, S, S)
    cfg : STFPMConfig
    device : torch.device
    indices : torch.Tensor of shape (B,), optional
        Dataset indices of the rows (needed with ``cache``).
    cache : TeacherFeatureCache, optional
        Teacher features kept across epochs.

    Returns
    -------
    (torch.Tensor of shape (), torch.Tensor of shape (B,))
        The loss and the per-image losses, detached, on ``device`` (no host synchronisation).
    """
    with autocast(cfg.precision, device):
        t_feats = _teacher(model, x, indices, cache)
        s_feats = model.student(x)
    loss, per_img = loss_from_config(t_feats, s_feats, cfg, return_per_image=True)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), per_img.detach()


def train_epoch(model: STFPM, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, batches: Iterable,
                cfg: STFPMConfig, device: torch.device, *, cache: TeacherFeatureCache | None = None,
                on_batch: Callable[[torch.Tensor], None] | None = None) -> float:
    """One pass of :func:`train_step` over ``batches``, the student in train mode.

    Parameters
    ----------
    model, optimizer, scaler
        As in :func:`train_step`.
    batches : iterable
        ``(images, indices)`` pairs or dicts with ``image``.
    cfg : STFPMConfig
    device : torch.device
    cache : TeacherFeatureCache, optional
    on_batch : callable, optional
        ``on_batch(loss)`` after every step (e.g. a progress bar).

    Returns
    -------
    float
        The mean per-image loss (one host synchronisation).
    """
    model.train()
    loss_sum, n = 0.0, 0
    for batch in batches:
        images, indices = _unpack(batch)
        x = prepare_input(images, device, cfg.channels_last)
        loss, per_img = train_step(model, optimizer, scaler, x, cfg, device, indices=indices, cache=cache)
        loss_sum = loss_sum + per_img.sum()  # stays on the device: no sync per batch
        n += x.shape[0]
        if on_batch is not None:
            on_batch(loss)
    return float(loss_sum) / n


# ---------------------------------------------------------------------------- validation
@torch.no_grad()
def validate(model: STFPM, loader, cfg: STFPMConfig, device: torch.device, *,
             cache: TeacherFeatureCache | None = None) -> tuple[float, float]:
    """Validation loss and selection map over ``loader``.

    Parameters
    ----------
    model : STFPM
    loader : iterable
        Batches as for :func:`train_epoch` (normal validation images).
    cfg : STFPMConfig
    device : torch.device
    cache : TeacherFeatureCache, optional
        Teacher features of the validation images (batches must carry indices); it must only ever be
        used inside ``torch.inference_mode``, as here.

    Returns
    -------
    (float, float)
        ``(val_loss, val_map)``: mean per-image loss and mean of the selection map (for ``official``
        upsampling the float64 mean over all pixels of the fused maps at a quarter of the input size,
        as the official code; else the mean of the final maps' per-image float32 means).
    """
    model.eval()
    loss_st, map_st = cfg.loss_settings(), cfg.map_settings()
    loss_sum, map_sum, n, n_pixels = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for batch in loader:
            images, indices = _unpack(batch)
            x = prepare_input(images, device, cfg.channels_last)
            with autocast(cfg.precision, device):
                t_feats = _teacher(model, x, indices, cache)
                s_feats = model.student(x)
            loss_sum += float(per_image_loss(t_feats, s_feats, half=loss_st.half,
                                             layer_reduction=loss_st.layer_reduction).sum())
            if cfg.map_upsample == "official":  # the official global mean: float64 sum over all pixels
                maps = fused_map(t_feats, s_feats, map_st, cfg.input_size)
                map_sum += float(maps.double().sum())
                n_pixels += maps.numel()
            else:
                maps = anomaly_map(t_feats, s_feats, map_st, cfg.input_size)
                map_sum += float(maps.flatten(1).mean(dim=1).sum())
            n += x.shape[0]
    return loss_sum / n, map_sum / (n_pixels if cfg.map_upsample == "official" else n)


@torch.no_grad()
def test_pixel_auroc(model: STFPM, dataset: ImageDataset, cfg: STFPMConfig, device: torch.device) -> float:
    """Pixel AUROC of ``model`` on the test images of ``dataset``: the ``test_pixel_auroc`` criterion.

    Parameters
    ----------
    model : STFPM
    dataset : ImageDataset
        The test images and masks (``cfg.mask_rule``) at the input size ``S``.
    cfg : STFPMConfig
    device : torch.device

    Returns
    -------
    float
        Pixel AUROC in [0, 1] over the maps ``(N, S, S)``.

    Notes
    -----
    Batches of ``cfg.eval_batch_size`` are stacked by hand, not by a DataLoader, whose iterator would
    draw from the global RNG and so change the training batch order.
    """
    model.eval()
    maps, masks = [], []
    with torch.inference_mode():
        for start in range(0, len(dataset), cfg.eval_batch_size):
            items = [dataset[i] for i in range(start, min(start + cfg.eval_batch_size, len(dataset)))]
            batch_maps, _ = predict_batch(model, torch.stack([item["image"] for item in items]), cfg, device)
            maps.append(batch_maps.float().cpu().numpy())
            masks += [np.asarray(item["mask"]) for item in items]
    return float(pixel_auroc(np.concatenate(maps), np.stack(masks)))


# ---------------------------------------------------------------------------- training state (last.pt)
@dataclass
class TrainingState:
    """What ``last.pt`` holds after ``epoch`` epochs: enough to continue exactly.

    Attributes
    ----------
    config, teacher_weights, dataset : dict
        The run's records, which a resumption must match.
    epoch : int
        Epochs done.
    student, optimizer, scaler : dict or None
        State dicts (``scaler`` is ``None`` in version-1 files).
    rng : dict or None
        :func:`stfpm_lib.engine.device.rng_state` (NumPy's state as NumPy gives it).
    history : list of dict
        One row per epoch.
    best : dict
        ``{"epoch", "value", "student"}`` of the kept epoch (``epoch`` 0 and ``student`` ``None``
        before the first).
    elapsed_s : float
        Wall time of the epochs, seconds.
    """

    config: dict[str, Any]
    teacher_weights: dict[str, Any]
    dataset: dict[str, Any]
    epoch: int = 0
    student: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "value": math.inf, "student": None})
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``last.pt`` content (format ``stfpm-last``).

        :func:`~stfpm_lib.engine.checkpoint.save_checkpoint` adds the hashes. NumPy's RNG keys are stored
        as a tensor (``weights_only`` loading).

        Returns
        -------
        dict of str to object
        """
        rng = None if self.rng is None else {**self.rng, "numpy": _numpy_state_to_torch(self.rng["numpy"])}
        return {
            "format": LAST_FORMAT, "version": FORMAT_VERSION, "config": self.config, "epoch": self.epoch,
            "student": self.student, "optimizer": self.optimizer, "scaler": self.scaler, "shuffle": _SHUFFLE,
            "rng": rng, "history": self.history, "best": self.best, "teacher_weights": self.teacher_weights,
            "dataset": self.dataset, "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> TrainingState:
        """Inverse of :meth:`to_dict`.

        Parameters
        ----------
        obj : mapping of str to object
            As :func:`~stfpm_lib.engine.checkpoint.read_checkpoint` returns it.

        Returns
        -------
        TrainingState
        """
        rng = dict(obj["rng"])
        rng["numpy"] = _numpy_state_from_torch(rng["numpy"])
        best = obj["best"]
        return cls(config=obj["config"], teacher_weights=obj["teacher_weights"], dataset=obj["dataset"],
                   epoch=int(obj["epoch"]), student=obj["student"], optimizer=obj["optimizer"],
                   scaler=obj.get("scaler"), rng=rng, history=[dict(row) for row in obj["history"]],
                   best={"epoch": best["epoch"], "value": best["value"], "student": best["student"]},
                   elapsed_s=float(obj["elapsed_s"]))


@dataclass
class _Session:
    """The live objects of a run: model, optimiser, scaler, loaders, teacher feature caches."""

    model: STFPM
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    caches: dict[str, TeacherFeatureCache] | None
    device: torch.device
    test_data: ImageDataset | None = None  # only for a leakage selection (test_pixel_auroc)


# ---------------------------------------------------------------------------- fit steps
def _split_and_record(cfg: STFPMConfig, data_root, category: str) -> tuple[list[Path], list[Path], dict[str, Any]]:
    """Index the category, split its training images, and describe the split (with file hashes)."""
    index = index_category(data_root, category)
    train_paths, val_paths = split_train_val(index.train, cfg)
    return train_paths, val_paths, _dataset_record(index, train_paths, val_paths)


def _read_resume_file(cfg: STFPMConfig, last_path: Path, dataset_record: Mapping[str, Any]) -> TrainingState:
    """The interrupted run in ``last_path``, checked against this run's config, shuffling and images."""
    state = read_checkpoint(last_path, "resume file")
    diff = _config_diff(state["config"], cfg)
    if diff:
        raise TrainError(f"{last_path} is an interrupted run with another config ({'; '.join(diff)}); "
                         f"use another out_dir or resume=False to start afresh")
    if state.get("shuffle") != _SHUFFLE:
        raise TrainError(f"{last_path} was written by an older version that shuffled with its own generator; "
                         f"resuming it would change the batch order: use resume=False to start afresh")
    if any(state["dataset"].get(k, dataset_record[k]) != dataset_record[k]
           for k in ("train_images", "val_images", "train_sha256", "val_sha256")):
        raise TrainError(f"{last_path}: the training/validation images changed since the run was interrupted")
    return TrainingState.from_dict(state)


def _finished_run(cfg: STFPMConfig, ckpt_path: Path) -> TrainResult:
    """The finished run in ``ckpt_path`` as a result, if it has this config."""
    done = read_checkpoint(ckpt_path, "checkpoint")
    diff = _config_diff(done["config"], cfg)
    if diff:
        raise TrainError(f"{ckpt_path} holds a finished run with another config ({'; '.join(diff)}); "
                         f"use another out_dir or resume=False to overwrite it")
    return _result_from_checkpoint(ckpt_path, done)


def _check_settings(cfg: STFPMConfig, weights: TeacherWeights | None, n_train: int,
                    progress: bool) -> tuple[TeacherWeights, torch.device]:
    """Resolve the teacher weights and the device; refuse impossible settings (nothing written yet)."""
    if weights is None:
        weights = resolve_teacher_weights(cfg.teacher_weights, cfg.backbone, progress=progress)
    device = resolve_device(cfg.device)
    amp_dtype(cfg.precision, device)  # an impossible precision fails here, before any file is written
    if cfg.cache_teacher_features and not cfg.cache_memory_mb >= 0:
        raise ConfigError(f"cache_memory_mb={cfg.cache_memory_mb!r} must be >= 0 (MiB for the teacher feature cache)")
    _check_batchnorm(cfg, n_train)
    if device.type == "cpu":
        tune_cpu_allocator()  # reuse freed activation memory (no page faults every step); results unchanged
    return weights, device


def _decoded_datasets(cfg: STFPMConfig, train_paths, val_paths) -> tuple[ImageDataset, ImageDataset]:
    """Training and validation datasets, every image decoded once up front: bad images fail before
    any file is written, and DataLoader workers inherit the cache."""
    return _decoded(ImageDataset(train_paths, cfg, cache=True)), _decoded(ImageDataset(val_paths, cfg, cache=True))


def _decoded(ds: ImageDataset) -> ImageDataset:
    """``ds`` with every item decoded into its cache (bad files fail here, before anything is written)."""
    for i in range(len(ds)):
        ds.arrays(i)
    return ds


def _leakage_test_data(cfg: STFPMConfig, data_root, category: str) -> ImageDataset | None:
    """The decoded test images and masks a leakage selection reads (``None`` for the others)."""
    if cfg.selection not in LEAKAGE_SELECTIONS:
        return None
    return _decoded(ImageDataset(index_category(data_root, category).test, cfg, cache=True))


def _prepare_out_dir(out_dir: Path, resume: bool) -> None:
    """Probe ``out_dir`` for writing, remove temporary files of killed writes, the predictions of the model
    this training replaces (``predictions_<split>.npz``: evaluating with them would mix two models), and
    without ``resume`` the files of an earlier run."""
    check_writable(out_dir)  # a read-only folder or a file in the way fails now, not after the first epoch
    clean_stale_tmp(out_dir)
    for split in ("test", "val", "train"):
        (out_dir / f"predictions_{split}.npz").unlink(missing_ok=True)
    if not resume:
        for stale in (out_dir / CHECKPOINT_NAME, out_dir / LAST_NAME):
            stale.unlink(missing_ok=True)


def _build_session(cfg: STFPMConfig, weights: TeacherWeights, device: torch.device, train_ds: ImageDataset,
                   val_ds: ImageDataset) -> _Session:
    """Seed, then model, optimiser, scaler and loaders: the official code's global torch RNG stream
    (module doc). Call inside :func:`~stfpm_lib.engine.device.kernel_policy`."""
    seed_everything(cfg.seed)
    model = prepare_model(build_stfpm(cfg, weights, advance_global_rng=True), device, cfg.channels_last)
    optimizer = torch.optim.SGD(model.student.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scaler = grad_scaler(cfg.precision, device)
    # No generator: both loaders draw from the global torch RNG as the official ones do. No
    # persistent workers: each epoch's iterator must draw its base seed, as with num_workers=0.
    loader_kw = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda", persistent_workers=False)
    train_loader = torch.utils.data.DataLoader(IndexedImages(train_ds), batch_size=cfg.batch_size, shuffle=True,
                                               drop_last=False, **loader_kw)
    val_loader = torch.utils.data.DataLoader(IndexedImages(val_ds), batch_size=cfg.eval_batch_size,
                                             shuffle=False, **loader_kw)
    caches = None
    if cfg.cache_teacher_features:  # the validation cache is made after the first epoch (_run_epoch)
        caches = {"train": TeacherFeatureCache(len(train_ds), cfg.cache_memory_mb, name="train")}
    return _Session(model, optimizer, scaler, train_loader, val_loader, caches, device)


def _restore(session: _Session, state: TrainingState, teacher_record: Mapping[str, Any], last_path: Path) -> None:
    """Continue from ``state``: same teacher required; student, optimiser, scaler and RNG restored."""
    if state.teacher_weights.get("state_sha256") != teacher_record["state_sha256"]:
        raise TrainError(f"{last_path}: the teacher weights differ from the interrupted run's "
                         f"({state.teacher_weights} vs {teacher_record})")
    session.model.student.load_state_dict(state.student)
    session.optimizer.load_state_dict(state.optimizer)
    if state.scaler is not None:
        session.scaler.load_state_dict(state.scaler)
    set_rng_state(state.rng)


def _run_epoch(session: _Session, state: TrainingState, cfg: STFPMConfig, epoch: int,
               on_batch: Callable[[torch.Tensor], None] | None) -> dict[str, Any]:
    """Train one epoch, validate, update ``state`` (history, elapsed, best, student, optimiser,
    scaler, RNG, epoch) and return the epoch's history row."""
    t0 = time.perf_counter()
    caches, device = session.caches, session.device
    train_loss = train_epoch(session.model, session.optimizer, session.scaler, session.train_loader, cfg, device,
                             cache=caches and caches["train"], on_batch=on_batch)
    if caches is not None and "val" not in caches:  # what the training cache leaves of the budget
        left = max(cfg.cache_memory_mb - caches["train"].nbytes / 2**20, 0.0)
        caches["val"] = TeacherFeatureCache(len(session.val_loader.dataset), left, name="val")
    val_loss, val_map = validate(session.model, session.val_loader, cfg, device, cache=caches and caches["val"])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_map": val_map}
    if session.test_data is not None:
        row["test_pixel_auroc"] = test_pixel_auroc(session.model, session.test_data, cfg, device)
    row["epoch_time_s"] = time.perf_counter() - t0
    state.history.append(row)
    state.elapsed_s += row["epoch_time_s"]
    key = _selection_key(cfg)
    if _improves(row, state.best, cfg):
        state.best = {"epoch": epoch, "value": row[key] if key else math.nan,
                      "student": _cpu_state(session.model.student)}
    state.epoch, state.rng = epoch, rng_state()
    state.student, state.optimizer = _cpu_state(session.model.student), session.optimizer.state_dict()
    state.scaler = session.scaler.state_dict()
    return row


def _train_epochs(session: _Session, state: TrainingState, cfg: STFPMConfig, last_path: Path, category: str,
                  progress: bool, log: Callable[[dict[str, Any]], None] | None) -> None:
    """Epochs ``state.epoch + 1 .. cfg.epochs``, ``last.pt`` written after each, with a progress bar."""
    n = len(session.train_loader)
    bar = tqdm(total=cfg.epochs * n, initial=state.epoch * n, disable=not progress, desc=f"{category} train",
               unit="batch", leave=False)
    try:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if _early_stopped(state, cfg):
                break

            def on_batch(loss: torch.Tensor, epoch: int = epoch) -> None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss):.4f}")

            row = _run_epoch(session, state, cfg, epoch, on_batch if progress else None)
            _check_finite(row, cfg, last_path)
            save_checkpoint(last_path, state.to_dict())
            bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.4f}", val_map=f"{row['val_map']:.4g}")
            if log is not None:
                log(dict(row))
    finally:
        bar.close()


def _check_finite(row: Mapping[str, Any], cfg: STFPMConfig, last_path: Path) -> None:
    """Stop at the first epoch whose losses are not finite: a diverged student writes no checkpoint (nor
    ``last.pt``, which a resume would continue from) and is never evaluated."""
    # fp16 training may see an overflowing batch loss that the gradient scaler skips: there the student's
    # validation loss decides; elsewhere any non-finite loss means divergence
    keys = ("val_loss",) if cfg.precision in ("fp16", "auto") else ("train_loss", "val_loss")
    bad = {k: row[k] for k in keys if not math.isfinite(float(row[k]))}
    if bad:
        last_path.unlink(missing_ok=True)
        raise TrainError(f"training diverged at epoch {row['epoch']}: {', '.join(f'{k} = {v}' for k, v in bad.items())}; "
                         f"the likely cause is a learning rate too high for this setup (lr={cfg.lr}"
                         f"{f', precision {cfg.precision}' if cfg.precision != 'fp32' else ''}): lower lr and train "
                         "again. No checkpoint was written.")


def _write_result(session: _Session, state: TrainingState, cfg: STFPMConfig, out_dir: Path,
                  resumed_from: int) -> TrainResult:
    """Write ``history.csv``, ``config.json`` and ``checkpoint.pt`` (the selected student), remove ``last.pt``."""
    key = _selection_key(cfg)
    value = None if key is None else float(state.best["value"])
    caches = session.caches
    cache_record = None if caches is None else {name: c.describe() for name, c in caches.items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict(),
        "student": state.best["student"], "epoch": state.best["epoch"], "epochs_trained": state.epoch,
        "selection": cfg.selection, "selection_value": value,
        "test_set_leakage": cfg.selection in LEAKAGE_SELECTIONS, "peak_memory": peak_memory(session.device), "teacher_weights": state.teacher_weights,
        "dataset": state.dataset, "history": state.history, "train_time_s": state.elapsed_s,
        "device": str(session.device), "resumed_from_epoch": resumed_from, "environment": environment_info(),
        "teacher_cache": cache_record,
    }
    frame = pd.DataFrame(state.history, columns=history_columns(cfg.selection))
    atomic_write_text(out_dir / "history.csv", frame.to_csv(index=False))
    cfg.to_json(out_dir / "config.json")
    ckpt_path = out_dir / CHECKPOINT_NAME
    save_checkpoint(ckpt_path, checkpoint)
    (out_dir / LAST_NAME).unlink(missing_ok=True)
    return TrainResult(checkpoint_path=ckpt_path, history=frame, best_epoch=int(state.best["epoch"]),
                       train_time_s=state.elapsed_s, teacher_weights=state.teacher_weights, selection_value=value,
                       resumed_from_epoch=resumed_from, teacher_cache=cache_record)


# ---------------------------------------------------------------------------- fit
def fit(cfg: STFPMConfig, data_root, category: str, out_dir, *, resume: bool = True, progress: bool = True,
        log: Callable[[dict[str, Any]], None] | None = None, weights: TeacherWeights | None = None) -> TrainResult:
    """Train a student for ``category`` and write ``out_dir/checkpoint.pt`` (see the module doc).

    Nothing is written before data and weights are checked.

    Parameters
    ----------
    cfg : STFPMConfig
        The run's configuration (all hyper-parameters, device, precision).
    data_root : str or path-like or None
        MVTec-layout root (``None``: ``$MVTEC_ROOT``).
    category : str
    out_dir : str or path-like
        Directory for ``checkpoint.pt``, ``last.pt``, ``history.csv``, ``config.json``.
    resume : bool, default=True
        Continue from ``out_dir/last.pt`` if present (same config required); a finished run with the
        same config is returned as is. ``False`` starts afresh.
    progress : bool, default=True
        Show a tqdm bar with the loss.
    log : callable, optional
        Called with each epoch's history row (after ``last.pt`` is saved).
    weights : TeacherWeights, optional
        Already-resolved teacher weights (default: resolve ``cfg.teacher_weights``).

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Bad data.
    WeightsError
        Unusable teacher weights.
    TrainError
        ``out_dir`` holds another run.
    OutputError
        ``out_dir`` cannot be written.
    """
    train_paths, val_paths, dataset_record = _split_and_record(cfg, data_root, category)
    out_dir = Path(out_dir)
    ckpt_path, last_path = out_dir / CHECKPOINT_NAME, out_dir / LAST_NAME
    if resume and ckpt_path.is_file():
        return _finished_run(cfg, ckpt_path)
    saved = _read_resume_file(cfg, last_path, dataset_record) if resume and last_path.is_file() else None
    weights, device = _check_settings(cfg, weights, len(train_paths), progress)
    train_ds, val_ds = _decoded_datasets(cfg, train_paths, val_paths)
    test_ds = _leakage_test_data(cfg, data_root, category)
    _prepare_out_dir(out_dir, resume)

    with kernel_policy(device, cfg.precision):
        session = _build_session(cfg, weights, device, train_ds, val_ds)
        session.test_data = test_ds
        teacher_record = _teacher_record(session.model)
        if saved is not None:
            _restore(session, saved, teacher_record, last_path)
            saved.config, saved.teacher_weights, saved.dataset = cfg.to_dict(), teacher_record, dataset_record
        state = saved or TrainingState(config=cfg.to_dict(), teacher_weights=teacher_record, dataset=dataset_record)
        resumed_from = state.epoch
        _train_epochs(session, state, cfg, last_path, category, progress, log)
    return _write_result(session, state, cfg, out_dir, resumed_from)


def _result_from_checkpoint(path: Path, ckpt: Mapping[str, Any]) -> TrainResult:
    columns = history_columns(ckpt["config"].get("selection", "val_map"))
    return TrainResult(checkpoint_path=path, history=pd.DataFrame(ckpt["history"], columns=columns),
                       best_epoch=int(ckpt["epoch"]), train_time_s=float(ckpt["train_time_s"]),
                       teacher_weights=dict(ckpt["teacher_weights"]), selection_value=ckpt["selection_value"],
                       resumed_from_epoch=int(ckpt.get("resumed_from_epoch", 0)),
                       teacher_cache=ckpt.get("teacher_cache"))
