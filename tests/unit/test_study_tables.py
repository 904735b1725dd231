"""Study tables from a study directory built here in the runner's layout (real evaluations and writers)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stfpm_lib.config import STFPMConfig
from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.records.evaluation import PER_IMAGE_NAME, evaluate_predictions, write_metrics_json, write_per_image
from stfpm_lib.records.predictions import Predictions
from stfpm_lib.reporting.study_tables import DAGGER, StudyResultsError, load_study_results, main, write_study_tables

CFG = STFPMConfig.from_preset("official").to_dict()
RANDOM_TW = {"source": "random", "name": "random", "path": None, "sha256": None, "seed": 0}
IMAGENET = {"source": "imagenet", "name": "ResNet18_Weights.IMAGENET1K_V1", "path": None, "sha256": "ab" * 32}
SEEDS = [0, 1, 2]
CATEGORIES = ["catA", "catB"]
VARIANTS = {"base": {}, "same": {"lr": 0.4}, "better": {"epochs": 5}}
R = 100  # bootstrap resamples in these tests


def _masks(category: str, n: int = 24, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(len(category) + ord(category[-1]))
    masks = np.zeros((n, side, side), bool)
    for i in range(n // 3, n):
        y, x = rng.integers(0, side - 5, 2)
        masks[i, y:y + rng.integers(2, 5), x:x + rng.integers(2, 5)] = True
    return masks


def _maps(variant: str, seed: int, masks: np.ndarray) -> np.ndarray:
    """A seed is a training run: noise of its own; "same" equals "base"; "better" scores defects higher."""
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=masks.shape) + 0.8 * masks
    return (maps + 1.5 * masks if variant == "better" else maps).astype(np.float32)


def _tag(path: Path, study: str, variant: str, seed: int, category: str, overrides) -> None:
    """What the study runner adds to each job's metrics.json."""
    record = json.loads(path.read_text())
    record["study"] = {"study": study, "variant": variant, "overrides": overrides, "seed": seed, "category": category}
    path.write_text(json.dumps(record, indent=2))


def _job(study_dir: Path, variant: str, seed: int, category: str, teacher=RANDOM_TW) -> Path:
    masks = _masks(category)
    maps = _maps(variant, seed, masks)
    n = len(maps)
    pred = Predictions(
        maps=maps, scores=maps.reshape(n, -1).max(axis=1), labels=masks.any(axis=(1, 2)).astype(np.int8),
        defect_types=np.array(["good" if not m.any() else "blob" for m in masks]),
        image_paths=np.array([f"/data/{category}/test/img{i:03d}.png" for i in range(n)]),
        mask_paths=np.array([""] * n), config=CFG, teacher_weights=teacher,
        dataset={"root": "/data", "category": category}, meta={"split": "test"}, image_sizes=None,
        masks_packed=np.packbits(masks.reshape(n, -1), axis=1))
    ev = evaluate_predictions(pred)
    out = study_dir / "runs" / variant / f"seed{seed}" / category
    dataset = {"root": "/data", "category": category, "counts": {"test_good": 8, "test_blob": 16}}
    write_per_image(out / PER_IMAGE_NAME, ev.per_image_stats, config=CFG, teacher_weights=teacher, dataset=dataset)
    path = write_metrics_json(out / "metrics.json", metrics=ev.metrics, config=CFG, teacher_weights=teacher,
                              dataset=dataset, wall_time_s=1.0)
    _tag(path, "toy", variant, seed, category, VARIANTS[variant])
    return path


def _spec(study_dir: Path, variants=VARIANTS, seeds=SEEDS, categories=CATEGORIES, baseline="base") -> None:
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "study.json").write_text(json.dumps({
        "name": "toy", "preset": "official", "variants": variants, "seeds": seeds, "categories": categories,
        "notebooks": ["02_train.ipynb", "03_evaluate.ipynb"], "baseline": baseline}))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studies") / "toy"
    _spec(root)
    for v in VARIANTS:
        for s in SEEDS:
            for c in CATEGORIES:
                if (v, s, c) != ("better", 2, "catB"):  # one job never ran
                    _job(root, v, s, c)
    failed = root / "runs" / "same" / "seed2" / "catB"  # one job failed: its notebook left a .failed copy
    (failed / "metrics.json").unlink()
    (failed / "03_evaluate.failed.ipynb").write_text("{}")
    write_study_tables(root, n_resamples=R, seed=0)
    return root


def _csv(study: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(study / "tables" / f"{name}.csv", keep_default_na=False, na_values=[""])


def _metric(study: Path, variant: str, seed: int, category: str, key: str) -> float:
    return json.loads((study / "runs" / variant / f"seed{seed}" / category / "metrics.json").read_text())["metrics"][key]


# ----------------------------------------------------------------------------------------- results
def test_results_mean_std_and_seed_counts(study):
    df = _csv(study, "results").set_index(["variant", "category"])
    values = [_metric(study, "base", s, "catA", "pixel_ap") for s in SEEDS]
    assert df.loc[("base", "catA"), "pixel_ap_mean"] == pytest.approx(np.mean(values), abs=1e-6)
    assert df.loc[("base", "catA"), "pixel_ap_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
    assert df.loc[("better", "catB"), "n_seeds"] == 2 and df.loc[("same", "catB"), "n_seeds"] == 2
    # mean row: mean of the category means; std over the seeds that finished both categories (0 and 1)
    cat_means = [np.mean([_metric(study, "better", s, c, "au_pro") for c in CATEGORIES]) for s in (0, 1)]
    expected = np.mean([np.mean([_metric(study, "better", s, "catA", "au_pro") for s in SEEDS]),
                        np.mean([_metric(study, "better", s, "catB", "au_pro") for s in (0, 1)])])
    assert df.loc[("better", "mean"), "au_pro_mean"] == pytest.approx(expected, abs=1e-6)
    assert df.loc[("better", "mean"), "au_pro_std"] == pytest.approx(np.std(cat_means, ddof=1), abs=1e-6)
    assert df.loc[("better", "mean"), "n_seeds"] == 2
    md = (study / "tables" / "results.md").read_text()
    cell = f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    assert "| base | catA | 3/3 |" in md and cell in md
    assert "| better | catB | 2/3 |" in md
    assert "have no metrics.json: see missing.md" in md


def test_intervals_contain_the_values_and_are_reproducible(study, tmp_path):
    ci = _csv(study, "intervals").set_index(["variant", "category"])
    res = _csv(study, "results").set_index(["variant", "category"])
    for m in ("image_auroc", "pixel_auroc", "pixel_ap", "au_pro"):
        low, high, mean = ci[f"{m}_ci_low"], ci[f"{m}_ci_high"], res[f"{m}_mean"]
        assert (low <= mean + 2e-3).all() and (mean - 2e-3 <= high).all() and (high - low < 0.5).all(), m
    copy = shutil.copytree(study, tmp_path / "copy")
    write_study_tables(copy, n_resamples=R, seed=0)
    assert (copy / "tables" / "intervals.csv").read_text() == (study / "tables" / "intervals.csv").read_text()
    write_study_tables(copy, n_resamples=R, seed=1)
    changed = _csv(copy, "intervals").set_index(["variant", "category"])
    diff = (changed["pixel_ap_ci_low"] - ci["pixel_ap_ci_low"]).abs()
    assert diff.max() > 0 and diff.max() < 0.05  # another seed: slightly other intervals


# ----------------------------------------------------------------------------------------- comparison
def test_identical_variant_differs_by_zero_with_p_one(study):
    df = _csv(study, "compare")
    same = df[df["variant"] == "same"]
    assert len(same) == 8 * 3  # 8 metrics x (2 categories + mean)
    assert (same["delta"] == 0).all() and (same["delta_ci_low"] == 0).all() and (same["delta_ci_high"] == 0).all()
    assert (same["p_images"] == 1).all() and (same["p_seeds"] == 1).all() and not same["exceeds_noise"].any()
    assert (same.loc[same["category"] == "catB", "n_paired_seeds"] == 2).all()
    md = (study / "tables" / "compare.md").read_text()
    assert f"| Pixel AP | same | catA | 3 | +0.000{DAGGER} | [+0.000, +0.000] | 1.000 | 0.000 | 1.000 |" in md
    assert f"{DAGGER} |Δ| within the seed noise" in md


def test_better_variant_is_detected_and_above_the_noise(study):
    df = _csv(study, "compare").set_index(["metric", "variant", "category"])
    for m in ("pixel_auroc", "pixel_ap", "au_pro", "pixel_f1", "pixel_iou"):
        for c in ("catA", "catB", "mean"):
            row = df.loc[(m, "better", c)]
            assert row["delta"] > 0 and row["delta_ci_low"] > 0 and row["p_images"] < 0.05, (m, c)
            assert bool(row["exceeds_noise"]) and row["p_seeds"] == pytest.approx(0.25 if c == "catA" else 0.5)
    row = df.loc[("pixel_ap", "better", "catA")]
    expected = np.mean([_metric(study, "better", s, "catA", "pixel_ap") - _metric(study, "base", s, "catA", "pixel_ap")
                        for s in SEEDS])
    assert row["delta"] == pytest.approx(expected, abs=1e-6)
    assert f"| Pixel AP | better | catA | 3 | {expected:+.3f} |" in (study / "tables" / "compare.md").read_text()


# ----------------------------------------------------------------------------------------- files, labels, errors
def test_missing_jobs_provenance_and_random_teacher(study):
    missing = _csv(study, "missing").drop(columns="warning")
    assert missing.to_dict("records") == [
        {"variant": "same", "seed": 2, "category": "catB", "status": "failed (03_evaluate.failed.ipynb)"},
        {"variant": "better", "seed": 2, "category": "catB", "status": "not run"}]
    prov = json.loads((study / "tables" / "provenance.json").read_text())
    assert prov["baseline"] == "base" and prov["bootstrap"]["n_resamples"] == R and len(prov["jobs"]) == 16
    job = prov["jobs"][0]
    assert len(job["metrics_sha256"]) == 64 and len(job["per_image_sha256"]) == 64
    assert job["teacher_weights"]["source"] == "random" and "packages" in prov["environment"]
    for name in ("results", "intervals", "compare", "missing"):
        for suffix in (".md", ".tex"):
            assert RANDOM_TEACHER_LABEL in (study / "tables" / f"{name}{suffix}").read_text(), name + suffix
        assert set(_csv(study, name)["warning"]) == {RANDOM_TEACHER_LABEL}
    tex = (study / "tables" / "compare.tex").read_text()
    assert "$^\\dagger$" in tex and "\\begin{tabular}{lllrrrrrr}" in tex and "$\\pm$" not in tex
    assert " $\\pm$ " in (study / "tables" / "results.tex").read_text()


def test_hand_written_metrics_without_per_image_files(tmp_path):
    """Constructed directly through the writers: mean ± std by hand; no per_image.npz -> no intervals."""
    root = tmp_path / "hand"
    _spec(root, variants={"a": {}, "b": {"lr": 0.1}}, seeds=[0, 1, 2], categories=["carpet"], baseline=None)
    for v, values in (("a", (0.90, 0.92, 0.94)), ("b", (0.95, 0.96, 0.99))):
        for s, value in enumerate(values):
            path = write_metrics_json(root / "runs" / v / f"seed{s}" / "carpet" / "metrics.json",
                                      metrics={"image_auroc": value, "pixel_auroc": 0.9}, config=CFG,
                                      teacher_weights=IMAGENET, dataset={"root": "/d", "counts": {}}, wall_time_s=1)
            _tag(path, "toy", v, s, "carpet", {})
    paths = write_study_tables(root)
    assert {"results.md", "intervals.tex", "compare.csv", "provenance.json"} <= set(paths)
    assert "missing.md" not in paths
    md = paths["results.md"].read_text()
    assert "| a | carpet | 3/3 | 0.920 ± 0.020 | 0.900 ± 0.000 | – ± – |" in md  # au_pro absent: "–"
    assert RANDOM_TEACHER_LABEL not in md
    cmp = _csv(root, "compare").set_index(["metric", "variant"])
    # d = 0.05, 0.04, 0.05: mean 0.04667, sd 0.00577 -> above the noise; sign flips: p = 2/8
    row = cmp.loc[("image_auroc", "b")]
    assert row["delta"] == pytest.approx(0.14 / 3) and row["seed_std_delta"] == pytest.approx(np.std([.05, .04, .05], ddof=1))
    assert row["p_seeds"] == 0.25 and bool(row["exceeds_noise"]) and math.isnan(row["p_images"])
    assert "| Image AUROC | b | carpet | 3 | +0.047 | [–, –] | – | 0.006 | 0.250 |" in paths["compare.md"].read_text()


def test_bad_input_and_cli(study, tmp_path, capsys):
    with pytest.raises(StudyResultsError, match="study directory not found"):
        load_study_results(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyResultsError, match="study.json not found"):
        load_study_results(tmp_path / "empty")
    with pytest.raises(StudyResultsError, match="baseline 'nope' is not a variant"):
        write_study_tables(study, baseline="nope")
    bad = tmp_path / "bad"
    _spec(bad, seeds=[])
    with pytest.raises(StudyResultsError, match="'seeds' must be a non-empty list"):
        load_study_results(bad)
    _spec(bad)
    with pytest.raises(StudyResultsError, match="no finished job"):
        load_study_results(bad)
    path = _job(bad, "base", 0, "catA")
    _tag(path, "toy", "base", 1, "catA", {})  # a result copied from another job
    with pytest.raises(StudyResultsError, match=r"seed0/catA/metrics.json: its 'study' key .* does not name this job"):
        load_study_results(bad)
    assert main([str(tmp_path / "empty")]) == 2 and "error: " in capsys.readouterr().err
    copy = shutil.copytree(study, tmp_path / "copy")
    assert main([str(copy), "--baseline", "same", "--n-resamples", "20"]) == 0
    assert str(copy / "tables" / "compare.md") in capsys.readouterr().out
    assert "variants vs baseline same" in (copy / "tables" / "compare.md").read_text()
    proc = subprocess.run([sys.executable, "-m", "stfpm_lib.reporting.study_tables", str(study), "--n-resamples", "0"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and "error: n_resamples must be an integer >= 1" in proc.stderr
