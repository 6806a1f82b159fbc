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


def imports(module: str, path: Path, known: set[str] | None = None) -> set[str]:
    """The project modules (or ``known`` modules) ``module`` imports (anywhere in the file,
    relative ones resolved)."""
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
    known = set(modules()) if known is None else known
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


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or [] when it has none."""
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str]:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt) :], nxt] if nxt in trail else [*trail, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, nxt])):
                return found
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return []


def test_no_cycle_between_folders():
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules().items():
        here = package_of(module, path)
        for target in imports(module, path):
            there = package_of(target, modules()[target])
            if there != here and not here.startswith(there + "."):
                graph[here].add(there)
    assert find_cycle(graph) == [], "folders import each other"


def module_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of its own package it imports, at the top, inside a function or
    for the type checker alike (a local import that dodges a cycle is still the cycle). A
    package's ``__init__`` is left out: a module may import the package it belongs to."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in found.items():
        if path.name == "__init__.py":
            continue
        here = package_of(module, path)
        for target in imports(module, path, set(found)):
            if found[target].name != "__init__.py" and package_of(target, found[target]) == here:
                graph[module].add(target)
    return graph


def test_no_import_cycle_inside_a_package():
    assert find_cycle(module_graph(modules())) == []


def test_an_import_cycle_is_detected(tmp_path):
    """The rule can fail: a circle closed by an import inside a function or under
    ``TYPE_CHECKING`` is a circle."""
    (tmp_path / "runner.py").write_text("from .jobs import Job\n")
    (tmp_path / "jobs.py").write_text("def f():\n    from .sizing import price\n")
    (tmp_path / "sizing.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .runner import run\n"
    )
    (tmp_path / "ok.py").write_text("from . import runner\n")
    found = {f"trajbench.fake.{p.stem}": p for p in sorted(tmp_path.glob("*.py"))}
    found["trajbench.fake"] = tmp_path / "__init__.py"
    (tmp_path / "__init__.py").write_text("from .runner import run\n")
    cycle = find_cycle(module_graph(found))
    assert cycle == [f"trajbench.fake.{m}" for m in ("jobs", "sizing", "runner", "jobs")]


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


# -- one source for each fact --------------------------------------------------------------------
#: Words the records contract shares with other vocabularies, so a literal elsewhere is not its:
#: "random" and "expert" also name demonstrators (envs/, below the core, names those).
SHARED_WORDS = {"random", "expert"}


def contract_strings() -> set[str]:
    """The strings of the records contract: ``trajbench.records``' named string constants."""
    import trajbench.records as records

    named = {v for k, v in vars(records).items() if k.isupper() and isinstance(v, str)}
    return named - SHARED_WORDS


def literals(path: Path, words: set[str]) -> list[str]:
    """Where a module spells one of ``words`` as a whole string literal. Docstrings, attribute
    docstrings and the text of f-strings are prose and pass; an expression inside an f-string
    does not."""
    tree = ast.parse(path.read_text(), str(path))
    prose = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            prose.add(id(node.value))
        if isinstance(node, ast.JoinedStr):
            prose |= {id(v) for v in node.values if isinstance(v, ast.Constant)}
    return sorted(
        f"{path.name}:{node.lineno} {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in words
        and id(node) not in prose
    )


def test_only_the_records_module_spells_the_records_contract():
    """Use ``trajbench.records.X`` instead of the literal (envs/ sit below the core: exempt)."""
    words = contract_strings()
    assert {"records.parquet", "decoy", "train_context", "hashmap", "test_levels"} <= words
    found = []
    for module, path in modules().items():
        if module != "trajbench.records" and not module.startswith("trajbench.envs"):
            found += literals(path, words)
    assert found == []


def test_a_contract_literal_is_detected(tmp_path):
    fake = tmp_path / "fake.py"
    fake.write_text(
        '"""Reads records.parquet."""\n'
        'X: int = 1\n"""the decoy count"""\n'
        "def f(p):\n    print(f\"no records.parquet in {p / 'records.parquet'}\")\n"
        '    return p["decoy"]\n'
    )
    assert literals(fake, contract_strings()) == [
        "fake.py:5 'records.parquet'",
        "fake.py:6 'decoy'",
    ]


#: Where a mode's name is another vocabulary's word: module -> words (matplotlib's "none").
NOT_MODES = {"trajbench.leaderboard.render": {"none"}}


def test_only_the_mode_registry_names_modes():
    """Use ``trajbench.contexts.modes.BURSTY`` (...) instead of the literal."""
    from trajbench.contexts.modes import MODE_NAMES

    found = []
    for module, path in modules().items():
        if module != "trajbench.contexts.modes":
            found += literals(path, set(MODE_NAMES) - NOT_MODES.get(module, set()))
    assert found == []


def test_a_mode_literal_is_detected(tmp_path):
    from trajbench.contexts.modes import MODE_NAMES

    fake = tmp_path / "fake.py"
    fake.write_text('def f(ctx):\n    return ctx.mode != "none" and "shuffled"\n')
    assert literals(fake, set(MODE_NAMES)) == ["fake.py:2 'none'", "fake.py:2 'shuffled'"]
