"""The HTML report opened in headless Chromium (Debian's ``chromium``, installed by .ci/run; never skipped):
the page renders (screenshot not blank), every image loads (``naturalWidth`` recorded by the page's own
script, read back from the DOM after the page's load event) and the tables are present."""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from tiny_run import make_report_run  # noqa: E402  (the run of the HTML writer's unit test)

from stfpm_lib.reporting.html_report import write_report  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-dev-shm-usage", "--virtual-time-budget=15000"]


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: .ci/run installs Debian's chromium package"
    return subprocess.run([CHROMIUM, *FLAGS, *args], cwd=cwd, capture_output=True, text=True, timeout=180)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    run = make_report_run(tiny_run, tmp_path)
    index = write_report(run)
    url = index.resolve().as_uri()

    shot = tmp_path / "shot.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1200,1600", url, cwd=tmp_path)
    assert shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # text, tables, figures
    assert (pixels[:200] < 100).all(axis=-1).mean() > 0.002  # dark text of the title and warning near the top

    res = _chromium("--dump-dom", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Dom()
    dom.feed(res.stdout)
    body = next(a for t, a in dom.tags if t == "body")
    images = [a for t, a in dom.tags if t == "img"]
    assert len(images) >= 10 and body.get("data-images-checked") == str(len(images))  # the load handler ran
    widths = {a["src"]: int(a.get("data-natural-width", "0")) for a in images}
    assert all(w > 0 for w in widths.values()), [s for s, w in widths.items() if w == 0]  # every image decoded
    for src, width in widths.items():
        with Image.open(index.parent / src) as im:
            assert im.size[0] == width, src
    n_tables = (run / "tables" / "tables.md").read_text().count("### ")
    assert sum(t == "table" for t, _ in dom.tags) == n_tables
    assert "Image AUROC" in res.stdout and "random teacher" in res.stdout
