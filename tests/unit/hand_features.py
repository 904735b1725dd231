"""Hand-built teacher/student features shared by test_loss and test_anomaly_map (arithmetic in the docstrings)."""

from __future__ import annotations

import torch


def feats_a():
    """Layer A, 1x2x1x2 (B, C, h, w).

    position 0: t = (3, 4) -> t^ = (0.6, 0.8); s = (0, 2) -> s^ = (0, 1)
                diff = (0.6, -0.2) -> squared norm 0.36 + 0.04 = 0.40
    position 1: t = (1, 0) -> (1, 0);          s = (0, 5) -> (0, 1)
                diff = (1, -1) -> 1 + 1 = 2.00
    mean over positions = (0.40 + 2.00) / 2 = 1.20
    """
    t = torch.tensor([[[[3.0, 1.0]], [[4.0, 0.0]]]])
    s = torch.tensor([[[[0.0, 0.0]], [[2.0, 5.0]]]])
    return t, s


def feats_b():
    """Layer B, 1x2x1x1: t = (1, 1) -> (1/√2, 1/√2); s = (-1, -1) -> (-1/√2, -1/√2)

    diff = (√2, √2) -> 2 + 2 = 4.00 (opposite unit vectors: the maximum, 2(1 - cos) = 4).
    """
    return torch.tensor([[[[1.0]], [[1.0]]]]), torch.tensor([[[[-1.0]], [[-1.0]]]])
