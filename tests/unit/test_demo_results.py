"""results/demo's regeneration and nbval helpers (the full regeneration is ``make demo-results``)."""

from __future__ import annotations

import json

import pytest

from stfpm_lib.runner import demo_results as D


def test_committed_demo_is_complete_and_self_contained():
    """What nbval re-executes is committed, with run_dir '.' so it runs in any clone."""
    import nbformat

    demo = D.DEMO_DIR
    for name in D.RUN_LEVEL_NOTEBOOKS:
        nb = nbformat.read(demo / name, as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and 'run_dir = "."' in injected[0].source
        assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    for category in json.loads((demo / "run.json").read_text())["categories"]:
        assert all((demo / category / f).is_file() for f in D.CATEGORY_FILES), category
        assert not (demo / category / "checkpoint.pt").exists()
    manifest = json.loads((demo / "figures" / "manifest.json").read_text())
    assert all((demo / "figures" / e["png"]).is_file() for e in manifest["figures"])
    assert (demo / "report" / "index.html").is_file() and D.SANITIZE.is_file()


def test_copy_committed_takes_only_the_committed_files(tmp_path):
    run = tmp_path / "run"
    (run / "brick").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    for name in D.CATEGORY_FILES + ("checkpoint.pt", "last.pt", "best_worst.png"):
        (run / "brick" / name).write_text(name)
    dest = tmp_path / "demo"
    (dest / "stale").mkdir(parents=True)
    D.copy_committed(run, dest)
    assert sorted(p.name for p in (dest / "brick").iterdir()) == sorted(D.CATEGORY_FILES)
    assert not (dest / "stale").exists() and (dest / "run.json").read_text() == "{}"
    (run / "brick" / "history.csv").unlink()
    with pytest.raises(FileNotFoundError, match="history.csv missing"):
        D.copy_committed(run, dest)


def test_nbval_needs_the_committed_notebooks(tmp_path, capsys):
    assert D.nbval(tmp_path) == 2
    assert "run make demo-results" in capsys.readouterr().err
