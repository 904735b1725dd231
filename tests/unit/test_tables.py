"""Run tables from hand-written metrics.json files: means, groups, formats, published comparison, CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stfpm_lib.data.mvtec import MVTEC_CATEGORIES
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.records.evaluation import write_metrics_json
from stfpm_lib.reporting.published import load_published
from stfpm_lib.reporting.tables import (
    ReportError,
    category_group,
    collect_per_defect_type,
    collect_run,
    comparison_table,
    f1_table,
    format_latex,
    format_markdown,
    main,
    per_defect_type_table,
    results_table,
    write_tables,
)

IMAGENET = {"source": "imagenet", "name": "ResNet18_Weights.IMAGENET1K_V1", "path": None, "sha256": "ab" * 32}
RANDOM = {"source": "random", "name": "random", "path": None, "sha256": None, "seed": 0}

# category: image_auroc, pixel_auroc, au_pro, official_pro, image_f1, pixel_f1, train_time_s
VALUES = {
    "carpet": (0.9, 0.95, 0.8, 0.85, 0.7, 0.5, 10.0),
    "grid": (0.8, 0.97, 0.9, 0.91, 0.6, 0.4, 20.0),
    "bottle": (1.0, 0.99, 0.95, 0.96, 1.0, 0.8, 30.0),
    "widget": (0.5, 0.6, 0.3, 0.5, 0.4, 0.2, 40.0),
}
NAMES = ("image_auroc", "pixel_auroc", "au_pro", "official_pro", "image_f1", "pixel_f1")


def _write(run: Path, category: str, values, teacher=IMAGENET, epochs: int = 3, per_defect_type=None,
           **more) -> Path:
    metrics = dict(zip(NAMES, values[:6]))
    metrics["n_images"] = 10
    metrics.update(more)
    return write_metrics_json(
        run / category / "metrics.json", metrics=metrics,
        config={"preset": "official", "backbone": "resnet18", "epochs": epochs},
        teacher_weights=teacher, dataset={"root": "/nowhere", "category": category, "counts": {"train_good": 8}},
        wall_time_s=values[6] + 5.0, extra={"train_time_s": values[6]}, per_defect_type=per_defect_type)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "demo-run"
    for cat, values in VALUES.items():
        _write(run, cat, values)
    return run


def test_category_group():
    assert [category_group(c) for c in ("carpet", "wood", "bottle", "zipper", "widget")] == \
        ["texture", "texture", "object", "object", "other"]


def test_collect_run_rows_and_columns(run_dir):
    df = collect_run(run_dir)
    assert list(df["category"]) == ["carpet", "grid", "bottle", "widget"]  # MVTec order, others after
    assert list(df["group"]) == ["texture", "texture", "object", "other"]
    for name in NAMES + ("train_time_s", "wall_time_s", "teacher_weights", "backbone", "n_images"):
        assert name in df.columns
    assert df.set_index("category").loc["grid", "au_pro"] == 0.9
    assert df.set_index("category").loc["bottle", "train_time_s"] == 30.0
    assert df.set_index("category").loc["bottle", "wall_time_s"] == 35.0
    assert set(df["teacher_weights"]) == {"imagenet"}


def test_results_table_means_by_hand(run_dir):
    t = results_table(collect_run(run_dir), "demo-run")
    data = t.data.set_index("category")
    # all four: (0.9 + 0.8 + 1.0 + 0.5) / 4
    assert data.loc["mean", "image_auroc"] == pytest.approx(0.8)
    assert data.loc["mean", "pixel_auroc"] == pytest.approx((0.95 + 0.97 + 0.99 + 0.6) / 4)
    assert data.loc["mean", "train_time_s"] == pytest.approx(25.0)
    assert data.loc["mean (textures)", "image_auroc"] == pytest.approx(0.85)
    assert data.loc["mean (textures)", "au_pro"] == pytest.approx(0.85)
    assert data.loc["mean (objects)", "official_pro"] == pytest.approx(0.96)  # bottle only; widget is "other"
    assert t.n_body == 4 and len(t.cells) == 7
    assert "warning" not in t.data.columns and RANDOM_TEACHER_LABEL not in t.title
    assert "including non-MVTec ones" in " ".join(t.notes)  # widget is in the overall mean
    assert "au_pro_orig_res" not in t.data.columns
    assert f1_table(collect_run(run_dir)) is None  # no validation-threshold F1 in these files


def test_f1_and_original_resolution_columns(tmp_path):
    run = tmp_path / "r"
    _write(run, "carpet", VALUES["carpet"], image_f1_val=0.5, pixel_f1_val=0.25, au_pro_orig_res=0.7)
    _write(run, "bottle", VALUES["bottle"], image_f1_val=0.9, pixel_f1_val=0.45, au_pro_orig_res=0.8)
    df = collect_run(run)
    f1 = f1_table(df, "r").data.set_index("category")
    assert list(f1.columns) == ["group", "image_f1", "image_f1_val", "pixel_f1", "pixel_f1_val"]
    assert f1.loc["mean", "image_f1_val"] == pytest.approx(0.7)
    assert f1.loc["mean", "pixel_f1"] == pytest.approx(0.65)
    assert f1.loc["mean (objects)", "pixel_f1_val"] == pytest.approx(0.45)
    res = results_table(df, "r")
    assert "AU-PRO (original resolution)" in res.headers and "pixel_auroc_orig_res" not in res.data.columns
    assert res.data.set_index("category").loc["mean", "au_pro_orig_res"] == pytest.approx(0.75)
    assert "f1.md" in {p.name for p in write_tables(run)}


def test_ap_and_iou_columns_only_when_the_files_have_them(tmp_path, run_dir):
    assert "image_ap" not in results_table(collect_run(run_dir)).data.columns  # older files: same table as before
    run = tmp_path / "r"
    _write(run, "carpet", VALUES["carpet"], image_ap=0.9, pixel_ap=0.3, pixel_iou=0.25)
    _write(run, "bottle", VALUES["bottle"], image_ap=0.7, pixel_ap=0.5, pixel_iou=0.4)
    t = results_table(collect_run(run), "r")
    assert t.headers[-4:] == ["Image AP", "Pixel AP", "Pixel IoU (best)", "Train time (s)"]
    data = t.data.set_index("category")
    assert data.loc["mean", "pixel_ap"] == pytest.approx(0.4) and data.loc["mean", "pixel_iou"] == pytest.approx(0.325)
    assert "average precision" in " ".join(t.notes)
    assert comparison_table(collect_run(run), "image_auroc") is not None  # the published comparison is unchanged


def test_missing_metric_makes_the_mean_missing(tmp_path):
    run = tmp_path / "r"
    _write(run, "carpet", (0.9, 0.95, 0.8, math.nan, 0.7, 0.5, 1.0))
    _write(run, "grid", VALUES["grid"])
    data = results_table(collect_run(run)).data.set_index("category")
    assert math.isnan(data.loc["mean", "official_pro"])
    assert data.loc["mean", "au_pro"] == pytest.approx(0.85)
    # textures only: no separate texture/object mean rows
    assert list(data.index) == ["carpet", "grid", "mean"]


def test_comparison_partial_run_by_hand(run_dir):
    t = comparison_table(collect_run(run_dir), "image_auroc", "demo-run")
    data = t.data.set_index("category")
    assert list(data.index) == ["carpet", "grid", "bottle", "mean", "mean (textures)", "mean (objects)"]
    assert data.loc["carpet", "OFF"] == 0.964286
    assert data.loc["carpet", "delta_OFF"] == pytest.approx(0.9 - 0.964286)
    assert data.loc["mean", "ours"] == pytest.approx(0.9)  # MVTec categories only: widget excluded
    assert data.loc["mean", "OFF"] == pytest.approx((0.964286 + 0.982456 + 1.0) / 3)  # same 3 categories
    assert data.loc["mean (textures)", "delta_OFF"] == pytest.approx(0.85 - (0.964286 + 0.982456) / 2)
    assert data.loc["mean (objects)", "delta_OFF"] == pytest.approx(0.0)
    assert data.loc["grid", "HCW"] == 1.0 and data.loc["bottle", "ANO_R18"] == 0.979
    # the paper and PP-Industry give image AUROC means only: not comparable on 3 categories
    assert "PAPER" not in data.columns and "PPI" not in data.columns
    assert "covers 3 of 15" in " ".join(t.notes)
    assert comparison_table(collect_run(run_dir), "au_pro") is None  # no verified published AU-PRO


def test_comparison_full_run_uses_stated_means(tmp_path):
    run = tmp_path / "full"
    off = load_published(sources="OFF", metrics="image_auroc").set_index("category")["value"]
    for cat in MVTEC_CATEGORIES:
        v = off[cat] - 0.01
        _write(run, cat, (v, 0.9, 0.8, 0.85, 0.7, 0.5, 1.0))
    data = comparison_table(collect_run(run), "image_auroc").data.set_index("category")
    assert data.loc["mean", "OFF"] == 0.955488  # the README's stated mean
    assert data.loc["mean", "delta_OFF"] == pytest.approx(off.drop("mean").mean() - 0.01 - 0.955488, abs=1e-12)
    assert data.loc["mean", "PAPER"] == 0.955
    assert data.loc["mean", "delta_PAPER"] == pytest.approx(off.drop("mean").mean() - 0.01 - 0.955)
    assert data.loc["toothbrush", "delta_ANO_R18"] == pytest.approx(off["toothbrush"] - 0.01 - 0.997)
    for cat in MVTEC_CATEGORIES:
        assert data.loc[cat, "delta_OFF"] == pytest.approx(-0.01)


def test_write_tables_files_and_content(run_dir):
    paths = write_tables(run_dir)
    names = {p.name for p in paths}
    for stem in ("results", "compare_image_auroc", "compare_pixel_auroc", "compare_official_pro", "compare_image_f1"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    assert {"tables.md", "run_summary.csv"} <= names
    assert all(p.parent == run_dir / "tables" and p.stat().st_size > 0 for p in paths)

    csv = pd.read_csv(run_dir / "tables" / "results.csv").set_index("category")
    assert csv.loc["mean (textures)", "image_auroc"] == pytest.approx(0.85)

    md = (run_dir / "tables" / "results.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "### STFPM results, run demo-run"
    assert lines[2].startswith("| Category | Group | Image AUROC | Pixel AUROC |")
    assert lines[3] == "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"
    assert "| carpet | texture | 0.9000 | 0.9500 | 0.8000 | 0.8500 | 0.7000 | 0.5000 | 10.0 |" in lines
    assert "| mean | | 0.8000 |" in md.replace("|  |", "| |")

    tex = (run_dir / "tables" / "compare_image_auroc.tex").read_text()
    assert "\\begin{tabular}{llrrr" in tex and "\\caption{Image AUROC: run demo-run vs published" in tex
    assert "$\\Delta$ OFF" in tex and "\\label{tab:demo-run-compare_image_auroc}" in tex
    assert "carpet & texture & 0.9000 & " in tex and "0.964286 & -0.0643" in tex
    assert tex.count("\\midrule") == 2  # after the header and before the means
    md_cmp = (run_dir / "tables" / "compare_image_auroc.md").read_text()
    assert "| Δ OFF |" in md_cmp and "Official code README (gdwang08/STFPM @2598a5e)" in md_cmp


def test_random_teacher_label_everywhere(tmp_path):
    run = tmp_path / "rnd"
    _write(run, "carpet", VALUES["carpet"], teacher=RANDOM)
    _write(run, "bottle", VALUES["bottle"])
    paths = write_tables(run)
    for p in paths:
        if p.suffix in (".md", ".tex") and p.name != "tables.md":
            assert RANDOM_TEACHER_LABEL in p.read_text(), p.name
        if p.suffix == ".csv" and p.name != "run_summary.csv":
            assert set(pd.read_csv(p)["warning"]) == {RANDOM_TEACHER_LABEL}, p.name


def test_formatters_escape():
    md = format_markdown("t|x", ["a", "b"], [["metal_nut", "1|2"]], ["l", "r"], ["note"])
    assert md.splitlines() == ["### t\\|x", "", "| a | b |", "|:---|---:|", "| metal_nut | 1\\|2 |", "", "note"]
    tex = format_latex("A & B_1", ["Δ x", "AU-PRO (FPR<=0.3)"], [["metal_nut", "50%"], ["mean", "–"]], ["l", "r"],
                       n_body=1, label="tab:x", notes=["score > t, s >= u"])
    assert "\\caption{A \\& B\\_1. score $>$ t, s $\\ge$ u}" in tex
    assert "$\\Delta$ x & AU-PRO (FPR$\\le$0.3) \\\\" in tex
    assert "metal\\_nut & 50\\% \\\\\n\\midrule\nmean & -- \\\\" in tex


def test_errors_and_cli(tmp_path, run_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="no <category>/metrics.json"):
        collect_run(empty)
    with pytest.raises(ReportError, match="not found"):
        collect_run(tmp_path / "missing")
    assert main([str(empty)]) == 2
    assert "no <category>/metrics.json" in capsys.readouterr().err
    out_dir = tmp_path / "out"
    assert main([str(run_dir), "--out-dir", str(out_dir)]) == 0
    assert str(out_dir / "results.md") in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "stfpm_lib.reporting.tables", str(empty)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and "error:" in proc.stderr and "metrics.json" in proc.stderr


def test_collect_run_refuses_results_made_with_another_config(tmp_path):
    """A metrics.json left from an earlier config of the run (stale) must not enter its tables."""
    import json

    from stfpm_lib.reporting.tables import ReportError, collect_run

    run = tmp_path / "run"
    _write(run, "bottle", [0.9] * 6 + [10.0], epochs=3)
    _write(run, "carpet", [0.8] * 6 + [10.0], epochs=4)
    (run / "run.json").write_text(json.dumps({"preset": "official", "overrides": {"epochs": 3, "k_examples": 2}}))
    with pytest.raises(ReportError, match=r"carpet/metrics.json was made with another config.*epochs=4 \(run.json: 3\)"):
        collect_run(run)
    (run / "run.json").write_text(json.dumps({"preset": "official", "overrides": {"epochs": 4}}))
    with pytest.raises(ReportError, match=r"bottle/metrics.json"):
        collect_run(run)
    (run / "carpet" / "metrics.json").unlink()
    (run / "run.json").write_text(json.dumps({"preset": "official", "overrides": {"epochs": 3}}))
    assert list(collect_run(run)["category"]) == ["bottle"]


def test_per_defect_type_table_holds_every_metric_of_the_files(tmp_path):
    run = tmp_path / "types"
    _write(run, "widget", VALUES["widget"], teacher=RANDOM, per_defect_type={
        "crack": {"n_anomalous": 2, "n_normal": 4, "image_auroc": 0.75, "pixel_auroc": 0.5, "image_ap": 0.625},
        "(all)": {"n_anomalous": 2, "n_normal": 4, "image_auroc": 0.75, "pixel_auroc": 0.5, "image_ap": 0.625}})
    _write(run, "carpet", VALUES["carpet"], per_defect_type={
        "hole": {"n_anomalous": 1, "n_normal": 3, "image_auroc": 1.0, "pixel_auroc": float("nan")}})
    frame = collect_per_defect_type(run)
    assert frame[["category", "defect_type"]].values.tolist() == [["carpet", "hole"], ["widget", "crack"],
                                                                  ["widget", "(all)"]]  # MVTec categories first
    assert list(frame.columns) == ["category", "defect_type", "teacher_weights", "n_anomalous", "n_normal",
                                   "image_auroc", "pixel_auroc", "image_ap"]  # a key the table code never names
    assert math.isnan(frame.loc[0, "image_ap"])
    paths = write_tables(run)
    assert {"per_defect_type.csv", "per_defect_type.md", "per_defect_type.tex"} <= {p.name for p in paths}
    md = (run / "tables" / "per_defect_type.md").read_text().splitlines()
    assert md[0] == f"### Per defect type, run types: {RANDOM_TEACHER_LABEL}"
    assert md[2] == "| Category | Defect type | Anomalous | Normal | Image AUROC | Pixel AUROC | Image AP |"
    assert md[4:7] == ["| carpet | hole | 1 | 3 | 1.0000 | – | – |", "| widget | crack | 2 | 4 | 0.7500 | 0.5000 | 0.6250 |",
                       "| widget | (all) | 2 | 4 | 0.7500 | 0.5000 | 0.6250 |"]
    csv = pd.read_csv(run / "tables" / "per_defect_type.csv")
    assert csv["image_ap"].tolist()[1:] == [0.625, 0.625] and set(csv["warning"]) == {RANDOM_TEACHER_LABEL}
    assert "### Per defect type, run types" in (run / "tables" / "tables.md").read_text()
    assert per_defect_type_table(collect_per_defect_type(tmp_path / "none")) is None  # no file: no table


def test_one_category_run_has_no_over_all_note(tmp_path):
    _write(tmp_path / "one", "widget", VALUES["widget"])
    table = results_table(collect_run(tmp_path / "one"))
    assert not any("over all" in note for note in table.notes)
