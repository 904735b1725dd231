"""The HTML report of a run: tables from tables.md, figures from the manifest, executed notebooks via nbconvert."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from tiny_run import make_report_run  # tests/unit/ is on sys.path (pytest rootdir-relative import)

from stfpm_lib.method.weights import RANDOM_TEACHER_LABEL
from stfpm_lib.reporting import html_report as H
from stfpm_lib.reporting.tables import ReportError, format_markdown


class _Collect(HTMLParser):
    """Tags and attributes of a page (tables, images, links)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(path: Path) -> list[tuple[str, dict]]:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    return p.tags


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    run = make_report_run(tiny_run, tmp_path_factory.mktemp("report"))
    return run, H.write_report(run)


def test_markdown_tables_round_trip():
    md = format_markdown("T: a|b", ["Category", "Image AUROC"], [["x|y", "0.9000"], ["mean", "0.8000"]], ["l", "r"],
                         ["note one.", "note two."])
    (table,) = H.parse_markdown_tables(md + "\n" + "### empty\n")
    assert table == {"title": "T: a|b", "headers": ["Category", "Image AUROC"], "align": ["l", "r"],
                     "rows": [["x|y", "0.9000"], ["mean", "0.8000"]], "notes": "note one. note two."}
    out = H.table_html(table)
    assert '<td class="r">0.9000</td>' in out and "<td class=\"l\">x|y</td>" in out and "<h3>T: a|b</h3>" in out


def test_report_has_tables_figures_and_notebooks(report):
    run, index = report
    assert index == run / "report" / "index.html"
    tags = parse(index)
    text = index.read_text(encoding="utf-8")
    n_tables = (run / "tables" / "tables.md").read_text().count("### ")
    assert sum(t == "table" for t, _ in tags) == n_tables >= 2
    assert RANDOM_TEACHER_LABEL in text and "Image AUROC" in text
    assert not re.search(r"\d\.\d+e[-+]\d", text)  # fixed decimals, never scientific notation
    images = [a["src"] for t, a in tags if t == "img"]
    assert any(s.endswith("figures/all_categories.png") for s in images)
    assert any(s.endswith("figures/brick/test_images.gif") for s in images)
    for src in images:  # every image is a relative link to a file that decodes
        assert not src.startswith(("/", "http")), src
        with Image.open(index.parent / src) as im:
            im.verify()
    links = [a["href"] for t, a in tags if t == "a"]
    for rel in ("notebooks/05_figures.html", "notebooks/brick/03_evaluate.html"):
        assert rel in links
        rendered = (index.parent / rel).read_text(encoding="utf-8")
        assert "print" in rendered and ">2" in rendered  # the code and its output
    assert all((index.parent / h).exists() for h in links), links
    assert "<script src=" not in text and "<link " not in text  # nothing from the network


def test_report_errors(tmp_path, capsys):
    with pytest.raises(ReportError, match="run directory not found"):
        H.write_report(tmp_path / "missing")
    with pytest.raises(ReportError, match="tables.md not found"):
        H.write_report(tmp_path)
    assert H.main([str(tmp_path / "missing")]) == 2
    assert "error: run directory not found" in capsys.readouterr().err


def test_batch_report_subcommand(report, capsys):
    from stfpm_lib.runner.papermill_runner import main

    run, index = report
    index.unlink()
    assert main(["report", str(run), "--no-notebooks"]) == 0
    assert f"report: {index}" in capsys.readouterr().out and index.is_file()


def test_report_provenance_says_whether_versions_match_the_lock(report, tmp_path):
    """The recorded versions of each category against requirements-lock.txt (the run was made here,
    in the locked environment: it matches; a category recorded with another numpy is named)."""
    import json
    import shutil

    run, index = report
    text = index.read_text(encoding="utf-8")
    assert "<h2>Provenance</h2>" in text and "Lock check: matches the lock (requirements-lock.txt)" in text
    other = tmp_path / "run"
    shutil.copytree(run, other)
    path = sorted(other.glob("*/metrics.json"))[0]
    record = json.loads(path.read_text(encoding="utf-8"))
    record["environment"]["packages"]["numpy"] = "1.26.4"
    path.write_text(json.dumps(record), encoding="utf-8")
    page = H.write_report(other, notebooks=False).read_text(encoding="utf-8")
    assert re.search(rf"<li>{path.parent.name}: Python .*numpy 1\.26\.4.*Lock check: differs from the lock "
                     r"\(requirements-lock\.txt\): numpy 1\.26\.4 \(lock \d", page)
