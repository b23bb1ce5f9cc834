"""The benchmark scripts run end to end (tiny sizes) and print every figure with its goal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_bss_overhead_prints_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "bench/bss_overhead.py", "--image-size", "32", "--batch", "8", "--steps", "1",
         "--repeats", "1", "--warmup", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    for method in ("svdvals", "gram_eigvalsh", "eigvec"):
        for figure in ("step_ratio", "penalty_share", "penalty_ms", "grad_rel_err"):
            assert f"{figure}[{method}]" in out
    assert "goal <=1.02" in out and "cpu" in out
