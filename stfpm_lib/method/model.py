"""Teacher and student feature pyramids over torchvision ResNets.

A :class:`FeaturePyramid` keeps the ResNet stem (conv1, bn1, relu, maxpool) and the
residual stages up to the deepest requested one; later stages, avgpool and fc are dropped,
so they are neither stored nor run (the official code keeps and runs layer4 for nothing).
Feature maps of a 256² input (resnet18): layer1 64ch@64², layer2 128ch@32²,
layer3 256ch@16², layer4 512ch@8² (×4 channels for the bottleneck backbones).

:func:`build_stfpm` builds the pair under ``torch.manual_seed(cfg.seed)``: first the
teacher (a full torchvision model, default init, then the teacher weights if any), then the
student. This is the order of the official code (``torch.manual_seed(0)``, teacher
``resnet18(pretrained=True)``, student ``resnet18(pretrained=False)``), so the student's
initial tensors follow the same RNG stream. A ``random`` teacher is the first draw of that
stream, so teacher and student differ. By default this happens in a forked RNG (the global
state is untouched); :func:`stfpm_lib.engine.training.fit` passes ``advance_global_rng=True`` so that
its DataLoaders then draw from the global RNG exactly where the official code's do.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..config import BACKBONES, LAYERS, RANDOM_INITS, RandomInit, STFPMConfig
from .weights import TeacherWeights, resolve_teacher_weights, state_dict_sha256

__all__ = ["FeaturePyramid", "STFPM", "build_stfpm", "feature_shapes", "fold_batchnorm", "inference_copy"]

_STEM = ("conv1", "bn1", "relu", "maxpool")


class FeaturePyramid(nn.Module):
    """ResNet truncated after the deepest requested stage.

    Parameters
    ----------
    backbone : {"resnet18", "resnet34", "resnet50", "wide_resnet50_2"}
        torchvision model name.
    layers : sequence of {"layer1", "layer2", "layer3", "layer4"}
        Non-empty; any order (the output is in network order).
    weights : TeacherWeights, optional
        Weights to load; ``None`` or a ``random`` record keeps the torchvision default init drawn
        from the current global RNG.
    frozen : bool, default=False
        No gradients and always in eval mode (the teacher).
    random_init : {"torchvision", "zero_last_bn"}, default="torchvision"
        ``zero_last_bn`` also sets the last BatchNorm γ of every residual block to 0 (torchvision's
        ``zero_init_residual``); weights loaded from ``weights`` replace either init.

    Notes
    -----
    ``forward(x)``: ``x`` of shape (B, 3, H, W) -> list of one (B, C_l, H/2^(l+1), W/2^(l+1)) tensor
    per requested layer, in network order (layer1 first).
    """

    def __init__(self, backbone: str, layers: Sequence[str], weights: TeacherWeights | None = None,
                 *, frozen: bool = False, random_init: RandomInit = "torchvision") -> None:
        super().__init__()
        import torchvision  # heavy (~3 s, pulls torch._dynamo): loaded only when a network is built

        if backbone not in BACKBONES:
            raise ValueError(f"backbone={backbone!r} is not one of {list(BACKBONES)}")
        layers = tuple(layers)
        if not layers or any(name not in LAYERS for name in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"layers={list(layers)} must be distinct names from {list(LAYERS)}")
        self.backbone = backbone
        self.layers = tuple(name for name in LAYERS if name in layers)
        deepest = LAYERS.index(self.layers[-1])
        self.stages = _STEM + LAYERS[: deepest + 1]

        if random_init not in RANDOM_INITS:
            raise ValueError(f"random_init={random_init!r} is not one of {list(RANDOM_INITS)}")
        # default init, consumes the RNG; zero_init_residual zeroes each block's last BN γ afterwards
        full = torchvision.models.get_model(backbone, weights=None, zero_init_residual=random_init == "zero_last_bn")
        if weights is not None and weights.state_dict is not None:
            if weights.backbone != backbone:
                raise ValueError(f"teacher weights are for {weights.backbone}, model is {backbone}")
            result = full.load_state_dict(weights.state_dict, strict=False)  # the fc head may be absent
            missing = [k for k in result.missing_keys if not k.startswith("fc.")]
            if missing or result.unexpected_keys:
                raise ValueError(f"teacher weights {weights.name!r} do not fit {backbone}: missing {missing[:3]}, "
                                 f"unexpected {result.unexpected_keys[:3]}")
        for name in self.stages:
            self.add_module(name, getattr(full, name))
        del full

        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> FeaturePyramid:
        """Set train mode, except that a frozen pyramid always stays in eval mode."""
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The requested stages' outputs for ``x`` of shape (B, 3, H, W): list of (B, C_l, h_l, w_l), layer1 first."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        feats = []
        for name in self.stages:
            x = getattr(self, name)(x)
            if name in self.layers:
                feats.append(x)
        return feats


class STFPM(nn.Module):
    """Frozen teacher and trainable student pyramids of the same architecture.

    Parameters
    ----------
    teacher, student : FeaturePyramid
        Same backbone and layers; the teacher frozen.
    teacher_weights : TeacherWeights, optional
        Where the teacher's weights came from (recorded in checkpoints).

    Notes
    -----
    ``forward(x)`` -> ``(teacher_feats, student_feats)``; teacher features are computed without
    autograd. ``.train()`` never puts the teacher in train mode.
    """

    def __init__(self, teacher: FeaturePyramid, student: FeaturePyramid,
                 teacher_weights: TeacherWeights | None = None) -> None:
        super().__init__()
        if (teacher.backbone, teacher.layers) != (student.backbone, student.layers):
            raise ValueError("teacher and student must have the same backbone and layers")
        self.teacher = teacher
        self.student = student
        self.teacher_weights = teacher_weights

    @property
    def backbone(self) -> str:
        """The torchvision model name of both pyramids."""
        return self.student.backbone

    @property
    def layers(self) -> tuple[str, ...]:
        """The pyramid levels, in network order."""
        return self.student.layers

    def train(self, mode: bool = True) -> STFPM:
        """Set the student's mode; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def teacher_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Teacher pyramid of ``x`` under ``torch.no_grad``.

        Parameters
        ----------
        x : torch.Tensor of shape (B, 3, H, W)

        Returns
        -------
        list of torch.Tensor of shape (B, C_l, h_l, w_l)
        """
        with torch.no_grad():
            return self.teacher(x)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(teacher_feats, student_feats)`` of ``x`` (B, 3, H, W), each a list of (B, C_l, h_l, w_l)."""
        return self.teacher_features(x), self.student(x)

    def teacher_fingerprint(self) -> str:
        """sha256 of the teacher's tensors (see :func:`stfpm_lib.method.weights.state_dict_sha256`)."""
        return state_dict_sha256(self.teacher.state_dict())


def fold_batchnorm(pyramid: FeaturePyramid) -> FeaturePyramid:
    """An inference-only copy of ``pyramid`` with every BatchNorm folded into its convolution.

    In eval mode ``BN(conv(x)) = conv'(x)`` with ``W' = W·γ/√(σ²+ε)`` and ``b' = β − μ·γ/√(σ²+ε)``
    per output channel (running statistics), so the copy computes the same features (to float32
    rounding, ~1e-6 relative) with one pass fewer over every activation. Pairs folded: ``convK``/
    ``bnK`` children of the stem and of every residual block, and ``downsample = Sequential(conv,
    bn)``.

    Parameters
    ----------
    pyramid : FeaturePyramid

    Returns
    -------
    FeaturePyramid
        Frozen (always eval, no gradients); the original is untouched.
    """
    folded = copy.deepcopy(pyramid).eval()
    for module in list(folded.modules()):
        for k in range(1, 4):
            conv, bn = getattr(module, f"conv{k}", None), getattr(module, f"bn{k}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f"conv{k}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{k}", nn.Identity())
        down = getattr(module, "downsample", None)
        if isinstance(down, nn.Sequential) and len(down) == 2 and isinstance(down[0], nn.Conv2d) \
                and isinstance(down[1], nn.BatchNorm2d):
            module.downsample = nn.Sequential(fuse_conv_bn_eval(down[0], down[1]), nn.Identity())
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ValueError(f"fold_batchnorm: BatchNorm layers without a convolution to fold into: {left[:3]}")
    folded.frozen = True
    folded.requires_grad_(False)
    return folded.eval()


def inference_copy(model: STFPM) -> STFPM:
    """An eval-only :class:`STFPM` whose teacher and student are :func:`fold_batchnorm` copies.

    Parameters
    ----------
    model : STFPM

    Returns
    -------
    STFPM
    """
    return STFPM(fold_batchnorm(model.teacher), fold_batchnorm(model.student), model.teacher_weights).eval()


def build_stfpm(cfg: STFPMConfig, weights: TeacherWeights | None = None, *,
                advance_global_rng: bool = False) -> STFPM:
    """Teacher (``cfg.teacher_weights``, resolved unless ``weights`` is given) and a fresh student.

    Deterministic for a given ``cfg.seed``.

    Parameters
    ----------
    cfg : STFPMConfig
        ``backbone``, ``layers``, ``teacher_weights`` and ``seed`` are read.
    weights : TeacherWeights, optional
        Already resolved teacher weights.
    advance_global_rng : bool, default=False
        ``False``: the global torch RNG state is left untouched. ``True``: the global RNG is seeded
        with ``cfg.seed`` and left where building the two full networks left it (the official
        code's state when its training DataLoader first draws).

    Returns
    -------
    STFPM

    Raises
    ------
    WeightsError
        Teacher weights that cannot be resolved.
    """
    if weights is None:
        weights = resolve_teacher_weights(cfg.teacher_weights, cfg.backbone)
    if weights.backbone != cfg.backbone:
        raise ValueError(f"teacher weights are for {weights.backbone}, config asks for {cfg.backbone}")
    if weights.source == "random":
        weights.seed = int(cfg.seed)
    with contextlib.nullcontext() if advance_global_rng else torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.seed))
        teacher = FeaturePyramid(cfg.backbone, cfg.layers, weights, frozen=True, random_init=cfg.random_init)
        student = FeaturePyramid(cfg.backbone, cfg.layers, random_init=cfg.random_init)
    return STFPM(teacher, student, weights)


def feature_shapes(backbone: str, layers: Sequence[str], input_size: int) -> list[tuple[int, int, int]]:
    """Expected ``(C, h, w)`` of each layer for a square input.

    Spatial sides follow the stem (conv stride 2, maxpool stride 2) and stride-2 stages.

    Parameters
    ----------
    backbone : str
        torchvision model name.
    layers : sequence of str
        Pyramid levels (network order is used).
    input_size : int
        Side of the input, pixels.

    Returns
    -------
    list of (int, int, int)
        Channels and feature-map side(s), one tuple per layer in network order.
    """
    def down(n: int) -> int:  # conv k3/k7 s2 p(k//2) and maxpool k3 s2 p1 both give floor((n-1)/2)+1
        return (n - 1) // 2 + 1

    # Bottleneck backbones (resnet50, wide_resnet50_2) output 4x the channels; the "wide"
    # variant widens only the inside of each block.
    width = 1 if backbone in ("resnet18", "resnet34") else 4
    side = down(down(input_size))
    shapes = []
    for i, name in enumerate(LAYERS):
        if i > 0:
            side = down(side)
        if name in layers:
            shapes.append((64 * 2**i * width, side, side))
    return shapes
