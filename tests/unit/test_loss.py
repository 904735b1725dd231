"""stfpm_lib.method.loss on hand-built tensors, with the arithmetic written out."""

from __future__ import annotations

import pytest
import torch
from hand_features import feats_a, feats_b  # tests/unit/ is on sys.path (pytest rootdir-relative import)

from stfpm_lib.config import STFPMConfig
from stfpm_lib.method.loss import loss_from_config, normalized_sq_dist, per_image_loss, stfpm_loss


def test_normalized_sq_dist_by_hand():
    t, s = feats_a()
    d = normalized_sq_dist(t, s)
    assert d.shape == (1, 1, 2)
    torch.testing.assert_close(d, torch.tensor([[[0.40, 2.00]]]))
    # A zero feature normalises to zero (eps 1e-12): t^ = 0, s^ = (1, 0) -> 1.
    z = normalized_sq_dist(torch.zeros(1, 2, 1, 1), torch.tensor([[[[7.0]], [[0.0]]]]))
    torch.testing.assert_close(z, torch.tensor([[[1.0]]]))


def test_loss_official_and_variants_by_hand():
    ta, sa = feats_a()
    tb, sb = feats_b()
    T, S = [ta, tb], [sa, sb]
    # official: layer A 1.20 + layer B 4.00 = 5.20
    torch.testing.assert_close(stfpm_loss(T, S), torch.tensor(5.20))
    # half: 2.60; layer mean: 5.20 / 2 = 2.60; half and mean: 1.30
    torch.testing.assert_close(stfpm_loss(T, S, half=True), torch.tensor(2.60))
    torch.testing.assert_close(stfpm_loss(T, S, layer_reduction="mean"), torch.tensor(2.60))
    torch.testing.assert_close(stfpm_loss(T, S, half=True, layer_reduction="mean"), torch.tensor(1.30))


def test_loss_batch_reduction_by_hand():
    ta, sa = feats_a()
    # Second image: student equals teacher (up to scale, which normalisation removes) -> loss 0.
    t = torch.cat([ta, 2 * ta])
    s = torch.cat([sa, ta])
    # per image: [1.20, 0]; batch_mean = 0.60; batch_sum = 1.20; half + batch_sum (anomalib) = 0.60
    torch.testing.assert_close(per_image_loss([t], [s]), torch.tensor([1.20, 0.0]))
    torch.testing.assert_close(stfpm_loss([t], [s]), torch.tensor(0.60))
    torch.testing.assert_close(stfpm_loss([t], [s], reduction="batch_sum"), torch.tensor(1.20))
    torch.testing.assert_close(stfpm_loss([t], [s], half=True, reduction="batch_sum"), torch.tensor(0.60))
    cfg = STFPMConfig.from_preset("anomalib")
    torch.testing.assert_close(loss_from_config([t], [s], cfg), torch.tensor(0.60))
    cfg = STFPMConfig.from_preset("xia")  # half, batch_sum, mean over 1 layer
    torch.testing.assert_close(loss_from_config([t], [s], cfg), torch.tensor(0.60))
    loss, per_image = stfpm_loss([t], [s], reduction="batch_sum", return_per_image=True)
    torch.testing.assert_close(loss, torch.tensor(1.20))
    torch.testing.assert_close(per_image, torch.tensor([1.20, 0.0]))
    loss, per_image = loss_from_config([t], [s], cfg, return_per_image=True)
    torch.testing.assert_close(loss, torch.tensor(0.60))
    torch.testing.assert_close(per_image, torch.tensor([0.60, 0.0]))


def test_loss_reads_only_its_narrow_settings():
    """loss_from_config takes a LossSettings (what STFPMConfig.loss_settings builds), a config or a mapping."""
    from stfpm_lib.method.loss import LossSettings

    ta, sa = feats_a()
    t, s = torch.cat([ta, 2 * ta]), torch.cat([sa, ta])  # per image [1.20, 0] as above
    settings = STFPMConfig.from_preset("anomalib").loss_settings()
    assert settings == LossSettings(half=True, reduction="batch_sum", layer_reduction="sum")
    torch.testing.assert_close(loss_from_config([t], [s], settings), torch.tensor(0.60))
    torch.testing.assert_close(loss_from_config([t], [s], {"reduction": "batch_sum"}), torch.tensor(1.20))
    torch.testing.assert_close(loss_from_config([t], [s], None), torch.tensor(0.60))
    with pytest.raises(ValueError, match=r"unknown loss setting\(s\) \['loss_half'\]"):
        LossSettings.from_any({"loss_half": True})
    with pytest.raises(ValueError, match="layer_reduction='max' is not one of"):
        LossSettings(layer_reduction="max")


def test_train_step_reduces_the_batch_with_stfpm_loss():
    """Training uses the tested loss function: its loss is stfpm_loss of the same features, and an
    unknown batch reduction (bypassing the config's own check) is refused by it, not summed."""
    from stfpm_lib.engine.training import train_step
    from stfpm_lib.method.model import build_stfpm

    torch.manual_seed(0)
    cfg = STFPMConfig(teacher_weights="random", backbone="resnet18", image_size=32, layers=("layer1",),
                      loss_reduction="batch_sum", loss_half=True, device="cpu")
    model = build_stfpm(cfg)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = stfpm_loss(model.teacher_features(x), model.student(x), half=True, reduction="batch_sum")
        expected_per_image = per_image_loss(model.teacher_features(x), model.student(x), half=True)
    optimizer = torch.optim.SGD(model.student.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss, per_img = train_step(model, optimizer, scaler, x, cfg, torch.device("cpu"))  # lr 0: student unchanged
    torch.testing.assert_close(per_img, expected_per_image, rtol=0, atol=0)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    bad = STFPMConfig.__new__(STFPMConfig)
    bad.__dict__.update({**cfg.__dict__, "loss_reduction": "mean"})
    with pytest.raises(ValueError, match="reduction='mean' is not one of"):
        train_step(model, optimizer, scaler, x, bad, torch.device("cpu"))


def test_loss_rejects_bad_arguments():
    ta, sa = feats_a()
    with pytest.raises(ValueError, match="reduction"):
        stfpm_loss([ta], [sa], reduction="mean")
    with pytest.raises(ValueError, match="layer_reduction"):
        stfpm_loss([ta], [sa], layer_reduction="max")
    with pytest.raises(ValueError, match="shape"):
        stfpm_loss([ta], [sa[..., :1]])


def test_loss_gradient_reaches_the_student():
    ta, sa = feats_a()
    sa = sa.clone().requires_grad_(True)
    loss = stfpm_loss([ta], [sa])
    loss.backward()
    assert sa.grad is not None and sa.grad.abs().sum() > 0
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        assert stfpm_loss([ta], [sa - 1e-3 * sa.grad]) < loss
