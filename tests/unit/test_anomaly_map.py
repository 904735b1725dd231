"""stfpm_lib.method.anomaly_map on hand-built tensors, with the arithmetic written out."""

from __future__ import annotations

import cv2  # dev dependency (pyproject [dev]): the official code's final resize, the reference
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hand_features import feats_a, feats_b  # tests/unit/ is on sys.path (pytest rootdir-relative import)

from stfpm_lib.config import STFPMConfig
from stfpm_lib.method.anomaly_map import (
    MapSettings,
    anomaly_map,
    final_map,
    fused_map,
    gaussian_blur,
    image_scores,
    layer_maps,
)
from stfpm_lib.method.loss import stfpm_loss


def test_layer_map_scales_by_hand():
    ta, sa = feats_a()
    tb, sb = feats_b()
    sq = layer_maps([ta, tb], [sa, sb], "sq_dist")
    torch.testing.assert_close(sq[0], torch.tensor([[[0.40, 2.00]]]))
    torch.testing.assert_close(sq[1], torch.tensor([[[4.00]]]))
    half = layer_maps([ta, tb], [sa, sb], "half_sq_dist")
    torch.testing.assert_close(half[0], torch.tensor([[[0.20, 1.00]]]))
    # per area: layer A has h*w = 2 -> [0.10, 0.50]; layer B has h*w = 1 -> 2.00
    area = layer_maps([ta, tb], [sa, sb], "half_sq_dist_per_area")
    torch.testing.assert_close(area[0], torch.tensor([[[0.10, 0.50]]]))
    torch.testing.assert_close(area[1], torch.tensor([[[2.00]]]))


def test_direct_upsampling_product_and_sum_by_hand():
    """Layer A [0.4, 2.0] (1x2) to 2x4, bilinear align_corners=False.

    Source x = (x_out + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]):
    0.4, 0.75*0.4 + 0.25*2 = 0.8, 0.25*0.4 + 0.75*2 = 1.6, 2.0. Rows are copies.
    Layer B (1x1, value 4) is constant 4.
    product: [1.6, 3.2, 6.4, 8.0]; sum: [4.4, 4.8, 5.6, 6.0]
    """
    ta, sa = feats_a()
    tb, sb = feats_b()
    T, S = [ta, tb], [sa, sb]
    m = anomaly_map(T, S, {"map_upsample": "direct"}, (2, 4))
    torch.testing.assert_close(m, torch.tensor([[1.6, 3.2, 6.4, 8.0]] * 2).unsqueeze(0))
    m = anomaly_map(T, S, {"map_upsample": "direct", "map_fusion": "sum"}, (2, 4))
    torch.testing.assert_close(m, torch.tensor([[4.4, 4.8, 5.6, 6.0]] * 2).unsqueeze(0))
    assert m.dtype == torch.float32 and m.shape == (1, 2, 4)


def test_official_upsampling_by_hand():
    """Output 4x8 -> intermediate (4/4, 8/4) = 1x2: layer A as is, layer B -> [4, 4].

    product at 1x2: [1.6, 8.0]. Then 1x2 -> 4x8 (factor 4 in x): source x = (x+0.5)/4 - 0.5
    = -0.375, -0.125, 0.125, 0.375, 0.625, 0.875, 1.125, 1.375
    -> 1.6, 1.6, 1.6 + 0.125*6.4 = 2.4, 1.6 + 0.375*6.4 = 4.0, 5.6, 7.2, 8.0, 8.0.
    """
    ta, sa = feats_a()
    tb, sb = feats_b()
    T, S = [ta, tb], [sa, sb]
    torch.testing.assert_close(fused_map(T, S, None, (4, 8)), torch.tensor([[[1.6, 8.0]]]))
    m = anomaly_map(T, S, STFPMConfig(), (4, 8))
    assert m.dtype == torch.float64  # the final resize runs in float64, as the official code's cv2 call
    row = torch.tensor([1.6, 1.6, 2.4, 4.0, 5.6, 7.2, 8.0, 8.0], dtype=torch.float64)
    torch.testing.assert_close(m, row.expand(4, 8).unsqueeze(0), rtol=1e-6, atol=0)  # 1.6 = float32(1.6) in fused
    torch.testing.assert_close(image_scores(m), torch.tensor([8.0], dtype=torch.float64))


def test_official_upsampling_matches_bilinear_reference():
    """Random maps: the fused quarter-size map, resized by a numpy half-pixel bilinear written here."""
    g = torch.Generator().manual_seed(0)
    T = [torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 16, 8, 8, generator=g)]
    S = [torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 16, 8, 8, generator=g)]
    small = fused_map(T, S, None, 64).numpy()
    assert small.shape == (2, 16, 16)

    def bilinear(img: np.ndarray, out: int) -> np.ndarray:  # cv2 INTER_LINEAR / half-pixel centres
        n = img.shape[0]
        src = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        w = src - i0
        rows = img[i0] * (1 - w)[:, None] + img[i1] * w[:, None]
        return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]

    full = anomaly_map(T, S, None, 64).numpy()
    for b in range(2):
        np.testing.assert_allclose(full[b], bilinear(small[b], 64), rtol=1e-5, atol=1e-6)


def test_official_final_resize_matches_cv2_in_float64():
    """The official code resizes the fused 64x64 map to 256x256 with cv2.resize(INTER_LINEAR) on a float64
    copy; final_map does the same in float64 (torch's bilinear, half-pixel centres, no antialias). Both
    weight the same two neighbours with the same fractions, so they agree to rounding: 1e-12 on maps in
    [0, 5] (observed: 0 or a few ulps). The float32 resize it replaces is ~1e-7 away."""
    g = torch.Generator().manual_seed(7)
    for side, out in ((64, 256), (16, 64), (32, 128), (56, 224)):
        fused = (torch.rand(3, side, side, generator=g) ** 3 * 5).float()  # float32, as the fused map is
        ours = final_map(fused, None, out)
        assert ours.dtype == torch.float64 and ours.shape == (3, out, out)
        for b in range(3):
            ref = cv2.resize(fused[b].double().numpy(), (out, out), interpolation=cv2.INTER_LINEAR)
            assert np.abs(ours[b].numpy() - ref).max() <= 1e-12, (side, out, b)
    f32 = final_map(fused, {"map_upsample": "direct"}, 224)  # the float32 path (other presets)
    assert f32.dtype == torch.float32
    assert np.abs(f32.double().numpy() - ours.numpy()).max() > 1e-9  # float32 rounding, what float64 removes


def test_official_anomaly_map_is_final_map_of_fused_map():
    g = torch.Generator().manual_seed(3)
    T = [torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 16, 8, 8, generator=g)]
    S = [torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 16, 8, 8, generator=g)]
    for settings in (None, {"smoothing_sigma": 1.5}, {"map_upsample": "direct"}):
        ref = final_map(fused_map(T, S, settings, 64), settings, 64)
        torch.testing.assert_close(anomaly_map(T, S, settings, 64), ref, rtol=0, atol=0)  # the same code path


def test_map_settings_validation():
    with pytest.raises(ValueError, match="unknown anomaly-map setting"):
        MapSettings.from_any({"map_scal": "sq_dist"})
    with pytest.raises(ValueError, match="map_fusion"):
        MapSettings.from_any({"map_fusion": "mean"})
    assert MapSettings.from_any(STFPMConfig.from_preset("xia")) == MapSettings(
        "half_sq_dist_per_area", "direct", "sum", 4.0)


@pytest.mark.parametrize("shape,sigma", [((1, 37, 50), 4.0), ((2, 5, 7), 3.0), ((1, 64, 64), 0.7), ((12, 9), 1.5)])
def test_gaussian_blur_matches_scipy(shape, sigma):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    ours = gaussian_blur(x, sigma).numpy()
    maps = x.numpy().astype(np.float64)
    ref = ndi.gaussian_filter(maps, sigma, mode="reflect", truncate=4.0) if x.ndim == 2 else np.stack(
        [ndi.gaussian_filter(m, sigma, mode="reflect", truncate=4.0) for m in maps])
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_smoothing_is_applied_last():
    ta, sa = feats_a()
    tb, sb = feats_b()
    plain = anomaly_map([ta, tb], [sa, sb], {"map_upsample": "direct"}, (6, 8))
    smooth = anomaly_map([ta, tb], [sa, sb], {"map_upsample": "direct", "smoothing_sigma": 2.0}, (6, 8))
    ref = ndi.gaussian_filter(plain[0].double().numpy(), 2.0, mode="reflect")
    np.testing.assert_allclose(smooth[0].numpy(), ref, atol=1e-5)


def test_mean_of_native_layer_map_equals_layer_loss():
    g = torch.Generator().manual_seed(2)
    t, s = torch.randn(3, 5, 4, 4, generator=g), torch.randn(3, 5, 4, 4, generator=g)
    direct = anomaly_map([t], [s], {"map_upsample": "direct"}, 4)  # no resize at the native size
    torch.testing.assert_close(direct.mean(), stfpm_loss([t], [s]))


def test_image_scores_is_max():
    m = torch.zeros(3, 4, 5)
    m[0, 1, 2], m[1, 3, 4], m[2] = 7.0, -1.0, -2.0
    torch.testing.assert_close(image_scores(m), torch.tensor([7.0, 0.0, -2.0]))
    with pytest.raises(ValueError):
        image_scores(torch.zeros(4, 5))
