"""The package's shape: no import circle (imports inside functions included), no module over
about 400 lines without a reason in its docstring, no folder for a single module."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "vlm_keras"
MAX_LINES = 400


def _modules():
    """{dotted name: path} of every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path, modules):
    """The package modules `path` imports anywhere in its code (function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def test_no_import_circle():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in _imports(path, modules):
            edges.add(target)
            # Importing a.b.c runs a/b/__init__ first, unless the importer lives in a.b already.
            parts = target.split(".")
            for depth in range(2, len(parts)):
                package = ".".join(parts[:depth])
                if not name.startswith(package + ".") and name != package:
                    edges.add(package)
        edges.discard("vlm_keras")  # the top-level package resolves its names lazily
        graph[name] = edges - {name}

    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_over_the_line_budget_without_a_reason():
    too_long = []
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "longer than" not in docstring:
            too_long.append(f"{name} ({lines} lines)")
    assert not too_long


def test_every_folder_earns_its_place():
    for folder in [p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) >= 2, f"{folder.relative_to(PACKAGE)} holds {len(modules)} module(s)"
