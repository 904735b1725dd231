"""Dataset adapters (MVTec AD, VisA, folder, PIPED) on files made by the tests, including PIPED's real quirks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stfpm_lib.data import DataError, index_category
from stfpm_lib.data.adapters import MaskEncoding, binarize_mask, get_adapter, read_mask_values
from stfpm_lib.data.folder import FolderAdapter, pair_key, piped_adapter, resolve_piped_root

SIZE = 16


# ----------------------------------------------------------------------------- file makers (also used by test_convert)
def rgb(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """A deterministic RGB uint8 image (H, W, 3) for (width, height) ``size``."""
    return np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def defect_region(seed: int, size: tuple[int, int] = (SIZE, SIZE)) -> np.ndarray:
    """A deterministic non-empty boolean region (H, W) covering a few % of the image."""
    rng = np.random.default_rng(1000 + seed)
    region = np.zeros((size[1], size[0]), bool)
    top, left = rng.integers(0, size[1] - 4), rng.integers(0, size[0] - 4)
    region[top:top + 3, left:left + 2] = True
    return region


def save_1bit_inverted(path: Path, region: np.ndarray) -> None:
    """PIPED-style mask: 1-bit BMP where 0 (black) = defect."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(~region).convert("1").save(path)


def make_piped_like(root: Path) -> Path:
    """A tree with PIPED's quirks; returns its ``data`` folder.

    * ``PA_AAA01_TL``: 6 normals, 3 defects, masks in ``Defects/GroundThruth`` (misspelt);
    * ``PA_BBB01_RL``: 6 normals, 3 defects, masks in ``Defects/GroundTruth`` whose names drop
      the leading zero (``_S_GT_1_1`` for ``_S_D_01_1``);
    * ``PU_CCC01_TL``: normals only, in ``NoDefect`` (singular).
    Masks are 1-bit BMPs with 0 = defect; images 16x16 RGB BMPs.
    """
    data = root / "data"
    for c, (cls, gt, zero_pad) in enumerate((("PA_AAA01_TL", "GroundThruth", True),
                                             ("PA_BBB01_RL", "GroundTruth", False))):
        for i in range(6):
            path = data / cls / "NoDefects" / f"{cls}_S_ND_0{i // 4 + 1}_{i % 4 + 1}.bmp"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(100 * c + i)).save(path)
        (data / cls / "Defects").mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(rgb(100 * c + 50 + i)).save(data / cls / "Defects" / f"{cls}_S_D_01_{i + 1}.bmp")
            number = "01" if zero_pad else "1"
            save_1bit_inverted(data / cls / "Defects" / gt / f"{cls}_S_GT_{number}_{i + 1}.bmp",
                               defect_region(10 * c + i))
    for i in range(5):
        path = data / "PU_CCC01_TL" / "NoDefect" / f"PL_CCC_1_{i + 1}wo.bmp"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb(300 + i)).save(path)
    return data


def make_visa_like(root: Path, mask_max: int = 1) -> Path:
    """A VisA-style root: ``split_csv/1cls.csv`` and JPEG images, PNG masks with values 0/``mask_max``.

    ``candle``: 4 train normals, 2 test normals, 2 anomalies; ``pcb1``: 3 train, 1 test normal, 1 anomaly.
    """
    rows = [("object", "split", "label", "image", "mask")]
    for obj, n_train, n_good, n_bad, base in (("candle", 4, 2, 2, 0), ("pcb1", 3, 1, 1, 50)):
        for i in range(n_train + n_good):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(base + i, (20, SIZE))).save(root / rel, format="JPEG", quality=90)
            rows.append((obj, "train" if i < n_train else "test", "normal", rel, ""))
        for i in range(n_bad):
            rel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG"
            mrel = f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            for p in (rel, mrel):
                (root / p).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(base + 20 + i, (20, SIZE))).save(root / rel, format="JPEG", quality=90)
            Image.fromarray(defect_region(base + i, (20, SIZE)).astype(np.uint8) * mask_max).save(root / mrel)
            rows.append((obj, "test", "anomaly", rel, mrel))
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


# ----------------------------------------------------------------------------- mask rules
def test_mask_encoding_polarities_are_complements_and_read_1bit_bmp(tmp_path: Path) -> None:
    values = np.array([[0, 1, 127, 128, 255]], dtype=np.uint8)
    assert binarize_mask(values, MaskEncoding("high", 0)).tolist() == [[False, True, True, True, True]]
    assert binarize_mask(values, MaskEncoding("low", 0)).tolist() == [[True, False, False, False, False]]
    assert binarize_mask(values, MaskEncoding("high", 127)).tolist() == [[False, False, False, True, True]]
    assert (binarize_mask(values, MaskEncoding("low", 127)) == ~binarize_mask(values, MaskEncoding("high", 127))).all()
    region = defect_region(3)
    save_1bit_inverted(tmp_path / "m.bmp", region)
    read = read_mask_values(tmp_path / "m.bmp")
    assert read.dtype == np.uint8 and set(np.unique(read)) == {0, 255}
    assert (binarize_mask(read, MaskEncoding("low", 0)) == region).all()
    with pytest.raises(ValueError, match="polarity"):
        MaskEncoding("up", 0)
    with pytest.raises(ValueError, match="threshold"):
        MaskEncoding("high", 255)


def test_read_mask_values_palette_gives_indices(tmp_path: Path) -> None:
    img = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    img.save(tmp_path / "p.png")
    assert read_mask_values(tmp_path / "p.png").tolist() == [[0, 1], [1, 0]]
    with pytest.raises(DataError, match="not found"):
        read_mask_values(tmp_path / "missing.png")


# ----------------------------------------------------------------------------- PIPED through the folder adapter
def test_piped_quirks(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    adapter = get_adapter("piped", root=tmp_path / "PIPED")  # the repository folder; data/ is found inside
    assert adapter.root == data and adapter.name == "piped"
    assert adapter.categories() == ["PA_AAA01_TL", "PA_BBB01_RL", "PU_CCC01_TL"]
    a = adapter.index("PA_AAA01_TL")
    assert a.counts() == {"train_good": 0, "test_good": 0, "pool_good": 6, "test_impurity": 3}
    assert not a.has_official_split and a.mask_encoding == MaskEncoding("low", 0)
    assert [(s.image_path.name, s.mask_path.parent.name, s.mask_path.name) for s in a.test] == [
        (f"PA_AAA01_TL_S_D_01_{i}.bmp", "GroundThruth", f"PA_AAA01_TL_S_GT_01_{i}.bmp") for i in (1, 2, 3)]
    b = adapter.index("PA_BBB01_RL")  # other spelling, numbers without leading zero
    assert [(s.image_path.name, s.mask_path.parent.name, s.mask_path.name) for s in b.test] == [
        (f"PA_BBB01_RL_S_D_01_{i}.bmp", "GroundTruth", f"PA_BBB01_RL_S_GT_1_{i}.bmp") for i in (1, 2, 3)]
    for sample, k in zip(b.test, range(3)):
        assert (binarize_mask(read_mask_values(sample.mask_path), b.mask_encoding) == defect_region(10 + k)).all()
    c = adapter.index("PU_CCC01_TL")  # normal-only class, NoDefect spelling
    assert c.counts() == {"train_good": 0, "test_good": 0, "pool_good": 5} and c.defects == ()
    assert any("no defect folder" in note for note in c.notes)


def test_piped_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_piped_like(tmp_path / "somewhere" / "PIPED")
    monkeypatch.setenv("PIPED_ROOT", str(tmp_path / "somewhere" / "PIPED"))
    assert resolve_piped_root() == data
    assert resolve_piped_root(data) == data  # the data folder itself
    monkeypatch.setenv("PIPED_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="PIPED not found"):
        piped_adapter()


def test_pair_key() -> None:
    assert pair_key("X_S_GT_01_1.bmp") == pair_key("X_S_GT_1_1.bmp") == "X_S_GT_1_1.bmp"
    assert pair_key("a007b10") == "a7b10"


# ----------------------------------------------------------------------------- VisA
@pytest.mark.parametrize("mask_max", [1, 255])
def test_visa_csv_with_jpegs(tmp_path: Path, mask_max: int) -> None:
    root = make_visa_like(tmp_path / "VisA", mask_max=mask_max)
    adapter = get_adapter("visa", root=root)
    assert adapter.categories() == ["candle", "pcb1"]
    idx = adapter.index("candle")
    assert idx.counts() == {"train_good": 4, "test_good": 2, "test_anomaly": 2}
    assert idx.has_official_split and idx.pool == ()
    assert [p.name for p in idx.train] == ["0000.JPG", "0001.JPG", "0002.JPG", "0003.JPG"]
    assert [(s.label, s.defect_type, s.image_path.name) for s in idx.test] == [
        (0, "good", "0004.JPG"), (0, "good", "0005.JPG"), (1, "anomaly", "000.JPG"), (1, "anomaly", "001.JPG")]
    for k, sample in enumerate(idx.defects):
        values = read_mask_values(sample.mask_path)
        assert set(np.unique(values)) == {0, mask_max}
        assert (binarize_mask(values, idx.mask_encoding) == defect_region(k, (20, SIZE))).all()
    assert adapter.index("pcb1").counts() == {"train_good": 3, "test_good": 1, "test_anomaly": 1}


def test_visa_csv_naming_missing_file(tmp_path: Path) -> None:
    root = make_visa_like(tmp_path / "VisA")
    missing = root / "candle/Data/Masks/Anomaly/001.png"
    missing.unlink()
    with pytest.raises(DataError, match=r"1cls\.csv:\d+ names a missing mask file: .*001\.png"):
        get_adapter("visa", root=root).index("candle")
    (root / "pcb1/Data/Images/Normal/0000.JPG").unlink()
    with pytest.raises(DataError, match=r"missing image file: .*pcb1/Data/Images/Normal/0000\.JPG"):
        get_adapter("visa", root=root).index("pcb1")


def test_visa_bad_csv(tmp_path: Path) -> None:
    root = make_visa_like(tmp_path / "VisA")
    text = (root / "split_csv/1cls.csv").read_text()
    (root / "split_csv/1cls.csv").write_text(text.replace("anomaly", "broken", 1))
    with pytest.raises(DataError, match=r"1cls\.csv:\d+: label 'broken'"):
        get_adapter("visa", root=root).categories()
    (root / "split_csv/1cls.csv").write_text(text.replace("label", "lbl", 1))
    with pytest.raises(DataError, match=r"missing columns \['label'\]"):
        get_adapter("visa", root=root).categories()
    with pytest.raises(DataError, match="category 'cable' not found"):
        get_adapter("visa", root=make_visa_like(tmp_path / "V2")).index("cable")
    with pytest.raises(DataError, match="VisA split file .* not found"):
        get_adapter("visa", root=tmp_path)


# ----------------------------------------------------------------------------- MVTec AD and the registry
def test_mvtec_adapter_matches_index_category(tiny_mvtec: Path) -> None:
    adapter = get_adapter("mvtec", root=tiny_mvtec)
    assert adapter.categories() == ["brick", "grass"]
    idx, ref = adapter.index("brick"), index_category(tiny_mvtec, "brick")
    assert idx.train == ref.train and idx.test == ref.test and idx.counts() == ref.counts()
    assert idx.mask_encoding == MaskEncoding("high", 0) and idx.has_official_split


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset adapter 'kolektor'.*\['mvtec', 'visa', 'folder', 'piped'\]"):
        get_adapter("kolektor")
    with pytest.raises(ValueError, match="bad parameters for dataset adapter 'folder'.*mask_templte"):
        get_adapter("folder", root=tmp_path, mask_templte="{stem}.png")
    with pytest.raises(ValueError, match="bad parameters for the piped adapter.*mask_polarty"):
        get_adapter("piped", root=make_piped_like(tmp_path / "PIPED"), mask_polarty="low")
    with pytest.raises(ValueError, match="mask_template='{stm}.png' is not valid"):
        FolderAdapter(tmp_path, mask_template="{stm}.png")


# ----------------------------------------------------------------------------- bad input
def test_mask_that_pairs_with_no_image(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    stray = data / "PA_AAA01_TL/Defects/GroundThruth/PA_AAA01_TL_S_GT_01_9.bmp"
    save_1bit_inverted(stray, defect_region(0))
    with pytest.raises(DataError, match=r"pair with no image, e\.g\. .*PA_AAA01_TL_S_GT_01_9\.bmp"):
        piped_adapter(data).index("PA_AAA01_TL")


def test_defect_image_without_mask(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    (data / "PA_BBB01_RL/Defects/GroundTruth/PA_BBB01_RL_S_GT_1_2.bmp").unlink()
    with pytest.raises(DataError, match=r"defect image .*PA_BBB01_RL_S_D_01_2\.bmp has no mask: expected "
                                        r".*GroundTruth/PA_BBB01_RL_S_GT_01_2\.bmp"):
        piped_adapter(data).index("PA_BBB01_RL")


def test_empty_class_and_ambiguous_folders(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    (data / "PA_EMPTY01_TL" / "NoDefects").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty class 'PA_EMPTY01_TL': no normal images in .*PA_EMPTY01_TL/NoDefects"):
        piped_adapter(data).index("PA_EMPTY01_TL")
    (data / "PA_BARE01_TL").mkdir()
    with pytest.raises(DataError, match=r"PA_BARE01_TL: no normal-image folder; looked for \['NoDefects', 'NoDefect'\]"):
        piped_adapter(data).index("PA_BARE01_TL")
    (data / "PA_AAA01_TL/Defects/GroundTruth").mkdir()
    with pytest.raises(DataError, match=r"several mask \(impurity\) folders exist \['Defects/GroundTruth', 'Defects/GroundThruth'\].*'{defect_type}' in mask_dir"):
        piped_adapter(data).index("PA_AAA01_TL")
