"""The house drawn from its imports: no circles, no import running back up a layer, and a pure core
(scoring/, sim/, miners/, the protocol module) that imports without Dagster.

Every `import` of this package counts, module-level or inside a function (a lazy import is still
a dependency); only `if TYPE_CHECKING:` blocks are left out. The miners' `kinitro` compatibility
package is the policies' code, not ours, and is not part of the graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("kinitro_dagster", "weights_api")

# What each layer may import from this repository (prefixes; a layer may always import itself).
# Read top to bottom: nothing imports a layer further down this list than itself... except as listed.
ALLOWED = {
    "kinitro_dagster.protocol": (),
    "kinitro_dagster.sizes": (),
    "kinitro_dagster.settings": ("kinitro_dagster.sizes",),
    "kinitro_dagster.scoring": ("kinitro_dagster.warehouse.records",),
    "kinitro_dagster.warehouse": ("kinitro_dagster.settings",),
    "kinitro_dagster.miners": ("kinitro_dagster.protocol", "kinitro_dagster.settings", "kinitro_dagster.sizes",
                               "kinitro_dagster.warehouse.records"),
    "kinitro_dagster.sim": ("kinitro_dagster.protocol", "kinitro_dagster.settings", "kinitro_dagster.miners",
                            "kinitro_dagster.warehouse.records"),
    "kinitro_dagster.audit": ("kinitro_dagster.scoring", "kinitro_dagster.warehouse.records",
                              "kinitro_dagster.version"),
}  # fmt: skip
PURE_CORE = ("kinitro_dagster.protocol", "kinitro_dagster.scoring", "kinitro_dagster.sim", "kinitro_dagster.miners",
             "kinitro_dagster.audit")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path
    for package in PACKAGES for path in (REPO / package).rglob("*.py") if "compat" not in path.parts
}  # fmt: skip


def imported(path: Path) -> set[str]:
    """This repository's modules that `path` imports (a `from package import module` names the module)."""
    tree = ast.parse(path.read_text())
    type_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return {name for name in found if name in MODULES and name != module_name(path)}


GRAPH = {name: imported(path) for name, path in MODULES.items()}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in GRAPH[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_house():
    assert {"kinitro_dagster.protocol", "kinitro_dagster.sim.episode", "kinitro_dagster.miners.docker_deployment",
            "kinitro_dagster.defs.episodes", "weights_api.app"} <= set(MODULES)  # fmt: skip
    assert "kinitro_dagster.protocol" in GRAPH["kinitro_dagster.miners.policy_client"]
    assert "kinitro_dagster.miners.policy_client" in GRAPH["kinitro_dagster.sim.episode"]


def test_no_two_modules_import_each_other_directly_or_round_about():
    assert cycles() == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_import_runs_back_up(layer: str):
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    allowed = (layer, *ALLOWED[layer])
    offending = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() if within(module, layer)
                       for target in targets if not any(within(target, ok) for ok in allowed))  # fmt: skip
    assert offending == []


def test_pure_core_imports_without_dagster():
    core = sorted(name for name in MODULES if name.startswith(PURE_CORE))
    script = (f"import importlib, sys\nfor name in {core!r}:\n    importlib.import_module(name)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
