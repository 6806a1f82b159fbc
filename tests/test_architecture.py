"""The house rules a reader relies on: dependencies point one way, modules stay small, and the tests
share fixtures in a way every pytest we support sees.

Layers, lowest first: ``envs`` (the families) <- the core package (stores, collection, the prompt
builder, rollouts, metrics, reports) <- ``baselines`` (the policies and the model) <- the
pipeline, the analyses and the leaderboard. A module may import its own layer or a lower one,
and the folders of one layer never import each other in a circle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Source folder -> the package it installs as (pyproject's package-dir).
SOURCES = {"trajbench": "trajbench", "envs": "trajbench.envs", "baselines": "trajbench.baselines"}
#: Package prefix -> layer (longest prefix wins).
LAYERS = {
    "trajbench.envs": 0,
    "trajbench": 1,
    "trajbench.baselines": 2,
    "trajbench.pipeline": 3,
    "trajbench.analysis": 3,
    "trajbench.leaderboard": 3,
}
MAX_LINES = 500


def modules() -> dict[str, Path]:
    """Every module of the project: dotted name -> file."""
    out = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports(module: str, path: Path) -> set[str]:
    """The project modules ``module`` imports (anywhere in the file, relative ones resolved)."""
    found = set()
    base = package_of(module, path).split(".")
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                name = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    known = modules()
    return {name for name in found if name in known and name != module}


def layer(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def test_dependencies_point_one_way():
    wrong = []
    for module, path in modules().items():
        for target in imports(module, path):
            if layer(target) > layer(module):
                wrong.append(f"{module} (layer {layer(module)}) imports {target} ({layer(target)})")
    assert wrong == []


def test_no_cycle_between_folders():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules().items():
        here = package_of(module, path)
        for target in imports(module, path):
            there = package_of(target, modules()[target])
            if there != here and not here.startswith(there + "."):
                graph[here].add(there)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("folders import each other: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_an_upward_import_is_detected(tmp_path):
    """The checks above can fail: a core module importing the pipeline, even inside a
    function and relatively, is seen and ranks above its importer."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from .pipeline.train import train\n")
    found = imports("trajbench.fake", fake)
    assert found == {"trajbench.pipeline.train"}
    assert layer("trajbench.pipeline.train") > layer("trajbench.fake") == 1
    assert layer("trajbench.envs.dark_room") < layer("trajbench.baselines.transformer")


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_over_500_lines(module):
    n = len(modules()[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines; split it by job"


def plugin_modules(path: Path) -> list[str]:
    """The names a test file's ``pytest_plugins = [...]`` loads its shared fixtures from."""
    for node in ast.parse(path.read_text(), str(path)).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in targets):
            names = ast.literal_eval(node.value)
            return [names] if isinstance(names, str) else list(names)
    return []


def uncollected_plugin_problems(tests: Path) -> list[str]:
    """Shared fixtures must live in a module pytest does not collect: pytest 9.0 scopes a collected
    test module's fixtures to that module, so ``pytest_plugins = ["test_x"]`` finds nothing when
    ``test_x.py`` was collected first (it did on CI's pytest 9.0.3; 9.2 let it pass)."""
    problems = []
    for path in sorted(tests.glob("test_*.py")):
        for name in plugin_modules(path):
            if name.startswith("test_"):
                problems.append(f"{path.name} loads fixtures from test module {name}")
            elif not (tests / f"{name}.py").is_file():
                problems.append(f"{path.name} loads fixtures from missing module {name}")
    return problems


def test_shared_fixtures_come_from_modules_pytest_does_not_collect():
    assert uncollected_plugin_problems(ROOT / "tests") == []


def test_a_fixture_plugin_that_is_a_test_module_is_detected(tmp_path):
    (tmp_path / "test_a.py").write_text('pytest_plugins = ["test_b", "support"]\n')
    (tmp_path / "test_c.py").write_text('pytest_plugins = "gone"\n')
    (tmp_path / "support.py").write_text("")
    assert uncollected_plugin_problems(tmp_path) == [
        "test_a.py loads fixtures from test module test_b",
        "test_c.py loads fixtures from missing module gone",
    ]
