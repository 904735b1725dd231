"""Anomaly maps from teacher/student feature pyramids.

Per layer l the map is the squared distance of the channel-normalised features,
``Ωˡ = Σ_c (F̂t − F̂s)²`` (``map_scale="sq_dist"``, official), ``½Ωˡ`` (``half_sq_dist``,
paper/anomalib/HCW) or ``½Ωˡ/(h_l·w_l)`` (``half_sq_dist_per_area``, XIA).

Upsampling (``map_upsample``)
    ``official``: every layer map is resized bilinearly (``align_corners=False``) to a quarter
        of the output size (64×64 for a 256 input), the maps are fused, and the fused map is
        resized bilinearly to the output size. The official code does the last step with
        ``cv2.resize(..., INTER_LINEAR)`` on a float64 copy; for upsampling this is the same
        half-pixel-centred bilinear interpolation as ``F.interpolate(mode="bilinear",
        align_corners=False, antialias=False)``, which is what is used here, **in float64** as
        well (the final map is float64; tested against cv2 to 1e-12). In float32 the result would
        be up to ~7e-7 from the official one.

    ``direct``: every layer map goes straight to the output size, then they are fused.

Fusion (``map_fusion``): ``product`` (starting from ones) or ``sum`` over layers.
Smoothing: optional Gaussian filter of the final map (``smoothing_sigma`` in pixels, kernel
truncated at 4σ and reflect boundary like ``scipy.ndimage.gaussian_filter(mode="reflect")``).
Image score: maximum of the final map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..config import MAP_SCALES, MapScale, MapSettings
from .loss import normalized_sq_dist

__all__ = ["MapSettings", "layer_maps", "fused_map", "final_map", "anomaly_map", "gaussian_blur", "image_scores"]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def layer_maps(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor],
               map_scale: MapScale = "sq_dist") -> list[torch.Tensor]:
    """Per-layer maps at feature resolution.

    Parameters
    ----------
    teacher_feats, student_feats : sequence of torch.Tensor of shape (B, C_l, h_l, w_l)
        Features of each pyramid level, in the same order.
    map_scale : {"sq_dist", "half_sq_dist", "half_sq_dist_per_area"}, default="sq_dist"
        ``‖Δ‖²`` (official), ``½‖Δ‖²`` or ``½‖Δ‖²/(h_l·w_l)`` (XIA), Δ the normalised difference.

    Returns
    -------
    list of torch.Tensor of shape (B, h_l, w_l), float32

    Raises
    ------
    ValueError
        An unknown ``map_scale``, or different / zero numbers of layers.
    """
    if map_scale not in MAP_SCALES:
        raise ValueError(f"map_scale={map_scale!r} is not one of {list(MAP_SCALES)}")
    if len(teacher_feats) != len(student_feats) or not teacher_feats:
        raise ValueError("need the same non-zero number of teacher and student layers")
    maps = []
    for t, s in zip(teacher_feats, student_feats):
        d = normalized_sq_dist(t, s)
        if map_scale != "sq_dist":
            d = 0.5 * d
        if map_scale == "half_sq_dist_per_area":
            d = d / (d.shape[-2] * d.shape[-1])
        maps.append(d)
    return maps


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,h,w) -> (B,H,W) bilinear, align_corners=False, no antialias (identity if same size)."""
    if tuple(maps.shape[-2:]) == size:
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


def _fuse(maps: list[torch.Tensor], fusion: str) -> torch.Tensor:
    out = torch.ones_like(maps[0]) if fusion == "product" else torch.zeros_like(maps[0])
    for m in maps:
        out = out * m if fusion == "product" else out + m
    return out


def fused_map(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor],
              cfg_or_kwargs: Any, output_size: int | Sequence[int]) -> torch.Tensor:
    """The fused map before the last resize and smoothing.

    ``official`` upsampling: at a quarter of ``output_size`` (64×64 for 256, the quantity whose mean
    the official code uses for model selection). ``direct``: at ``output_size``.

    Parameters
    ----------
    teacher_feats, student_feats : sequence of torch.Tensor of shape (B, C_l, h_l, w_l)
        Features of each pyramid level, in the same order.
    cfg_or_kwargs : STFPMConfig, MapSettings, mapping or None
        The map knobs: an ``STFPMConfig``, a :class:`~stfpm_lib.config.MapSettings`, a dict with any
        of ``map_scale``, ``map_upsample``, ``map_fusion``, ``smoothing_sigma``, or ``None`` (official).
    output_size : int or (int, int)
        ``(H, W)`` of the final map, pixels (an int: square).

    Returns
    -------
    torch.Tensor of shape (B, h, w), float32
        ``(h, w) = (H // 4, W // 4)`` (official) or ``(H, W)`` (direct).
    """
    st = MapSettings.from_any(cfg_or_kwargs)
    out_hw = _size2(output_size)
    size = (max(out_hw[0] // 4, 1), max(out_hw[1] // 4, 1)) if st.map_upsample == "official" else out_hw
    maps = [_resize(m, size) for m in layer_maps(teacher_feats, student_feats, st.map_scale)]
    return _fuse(maps, st.map_fusion)


def final_map(fused: torch.Tensor, cfg_or_kwargs: Any, output_size: int | Sequence[int]) -> torch.Tensor:
    """The final map from a fused one: resized to ``output_size``, then smoothed.

    With ``official`` upsampling the resize (and the smoothing) run in float64, as the official code's
    ``cv2.resize`` of a float64 copy; with ``direct`` in the dtype of ``fused``.

    Parameters
    ----------
    fused : torch.Tensor of shape (B, h, w)
        As :func:`fused_map` returns (or a stored copy of it).
    cfg_or_kwargs : STFPMConfig, MapSettings, mapping or None
        The map knobs, as in :func:`fused_map`.
    output_size : int or (int, int)
        ``(H, W)`` of the final map, pixels.

    Returns
    -------
    torch.Tensor of shape (B, H, W)
        float64 with ``official`` upsampling, else the dtype of ``fused`` (float32).
    """
    st = MapSettings.from_any(cfg_or_kwargs)
    if st.map_upsample == "official":
        fused = fused.double()
    out = _resize(fused, _size2(output_size))
    if st.smoothing_sigma > 0:
        out = gaussian_blur(out, st.smoothing_sigma)
    return out


def anomaly_map(teacher_feats: Sequence[torch.Tensor], student_feats: Sequence[torch.Tensor],
                cfg_or_kwargs: Any, output_size: int | Sequence[int]) -> torch.Tensor:
    """Final anomaly map: layer maps, upsampled, fused, resized and smoothed (module docstring).

    Parameters
    ----------
    teacher_feats, student_feats, cfg_or_kwargs, output_size
        As in :func:`fused_map`: features (B, C_l, h_l, w_l) of each level, the map knobs, and
        ``(H, W)`` of this map, pixels.

    Returns
    -------
    torch.Tensor of shape (B, H, W)
        float64 with ``official`` upsampling (:func:`final_map`), else float32.
    """
    st = MapSettings.from_any(cfg_or_kwargs)
    return final_map(fused_map(teacher_feats, student_feats, st, output_size), st, output_size)


def _gaussian_kernel(sigma: float, truncate: float = 4.0, *, dtype=torch.float64) -> torch.Tensor:
    radius = int(truncate * float(sigma) + 0.5)  # scipy's radius rule
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def _reflect_index(n: int, radius: int, device) -> torch.Tensor:
    """Indices of a length-n axis padded by ``radius`` with scipy ``reflect`` (d c b a | a b c d | d c b a)."""
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def gaussian_blur(maps: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian smoothing of maps, separable, reflect boundary.

    Matches ``scipy.ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=4.0)`` applied to each
    map (kernel radius ``int(truncate·σ + 0.5)``; works for radii beyond the map size).

    Parameters
    ----------
    maps : torch.Tensor of shape (B, H, W) or (H, W)
    sigma : float
        Standard deviation, pixels (<= 0: ``maps`` unchanged).
    truncate : float, default=4.0
        Kernel radius in units of ``sigma``.

    Returns
    -------
    torch.Tensor of the shape of ``maps``

    Raises
    ------
    ValueError
        If ``maps`` is neither 2-D nor 3-D.
    """
    if sigma <= 0:
        return maps
    squeeze = maps.ndim == 2
    x = maps.unsqueeze(0) if squeeze else maps
    if x.ndim != 3:
        raise ValueError(f"expected maps of shape (B,H,W) or (H,W), got {tuple(maps.shape)}")
    kernel = _gaussian_kernel(sigma, truncate).to(device=x.device, dtype=x.dtype)
    radius = (kernel.numel() - 1) // 2
    B, H, W = x.shape
    x = x.index_select(1, _reflect_index(H, radius, x.device))
    x = F.conv2d(x.unsqueeze(1), kernel.view(1, 1, -1, 1)).squeeze(1)
    x = x.index_select(2, _reflect_index(W, radius, x.device))
    x = F.conv2d(x.unsqueeze(1), kernel.view(1, 1, 1, -1)).squeeze(1)
    return x.squeeze(0) if squeeze else x


def image_scores(maps: torch.Tensor) -> torch.Tensor:
    """Image-level scores: the maximum of each map.

    Parameters
    ----------
    maps : torch.Tensor of shape (B, H, W)

    Returns
    -------
    torch.Tensor of shape (B,)

    Raises
    ------
    ValueError
        If ``maps`` is not 3-D.
    """
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape (B,H,W), got {tuple(maps.shape)}")
    return maps.flatten(1).amax(dim=1)
