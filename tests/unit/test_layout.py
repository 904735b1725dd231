"""The package layout: sub-packages name the layers, imports only go down, no two modules share a name."""

import ast
from collections import Counter
from pathlib import Path

import stfpm_lib

PACKAGE = Path(stfpm_lib.__file__).resolve().parent
# layer -> what it must never import (module-level and function-level imports alike)
FORBIDDEN = {
    "config": ("data", "method", "metrics", "engine", "records.evaluation", "reporting", "runner"),
    "method": ("engine", "records.evaluation", "reporting", "runner"),
    "data": ("engine", "records.evaluation", "reporting", "runner"),
    "metrics": ("config", "data", "method", "engine", "records", "reporting", "runner"),
    "engine": ("records.evaluation", "reporting", "runner"),
    "records": ("reporting", "runner"),
    "reporting": ("runner",),
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "demo_data" not in p.parts)


def _imported(source: str, package: str) -> set[str]:
    """Every ``stfpm_lib`` module (or name in one) that ``source``, a module of ``package``, imports
    (absolute dotted names)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("stfpm_lib")}


def test_no_two_modules_share_a_basename():
    names = Counter(p.name for p in _modules() if p.name not in ("__init__.py", "__main__.py"))
    assert [name for name, n in names.items() if n > 1] == []


def test_lower_layers_never_import_upper_ones():
    bad = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        layer = rel.parts[0].removesuffix(".py")
        package = ".".join(("stfpm_lib",) + rel.parent.parts)
        for name in _imported(path.read_text(), package):
            inner = name.removeprefix("stfpm_lib.")
            bad += [f"{rel} imports {name}" for upper in FORBIDDEN.get(layer, ())
                    if inner == upper or inner.startswith(upper + ".")]
    assert bad == []


def test_the_layer_rule_sees_function_level_imports():
    """The check above would catch an upward import hidden inside a function."""
    source = (PACKAGE / "method" / "model.py").read_text() + "\n\ndef _probe():\n    from ..runner.cli import main\n"
    assert "stfpm_lib.runner.cli" in _imported(source, "stfpm_lib.method")
    assert "stfpm_lib.runner.cli" not in _imported((PACKAGE / "method" / "model.py").read_text(), "stfpm_lib.method")


TESTS = Path(__file__).resolve().parents[1]
#: unit test files named after a package (tested through its public API) or a cross-cutting rule
UNIT_FILES_NOT_NAMED_AFTER_A_MODULE = {"test_metrics.py", "test_metrics_docs.py", "test_layout.py"}


def test_unit_test_files_are_named_after_the_module_they_test():
    """``tests/unit/test_<name>.py`` tests ``stfpm_lib/**/<name>.py``: a reader finds a module's tests by its name."""
    modules = {p.stem for p in _modules()}
    orphans = [p.name for p in sorted((TESTS / "unit").glob("test_*.py"))
               if p.name not in UNIT_FILES_NOT_NAMED_AFTER_A_MODULE and p.stem.removeprefix("test_") not in modules]
    assert orphans == []


def test_tests_live_in_unit_or_integration():
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []
    assert {p.parent.name for p in TESTS.rglob("test_*.py")} == {"unit", "integration"}


def test_test_files_have_unique_basenames():
    """pytest imports test files by basename (rootdir-relative): two ``test_x.py`` would clash."""
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
