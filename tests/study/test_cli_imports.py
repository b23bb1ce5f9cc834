"""The light commands import only what they use, as whole processes: a subprocess runs each and
reports which heavy packages are in ``sys.modules`` at its exit. No timing: a regression (a
top-level import of torch in a module status reads, say) fails here on any machine."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli.table import COMMANDS
from tests.conftest import REPO

HEAVY = ("torch", "torchvision", "ray", "mlflow", "optuna", "pandas", "matplotlib", "sqlalchemy")
FIXTURE = REPO / "tests" / "fixtures" / "interrupted-a672218"

PROBE = """
import json, sys
heavy = sys.argv.pop(1).split(",")
from study.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}), file=sys.stderr)
"""


def loaded_by(*argv: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return int(report["code"] or 0), list(report["loaded"])


def test_help_imports_nothing_heavy() -> None:
    assert loaded_by("--help") == (0, [])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_commands_help_imports_nothing_heavy(command: str) -> None:
    assert loaded_by(command, "--help") == (0, [])


def test_status_reads_a_study_without_torch_mlflow_or_optuna(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    shutil.copytree(FIXTURE, folder)
    code, loaded = loaded_by("status", str(folder))
    assert code == 0 and loaded == []


def test_versions_imports_nothing_heavy() -> None:
    code, loaded = loaded_by("versions")
    assert code == 0 and loaded == []


def test_list_imports_nothing_heavy() -> None:
    code, loaded = loaded_by("list")
    assert code == 0 and loaded == []


@pytest.mark.parametrize("command", ["ui", "dashboard"])
def test_the_servers_print_only_imports_nothing_heavy(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "study"
    shutil.copytree(FIXTURE, folder)
    code, loaded = loaded_by(command, str(folder), "--print-only")
    assert code == 0 and loaded == []
