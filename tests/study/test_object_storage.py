"""A study whose trials live in a bucket (``storage: s3://...``) of a real S3-compatible server on
loopback (moto's standalone server, ``tests/servers.py``): the driver killed and the study resumed,
every trial once, nothing of a trial written under the local study folder, and the read commands
(status, export-best, analyze) reading from the bucket. The bad-input cases come before Ray."""

from __future__ import annotations

import json
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
from tests.conftest import REPO
from tests.record import assert_every_trial_once
from tests.servers import MlflowServer, Postgres, S3Server
from tests.study import test_postgres as on_servers
from tests.study.test_study_folder import spec_file
from trainables.storage import files_at

TRIALS = 2


def write_spec(folder: Path, name: str, storage: str) -> tuple[Path, Path]:
    """test_study_folder's small study, its trials in ``storage``."""
    path = spec_file(folder, name)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "storage": storage}))
    return path, folder / name


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
def test_a_study_in_a_bucket_killed_and_resumed_on_a_new_machine(
    tmp_path: Path, s3: S3Server, postgres: Postgres, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Record on PostgreSQL + an MLflow server, trials in the bucket; the driver SIGKILLed, then the
    study resumed from a new, empty folder (another head machine) with ``--from``."""
    bucket = f"lab-{uuid.uuid4().hex[:8]}"
    storage = postgres.url(postgres.create_database("optuna_bucket"))
    spec, out = on_servers.write_spec(tmp_path, "s3study", mlflow_server.url, storage, trials=TRIALS, steps=4)
    values = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**values, "storage": f"{s3.bucket(bucket)}/studies/"}))
    driver = on_servers.start_driver(["launch", str(spec)], tmp_path / "launch.log")
    on_servers.wait_for(
        lambda: any(key.endswith("epoch_000001.pt") for key in objects(s3, bucket)),
        "a trial state in the bucket",
        driver,
    )
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    prefix = json.loads((out / "study.json").read_text())["storage"]
    assert prefix.startswith(f"s3://{bucket}/studies/s3study-")
    assert f"trials in:   {prefix}" in (tmp_path / "launch.log").read_text()
    head = tmp_path / "new-head" / "s3study"  # another machine: nothing of the old folder
    capsys.readouterr()
    assert main(["resume", str(head), "--from", prefix]) == 0
    assert f"rebuilt {head} from {prefix}" in capsys.readouterr().out
    on_servers.assert_recorded_once(head, "s3study", mlflow_server.url, storage, trials=TRIALS)
    rows = pq.read_table(head / "trials.parquet").to_pylist()
    assert all(r["trial_dir"] == f"{prefix}/trials/{r['trial_id']}" and r["has_weights"] for r in rows)
    stored = objects(s3, bucket)
    key = prefix.removeprefix(f"s3://{bucket}/")
    for row in rows:  # each trial's whole folder is in the bucket
        for name in ("config.yaml", "best_model.pt", f"epoch_{on_servers.EPOCHS:06d}.pt"):
            assert f"{key}/trials/{row['trial_id']}/{name}" in stored, (name, stored)
    assert any(k.startswith(f"{key}/tune/experiment_state") for k in stored)  # Tune's state too
    for folder in (out, head):  # no trial wrote under either local folder: only the driver's own files
        local = {p.relative_to(folder).parts[0] for p in folder.rglob("*")}
        assert not {"trials", "tune"} & local and not list(folder.rglob("*.pt")), sorted(local)
    assert f"weights: {prefix}/trials/" in (head / "best.yaml").read_text()
    assert main(["status", str(head)]) == 0
    assert f"{TRIALS}/{TRIALS} trials ended" in capsys.readouterr().out
    assert main(["report", str(head)]) == 0 and (head / "report" / "report.md").is_file()
    for command in (["sync"], ["ui", "--print-only"], ["dashboard", "--print-only"]):
        assert main([command[0], str(head), *command[1:]]) == 0, command
    # the bucket's copy of the driver's files is the new head's (the budget ledger as the resume left it)
    assert files_at(f"{prefix}/driver").read("budget.json") == (head / "budget.json").read_bytes()
    assert main(["export-best", str(head)]) == 0
    exported = (head / "export" / "best-1.yaml").read_text()
    run = next(r["trial_dir"] for r in rows if f"weights: {r['trial_dir']}/" in exported)
    assert main(["analyze", "spectra", "--run", run, "--out", str(tmp_path / "spectra"), "--batches", "1"]) == 0
    assert (tmp_path / "spectra" / "spectra.parquet").is_file()
    # --from refuses a folder that is not empty, and a study whose record is its folder's own SQLite
    capsys.readouterr()
    assert main(["resume", str(head), "--from", prefix]) == 2
    assert capsys.readouterr().err.startswith(f"error: --from: {head} is not empty")
    local_record = json.loads((out / "study.json").read_text()) | {"tracking_uri": None, "optuna_storage": None}
    files_at(f"{prefix}/driver").write("study.json", lambda handle: handle.write(json.dumps(local_record).encode()))
    assert main(["resume", str(tmp_path / "third"), "--from", prefix]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --from: the study's record is its folder's own SQLite")
        and not (tmp_path / "third").exists()
    )


@pytest.mark.slow
def test_a_study_goes_on_through_its_bucket_not_answering_for_a_while(tmp_path: Path) -> None:
    """The S3 server frozen (SIGSTOP) for 10 s while trials save their states, then thawed: the
    calls are tried again within ``BSS_STUDY_STORAGE_RETRY_S`` and the study ends whole."""
    server = S3Server(tmp_path / "moto.log")  # its own: this test freezes it
    server.start()
    try:
        bucket = f"frozen-{uuid.uuid4().hex[:8]}"
        spec, out = write_spec(tmp_path, "frozen", f"{server.bucket(bucket)}/studies")
        env = {**os.environ, **server.env(), "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
        with open(tmp_path / "launch.log", "w") as log:
            driver = subprocess.Popen(
                [sys.executable, "-m", "study", "launch", str(spec)], cwd=REPO, env=env, stdout=log, stderr=log
            )
        on_servers.wait_for(
            lambda: any(k.endswith("epoch_000001.pt") for k in objects(server, bucket)), "a state in the bucket", driver
        )
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        time.sleep(10)
        os.kill(server.process.pid, signal.SIGCONT)
        assert driver.wait(timeout=600) == 0, (tmp_path / "launch.log").read_text()[-3000:]
        rows = assert_every_trial_once(out, "frozen", TRIALS, 2)
        assert all(r["has_weights"] and r["trial_dir"].startswith(f"s3://{bucket}/") for r in rows)
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.kill()


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
    # keys the server does not know (a server that checks them after the test's bucket is made)
    checking = S3Server(tmp_path / "moto-checking.log", checked_after=1)
    checking.start()
    try:
        with monkeypatch.context() as patched:
            patched.setenv("AWS_ENDPOINT_URL", checking.endpoint)
            uri = f"{checking.bucket('lab')}/p"
            spec, out = write_spec(tmp_path, "bad-credentials", uri)
            assert main(["launch", str(spec)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"error: storage: {uri} cannot be reached"), err
        assert "ACCESS_DENIED" in err and "AWS_ACCESS_KEY_ID" in err and not out.exists(), err
    finally:
        checking.kill()
    spec, out = write_spec(tmp_path, "bad-key", "s3://AKIAEXAMPLE:secret@bucket/p")
    assert main(["launch", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: storage: the URI holds credentials") and "secret" not in err and not out.exists()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
