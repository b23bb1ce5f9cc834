"""A user's interrupted study resumes after an upgrade: a folder written and interrupted by the code
before `study/` was split into rooms (tests/fixtures/interrupted-a672218) resumes to its end with
today's code, every trial once in the table, MLflow and Optuna. What it needs of the old module
paths is listed in `study/frozen.py`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from study.cli import main
from tests.conftest import REPO
from tests.record import assert_every_trial_once

pytestmark = pytest.mark.slow

FIXTURE = REPO / "tests" / "fixtures" / "interrupted-a672218"


def test_a_study_interrupted_before_the_upgrade_resumes_after_it(tmp_path: Path) -> None:
    folder = tmp_path / "interrupted"  # a moved copy: the fixture itself stays as committed
    shutil.copytree(FIXTURE, folder)
    assert main(["resume", str(folder)]) == 0
    table = assert_every_trial_once(folder, "interrupted", trials=3, epochs=3)
    assert sorted(r["optuna_trial_number"] for r in table) == [0, 1, 2]
