"""One tiny study end to end as a user runs it, on whatever versions are installed: the test the
cross-version matrix (``make compat``, ``tools/compat_matrix.py``) runs in every set, on the
folder's own SQLite and on PostgreSQL behind a real ``mlflow server`` of the installed MLflow.

Launch, Ctrl-C once a trial has saved an epoch, ``status``, ``resume`` to the end, each trial
exactly once in Optuna, MLflow and the table, ``report``, ``export-best --register`` (the model
loads back through ``mlflow.pytorch``), and ``study train`` on the exported best config.
"""

from __future__ import annotations

import inspect
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.cli import main
from tests.conftest import REPO, tiny_base
from tests.study.test_postgres import EPOCHS, assert_recorded_once, start_driver, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.matrix]

TRIALS = 3


def monitor_takes_a_store() -> bool:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    return "tracking_uri" in inspect.signature(SystemMetricsMonitor).parameters


@pytest.mark.parametrize("store", ["folder", "server"])
def test_a_study_end_to_end_on_the_installed_versions(
    store: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    name, out = f"xv-{store}", tmp_path / f"xv-{store}"
    spec: dict = {
        "name": name,
        "output_dir": str(out),
        "search_space": "demo",
        "num_samples": TRIALS,
        "max_concurrent": 1,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": 8}),
    }
    if store == "server":  # PostgreSQL behind a real mlflow server of the installed MLflow
        server, postgres = request.getfixturevalue("mlflow_server"), request.getfixturevalue("postgres")
        tracking = spec["tracking_uri"] = server.url
        storage = spec["optuna_storage"] = postgres.url(postgres.create_database("optuna_xv"))
    else:  # the folder's own SQLite files
        tracking, storage = f"sqlite:///{out / 'mlflow.db'}", f"sqlite:///{out / 'optuna.db'}"
    spec_path = tmp_path / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    driver = start_driver(["launch", str(spec_path)], tmp_path / "launch.log")
    wait_for(lambda: list(out.glob("trials/*/epoch_*.pt")), "a trial's first epoch", driver)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=180) == 130, (tmp_path / "launch.log").read_text()[-3000:]

    assert main(["status", str(out)]) == 0
    assert f"study {name}:" in capsys.readouterr().out
    assert main(["resume", str(out)]) == 0
    resumed = capsys.readouterr()
    assert_recorded_once(out, name, tracking, storage, trials=TRIALS)

    # MLflow's system metrics on the parent run where the monitor can be given the study's store;
    # before MLflow 3.7 one line says why there are none, and the study goes on
    parent = MlflowClient(tracking).get_run(json.loads((out / "study.json").read_text())["parent_run_id"])
    has_system_metrics = any(k.startswith("system/") for k in parent.data.metrics)
    assert has_system_metrics == monitor_takes_a_store()
    assert ("[study] no system metrics on the parent run: mlflow" in resumed.err) != has_system_metrics

    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").is_file() and (out / "report" / "summary.parquet").is_file()
    capsys.readouterr()

    assert main(["export-best", str(out), "--register"]) == 0
    assert f"registered: models:/{name}/1" in capsys.readouterr().out
    import mlflow.pytorch
    import torch

    from study.reporting import mlflow_uris

    with mlflow_uris(tracking):
        loaded = mlflow.pytorch.load_model(f"models:/{name}/1")
    logits, _ = loaded.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)

    rerun = subprocess.run(
        [sys.executable, "-m", "study", "train", "--config", str(out / "best.yaml"), "--output", str(tmp_path / "w")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "test_acc=" in rerun.stdout and (tmp_path / "w" / "best_model.pt").is_file()
