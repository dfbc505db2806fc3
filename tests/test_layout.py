"""The package's shape, read from its source with `ast` (nothing is imported):

- the import graph over vitseg_cli modules, counting top-level and function-local imports alike, has no cycle and
  goes one way (see `test_imports_go_one_way` for the rules);
- no function is longer than 80 lines.

How an import becomes an edge: `import vitseg_cli.a.b` and `from vitseg_cli.a import b` (or the relative forms) give
an edge to the module `vitseg_cli.a.b` when that file exists, else to `vitseg_cli.a` (the name is an attribute of
it). A package's own `__init__` is not counted as imported by its submodules' imports (they are all empty, except
the root's, which exports names lazily through its `_LAZY` table: those count as its edges). Imports of other
libraries are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vitseg_cli"
ROOT = "vitseg_cli"

# Modules that may import vitseg_cli modules inside functions: the Typer layer, so that `--help` stays torch-free.
LAZY_ALLOWED = ("vitseg_cli.cli", "vitseg_cli.__main__", "vitseg_cli.commands")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _target(dotted: str) -> "str | None":
    """The vitseg_cli module an imported dotted name lives in (or None: another library)."""
    if dotted != ROOT and not dotted.startswith(ROOT + "."):
        return None
    while dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted


def _imports(name: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, local) for each vitseg_cli import in module `name`; local = inside a function."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((t, child.lineno, local) for a in child.names if (t := _target(a.name)))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                for alias in child.names:
                    target = _target(f"{module}.{alias.name}") or _target(module)
                    if target and target != name:
                        found.append((target, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    if name == ROOT:  # the lazy exports: `_LAZY = {"name": "module", ...}`
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_LAZY" for t in node.targets):
                for value in node.value.values:
                    found.append((_target(f"{ROOT}.{value.value}"), node.lineno, True))
    # a package's __init__ is not an edge of its own submodules (Python runs it first, it imports nothing)
    return [(t, line, local) for t, line, local in found if not (t != ROOT and _is_package(t) and
                                                               name.startswith(t + "."))]


GRAPH = {name: _imports(name) for name in MODULES}


def _in(name: str, *groups: str) -> bool:
    return any(name == g or name.startswith(g + ".") for g in groups)


def test_the_graph_sees_local_imports():
    """The parser itself: it must find the function-local imports the cli layer is known to make."""
    assert any(local for _, _, local in GRAPH["vitseg_cli.cli"]) or any(
        local for m in MODULES if m.startswith("vitseg_cli.commands.") for _, _, local in GRAPH[m])
    assert ("vitseg_cli.loading", True) in {(t, local) for t, _, local in GRAPH[ROOT]}


def test_no_import_cycle():
    """No two modules reach each other through imports (strongly connected groups of more than one module)."""
    edges = {name: {t for t, _, _ in imports} for name, imports in GRAPH.items()}
    reach: dict[str, set[str]] = {}
    for start in edges:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        reach[start] = seen
    cycles = {tuple(sorted(m for m in reach[a] if a in reach[m] or m == a)) for a in edges if a in reach[a]}
    assert not cycles, "import cycles among: " + "; ".join(" <-> ".join(c) for c in sorted(cycles))


# The layers, lowest first: a module may import its own layer and those below, never one above. (Within a layer the
# rules below, and the absence of cycles, keep the order.) The longest group prefix decides a module's layer, except
# that the families' torch-free config modules (`model/**/*_config.py`, the registry of families and what it needs)
# are part of the spec layer: the spec looks its sections' classes up there.
SPEC_LAYER = 1
CONFIG_MODULES = ("registry", "family", "contracts", "official_fields", "keys")
LAYERS = [
    ("vitseg_cli.errors", "vitseg_cli._version", "vitseg_cli.torchrun", "vitseg_cli.safe_yaml", "vitseg_cli.releases",
     "vitseg_cli.data.classes", "vitseg_cli.data.formats", "vitseg_cli.data.workers"),  # tables and leaf helpers
    ("vitseg_cli.spec", "vitseg_cli.spec_base", "vitseg_cli.presets", "vitseg_cli.official_presets"),
    ("vitseg_cli.data", "vitseg_cli.metrics", "vitseg_cli.viz"),
    ("vitseg_cli.model", "vitseg_cli.checkpoints", "vitseg_cli.zoo"),
    ("vitseg_cli.loading",),
    ("vitseg_cli.engine", "vitseg_cli.ray"),  # the Ray Data predictor: a model loaded, inferring
    ("vitseg_cli.commands",),
    ("vitseg_cli.cli", "vitseg_cli.__main__", "vitseg_cli"),
]


def _layer(name: str) -> int:
    last = name.rpartition(".")[2]
    if name.startswith("vitseg_cli.model.") and (last.endswith("_config") or last in CONFIG_MODULES):
        return SPEC_LAYER
    best = max(((len(g), i) for i, groups in enumerate(LAYERS) for g in groups if _in(name, g)), default=None)
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best[1]


def test_every_module_has_a_layer_and_imports_only_downward():
    bad = [f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}, a higher layer"
           for name, imports in GRAPH.items() for target, line, _ in imports
           if name != ROOT and _layer(target) > _layer(name)]
    assert not bad, "\n".join(bad)


# (importer group, imported group, why it is refused)
FORBIDDEN = [
    (("vitseg_cli.model", "vitseg_cli.data", "vitseg_cli.checkpoints", "vitseg_cli.spec"),
     ("vitseg_cli.engine", "vitseg_cli.commands", "vitseg_cli.cli", "vitseg_cli.loading"),
     "the model, data, file IO and spec sit below the engine and the loading functions"),
    (("vitseg_cli.checkpoints",), ("vitseg_cli.model", "vitseg_cli.zoo"), "file IO knows no model and no zoo"),
    (("vitseg_cli.zoo",), ("vitseg_cli.model", "vitseg_cli.checkpoints", "vitseg_cli.loading"),
     "the zoo downloads and caches; conversion on first use is the loading module's"),
    (("vitseg_cli.engine", "vitseg_cli.loading", "vitseg_cli.zoo", "vitseg_cli.model", "vitseg_cli.data",
      "vitseg_cli.checkpoints", "vitseg_cli.spec", "vitseg_cli.errors"), ("vitseg_cli.commands", "vitseg_cli.cli"),
     "only the Typer layer knows the Typer layer"),
    (("vitseg_cli.loading",), ("vitseg_cli.engine",), "the engine loads models through the loading module"),
    (("vitseg_cli.model.heads",), ("vitseg_cli.model.adapter",), "heads share key helpers through model/keys.py"),
]


def test_imports_go_one_way():
    """cli -> commands -> engine -> loading -> (zoo, checkpoints, model) -> data -> spec -> errors, with the package
    root (`vitseg_cli/__init__.py`, the public facade) imported by no module: lower layers take the version from
    `_version.py`. Lazy (function-local) imports of vitseg_cli modules are allowed only in cli/commands."""
    bad = []
    for name, imports in GRAPH.items():
        for target, line, local in imports:
            where = f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {target}"
            if target == ROOT and name != ROOT:
                bad.append(f"{where}: the package root is the public facade, import the module itself")
            if local and name != ROOT and not _in(name, *LAZY_ALLOWED):
                bad.append(f"{where} inside a function: lazy imports are for cli/commands only")
            for importers, imported, why in FORBIDDEN:
                if _in(name, *importers) and _in(target, *imported):
                    bad.append(f"{where}: {why}")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------------------------------ function length

MAX_LINES = 80



def _body_lines(fn: "ast.FunctionDef | ast.AsyncFunctionDef") -> int:
    """Lines of the body: from the first statement after the signature (the docstring counts) to the last line.
    A Typer command's long signature (one parameter per option) is therefore not counted; nor are decorators."""
    return fn.body[-1].end_lineno - fn.body[0].lineno + 1


def test_no_function_over_80_lines():
    long = []
    for name, path in MODULES.items():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _body_lines(node)
                if n > MAX_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
