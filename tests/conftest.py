"""Shared fixtures: tiny MVTec-layout datasets of real PNG files, made on disk by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from stfpm_lib.data import make_synthetic_category


@pytest.fixture(scope="session")
def tiny_mvtec(tmp_path_factory) -> Path:
    """Root with categories ``brick`` and ``grass``: 12 train, 4 good + 2×3 defective test images, 64×64."""
    root = tmp_path_factory.mktemp("tiny_mvtec")
    make_synthetic_category(root, "brick", seed=1)
    make_synthetic_category(root, "grass", seed=2, defect_types=("blob", "patch"))
    return root


#: (width, height) of the images of :func:`make_surface_defects`, used in turn.
SURFACE_SIZES = ((40, 48), (56, 40), (64, 64))
SURFACE_TYPES = ("Blowhole", "Break", "Crack", "Fray", "Uneven")
#: The one command for that layout (the worked example of docs/datasets.md), without --root/--out.
SURFACE_COMMAND = ["convert", "--adapter", "folder", "--param", "normal_dir=MT_Free", "--param", "defect_dirs=MT_*",
                   "--param", "mask_template={stem}.png", "--param", "mask_threshold=127", "--allow-empty-masks"]


def make_surface_defects(root: Path, n_normal: int = 12, n_per_type: int = 2) -> Path:
    """A public surface-defect dataset's shape (the Magnetic-tile layout): six top-level folders
    ``MT_Free`` (normals) and ``MT_<type>`` for :data:`SURFACE_TYPES`, each holding grayscale
    ``<name>.jpg`` images and ``<name>.png`` masks side by side (the normals' all black), images of
    the three :data:`SURFACE_SIZES` in turn, masks anti-aliased (values between 0 and 255 on the
    edges, drawn at 4x and downsampled); the mask of the first ``Uneven`` image is empty. Returns ``root``.
    """
    rng = np.random.default_rng(7)
    k = 0
    for folder, n in [("MT_Free", n_normal)] + [(f"MT_{t}", n_per_type) for t in SURFACE_TYPES]:
        (root / folder).mkdir(parents=True)
        for i in range(n):
            w, h = SURFACE_SIZES[k % len(SURFACE_SIZES)]
            k += 1
            image = rng.normal(128, 12, size=(h, w)).clip(0, 255)
            big = Image.new("L", (4 * w, 4 * h), 0)
            if folder != "MT_Free" and not (folder == "MT_Uneven" and i == 0):
                x, y = int(rng.integers(4, w - 16)), int(rng.integers(4, h - 16))
                ImageDraw.Draw(big).ellipse((4 * x, 4 * y, 4 * x + 37, 4 * y + 29), fill=255)
            mask = big.resize((w, h), Image.BOX)
            image[np.asarray(mask) > 0] -= 60
            stem = f"exp{i % 3}_num_{1000 + k}"
            Image.fromarray(image.clip(0, 255).astype(np.uint8), mode="L").save(root / folder / f"{stem}.jpg",
                                                                                 quality=92)
            mask.save(root / folder / f"{stem}.png")
    return root


@pytest.fixture
def surface_defects(tmp_path: Path) -> Path:
    """:func:`make_surface_defects` under ``tmp_path/Magnetic-tile-defect``."""
    return make_surface_defects(tmp_path / "Magnetic-tile-defect")


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


def pytest_collection_modifyitems(config, items) -> None:
    """Markers from where a test lives and what it uses (``make test-fast`` = ``-m "not integration and not slow"``)."""
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
        if "tiny_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
