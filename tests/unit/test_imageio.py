"""The one image/mask reader: 16-bit images, EXIF orientation, empty masks, decompression bombs, on every path."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import DataError, ImageDataset, Sample, convert_to_mvtec, index_category, make_synthetic_category
from stfpm_lib.data.folder import FolderAdapter
from stfpm_lib.data.imageio import EmptyMaskWarning, image_size_of, read_image, read_mask_values
from stfpm_lib.data.transforms import read_image_uint8

SIDE = 64
CFG = STFPMConfig(image_size=SIDE, teacher_weights="random")


def _gradient16() -> np.ndarray:
    """A 16-bit grayscale ramp over the full range (every value a multiple of 257 ± a few)."""
    ramp = np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16)
    return ramp.reshape(SIDE, SIDE)


def _expected8(values16: np.ndarray) -> np.ndarray:
    return np.array([[int(round(v / 257)) for v in row] for row in values16.tolist()], dtype=np.uint8)


# ----------------------------------------------------------------------------- 16-bit
def test_16bit_png_is_scaled_not_white(tmp_path: Path) -> None:
    values = _gradient16()
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    expected = _expected8(values)
    assert expected.min() == 0 and expected.max() == 255 and len(np.unique(expected)) == 256
    # The training / prediction path (same size: the resize is the identity).
    got = read_image_uint8(tmp_path / "g16.png", CFG)
    assert got.shape == (SIDE, SIDE, 3)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], expected)
    # 16-bit masks: full-range values are scaled, label values (<= 255) kept.
    Image.fromarray((values > 40000).astype(np.uint16) * 65535).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(read_mask_values(tmp_path / "m16.png"), (values > 40000).astype(np.uint8) * 255)
    Image.fromarray((values > 40000).astype(np.uint16)).save(tmp_path / "m16_labels.png")
    np.testing.assert_array_equal(read_mask_values(tmp_path / "m16_labels.png"), (values > 40000).astype(np.uint8))


def test_32bit_values_outside_16bit_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((SIDE, SIDE), 70000, np.int32), mode="I").save(tmp_path / "i32.tif")
    with pytest.raises(DataError, match=r"i32.tif .*outside 0..65535"):
        read_image(tmp_path / "i32.tif")
    Image.fromarray(np.full((SIDE, SIDE), 0.5, np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f.tif is floating-point"):
        read_image(tmp_path / "f.tif")


def _folder_dataset(root: Path, write_defect) -> FolderAdapter:
    cat = root / "part"
    (cat / "good").mkdir(parents=True)
    (cat / "bad").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (SIDE, SIDE // 2, 3), dtype=np.uint8)).save(cat / "good" / f"{i}.png")
    write_defect(cat / "bad")
    return FolderAdapter(cat, defect_dirs={"bad": "bad"})


def test_converter_scales_16bit_images(tmp_path: Path) -> None:
    values = _gradient16()[:, : SIDE // 2]

    def defect(folder: Path) -> None:
        Image.fromarray(values).save(folder / "d.png")
        Image.fromarray((values > 50000).astype(np.uint8) * 255).save(folder / "d_mask.png")

    out = convert_to_mvtec(_folder_dataset(tmp_path / "src", defect), tmp_path / "out", n_test_good=1)
    written = np.asarray(Image.open(out / "part" / "test" / "bad" / "d.png"))
    np.testing.assert_array_equal(written, _expected8(values))


# ----------------------------------------------------------------------------- EXIF orientation
def _displayed() -> tuple[np.ndarray, np.ndarray]:
    """A 64 (high) x 32 (wide) image with a white block in its top-left corner, and the block's mask."""
    image = np.full((SIDE, SIDE // 2, 3), 20, np.uint8)
    image[:16, :8] = 235
    mask = np.zeros((SIDE, SIDE // 2), np.uint8)
    mask[:16, :8] = 255
    return image, mask


def _save_rotated_jpeg(path: Path, displayed: np.ndarray) -> None:
    """Stored pixels rotated 90° counter-clockwise, EXIF orientation 6 (display: rotate 90° clockwise)."""
    stored = Image.fromarray(displayed).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=100, exif=exif.tobytes())


def test_exif_orientation_applied_to_images_and_masks(tmp_path: Path) -> None:
    image, mask = _displayed()
    _save_rotated_jpeg(tmp_path / "d.jpg", image)
    with Image.open(tmp_path / "d.jpg") as raw:
        assert raw.size == (SIDE, SIDE // 2)  # stored sideways
    assert image_size_of(tmp_path / "d.jpg") == (SIDE // 2, SIDE)
    np.testing.assert_allclose(np.asarray(read_image(tmp_path / "d.jpg"), float), image, atol=3)
    # A mask saved sideways with the same orientation tag is turned the same way.
    stored = Image.fromarray(mask).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "m.png", exif=exif.tobytes())
    np.testing.assert_array_equal(read_mask_values(tmp_path / "m.png"), mask)
    # Training / evaluation: the upright mask fits the image only after the rotation.
    Image.fromarray(mask).save(tmp_path / "d_mask.png")
    cfg = STFPMConfig(image_size=SIDE, teacher_weights="random")
    item = ImageDataset([Sample(tmp_path / "d.jpg", 1, "bad", tmp_path / "d_mask.png")], cfg)[0]
    img_u8, mask_u8 = ImageDataset([Sample(tmp_path / "d.jpg", 1, "bad", tmp_path / "d_mask.png")], cfg).arrays(0)
    bright = img_u8[..., 0] > 128
    assert item["mask"].any() and (bright == mask_u8.astype(bool)).mean() > 0.97


def test_converter_applies_exif_orientation(tmp_path: Path) -> None:
    image, mask = _displayed()

    def defect(folder: Path) -> None:
        _save_rotated_jpeg(folder / "d.jpg", image)
        Image.fromarray(mask).save(folder / "d_mask.png")  # upright, as annotated on the displayed image

    adapter = _folder_dataset(tmp_path / "src", defect)
    for fmt in ("png", "keep"):
        out = convert_to_mvtec(adapter, tmp_path / f"out_{fmt}", n_test_good=1, image_format=fmt)
        name = "d.png" if fmt == "png" else "d.jpg"
        got = np.asarray(read_image(out / "part" / "test" / "bad" / name), float)
        np.testing.assert_allclose(got, image, atol=3)
        np.testing.assert_array_equal(read_mask_values(out / "part" / "ground_truth" / "bad" / "d_mask.png"), mask)


# ----------------------------------------------------------------------------- empty masks: one rule
@pytest.fixture()
def empty_mask_root(tmp_path: Path) -> tuple[Path, Path]:
    make_synthetic_category(tmp_path, "brick", n_train=4, n_test_good=1, n_per_defect=1, size=32, seed=3,
                            defect_types=("blob",))
    mask = tmp_path / "brick" / "ground_truth" / "blob" / "000_mask.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask)
    return tmp_path, mask


def test_empty_mask_is_an_error_in_evaluation_like_the_converter(empty_mask_root) -> None:
    root, mask = empty_mask_root
    index = index_category(root, "brick")
    sample = next(s for s in index.test if s.mask_path == mask)
    with pytest.raises(DataError, match=r"000_mask.png has no defect pixel.*blob/000.png.*--allow-empty-masks"):
        ImageDataset([sample], CFG)[0]


def test_empty_mask_is_a_warning_when_the_manifest_allows_it(empty_mask_root) -> None:
    root, mask = empty_mask_root
    (root / "manifest.json").write_text(json.dumps({"conversion": {"allow_empty_masks": True}}))
    index = index_category(root, "brick")
    sample = next(s for s in index.test if s.mask_path == mask)
    with pytest.warns(EmptyMaskWarning, match=r"000_mask.png has no defect pixel"):
        item = ImageDataset([sample], CFG)[0]
    assert not item["mask"].any() and item["label"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageDataset([s for s in index.test if s.mask_path != mask], CFG)[0]  # other masks: no warning


# ----------------------------------------------------------------------------- decompression bombs
def test_decompression_bomb_is_a_data_error_naming_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    from stfpm_lib.runner.cli import main as stfpm
    from stfpm_lib.runner.data_commands import main as data_main

    make_synthetic_category(tmp_path / "data", "brick", n_train=4, n_test_good=1, n_per_defect=1, size=32, seed=3)
    path = tmp_path / "data" / "brick" / "train" / "good" / "000.png"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 = 1024 > 2 x 100: Pillow's error
    for read in (read_image, image_size_of, read_mask_values, lambda p: read_image_uint8(p, CFG)):
        with pytest.raises(DataError, match=r"000.png is too large to decode safely"):
            read(path)
    assert data_main(["verify", str(tmp_path / "data"), "--no-manifest"]) == 2
    err = capsys.readouterr().err
    assert "too large to decode safely" in err and "Traceback" not in err
    code = stfpm(["train", "--data-root", str(tmp_path / "data"), "--category", "brick", "--out", str(tmp_path / "o"),
                  "--set", "teacher_weights=random", "--set", "image_size=32", "--set", "epochs=1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "too large to decode safely" in err and ".png" in err and "Traceback" not in err


def test_reloaded_masks_follow_the_manifest_rule_too(empty_mask_root) -> None:
    """Predictions.masks(another rule) re-reads the mask files under the same empty-mask rule as prediction."""
    from stfpm_lib.records.predictions import Predictions

    root, mask = empty_mask_root
    image = root / "brick" / "test" / "blob" / "000.png"
    n, s = 1, CFG.image_size
    pred = Predictions(maps=np.zeros((n, s, s), np.float32), scores=np.zeros(n, np.float32), labels=np.ones(n, bool),
                       defect_types=np.array(["blob"]), image_paths=np.array([str(image)]),
                       mask_paths=np.array([str(mask)]), config=CFG.to_dict(), teacher_weights={},
                       dataset={"root": str(root), "category": "brick"})
    with pytest.raises(DataError, match=r"000_mask.png has no defect pixel"):
        pred.masks("nearest")
    (root / "manifest.json").write_text(json.dumps({"conversion": {"allow_empty_masks": True}}))
    with pytest.warns(EmptyMaskWarning, match=r"000_mask.png has no defect pixel"):
        assert not pred.masks("nearest").any()
