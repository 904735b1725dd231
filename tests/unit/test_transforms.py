"""``gt0`` masks are the official code's: ``cv2.resize`` INTER_LINEAR on uint8, then > 0.

Checked against OpenCV itself (``opencv-python-headless``, a dev/test dependency only): the
library's own :func:`resize_linear_uint8` must give cv2's uint8 values exactly, and
``read_mask_uint8`` with ``mask_rule="gt0"`` must give ``cv2.resize(cv2.imread(mask, GRAYSCALE)) > 0``.
"""

from __future__ import annotations

import subprocess
import sys

import cv2  # dev dependency (pyproject [dev], environment.yml): the reference, never used by the library
import numpy as np
import pytest
from PIL import Image

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data.transforms import read_mask_uint8, resize_linear_uint8

SOURCE_SIZES = [(700, 700), (840, 840), (900, 900), (1024, 1024), (512, 512), (768, 768), (1000, 700),
                (480, 640), (333, 517), (256, 256), (255, 257), (130, 90), (64, 64), (37, 91), (3, 7)]
OUTPUT_SIZES = [(256, 256), (64, 64), (224, 224), (200, 300), (255, 255), (7, 9), (1, 1)]


def cv2_resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)


def thin_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """0/255 mask with single pixels, 1-px lines (horizontal, vertical, diagonal) and a blob."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(max(3, h * w // 4000)):
        m[rng.integers(h), rng.integers(w)] = 255
    m[rng.integers(h), rng.integers(w // 2):] = 255
    m[rng.integers(h // 2):, rng.integers(w)] = 255
    k = np.arange(min(h, w))
    m[k, (k + rng.integers(w)) % w] = 255
    y, x = rng.integers(h), rng.integers(w)
    m[max(0, y - 5):y + 6, max(0, x - 8):x + 3] = 255
    return m


@pytest.mark.parametrize("src_hw", SOURCE_SIZES)
def test_uint8_values_equal_cv2(src_hw):
    rng = np.random.default_rng(src_hw[0] * 7919 + src_hw[1])
    images = [rng.integers(0, 256, src_hw, dtype=np.uint8), thin_mask(rng, *src_hw),
              (rng.random(src_hw) < 0.002).astype(np.uint8) * rng.integers(1, 256, dtype=np.uint8)]
    for image in images:
        for out_hw in OUTPUT_SIZES:
            np.testing.assert_array_equal(resize_linear_uint8(image, out_hw), cv2_resize(image, out_hw),
                                          err_msg=f"{src_hw} -> {out_hw}")


def test_many_random_masks_and_sizes_equal_cv2():
    rng = np.random.default_rng(9)
    for _ in range(60):
        src_hw = (int(rng.integers(2, 1100)), int(rng.integers(2, 1100)))
        out_hw = (int(rng.integers(1, 300)), int(rng.integers(1, 300)))
        image = thin_mask(rng, *src_hw) if rng.random() < 0.7 else rng.integers(0, 256, src_hw, dtype=np.uint8)
        np.testing.assert_array_equal(resize_linear_uint8(image, out_hw), cv2_resize(image, out_hw),
                                      err_msg=f"{src_hw} -> {out_hw}")


def test_a_single_pixel_survives_exactly_as_in_cv2():
    """Thin structures: where a lone defect pixel falls decides whether it survives the downscale."""
    kept = 0
    for y in range(0, 40):
        for x in range(0, 40, 3):
            m = np.zeros((700, 700), np.uint8)
            m[y, x] = 255
            ours, ref = resize_linear_uint8(m, (256, 256)), cv2_resize(m, (256, 256))
            np.testing.assert_array_equal(ours, ref, err_msg=f"pixel at {(y, x)}")
            kept += bool(ref.any())
    assert 0 < kept < 40 * 14  # some single pixels vanish (2-tap sampling, no antialiasing), some stay


@pytest.mark.parametrize("image_size", [256, 64, 224])
def test_gt0_masks_from_files_equal_cv2(tmp_path, image_size):
    """read_mask_uint8(gt0) == cv2.resize(cv2.imread(GRAYSCALE)) > 0, as the official load_gt computes it."""
    cfg = STFPMConfig(image_size=image_size, mask_rule="gt0")
    rng = np.random.default_rng(image_size)
    differs_from_float = 0
    for i, hw in enumerate([(700, 700), (840, 840), (900, 900), (1024, 1024), (1000, 700), (333, 517)] * 4):
        path = tmp_path / f"mask{i}.png"
        Image.fromarray(thin_mask(rng, *hw)).save(path)
        ref = cv2_resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (image_size, image_size)) > 0
        ours = read_mask_uint8(path, (hw[1], hw[0]), cfg)
        assert ours.dtype == np.uint8
        np.testing.assert_array_equal(ours.astype(bool), ref, err_msg=f"{hw} -> {image_size}")
        differs_from_float += int((float_bilinear(np.asarray(Image.open(path)), image_size) > 0).sum() != ref.sum())
    assert differs_from_float > 0  # the data is one where a float resize would not give cv2's masks


def test_transforms_read_only_their_narrow_settings(tmp_path):
    """A TransformSettings (image_size, crop_size, mask_rule) gives the same arrays as the whole config;
    knobs of other parts (loss, map, training) do not matter."""
    from stfpm_lib.config import TransformSettings
    from stfpm_lib.data.transforms import read_image_uint8

    Image.fromarray(thin_mask(np.random.default_rng(3), 90, 70)).save(tmp_path / "m.png")
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (90, 70, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    cfg = STFPMConfig.from_preset("xia", image_size=64, crop_size=48, epochs=1)
    settings = cfg.transform_settings()
    assert settings == TransformSettings(image_size=64, crop_size=48, mask_rule="nearest") and settings.input_size == 48
    image = read_image_uint8(tmp_path / "i.png", settings)
    assert image.shape == (48, 48, 3)
    np.testing.assert_array_equal(image, read_image_uint8(tmp_path / "i.png", cfg))
    mask = read_mask_uint8(tmp_path / "m.png", (70, 90), settings)
    np.testing.assert_array_equal(mask, read_mask_uint8(tmp_path / "m.png", (70, 90), cfg))
    np.testing.assert_array_equal(mask, read_mask_uint8(tmp_path / "m.png", (70, 90), {"image_size": 64,
                                                                                        "crop_size": 48,
                                                                                        "mask_rule": "nearest"}))
    assert mask.shape == (48, 48) and mask.any()
    with pytest.raises(ValueError, match=r"mask_rule='gt1' is not one of \['gt0', 'nearest', 'eq1'\]"):
        TransformSettings(mask_rule="gt1")


def float_bilinear(mask: np.ndarray, size: int) -> np.ndarray:
    """The float resize (half-pixel centres, no antialiasing) that cv2's fixed point departs from."""
    import torch

    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        resize_linear_uint8(np.zeros((4, 4), np.float32), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        resize_linear_uint8(np.zeros((4, 4), np.uint8), (0, 2))


def test_the_library_does_not_need_cv2(tmp_path):
    """Every stfpm_lib module imports, and gt0 masks are read, with cv2 made unimportable."""
    Image.fromarray(thin_mask(np.random.default_rng(0), 90, 70)).save(tmp_path / "m.png")
    code = (
        "import sys, pkgutil, importlib; sys.modules['cv2'] = None\n"
        "import stfpm_lib\n"
        "for m in pkgutil.walk_packages(stfpm_lib.__path__, 'stfpm_lib.'):\n"
        "    importlib.import_module(m.name)\n"
        "from stfpm_lib.config import STFPMConfig\n"
        "from stfpm_lib.data.transforms import read_mask_uint8\n"
        f"print(int(read_mask_uint8({str(tmp_path / 'm.png')!r}, (70, 90), STFPMConfig()).sum()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0
