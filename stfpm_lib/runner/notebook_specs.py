"""The notebook contract: what a notebook must declare to be run by the runner, and what it must write.

Notebook contract: one cell tagged ``parameters`` (the first cell) declaring flat parameters.
A per-category notebook declares ``category``; the runner sets ``category``, ``data_root``,
``out_dir``, ``run_dir`` and ``force`` (``--force``: redo work already on disk) when declared. A notebook that declares ``preset`` builds its
configuration with ``STFPMConfig.from_preset(preset, **overrides)``, so any ``STFPMConfig``
field may be passed with ``-p`` (see :func:`stfpm_lib.runner.notebook_steps.config_from_namespace`).
Unknown keys fail before anything runs (papermill itself only warns).

:data:`NOTEBOOK_OUTPUTS` lists every file each of the project's notebooks writes (a step counts as done
only when all exist); :func:`load_notebook_spec` reads a notebook's parameters cell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import CONFIG_FIELDS
from .errors import BatchError

__all__ = ["NOTEBOOK_OUTPUTS", "RUNNER_KEYS", "RUN_LEVEL_OUT", "PIPELINE", "REPORTS", "RUN_LEVEL", "NotebookSpec",
           "load_notebook_spec", "default_notebooks_dir"]

#: Every file (relative to the category directory) a notebook writes, figures included: all must
#: exist for its step to count as done, and all are deleted before the step is re-executed, so a
#: killed or failing rerun cannot leave an old figure beside a new result (tests/integration/test_papermill_runner.py
#: checks this list against the notebooks' code).
NOTEBOOK_OUTPUTS: dict[str, tuple[str, ...]] = {
    "01_explore_dataset": ("dataset_counts.csv", "examples.png"),
    "02_train": ("checkpoint.pt", "history.csv", "config.json", "training_curves.png"),
    "03_evaluate": ("predictions_test.npz", "predictions_val.npz", "per_image.npz", "metrics.json",
                    "per_defect_type.png", "curves.png", "best_worst.png"),
    "04_report": ("tables",),
    "05_figures": ("figures",),
    # study-level reports (a study's ``report``, run in the study directory)
    **{f"{n:02d}_ablation_{q}": ("tables", "figures")
       for n, q in enumerate(("layers", "backbones", "teacher", "factors", "seeds"), start=6)},
}

#: Parameters the runner sets itself; passing them with ``-p`` is an error.
RUNNER_KEYS = ("category", "data_root", "out_dir", "run_dir", "force")

#: Output sub-directory of run-level notebooks (default: the notebook's stem).
RUN_LEVEL_OUT: dict[str, str] = {"04_report": "tables", "05_figures": "figures"}

PIPELINE = ("02_train.ipynb", "03_evaluate.ipynb")
REPORTS = ("04_report.ipynb", "05_figures.ipynb")
RUN_LEVEL = "_run"

@dataclass(frozen=True)
class NotebookSpec:
    """A notebook and the parameters its ``parameters`` cell declares (name -> papermill's record).

    Attributes
    ----------
    path : Path
        The notebook file.
    parameters : mapping of str to mapping
        Declared parameter name -> papermill's record of it.
    """

    path: Path
    parameters: Mapping[str, Mapping[str, Any]]

    @property
    def name(self) -> str:
        """File stem, e.g. ``02_train``."""
        return self.path.stem

    @property
    def per_category(self) -> bool:
        """True when the notebook is executed once per category (it declares ``category``)."""
        return "category" in self.parameters

    @property
    def takes_config(self) -> bool:
        """True when the notebook builds an ``STFPMConfig`` (it declares ``preset``)."""
        return "preset" in self.parameters

    def accepts(self, key: str) -> bool:
        """Whether ``-p key ...`` is meaningful for this notebook.

        Parameters
        ----------
        key : str
            Parameter name.

        Returns
        -------
        bool
            Declared, or an ``STFPMConfig`` field of a notebook that takes a config.
        """
        return key in self.parameters or (self.takes_config and key in CONFIG_FIELDS)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Files the notebook must leave behind (besides the executed notebook)."""
        return NOTEBOOK_OUTPUTS.get(self.name, ())


def load_notebook_spec(path: str | os.PathLike) -> NotebookSpec:
    """Read a notebook's parameters cell (papermill's ``inspect_notebook``); errors name the file.

    Parameters
    ----------
    path : str or os.PathLike
        The notebook.

    Returns
    -------
    NotebookSpec
        The notebook and its parameters.
    """
    import nbformat  # lazy: seconds to import; --help and bad input answer at once
    import papermill

    path = Path(path)
    if not path.is_file():
        raise BatchError(f"notebook not found: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise BatchError(f"{path}: not a readable notebook: {exc}") from exc
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise BatchError(
            f"{path}: no cell tagged 'parameters'; papermill cannot parameterise it "
            "(tag the first code cell 'parameters' in JupyterLab: Property Inspector -> Cell Tags)"
        )
    return NotebookSpec(path=path, parameters=papermill.inspect_notebook(str(path)))



def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout this package lives in, else ``./notebooks``."""
    beside = Path(__file__).resolve().parents[2] / "notebooks"
    return beside if beside.is_dir() else Path.cwd() / "notebooks"

