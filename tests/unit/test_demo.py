"""The embedded demo dataset is intact, and the demo's teacher-weights choice falls back loudly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stfpm_lib.config import STFPMConfig
from stfpm_lib.data import ImageDataset, index_category, list_categories
from stfpm_lib.data import demo as demo_module
from stfpm_lib.data.convert import MANIFEST_NAME, verify_mvtec_root
from stfpm_lib.data.demo import (
    DEMO_CATEGORIES,
    RANDOM_TEACHER_LABEL,
    demo_categories,
    demo_root,
    demo_teacher_weights,
)

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


# ----------------------------------------------------------------------------- teacher weights
@pytest.fixture()
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("STFPM_OFFLINE", raising=False)
    return tmp_path / "hub" / "checkpoints"


def test_random_teacher_label() -> None:
    assert RANDOM_TEACHER_LABEL == "random teacher (not comparable with the paper)"


def test_falls_back_loudly_when_not_downloadable(empty_hub: Path) -> None:
    calls = []

    def unreachable(url: str, timeout: float) -> str:
        calls.append((url, timeout))
        return "offline in this test"

    source, warning = demo_teacher_weights("resnet18", probe_timeout_s=0.5, probe=unreachable)
    assert source == "random"
    assert calls == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", 0.5)]
    lines = warning.splitlines()
    assert len(lines) >= 8 and lines[0] == lines[-1] == "!" * 78
    for phrase in ("NOT available", "resnet18-f37072fd.pth", str(empty_hub), "offline in this test",
                   "RANDOMLY INITIALISED", "NOT comparable", RANDOM_TEACHER_LABEL, "never fall back"):
        assert phrase in warning


def test_imagenet_when_downloadable(empty_hub: Path) -> None:
    assert demo_teacher_weights("wide_resnet50_2", probe=lambda url, t: None) == ("imagenet", None)


def test_offline_env_skips_the_probe(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STFPM_OFFLINE", "1")

    def must_not_run(url: str, timeout: float) -> str:
        raise AssertionError("probe called although STFPM_OFFLINE is set")

    source, warning = demo_teacher_weights(probe=must_not_run)
    assert source == "random" and "STFPM_OFFLINE" in warning


def test_cached_file_is_verified(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_hub.mkdir(parents=True)
    (empty_hub / "resnet18-f37072fd.pth").write_bytes(b"not a state dict")
    source, warning = demo_teacher_weights(probe=lambda url, t: None)
    assert source == "random" and "is unusable" in warning and "resnet18-f37072fd.pth" in warning
    seen = []
    monkeypatch.setattr(demo_module, "resolve_teacher_weights", lambda spec, backbone: seen.append((spec, backbone)))
    assert demo_teacher_weights(probe=lambda url, t: "unreachable") == ("imagenet", None)
    assert seen == [("imagenet", "resnet18")]


def test_missing_demo_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(demo_module, "_package_demo_dir", lambda: tmp_path / "piped")
    with pytest.raises(demo_module.DataError, match="embedded demo dataset is missing.*build-demo"):
        demo_root()
