"""The README's cluster workflow on one machine: `ray start --head` with the dashboard on loopback,
`ray job submit` of a tiny study, then its MLflow record and `study status`; Ray stopped after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.study.test_study_integration import background, free_port, two_trial_spec

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def wait_for_dashboard(url: str, head: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert head.poll() is None, "ray start --head exited"
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the Ray dashboard at {url} did not answer in {seconds:.0f} s")


def test_ray_job_submit_runs_a_study(tmp_path: Path) -> None:
    # its ray_num_cpus: 2 is a laptop setting, ignored when the job joins the cluster
    spec_path, out = two_trial_spec(tmp_path, "jobstudy", optim={"epochs": 1, "steps_per_epoch": 2})
    # the cluster's own folder (short: Ray's sockets live in it), so no other Ray on the machine is found or stopped
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    head = background(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            f"--temp-dir={temp_dir}",
        ],
        env=env,
    )
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_for_dashboard(dashboard, head)
        job = subprocess.run(
            [
                str(BIN / "ray"),
                "job",
                "submit",
                "--address",
                dashboard,
                "--",
                sys.executable,
                "-m",
                "study",
                "launch",
                str(spec_path),
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout and "best config:" in job.stdout
    finally:
        os.killpg(head.pid, signal.SIGINT)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("jobstudy")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(children) == 2 and all(r.info.status == "FINISHED" for r in runs)
    status = subprocess.run(
        [sys.executable, "-m", "study", "status", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0 and "2/2 trials ended" in status.stdout and "complete" in status.stdout
