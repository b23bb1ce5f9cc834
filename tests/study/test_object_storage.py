"""A study whose trials live in a bucket (``storage: s3://...``) of a real S3-compatible server on
loopback (moto's standalone server, ``tests/servers.py``): the driver killed and the study resumed,
every trial once, nothing of a trial written under the local study folder, and the read commands
(status, export-best, analyze) reading from the bucket. The bad-input cases come before Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from study.cli import main
from tests.conftest import REPO, tiny_base
from tests.record import assert_every_trial_once
from tests.servers import S3Server

TRIALS, EPOCHS = 2, 3


def write_spec(folder: Path, name: str, storage: str, **extra: object) -> tuple[Path, Path]:
    out = folder / name
    spec = {
        "name": name,
        "output_dir": str(out),
        "search_space": "demo",
        "num_samples": TRIALS,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "storage": storage,
        "base": tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": 3}),
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, out


def objects(server: S3Server, bucket: str) -> list[str]:
    import boto3

    env = server.env()
    client = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"],
    )  # fmt: skip
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.mark.slow
def test_a_study_in_a_bucket_killed_and_resumed(
    tmp_path: Path, s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"lab-{uuid.uuid4().hex[:8]}"
    spec, out = write_spec(tmp_path, "s3study", f"{s3.bucket(bucket)}/studies/")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "study", "launch", str(spec)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not any(key.endswith("epoch_000001.pt") for key in objects(s3, bucket)):
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "no trial state appeared in the bucket"
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)
    assert main(["resume", str(out)]) == 0
    rows = assert_every_trial_once(out, "s3study", TRIALS, EPOCHS)
    prefix = yaml.safe_load((out / "study.json").read_text())["storage"]
    assert prefix.startswith(f"s3://{bucket}/studies/s3study-")
    assert all(r["trial_dir"] == f"{prefix}/trials/{r['trial_id']}" and r["has_weights"] for r in rows)
    stored = objects(s3, bucket)
    key = prefix.removeprefix(f"s3://{bucket}/")
    for row in rows:  # each trial's whole folder is in the bucket
        for name in ("config.yaml", "best_model.pt", f"epoch_{EPOCHS:06d}.pt"):
            assert f"{key}/trials/{row['trial_id']}/{name}" in stored, (name, stored)
    assert any(k.startswith(f"{key}/tune/experiment_state") for k in stored)  # Tune's state too
    # no trial wrote under the local folder: only the driver's own files are there
    local = {p.relative_to(out).parts[0] for p in out.rglob("*")}
    assert not {"trials", "tune"} & local and not list(out.rglob("*.pt")), sorted(local)
    assert f"weights: {prefix}/trials/" in (out / "best.yaml").read_text()
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert f"{TRIALS}/{TRIALS} trials ended" in capsys.readouterr().out
    assert main(["export-best", str(out)]) == 0
    exported = (out / "export" / "best-1.yaml").read_text()
    assert f"# weights: {prefix}/trials/" in exported
    best = pq.read_table(out / "trials.parquet").to_pylist()
    run = next(r["trial_dir"] for r in best if f"weights: {r['trial_dir']}/" in exported)
    assert main(["analyze", "spectra", "--run", run, "--out", str(tmp_path / "spectra"), "--batches", "1"]) == 0
    assert (tmp_path / "spectra" / "spectra.parquet").is_file()


@pytest.mark.slow
def test_a_bucket_that_cannot_be_used_is_one_line_before_ray(
    tmp_path: Path, s3: S3Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # were Ray reached, it would fail otherwise
    bucket = s3.bucket(f"lab-{uuid.uuid4().hex[:8]}")
    cases = {
        "missing": (f"s3://no-such-bucket-{uuid.uuid4().hex[:6]}/p", {}),
        "refused": (f"{bucket}/p", {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}),
    }
    for label, (uri, env) in cases.items():
        with monkeypatch.context() as patched:
            for name, value in env.items():
                patched.setenv(name, value)
            patched.setenv("BSS_STUDY_STORAGE_RETRY_S", "1")
            spec, out = write_spec(tmp_path, f"bad-{label}", uri)
            assert main(["launch", str(spec)]) == 2, label
        err = capsys.readouterr().err.strip()
        expected = f"error: storage: {uri.rstrip('/')} cannot be reached"
        assert len(err.splitlines()) == 1 and err.startswith(expected), err
        assert "AWS_ENDPOINT_URL" in err and not out.exists(), (label, err)
    spec, out = write_spec(tmp_path, "bad-key", "s3://AKIAEXAMPLE:secret@bucket/p")
    assert main(["launch", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: storage: the URI holds credentials") and "secret" not in err and not out.exists()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
