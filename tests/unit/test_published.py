"""The published numbers: transcription checks (means recomputed), validation and the wide tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stfpm_lib.data.mvtec import MVTEC_CATEGORIES
from stfpm_lib.reporting.published import (
    COLUMNS,
    PUBLISHED_CSV,
    PublishedDataError,
    check_means,
    load_published,
    published_table,
    source_labels,
)


def _per_category(df: pd.DataFrame, sid: str, metric: str) -> pd.Series:
    sel = df[(df.source_id == sid) & (df.metric == metric) & (df.category != "mean")]
    return sel.set_index("category")["value"]


def _stated_mean(df: pd.DataFrame, sid: str, metric: str) -> float:
    sel = df[(df.source_id == sid) & (df.metric == metric) & (df.category == "mean")]
    assert len(sel) == 1
    return float(sel["value"].iloc[0])


def test_file_shape_and_columns():
    df = load_published()
    assert tuple(df.columns) == COLUMNS
    assert PUBLISHED_CSV.name == "stfpm_published.csv"
    # 15 categories + mean for every full table: OFF 3 metrics, anomalib 2x3, HCW 2, PAPER pixel
    assert len(df[df.source_id == "OFF"]) == 3 * 16
    assert len(df[df.source_id.isin(["ANO_R18", "ANO_WRN50"])]) == 6 * 16
    assert len(df[df.source_id == "HCW"]) == 2 * 16
    assert len(df[df.source_id == "PAPER"]) == 16 + 1  # pixel per category + mean, image mean only


def test_official_readme_means_recomputed_exactly():
    df = load_published()
    # stated README means; the per-category values have 6 decimals, so the mean matches to ~1e-6
    for metric, stated in (("pixel_auroc", 0.970174), ("image_auroc", 0.955488), ("official_pro", 0.928347)):
        values = _per_category(df, "OFF", metric)
        assert sorted(values.index) == sorted(MVTEC_CATEGORIES)
        assert _stated_mean(df, "OFF", metric) == stated
        assert abs(values.mean() - stated) <= 1e-6, metric


def test_paper_pixel_mean_of_rounded_values():
    df = load_published()
    values = _per_category(df, "PAPER", "pixel_auroc")
    assert len(values) == 15
    assert values.sum() == pytest.approx(14.564, abs=1e-9)  # hand sum of the 15 printed values
    assert values.mean() == pytest.approx(0.9709, abs=5e-5)
    assert _stated_mean(df, "PAPER", "pixel_auroc") == 0.970
    assert _stated_mean(df, "PAPER", "image_auroc") == 0.955


@pytest.mark.parametrize("sid,metric", [
    ("ANO_R18", "image_auroc"), ("ANO_R18", "pixel_auroc"), ("ANO_R18", "image_f1"),
    ("ANO_WRN50", "image_auroc"), ("ANO_WRN50", "pixel_auroc"), ("ANO_WRN50", "image_f1"),
    ("HCW", "pixel_auroc"), ("HCW", "image_auroc"), ("PAPER", "pixel_auroc"),
])
def test_three_decimal_means_within_rounding(sid, metric):
    df = load_published()
    values = _per_category(df, sid, metric)
    assert len(values) == 15
    # stated mean rounded to 3 decimals (±0.0005) of values rounded to 3 decimals (±0.0005)
    assert abs(values.mean() - _stated_mean(df, sid, metric)) <= 0.001 + 1e-12


def test_check_means_covers_all_full_tables_and_passes():
    result = check_means()
    pairs = set(zip(result.source_id, result.metric))
    assert pairs == {("OFF", "pixel_auroc"), ("OFF", "image_auroc"), ("OFF", "official_pro"),
                     ("ANO_R18", "image_auroc"), ("ANO_R18", "pixel_auroc"), ("ANO_R18", "image_f1"),
                     ("ANO_WRN50", "image_auroc"), ("ANO_WRN50", "pixel_auroc"), ("ANO_WRN50", "image_f1"),
                     ("HCW", "pixel_auroc"), ("HCW", "image_auroc"), ("PAPER", "pixel_auroc")}
    assert result["ok"].all(), result[~result["ok"]]


def test_check_means_catches_a_typo():
    df = load_published()
    bad = df.copy()
    row = bad.index[(bad.source_id == "ANO_R18") & (bad.metric == "pixel_auroc") & (bad.category == "cable")][0]
    bad.loc[row, "value"] = 0.989  # typed .989 instead of .898: mean moves by 0.006
    result = check_means(bad).set_index(["source_id", "metric"])
    assert not result.loc[("ANO_R18", "pixel_auroc"), "ok"]
    assert result.drop(("ANO_R18", "pixel_auroc"))["ok"].all()


def test_spot_values_and_notes():
    df = load_published().set_index(["source_id", "category", "metric"])
    assert df.loc[("OFF", "transistor", "pixel_auroc"), "value"] == 0.819404
    assert df.loc[("OFF", "zipper", "official_pro"), "value"] == 0.868873
    assert df.loc[("PAPER", "transistor", "pixel_auroc"), "value"] == 0.825
    assert df.loc[("ANO_WRN50", "toothbrush", "pixel_auroc"), "value"] == 0.178
    assert df.loc[("XIA", "transistor", "pixel_auroc"), "value"] == 0.921
    assert df.loc[("PADDLE", "toothbrush", "image_auroc"), "value"] == 0.772
    assert df.loc[("PPI", "mean", "pixel_auroc"), "value"] == 0.962
    assert df.loc[("ANO_WRN50", "carpet", "pixel_auroc"), "backbone"] == "wide_resnet50_2"
    pro_notes = load_published(metrics="official_pro")["note"]
    assert pro_notes.str.contains("not MVTec AU-PRO").all()


def test_unverified_paper_pro_is_not_stored():
    df = load_published(sources="PAPER")
    assert set(df.metric) == {"pixel_auroc", "image_auroc"}
    assert not load_published()["note"].str.contains("UNVERIFIED").any()


def test_filters_and_labels():
    df = load_published(sources=["OFF", "HCW"], metrics="image_auroc", categories=["carpet", "mean"])
    assert set(df.source_id) == {"OFF", "HCW"} and set(df.category) == {"carpet", "mean"} and len(df) == 4
    labels = source_labels()
    assert labels["OFF"] == "Official code README (gdwang08/STFPM @2598a5e)"
    assert labels["ANO_R18"] == "anomalib README (R18, 2021-12)"
    assert list(labels)[:2] == ["PAPER", "OFF"]


def test_published_table_wide():
    wide = published_table("pixel_auroc")
    assert list(wide.index) == list(MVTEC_CATEGORIES) + ["mean"]
    assert list(wide.columns) == ["PAPER", "OFF", "ANO_R18", "ANO_WRN50", "HCW", "HCW_LEGACY", "XIA", "PADDLE", "PPI"]
    assert wide.loc["tile", "XIA"] == 0.919 and np.isnan(wide.loc["carpet", "XIA"])
    assert np.isnan(wide.loc["carpet", "PPI"]) and wide.loc["mean", "PPI"] == 0.962
    assert list(published_table("official_pro").columns) == ["OFF"]
    with pytest.raises(ValueError, match="au_pro"):
        published_table("au_pro")


def test_validation_names_the_bad_row(tmp_path):
    text = PUBLISHED_CSV.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.csv"
    text[3] = text[3].replace(",0.993,", ",9.93,")  # PAPER leather pixel 0.993 mistyped
    bad.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(PublishedDataError, match=r"bad\.csv: row 4: value=9\.93"):
        load_published(path=bad)
    with pytest.raises(PublishedDataError, match="not found"):
        load_published(path=tmp_path / "missing.csv")
    dup = tmp_path / "dup.csv"
    lines = PUBLISHED_CSV.read_text(encoding="utf-8").splitlines()
    dup.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(PublishedDataError, match="duplicate"):
        load_published(path=dup)
