"""A user's interrupted study resumes after an upgrade: a folder written and interrupted by the code
before `study/` was split into rooms (tests/fixtures/interrupted-a672218) resumes to its end with
today's code, every trial once in the table, MLflow and Optuna. What it needs of the old module
paths is listed in `study/frozen.py`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from study.cli import main
from tests.conftest import REPO
from tests.record import assert_every_trial_once

pytestmark = pytest.mark.slow

FIXTURE = REPO / "tests" / "fixtures" / "interrupted-a672218"
WRITTEN_WITH = json.loads(FIXTURE.with_name(f"{FIXTURE.name}.versions.json").read_text())


def older_than_the_writer() -> list[str]:
    """The installed packages older than those that wrote the fixture: a study folder is resumed by
    the same or a newer MLflow, Optuna and Ray, never an older one (their databases and pickles
    do not go back), so on an older set of the matrix the test has nothing to prove."""
    from compat.versions import installed, older

    return [f"{name} {installed(name)} < {WRITTEN_WITH[name]}" for name in ("ray", "optuna", "mlflow")
            if older(installed(name) or "0", WRITTEN_WITH[name])]  # fmt: skip


def test_a_study_interrupted_before_the_upgrade_resumes_after_it(tmp_path: Path) -> None:
    if older_than_the_writer():
        pytest.skip(f"the fixture was written by newer packages: {', '.join(older_than_the_writer())}")
    folder = tmp_path / "interrupted"  # a moved copy: the fixture itself stays as committed
    shutil.copytree(FIXTURE, folder)
    assert main(["resume", str(folder)]) == 0
    table = assert_every_trial_once(folder, "interrupted", trials=3, epochs=3)
    assert sorted(r["optuna_trial_number"] for r in table) == [0, 1, 2]
