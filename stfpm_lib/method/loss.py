"""STFPM training loss on channel-normalised feature pyramids.

Official code (default)::

    L = Σ_l  mean_{b,i,j}  Σ_c (F̂t − F̂s)²,     F̂ = F / max(‖F‖₂ over channels, 1e-12)

Options reproduce the other implementations (reference §9): ``half`` multiplies by ½
(paper, anomalib, HCW, XIA); ``reduction="batch_sum"`` sums the per-image losses over the
batch instead of averaging (anomalib, HCW, XIA: B/2 × the official loss with ``half``);
``layer_reduction="mean"`` averages over layers instead of summing (XIA).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..config import LayerReduction, LossReduction, LossSettings

__all__ = ["LossSettings", "normalized_sq_dist", "stfpm_loss", "per_image_loss", "loss_from_config"]


def normalized_sq_dist(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """``Σ_c (F̂t − F̂s)²`` per position: (B,C,h,w) × 2 -> (B,h,w), computed in float32.

    Channel-wise L2 normalisation is ``F.normalize(dim=1)`` (eps 1e-12, torch's default).
    """
    if teacher.shape != student.shape or teacher.ndim != 4:
        raise ValueError(f"teacher/student features must have the same (B,C,h,w) shape, got "
                         f"{tuple(teacher.shape)} and {tuple(student.shape)}")
    t = F.normalize(teacher.float(), dim=1)
    s = F.normalize(student.float(), dim=1)
    return (t - s).pow(2).sum(dim=1)


def per_image_loss(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor], *,
                   half: bool = False, layer_reduction: LayerReduction = "sum") -> torch.Tensor:
    """Loss of each image, (B,): ``[½] Σ_l (or mean_l) mean_{i,j} Σ_c (F̂t − F̂s)²``."""
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

    ``return_per_image=True`` returns ``(loss, per_image (B,))``: the scalar and the
    :func:`per_image_loss` it reduces (what training averages over an epoch, without a second
    computation).
    """
    LossSettings(half=half, reduction=reduction, layer_reduction=layer_reduction)  # checks the choices
    per_image = per_image_loss(teacher_feats, student_feats, half=half, layer_reduction=layer_reduction)
    loss = per_image.mean() if reduction == "batch_mean" else per_image.sum()
    return (loss, per_image) if return_per_image else loss


def loss_from_config(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor], settings: Any, *,
                     return_per_image: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """:func:`stfpm_loss` with the knobs of ``settings``: a :class:`LossSettings`, an ``STFPMConfig``
    (its ``loss_half``, ``loss_reduction``, ``loss_layer_reduction``) or a mapping of LossSettings fields."""
    st = LossSettings.from_any(settings)
    return stfpm_loss(teacher_feats, student_feats, half=st.half, reduction=st.reduction,
                      layer_reduction=st.layer_reduction, return_per_image=return_per_image)
