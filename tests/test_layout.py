"""The package's shape, checked: no import cycle, no dcf import inside a function, no
private name imported across modules, kernels without Dask, modules within their size,
functions within ten parameters."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dcf"
MAX_LINES = 400
# modules allowed over MAX_LINES (none: a module that outgrows it becomes a package,
# as ../shared/STYLE.md describes)
OVER: dict = {}
# dcf imports allowed inside a function, each with its reason (none dodges a cycle)
LATE = {
    # the batch job imports its stages while the cluster starts in the background
    "dcf.run.cli -> dcf.run.job", "dcf.run.cli -> dcf.run.metrics",
    # `python -m dcf.compile --check` answers before numba and the estimator are imported
    "dcf.compile.__main__ -> dcf.compile.exercise", "dcf.compile.__main__ -> dcf.kernels.cache",
    # `python -m dcf.serve` says "pip install 'dcf[serve]'" where starlette or uvicorn is missing
    "dcf.serve.__main__ -> dcf.serve.app",
}


def _parse(text: str) -> ast.Module:
    """``ast.parse``, again where CPython 3.11 fails spuriously: its AST constructor keeps
    one recursion counter for every thread (python/cpython#106905), and 3.11's traceback
    formatting parses source lines, so a traceback printed by another thread of this
    process (a cluster left by an earlier test file of the same xdist worker) can make a
    parse here raise ``SystemError: AST constructor recursion depth mismatch``."""
    for attempt in range(3):
        try:
            return ast.parse(text)
        except SystemError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _modules():
    for f in sorted(SRC.rglob("*.py")):
        name = ".".join(f.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        yield name, f, _parse(f.read_text())


def _target(mod: str, node: ast.ImportFrom, is_init: bool) -> str:
    base = mod.split(".")
    if not is_init:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dcf_imports(tree, mod, is_init):
    """``(node, target, inside_function)`` for every relative import of the module."""
    out = []

    def visit(node, inside):
        for child in ast.iter_child_nodes(node):
            here = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.level:
                out.append((child, _target(mod, child, is_init), here))
            visit(child, here)
    visit(tree, False)
    return out


def test_no_dcf_import_inside_a_function_and_no_private_name_across_modules():
    inside, private = [], []
    for mod, f, tree in _modules():
        for node, target, in_function in _dcf_imports(tree, mod, f.name == "__init__.py"):
            if in_function and f"{mod} -> {target}" not in LATE:
                inside.append(f"{mod} -> {target}")
            private += [f"{mod}: {target}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert not inside, inside
    assert not private, private


def test_no_import_cycle():
    modules = {mod for mod, _, _ in _modules()}
    graph = defaultdict(set)
    for mod, f, tree in _modules():
        for node, target, _ in _dcf_imports(tree, mod, f.name == "__init__.py"):
            for a in node.names:  # "from . import store" imports the module dcf.store
                graph[mod] |= {t for t in (target, f"{target}.{a.name}") if t in modules and t != mod}
    state: dict = {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph[m]):
            assert state.get(t) != "open", " -> ".join(path + [m, t])
            if t not in state:
                visit(t, path + [m])
        state[m] = "done"
    for m in sorted(modules):
        if m not in state:
            visit(m, [])


def test_modules_stay_within_their_size():
    sizes = {mod.removeprefix("dcf."): len(f.read_text().splitlines()) for mod, f, _ in _modules()}
    over = {m: n for m, n in sizes.items() if n > OVER.get(m, MAX_LINES)}
    assert not over, f"modules over {MAX_LINES} lines (or their recorded cap): {over}"


MAX_PARAMETERS = 10
# estimator constructors keep scikit-learn's flat keyword parameters (get_params and grid
# searches see every setting)
FLAT = {"dcf.model.knn.KNN.__init__", "dcf.model.variants.ItemKNN.__init__", "dcf.model.variants.UserKNN.__init__"}


def _functions(tree, prefix):
    """``(qualified name, node)`` of every function, methods and nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}.{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node
            yield from _functions(node, name)


def test_no_function_takes_more_than_ten_parameters():
    over = {}
    for mod, _, tree in _modules():
        for name, node in _functions(tree, mod):
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
            n = len([p for p in params if p.arg not in ("self", "cls")])
            if n > MAX_PARAMETERS and name not in FLAT:
                over[name] = n
    assert not over, f"functions over {MAX_PARAMETERS} parameters: {over}"


@pytest.mark.parametrize("module", ["dcf.kernels", "dcf.kernels.rows", "dcf.kernels.topn"])
def test_kernels_import_without_dask(module):
    code = (f"import sys; import {module}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


README = SRC.parents[1] / "README.md"


def _layout_table():
    """``{part: set of parts it may import or None for "everything"}`` from the README's
    Layout table (a row may name several parts, their imports then separated by ``;``)."""
    text = README.read_text()
    section = text[text.index("\n## Layout\n"):]
    section = section[:section.index("\n## ", 5)]
    allowed = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        parts = [p.strip().strip("`").rstrip("/") for p in cells[0].split(",")]
        imports = cells[2].split(";") if ";" in cells[2] else [cells[2]] * len(parts)
        for part, names in zip(parts, imports, strict=True):
            names = re.sub(r"\([^)]*\)", "", names)  # remarks in brackets
            allowed[part] = (None if "everything" in names else
                             {n.strip() for n in names.split(",") if n.strip() not in ("", "nothing")})
    return allowed


def test_readme_layout_names_every_part_and_what_it_imports():
    allowed = _layout_table()
    parts = {f.stem if f.is_file() else f.name for f in SRC.iterdir()
             if (f.suffix == ".py" and f.stem != "__init__") or (f / "__init__.py").exists()}
    assert parts == set(allowed), f"in the tree, not the README: {parts - set(allowed)}; " \
                                  f"in the README, not the tree: {set(allowed) - parts}"
    wrong = defaultdict(set)
    for mod, f, tree in _modules():
        part = mod.split(".")[1] if "." in mod else None
        if part is None or allowed.get(part) is None:
            continue
        for node, target, _ in _dcf_imports(tree, mod, f.name == "__init__.py"):
            for a in node.names:
                full = f"{target}.{a.name}" if target == "dcf" else target
                other = full.split(".")[1] if "." in full else None
                if other and other != part and other not in allowed[part]:
                    wrong[part].add(other)
    assert not wrong, f"imports the README's Layout table does not list: {dict(wrong)}"
