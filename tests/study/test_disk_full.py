"""A study whose disk fills up: it stops cleanly before it is full, with one line naming the folder,
its free space and what it needs; every completed trial is intact; once space is freed `study
resume` completes it with every trial once. On a small tmpfs of its own (needs root to mount)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.cli import main
from study.record import RECORDS_BYTES, DiskGuard, check_free, largest_state
from study.spec import StudyError
from tests.conftest import REPO, small_study, tiny_base
from tests.record import assert_every_trial_once

MIB = 2**20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=480m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); run as root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_the_need_counts_three_states_a_running_trial_and_the_records(tmp_path: Path) -> None:
    guard = DiskGuard(tmp_path, slots=2)
    assert guard.need() == RECORDS_BYTES
    guard.state_bytes = 10 * MIB
    assert guard.need() == RECORDS_BYTES + 3 * 10 * MIB * 2
    free = shutil.disk_usage(tmp_path).free
    guard.state_bytes = free  # more than there is: low, naming the folder, its space and the fix
    reason = guard.low()
    assert reason is not None and reason.startswith(f"output_dir: {tmp_path} has ")
    assert "free; this study needs about" in reason and reason.endswith(f"then `study resume {tmp_path}`")
    check_free(tmp_path / "not-yet", 1, "output_dir")  # a folder to be created: its parent's space
    (tmp_path / "trials" / "t").mkdir(parents=True)
    with open(tmp_path / "trials" / "t" / "epoch_000001.pt", "wb") as handle:
        handle.truncate(free)  # sparse: a state file as large as the free space
    assert largest_state(tmp_path) == free
    with pytest.raises(StudyError, match=r"^STUDY_DIR: .* has .* MB free; this study needs about"):
        check_free(tmp_path, 1, "STUDY_DIR")


TRIALS, EPOCHS = 3, 3


@pytest.mark.slow
def test_a_filling_disk_stops_the_study_cleanly_and_resume_completes_it(
    small_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, name = small_disk / "study", "diskfull"
    space = {"optim.lr": {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-1}}
    base = tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": 4}, regularizer={"name": "l2sp"})
    spec = small_study(out, name, space, base, num_samples=TRIALS, max_concurrent=1)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "study", "launch", str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(out.glob("trials/*/best_model.pt")):  # the first trial has run to its end
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no trial finished"
        time.sleep(0.2)
    # something else fills the disk: what is left is 40 MB short of what the study needs
    need = RECORDS_BYTES + 3 * largest_state(out)
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as handle:
        handle.write(b"\0" * max(0, shutil.disk_usage(small_disk).free - need + 40 * MIB))
    _, err = driver.communicate(timeout=240)
    assert driver.returncode == 1, err[-3000:]
    line = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(line) == 1 and line[0].startswith(f"error: output_dir: {out} has "), err[-3000:]
    assert line[0].endswith(f"free space there, then `study resume {out}`")
    assert not (out / "trials.parquet").exists()
    finished = [d for d in (out / "trials").iterdir() if (d / "best_model.pt").is_file()]
    assert finished  # the completed trial is intact: its weights and states
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = {r.data.tags.get("tune.trial_id"): r for r in client.search_runs([experiment.experiment_id])}
    assert runs[finished[0].name].info.status == "FINISHED"

    assert main(["resume", str(out)]) == 2  # still full: one line, nothing started
    assert "STUDY_DIR: " in capsys.readouterr().err
    ballast.unlink()  # space freed
    assert main(["resume", str(out)]) == 0
    assert_every_trial_once(out, name, TRIALS, EPOCHS)
