"""STFPM training loss on channel-normalised feature pyramids.

Official code (default)::

    L = Σ_l  mean_{b,i,j}  Σ_c (F̂t − F̂s)²,     F̂ = F / max(‖F‖₂ over channels, 1e-12)

Options reproduce the other implementations (``docs/implementation-differences.md``): ``half`` multiplies by ½
(paper, anomalib, HCW, XIA); ``reduction="batch_sum"`` sums the per-image losses over the
batch instead of averaging (anomalib, HCW, XIA: B/2 × the official loss with ``half``);
``layer_reduction="mean"`` averages over layers instead of summing (XIA).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..config import LayerReduction, LossReduction, LossSettings

__all__ = ["LossSettings", "normalized_sq_dist", "stfpm_loss", "per_image_loss", "loss_from_config"]


def normalized_sq_dist(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Squared distance of the channel-normalised features at every position, ``Σ_c (F̂t − F̂s)²``.

    Channel-wise L2 normalisation is ``F.normalize(dim=1)`` (eps 1e-12, torch's default).

    Parameters
    ----------
    teacher, student : torch.Tensor of shape (B, C, h, w)
        Features of one pyramid level (any float dtype; computed in float32).

    Returns
    -------
    torch.Tensor of shape (B, h, w), float32
        Values in [0, 4] (unitless: both vectors have norm 1 or 0).

    Raises
    ------
    ValueError
        If the shapes differ or are not 4-D.
    """
    if teacher.shape != student.shape or teacher.ndim != 4:
        raise ValueError(f"teacher/student features must have the same (B,C,h,w) shape, got "
                         f"{tuple(teacher.shape)} and {tuple(student.shape)}")
    t = F.normalize(teacher.float(), dim=1)
    s = F.normalize(student.float(), dim=1)
    return (t - s).pow(2).sum(dim=1)


def per_image_loss(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor], *,
                   half: bool = False, layer_reduction: LayerReduction = "sum") -> torch.Tensor:
    """Loss of each image: ``[½] Σ_l (or mean_l) mean_{i,j} Σ_c (F̂t − F̂s)²``.

    Parameters
    ----------
    teacher_feats, student_feats : sequence of torch.Tensor of shape (B, C_l, h_l, w_l)
        One tensor per pyramid level, in the same order.
    half : bool, default=False
        Multiply by ½.
    layer_reduction : {"sum", "mean"}, default="sum"
        Sum (official) or average the layer losses.

    Returns
    -------
    torch.Tensor of shape (B,), float32

    Raises
    ------
    ValueError
        An unknown ``layer_reduction``, or different / zero numbers of layers.
    """
    LossSettings(half=half, layer_reduction=layer_reduction)  # checks the choice
    if len(teacher_feats) != len(student_feats) or not teacher_feats:
        raise ValueError(f"need the same non-zero number of teacher and student layers, got "
                         f"{len(teacher_feats)} and {len(student_feats)}")
    total = sum(normalized_sq_dist(t, s).mean(dim=(1, 2)) for t, s in zip(teacher_feats, student_feats))
    if layer_reduction == "mean":
        total = total / len(teacher_feats)
    return 0.5 * total if half else total


def stfpm_loss(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor], *,
               half: bool = False, reduction: LossReduction = "batch_mean", layer_reduction: LayerReduction = "sum",
               return_per_image: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scalar STFPM loss (see the module docstring); defaults are the official code.

    Parameters
    ----------
    teacher_feats, student_feats : sequence of torch.Tensor of shape (B, C_l, h_l, w_l)
        One tensor per pyramid level, in the same order.
    half : bool, default=False
        Multiply by ½ (paper, anomalib, HCW, XIA).
    reduction : {"batch_mean", "batch_sum"}, default="batch_mean"
        Average (official) or sum the per-image losses over the batch.
    layer_reduction : {"sum", "mean"}, default="sum"
        Sum (official) or average the layer losses (XIA).
    return_per_image : bool, default=False
        Also return the :func:`per_image_loss` the scalar reduces (what training averages over an
        epoch, without a second computation).

    Returns
    -------
    torch.Tensor of shape (), float32, or (loss, per_image of shape (B,))

    Raises
    ------
    ValueError
        An unknown reduction, or mismatched layers.
    """
    LossSettings(half=half, reduction=reduction, layer_reduction=layer_reduction)  # checks the choices
    per_image = per_image_loss(teacher_feats, student_feats, half=half, layer_reduction=layer_reduction)
    loss = per_image.mean() if reduction == "batch_mean" else per_image.sum()
    return (loss, per_image) if return_per_image else loss


def loss_from_config(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor], settings: Any, *,
                     return_per_image: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`stfpm_loss` with the knobs of ``settings``.

    Parameters
    ----------
    teacher_feats, student_feats : sequence of torch.Tensor of shape (B, C_l, h_l, w_l)
        One tensor per pyramid level.
    settings : LossSettings, STFPMConfig, mapping or None
        A :class:`~stfpm_lib.config.LossSettings`, an ``STFPMConfig`` (its ``loss_half``,
        ``loss_reduction``, ``loss_layer_reduction``), a mapping of LossSettings fields, or ``None``
        (the official loss).
    return_per_image : bool, default=False
        As in :func:`stfpm_loss`.

    Returns
    -------
    torch.Tensor of shape (), or (loss, per_image of shape (B,))
    """
    st = LossSettings.from_any(settings)
    return stfpm_loss(teacher_feats, student_feats, half=st.half, reduction=st.reduction,
                      layer_reduction=st.layer_reduction, return_per_image=return_per_image)
