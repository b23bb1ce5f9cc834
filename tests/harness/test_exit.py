"""The test process's exit (tests/conftest.py): with TESTS_SKIP_TEARDOWN=1 it keeps pytest's exit
status and its report, and skips only the interpreter's teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    ("body", "status", "summary"), [("assert True", 0, "1 passed"), ("assert False", 1, "1 failed")]
)
def test_the_exit_status_and_report_are_pytests(tmp_path: Path, body: str, status: int, summary: str) -> None:
    (tmp_path / "test_one.py").write_text(
        f"import atexit\natexit.register(lambda: print('teardown ran', flush=True))\ndef test_one():\n    {body}\n"
    )
    env = {**os.environ, "TESTS_SKIP_TEARDOWN": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "--rootdir", str(tmp_path), str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stdout + done.stderr
    assert summary in done.stdout and "teardown ran" not in done.stdout  # reported; atexit skipped
    plain = subprocess.run(
        command, cwd=tmp_path, env={**env, "TESTS_SKIP_TEARDOWN": "0"}, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == status and "teardown ran" in plain.stdout  # without it: the usual exit
