"""The embedded demo dataset is intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import ImageDataset, index_category, list_categories, mvtec
from stfpm_lib.data import demo as demo_module
from stfpm_lib.data.convert import MANIFEST_NAME, verify_mvtec_root
from stfpm_lib.data.demo import DEMO_CATEGORIES, demo_categories, demo_root

EXPECTED = {"train_good": 32, "test_good": 16, "test_impurity": 48}


def test_demo_layout_counts_and_masks() -> None:
    root = demo_root()
    assert root == Path(demo_module.__file__).resolve().parents[1] / "demo_data" / "piped"
    assert list_categories(root) == demo_categories() == list(DEMO_CATEGORIES) == ["PA_BFT01_TL", "PA_BRG03_TL"]
    # verify_mvtec_root: one mask per defect of its image's size, 0/255 values, no unpaired mask, sha256 = manifest
    assert verify_mvtec_root(root) == {c: EXPECTED for c in DEMO_CATEGORIES}
    for category in DEMO_CATEGORIES:
        idx = index_category(root, category)
        assert idx.counts() == EXPECTED
        assert all(s.mask_path.name == s.image_path.stem + "_mask.png" for s in idx.test if s.label)
        assert not {p.name for p in idx.train} & {s.image_path.name for s in idx.test}
        for path in (idx.train[0], idx.test[0].image_path, idx.test[-1].image_path):
            with Image.open(path) as img:
                assert (img.format, img.mode, img.size) == ("PNG", "RGB", (128, 128))
        sample = idx.test[-1]
        mask = np.asarray(Image.open(sample.mask_path))
        assert mask.shape == (128, 128) and 0 < (mask == 255).mean() < 0.5


def test_demo_size_licence_and_manifest() -> None:
    root = demo_root()
    files = [p for p in root.parent.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert total <= 6_000_000, f"demo data is {total / 1e6:.2f} MB"
    assert len([p for p in files if p.suffix == ".png"]) == 2 * (32 + 16 + 48 + 48)
    readme = (root / "README.md").read_text(encoding="utf-8")
    licence = (root / "LICENSE-DATA.md").read_text(encoding="utf-8")
    for text in (readme, licence):
        assert "CC BY 4.0" in text and "https://creativecommons.org/licenses/by/4.0/" in text
        assert "Bianconi" in text and "Computers in Industry" in text
    for change in ("BMP to PNG", "255 = impurity", "seeded permutation", "MVTec AD layout", "PA_BFT01_TL", "PA_BRG03_TL"):
        assert change in readme
    manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["source"]["adapter"] == "piped"
    assert manifest["conversion"]["n_train"] == 32 and manifest["conversion"]["seed"] == 0
    assert "/work" not in (root / MANIFEST_NAME).read_text(encoding="utf-8")


def test_demo_masks_load_through_the_data_module() -> None:
    cfg = STFPMConfig.from_preset("official", image_size=64)
    idx = index_category(demo_root(), "PA_BRG03_TL")
    dataset = ImageDataset(idx.test[16:18], cfg)
    item = dataset[0]
    assert item["image"].shape == (3, 64, 64) and item["label"] == 1 and item["defect_type"] == "impurity"
    full = np.asarray(Image.open(idx.test[16].mask_path)) == 255
    # the gt0 rule (any bilinear overlap) can only grow a mask: at least the area fraction of the full-size mask
    assert item["mask"].float().mean().item() >= full.mean() * 0.9 and item["mask"].any()


def test_missing_demo_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(mvtec, "demo_dir", lambda: tmp_path / "piped")
    with pytest.raises(demo_module.DataError, match="embedded demo dataset is missing.*build-demo"):
        demo_root()


def test_one_data_root_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``demo`` names the embedded data everywhere; no root and no $MVTEC_ROOT is the demo only when asked."""
    monkeypatch.delenv("MVTEC_ROOT", raising=False)
    assert mvtec.resolve_data_root("demo") == demo_root()
    assert mvtec.resolve_data_root(None, demo_fallback=True) == demo_root()
    with pytest.raises(mvtec.DataError, match="no data root given.*'demo'"):
        mvtec.resolve_data_root(None)
    monkeypatch.setenv("MVTEC_ROOT", str(tmp_path))
    assert mvtec.resolve_data_root(None, demo_fallback=True) == tmp_path
    assert mvtec.is_demo_root("demo") and mvtec.is_demo_root(demo_root()) and not mvtec.is_demo_root(tmp_path)
