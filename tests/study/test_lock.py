"""One driver per study: a second launch or resume is refused naming the running driver; the lock
of a driver that died is free and taken over. And stores that do not answer at launch fail in one
line before Ray starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.record import LOCK_FILE, FolderLock, running_driver
from study.spec import StudyError
from tests.conftest import REPO, tiny_base

HOLD = "import sys, time; from pathlib import Path; from study.record.lock import FolderLock; " \
    "lock = FolderLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(600)"  # fmt: skip


def holder(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock, as a running driver does."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def spec_file(tmp_path: Path, **extra: object) -> tuple[Path, Path]:
    out = tmp_path / "study"
    values = {"name": "locked", "output_dir": str(out), "ray_num_cpus": 2, "base": tiny_base(), **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, out


def test_the_lock_is_held_once_and_names_its_holder(tmp_path: Path) -> None:
    lock = FolderLock(tmp_path).acquire()
    try:
        assert running_driver(tmp_path) is not None and running_driver(tmp_path).pid == os.getpid()  # type: ignore[union-attr]
        with pytest.raises(StudyError, match=rf"^STUDY_DIR: a driver is running this study: pid {os.getpid()} on "):
            FolderLock(tmp_path).acquire()
    finally:
        lock.release()
    assert running_driver(tmp_path) is None
    again = FolderLock(tmp_path).acquire()
    assert again.previous is None  # released cleanly: nothing to take over
    again.release()


def test_a_dead_drivers_lock_is_taken_over(tmp_path: Path) -> None:
    process = holder(tmp_path)
    assert running_driver(tmp_path).pid == process.pid  # type: ignore[union-attr]
    os.kill(process.pid, signal.SIGKILL)  # a killed driver cannot release anything
    process.wait(timeout=30)
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == process.pid  # its note is still there
    assert running_driver(tmp_path) is None  # but the kernel let go of the lock
    lock = FolderLock(tmp_path).acquire()
    assert lock.previous is not None and lock.previous.pid == process.pid
    lock.release()


def test_launch_and_resume_into_a_folder_whose_driver_lives_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, out = spec_file(tmp_path)
    out.mkdir()
    process = holder(out)
    try:
        assert main(["launch", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: output_dir: a driver is running this study: pid {process.pid} on ")
        assert len(err.splitlines()) == 1 and f"kill -INT {process.pid}" in err
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else was written


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("field", ["optuna_storage", "tracking_uri"])
def test_a_database_that_does_not_answer_at_launch(
    tmp_path: Path, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://bss@127.0.0.1:{closed_port()}/record"
    path, out = spec_file(tmp_path, **{field: url})
    started = time.monotonic()
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}: {url} does not answer (") and len(err.splitlines()) == 1, err
    assert "start the database or fix the URL" in err
    assert not out.exists() and time.monotonic() - started < 30  # before Ray, nothing written
