"""The package's structure, as docs/architecture.md describes it: no import cycle among lazyspec's
modules, no function longer than a screen, and the torch-free modules really free of torch."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lazyspec"
MAX_FUNCTION_LINES = 60

# Functions that are tables of data written as code, longer than a screen on purpose.
DATA_TABLES = {"lazyspec.spec.schema._defs": "the JSON Schema's definitions, one per key"}

# Modules whose import loads no torch (torch may come later, inside a function that needs it):
# `--help`, bad flags, the schema and the reports need no torch.
TORCH_FREE = ["lazyspec", "lazyspec.budgets", "lazyspec.cli", "lazyspec.config",
              "lazyspec.engine", "lazyspec.errors", "lazyspec.fileio", "lazyspec.graph",
              "lazyspec.inputs", "lazyspec.lock", "lazyspec.memory", "lazyspec.options",
              "lazyspec.result", "lazyspec.shapes", "lazyspec.gate", "lazyspec.report",
              "lazyspec.report.diagnostics", "lazyspec.report.github",
              "lazyspec.report.jsonout", "lazyspec.report.markdown", "lazyspec.report.text",
              "lazyspec.report.graph_text", "lazyspec.export", "lazyspec.export.init_schemes",
              "lazyspec.spec", "lazyspec.spec.expr", "lazyspec.spec.model",
              "lazyspec.spec.parse", "lazyspec.spec.schema", "lazyspec.spec.yamlload",
              "lazyspec.spec.yamlwrite",
              "lazyspec.checkpoint", "lazyspec.weights", "lazyspec.report.view",
              "lazyspec.report.layout", "lazyspec.report.table", "lazyspec.progress",
              "lazyspec.examples", "lazyspec.scaffold", "lazyspec.importers",
              "lazyspec.importers.specdoc",
              "lazyspec.watch", "lazyspec.parallel", "lazyspec.lsp", "lazyspec.lsp.analysis",
              "lazyspec.lsp.runner", "lazyspec.lsp.features", "lazyspec.lsp.server",
              "lazyspec.lsp.stream"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


@functools.cache
def imports(path: Path, top_level: bool = False) -> frozenset[str]:
    """The modules a file imports (lazyspec's and others), anywhere in it (functions too, or
    with `top_level` only what importing the file runs), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if _type_checking_only(block)
               or (top_level and isinstance(block, (ast.FunctionDef, ast.AsyncFunctionDef)))
               for n in ast.walk(block)}
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else \
        module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:  # `from lazyspec import ops` imports the module ops
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return frozenset(found)


def lazyspec_imports(path: Path, top_level: bool = False) -> set[str]:
    return {m for m in imports(path, top_level) if m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_lazyspec_modules() -> None:
    graph = {name: lazyspec_imports(path) - {name} for name, path in MODULES.items()}
    assert sum(len(v) for v in graph.values()) > 50, "the import walk found too little"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _is_data_table(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function that only builds a table: its statements fill or return literals."""
    body = fn.body[1:] if ast.get_docstring(fn) else fn.body
    literal = (ast.Dict, ast.List, ast.Tuple, ast.Set, ast.Constant, ast.Name, ast.Call,
               ast.Attribute, ast.BinOp, ast.JoinedStr, ast.Subscript)
    for stmt in body:
        value = getattr(stmt, "value", None)
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.Return)) or \
                not isinstance(value, literal):
            return False
    return True


def long_functions() -> list[str]:
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                qualified = f"{name}.{node.name}"
                if lines > MAX_FUNCTION_LINES and not _is_data_table(node) \
                        and qualified not in DATA_TABLES:
                    found.append(f"{qualified}: {lines} lines")
    return found


def test_no_function_is_longer_than_a_screen() -> None:
    assert long_functions() == []


def test_the_data_table_rule_is_narrow() -> None:
    code = "def f():\n    x = {'a': 1}\n    for k in x:\n        print(k)\n    return x\n"
    assert not _is_data_table(ast.parse(code).body[0])  # type: ignore[arg-type]
    table = "def f():\n    '''doc'''\n    d = {}\n    d['a'] = {'b': 1}\n    return d\n"
    assert _is_data_table(ast.parse(table).body[0])  # type: ignore[arg-type]


def loaded_on_import(name: str) -> set[str]:
    """Every module that importing `name` loads: its top-level imports, followed through
    lazyspec's own modules (a package's __init__ comes with each of its modules)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parents = [".".join(current.split(".")[:i]) for i in range(1, current.count(".") + 1)]
        todo += [m for m in [*imports(MODULES[current], top_level=True), *parents]
                 if m in MODULES or m.split(".")[0] == "torch"]
        seen |= {m for m in imports(MODULES[current], top_level=True) if m not in MODULES}
    return seen


@pytest.mark.parametrize("name", TORCH_FREE)
def test_torch_free_modules_load_no_torch(name: str) -> None:
    loaded = loaded_on_import(name)
    assert "lazyspec.spec.expr" in loaded_on_import("lazyspec.engine")  # the walk follows
    assert "torch" in loaded_on_import("lazyspec.summarize")  # and it sees torch
    heavy = sorted(m for m in loaded if m == "torch" or m.startswith("torch.")
                   or m in ("rich", "numpy"))
    assert not heavy, f"importing {name} loads {heavy}"
