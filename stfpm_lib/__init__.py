"""stfpm_lib: a thin, tested library behind the STFPM reproducibility notebooks.

Architecture at a glance (one concern per module)::

    config.py         STFPMConfig: every knob, presets official / anomalib / hcw / xia
    data/             MVTec-layout index, preprocessing, Dataset, adapters (VisA, folders, PIPED),
                      converter, synthetic defects, the embedded demo dataset
    weights.py        teacher weights: imagenet (torchvision API) / random / local .pth, with sha256
    model.py          teacher and student feature pyramids over torchvision ResNets
    loss.py           the STFPM loss (official and anomalib scalings)
    anomaly_map.py    per-layer distances, upsampling, fusion, smoothing, image scores
    train.py          fit(): SGD loop, model selection, checkpoints, resume
    inference.py      predict(): anomaly maps and scores cached to one .npz per category
    metrics/          AUROC, exact MVTec AU-PRO, the official code's PRO, F1, curves
    evaluate.py       predictions -> metrics (+ per defect type), metrics.json with provenance
    report.py         run -> tables (CSV / Markdown / LaTeX) beside published numbers
    published.py      the published numbers, with their sources
    figures.py        matplotlib figures for notebooks and theses
    pipeline.py       train -> predict -> evaluate for one category (what notebooks call)
    batch.py          papermill runner over categories (python -m stfpm_lib.batch)
    bench/            benchmarks (python -m stfpm_lib.bench metrics|speed)
"""

from .config import PRESETS, STFPMConfig

__version__ = "0.1.0"
__all__ = ["PRESETS", "STFPMConfig", "__version__"]
