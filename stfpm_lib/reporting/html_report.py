"""A report of a run that a person can open: ``<run_dir>/report/index.html``, readable offline.

It gathers what the run left on disk, never recomputing anything:

* the tables of ``<run_dir>/tables/tables.md`` (written by :func:`stfpm_lib.reporting.tables.write_tables`,
  values in fixed decimals) as HTML tables;
* the figures listed in ``<run_dir>/figures/manifest.json`` (written by
  :func:`stfpm_lib.reporting.run_figures.write_run_figures`) and the per-category figures of the
  notebooks, each with its caption and a link to its PDF; the per-image panels as links;
* every executed notebook of the run (``<run_dir>/*.ipynb``, ``<run_dir>/<category>/*.ipynb``)
  rendered to HTML with nbconvert into ``report/notebooks/``, linked from the page.

Every link is relative (the run directory can be moved or zipped); the page has no external
resource. A small script records each image's ``naturalWidth`` in ``data-natural-width`` once
the page has loaded (what the browser test reads back).

CLI: ``stfpm report RUN_DIR`` (or ``python -m stfpm_lib.reporting.html_report RUN_DIR``).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from ..method.weights import RANDOM_TEACHER_LABEL
from ..provenance import RESULT_PACKAGES, lock_summary
from ..records.evaluation import read_metrics_json
from .tables import ReportError, collect_run

__all__ = ["REPORT_DIR", "INDEX", "parse_markdown_tables", "table_html", "render_notebook", "executed_notebooks",
           "write_report", "main"]

REPORT_DIR = "report"
INDEX = "index.html"
#: Figures the per-category notebooks write (02_train, 03_evaluate), shown when present.
CATEGORY_FIGURES = (("training_curves.png", "training curves"), ("curves.png", "ROC and PRO curves"),
                    ("per_defect_type.png", "metrics per defect type"), ("best_worst.png", "best and worst images"))
_KIND_TITLES = (("panel", "All categories"), ("curves", "ROC and PRO curves"),
                ("comparison", "This run and the published results"), ("scores", "Score distributions"),
                ("training", "Training curves"), ("gallery", "Best and worst test images"),
                ("animation", "Animations"))

_CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: .6em 1em; font-weight: bold; }
table { border-collapse: collapse; margin: .6em 0 .3em; font-size: .9em; }
th, td { border: 1px solid #bbb; padding: .25em .6em; } th { background: #eee; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
p.note { font-size: .85em; color: #444; max-width: 60em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #333; }
"""
_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("img");
  for (var i = 0; i < images.length; i++) {
    images[i].setAttribute("data-natural-width", String(images[i].naturalWidth));
  }
  document.body.setAttribute("data-images-checked", String(images.length));
});
"""


# ====================================================================== tables
def _split_row(line: str) -> list[str]:
    """Cells of a Markdown table row ``| a | b\\|c |`` (escaped pipes kept as text)."""
    body = line.strip()[1:-1]
    cells, cur, i = [], "", 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur += "|"
            i += 2
            continue
        if body[i] == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += body[i]
        i += 1
    cells.append(cur.strip())
    return cells


def parse_markdown_tables(text: str) -> list[dict[str, Any]]:
    """The tables of a ``tables.md``: ``[{"title", "headers", "align" ("l"/"r"), "rows", "notes"}]``.

    The format is :func:`stfpm_lib.reporting.tables.format_markdown`'s: a ``###`` title, the table,
    then an optional notes paragraph.

    Parameters
    ----------
    text : str
        Content of a ``tables.md``.

    Returns
    -------
    list of dict
        One dict per table.
    """
    tables: list[dict[str, Any]] = []
    for block in text.split("### ")[1:]:
        lines = block.splitlines()
        rows = [ln for ln in lines[1:] if ln.strip().startswith("|")]
        if len(rows) < 2:
            continue
        notes = " ".join(ln.strip() for ln in lines[1:] if ln.strip() and not ln.strip().startswith("|"))
        align = ["r" if spec.strip().endswith(":") and not spec.strip().startswith(":") else "l"
                 for spec in rows[1].strip().strip("|").split("|")]
        tables.append({"title": lines[0].strip().replace("\\|", "|"), "headers": _split_row(rows[0]), "align": align,
                       "rows": [_split_row(r) for r in rows[2:]], "notes": notes})
    return tables


def table_html(table: dict[str, Any]) -> str:
    """One parsed table as ``<h3>``, ``<table>`` and its notes.

    Parameters
    ----------
    table : dict
        One table of :func:`parse_markdown_tables`.

    Returns
    -------
    str
        The HTML.
    """
    e = html.escape
    align = table["align"]
    head = "".join(f'<th class="{align[j] if j < len(align) else "l"}">{e(h)}</th>'
                   for j, h in enumerate(table["headers"]))
    body = "\n".join("<tr>" + "".join(f'<td class="{align[j] if j < len(align) else "l"}">{e(c)}</td>'
                                      for j, c in enumerate(row)) + "</tr>" for row in table["rows"])
    notes = f'<p class="note">{e(table["notes"])}</p>' if table["notes"] else ""
    return f"<h3>{e(table['title'])}</h3>\n<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n{notes}"


# ====================================================================== notebooks
def executed_notebooks(run_dir: str | Path) -> list[Path]:
    """The executed notebooks of a run: ``<run_dir>/*.ipynb`` then ``<run_dir>/<category>/*.ipynb``, sorted;
    failed (``*.failed.ipynb``) and temporary (``.*``) ones included only if no successful one exists.

    Parameters
    ----------
    run_dir : str or Path
        The run directory.

    Returns
    -------
    list of Path
        The notebooks.
    """
    run_dir = Path(run_dir)
    found = sorted(run_dir.glob("*.ipynb")) + sorted(run_dir.glob("*/*.ipynb"))
    return [p for p in found if not p.name.startswith(".") and REPORT_DIR not in p.relative_to(run_dir).parts]


def render_notebook(path: str | Path, out_path: str | Path) -> Path:
    """``path`` (an executed notebook) rendered to a standalone HTML file with nbconvert (images embedded).

    Parameters
    ----------
    path : str or Path
        An executed notebook.
    out_path : str or Path
        The HTML file (written atomically).

    Returns
    -------
    Path
        ``out_path``.
    """
    import nbformat  # lazy: only to render the executed notebooks
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.mathjax_url = ""  # no network: formulas stay as text
    body, _ = exporter.from_notebook_node(nbformat.read(str(path), as_version=4))
    return atomic_write_text(out_path, body)


# ====================================================================== page
def _display_width(path: Path) -> int:
    """CSS width of an image: 1.7x its physical size (163 px per inch) from its dpi, else 1.5x its pixels,
    so that every figure shows at one scale whatever its pixel count (and at most the page width)."""
    from PIL import Image  # lazy: only to read the figures' sizes

    with Image.open(path) as im:
        dpi = im.info.get("dpi")
        return round(im.width / float(dpi[0]) * 163) if dpi and float(dpi[0]) > 1 else round(im.width * 1.5)


def _figure_html(src: str, caption: str, pdf: str | None = None, base: Path | None = None) -> str:
    e = html.escape
    link = f' (<a href="{e(pdf)}">PDF</a>)' if pdf else ""
    width = f' width="{_display_width(base / src)}"' if base is not None and (base / src).is_file() else ""
    return (f'<figure><img src="{e(src)}" alt="{e(caption)}"{width}>'
            f"<figcaption>{e(caption)}{link}</figcaption></figure>")


def _run_figures_html(run_dir: Path, report: Path) -> list[str]:
    """Sections of the figures listed in ``figures/manifest.json`` (per-image panels as links)."""
    manifest_path = run_dir / "figures" / "manifest.json"
    if not manifest_path.is_file():
        return ["<h2>Figures</h2>\n<p>No <code>figures/manifest.json</code>: run 05_figures.ipynb for this run.</p>"]
    entries = json.loads(manifest_path.read_text(encoding="utf-8"))["figures"]
    rel = os.path.relpath(manifest_path.parent, report)
    parts = []
    for kind, heading in _KIND_TITLES:
        chosen = [x for x in entries if x["kind"] == kind]
        if chosen:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            parts += [_figure_html(f"{rel}/{x['png']}", x["caption"], f"{rel}/{x['pdf']}" if x.get("pdf") else None,
                                   report) for x in chosen]
    images = [x for x in entries if x["kind"] == "image"]
    if images:
        links = "\n".join(f'<li><a href="{html.escape(rel + "/" + x["png"])}">{html.escape(x["caption"])}</a></li>'
                          for x in images)
        parts.append(f"<h2>Every test image</h2>\n<details><summary>{len(images)} four-panel figures (image | "
                     f"ground truth | heatmap | segmentation)</summary>\n<ul>\n{links}\n</ul></details>")
    return parts


def _category_figures_html(run_dir: Path, report: Path) -> list[str]:
    parts = []
    for cat_dir in sorted(p.parent for p in run_dir.glob("*/metrics.json")):
        shown = [(cat_dir / name, what) for name, what in CATEGORY_FIGURES if (cat_dir / name).is_file()]
        if shown:
            parts.append(f"<h3>{html.escape(cat_dir.name)}</h3>")
            parts += [_figure_html(os.path.relpath(p, report), f"{cat_dir.name}: {what} (notebook figure)",
                                   base=report) for p, what in shown]
    return ["<h2>Notebook figures per category</h2>", *parts] if parts else []


def _notebooks_html(run_dir: Path, report: Path) -> list[str]:
    items = []
    for nb in executed_notebooks(run_dir):
        rel = nb.relative_to(run_dir)
        target = report / "notebooks" / rel.with_suffix(".html")
        render_notebook(nb, target)
        items.append(f'<li><a href="{html.escape(os.path.relpath(target, report))}">{html.escape(str(rel))}</a>'
                     f' (<a href="{html.escape(os.path.relpath(nb, report))}">.ipynb</a>)</li>')
    return ["<h2>Executed notebooks</h2>", "<ul>\n" + "\n".join(items) + "\n</ul>"] if items else []


def _header_html(run_dir: Path) -> list[str]:
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8")) if (run_dir / "run.json").is_file() else {}
    random = bool((collect_run(run_dir)["teacher_weights"] == "random").any())
    e = html.escape
    parts = [f"<h1>STFPM run {e(run_dir.resolve().name)}</h1>"]
    if random:
        parts.append(f'<p class="warning">{e(RANDOM_TEACHER_LABEL)}: the teacher network was randomly initialised '
                     "(no ImageNet weights), so no number here is comparable with the paper.</p>")
    if record:
        parts.append(f"<p>Preset <code>{e(str(record.get('preset')))}</code>, overrides "
                     f"<code>{e(json.dumps(record.get('overrides', {}), sort_keys=True))}</code>, categories "
                     f"{e(', '.join(record.get('categories', [])))}; last updated {e(str(record.get('updated', '')))}.</p>")
    return parts


def _provenance_html(run_dir: Path) -> list[str]:
    """Each category's recorded environment (``metrics.json``), categories with the same one grouped,
    and whether its result-shaping packages match the lock."""
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[str]] = {}
    for path in sorted(run_dir.glob("*/metrics.json")):
        env = read_metrics_json(path).get("environment") or {}
        packages = env.get("packages") or {}
        versions = tuple((name, str(packages.get(name, "not recorded"))) for name in RESULT_PACKAGES)
        groups.setdefault((str(env.get("python", "?")), str(env.get("platform", "?")), versions), []).append(
            path.parent.name)
    e = html.escape
    items = [f"<li>{e(', '.join(categories))}: Python {e(python)} on {e(system)}; "
             f"{e('; '.join(f'{name} {version}' for name, version in versions))}. "
             f"Lock check: {e(lock_summary(dict(versions)))}.</li>"
             for (python, system, versions), categories in groups.items()]
    return ["<h2>Provenance</h2>", "<p>Recorded in each category's <code>metrics.json</code> (with the config, "
            "the teacher weights and their sha256, and the dataset).</p>", "<ul>\n" + "\n".join(items) + "\n</ul>"]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, notebooks: bool = True) -> Path:
    """Write ``<run_dir>/report/index.html`` (and the rendered notebooks); return its path.

    Parameters
    ----------
    run_dir : str or Path
        A run directory (``run.json``, ``tables/``, ``figures/``, ``<category>/`` ...).
    out_dir : str or Path, optional
        Default ``<run_dir>/report``.
    notebooks : bool
        Render and link the executed notebooks (nbconvert, about a second each).

    Returns
    -------
    Path
        The ``index.html`` path.

    Raises
    ------
    ReportError
        When the run directory or its tables are missing (:class:`~stfpm_lib.reporting.tables.ReportError`).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory not found: {run_dir}")
    tables_md = run_dir / "tables" / "tables.md"
    if not tables_md.is_file():
        raise ReportError(f"{tables_md} not found: make the tables first (04_report.ipynb or "
                          f"python -m stfpm_lib.reporting.tables {run_dir})")
    report = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    report.mkdir(parents=True, exist_ok=True)
    parts = _header_html(run_dir)
    parts.append("<h2>Tables</h2>")
    parts += [table_html(t) for t in parse_markdown_tables(tables_md.read_text(encoding="utf-8"))]
    parts += _run_figures_html(run_dir, report) + _category_figures_html(run_dir, report)
    if notebooks:
        parts += _notebooks_html(run_dir, report)
    parts += _provenance_html(run_dir)
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>STFPM run {html.escape(run_dir.resolve().name)}</title>\n<style>{_CSS}</style>\n"
            f"<script>{_SCRIPT}</script>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n")
    return atomic_write_text(report / INDEX, page)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stfpm_lib.reporting.html_report RUN_DIR [--out-dir DIR] [--no-notebooks]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status (2 on bad input).
    """
    parser = argparse.ArgumentParser(prog="python -m stfpm_lib.batch report", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="run directory (results/runs/<name>)")
    parser.add_argument("--out-dir", default=None, help="default RUN_DIR/report")
    parser.add_argument("--no-notebooks", action="store_true", help="do not render the executed notebooks")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir, args.out_dir, notebooks=not args.no_notebooks)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
