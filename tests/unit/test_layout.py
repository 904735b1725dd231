"""The package layout: sub-packages name the layers, imports only go down, no two modules share a name."""

import ast
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import stfpm_lib

PACKAGE = Path(stfpm_lib.__file__).resolve().parent
#: the library's packages and top-level modules, lowest first
LAYERS = ("io", "provenance", "config", "method", "data", "metrics", "records", "engine", "reporting", "runner", "bench")
# layer -> what it must never import (module-level and function-level imports alike)
FORBIDDEN = {
    "io": LAYERS,  # the ground floor imports nothing of the library
    "provenance": LAYERS,
    "config": ("data", "method", "metrics", "engine", "records", "reporting", "runner"),
    "method": ("data", "engine", "records", "reporting", "runner"),
    "data": ("method", "engine", "records", "reporting", "runner"),
    "metrics": ("config", "data", "method", "engine", "records", "reporting", "runner"),
    "records": ("engine", "reporting", "runner"),  # file formats: readable without the networks
    "engine": ("records.evaluation", "reporting", "runner"),
    "reporting": ("engine", "runner"),
}
#: entry points (``python -m stfpm_lib.<package>``) may call the front door above their package
ENTRY_POINTS = ("__main__.py",)


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
        if path.name in ENTRY_POINTS:
            continue
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
UNIT_FILES_NOT_NAMED_AFTER_A_MODULE = {"test_metrics.py", "test_metrics_docs.py", "test_layout.py", "test_docs.py"}


def test_unit_test_files_are_named_after_the_module_they_test():
    """``tests/unit/test_<name>.py`` tests ``stfpm_lib/**/<name>.py``: a reader finds a module's tests by its name."""
    modules = {p.stem for p in _modules()} | {p.parent.name for p in _modules() if p.name == "__init__.py"}
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


#: Longest function allowed in the library, lines from its ``def`` to its last line, docstring excluded.
MAX_FUNCTION_LINES = 60


def _function_lengths(source: str) -> list[tuple[str, int, int]]:
    """``(qualified name, def line, length)`` of every function and method in ``source`` (nested ones too),
    length counted from the ``def`` line to the last line, without the docstring."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = child.end_lineno - child.lineno + 1
                body = child.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                        and isinstance(body[0].value.value, str):
                    length -= body[0].end_lineno - body[0].lineno + 1
                out.append((prefix + child.name, child.lineno, length))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def test_function_lengths_are_measured_without_the_docstring():
    source = 'def f(x):\n    """Doc\n\n    more.\n    """\n    y = x\n    return y\n\n\nclass C:\n' \
             '    def m(self):\n        def inner():\n            return 1\n        return inner()\n'
    assert _function_lengths(source) == [("f", 1, 3), ("C.m", 11, 4), ("C.m.inner", 12, 2)]


def test_no_library_function_is_longer_than_60_lines():
    long = [f"{path.relative_to(PACKAGE)}:{line} {name} ({n} lines)"
            for path in _modules() for name, line, n in _function_lengths(path.read_text())
            if n > MAX_FUNCTION_LINES]
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines (docstring excluded): " + "; ".join(long)


def _uncommented_inner_imports(source: str) -> list[int]:
    """Lines of imports inside functions whose group (consecutive import statements) has no ``#`` comment on
    its first line or on the line above it: an import stays inside a function only with its reason written."""
    lines = source.splitlines()
    bad = []

    def check_block(stmts: list[ast.stmt]) -> None:
        previous_is_import = False
        for stmt in stmts:
            is_import = isinstance(stmt, (ast.Import, ast.ImportFrom))
            if is_import and not previous_is_import:
                here, above = lines[stmt.lineno - 1], lines[stmt.lineno - 2] if stmt.lineno > 1 else ""
                if "#" not in here and "#" not in above:
                    bad.append(stmt.lineno)
            previous_is_import = is_import

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    block = getattr(inner, field, None)
                    if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                        check_block(block)
    return sorted(set(bad))


def test_the_inner_import_rule_sees_a_bare_import():
    source = "def f():\n    x = 1\n    import json\n    import os\n    return x\n\n\n" \
             "def g():\n    import torch  # heavy: only here\n    import numpy\n"
    assert _uncommented_inner_imports(source) == [3]


def test_imports_are_at_module_level_unless_a_comment_says_why():
    bad = [f"{path.relative_to(PACKAGE)}:{line}" for path in _modules()
           for line in _uncommented_inner_imports(path.read_text())]
    assert bad == [], "function-level imports without a comment saying why: " + ", ".join(bad)


def test_light_entry_points_do_not_load_torch():
    """The metrics, the config and the command lines import without torch (fast ``--help``, light metrics)."""
    code = ("import sys, stfpm_lib.metrics, stfpm_lib.config, stfpm_lib.runner.cli, stfpm_lib.runner.papermill_runner\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'papermill', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


#: Modules whose public functions and classes carry numpydoc sections (the metrics have their own test).
NUMPYDOC_MODULES = ["config.py", "method/*.py", "data/*.py", "engine/*.py", "records/*.py", "reporting/*.py",
                    "runner/*.py", "bench/*.py"]
#: torch.nn.Module overrides, documented by torch
_MODULE_OVERRIDES = {"forward", "train"}


def _numpydoc_gaps(source: str) -> list[str]:
    """Public functions/methods whose docstring lacks a ``Parameters`` section naming each parameter, or a
    ``Returns``/``Yields`` section when they return something; public classes with fields and no
    ``Parameters``/``Attributes`` section. Properties and one-argument-free methods need only a summary."""
    gaps = []

    def has(doc: str, title: str) -> bool:
        return f"{title}\n" + "-" * len(title) in doc

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                doc = ast.get_docstring(child) or ""
                fields = [n for n in child.body if isinstance(n, ast.AnnAssign) and "ClassVar" not in ast.unparse(n)]
                init = [n for n in child.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
                if (fields or init) and not (has(doc, "Parameters") or has(doc, "Attributes")):
                    gaps.append(f"{prefix}{child.name}: no Parameters/Attributes")
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef) and not child.name.startswith("_"):
                if child.name in _MODULE_OVERRIDES or any(ast.unparse(d) == "property" for d in child.decorator_list):
                    continue
                doc = ast.get_docstring(child) or ""
                args = [a.arg for a in child.args.posonlyargs + child.args.args + child.args.kwonlyargs
                        if a.arg not in ("self", "cls")] + ([child.args.kwarg.arg] if child.args.kwarg else [])
                if args:
                    if not has(doc, "Parameters"):
                        gaps.append(f"{prefix}{child.name}: no Parameters")
                    else:
                        params = re.split(r"\n\w[\w ]*\n-{3,}\n", doc.split("Parameters\n----------\n", 1)[1])[0]
                        names = " ".join(line.split(" : ")[0] for line in params.splitlines()
                                         if line and not line.startswith(" "))
                        gaps.extend(f"{prefix}{child.name}: parameter {a} undocumented" for a in args
                                    if not re.search(rf"(?<![\w*]){a}\b|\*\*{a}\b", names))
                returns = child.returns is not None and ast.unparse(child.returns) not in ("None", "'None'")
                if returns and args and not (has(doc, "Returns") or has(doc, "Yields")):
                    gaps.append(f"{prefix}{child.name}: no Returns")

    visit(ast.parse(source), "")
    return gaps


def test_the_numpydoc_rule_sees_a_missing_section():
    source = ('def f(a, b):\n    """Sum.\n\n    Parameters\n    ----------\n    a : int\n    """\n    return a\n'
              'def g(x) -> int:\n    """G."""\n')
    assert _numpydoc_gaps(source) == ["f: parameter b undocumented", "g: no Parameters", "g: no Returns"]


def test_public_functions_have_numpydoc_sections():
    paths = sorted({p for pattern in NUMPYDOC_MODULES for p in PACKAGE.glob(pattern)})
    gaps = [f"{path.relative_to(PACKAGE)}: {gap}" for path in paths for gap in _numpydoc_gaps(path.read_text())]
    assert gaps == [], "docstrings without numpydoc sections:\n" + "\n".join(gaps)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = ("stfpm_lib",) + rel.parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports (``from pkg import name`` counts as ``pkg.name`` when that is a
    module, else as ``pkg``); ``__main__`` entry points are left out (nothing imports them)."""
    paths = [p for p in _modules() if p.name not in ENTRY_POINTS]
    names = {_module_name(p) for p in paths}
    graph = {}
    for path in paths:
        rel = path.relative_to(PACKAGE)
        package = ".".join(("stfpm_lib",) + (rel.parent.parts if path.name != "__init__.py" else rel.parent.parts))
        targets = set()
        for name in _imported(path.read_text(), package):
            while name and name not in names:
                name = name.rpartition(".")[0]
            if name and name != _module_name(path):
                targets.add(name)
        graph[_module_name(path)] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_the_circle_finder_sees_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


#: The one import circle allowed: the dataset adapters register themselves with the registry that imports them.
ALLOWED_CIRCLES = [["stfpm_lib.data.adapters", "stfpm_lib.data.folder", "stfpm_lib.data.visa"]]


def test_no_import_circle_but_the_adapter_registry():
    """Packages import their modules and no module imports back up a chain that leads to itself, lazy imports
    included: the import graph has no circle but the adapter registry's."""
    circles = _circles(_import_graph())
    assert [c for c in circles if c not in ALLOWED_CIRCLES] == [], circles
