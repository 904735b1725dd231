"""MVTec-layout indexing, preprocessing and the bad-input errors of the data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import (
    DataError,
    ImageDataset,
    index_category,
    list_categories,
    load_image,
    load_mask,
    make_synthetic_category,
    resolve_data_root,
    split_train_val,
)
from stfpm_lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, read_mask_uint8

CFG = STFPMConfig.from_preset("official", image_size=64)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    make_synthetic_category(tmp_path, "brick", n_train=10, n_test_good=2, n_per_defect=2, size=32, seed=3)
    return tmp_path


def test_index_counts_and_official_order(tiny_mvtec: Path) -> None:
    index = index_category(tiny_mvtec, "brick")
    assert index.counts() == {"train_good": 12, "test_good": 4, "test_blob": 3, "test_scratch": 3}
    assert index.defect_types == ("blob", "scratch")
    labels = [s.label for s in index.test]
    assert labels == [0] * 4 + [1] * 6  # normals first, then defects sorted by path
    assert [s.image_path for s in index.test[4:]] == sorted(s.image_path for s in index.test[4:])
    assert all(s.mask_path.name == s.image_path.stem + "_mask.png" for s in index.test[4:])
    assert list_categories(tiny_mvtec) == ["brick", "grass"]


def test_official_split_matches_sklearn_on_sorted_paths(tiny_mvtec: Path) -> None:
    from sklearn.model_selection import train_test_split

    paths = index_category(tiny_mvtec, "brick").train
    train, val = split_train_val(list(reversed(paths)), CFG)
    expected_train, expected_val = train_test_split(sorted(paths), test_size=0.2, random_state=0)
    assert (train, val) == (list(expected_train), list(expected_val))
    assert len(val) == 3 and not set(train) & set(val)


def test_image_preprocessing_grayscale_to_rgb_and_normalisation(tmp_path: Path) -> None:
    value = 128
    Image.fromarray(np.full((10, 10), value, np.uint8)).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", CFG)
    assert x.shape == (3, 64, 64)
    expected = [(value / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(x[:, 0, 0], torch.tensor(expected), atol=1e-6, rtol=0)


def test_centre_crop(tmp_path: Path) -> None:
    array = np.zeros((64, 64, 3), np.uint8)
    array[16:48, 16:48] = 255  # centre 32x32 white
    Image.fromarray(array).save(tmp_path / "c.png")
    cfg = STFPMConfig.from_preset("official", image_size=64, crop_size=32)
    x = load_image(tmp_path / "c.png", cfg)
    assert x.shape == (3, 32, 32)
    torch.testing.assert_close(x[0], torch.full((32, 32), (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))


def test_mask_rules_dilate_and_erode(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[2:4, 2:4] = 255  # a 2x2 defect
    Image.fromarray(mask).save(tmp_path / "m.png")
    sizes = {}
    for rule in ("gt0", "nearest", "eq1"):
        cfg = STFPMConfig.from_preset("official", image_size=32, mask_rule=rule)
        sizes[rule] = int(read_mask_uint8(tmp_path / "m.png", (64, 64), cfg).sum())
    # 64->32 (as 8->4): nearest keeps exactly the one 2x2 block's pixel (1,1); bilinear without antialias samples at
    # source coordinates 0.5, 2.5, 4.5, 6.5: only (2.5, 2.5) touches the defect (value 255/4 > 0) -> 1 pixel.
    assert sizes["nearest"] == 1
    assert sizes["gt0"] == 1
    # PIL's antialiased bilinear spreads 255 over neighbours: no output pixel stays exactly 255.
    assert sizes["eq1"] == 0
    cfg = STFPMConfig.from_preset("official", image_size=128, mask_rule="gt0")
    up = read_mask_uint8(tmp_path / "m.png", (64, 64), cfg)
    assert up.sum() > 16  # upsampling with >0 dilates the 4x4 block
    assert load_mask(None, None, CFG).shape == (64, 64) and not load_mask(None, None, CFG).any()


def test_dataset_items_and_cache(tiny_mvtec: Path) -> None:
    index = index_category(tiny_mvtec, "brick")
    dataset = ImageDataset(index.test, CFG)
    item = dataset[len(dataset) - 1]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].dtype == torch.bool and item["mask"].any() and item["label"] == 1
    assert item["mask_path"].endswith("_mask.png")
    assert dataset[0]["mask_path"] == "" and not dataset[0]["mask"].any()
    first = dataset.arrays(3)
    assert dataset.arrays(3) is first  # decoded once


def test_synthetic_is_reproducible_and_masks_exact(tmp_path: Path) -> None:
    a = make_synthetic_category(tmp_path / "a", "gravel", seed=7, n_train=2, n_test_good=1, n_per_defect=2,
                                defect_types=("scratch", "blob", "patch"))
    b = make_synthetic_category(tmp_path / "b", "gravel", seed=7, n_train=2, n_test_good=1, n_per_defect=2,
                                defect_types=("scratch", "blob", "patch"))
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    for mask_path in (a / "ground_truth").rglob("*_mask.png"):
        mask = np.asarray(Image.open(mask_path))
        assert set(np.unique(mask)) <= {0, 255} and mask.any()


# ----------------------------------------------------------------------------- bad input
def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        index_category(tmp_path / "nope", "brick")


def test_no_root_and_no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MVTEC_ROOT", raising=False)
    with pytest.raises(DataError, match="MVTEC_ROOT"):
        resolve_data_root(None)


def test_env_root(monkeypatch: pytest.MonkeyPatch, tiny_mvtec: Path) -> None:
    monkeypatch.setenv("MVTEC_ROOT", str(tiny_mvtec))
    assert resolve_data_root(None) == tiny_mvtec


def test_unknown_category_lists_found(tiny_mvtec: Path) -> None:
    with pytest.raises(DataError, match=r"'carpet' not found.*\['brick', 'grass'\]"):
        index_category(tiny_mvtec, "carpet")


def test_empty_train_good(root: Path) -> None:
    for p in (root / "brick" / "train" / "good").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="no training images in .*train/good"):
        index_category(root, "brick")


def test_defect_without_mask(root: Path) -> None:
    (root / "brick" / "ground_truth" / "blob" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"blob/001.png has no mask.*001_mask.png"):
        index_category(root, "brick")


def test_truncated_image_names_file(root: Path) -> None:
    path = root / "brick" / "train" / "good" / "003.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"003.png"):
        load_image(path, CFG)
    (root / "brick" / "train" / "good" / "004.png").write_text("not an image")
    with pytest.raises(DataError, match=r"004.png"):
        ImageDataset([root / "brick" / "train" / "good" / "004.png"], CFG)[0]


def test_mask_size_mismatch_names_both_files(root: Path) -> None:
    mask_path = root / "brick" / "ground_truth" / "blob" / "000_mask.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mask_path)
    index = index_category(root, "brick")
    sample = next(s for s in index.test if s.mask_path == mask_path)
    with pytest.raises(DataError, match=r"000_mask.png is 16x16 but its image .*blob/000.png is 32x32"):
        ImageDataset([sample], CFG)[0]


def test_split_needs_two_images() -> None:
    with pytest.raises(DataError, match="at least 2"):
        split_train_val([Path("a.png")], CFG)


def test_hidden_files_are_skipped_and_a_broken_link_is_named(root: Path) -> None:
    """macOS's ``._000.png``, ``test/.ipynb_checkpoints/`` and hidden category folders used to be errors."""
    before = index_category(root, "brick").counts()
    (root / "brick" / "train" / "good" / "._000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not a PNG")
    (root / "brick" / "test" / ".ipynb_checkpoints").mkdir()
    (root / "brick" / "test" / ".ipynb_checkpoints" / "000-checkpoint.png").write_bytes(b"not an image")
    (root / ".trash" / "train" / "good").mkdir(parents=True)
    assert index_category(root, "brick").counts() == before
    assert list_categories(root) == ["brick"]
    (root / "brick" / "train" / "good" / "999.png").symlink_to(root / "gone.png")
    with pytest.warns(UserWarning, match=r"skipping the broken link .*999\.png \(its target .*gone\.png does not exist\)"):
        assert index_category(root, "brick").counts() == before
