"""stfpm_lib: a thin, tested library behind the STFPM reproducibility notebooks.

Architecture at a glance (sub-packages name the layers; lowest first)::

    io.py                  ground floor: atomic writes, sha256 of files, relative paths, clear disk errors
    provenance.py          ground floor: package versions, machine, the lock check of a result
    config.py              STFPMConfig: every knob, presets official / anomalib / hcw / xia; each choice
                           list once (Literal types); narrow Loss/Map/TransformSettings
    method/                the method in pure torch, no files written
        model.py           teacher and student feature pyramids over torchvision ResNets
        loss.py            the STFPM loss (official and anomalib scalings)
        anomaly_map.py     per-layer distances, upsampling, fusion, smoothing, image scores
        weights.py         teacher weights: imagenet (torchvision API) / random / local .pth, with sha256
    data/                  MVTec-layout index and the one data-root rule (``demo`` = the embedded demo),
                           preprocessing, Dataset, adapters (VisA, folders, PIPED), converter, synthetic
                           defects, the embedded demo dataset
    metrics/               AUROC, exact MVTec AU-PRO, the official code's PRO, F1, AP, IoU, curves;
                           summary.py: compute_all / per_defect_type for one category;
                           bootstrap.py: intervals over test images, paired comparisons (NumPy only)
    records/               the file formats, readable without the networks
        predictions.py     the predictions .npz (maps, scores, masks, provenance) and load_predictions
        evaluation.py      predictions -> metrics (+ per defect type), the metrics.json and
                           per_image.npz formats
    engine/                running the method
        training.py        fit(): SGD loop, model selection, resume
        checkpoint.py      the checkpoint.pt / last.pt format (hashes, verification), load_checkpoint
        inference.py       predict(): anomaly maps and scores written as a predictions file
        device.py          device, precision, CPU kernels, RNG state
        feature_cache.py   the frozen teacher's features kept in memory
    reporting/             runs -> tables and figures
        tables.py          run -> tables (CSV / Markdown / LaTeX) beside published numbers
        study_tables.py    study (variants x seeds x categories) -> tables with seed noise,
                           bootstrap intervals and paired tests
        published.py       the published numbers (data in reporting/published/, with sources)
        figures/           matplotlib figures for notebooks and theses (one style, 300 dpi PNG + PDF):
                           style, heatmaps, curves, comparisons
        run_figures.py     every figure of a run from its cached maps and metrics (05_figures)
        html_report.py     <run>/report/index.html: tables, figures, executed notebooks as HTML
        ablation_figures.py  a study's figures from its tables: variants with seed error bars, factor deltas
    runner/                entry points
        cli.py             the front door, ``stfpm <command>``: train | predict | evaluate | run |
                           reproduce | report | study | data | bench
        errors.py          the user-error rule of every command (exit 2, Ctrl-C 130)
        notebook_steps.py  train -> predict -> evaluate for one category, plots (what notebooks call)
        notebook_specs.py  the notebook contract: parameters cell, outputs each notebook writes
        notebook_params.py the -p KEY VALUE parameters, checked against the notebooks and the config
        jobs.py            run directories, locks, papermill execution per category
        teacher.py         the teacher policy: the demo's labelled random-teacher fallback, DEMO_OVERRIDES
        papermill_runner.py  the runner's command line (run | reproduce | report | study;
                           ``python -m stfpm_lib.batch`` is an alias)
        study.py           study specs (studies/*.yaml): variants x seeds x categories -> jobs
        study_runner.py    ``stfpm study``: study.json, resumable jobs, summary
        executors.py       where jobs run: local process pool, Dask (scheduler, LocalCluster, SLURM/PBS), GPU pinning
        data_commands.py   ``stfpm data list|convert|verify|...`` (alias ``python -m stfpm_lib.data``)
        demo_results.py    regenerate the committed results/demo; nbval of its notebooks (make test)
    bench/                 benchmarks (``stfpm bench metrics|speed|bootstrap``); official_recipe.py is the
                           official code's loop, the speed benchmark's baseline

A module imports only from layers below it in this list (tests/unit/test_layout.py checks it, lazy
imports included): ``io`` and ``provenance`` import nothing of the library; ``data`` never imports
``method``; ``records`` and ``reporting`` never import ``engine``; nothing imports ``runner``. The
import graph has one circle, the dataset adapters' registry.
"""

from .config import PRESETS, STFPMConfig

__version__ = "0.1.0"
__all__ = ["PRESETS", "STFPMConfig", "__version__"]
