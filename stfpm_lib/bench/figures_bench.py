"""Time and disk of a run's figures step (``stfpm bench figures [--n-test 120 --size 256]``).

Builds one synthetic category (``n_test`` test images of ``size`` × ``size`` pixels, a third of them
normal), trains a random-teacher student for one epoch and evaluates it (the files ``05_figures``
reads), then times :func:`~stfpm_lib.reporting.run_figures.write_run_figures` twice on a fresh folder:
per-image panels as PNG only (the default) and with their vector PDFs (``per_image_pdf=True``). It
prints the seconds, the files and the megabytes of each, and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _disk(folder: Path) -> tuple[int, float]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def main(argv: list[str] | None = None) -> int:
    """Run the figures benchmark and print its figures (the CPU named).

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        The exit code, 0.
    """
    p = argparse.ArgumentParser(prog="stfpm bench figures", description=__doc__.split("\n")[0])
    p.add_argument("--n-test", type=int, default=120, help="test images (default 120)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels, also the network input (default 256)")
    a = p.parse_args(argv)
    # heavy imports only once the arguments are fine (torch, matplotlib)
    from ..config import STFPMConfig
    from ..data.synthetic import make_synthetic_category
    from ..engine.device import cpu_description
    from ..reporting.run_figures import write_run_figures
    from ..runner.notebook_steps import run_category

    n_defect = a.n_test - a.n_test // 3
    with tempfile.TemporaryDirectory(prefix="stfpm-figures-bench-") as tmp:
        root, run = Path(tmp) / "data", Path(tmp) / "run"
        make_synthetic_category(root, "brick", n_train=16, n_test_good=a.n_test // 3,
                                defect_types=("scratch", "blob"), n_per_defect=n_defect // 2, size=a.size)
        cfg = STFPMConfig.from_preset("official", epochs=1, image_size=a.size, batch_size=8, teacher_weights="random",
                                      device="cpu")
        run_category(cfg, root, "brick", run / "brick")
        n = len(list((root / "brick" / "test").rglob("*.png")))
        cpu = cpu_description()
        print(f"{n} test images of {a.size}x{a.size} px; CPU: {cpu.get('model', '?')} ({cpu.get('capability', '?')})")
        for pdf in (False, True):
            out = Path(tmp) / f"figures_pdf{int(pdf)}"
            t0 = time.perf_counter()
            write_run_figures(run, out, per_image=True, per_image_pdf=pdf, gif=True)
            seconds = time.perf_counter() - t0
            files, mib = _disk(out)
            per_image_files, per_image_mib = _disk(out / "brick" / "images")
            print(f"per_image_pdf={pdf}: {seconds:.1f} s, {files} files, {mib:.1f} MiB "
                  f"(per-image panels: {per_image_files} files, {per_image_mib:.1f} MiB, "
                  f"{per_image_mib / n * 1024:.0f} KiB per test image)")
    return 0
