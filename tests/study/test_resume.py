"""`study resume` after Ctrl-C and after SIGKILL of the driver: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.cli import main
from tests.conftest import REPO, tiny_base
from tests.record import assert_every_trial_once

pytestmark = pytest.mark.slow

TRIALS, EPOCHS = 3, 3


def write_spec(tmp_path: Path, name: str) -> tuple[Path, Path]:
    out = tmp_path / name
    spec = {
        "name": name,
        "output_dir": str(out),
        "search_space": "demo",
        "num_samples": TRIALS,
        "max_concurrent": 1,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": 12}, data={"sampling_rate": 0.15}),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, out


def launch_and_stop(spec_path: Path, out: Path, sig: int) -> int:
    """Start `study launch` and send ``sig`` to the driver once the first checkpoint exists."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "study", "launch", str(spec_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("trials/*/epoch_*.pt")):
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    driver.send_signal(sig)
    try:
        _, err = driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        driver.kill()
        raise
    assert not (out / "trials.parquet").exists()
    if sig == signal.SIGINT:
        assert "study resume" in err, err[-2000:]
    return driver.returncode


def assert_complete(out: Path, name: str) -> None:
    table = assert_every_trial_once(out, name, TRIALS, EPOCHS)
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    parents = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r["optuna_trial_number"] for r in table) == list(range(TRIALS))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_resume_finishes_the_study(tmp_path: Path, sig: int, capsys: pytest.CaptureFixture[str]) -> None:
    name = "resume-int" if sig == signal.SIGINT else "resume-kill"
    spec_path, out = write_spec(tmp_path, name)
    code = launch_and_stop(spec_path, out, sig)
    assert code != 0
    assert main(["status", str(out)]) == 0
    assert f"study {name}:" in capsys.readouterr().out
    assert main(["launch", str(spec_path)]) == 2  # the folder holds an unfinished run: resume, not relaunch
    assert "study resume" in capsys.readouterr().err
    if sig == signal.SIGKILL:  # a record MLflow had not taken when the driver died: resume replays it first
        (out / "mlflow-pending.jsonl").write_text('{"op": "parent_metrics", "metrics": {"kept_record": 1.0}}\n')
    assert main(["resume", str(out)]) == 0
    printed = capsys.readouterr().out
    assert_complete(out, name)
    if sig == signal.SIGKILL:  # its lock was free (the kernel let go of it) and is taken over, saying whose
        assert "taking over the lock of a driver that is gone: pid" in printed
        assert not (out / "mlflow-pending.jsonl").exists()
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        parent_id = json.loads((out / "study.json").read_text())["parent_run_id"]
        assert client.get_run(parent_id).data.metrics["kept_record"] == 1.0
    assert main(["export-best", str(out), "--top", "2"]) == 0
    exported = sorted((out / "export").glob("best-*.yaml"))
    assert len(exported) == 2 and "# weights: " in exported[0].read_text()
