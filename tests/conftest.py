"""Shared fixtures: tiny MVTec-layout datasets of real PNG files, made on disk by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stfpm_lib.data import make_synthetic_category


@pytest.fixture(scope="session")
def tiny_mvtec(tmp_path_factory) -> Path:
    """Root with categories ``brick`` and ``grass``: 12 train, 4 good + 2×3 defective test images, 64×64."""
    root = tmp_path_factory.mktemp("tiny_mvtec")
    make_synthetic_category(root, "brick", seed=1)
    make_synthetic_category(root, "grass", seed=2, defect_types=("blob", "patch"))
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster than two on a shared 2-core CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fit_interrupted():
    """``fit_interrupted(epoch, cfg, data_root, category, out_dir)``: a training run killed right after
    ``epoch`` (its ``last.pt`` written, no ``checkpoint.pt``), as a kill between epochs leaves it."""
    from stfpm_lib.engine.training import fit

    class Interrupt(Exception):
        pass

    def run(epoch: int, *args, **kwargs) -> None:
        def log(row):
            if row["epoch"] == epoch:
                raise Interrupt

        with pytest.raises(Interrupt):
            fit(*args, progress=False, log=log, **kwargs)

    return run


@pytest.fixture(scope="session")
def tiny_run(tiny_mvtec, tmp_path_factory) -> Path:
    """A finished run (brick, grass) made without training: cached predictions, metrics.json, history, tables
    (see tests/unit/tiny_run.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "unit"))
    from tiny_run import make_run

    return make_run(tmp_path_factory.mktemp("tiny_run") / "run", tiny_mvtec)
