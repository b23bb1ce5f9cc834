"""Nothing outlives the driver: a watchdog process that ends the local Ray processes of a study.

``ray.init()`` in the driver starts a local Ray cluster (GCS, raylet, agents, workers). Ended
normally, the driver shuts it down; killed (SIGKILL, OOM killer), it cannot, and some of those
processes live on, reparented to init. The watchdog runs in its own session (a Ctrl-C to the
terminal does not reach it), notes the driver's descendants twice a second, and once the driver
is gone, sends SIGTERM to every noted process still alive (the same process: pid and start time),
to every process below one of them, and to any process naming the Ray session's folder (so one
started in the last half second is not missed), then SIGKILL to those still alive 3 s later, and
exits. It starts before ``ray.init`` (a driver killed while Ray starts leaves Ray's first processes
too) and learns the session's folder from their command lines. It also exits, doing nothing, once every noted
process has ended while the driver lives (the driver shut Ray down itself). Usage (the CLI does it)::

    python -m study.run.watchdog DRIVER_PID [RAY_SESSION_DIR]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import psutil

POLL_S = 0.5
GRACE_S = 3.0


def descendants(pid: int) -> dict[int, float]:
    """pid -> start time of every process below ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    seen = {}
    for child in children:
        if child.pid == os.getpid():
            continue
        try:
            seen[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return seen


def alive(pid: int, started: float) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        if process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except psutil.Error:
        pass
    return None


def end_all(noted: dict[int, float], grace: float = GRACE_S) -> int:
    """SIGTERM, then SIGKILL after ``grace`` seconds, to the noted processes still alive."""
    targets = [p for pid, started in noted.items() if (p := alive(pid, started)) is not None]
    for process in targets:
        try:
            process.terminate()
        except psutil.Error:
            continue
    _, left = psutil.wait_procs(targets, timeout=grace)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            continue
    return len(targets)


SESSION = re.compile(r"(/[^\s=,'\"]*/session_\d{4}-\d{2}-\d{2}_[\d-]+(?:_\d+)+)")


def session_of(noted: dict[int, float]) -> str | None:
    """The Ray session's folder named on a noted process's command line (GCS, raylet, agents)."""
    for pid, started in noted.items():
        process = alive(pid, started)
        try:
            found = SESSION.search(" ".join(process.cmdline())) if process is not None else None
        except psutil.Error:
            continue
        if found:
            return found.group(1)
    return None


def below(noted: dict[int, float]) -> dict[int, float]:
    """The processes below the noted ones still alive (a worker started since the last look)."""
    found: dict[int, float] = {}
    for pid, started in list(noted.items()):
        if alive(pid, started) is not None:
            found.update(descendants(pid))
    return found


def naming(session_dir: str) -> dict[int, float]:
    """Processes whose command line names the Ray session's folder."""
    found = {}
    for process in psutil.process_iter(["pid", "cmdline", "create_time"]):
        cmdline = process.info.get("cmdline") or []
        if process.pid != os.getpid() and any(session_dir in part for part in cmdline):
            found[process.pid] = process.info["create_time"]
    return found


def watch(driver_pid: int, session_dir: str | None = None) -> int:
    """Returns how many processes it ended."""
    try:
        driver_started = psutil.Process(driver_pid).create_time()
    except psutil.Error:
        return 0
    noted: dict[int, float] = {}
    while alive(driver_pid, driver_started) is not None:
        noted.update(descendants(driver_pid))
        if noted and all(alive(pid, started) is None for pid, started in noted.items()):
            return 0  # Ray was shut down by the driver
        session_dir = session_dir or session_of(noted)
        time.sleep(POLL_S)
    noted.update(below(noted))
    session_dir = session_dir or session_of(noted)
    if session_dir:
        noted.update(naming(session_dir))
    return end_all(noted)


def start(driver_pid: int, session_dir: str | None = None) -> subprocess.Popen[bytes]:
    """Start the watchdog of ``driver_pid`` in a new session, detached from the terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "study.run.watchdog", str(driver_pid), *([session_dir] if session_dir else [])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
