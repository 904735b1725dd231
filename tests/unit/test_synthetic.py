"""Synthetic defects on CC0 textures: reproducible bytes, exact masks, region shapes, layout, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stfpm_lib.data import index_category, make_synthetic_category
from stfpm_lib.data.convert import verify_mvtec_root
from stfpm_lib.data.synthetic import DEFECT_TYPES, add_defect, load_texture

ALL = ("scratch", "blob", "patch")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    kw = dict(n_train=3, n_test_good=2, n_per_defect=2, defect_types=ALL, size=32)
    a = _files(make_synthetic_category(tmp_path / "a", "gravel", seed=5, **kw))
    b = _files(make_synthetic_category(tmp_path / "b", "gravel", seed=5, **kw))
    c = _files(make_synthetic_category(tmp_path / "c", "gravel", seed=6, **kw))
    assert len(a) == 3 + 2 + 2 * 3 * 2 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if "train" in k)


def test_layout_counts_and_masks_on_disk(tmp_path: Path) -> None:
    folder = make_synthetic_category(tmp_path, "widget", texture="grass", n_train=4, n_test_good=2,
                                     defect_types=("blob", "patch"), n_per_defect=3, size=48, seed=0)
    assert folder == tmp_path / "widget"
    idx = index_category(tmp_path, "widget")
    assert idx.counts() == {"train_good": 4, "test_good": 2, "test_blob": 3, "test_patch": 3}
    # verify_mvtec_root: every mask pairs, has its image's size, values 0/255 and a defect pixel
    assert verify_mvtec_root(tmp_path, check_manifest=False) == {"widget": idx.counts()}
    for sample in idx.test:
        with Image.open(sample.image_path) as img:
            assert (img.mode, img.size) == ("L", (48, 48))


@pytest.mark.parametrize("kind", ALL)
@pytest.mark.parametrize("texture", ["brick", "gravel"])
def test_mask_is_exactly_the_changed_pixels(kind: str, texture: str) -> None:
    source = load_texture(texture)
    rng = np.random.default_rng(11)
    for _ in range(5):
        image = source[:64, :64].copy()
        out, mask = add_defect(kind, image, source, rng)
        assert out.dtype == np.uint8 and mask.dtype == bool and mask.shape == image.shape
        assert np.array_equal(mask, out != image)
        assert 0 < mask.sum() < image.size / 2


@pytest.mark.parametrize("value", [0, 255])
def test_saturated_pixels_still_change(value: int) -> None:
    # darkening a 0 (v // 3) or brightening a 255 (255 - (255 - v) // 3) changes nothing, nor does pasting
    # 255 - donor where that equals the pixel: such region pixels become 255 - value instead
    image = np.full((32, 32), value, np.uint8)
    texture = np.full((64, 64), 255 - value, np.uint8)  # patch donor: 255 - donor == value
    normal_change = 255 - 255 // 3 if value == 0 else 255 // 3  # brighten a 0 -> 170, darken a 255 -> 85
    seen = set()
    for kind in ALL:
        for seed in range(6):
            out, mask = add_defect(kind, image, texture, np.random.default_rng(seed))
            assert mask.any() and np.array_equal(mask, out != image)
            values = set(np.unique(out[mask]).tolist())
            assert values == {255 - value} if kind == "patch" else len(values) == 1 and values <= {255 - value, normal_change}
            seen |= values
    assert seen == {255 - value, normal_change}  # both branches ran


def test_region_shapes() -> None:
    source = load_texture("brick")
    image = source[:64, :64].copy()
    for seed in range(10):
        _, patch = add_defect("patch", image, source, np.random.default_rng(seed))
        rows, cols = np.nonzero(patch)
        side = rows.max() - rows.min() + 1
        assert side == cols.max() - cols.min() + 1 and patch.sum() == side * side  # a filled square
        assert int(0.15 * 64) <= side <= int(0.3 * 64)  # side = int(U(0.15, 0.3) * size), at least 3
        _, blob = add_defect("blob", image, source, np.random.default_rng(seed))
        # an ellipse with semi-axes in [0.06, 0.15] * 64 px: area within pi * a * b bounds (+ pixel slack)
        assert np.pi * 3.84 ** 2 * 0.6 <= blob.sum() <= np.pi * 9.6 ** 2 * 1.3
        _, scratch = add_defect("scratch", image, source, np.random.default_rng(seed))
        # a bar 2 * max(1, 64/40) = 3.2 px wide and 2 * [0.15, 0.35] * 64 px long
        assert 3.2 * 19.2 * 0.6 <= scratch.sum() <= 3.2 * 44.8 * 1.4


def test_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"defect_types \['dent'\] not in"):
        make_synthetic_category(tmp_path, defect_types=("dent",))
    with pytest.raises(ValueError, match="n_train=0 must be >= 1"):
        make_synthetic_category(tmp_path, n_train=0)
    with pytest.raises(ValueError, match="size=8 must be in"):
        make_synthetic_category(tmp_path, size=8)
    with pytest.raises(ValueError, match="texture='marble'"):
        load_texture("marble")
    with pytest.raises(ValueError, match="defect type 'dent'"):
        add_defect("dent", np.zeros((16, 16), np.uint8), np.zeros((32, 32), np.uint8), np.random.default_rng(0))
    assert not any(tmp_path.iterdir())  # validated before anything was written
    assert DEFECT_TYPES == ALL
