"""Each variant of the committed ablation studies changes what it claims, through the core's config.

The factors study (``studies/factors.yaml``) changes ONE field of the official config per variant; for
every such field a check below shows the effect on the quantity it names (written out here, not read
from the code under test), so a factor that silently did nothing would fail. Every field the study
files vary must have a check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from PIL import Image

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import ImageDataset, split_train_val
from stfpm_lib.data.transforms import read_mask_uint8
from stfpm_lib.engine.training import LEAKAGE_SELECTIONS, history_columns
from stfpm_lib.method.anomaly_map import anomaly_map, layer_maps
from stfpm_lib.method.loss import loss_from_config
from stfpm_lib.method.model import build_stfpm
from stfpm_lib.runner.study import load_study

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = STFPMConfig()
GEN = torch.Generator().manual_seed(0)
# two pyramid levels of a batch of 2: (B, C, h, w) = (2, 8, 8, 8) and (2, 16, 4, 4)
T = [torch.randn(2, 8, 8, 8, generator=GEN), torch.randn(2, 16, 4, 4, generator=GEN)]
S = [torch.randn(2, 8, 8, 8, generator=GEN), torch.randn(2, 16, 4, 4, generator=GEN)]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def _sq(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """‖t̂ − ŝ‖² per position, (B, h, w), written out."""
    return ((_unit(t) - _unit(s)) ** 2).sum(dim=1)


def _official_loss() -> float:
    return sum(float(_sq(t, s).mean(dim=(1, 2)).mean()) for t, s in zip(T, S))  # Σ_l batch-mean of position-mean


# ----------------------------------------------------------------------------- one check per field
def check_crop_size(cfg: STFPMConfig, tmp_path: Path) -> None:
    Image.fromarray(np.full((300, 280, 3), 128, np.uint8)).save(tmp_path / "img.png")
    item = ImageDataset([tmp_path / "img.png"], cfg, cache=False)[0]
    assert item["image"].shape == (3, cfg.crop_size, cfg.crop_size) == (3, 224, 224)
    model = build_stfpm(cfg.replace(teacher_weights="random", layers=("layer1",)))
    with torch.no_grad():
        t, s = model(item["image"][None])
    assert anomaly_map(t, s, cfg, cfg.input_size).shape == (1, 224, 224)  # 224² maps


def check_loss_half(cfg: STFPMConfig, tmp_path: Path) -> None:
    assert float(loss_from_config(T, S, cfg)) == pytest.approx(0.5 * _official_loss(), rel=1e-5)


def check_loss_reduction(cfg: STFPMConfig, tmp_path: Path) -> None:  # batch_sum: B × the batch mean
    assert float(loss_from_config(T, S, cfg)) == pytest.approx(2 * _official_loss(), rel=1e-5)


def check_loss_layer_reduction(cfg: STFPMConfig, tmp_path: Path) -> None:  # mean over the 2 layers
    assert float(loss_from_config(T, S, cfg)) == pytest.approx(_official_loss() / 2, rel=1e-5)


def check_map_scale(cfg: STFPMConfig, tmp_path: Path) -> None:
    want = {"half_sq_dist": [0.5 * _sq(t, s) for t, s in zip(T, S)],
            "half_sq_dist_per_area": [0.5 * _sq(t, s) / (t.shape[2] * t.shape[3]) for t, s in zip(T, S)]}
    for got, ref in zip(layer_maps(T, S, cfg.map_scale), want[cfg.map_scale]):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)


def _direct(t: torch.Tensor, s: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(_sq(t, s)[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def check_map_upsample(cfg: STFPMConfig, tmp_path: Path) -> None:  # direct: each layer straight to 32², product
    ref = _direct(T[0], S[0], 32) * _direct(T[1], S[1], 32)
    torch.testing.assert_close(anomaly_map(T, S, cfg, 32), ref, rtol=1e-5, atol=1e-6)
    official = anomaly_map(T, S, OFFICIAL, 32)
    assert official.dtype == torch.float64 and anomaly_map(T, S, cfg, 32).dtype == torch.float32
    assert not torch.allclose(official.float(), ref, rtol=1e-3)  # the official path differs


def check_map_fusion(cfg: STFPMConfig, tmp_path: Path) -> None:  # sum fusion = the sum of the layer maps
    direct = cfg.replace(map_upsample="direct")
    ref = _direct(T[0], S[0], 32) + _direct(T[1], S[1], 32)
    torch.testing.assert_close(anomaly_map(T, S, direct, 32), ref, rtol=1e-5, atol=1e-6)


def check_smoothing_sigma(cfg: STFPMConfig, tmp_path: Path) -> None:  # σ=4 Gaussian on the final map
    plain = anomaly_map(T, S, OFFICIAL, 64)[0].double().numpy()
    ref = ndi.gaussian_filter(plain, cfg.smoothing_sigma, mode="reflect", truncate=4.0)
    smoothed = anomaly_map(T, S, cfg, 64)[0].numpy()
    assert smoothed.dtype == np.float64  # official upsampling: resize and smoothing in float64, like scipy here
    np.testing.assert_allclose(smoothed, ref, rtol=1e-9, atol=1e-12)  # float64 sums in other orders


def check_mask_rule(cfg: STFPMConfig, tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:31] = 255  # an 11-pixel-wide box at 64²: its edges fall between 32² pixels
    Image.fromarray(mask).save(tmp_path / "mask.png")
    gt0 = read_mask_uint8(tmp_path / "mask.png", (64, 64), OFFICIAL.replace(image_size=32))
    other = read_mask_uint8(tmp_path / "mask.png", (64, 64), cfg.replace(image_size=32))
    ref = mask[1::2, 1::2] > 0  # nearest, halving: output pixel i samples input pixel 2i + 1 (its centre)
    if cfg.mask_rule == "eq1":  # only fully defective pixels: a strict subset of gt0 (any value > 0)
        assert other.sum() < gt0.sum() and not (other.astype(bool) & ~gt0.astype(bool)).any()
    else:
        np.testing.assert_array_equal(other.astype(bool), ref)
        assert other.sum() < gt0.sum()


def check_split(cfg: STFPMConfig, tmp_path: Path) -> None:
    paths = [Path(f"good/{i:03d}.png") for i in range(20)]
    seeded, random = split_train_val(paths, OFFICIAL)[1], split_train_val(paths, cfg)[1]
    assert len(random) == len(seeded) == 4 and sorted(random) != sorted(seeded)


def check_selection(cfg: STFPMConfig, tmp_path: Path) -> None:
    columns = history_columns(cfg.selection)
    if cfg.selection in LEAKAGE_SELECTIONS:  # reads the test set, labelled (the training test checks the rest)
        assert "test_pixel_auroc" in columns
    else:
        assert cfg.selection in ("last", "val_loss") and "test_pixel_auroc" not in columns


def check_random_init(cfg: STFPMConfig, tmp_path: Path) -> None:
    model = build_stfpm(cfg.replace(teacher_weights="random", layers=("layer1",)))
    assert torch.equal(model.student.layer1[0].bn2.weight, torch.zeros(64))


def check_weight_decay(cfg: STFPMConfig, tmp_path: Path) -> None:
    assert cfg.weight_decay == pytest.approx(1e-3) != OFFICIAL.weight_decay


def check_epochs(cfg: STFPMConfig, tmp_path: Path) -> None:
    assert cfg.epochs == 2 * OFFICIAL.epochs == 200


CHECKS = {name.removeprefix("check_"): fn for name, fn in globals().items() if name.startswith("check_")}
FACTORS = load_study(REPO / "studies" / "factors.yaml")


def test_every_varied_field_of_every_study_has_a_check():
    """A new factor in a study file needs its check here (backbone and layers: tests/unit/test_model.py)."""
    fields = {key for path in sorted((REPO / "studies").glob("*.yaml")) for v in load_study(path).variants
              for key in v.overrides}
    assert fields - set(CHECKS) - {"backbone", "layers", "teacher_weights"} == set()


@pytest.mark.parametrize("variant", [v for v in FACTORS.variants if v.overrides], ids=lambda v: v.name)
def test_each_factor_changes_one_field_and_what_it_claims(variant, tmp_path):
    cfg = FACTORS.config(variant, seed=0)
    base = FACTORS.config(FACTORS.variant(FACTORS.baseline), seed=0)
    changed = {k for k, v in cfg.to_dict().items() if base.to_dict()[k] != v}
    assert changed == set(variant.overrides)  # one factor at a time from the official code
    (field,) = changed
    CHECKS[field](cfg, tmp_path)
