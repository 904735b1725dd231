"""The converter to the MVTec AD layout: round trips, seeded splits, checks, atomic output, manifest, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SURFACE_COMMAND  # tests/ is on sys.path (rootdir conftest)
from PIL import Image
from test_adapters import (  # tests/unit/ is on sys.path (pytest rootdir-relative import)
    defect_region,
    make_piped_like,
    make_visa_like,
    rgb,
    save_1bit_inverted,
)

from stfpm_lib.data import DataError, index_category, list_categories
from stfpm_lib.data.adapters import binarize_mask, get_adapter, read_mask_values
from stfpm_lib.data.convert import MANIFEST_NAME, convert_to_mvtec, verify_mvtec_root
from stfpm_lib.data.folder import piped_adapter
from stfpm_lib.data.imageio import EmptyMaskWarning
from stfpm_lib.runner.data_commands import main as data_cli


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _sources(out: Path) -> dict[str, str]:
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    return {rec["path"]: rec["source"] for entry in manifest["categories"].values() for rec in entry["files"]}


def test_piped_round_trip(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    adapter = piped_adapter(data)
    out = convert_to_mvtec(adapter, tmp_path / "out", n_train=4, n_test_good=2, seed=0)
    assert list_categories(out) == ["PA_AAA01_TL", "PA_BBB01_RL"]  # the normal-only class is skipped
    for category in ("PA_AAA01_TL", "PA_BBB01_RL"):
        idx = index_category(out, category)
        assert idx.counts() == {"train_good": 4, "test_good": 2, "test_impurity": 3}
        src = adapter.index(category)
        # normals: disjoint train/test drawn from the source normals, pixels unchanged
        train_src = {_sources(out)[p.relative_to(out).as_posix()] for p in idx.train}
        good_src = {_sources(out)[s.image_path.relative_to(out).as_posix()] for s in idx.test if s.label == 0}
        assert not train_src & good_src
        assert train_src | good_src <= {p.relative_to(data).as_posix() for p in src.pool}
        # defects: same images, masks equal after polarity normalisation (255 = defect)
        by_name = {s.image_path.stem: s for s in src.defects}
        for sample in idx.test[2:]:
            source = by_name[sample.image_path.stem]
            assert np.array_equal(_pixels(sample.image_path), _pixels(source.image_path))
            written = read_mask_values(sample.mask_path)
            assert set(np.unique(written)) == {0, 255}
            expected = binarize_mask(read_mask_values(source.mask_path), src.mask_encoding)
            assert np.array_equal(written == 255, expected)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["source"]["adapter"] == "piped" and manifest["source"]["params"]["mask_polarity"] == "low"
    assert manifest["counts"]["PA_BBB01_RL"] == {"train_good": 4, "test_good": 2, "test_impurity": 3}
    assert manifest["skipped_categories"] == {"PU_CCC01_TL": "no anomalous images (normal-only class)"}
    changes = " ".join(manifest["changes"])
    assert "BMP -> PNG" in changes and "inverted" in changes and "seed 0" in changes
    assert str(tmp_path) not in (out / MANIFEST_NAME).read_text()  # no absolute paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PIPED", "out"]  # no temp folder left


def test_default_split_is_a_third_and_seeded(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    a = convert_to_mvtec(piped_adapter(data), tmp_path / "a", categories=["PA_AAA01_TL"], seed=0)
    b = convert_to_mvtec(piped_adapter(data), tmp_path / "b", categories=["PA_AAA01_TL"], seed=0)
    assert index_category(a, "PA_AAA01_TL").counts() == {"train_good": 4, "test_good": 2, "test_impurity": 3}
    names = lambda root: sorted(p.name for p in (root / "PA_AAA01_TL/test/good").iterdir())  # noqa: E731
    assert names(a) == names(b)
    for path in a.rglob("*.png"):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
    seeds = {tuple(names(convert_to_mvtec(piped_adapter(data), tmp_path / f"s{s}", categories=["PA_AAA01_TL"], seed=s)))
             for s in range(6)}
    assert len(seeds) > 1  # 15 possible test pairs: six seeds cannot all give the same one unless the seed is ignored


def test_visa_round_trip_normalises_01_masks(tmp_path: Path) -> None:
    root = make_visa_like(tmp_path / "VisA", mask_max=1)
    out = convert_to_mvtec(get_adapter("visa", root=root), tmp_path / "out", image_format="keep")
    assert index_category(out, "candle").counts() == {"train_good": 4, "test_good": 2, "test_anomaly": 2}
    assert index_category(out, "pcb1").counts() == {"train_good": 3, "test_good": 1, "test_anomaly": 1}
    idx = index_category(out, "candle")
    assert [p.name for p in idx.train] == ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]  # kept byte for byte
    assert idx.train[0].read_bytes() == (root / "candle/Data/Images/Normal/0000.JPG").read_bytes()
    for k, sample in enumerate(idx.test[2:]):
        assert np.array_equal(read_mask_values(sample.mask_path), defect_region(k, (20, 16)).astype(np.uint8) * 255)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert not any(c.startswith("image format") for c in manifest["changes"])  # 'keep': images not re-encoded
    assert manifest["changes"][0].startswith("masks (PNG) binarised by 'defect where value > 0'")


def test_mvtec_round_trip_and_subsample(tiny_mvtec: Path, tmp_path: Path) -> None:
    adapter = get_adapter("mvtec", root=tiny_mvtec)
    out = convert_to_mvtec(adapter, tmp_path / "same", image_format="keep")
    for category in ("brick", "grass"):
        assert index_category(out, category).counts() == index_category(tiny_mvtec, category).counts()
    for path in (tiny_mvtec / "brick").rglob("*.png"):
        copy = out / path.relative_to(tiny_mvtec)
        if "ground_truth" in path.parts:  # masks are re-encoded as 0/255 PNG: same pixels
            assert np.array_equal(np.asarray(Image.open(copy)), np.asarray(Image.open(path)))
        else:  # images copied byte for byte
            assert path.read_bytes() == copy.read_bytes()
    small = convert_to_mvtec(adapter, tmp_path / "small", categories=["brick"], n_train=5, n_test_good=2,
                             max_defects_per_type=1)
    assert index_category(small, "brick").counts() == {"train_good": 5, "test_good": 2, "test_blob": 1,
                                                       "test_scratch": 1}
    with pytest.raises(DataError, match="asked for 50 images but only 12 exist"):
        convert_to_mvtec(adapter, tmp_path / "big", n_train=50)


def test_images_of_different_sizes(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    odd = data / "PA_AAA01_TL/NoDefects/PA_AAA01_TL_S_ND_01_3.bmp"
    Image.fromarray(rgb(7, (15, 16))).save(odd)
    with pytest.raises(DataError, match=r"images of different sizes; most are 16x16 but 1 differ: "
                                        r".*PA_AAA01_TL_S_ND_01_3\.bmp \(15x16\).*'allow', the default"):
        convert_to_mvtec(piped_adapter(data), tmp_path / "out", categories=["PA_AAA01_TL"], size_mismatch="error")
    assert not (tmp_path / "out").exists()
    out = convert_to_mvtec(piped_adapter(data), tmp_path / "out", categories=["PA_AAA01_TL"], size_mismatch="skip")
    assert index_category(out, "PA_AAA01_TL").counts() == {"train_good": 4, "test_good": 1, "test_impurity": 3}
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["categories"]["PA_AAA01_TL"]["skipped_files"][0]["source"].endswith("PA_AAA01_TL_S_ND_01_3.bmp")
    allowed = convert_to_mvtec(piped_adapter(data), tmp_path / "all", categories=["PA_AAA01_TL"])  # the default
    assert index_category(allowed, "PA_AAA01_TL").counts() == {"train_good": 4, "test_good": 2, "test_impurity": 3}
    entry = json.loads((allowed / MANIFEST_NAME).read_text())["categories"]["PA_AAA01_TL"]
    assert entry["image_size_wh"] is None and entry["image_sizes_wh"] == {"16x16": 8, "15x16": 1}
    assert verify_mvtec_root(allowed)["PA_AAA01_TL"]["test_good"] == 2
    images = sorted((data / "PA_AAA01_TL").glob("*/*.bmp"))  # the 6 normals and the 3 defects
    for i, path in enumerate(images):  # three sizes, three images each: 'skip' would keep a third
        Image.fromarray(rgb(i, (14 + i % 3, 16))).save(path)
    with pytest.raises(DataError, match=r"size_mismatch='skip' would leave out 6 of 9 images \(67%\): only 3 are "
                                        r"1[456]x16, the most common of 3 sizes; use size_mismatch='allow'"):
        convert_to_mvtec(piped_adapter(data), tmp_path / "skip", categories=["PA_AAA01_TL"], size_mismatch="skip")


def test_mask_of_another_size_and_nothing_half_written(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    mask = data / "PA_BBB01_RL/Defects/GroundTruth/PA_BBB01_RL_S_GT_1_3.bmp"
    save_1bit_inverted(mask, np.zeros((16, 12), bool) | (np.arange(12) < 2))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"mask .*PA_BBB01_RL_S_GT_1_3\.bmp is 12x16 but its image "
                                        r".*PA_BBB01_RL_S_D_01_3\.bmp is 16x16"):
        convert_to_mvtec(piped_adapter(data), out)  # fails in the 2nd category, after the 1st was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PIPED"]  # no output, no temp folder


def test_empty_and_inverted_masks_are_refused(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    save_1bit_inverted(data / "PA_AAA01_TL/Defects/GroundThruth/PA_AAA01_TL_S_GT_01_2.bmp", np.zeros((16, 16), bool))
    with pytest.raises(DataError, match=r"mask .*PA_AAA01_TL_S_GT_01_2\.bmp has no defect pixel under the rule "
                                        r"'defect where value <= 0' \(values found: \[255\]\)"):
        convert_to_mvtec(piped_adapter(data), tmp_path / "out", categories=["PA_AAA01_TL"])
    with pytest.raises(DataError, match=r"median mask marks 9\d% of its image as defect.*polarity is probably inverted"):
        convert_to_mvtec(piped_adapter(data, mask_polarity="high"), tmp_path / "out", categories=["PA_BBB01_RL"])
    with pytest.warns(EmptyMaskWarning, match=r"PA_AAA01_TL_S_GT_01_2\.bmp has no defect pixel") as caught:
        out = convert_to_mvtec(piped_adapter(data), tmp_path / "out", categories=["PA_AAA01_TL"],
                               allow_empty_masks=True, n_train=4, n_test_good=2)
    assert any("PA_AAA01_TL_S_D_01_2_mask.png" in str(w.message) for w in caught)  # and again when verified
    assert index_category(out, "PA_AAA01_TL").counts()["test_impurity"] == 3


def test_existing_output_and_overwrite(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    out = convert_to_mvtec(piped_adapter(data), tmp_path / "out", categories=["PA_AAA01_TL"])
    with pytest.raises(DataError, match="already exists"):
        convert_to_mvtec(piped_adapter(data), out, categories=["PA_BBB01_RL"])
    convert_to_mvtec(piped_adapter(data), out, categories=["PA_BBB01_RL"], overwrite=True)
    assert list_categories(out) == ["PA_BBB01_RL"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PIPED", "out"]
    with pytest.raises(DataError, match="nothing to convert"):
        convert_to_mvtec(piped_adapter(data), tmp_path / "x", categories=["PU_CCC01_TL"])
    with pytest.raises(DataError, match="'PU_CCC01_TL'.*normal-only"):
        convert_to_mvtec(piped_adapter(data), tmp_path / "x", categories=["PU_CCC01_TL"], normal_only="error")


def test_verify_detects_tampering_and_unpaired_masks(tmp_path: Path) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    out = convert_to_mvtec(piped_adapter(data), tmp_path / "out", categories=["PA_AAA01_TL"])
    assert verify_mvtec_root(out) == {"PA_AAA01_TL": {"train_good": 4, "test_good": 2, "test_impurity": 3}}
    image = next((out / "PA_AAA01_TL/train/good").iterdir())
    Image.fromarray(rgb(99)).save(image)
    with pytest.raises(DataError, match=f"{image.name}: sha256 differs from the manifest"):
        verify_mvtec_root(out)
    stray = out / "PA_AAA01_TL/ground_truth/impurity/zzz_mask.png"
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(stray)
    with pytest.raises(DataError, match=r"mask .*zzz_mask\.png pairs with no test image"):
        verify_mvtec_root(out, check_manifest=False)


def test_cli_convert_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_piped_like(tmp_path / "PIPED")
    assert data_cli(["list", "--adapter", "piped", "--root", str(data)]) == 0
    assert "PA_BBB01_RL: {'train_good': 0, 'test_good': 0, 'pool_good': 6, 'test_impurity': 3}" in capsys.readouterr().out
    args = ["convert", "--adapter", "folder", "--root", str(data), "--out", str(tmp_path / "out"),
            "--categories", "PA_AAA01_TL", "--n-train", "3", "--n-test-good", "3",
            "-p", "normal_dir", '["NoDefects"]', "-p", "defect_dirs", '{"impurity": "Defects"}',
            "-p", "mask_dir", "Defects/GroundThruth", "-p", "mask_template", "{stem}.bmp",
            "-p", "stem_replace", '[["_S_D_", "_S_GT_"]]', "-p", "mask_polarity", "low"]
    assert data_cli(args) == 0
    assert index_category(tmp_path / "out", "PA_AAA01_TL").counts() == {"train_good": 3, "test_good": 3,
                                                                       "test_impurity": 3}
    assert data_cli(["verify", str(tmp_path / "out")]) == 0
    assert data_cli(args) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    (data / "PA_AAA01_TL/Defects/GroundThruth/PA_AAA01_TL_S_GT_01_1.bmp").unlink()
    assert data_cli(["list", "--adapter", "piped", "--root", str(data)]) == 2  # a category that does not index
    captured = capsys.readouterr()
    assert "PA_BBB01_RL: {" in captured.out and "PA_AAA01_TL" not in captured.out
    assert "error: PA_AAA01_TL: defect image" in captured.err and "PA_AAA01_TL_S_D_01_1.bmp has no mask" in captured.err
    assert data_cli(["list", "--adapter", "folder", "--root", str(data), "-p", "defect_dirs", "3"]) == 2
    assert "error: defect_dirs=3 must be a folder, a glob" in capsys.readouterr().err
    # the old spelling still works, with a deprecation message
    assert data_cli(["list", "--adapter", "folder", "--root", str(data), "--param", "defect_dirs=3"]) == 2
    err = capsys.readouterr().err
    assert "--param KEY=VALUE is deprecated; use -p KEY VALUE" in err and "error: defect_dirs=3 must be" in err


def test_docs_show_the_surface_command() -> None:
    """The worked example of the docs (README or docs/) is the command the next test runs."""
    import shlex

    repo = Path(__file__).resolve().parents[2]
    marker = "## Worked example: several top-level folders"
    pages = [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.is_file()]
    texts = [p.read_text(encoding="utf-8") for p in pages if marker in p.read_text(encoding="utf-8")]
    assert len(texts) == 1, "the worked example must stand in exactly one page"
    block = texts[0][texts[0].index(marker):]
    command = shlex.split(block[block.index("stfpm data convert"):block.index("stfpm reproduce")]
                          .replace("\\\n", " "))
    assert command[:2] == ["stfpm", "data"]
    options = command[2:]
    for flag in ("--root", "--out"):  # the test below gives its own paths
        i = options.index(flag)
        del options[i:i + 2]
    assert options == SURFACE_COMMAND  # what the test below runs is what the docs say


def test_cli_converts_the_surface_layout_in_one_command(surface_defects: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import SURFACE_SIZES, SURFACE_TYPES

    out = tmp_path / "surface_mvtec"
    with pytest.warns(EmptyMaskWarning, match=r"MT_Uneven/exp0_num_1021\.png has no defect pixel"):
        assert data_cli(SURFACE_COMMAND + ["--root", str(surface_defects), "--out", str(out)]) == 0
    counts = {"train_good": 8, "test_good": 4, **{f"test_{t}": 2 for t in SURFACE_TYPES}}
    assert verify_mvtec_root(out) == {"Magnetic-tile-defect": counts}
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    entry = manifest["categories"]["Magnetic-tile-defect"]
    assert entry["empty_masks"] == ["MT_Uneven/exp0_num_1021.png"]
    assert entry["image_size_wh"] is None
    assert entry["image_sizes_wh"] == {f"{w}x{h}": n for (w, h), n in zip(SURFACE_SIZES, (8, 7, 7))}  # 22 in turn
    assert manifest["source"]["root_relative"] == "../Magnetic-tile-defect"
    assert (out / manifest["source"]["root_relative"]).resolve() == surface_defects.resolve()
    assert str(tmp_path) not in (out / MANIFEST_NAME).read_text()  # no absolute paths
    idx = index_category(out, "Magnetic-tile-defect")
    for sample in idx.test:  # each mask the size of its image; anti-aliased edges binarised at > 127
        if sample.mask_path is None:
            continue
        source = surface_defects / f"MT_{sample.defect_type}" / f"{sample.image_path.stem}.png"
        expected = np.asarray(Image.open(source)) > 127
        assert np.array_equal(read_mask_values(sample.mask_path) == 255, expected)
        assert Image.open(sample.image_path).size == Image.open(source).size
