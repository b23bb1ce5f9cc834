"""Whatever way the driver ends (done, Ctrl-C, SIGTERM, SIGKILL), no process it started outlives it
by more than 10 s; a kill storm of the driver loses no trial and logs every epoch once."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.kill_storm import LEFTOVER_WAIT_S, leftovers, storm, study_process, tree, write_spec

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["done", "ctrl-c", "sigterm", "sigkill"])
def test_no_process_outlives_the_driver(tmp_path: Path, how: str) -> None:
    spec = write_spec(tmp_path, trials=2, epochs=3)
    driver = study_process(["launch", str(spec)], tmp_path / "driver.log")
    noted: dict[int, float] = {}
    deadline = time.monotonic() + 240
    while not list((tmp_path / "study").glob("trials/*/epoch_*.pt")):  # a trial is training
        assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()[-3000:]
        noted.update(tree(driver.pid))
        time.sleep(0.2)
    noted.update(tree(driver.pid))
    assert len(noted) >= 5  # Ray's processes and the trials' workers were seen
    signals = {"ctrl-c": signal.SIGINT, "sigterm": signal.SIGTERM, "sigkill": signal.SIGKILL}
    if how in signals:
        driver.send_signal(signals[how])
    try:
        code = driver.wait(timeout=300)
    except subprocess.TimeoutExpired:
        driver.kill()
        raise
    log = (tmp_path / "driver.log").read_text()
    if how == "done":
        assert code == 0, log[-3000:]
    elif how in ("ctrl-c", "sigterm"):
        assert code == 130 and "study resume" in log, log[-3000:]
    alive = leftovers(noted)
    assert alive == 0, f"{alive} processes of the driver alive {LEFTOVER_WAIT_S:g} s after it ended ({how})"


def test_kill_storm_loses_nothing(tmp_path: Path) -> None:
    """The CI variant; `python -m tests.kill_storm --kills 20` is the long one (README)."""
    counts = storm(tmp_path, kills=3, trials=3, epochs=3, seed=1)
    assert counts.kills == 3 and not counts.finished_early, counts
    assert counts.ok(trials=3), counts
    assert counts.summary(3) == "kills 3, trials 3, lost 0, doubled 0, orphans 0"
