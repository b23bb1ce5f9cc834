"""The architecture's rules, checked by the tools made for them: import-linter's contracts
(pyproject.toml's [tool.importlinter]) hold, a violating import breaks them (a copy of the code
with one added), and no import circle remains anywhere, function-level imports included
(type-only imports under TYPE_CHECKING excepted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import REPO

PACKAGES = ("study", "finetune", "trainables", "search_spaces", "compat")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )


def test_the_contracts_hold() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("copy")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "study/reporting/status.py",
            "from study.run import driver",
            "study.reporting is not allowed to import study.run",
        ),
        ("study/record/folder.py", "import ray", "study.record is not allowed to import ray"),
        ("finetune/engine.py", "import mlflow", "finetune is not allowed to import mlflow"),
        ("study/spec/load.py", "from study.record import folder", "study.spec is not allowed to import study.record"),
    ],
)
def test_a_violating_import_breaks_its_contract(code_copy: Path, module: str, line: str, contract: str) -> None:
    path = code_copy / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n\ndef _violation() -> None:\n    {line}  # a function-level import counts too\n")
        done = lint_imports(code_copy)
    finally:
        path.write_text(original)
    assert done.returncode != 0 and contract in done.stdout, done.stdout[-3000:]


def import_cycles() -> list[list[str]]:
    """Every strongly connected set of two or more modules in the import graph (Tarjan)."""
    sys.path.insert(0, str(REPO))
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & set(modules)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                found.append(sorted(component))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_remains() -> None:
    assert import_cycles() == []


def test_every_room_has_a_front_door_whose_names_resolve() -> None:
    import importlib

    for room in ("spec", "record", "run", "reporting"):
        door = importlib.import_module(f"study.{room}")
        assert door.__all__ and door.__doc__, room
        for name in door.__all__:
            assert getattr(door, name) is not None, (room, name)
    from study import cli

    assert cli.__all__ == ["main"]
