"""One configuration object for every knob of STFPM, with named presets.

The presets follow the differences between the public implementations (``docs/implementation-differences.md``):

* ``official`` (default): the official code (gdwang08/STFPM) exactly.
* ``anomalib``: anomalib's STFPM (½ and batch-sum loss, direct upsampling, wd 1e-3).
* ``hcw``: hcw-00/STPM_anomaly_detection (½ batch-sum loss, ``==1`` masks, last epoch).
* ``xia``: xiahaifeng1995/STPM (crop 224, area-scaled layer maps, sum fusion, Gaussian σ=4).

The config is flat (strings, numbers, booleans and one list), so it can be passed as
papermill parameters and written to JSON or YAML::

    cfg = STFPMConfig.from_preset("official", epochs=2)
    cfg.to_json("config.json")
    assert STFPMConfig.from_json("config.json") == cfg

Every field's type and range is declared once in :data:`FIELD_SPECS` and checked when a
config is built: a wrong type (``loss_half="no"``, ``epochs=1.5``) or a value out of range
(``momentum=1``, ``num_workers=-3``) raises :class:`ConfigError` naming the field. Text
from the command line, the runner's ``-p`` and papermill is typed by :func:`parse_field`
(the only parser of config values), so ``-p loss_half no`` is ``False``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import yaml

from .io import atomic_write_text

__all__ = ["STFPMConfig", "PRESETS", "BACKBONES", "LAYERS", "CONFIG_FIELDS", "RUNTIME_FIELDS", "ConfigError",
           "config_differences", "FIELD_SPECS", "FieldSpec", "MIN_INPUT_SIZE", "parse_field", "parse_fields",
           "Backbone", "Layer", "MaskRule", "SplitRule", "LossReduction", "LayerReduction", "MapScale", "MapUpsample",
           "MapFusion", "Selection", "DeviceChoice", "Precision", "MASK_RULES", "SPLIT_RULES", "LOSS_REDUCTIONS",
           "LAYER_REDUCTIONS", "MAP_SCALES", "MAP_UPSAMPLES", "MAP_FUSIONS", "SELECTIONS", "DEVICE_CHOICES",
           "PRECISIONS", "RandomInit", "RANDOM_INITS", "LossSettings", "MapSettings", "TransformSettings"]

# Every set of string choices is declared once, as a Literal type (for annotations); the runtime
# tuples below (validation, error messages, argparse choices) are derived from it.
Backbone = Literal["resnet18", "resnet34", "resnet50", "wide_resnet50_2"]
Layer = Literal["layer1", "layer2", "layer3", "layer4"]
MaskRule = Literal["gt0", "nearest", "eq1"]
SplitRule = Literal["seeded", "random"]
LossReduction = Literal["batch_mean", "batch_sum"]
LayerReduction = Literal["sum", "mean"]
MapScale = Literal["sq_dist", "half_sq_dist", "half_sq_dist_per_area"]
MapUpsample = Literal["official", "direct"]
MapFusion = Literal["product", "sum"]
Selection = Literal["val_map", "val_loss", "last", "test_pixel_auroc"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
#: initialisation of randomly initialised networks (``STFPMConfig.random_init``)
RandomInit = Literal["torchvision", "zero_last_bn"]

BACKBONES: tuple[str, ...] = get_args(Backbone)
LAYERS: tuple[str, ...] = get_args(Layer)
MASK_RULES: tuple[str, ...] = get_args(MaskRule)
SPLIT_RULES: tuple[str, ...] = get_args(SplitRule)
LOSS_REDUCTIONS: tuple[str, ...] = get_args(LossReduction)
LAYER_REDUCTIONS: tuple[str, ...] = get_args(LayerReduction)
MAP_SCALES: tuple[str, ...] = get_args(MapScale)
MAP_UPSAMPLES: tuple[str, ...] = get_args(MapUpsample)
MAP_FUSIONS: tuple[str, ...] = get_args(MapFusion)
SELECTIONS: tuple[str, ...] = get_args(Selection)
DEVICE_CHOICES: tuple[str, ...] = get_args(DeviceChoice)
PRECISIONS: tuple[str, ...] = get_args(Precision)
RANDOM_INITS: tuple[str, ...] = get_args(RandomInit)

#: Smallest network input side (``image_size``, and ``crop_size`` when set), pixels. The ResNet's
#: deepest stage has stride 32: below 32 px its map is a single clamped pixel and the coarse layers
#: no longer see any structure (the networks still run, but the maps mean nothing).
MIN_INPUT_SIZE = 32

_SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's seed range (torch accepts more)
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_NONE = ("none", "null")


@dataclass(frozen=True)
class FieldSpec:
    """The type and allowed values of one config field.

    Parameters
    ----------
    kind : type
        ``bool``, ``int``, ``float``, ``str`` or ``tuple`` (the layer list).
    low, high : float or None, default=None
        Bounds of a number (``None``: unbounded).
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds are included.
    choices : tuple of str, optional
        The valid strings (or layer names).
    optional : bool, default=False
        Whether ``None`` is admitted.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    choices: tuple[str, ...] | None = None
    optional: bool = False

    def describe_range(self) -> str:
        """The interval in words.

        Returns
        -------
        str
            E.g. ``in [0, 1)`` or ``>= 32``.
        """
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        lo, hi = (f"{v:.12g}" if isinstance(v, float) else str(v) for v in (self.low, self.high))
        if self.high is None:
            return f"{'>=' if lo_in else '>'} {lo}"
        if self.low is None:
            return f"{'<=' if hi_in else '<'} {hi}"
        return f"in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"

    def in_range(self, value: float) -> bool:
        """Whether ``value`` lies within ``low``/``high`` (closed as ``closed`` says).

        Parameters
        ----------
        value : float

        Returns
        -------
        bool
        """
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not lo_in)):
            return False
        return not (self.high is not None and (value > self.high or (value == self.high and not hi_in)))


def _choice(choices: tuple[str, ...]) -> FieldSpec:
    return FieldSpec(str, choices=choices)


#: Field -> type and range: the single table :class:`STFPMConfig` validates against
#: (``preset`` is checked against :data:`PRESETS`).
FIELD_SPECS: dict[str, FieldSpec] = {
    "image_size": FieldSpec(int, low=MIN_INPUT_SIZE),
    "crop_size": FieldSpec(int, low=MIN_INPUT_SIZE, optional=True),  # and <= image_size
    "mask_rule": _choice(MASK_RULES),
    "val_fraction": FieldSpec(float, low=0.0, high=1.0, closed="neither"),
    "split": _choice(SPLIT_RULES),
    "split_seed": FieldSpec(int, low=0, high=_SEED_MAX),
    "backbone": _choice(BACKBONES),
    "layers": FieldSpec(tuple, choices=LAYERS),
    "teacher_weights": FieldSpec(str),
    "random_init": _choice(RANDOM_INITS),
    "loss_half": FieldSpec(bool),
    "loss_reduction": _choice(LOSS_REDUCTIONS),
    "loss_layer_reduction": _choice(LAYER_REDUCTIONS),
    "map_scale": _choice(MAP_SCALES),
    "map_upsample": _choice(MAP_UPSAMPLES),
    "map_fusion": _choice(MAP_FUSIONS),
    "smoothing_sigma": FieldSpec(float, low=0.0),
    "epochs": FieldSpec(int, low=1),
    "batch_size": FieldSpec(int, low=1),
    "lr": FieldSpec(float, low=0.0, closed="right"),
    "momentum": FieldSpec(float, low=0.0, high=1.0, closed="left"),
    "weight_decay": FieldSpec(float, low=0.0),
    "selection": _choice(SELECTIONS),
    "patience": FieldSpec(int, low=1),
    "seed": FieldSpec(int, low=0, high=_SEED_MAX),
    "device": _choice(DEVICE_CHOICES),
    "precision": _choice(PRECISIONS),
    "channels_last": FieldSpec(bool),
    "eval_batch_size": FieldSpec(int, low=1),
    "num_workers": FieldSpec(int, low=0),
    "cache_teacher_features": FieldSpec(bool),
    "cache_memory_mb": FieldSpec(int, low=0),
}

_KIND_NAMES = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
               tuple: "a list of layer names"}


class ConfigError(ValueError):
    """An unknown preset, an unknown key or an invalid value in a configuration."""


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {list(choices)}")


class _NarrowSettings:
    """Shared constructor of the narrow settings objects: the few knobs one part of the method reads.

    They let :mod:`stfpm_lib.method.loss`, :mod:`stfpm_lib.method.anomaly_map` and
    :mod:`stfpm_lib.data.transforms` depend on their own knobs only; :class:`STFPMConfig` builds
    them (:meth:`STFPMConfig.loss_settings`, ...).
    """

    _BUILDER: ClassVar[str]  # the STFPMConfig method that builds one
    _KIND: ClassVar[str]  # what the settings are about, for error messages

    @classmethod
    def from_any(cls, source: Any = None) -> Any:
        """Settings from ``source``.

        Parameters
        ----------
        source : settings, STFPMConfig, mapping or None
            An instance (returned as is), an :class:`STFPMConfig` (or any object with the
            builder method, e.g. ``loss_settings``), a mapping of field names to values, or
            ``None`` (the defaults, the official code).

        Raises
        ------
        ValueError
            An unknown key in a mapping, or an invalid value.
        """
        if source is None:
            return cls()
        if isinstance(source, cls):
            return source
        if isinstance(source, Mapping):
            names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
            unknown = sorted(set(source) - set(names))
            if unknown:
                raise ConfigError(f"unknown {cls._KIND} setting(s) {unknown}; valid: {names}")
            return cls(**source)
        return getattr(source, cls._BUILDER)()


@dataclass(frozen=True)
class LossSettings(_NarrowSettings):
    """The loss knobs of :class:`STFPMConfig` (``loss_half``, ``loss_reduction``, ``loss_layer_reduction``).

    Parameters
    ----------
    half : bool
        Multiply the per-position loss by ½ (paper, anomalib, HCW, XIA).
    reduction : {"batch_mean", "batch_sum"}
        Average (official) or sum the per-image losses over the batch.
    layer_reduction : {"sum", "mean"}
        Sum (official) or average the layer losses (XIA).
    """

    _BUILDER: ClassVar[str] = "loss_settings"
    _KIND: ClassVar[str] = "loss"

    half: bool = False
    reduction: LossReduction = "batch_mean"
    layer_reduction: LayerReduction = "sum"

    def __post_init__(self) -> None:
        _check_choice("reduction", self.reduction, LOSS_REDUCTIONS)
        _check_choice("layer_reduction", self.layer_reduction, LAYER_REDUCTIONS)


@dataclass(frozen=True)
class MapSettings(_NarrowSettings):
    """The four anomaly-map knobs of :class:`STFPMConfig` (same names and meaning).

    Parameters
    ----------
    map_scale : {"sq_dist", "half_sq_dist", "half_sq_dist_per_area"}
        Per-layer map ‖Δ‖², ½‖Δ‖² or ½‖Δ‖²/(h·w).
    map_upsample : {"official", "direct"}
        Layers to a quarter of the output size, fuse, then to the output size; or each layer
        straight to the output size.
    map_fusion : {"product", "sum"}
        How the layer maps are fused.
    smoothing_sigma : float
        Gaussian smoothing of the final map, pixels (0: none).
    """

    _BUILDER: ClassVar[str] = "map_settings"
    _KIND: ClassVar[str] = "anomaly-map"

    map_scale: MapScale = "sq_dist"
    map_upsample: MapUpsample = "official"
    map_fusion: MapFusion = "product"
    smoothing_sigma: float = 0.0

    def __post_init__(self) -> None:
        for key, choices in (("map_scale", MAP_SCALES), ("map_upsample", MAP_UPSAMPLES), ("map_fusion", MAP_FUSIONS)):
            _check_choice(key, getattr(self, key), choices)
        if not self.smoothing_sigma >= 0:
            raise ConfigError(f"smoothing_sigma={self.smoothing_sigma!r} must be >= 0")


@dataclass(frozen=True)
class TransformSettings(_NarrowSettings):
    """The preprocessing knobs of :class:`STFPMConfig` (same names and meaning).

    Parameters
    ----------
    image_size : int
        Side of the square resize, pixels.
    crop_size : int or None
        Side of the centre crop after the resize, pixels (``None``: no crop).
    mask_rule : {"gt0", "nearest", "eq1"}
        How resized ground-truth masks are binarised.
    """

    _BUILDER: ClassVar[str] = "transform_settings"
    _KIND: ClassVar[str] = "transform"

    image_size: int = 256
    crop_size: int | None = None
    mask_rule: MaskRule = "gt0"

    def __post_init__(self) -> None:
        _check_choice("mask_rule", self.mask_rule, MASK_RULES)

    @property
    def input_size(self) -> int:
        """Side of the square network input, pixels (the crop if any, else the resize)."""
        return self.crop_size or self.image_size


@dataclass(frozen=True)
class STFPMConfig:
    """Every setting of an STFPM run. Defaults reproduce the official code.

    Parameters
    ----------
    preset : str, default="official"
        The preset the values started from (:data:`PRESETS`, or ``custom``).
    image_size : int, default=256
        Side of the square resize (bilinear, antialiased), pixels, >= 32 (:data:`MIN_INPUT_SIZE`).
    crop_size : int or None, default=None
        Centre crop after the resize, pixels, in [32, image_size] (``None``: no crop).
    mask_rule : {"gt0", "nearest", "eq1"}, default="gt0"
        How resized ground-truth masks are binarised: ``gt0`` (cv2 INTER_LINEAR uint8 resize
        reproduced exactly, any value > 0, the official code), ``nearest`` (nearest-neighbour
        resize) or ``eq1`` (bilinear resize, only fully-defective pixels, HCW).
    val_fraction : float, default=0.2
        Share of ``train/good`` held out as normal validation images, in (0, 1).
    split : {"seeded", "random"}, default="seeded"
        ``seeded`` (sorted paths, sklearn split with ``split_seed``, official) or ``random`` (a
        torch random split seeded by ``seed``, XIA-like).
    split_seed : int, default=0
        Seed of the ``seeded`` split, in [0, 2³²-1].
    backbone : {"resnet18", "resnet34", "resnet50", "wide_resnet50_2"}, default="resnet18"
        torchvision ResNet used by teacher and student.
    layers : tuple of {"layer1", "layer2", "layer3", "layer4"}, default=("layer1", "layer2", "layer3")
        Pyramid levels, any non-empty subset (a comma string is accepted).
    teacher_weights : str, default="imagenet"
        ``imagenet`` (torchvision weights API), ``random`` or a path to a ``.pth`` state dict.
    random_init : {"torchvision", "zero_last_bn"}, default="torchvision"
        Initialisation of every randomly initialised network (the student, and the teacher when
        ``teacher_weights="random"``): torchvision's default (Kaiming convs, every BatchNorm γ=1, the
        official code) or the last BatchNorm γ of each residual block set to 0 (torchvision's
        ``zero_init_residual=True``; timm's default ``zero_init_last``, which anomalib 2.x's timm
        student always has and its teacher has when pre-trained weights are off). Same RNG draws.
    loss_half : bool, default=False
        Multiply the per-position loss by ½ (paper, anomalib).
    loss_reduction : {"batch_mean", "batch_sum"}, default="batch_mean"
        Average (official) or sum (anomalib, HCW, XIA) the per-image losses over the batch.
    loss_layer_reduction : {"sum", "mean"}, default="sum"
        Sum the layer losses (official) or average them (XIA).
    map_scale : {"sq_dist", "half_sq_dist", "half_sq_dist_per_area"}, default="sq_dist"
        Per-layer map ‖Δ‖² (official), ½‖Δ‖², or ½‖Δ‖²/(h·w) (XIA).
    map_upsample : {"official", "direct"}, default="official"
        ``official``: each layer to 64², fuse, then to the input size; ``direct``: each layer
        straight to the input size.
    map_fusion : {"product", "sum"}, default="product"
        How the layer maps are fused.
    smoothing_sigma : float, default=0.0
        Gaussian smoothing of the final map, pixels, >= 0 (0: none).
    epochs, batch_size : int, default=100, 32
        SGD recipe, >= 1.
    lr : float, default=0.4
        Learning rate, > 0.
    momentum : float, default=0.9
        In [0, 1).
    weight_decay : float, default=1e-4
        >= 0.
    selection : {"val_map", "val_loss", "last", "test_pixel_auroc"}, default="val_map"
        Checkpoint kept: lowest mean anomaly map on the held-out normals (official), lowest
        validation loss, the last epoch, or the highest pixel AUROC on the *test* images with early
        stopping after ``patience`` epochs without a gain (anomalib's callback). The last reads the
        test labels: test-set leakage, recorded as such in every output; it exists only to measure
        its effect.
    patience : int, default=5
        Epochs without improvement before ``test_pixel_auroc`` stops training, >= 1.
    seed : int, default=0
        Seeds Python, NumPy and torch, in [0, 2³²-1].
    device : {"auto", "cpu", "cuda"}, default="auto"
        ``auto``: CUDA when present.
    precision : {"fp32", "bf16", "fp16", "auto"}, default="fp32"
        ``fp32`` is the faithful default; ``auto``: CUDA: bf16 where the GPU supports it, else fp16
        with gradient scaling; CPU: bf16 only with native bf16 instructions (AVX512-BF16 or AMX),
        else fp32. Losses and maps stay float32.
    channels_last : bool, default=False
        Use the channels-last memory layout.
    eval_batch_size : int, default=32
        Batch size for validation and inference, >= 1.
    num_workers : int, default=0
        DataLoader workers, >= 0.
    cache_teacher_features : bool, default=False
        Cache the frozen teacher's features across epochs.
    cache_memory_mb : int, default=4096
        Memory budget of that cache, MiB, >= 0 (images beyond it are recomputed).

    Raises
    ------
    ConfigError
        An unknown preset, a value of the wrong type (booleans must be ``bool``, floats finite) or
        out of range (:data:`FIELD_SPECS`), naming the field.
    """

    preset: str = "official"
    # data
    image_size: int = 256
    crop_size: int | None = None
    mask_rule: MaskRule = "gt0"
    val_fraction: float = 0.2
    split: SplitRule = "seeded"
    split_seed: int = 0
    # model
    backbone: Backbone = "resnet18"
    layers: tuple[Layer, ...] = ("layer1", "layer2", "layer3")
    teacher_weights: str = "imagenet"
    random_init: RandomInit = "torchvision"
    # loss
    loss_half: bool = False
    loss_reduction: LossReduction = "batch_mean"
    loss_layer_reduction: LayerReduction = "sum"
    # anomaly map
    map_scale: MapScale = "sq_dist"
    map_upsample: MapUpsample = "official"
    map_fusion: MapFusion = "product"
    smoothing_sigma: float = 0.0
    # training
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    selection: Selection = "val_map"
    patience: int = 5
    seed: int = 0
    # runtime
    device: DeviceChoice = "auto"
    precision: Precision = "fp32"
    channels_last: bool = False
    eval_batch_size: int = 32
    num_workers: int = 0
    cache_teacher_features: bool = False
    cache_memory_mb: int = 4096

    def __post_init__(self) -> None:
        if self.preset not in PRESETS and self.preset != "custom":
            raise ConfigError(f"preset={self.preset!r} is unknown; choose from {sorted(PRESETS)}")
        for name, spec in FIELD_SPECS.items():
            object.__setattr__(self, name, _check_value(name, spec, getattr(self, name)))
        if self.crop_size is not None and self.crop_size > self.image_size:
            raise ConfigError(f"crop_size={self.crop_size!r} must be in [{MIN_INPUT_SIZE}, image_size={self.image_size}]")

    # ------------------------------------------------------------------ derived
    @property
    def input_size(self) -> int:
        """Side of the square network input, pixels (the crop if any, else the resize)."""
        return self.crop_size or self.image_size

    @property
    def ordered_layers(self) -> tuple[str, ...]:
        """``layers`` in network order (``layer1`` first)."""
        return tuple(name for name in LAYERS if name in self.layers)

    def loss_settings(self) -> LossSettings:
        """The loss knobs (what :mod:`stfpm_lib.method.loss` reads).

        Returns
        -------
        LossSettings
        """
        return LossSettings(half=self.loss_half, reduction=self.loss_reduction,
                            layer_reduction=self.loss_layer_reduction)

    def map_settings(self) -> MapSettings:
        """The anomaly-map knobs (what :mod:`stfpm_lib.method.anomaly_map` reads).

        Returns
        -------
        MapSettings
        """
        return MapSettings(map_scale=self.map_scale, map_upsample=self.map_upsample, map_fusion=self.map_fusion,
                           smoothing_sigma=self.smoothing_sigma)

    def transform_settings(self) -> TransformSettings:
        """The preprocessing knobs (what :mod:`stfpm_lib.data.transforms` reads).

        Returns
        -------
        TransformSettings
        """
        return TransformSettings(image_size=self.image_size, crop_size=self.crop_size, mask_rule=self.mask_rule)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str = "official", **overrides: Any) -> STFPMConfig:
        """The preset ``name`` with ``overrides`` applied (an unknown preset or key, or a bad value, raises
        :class:`ConfigError`).

        Parameters
        ----------
        name : str, default="official"
            A key of :data:`PRESETS`.
        **overrides
            Field values that replace the preset's.

        Returns
        -------
        STFPMConfig
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        values = {**PRESETS[name], "preset": name}
        _check_keys(overrides, origin="override")
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> STFPMConfig:
        """Inverse of :meth:`to_dict` (an unknown key or preset, or a bad value, raises :class:`ConfigError`).

        Parameters
        ----------
        values : mapping of str to object
            Field values; a ``preset`` key picks the base (default ``official``; ``custom``: the
            dataclass defaults).

        Returns
        -------
        STFPMConfig
        """
        values = dict(values)
        _check_keys(values, origin="config")
        preset = values.pop("preset", "official")
        if preset == "custom":
            return cls(preset="custom", **values)
        return cls.from_preset(preset, **values)

    def replace(self, **overrides: Any) -> STFPMConfig:
        """A copy with ``overrides`` applied (an unknown key or a bad value raises :class:`ConfigError`).

        Parameters
        ----------
        **overrides
            Field values.

        Returns
        -------
        STFPMConfig
        """
        _check_keys(overrides, origin="override")
        return dataclasses.replace(self, **overrides)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly dict of every field.

        Returns
        -------
        dict of str to object
            ``layers`` as a list.
        """
        values = dataclasses.asdict(self)
        values["layers"] = list(self.layers)
        return values

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The config as JSON text.

        Parameters
        ----------
        path : str or path-like, optional
            Also write the text there (atomically).

        Returns
        -------
        str
        """
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The config as YAML text (block style, fields in order); written atomically to ``path`` if given.

        Parameters
        ----------
        path : str or path-like, optional

        Returns
        -------
        str
        """
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike) -> STFPMConfig:
        """Read a config from JSON; a missing file, invalid JSON, not a mapping or invalid values raise
        :class:`ConfigError` naming the source.

        Parameters
        ----------
        path_or_text : str or path-like
            A file path or the JSON text itself.

        Returns
        -------
        STFPMConfig
        """
        return cls.from_dict(_load_mapping(path_or_text, json.loads, "JSON"))

    @classmethod
    def from_yaml(cls, path_or_text: str | os.PathLike) -> STFPMConfig:
        """Read a config from a YAML file path or YAML text; errors as :meth:`from_json`.

        Parameters
        ----------
        path_or_text : str or path-like

        Returns
        -------
        STFPMConfig
        """
        return cls.from_dict(_load_mapping(path_or_text, yaml.safe_load, "YAML"))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> STFPMConfig:
        """Read a ``.json``, ``.yaml`` or ``.yml`` config file, by its extension.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        STFPMConfig

        Raises
        ------
        ConfigError
            Another extension, or as :meth:`from_json`.
        """
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return cls.from_json(Path(path))
        if suffix in (".yaml", ".yml"):
            return cls.from_yaml(Path(path))
        raise ConfigError(f"{path}: config files must end in .json, .yaml or .yml")


PRESETS: dict[str, dict[str, Any]] = {
    # gdwang08/STFPM main.py: the dataclass defaults.
    "official": {},
    # anomalib (HEAD): ½ and batch-sum loss, direct upsampling, ½‖Δ‖² map, wd 1e-3.
    # Its early stopping on *test* pixel AUROC is leakage and is not reproduced: last epoch.
    # The teacher stays torchvision IMAGENET1K_V1 (anomalib's 2021 behaviour); HEAD loads timm's
    # resnet18.a1_in1k instead, which torchvision does not provide (pass it as a .pth file).
    "anomalib": {
        "loss_half": True,
        "loss_reduction": "batch_sum",
        "map_scale": "half_sq_dist",
        "map_upsample": "direct",
        "weight_decay": 1e-3,
        "selection": "last",
    },
    # hcw-00/STPM_anomaly_detection: ½ batch-sum loss, 1-cos map to 256², ==1 masks, last epoch.
    "hcw": {
        "loss_half": True,
        "loss_reduction": "batch_sum",
        "map_scale": "half_sq_dist",
        "map_upsample": "direct",
        "mask_rule": "eq1",
        "selection": "last",
    },
    # xiahaifeng1995/STPM: crop 224, ½ batch-sum loss / n_layers, area-scaled maps, sum, σ=4.
    # Not reproduced: its bug that leaves the student's BatchNorm in eval mode from epoch 2 on (docs/implementation-differences.md, known faults).
    "xia": {
        "crop_size": 224,
        "loss_half": True,
        "loss_reduction": "batch_sum",
        "loss_layer_reduction": "mean",
        "map_scale": "half_sq_dist_per_area",
        "map_upsample": "direct",
        "map_fusion": "sum",
        "smoothing_sigma": 4.0,
        "mask_rule": "nearest",
        "selection": "val_loss",
        "split": "random",
    },
}

_FIELDS = {f.name for f in dataclasses.fields(STFPMConfig)}

#: Every knob a notebook or the runner may set (all fields but ``preset``).
CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(STFPMConfig) if f.name != "preset")

#: Fields that change how fast a run goes, not what it computes: they may differ between a
#: checkpoint and the run that resumes or evaluates it.
RUNTIME_FIELDS: tuple[str, ...] = ("device", "num_workers", "eval_batch_size", "cache_teacher_features",
                                   "cache_memory_mb")


def config_differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """The fields where two config dicts differ, runtime fields (:data:`RUNTIME_FIELDS`) ignored.

    Both are normalised through :class:`STFPMConfig` first (e.g. ``layers`` list vs tuple).

    Parameters
    ----------
    have, want : mapping of str to object
        Config dicts (as :meth:`STFPMConfig.to_dict` writes them).

    Returns
    -------
    list of (str, object, object)
        ``(field, have, want)``, in field order.
    """
    a, b = STFPMConfig.from_dict(have).to_dict(), STFPMConfig.from_dict(want).to_dict()
    return [(k, a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]]


def _check_value(name: str, spec: FieldSpec, value: Any) -> Any:
    """``value`` checked against ``spec`` and normalised (ints as ``int``, floats as ``float``, layers as a tuple).

    Strings are not converted here (``loss_half="no"`` is an error, not ``True``): text from a
    command line goes through :func:`parse_field` first.
    """
    if value is None and spec.optional:
        return None
    if spec.kind is tuple:
        return _check_layers(value)
    wrong = ConfigError(f"{name}={value!r} must be {_KIND_NAMES[spec.kind]}, not {type(value).__name__}"
                        + (" (text from a command line is parsed with stfpm_lib.config.parse_field)"
                           if isinstance(value, str) else ""))
    if spec.kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise wrong
        return bool(value)
    if spec.kind is str:
        if not isinstance(value, str):
            raise wrong
        if spec.choices is not None:
            _check_choice(name, value, spec.choices)
        if not value:
            raise ConfigError(f"{name} must not be empty")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise wrong
    if spec.kind is int:
        if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and float(value).is_integer()):
            raise ConfigError(f"{name}={value!r} must be an integer")
        checked: int | float = int(value)
    else:
        checked = float(value)
        if not math.isfinite(checked):
            raise ConfigError(f"{name}={value!r} must be a finite number")
    if not spec.in_range(checked):
        raise ConfigError(f"{name}={value!r} must be {spec.describe_range()}")
    return checked


def _check_layers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"layers={value!r} must be a list of layer names from {list(LAYERS)}")
    if not value:
        raise ConfigError("layers must name at least one of layer1..layer4")
    if any(v not in LAYERS for v in value) or len(set(value)) != len(value):
        raise ConfigError(f"layers={list(value)} must be distinct names from {list(LAYERS)}")
    return tuple(value)


def parse_field(name: str, value: Any) -> Any:
    """A config value from text (command line, runner ``-p``, papermill), typed for field ``name``.

    Booleans: ``true/yes/on/1`` and ``false/no/off/0`` (any case); integers must be integral (``2``,
    ``2.0``, ``1e3``); floats as Python reads them; ``none``/``null`` for optional fields
    (``crop_size``); ``layers`` as ``layer1,layer2`` (brackets and quotes allowed). Ranges are
    checked when the config is built.

    Parameters
    ----------
    name : str
        A config field (or ``preset``).
    value : object
        Text to parse; non-strings are returned unchanged (:class:`STFPMConfig` checks them).

    Returns
    -------
    object
        ``bool``, ``int``, ``float``, ``str``, ``tuple`` of str or ``None``.

    Raises
    ------
    ConfigError
        An unknown field, or text that is not of the field's type (field and value named).
    """
    if name not in FIELD_SPECS and name != "preset":
        _check_keys({name: value}, origin="config")
    if not isinstance(value, str):
        return value
    spec = FIELD_SPECS.get(name, FieldSpec(str))
    text = value.strip()
    if spec.optional and text.lower() in _NONE:
        return None
    if spec.kind is str:
        return text
    if spec.kind is tuple:
        return tuple(s.strip().strip("'\"") for s in text.strip("[]()").split(",") if s.strip().strip("'\""))
    if spec.kind is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ConfigError(f"{name}={value!r} is not a boolean; use one of {list(_TRUE + _FALSE)}")
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not {_KIND_NAMES[spec.kind]}") from None
    if spec.kind is int:
        if not (math.isfinite(number) and number.is_integer()):
            raise ConfigError(f"{name}={value!r} is not an integer")
        return int(text) if text.lstrip("+-").isdigit() else int(number)
    return number


def parse_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`parse_field` applied to every item.

    Parameters
    ----------
    values : mapping of str to object

    Returns
    -------
    dict of str to object

    Raises
    ------
    ConfigError
        An unknown key, or as :func:`parse_field`.
    """
    _check_keys(values, origin="override")
    return {key: parse_field(key, value) for key, value in values.items()}


def _check_keys(values: Mapping[str, Any], origin: str) -> None:
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown {origin} key(s) {unknown}; valid keys: {sorted(_FIELDS)}")


def _load_mapping(path_or_text: str | os.PathLike, parse, kind: str) -> dict[str, Any]:
    text = str(path_or_text)
    source = "string"
    if isinstance(path_or_text, Path) or (len(text) < 4096 and "\n" not in text and Path(text).is_file()):
        path = Path(path_or_text)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        values = parse(text)
    except Exception as exc:  # noqa: BLE001 - re-raised with the source named
        raise ConfigError(f"{source}: not valid {kind}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a config must be a mapping, got {type(values).__name__}")
    return values


