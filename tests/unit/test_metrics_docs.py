"""The metrics' documentation: one numpydoc style, and runnable examples that the suite checks."""

import doctest
import inspect
import re
from pathlib import Path

import tomllib

import stfpm_lib.metrics as M
from stfpm_lib.metrics import _resize, pro, roc, summary

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_FUNCTIONS = sorted(n for n in M.__all__ if inspect.isfunction(getattr(M, n)))


def _section(doc: str, title: str) -> str:
    """The text of a numpydoc section (from its underlined title to the next one)."""
    m = re.search(rf"^ *{title}\n *-{{{len(title)}}}\n(.*?)(?=^ *\w[\w ]*\n *-{{3,}}\n|\Z)", doc, re.M | re.S)
    assert m, f"no '{title}' section"
    return m.group(1)


def test_every_public_metric_function_has_parameters_returns_and_an_example() -> None:
    assert len(PUBLIC_FUNCTIONS) == 21
    for name in PUBLIC_FUNCTIONS:
        fn = getattr(M, name)
        doc = inspect.getdoc(fn) or ""
        assert not re.search(r"^\s*\{\w+\}$", doc, re.M), f"{name}: a shared-doc marker was not filled in"
        params = _section(doc, "Parameters")
        for p in inspect.signature(fn).parameters:
            assert re.search(rf"^[\w, ]*\b{p}\b[\w, ]* :", params, re.M), f"{name}: parameter {p!r} undocumented"
        assert _section(doc, "Returns").strip(), name
        examples = doctest.DocTestParser().get_examples(_section(doc, "Examples"))
        assert any(name in e.source for e in examples), f"{name}: no example calls it"
        assert any(e.want.strip() for e in examples), f"{name}: no example prints a value"


def test_metric_examples_give_their_documented_values() -> None:
    attempted = 0
    for module in (roc, pro, summary, _resize):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 80  # every example line ran (91 when written)


def test_pytest_runs_the_metrics_doctests_and_the_runner_helpers_ones() -> None:
    """The doctests pytest collects: the metrics package and the other modules with examples."""
    opts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in opts["addopts"].split()
    assert [p for p in opts["testpaths"] if p.startswith("stfpm_lib")] == [
        "stfpm_lib/metrics", "stfpm_lib/io.py", "stfpm_lib/runner/notebook_steps.py", "stfpm_lib/runner/progress.py"]
