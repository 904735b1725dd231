"""stfpm_lib: a thin, tested library behind the STFPM reproducibility notebooks.

Architecture at a glance (sub-packages name the layers)::

    config.py              STFPMConfig: every knob, presets official / anomalib / hcw / xia; each choice
                           list once (Literal types); narrow Loss/Map/TransformSettings
    method/                the method in pure torch, no files written
        model.py           teacher and student feature pyramids over torchvision ResNets
        loss.py            the STFPM loss (official and anomalib scalings)
        anomaly_map.py     per-layer distances, upsampling, fusion, smoothing, image scores
        weights.py         teacher weights: imagenet (torchvision API) / random / local .pth, with sha256
    data/                  MVTec-layout index, preprocessing, Dataset, adapters (VisA, folders, PIPED),
                           converter, synthetic defects, the embedded demo dataset
    metrics/               AUROC, exact MVTec AU-PRO, the official code's PRO, F1, AP, IoU, curves;
                           summary.py: compute_all / per_defect_type for one category;
                           bootstrap.py: intervals over test images, paired comparisons (NumPy only)
    engine/                running the method
        training.py        fit(): SGD loop, model selection, resume
        checkpoint.py      the checkpoint.pt / last.pt format (hashes, verification), load_checkpoint
        inference.py       predict(): anomaly maps and scores cached to one .npz per category
        device.py          device, precision, CPU kernels, RNG state
        feature_cache.py   the frozen teacher's features kept in memory
    records/               what a run leaves on disk
        evaluation.py      predictions -> metrics (+ per defect type), the metrics.json and
                           per_image.npz formats
        provenance.py      package versions and machine of a result
        io.py              atomic writes, sha256 of files, relative paths
    reporting/             runs -> tables and figures
        tables.py          run -> tables (CSV / Markdown / LaTeX) beside published numbers
        study_tables.py    study (variants x seeds x categories) -> tables with seed noise,
                           bootstrap intervals and paired tests
        published.py       the published numbers (data in reporting/published/, with sources)
        figures.py         matplotlib figures for notebooks and theses (one style, 300 dpi PNG + PDF)
        run_figures.py     every figure of a run from its cached maps and metrics (05_figures)
        html_report.py     <run>/report/index.html: tables, figures, executed notebooks as HTML
        ablation_figures.py  a study's figures from its tables: variants with seed error bars, factor deltas
    runner/                entry points
        notebook_steps.py  train -> predict -> evaluate for one category, plots (what notebooks call)
        papermill_runner.py  notebooks over categories (``python -m stfpm_lib.batch``, via batch.py)
        study.py           study specs (studies/*.yaml): variants x seeds x categories -> jobs
        study_runner.py    ``python -m stfpm_lib.batch study``: study.json, resumable jobs, summary
        executors.py       where jobs run: local process pool, Dask (scheduler, LocalCluster, SLURM/PBS), GPU pinning
        demo_results.py    regenerate the committed results/demo; nbval of its notebooks (make test)
        cli.py             the ``stfpm`` console script: train | predict | evaluate
    bench/                 benchmarks (python -m stfpm_lib.bench metrics|speed)

A package imports only from packages above it in this list, except ``records.io`` and
``records.provenance`` (leaf helpers with no stfpm_lib imports, used by every layer that writes):
``method/`` and ``data/`` never import ``engine/``, ``reporting/`` or ``runner/``; ``engine/`` never
imports ``reporting/`` or ``runner/``; nothing imports ``runner/``.
"""

from .config import PRESETS, STFPMConfig

__version__ = "0.1.0"
__all__ = ["PRESETS", "STFPMConfig", "__version__"]
