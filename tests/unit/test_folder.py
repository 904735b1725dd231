"""The folder adapter (stfpm_lib/data/folder.py) on folders made by the tests: layouts, mask pairing, globs, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SURFACE_TYPES  # tests/ is on sys.path (rootdir conftest)
from PIL import Image
from test_adapters import defect_region, rgb  # tests/unit/ is on sys.path (pytest rootdir-relative import)

from stfpm_lib.data import DataError
from stfpm_lib.data.adapters import MaskEncoding, get_adapter
from stfpm_lib.data.folder import FolderAdapter

SURFACE = {"normal_dir": "MT_Free", "defect_dirs": "MT_*", "mask_template": "{stem}.png"}


# ----------------------------------------------------------------------------- generic folders
def _folder(root: Path, masks: str = "masks", template: str = "{stem}.png") -> Path:
    cat = root / "widget"
    for i in range(4):
        (cat / "ok").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb(i)).save(cat / "ok" / f"n{i}.png")
    for t, dtype in enumerate(("crack", "stain")):
        for i in range(2):
            (cat / "nok" / dtype).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb(10 * t + i)).save(cat / "nok" / dtype / f"d{i}.png")
            mask_dir = cat / masks.format(defect_type=dtype)
            mask_dir.mkdir(parents=True, exist_ok=True)
            name = template.format(stem=f"d{i}", defect_type=dtype)
            Image.fromarray(defect_region(10 * t + i).astype(np.uint8) * 255).save(mask_dir / name)
    return root


def test_folder_defect_type_subfolders_and_mask_template(tmp_path: Path) -> None:
    root = _folder(tmp_path, masks="masks/{defect_type}", template="{stem}.png")
    adapter = get_adapter("folder", root=root, normal_dir="ok", defect_dirs="nok/*", mask_dir="masks/{defect_type}",
                          mask_template="{stem}.png")
    assert adapter.categories() == ["widget"]
    idx = adapter.index("widget")
    assert idx.counts() == {"train_good": 0, "test_good": 0, "pool_good": 4, "test_crack": 2, "test_stain": 2}
    assert [(s.defect_type, s.image_path.name, s.mask_path.relative_to(root / "widget").as_posix()) for s in idx.test] == [
        ("crack", "d0.png", "masks/crack/d0.png"), ("crack", "d1.png", "masks/crack/d1.png"),
        ("stain", "d0.png", "masks/stain/d0.png"), ("stain", "d1.png", "masks/stain/d1.png")]
    assert idx.mask_encoding == MaskEncoding("high", 0)


def test_folder_masks_beside_images_and_single_category_root(tmp_path: Path) -> None:
    cat = tmp_path / "bolt"
    for i in range(3):
        (cat / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb(i)).save(cat / "good" / f"{i}.png")
    (cat / "bad").mkdir()
    for i in range(2):
        Image.fromarray(rgb(20 + i)).save(cat / "bad" / f"b{i}.png")
        Image.fromarray(defect_region(i).astype(np.uint8) * 255).save(cat / "bad" / f"b{i}_mask.png")
    adapter = FolderAdapter(cat, defect_dirs={"bad": "bad"})  # root is the category; masks beside images
    assert adapter.categories() == ["bolt"]
    idx = adapter.index("bolt")
    assert [(s.image_path.name, s.mask_path.name) for s in idx.test] == [("b0.png", "b0_mask.png"),
                                                                        ("b1.png", "b1_mask.png")]
    assert len(idx.pool) == 3


def test_folder_glob_template(tmp_path: Path) -> None:
    root = _folder(tmp_path, masks="gt", template="{stem}_{defect_type}.tif")
    adapter = get_adapter("folder", root=root, normal_dir="ok", defect_dirs={"crack": "nok/crack", "stain": "nok/stain"},
                          mask_dir="gt", mask_template="{stem}_{defect_type}.*")
    idx = adapter.index("widget")
    assert sorted(s.mask_path.name for s in idx.test) == ["d0_crack.tif", "d0_stain.tif", "d1_crack.tif",
                                                          "d1_stain.tif"]


# ----------------------------------------------------------------------------- masks beside images, several top-level folders
def test_surface_layout_masks_beside_jpegs_are_not_normals(surface_defects: Path) -> None:
    adapter = get_adapter("folder", root=surface_defects, **SURFACE)
    assert adapter.categories() == ["Magnetic-tile-defect"]  # the root holds the normal folder: one category
    idx = adapter.index("Magnetic-tile-defect")
    assert idx.counts() == {"train_good": 0, "test_good": 0, "pool_good": 12,
                            **{f"test_{t}": 2 for t in SURFACE_TYPES}}  # 12 normals, not 24 (their masks are no images)
    assert {p.suffix for p in idx.pool} == {".jpg"}
    assert all(s.image_path.suffix == ".jpg" and s.mask_path == s.image_path.with_suffix(".png") for s in idx.defects)
    assert idx.notes[0] == ("Magnetic-tile-defect: normal images from MT_Free (12 file(s) there are masks by the "
                            "template, not images)")
    assert "Magnetic-tile-defect/Crack: images from MT_Crack, masks from MT_Crack" in idx.notes


def test_extensions_select_images_only(surface_defects: Path) -> None:
    both = get_adapter("folder", root=surface_defects, **SURFACE).index("Magnetic-tile-defect")
    jpg = get_adapter("folder", root=surface_defects, extensions=[".jpg"], **SURFACE).index("Magnetic-tile-defect")
    assert jpg.test == both.test and jpg.pool == both.pool  # the .png masks are still found


def test_missing_mask_that_exists_says_why(surface_defects: Path) -> None:
    first = sorted((surface_defects / "MT_Blowhole").glob("*.jpg"))[0]  # the first defect image indexed
    with pytest.raises(DataError, match=rf"{first.name} has no mask: expected .*{first.name}; that is the image "
                                        r"itself: the template maps the image onto its own name"):
        get_adapter("folder", root=surface_defects, extensions=[".jpg"], **{**SURFACE, "mask_template": "{stem}.jpg"}).index(
            "Magnetic-tile-defect")
    mask = sorted((surface_defects / "MT_Crack").glob("*.png"))[0]
    mask.unlink()
    mask.mkdir()
    with pytest.raises(DataError, match=rf"expected .*MT_Crack/{mask.name}; it exists but is a folder"):
        get_adapter("folder", root=surface_defects, **SURFACE).index("Magnetic-tile-defect")
    mask.rmdir()
    first.with_suffix(".txt").write_text("not a mask")
    with pytest.raises(DataError, match=r"\.txt; it exists but '\.txt' is not an image file extension"):
        get_adapter("folder", root=surface_defects, **{**SURFACE, "mask_template": "{stem}.txt"}).index(
            "Magnetic-tile-defect")


def test_defect_dirs_as_globs_and_lists(surface_defects: Path) -> None:
    for folder in surface_defects.iterdir():  # the real dataset's depth: MT_<type>/Imgs/
        (folder / "Imgs").mkdir()
        for f in list(folder.iterdir()):
            if f.is_file():
                f.rename(folder / "Imgs" / f.name)
    glob = get_adapter("folder", root=surface_defects, **{**SURFACE, "normal_dir": "MT_Free/Imgs",
                                                          "defect_dirs": "MT_*/Imgs"}).index("Magnetic-tile-defect")
    assert glob.defect_types == SURFACE_TYPES
    listed = get_adapter("folder", root=surface_defects, **{**SURFACE, "normal_dir": "MT_Free/Imgs",
                                                            "defect_dirs": ["MT_Crack/Imgs", "MT_Fray/Imgs"]})
    idx = listed.index("Magnetic-tile-defect")
    assert idx.defect_types == ("MT_Crack", "MT_Fray")  # the component in which the folders differ
    assert [s.image_path for s in idx.defects] == [s.image_path for s in glob.defects
                                                   if s.defect_type in ("Crack", "Fray")]
    assert listed.params()["defect_dirs"] == {"MT_Crack": ["MT_Crack/Imgs"], "MT_Fray": ["MT_Fray/Imgs"]}
    several = get_adapter("folder", root=surface_defects, **{**SURFACE, "normal_dir": "MT_Free/Imgs",
                                                             "defect_dirs": ["MT_B*/Imgs", "MT_[CF]*/Imgs"]})
    # the type is what the wildcards matched: 'MT_B*' leaves 'lowhole', '[CF]*' keeps the 'C' of 'Crack'
    assert several.index("Magnetic-tile-defect").defect_types == ("Crack", "Fray", "lowhole", "reak")
    normals = get_adapter("folder", root=surface_defects, **{**SURFACE, "normal_dir": "MT_[FU][rn]e*/Imgs",
                                                             "defect_dirs": "MT_B*/Imgs"}).index("Magnetic-tile-defect")
    assert len(normals.pool) == 12 + 2  # a glob normal_dir: every folder it matches (the Uneven images here)
    with pytest.raises(ValueError, match="mixes globs and plain folders"):
        FolderAdapter(surface_defects, defect_dirs=["MT_*/Imgs", "MT_Crack/Imgs"])
    with pytest.raises(ValueError, match=r"'MT_Crack/Imgs' and 'x/MT_Crack/Imgs' both give the defect type 'Imgs'"):
        FolderAdapter(surface_defects, defect_dirs=["MT_Crack/Imgs", "x/MT_Crack/Imgs"])
    with pytest.raises(ValueError, match=r"defect_dirs=3 must be a folder, a glob"):
        FolderAdapter(surface_defects, defect_dirs=3)


def test_mask_dir_candidates_that_all_exist_name_their_paths(surface_defects: Path) -> None:
    adapter = get_adapter("folder", root=surface_defects, normal_dir="MT_Free", defect_dirs={"Crack": "MT_Crack"},
                          mask_dir=["MT_Crack", "MT_Fray"], mask_template="{stem}.png")
    with pytest.raises(DataError, match=r"several mask \(Crack\) folders exist \['MT_Crack', 'MT_Fray'\].*"
                                        r"masks beside their images: mask_dir=None"):
        adapter.index("Magnetic-tile-defect")
    shutil.rmtree(surface_defects / "MT_Fray")
    assert adapter.index("Magnetic-tile-defect").counts()["test_Crack"] == 2
    (surface_defects / "masks_of_cracks").mkdir()  # one mask folder per type, named freely: a mapping
    for mask in (surface_defects / "MT_Crack").glob("*.png"):
        mask.rename(surface_defects / "masks_of_cracks" / mask.name)
    mapped = get_adapter("folder", root=surface_defects, normal_dir="MT_Free", mask_template="{stem}.png",
                         defect_dirs={"Crack": "MT_Crack", "Break": "MT_Break"}, mask_dir={"Crack": "masks_of_cracks"})
    with pytest.raises(DataError, match=r"mask_dir has no folder for the defect type 'Break' \(it has \['Crack'\]\)"):
        mapped.index("Magnetic-tile-defect")
    mapped = get_adapter("folder", root=surface_defects, normal_dir="MT_Free", mask_template="{stem}.png",
                         defect_dirs={"Crack": "MT_Crack"}, mask_dir={"Crack": ["masks_of_cracks"]})
    assert {s.mask_path.parent.name for s in mapped.index("Magnetic-tile-defect").defects} == {"masks_of_cracks"}
    assert mapped.params()["mask_dir"] == {"Crack": ["masks_of_cracks"]}
