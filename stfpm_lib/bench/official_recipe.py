"""The official code's training and inference loop, rewritten as the baseline of the speed benchmark.

The same arithmetic as the official STFPM ``main.py`` (torchvision ResNet-18 up to ``layer3``, the
L2-normalised feature distance, SGD, per-image maps resized with bilinear interpolation) written
as plain torch, so that :mod:`stfpm_lib.bench.speed_bench` can time it beside the project's own
training and inference on the same images. Nothing of the library is used here: its memory figure
holds only what the official code loads.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "OfficialDataset", "official_pyramid", "official_train_epoch", "official_infer"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ============================================================================ official-equivalent loop
class _OfficialPyramid(nn.Module):
    """``ResNet18_MS3`` of the official code: ``children()[:-2]`` (layer4 kept and run);
    returns the outputs of Sequential indices 4, 5, 6 (layer1..layer3)."""

    def __init__(self, backbone: str = "resnet18") -> None:
        super().__init__()
        import torchvision  # lazy: torchvision is heavy, see above

        net = torchvision.models.get_model(backbone, weights=None)
        self.model = nn.Sequential(*list(net.children())[:-2])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        res = []
        for name, module in self.model._modules.items():
            x = module(x)
            if name in ("4", "5", "6"):
                res.append(x)
        return res


def official_pyramid(backbone: str = "resnet18") -> nn.Module:
    """The official feature extractor (layer4 included), default torchvision init.

    Parameters
    ----------
    backbone : str, default="resnet18"

    Returns
    -------
    torch.nn.Module
        ``forward(x)`` of (B, 3, H, W) -> the layer1..layer3 outputs.
    """
    return _OfficialPyramid(backbone)


class OfficialDataset(torch.utils.data.Dataset):
    """Images held in memory as PIL, transformed on every access (official ``MVTecDataset``).

    Parameters
    ----------
    arrays : list of ndarray of shape (H, W, 3), uint8
        The images.
    size : int
        Side of the square network input, pixels.
    """

    def __init__(self, arrays: list[np.ndarray], size: int) -> None:
        from PIL import Image  # lazy: the official variant's process only (torchvision is heavy)
        from torchvision import transforms

        self.images = [Image.fromarray(a) for a in arrays]
        self.transform = transforms.Compose([transforms.Resize([size, size]), transforms.ToTensor(),
                                             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.images[i])


def official_train_epoch(teacher: nn.Module, student: nn.Module, optimizer: torch.optim.Optimizer, loader,
                         device: torch.device) -> float:
    """One epoch of the official training loop.

    Parameters
    ----------
    teacher, student : torch.nn.Module
        From :func:`official_pyramid`.
    optimizer : torch.optim.Optimizer
    loader : iterable of torch.Tensor of shape (B, 3, S, S)
    device : torch.device

    Returns
    -------
    float
        The mean batch loss.
    """
    teacher.eval()
    student.train()
    losses = []
    for batch in loader:
        x = batch.to(device)
        with torch.no_grad():
            t_feat = teacher(x)
        s_feat = student(x)
        loss = 0
        for i in range(len(t_feat)):
            t = F.normalize(t_feat[i], dim=1)
            s = F.normalize(s_feat[i], dim=1)
            loss += torch.sum((t - s) ** 2, 1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def official_infer(teacher: nn.Module, student: nn.Module, loader, device: torch.device,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
    """Official test loop (batch 1, fp32).

    Parameters
    ----------
    teacher, student : torch.nn.Module
    loader : iterable of torch.Tensor of shape (1, 3, S, S)
    device : torch.device
    size : int
        Side of the maps, pixels.

    Returns
    -------
    (ndarray of shape (N, size, size) float32, ndarray of shape (N,))
        Maps and scores (their maxima).
    """
    teacher.eval()
    student.eval()
    maps = []
    for batch in loader:
        x = batch.to(device)
        with torch.no_grad():
            t_feat, s_feat = teacher(x), student(x)
        score_map = 1.0
        for j in range(len(t_feat)):
            t = F.normalize(t_feat[j], dim=1)
            s = F.normalize(s_feat[j], dim=1)
            sm = torch.sum((t - s) ** 2, 1, keepdim=True)
            sm = F.interpolate(sm, size=(size // 4, size // 4), mode="bilinear", align_corners=False)
            score_map = score_map * sm
        small = score_map.squeeze().cpu().numpy()
        # cv2.resize(..., INTER_LINEAR) upsampling == bilinear, align_corners=False
        full = F.interpolate(torch.from_numpy(small)[None, None], size=(size, size), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
        maps.append(full)
    out = np.stack(maps)
    return out, out.max(axis=(1, 2))


