"""The package's layers import one way: read from the source (``ast``), without importing anything.

Every ``import`` statement counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import
is still a dependency. The rules:

* ``components`` imports neither ``deploy`` nor ``data`` (nor the commands ``cli``, ``demo``);
* only ``deploy`` itself and the commands (``cli``, ``demo``) import ``deploy``;
* ``deploy`` imports no model and none of the Lightning side (``components.lightning``, ``components.export``);
* the modules of ``deploy`` have no import cycle, and the package has none but one:
  ``components.lightning`` imports ``models`` on demand (to register the five models), which import it.

``components.lightning`` also imports ``metrics`` and ``visualization`` (the metric and images it logs),
so those are not forbidden to ``components``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import anomalib_vadproto

PACKAGE = anomalib_vadproto.__name__
ROOT = Path(anomalib_vadproto.__file__).resolve().parent


def module_name(path: Path) -> str:
    """Return the dotted name of a file of the package (``pkg/__init__.py`` -> ``pkg``)."""
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules() -> dict[str, Path]:
    """Return every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py")) if "__pycache__" not in path.parts}


def owner(name: str, modules: dict[str, Path]) -> str | None:
    """Return the module of the package that defines ``name`` (the longest known prefix), or ``None``."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Return the modules of the package that the module ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # `from pkg import submodule` depends on the submodule; `from module import name` on the module
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source for alias in node.names
            ]
        else:
            continue
        found.update(owner(target, modules) for target in targets if target.split(".")[0] == PACKAGE)
    found.discard(None)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Return module -> the package's modules it imports, for every module of the package."""
    modules = find_modules()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def in_layer(name: str, layer: str) -> bool:
    """Whether the module ``name`` is ``anomalib_vadproto.<layer>`` or inside it."""
    prefix = f"{PACKAGE}.{layer}"
    return name == prefix or name.startswith(prefix + ".")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the import cycles of ``graph``: its strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_walker_sees_the_package_and_its_lazy_imports(graph):
    assert len(graph) > 40
    assert f"{PACKAGE}.components.metadata" in graph[f"{PACKAGE}.components.export"]
    loader = graph[f"{PACKAGE}.deploy.loader"]
    assert {f"{PACKAGE}.deploy.openvino", f"{PACKAGE}.deploy.torch_backend"} <= loader
    # an import inside a function (the Lightning mixin registers the models on demand)
    assert f"{PACKAGE}.models" in graph[f"{PACKAGE}.components.lightning"]


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_components_import_neither_deploy_nor_data(graph):
    forbidden = ("deploy", "data", "cli", "demo")
    offending = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if in_layer(name, "components")
        for target in targets
        if any(in_layer(target, layer) for layer in forbidden)
    )
    assert not offending, "components/ must not depend on the deployment or data side:\n" + "\n".join(offending)


def test_only_the_commands_import_deploy(graph):
    allowed = ("deploy", "cli", "demo")
    offending = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if not any(in_layer(name, layer) for layer in allowed)
        for target in targets
        if in_layer(target, "deploy")
    )
    assert not offending, "deploy/ is the top layer; only the commands may import it:\n" + "\n".join(offending)


def test_deploy_imports_no_model_and_no_lightning_code(graph):
    forbidden = ("models", "components.lightning", "components.export", "cli", "demo")
    offending = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if in_layer(name, "deploy")
        for target in targets
        if any(in_layer(target, layer) for layer in forbidden)
    )
    assert not offending, "deploy/ runs exported models; it must not import the training side:\n" + "\n".join(offending)


def test_deploy_modules_have_no_import_cycle(graph):
    deploy = {
        name: {target for target in targets if in_layer(target, "deploy")}
        for name, targets in graph.items()
        if in_layer(name, "deploy")
    }
    assert len(deploy) > 10
    assert find_cycles(deploy) == []


def test_the_package_has_no_import_cycle_but_the_model_registration(graph):
    lightning = f"{PACKAGE}.components.lightning"
    assert f"{PACKAGE}.models" in graph[lightning]  # the known exception, imported inside a method
    without = {
        name: targets - {f"{PACKAGE}.models"} if name == lightning else targets for name, targets in graph.items()
    }
    assert find_cycles(without) == []
