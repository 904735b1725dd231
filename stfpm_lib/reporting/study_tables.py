"""Tables of a study: variants x seeds x categories, with seed noise, bootstrap intervals and paired tests.

A study directory (written by the study runner) holds ``study.json``, the expanded spec
``{"name", "preset", "variants": {variant: overrides}, "seeds": [...], "categories": [...],
"notebooks": [...], "baseline": variant or null}``, and one folder per job,
``runs/<variant>/seed<seed>/<category>/`` with ``metrics.json`` (whose top-level ``"study"`` key
names the job) and ``per_image.npz`` (:func:`stfpm_lib.records.evaluation.write_per_image`).
:func:`write_study_tables` writes under ``STUDY_DIR/tables/`` (CSV, Markdown and LaTeX each):

* ``results``: per variant and category (then ``mean`` over the categories) each metric as
  ``mean ± std`` over the seeds (std with ddof=1, ``–`` for one seed), with the number of seeds;
* ``intervals``: 95 % bootstrap intervals over the test images (see below);
* ``compare``: every variant against the baseline, per metric and category: the difference of
  the seed means, its paired bootstrap interval and p-value over images, the std over seeds of
  the per-seed differences and the sign-flip p-value over seeds; a dagger marks a difference
  that does not exceed the seed noise;
* ``missing`` (when jobs lack a ``metrics.json``) and ``provenance.json`` (environment, the
  spec, teachers, datasets, every input file with its sha256).

Statistics (:mod:`stfpm_lib.metrics.bootstrap`):

* **Interval of a cell** (per seed, then averaged): each resample draws the category's test
  images with replacement (stratified by label); the same draw is used for every seed of every
  variant, the metric is computed per seed and averaged over the seeds, as the cell's value is.
  The interval is the test-image uncertainty of that seed mean (the seed noise is the ``± std``).
  Pixel metrics are binned (per-image histograms, error < 1e-3), so an interval can sit up to
  ~1e-3 off the exact value of ``results``. Over categories, each category is resampled
  independently and the resampled values are averaged over the categories.
* **Paired comparison**: the same draws for variant and baseline give the distribution of the
  difference; p-value ``min(1, 2 min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (R + 1))``. Over seeds:
  the per-seed differences ``d_s`` on the seeds both have, their mean and std, and an exact
  sign-flip permutation p-value (with n seeds it cannot go below ``2 / 2^n``).
* **Noise flag**: the difference exceeds the seed noise iff ``|mean(d_s)| > 2 std(d_s)``
  (at least 2 paired seeds); otherwise the cell is marked ``†``.

Metrics: :data:`STUDY_METRICS` (names as in ``metrics.json``). If any job's teacher was random,
every title says ``random teacher (not comparable with the paper)``.

CLI: ``python -m stfpm_lib.reporting.study_tables STUDY_DIR [--baseline VARIANT] [--n-resamples N]
[--seed S]`` (exit 2 with ``error: ...`` on bad input).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_write_text, sha256_file
from ..metrics.bootstrap import (
    PerImage,
    bootstrap_p_value,
    percentile_ci,
    resample_values,
    resample_weights,
    seed_comparison,
)
from ..provenance import environment_info
from ..records.evaluation import PER_IMAGE_NAME, MetricsFileError, PerImageFileError, read_metrics_json, read_per_image
from .tables import METRIC_LABELS, _label, _random_label, _Table, format_latex, format_markdown

__all__ = ["StudyResultsError", "STUDY_METRICS", "JobResult", "StudyResults", "load_study_results", "write_study_tables", "main"]

log = logging.getLogger(__name__)

STUDY_METRICS = ("image_auroc", "pixel_auroc", "au_pro", "image_ap", "pixel_ap", "image_f1", "pixel_f1", "pixel_iou")
DAGGER = "†"
_LABELS = {**METRIC_LABELS, "image_f1": "Image F1-max", "pixel_f1": "Pixel F1-max", "pixel_iou": "Pixel IoU-max"}
_SPEC_KEYS = {"name": str, "variants": dict, "seeds": list, "categories": list}
_DECIMALS = 3


class StudyResultsError(ValueError):
    """A study directory that cannot be reported; the message names the file or setting at fault."""


@dataclass
class JobResult:
    """One finished job: its metrics, per-image summary (None without ``per_image.npz``) and record.

    Attributes
    ----------
    variant : str
        Variant name.
    seed : int
        Training seed.
    category : str
        Category name.
    metrics : dict of str to float
        The job's metrics.
    per_image : PerImage, optional
        Per-image summary (None without ``per_image.npz``).
    record : dict of str to Any
        The job's ``metrics.json``.
    """

    variant: str
    seed: int
    category: str
    metrics: dict[str, float]
    per_image: PerImage | None
    record: dict[str, Any]


@dataclass
class StudyResults:
    """A loaded study: the spec, the finished jobs by ``(variant, seed, category)`` and the missing ones.

    Attributes
    ----------
    path : Path
        The study directory.
    spec : dict of str to Any
        ``study.json``.
    jobs : dict of (str, int, str) to JobResult
        Finished jobs by ``(variant, seed, category)``.
    missing : list of (str, int, str, str)
        ``(variant, seed, category, status)`` of the jobs without ``metrics.json``.
    """

    path: Path
    spec: dict[str, Any]
    jobs: dict[tuple[str, int, str], JobResult]
    missing: list[tuple[str, int, str, str]]  # (variant, seed, category, status)

    @property
    def variants(self) -> list[str]:
        return list(self.spec["variants"])

    def job_dir(self, variant: str, seed: int, category: str) -> Path:
        """The folder of one job: ``<path>/runs/<variant>/seed<seed>/<category>``.

        Parameters
        ----------
        variant : str
            Variant name.
        seed : int
            Training seed.
        category : str
            Category name.

        Returns
        -------
        Path
            The job's folder.
        """
        return self.path / "runs" / variant / f"seed{seed}" / category


# ====================================================================== loading
def _read_spec(study_dir: Path) -> dict[str, Any]:
    path = study_dir / "study.json"
    if not study_dir.is_dir():
        raise StudyResultsError(f"study directory not found: {study_dir}")
    if not path.is_file():
        raise StudyResultsError(f"{path} not found: not a study directory (the study runner writes it)")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyResultsError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(spec, dict):
        raise StudyResultsError(f"{path}: expected a JSON object, got {type(spec).__name__}")
    for key, kind in _SPEC_KEYS.items():
        if not isinstance(spec.get(key), kind) or (kind is not str and not spec[key]):
            raise StudyResultsError(f"{path}: {key!r} must be a non-empty {kind.__name__}; got {spec.get(key)!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in spec["seeds"]):
        raise StudyResultsError(f"{path}: 'seeds' must be integers; got {spec['seeds']!r}")
    baseline = spec.get("baseline")
    if baseline is not None and baseline not in spec["variants"]:
        raise StudyResultsError(f"{path}: baseline {baseline!r} is not one of the variants {list(spec['variants'])}")
    return spec


def _job_status(job_dir: Path) -> str:
    if not job_dir.is_dir():
        return "not run"
    failed = sorted(p.name for p in job_dir.glob("*.failed.ipynb"))
    return f"failed ({', '.join(failed)})" if failed else "incomplete (no metrics.json)"


def _load_job(study: StudyResults, variant: str, seed: int, category: str) -> JobResult | None:
    job_dir = study.job_dir(variant, seed, category)
    path = job_dir / "metrics.json"
    if not path.is_file():
        study.missing.append((variant, seed, category, _job_status(job_dir)))
        return None
    try:
        record = read_metrics_json(path)
    except MetricsFileError as exc:
        raise StudyResultsError(str(exc)) from exc
    tag = record.get("study")
    expected = {"study": study.spec["name"], "variant": variant, "seed": seed, "category": category}
    if not isinstance(tag, dict) or any(tag.get(k) != v for k, v in expected.items()):
        raise StudyResultsError(f"{path}: its 'study' key {tag!r} does not name this job {expected}: a foreign or stale "
                         "result; rerun the job or remove its folder")
    per_image = None
    if (job_dir / PER_IMAGE_NAME).is_file():
        try:
            per_image = read_per_image(job_dir / PER_IMAGE_NAME)[0]
        except PerImageFileError as exc:
            raise StudyResultsError(str(exc)) from exc
    return JobResult(variant, seed, category, record["metrics"], per_image, record)


def load_study_results(study_dir: str | Path) -> StudyResults:
    """Read ``study.json`` and every job's ``metrics.json`` / ``per_image.npz`` (see module doc).

    Raises :class:`StudyResultsError` for a missing or malformed spec, an unreadable file, or a
    ``metrics.json`` whose ``study`` key names another job. Jobs without ``metrics.json`` are
    listed in ``StudyResults.missing`` with their status (not run, failed with its notebook, incomplete).

    Parameters
    ----------
    study_dir : str or Path
        The study directory.

    Returns
    -------
    StudyResults
        The loaded study.
    """
    study_dir = Path(study_dir)
    study = StudyResults(study_dir, _read_spec(study_dir), {}, [])
    for variant in study.variants:
        for seed in study.spec["seeds"]:
            for category in study.spec["categories"]:
                job = _load_job(study, variant, seed, category)
                if job is not None:
                    study.jobs[(variant, seed, category)] = job
    if not study.jobs:
        raise StudyResultsError(f"study {study_dir} has no finished job (no runs/<variant>/seed<seed>/<category>/metrics.json)")
    return study


# ====================================================================== statistics
def _seed_values(study: StudyResults, variant: str, category: str) -> dict[int, dict[str, float]]:
    """``{seed: metrics}`` of the finished jobs of one cell."""
    return {s: study.jobs[(variant, s, category)].metrics for s in study.spec["seeds"]
            if (variant, s, category) in study.jobs}


def _category_means(study: StudyResults, variant: str) -> dict[int, dict[str, float]]:
    """``{seed: {metric: mean over the categories}}`` for the seeds that finished every category."""
    out = {}
    for s in study.spec["seeds"]:
        jobs = [study.jobs.get((variant, s, c)) for c in study.spec["categories"]]
        if all(jobs):
            out[s] = {m: float(np.mean([j.metrics.get(m, math.nan) for j in jobs])) for m in STUDY_METRICS}
    return out


def _values(study: StudyResults, variant: str, key: str) -> dict[int, dict[str, float]]:
    return _category_means(study, variant) if key == "mean" else _seed_values(study, variant, key)


def _resamples(study: StudyResults, order: Sequence[str], n_resamples: int, seed: int) -> tuple[dict, list[str]]:
    """Bootstrap values of every job, ``{(variant, seed, category): {metric: (R,)}}``, and notes.

    One draw per category (seeded by ``seed`` and the category name), used for every seed of
    every variant; the test images are those of the first variant in ``order`` (the baseline)
    that has a ``per_image.npz`` there. Jobs on other images get no values (and a note).
    """
    boot, notes = {}, []
    for c in study.spec["categories"]:
        jobs = [j for v in order for s in study.spec["seeds"]
                if (j := study.jobs.get((v, s, c))) is not None and j.per_image is not None]
        if not jobs:
            continue
        ref = jobs[0].per_image
        names = ref.names.tolist()
        weights = resample_weights(ref.labels, n_resamples, seed=[seed, zlib.crc32(c.encode())])
        for j in jobs:
            if set(j.per_image.names.tolist()) != set(names):
                notes.append(f"{j.variant}/seed{j.seed}/{c}: other test images than {jobs[0].variant}/"
                             f"seed{jobs[0].seed}/{c}: no interval or paired test with it.")
                continue
            boot[(j.variant, j.seed, c)] = resample_values(j.per_image.select(names), weights, STUDY_METRICS)
    return boot, notes


def _finished(study: StudyResults, variant: str, category: str) -> list[int]:
    return [s for s in study.spec["seeds"] if (variant, s, category) in study.jobs]


def _paired(study: StudyResults, a: str, b: str, category: str) -> list[int]:
    """Seeds that both variants finished in ``category``."""
    return [s for s in _finished(study, a, category) if (b, s, category) in study.jobs]


def _categories(study: StudyResults, key: str) -> list[str]:
    return list(study.spec["categories"]) if key == "mean" else [key]


def _boot_values(study: StudyResults, boot: dict, variant: str, key: str, seeds_of) -> dict[str, np.ndarray] | None:
    """Resample values of a cell: per category the mean over ``seeds_of(category)``, then the mean over
    the categories of ``key``; None when a job of it has no values."""
    parts = []
    for c in _categories(study, key):
        seeds = seeds_of(c)
        if not seeds or any((variant, s, c) not in boot for s in seeds):
            return None
        parts.append({m: np.mean([boot[(variant, s, c)][m] for s in seeds], axis=0) for m in STUDY_METRICS})
    return {m: np.mean([p[m] for p in parts], axis=0) for m in STUDY_METRICS}


def _cell(study: StudyResults, boot: dict, variant: str, key: str, metric: str, confidence: float) -> dict[str, float]:
    """n_seeds, mean, std (ddof=1) and the bootstrap interval of one metric of one cell.

    ``mean`` rows: the mean of the category means; the std over the seeds that finished every category."""
    if key == "mean":
        per_cat = [_cell(study, boot, variant, c, metric, confidence)["mean"] for c in study.spec["categories"]]
        mean = float(np.mean(per_cat))
        v = [d[metric] for d in _category_means(study, variant).values() if math.isfinite(d[metric])]
    else:
        v = [d.get(metric, math.nan) for d in _seed_values(study, variant, key).values()]
        v = [x for x in v if math.isfinite(x)]
        mean = _mean(v)
    std = _std(v)
    values = _boot_values(study, boot, variant, key, lambda c: _finished(study, variant, c))
    low, high = percentile_ci(values[metric], confidence) if values is not None else (math.nan, math.nan)
    return {"n_seeds": len(v), "mean": mean, "std": std, "ci_low": low, "ci_high": high}


def _paired_delta(study: StudyResults, variant: str, baseline: str, key: str, metric: str) -> float:
    """Per category the mean over the paired seeds of ``variant - baseline``, then the mean over categories."""
    per_cat = []
    for c in _categories(study, key):
        d = [study.jobs[(variant, s, c)].metrics.get(metric, math.nan)
             - study.jobs[(baseline, s, c)].metrics.get(metric, math.nan) for s in _paired(study, variant, baseline, c)]
        per_cat.append(float(np.mean(d)) if d else math.nan)
    return float(np.mean(per_cat))


def _comparison(study: StudyResults, boot: dict, variant: str, baseline: str, key: str, metric: str,
                confidence: float) -> dict[str, Any]:
    """Variant - baseline for one metric and cell, on the seeds both finished: over images (paired
    bootstrap, same draws and seeds) and over seeds (per-seed differences)."""
    a = {s: d.get(metric, math.nan) for s, d in _values(study, variant, key).items()}
    b = {s: d.get(metric, math.nan) for s, d in _values(study, baseline, key).items()}
    common = sorted(set(a) & set(b))
    sc = seed_comparison([a[s] for s in common], [b[s] for s in common])
    seeds_of = lambda c: _paired(study, variant, baseline, c)  # noqa: E731
    va, vb = (_boot_values(study, boot, v, key, seeds_of) for v in (variant, baseline))
    low = high = p_img = math.nan
    if va is not None and vb is not None:
        d = va[metric] - vb[metric]
        (low, high), p_img = percentile_ci(d, confidence), bootstrap_p_value(d)
    return {"metric": metric, "variant": variant, "category": key, "n_paired_seeds": sc.n,
            "delta": _paired_delta(study, variant, baseline, key, metric), "delta_ci_low": low, "delta_ci_high": high,
            "p_images": p_img, "seed_mean_delta": sc.mean, "seed_std_delta": sc.std, "p_seeds": sc.p_value,
            "exceeds_noise": sc.exceeds_noise}


# ====================================================================== tables
def _num(x: float, signed: bool = False, decimals: int = _DECIMALS) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"


def _p(x: float) -> str:
    return "–" if not math.isfinite(x) else ("<0.001" if x < 0.001 else f"{x:.3f}")


def _keys(study: StudyResults) -> list[tuple[str, str]]:
    """(variant, category) rows first, then one ``mean`` row per variant (when there are several categories)."""
    rows = [(v, c) for v in study.variants for c in study.spec["categories"]]
    return rows + ([(v, "mean") for v in study.variants] if len(study.spec["categories"]) > 1 else [])


def _finish(study: StudyResults, table: _Table) -> _Table:
    if _is_random(study):
        table.title += f": {_random_label()}"
        table.data.insert(0, "warning", _random_label())
    table.notes.append("Provenance (environment, spec, teachers, datasets, input files with sha256): provenance.json.")
    return table


def _is_random(study: StudyResults) -> bool:
    return any((j.record.get("teacher_weights") or {}).get("source") == "random" for j in study.jobs.values())


def _seeds_text(study: StudyResults, n: int) -> str:
    return f"{n}/{len(study.spec['seeds'])}"


def _results_tables(study: StudyResults, boot: dict, confidence: float) -> tuple[_Table, _Table]:
    """``results`` (mean ± std over seeds) and ``intervals`` (bootstrap over images) of every cell."""
    rows, res_cells, ci_cells = [], [], []
    for v, key in _keys(study):
        cells = {m: _cell(study, boot, v, key, m, confidence) for m in STUDY_METRICS}
        n = max(c["n_seeds"] for c in cells.values())
        row: dict[str, Any] = {"variant": v, "category": key, "n_seeds": n}
        for m, c in cells.items():
            row.update({f"{m}_{k}": c[k] for k in ("mean", "std", "ci_low", "ci_high")})
        rows.append(row)
        res_cells.append([v, key, _seeds_text(study, n)] + [f"{_num(c['mean'])} ± {_num(c['std'])}"
                                                          for c in cells.values()])
        ci_cells.append([v, key, _seeds_text(study, n)] + [f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]"
                                                         for c in cells.values()])
    data = pd.DataFrame(rows)
    headers = ["Variant", "Category", "Seeds"] + [_LABELS.get(m, m) for m in STUDY_METRICS]
    align = ["l", "l", "r"] + ["r"] * len(STUDY_METRICS)
    n_body = len(study.variants) * len(study.spec["categories"])
    name = study.spec["name"]
    notes = ["mean ± std over seeds (std ddof=1; '–' with one seed); Seeds = finished seeds / planned. 'mean' rows: "
             "the mean of the category means, ± std over the seeds that finished every category."]
    ci_notes = [f"{confidence:.0%} percentile bootstrap intervals over test images (stratified by label), per seed "
                "then averaged over seeds with the same draws; pixel metrics from per-image histograms "
                "(binning error < 1e-3). 'mean' rows: categories resampled independently, values averaged."]
    res = _Table("results", f"Study {name}: mean ± std over seeds", data, headers, res_cells, align, n_body, notes)
    ci = _Table("intervals", f"Study {name}: {confidence:.0%} bootstrap intervals over test images",
                data[["variant", "category", "n_seeds"] + [f"{m}_{k}" for m in STUDY_METRICS
                                                           for k in ("ci_low", "ci_high")]],
                headers, ci_cells, align, n_body, ci_notes)
    return res, ci


def _compare_table(study: StudyResults, boot: dict, baseline: str, confidence: float) -> _Table | None:
    """Every other variant minus the baseline, per metric and cell (None with a single variant)."""
    others = [v for v in study.variants if v != baseline]
    if not others:
        return None
    extra = ["mean"] if len(study.spec["categories"]) > 1 else []
    keys = [(v, c) for v in others for c in [*study.spec["categories"], *extra]]
    rows = [_comparison(study, boot, v, baseline, key, m, confidence) for m in STUDY_METRICS for v, key in keys]
    cells = [[_LABELS.get(r["metric"], r["metric"]), r["variant"], r["category"], str(r["n_paired_seeds"]),
              _num(r["delta"], signed=True) + ("" if r["exceeds_noise"] else DAGGER),
              f"[{_num(r['delta_ci_low'], True)}, {_num(r['delta_ci_high'], True)}]", _p(r["p_images"]),
              _num(r["seed_std_delta"]), _p(r["p_seeds"])] for r in rows]
    headers = ["Metric", "Variant", "Category", "Paired seeds", f"Δ vs {baseline}", f"{confidence:.0%} CI of Δ (images)",
               "p (images)", "sd of Δ (seeds)", "p (seeds)"]
    notes = [f"Δ = variant - {baseline} on the seeds both finished (per category the mean of the per-seed differences; "
             "'mean' rows: the mean over categories). Images: paired bootstrap (same draws for both), "
             "p = min(1, 2 min(#(Δ* <= 0) + 1, #(Δ* >= 0) + 1) / (R + 1)). Seeds: per-seed differences on the "
             "seeds both finished, exact sign-flip permutation p-value (n seeds: p >= 2 / 2^n).",
             f"{DAGGER} |Δ| within the seed noise: |mean per-seed difference| <= 2 × sd over seeds of the per-seed "
             "difference, or fewer than 2 paired seeds."]
    return _Table("compare", f"Study {study.spec['name']}: variants vs baseline {baseline}", pd.DataFrame(rows),
                  headers, cells, ["l", "l", "l"] + ["r"] * 6, len(rows), notes)


def _missing_table(study: StudyResults) -> _Table | None:
    if not study.missing:
        return None
    data = pd.DataFrame(study.missing, columns=["variant", "seed", "category", "status"])
    cells = [[v, str(s), c, st] for v, s, c, st in study.missing]
    return _Table("missing", f"Study {study.spec['name']}: {len(study.missing)} job(s) without metrics.json", data,
                  ["Variant", "Seed", "Category", "Status"], cells, ["l", "r", "l", "l"], len(cells), [])


def _costs_table(study: StudyResults) -> _Table | None:
    """Per variant: training time (s) and peak memory (MiB) of its jobs, mean ± std over jobs, and what
    selected the checkpoint (a test-set selection is labelled leakage)."""
    rows = []
    for v in study.variants:
        jobs = [j for (jv, _, _), j in study.jobs.items() if jv == v]
        if not jobs:
            continue
        extra = [j.record.get("extra", {}) for j in jobs]
        times = [float(e["train_time_s"]) for e in extra if e.get("train_time_s") is not None]
        peaks = [float(e["peak_memory"]["mib"]) for e in extra if isinstance(e.get("peak_memory"), dict)]
        kinds = sorted({e["peak_memory"]["kind"] for e in extra if isinstance(e.get("peak_memory"), dict)})
        leakage = any(e.get("test_set_leakage") for e in extra)
        rows.append({"variant": v, "n_jobs": len(jobs), "train_time_s_mean": _mean(times),
                     "train_time_s_std": _std(times), "peak_memory_mib_mean": _mean(peaks),
                     "peak_memory_mib_std": _std(peaks), "peak_memory_kind": ",".join(kinds) or None,
                     "selection": ",".join(sorted({str(e.get("selection")) for e in extra})),
                     "test_set_leakage": leakage})
    if not rows:
        return None
    cells = [[r["variant"], str(r["n_jobs"]),
              f"{_num(r['train_time_s_mean'], decimals=1)} ± {_num(r['train_time_s_std'], decimals=1)}",
              f"{_num(r['peak_memory_mib_mean'], decimals=0)} ± {_num(r['peak_memory_mib_std'], decimals=0)}",
              r["selection"] + (" (TEST-SET LEAKAGE)" if r["test_set_leakage"] else "")] for r in rows]
    notes = ["Training time: seconds of the training epochs per job. Peak memory: CUDA max allocated, or on the CPU "
             "the training process's peak resident set (interpreter, torch and data included), MiB. Both depend on the "
             "machine (see each job's metrics.json environment). A selection reading the test set is leakage."]
    return _Table("costs", f"Study {study.spec['name']}: training time and memory per variant", pd.DataFrame(rows),
                  ["Variant", "Jobs", "Train time (s)", "Peak memory (MiB)", "Model selection"], cells,
                  ["l", "r", "r", "r", "l"], len(cells), notes)


def _mean(values: Sequence[float]) -> float:
    """Mean, NaN for no value."""
    return float(np.mean(values)) if values else math.nan


def _std(values: Sequence[float]) -> float:
    """Sample std (ddof=1), NaN below two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _provenance(study: StudyResults, baseline: str, n_resamples: int, seed: int, confidence: float) -> dict[str, Any]:
    jobs = []
    for (v, s, c), job in study.jobs.items():
        d = study.job_dir(v, s, c)
        per_image = d / PER_IMAGE_NAME
        jobs.append({"variant": v, "seed": s, "category": c, "metrics_json": str(d / "metrics.json"),
                     "metrics_sha256": sha256_file(d / "metrics.json"),
                     "per_image_sha256": sha256_file(per_image) if job.per_image is not None else None,
                     "teacher_weights": job.record.get("teacher_weights"), "dataset": job.record.get("dataset"),
                     "config": job.record.get("config")})
    return {"study": study.spec, "baseline": baseline, "environment": environment_info(),
            "bootstrap": {"n_resamples": n_resamples, "seed": seed, "confidence": confidence, "stratify": True},
            "jobs": jobs, "missing": [dict(zip(("variant", "seed", "category", "status"), m)) for m in study.missing]}


def write_study_tables(study_dir: Path, baseline: str | None = None, n_resamples: int = 1000,
                       seed: int = 0) -> dict[str, Path]:
    """Write the study's tables under ``study_dir/tables/`` (see the module doc); return ``{file name: path}``.

    ``baseline``: the variant the others are compared with (default: ``study.json``'s baseline,
    else the first variant). ``n_resamples`` and ``seed`` drive the bootstrap (same seed: same
    tables). Raises :class:`StudyResultsError` for bad input.

    Parameters
    ----------
    study_dir : Path
        The study directory.
    baseline : str, optional
        The variant the others are compared with.
    n_resamples : int
        Bootstrap resamples.
    seed : int
        Bootstrap seed.

    Returns
    -------
    dict of str to Path
        ``{file name: path}``.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise StudyResultsError(f"n_resamples must be an integer >= 1; got {n_resamples!r}")
    spec = _read_spec(Path(study_dir))  # bad arguments fail before the jobs are read
    baseline = baseline if baseline is not None else (spec.get("baseline") or next(iter(spec["variants"])))
    if baseline not in spec["variants"]:
        raise StudyResultsError(f"baseline {baseline!r} is not a variant of study {spec['name']!r}: {list(spec['variants'])}")
    study = load_study_results(study_dir)
    confidence = 0.95
    order = [baseline] + [v for v in study.variants if v != baseline]
    boot, notes = _resamples(study, order, n_resamples, seed)
    results, intervals = _results_tables(study, boot, confidence)
    intervals.notes += notes + [f"{n_resamples} resamples, seed {seed}."]
    tables = [t for t in (results, intervals, _compare_table(study, boot, baseline, confidence),
                          _costs_table(study), _missing_table(study)) if t is not None]
    if study.missing:
        results.notes.append(f"{len(study.missing)} planned job(s) have no metrics.json: see missing.md.")
    out = Path(study_dir) / "tables"
    written: dict[str, Path] = {}
    all_md = []
    for t in (_finish(study, t) for t in tables):
        md = format_markdown(t.title, t.headers, t.cells, t.align, t.notes)
        all_md.append(md)
        tex = format_latex(t.title, t.headers, t.cells, t.align, t.n_body, _label(study.spec["name"], t.name), t.notes)
        for suffix, text in ((".csv", t.data.to_csv(index=False, float_format="%.6g")), (".md", md), (".tex", tex)):
            written[t.name + suffix] = atomic_write_text(out / f"{t.name}{suffix}", text)
    written["tables.md"] = atomic_write_text(out / "tables.md", "\n".join(all_md))
    prov = _provenance(study, baseline, n_resamples, seed, confidence)
    written["provenance.json"] = atomic_write_text(out / "provenance.json", json.dumps(prov, indent=2, default=str) + "\n")
    log.info("wrote %d study table files to %s", len(written), out)
    return written


# ====================================================================== CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.reporting.study_tables STUDY_DIR [--baseline V] [--n-resamples N] [--seed S]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status (2 on bad input).
    """
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.reporting.study_tables",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("study_dir", help="study directory holding study.json and runs/")
    parser.add_argument("--baseline", default=None, help="variant to compare with (default: study.json's baseline)")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    try:
        paths = write_study_tables(Path(args.study_dir), args.baseline, args.n_resamples, args.seed)
    except (StudyResultsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
