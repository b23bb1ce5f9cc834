"""A study on a real two-node Ray cluster on this machine (head + worker as separate Ray nodes on
loopback) with no shared file system: the trials' state is in a bucket of a real S3-compatible
server (``storage: s3://...``), the driver's folder is given to no trial. The worker node is killed
mid-study; its trials continue from their state in the bucket and the study still finishes with
every trial accounted for, and nothing of a trial under the driver's folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, tiny_base
from tests.servers import S3Server
from tests.study.test_object_storage import objects
from tests.study.test_study_integration import free_port

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def test_worker_node_killed_mid_study(tmp_path: Path, s3: S3Server) -> None:
    env = {**os.environ, **s3.env(), "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    bucket = f"nodes-{uuid.uuid4().hex[:8]}"
    storage = f"{s3.bucket(bucket)}/studies"
    port = free_port()
    address = f"127.0.0.1:{port}"
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    worker = None
    try:
        worker = subprocess.Popen(
            [
                RAY,
                "start",
                "--address",
                address,
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "2",
                "--block",
                "--disable-usage-stats",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_nodes(address, 2, env)
        out = tmp_path / "driver" / "study"
        spec = {
            "name": "cluster",
            "output_dir": str(out),
            "search_space": "demo",
            "num_samples": 4,
            "max_concurrent": 3,
            "max_failures": 3,
            "scheduler": {"name": "fifo"},
            "ray_address": address,
            "storage": storage,
            "base": tiny_base(optim={"epochs": 3, "steps_per_epoch": 40}),
        }
        spec_path = tmp_path / "cluster.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        driver = subprocess.Popen(
            [sys.executable, "-m", "study", "launch", str(spec_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 300
        # kill once a trial has stored a state in the bucket and a trial is training on the worker node
        while not (any(k.endswith(".pt") for k in objects(s3, bucket)) and training_on(worker.pid)):
            assert driver.poll() is None and time.monotonic() < deadline, "the study did not start"
            time.sleep(0.2)
        # the worker node dies mid-study: every process of it at once (raylet, workers, trial actors)
        node = [p.pid for p in psutil.Process(worker.pid).children(recursive=True)]
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in node:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print("killed the worker node's processes:", len(node) + 1)
        output, _ = driver.communicate(timeout=600)
        (tmp_path / "driver.log").write_text(output)
        assert driver.returncode == 0, output[-3000:]
        rows = pq.read_table(out / "trials.parquet").to_pylist()
        assert len(rows) == 4 and all(r["status"] == "finished" and r["epoch"] == 3 for r in rows)
        assert all(r["trial_dir"].startswith(f"{storage}/") and r["has_weights"] for r in rows)
        local = {p.relative_to(out).parts[0] for p in out.rglob("*")}  # no trial wrote under the driver's folder
        assert not {"trials", "tune"} & local and not list(out.rglob("*.pt")), sorted(local)
        # the kill was real: trials on the dead node failed and were retried from their checkpoints
        retried = [r for r in rows if r["retries"] >= 1]
        assert retried, output[-3000:]
        assert "; retry 1 from" in output
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("cluster")
        assert experiment is not None
        children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
        reasons = [client.get_run(r["mlflow_run_id"]).data.tags.get("last_failure", "") for r in retried]
        progress = [line for line in output.splitlines() if line.startswith("[study]")]
        assert all(reason and "no error file" not in reason for reason in reasons), (reasons, progress)
        print("retried trials' reasons:", reasons)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(tmp_path / "driver", ignore_errors=True)


def training_on(node_pid: int) -> bool:
    """Whether a process of the node (by its ``ray start`` pid) runs a Tune trial's training."""
    for process in psutil.Process(node_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "ImplicitFunc.train" in " ".join(process.cmdline()):
                return True
    return False


def wait_for_nodes(address: str, count: int, env: dict[str, str]) -> None:
    probe = f"import ray; ray.init(address='{address}'); print(len([n for n in ray.nodes() if n['Alive']]))"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        if result.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise AssertionError(f"the cluster did not reach {count} nodes")
