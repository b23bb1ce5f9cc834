"""The cluster's record for real: Optuna on PostgreSQL and MLflow behind a real ``mlflow server``
(its backend store on the same PostgreSQL), both started by the tests (``tests/servers.py``).

Every study here is checked the same way: each trial exactly once in Optuna, in MLflow and in
``trials.parquet``, no run left RUNNING, no epoch logged twice. Then the faults: a SIGINT and a
resume, the MLflow server killed and restarted, killed for good (then ``study sync``), PostgreSQL
restarted under a running study, two studies in one database at once, one study name twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.cli import main
from tests.conftest import REPO, tiny_base
from tests.servers import MlflowServer, Postgres, stop_group

pytestmark = pytest.mark.slow

TRIALS = 8
EPOCHS = 2


def write_spec(
    tmp_path: Path, name: str, tracking: str, storage: str, trials: int = TRIALS, steps: int = 2, **extra: object
) -> tuple[Path, Path]:
    out = tmp_path / name
    spec = {
        "name": name,
        "output_dir": str(out),
        "search_space": "demo",
        "num_samples": trials,
        "max_concurrent": 4,
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": 0.5},
        "ray_num_cpus": 2,
        "tracking_uri": tracking,
        "optuna_storage": storage,
        "base": tiny_base(optim={"epochs": EPOCHS, "steps_per_epoch": steps}),
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, out


def start_driver(command: list[str], log: Path, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", **env}
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "study", *command],
            cwd=REPO,
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: object, what: str, driver: subprocess.Popen | None = None, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert driver is None or driver.poll() is None, f"the driver ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def finished_trials(out: Path) -> int:
    """Trials whose last epoch's state is on disk."""
    return len(list(out.glob(f"trials/*/epoch_{EPOCHS:06d}.pt")))


def assert_recorded_once(out: Path, name: str, tracking: str, storage: str, trials: int = TRIALS) -> None:
    table = pq.read_table(out / "trials.parquet").to_pylist()
    ids = {r["trial_id"] for r in table}
    assert len(table) == trials == len(ids) and all(r["status"] == "finished" for r in table)
    record = json.loads((out / "study.json").read_text())
    client = MlflowClient(tracking)
    parent = client.get_run(record["parent_run_id"])
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [record["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{record['parent_run_id']}'"
    )
    assert len(children) == trials and {c.data.tags["tune.trial_id"] for c in children} == ids
    assert {r["mlflow_run_id"] for r in table} == {c.info.run_id for c in children}
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (
            steps
        )  # every epoch once (in any order: MLflow 2.x returns them unordered)
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert {t.user_attrs["tune_trial_id"] for t in study.trials} == ids
    assert sorted(r["optuna_trial_number"] for r in table) == list(range(trials))


def assert_no_password(postgres: Postgres, out: Path, *databases: str) -> None:
    secret = postgres.password.encode()
    for path in out.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    for database in databases:
        assert postgres.password not in postgres.dump(database), database


def assert_dashboard_lists(out: Path, name: str, trials: int) -> None:
    """`study dashboard` really serves optuna-dashboard on the PostgreSQL storage."""
    import urllib.request

    from tests.servers import dashboard_studies, free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "study", "dashboard", str(out), "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        (listed,) = [s for s in dashboard_studies(port, server) if s["study_name"] == name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{listed['study_id']}", timeout=30) as r:
            assert len(json.loads(r.read())["trials"]) == trials
    finally:
        stop_group(server)


def test_a_study_on_postgres_behind_an_mlflow_server(
    tmp_path: Path, postgres: Postgres, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = postgres.url(postgres.create_database("optuna_main"))
    spec, out = write_spec(tmp_path, "pgmain", mlflow_server.url, storage)
    assert main(["launch", str(spec)]) == 0
    printed = capsys.readouterr().out
    assert f"MLflow:      {mlflow_server.url}/#/experiments/" in printed
    assert not (out / "mlflow.db").exists() and not (out / "optuna.db").exists()  # no SQLite anywhere
    assert_recorded_once(out, "pgmain", mlflow_server.url, storage)
    record = json.loads((out / "study.json").read_text())
    assert record["tracking_uri"] == mlflow_server.url and record["optuna_storage"] == storage

    assert main(["status", str(out)]) == 0
    assert f"{TRIALS}/{TRIALS} trials ended (finished {TRIALS})" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").is_file()
    assert main(["export-best", str(out)]) == 0
    assert (out / "export" / "best-1.yaml").is_file()
    assert main(["ui", str(out)]) == 0  # the server serves it: nothing started here
    assert f"the study's runs: {mlflow_server.url}/#/experiments/{record['experiment_id']}/runs" in (
        capsys.readouterr().out
    )
    assert main(["dashboard", str(out), "--print-only"]) == 0
    assert f"optuna-dashboard {storage} --host 127.0.0.1" in capsys.readouterr().out
    assert_dashboard_lists(out, "pgmain", TRIALS)
    client = MlflowClient(mlflow_server.url)
    logged = {a.path for a in client.list_artifacts(record["parent_run_id"], "report")}
    assert "report/report.md" in logged  # through the server's proxied artifact store
    assert_no_password(postgres, out, "optuna_main", "mlflow")
    assert postgres.password not in printed


def test_sigint_then_resume_on_postgres(tmp_path: Path, postgres: Postgres, mlflow_server: MlflowServer) -> None:
    storage = postgres.url(postgres.create_database("optuna_resume"))
    spec, out = write_spec(tmp_path, "pgresume", mlflow_server.url, storage, steps=8)
    driver = start_driver(["launch", str(spec)], tmp_path / "launch.log")
    wait_for(lambda: list(out.glob("trials/*/epoch_*.pt")), "a first checkpoint", driver)
    second = start_driver(["resume", str(out)], tmp_path / "second.log")  # while the first driver lives
    assert second.wait(timeout=120) == 2
    refusal = (tmp_path / "second.log").read_text()
    assert f"a driver is running this study: pid {driver.pid} on" in refusal, refusal
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=180) == 130, (tmp_path / "launch.log").read_text()[-3000:]
    assert main(["resume", str(out)]) == 0
    assert_recorded_once(out, "pgresume", mlflow_server.url, storage)


def test_two_studies_in_one_database_at_once_and_one_name_once(
    tmp_path: Path, postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    storage = postgres.url(postgres.create_database("optuna_shared"))
    specs = {name: write_spec(tmp_path, name, mlflow_server.url, storage, trials=4, steps=6) for name in ("sa", "sb")}
    drivers = {name: start_driver(["launch", str(spec)], tmp_path / f"{name}.log") for name, (spec, _) in specs.items()}
    wait_for(lambda: list(specs["sa"][1].glob("trials/*/epoch_*.pt")), "study sa's first checkpoint", drivers["sa"])
    # the same study name from another folder (another machine): refused while sa's driver runs
    (tmp_path / "elsewhere").mkdir()
    clash, clash_out = write_spec(tmp_path / "elsewhere", "sa", mlflow_server.url, storage, trials=4)
    refused = subprocess.run(
        [sys.executable, "-m", "study", "launch", str(clash)], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )  # fmt: skip
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "a driver is running study 'sa' on postgresql://postgres@127.0.0.1" in refused.stderr
    for name, driver in drivers.items():
        assert driver.wait(timeout=600) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        assert_recorded_once(specs[name][1], name, mlflow_server.url, storage, trials=4)
    # once sa's driver has ended, its name is still taken in that database: a new folder cannot reuse it
    refused = subprocess.run(
        [sys.executable, "-m", "study", "launch", str(clash)], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )  # fmt: skip
    assert refused.returncode == 2 and "already holds a study named 'sa'" in refused.stderr, refused.stderr
    assert not (clash_out / "trials").exists()


def own_server(tmp_path: Path, postgres: Postgres, database: str) -> MlflowServer:
    """An MLflow server of the test's own (it is killed), on a database of its own."""
    server = MlflowServer(postgres.url(postgres.create_database(database)), tmp_path / "art", postgres.env())
    server.artifacts.mkdir()
    server.start()
    return server


def test_mlflow_server_killed_mid_study_then_back(tmp_path: Path, postgres: Postgres) -> None:
    server = own_server(tmp_path, postgres, "mlflow_kill")
    storage = postgres.url(postgres.create_database("optuna_kill"))
    spec, out = write_spec(tmp_path, "pgkill", server.url, storage, steps=6)
    try:
        driver = start_driver(["launch", str(spec)], tmp_path / "launch.log", BSS_STUDY_TRACKING_RETRY_S="1")
        wait_for(lambda: finished_trials(out) >= 1, "a trial's last epoch", driver)
        server.kill()
        wait_for(lambda: finished_trials(out) >= 3, "trials ending while MLflow is down", driver)
        server.start()
        assert driver.wait(timeout=600) == 0, (tmp_path / "launch.log").read_text()[-3000:]
        log = (tmp_path / "launch.log").read_text()
        assert "did not answer" in log and "answers again" in log, log[-3000:]
        assert not (out / "mlflow-pending.jsonl").exists()
        assert_recorded_once(out, "pgkill", server.url, storage)
    finally:
        server.kill()


def test_mlflow_server_gone_for_good_then_study_sync(
    tmp_path: Path, postgres: Postgres, capsys: pytest.CaptureFixture[str]
) -> None:
    server = own_server(tmp_path, postgres, "mlflow_gone")
    storage = postgres.url(postgres.create_database("optuna_gone"))
    spec, out = write_spec(tmp_path, "pggone", server.url, storage, steps=4)
    try:
        env = {"BSS_STUDY_TRACKING_RETRY_S": "1", "BSS_STUDY_TRACKING_WAIT_S": "3"}
        driver = start_driver(["launch", str(spec)], tmp_path / "launch.log", **env)
        wait_for(lambda: finished_trials(out) >= 1, "a trial's last epoch", driver)
        server.kill()
        assert driver.wait(timeout=600) == 1
        log = (tmp_path / "launch.log").read_text()
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: tracking_uri: {server.url} did not answer"), log
        table = pq.read_table(out / "trials.parquet").to_pylist()  # every result is in the folder
        assert len(table) == TRIALS and all(r["status"] == "finished" for r in table)
        assert (out / "mlflow-pending.jsonl").is_file()
        assert main(["sync", str(out)]) == 2  # still gone: one line, nothing lost
        assert capsys.readouterr().err.startswith(f"error: tracking_uri: {server.url} does not answer")
        server.start()
        assert main(["sync", str(out)]) == 0
        assert "MLflow is up to date" in capsys.readouterr().out
        assert not (out / "mlflow-pending.jsonl").exists()
        assert_recorded_once(out, "pggone", server.url, storage)
        assert main(["sync", str(out)]) == 0  # again: nothing to replay, nothing doubled
        assert_recorded_once(out, "pggone", server.url, storage)
    finally:
        server.kill()


def test_postgres_restarted_mid_study(tmp_path: Path, postgres: Postgres, mlflow_server: MlflowServer) -> None:
    storage = postgres.url(postgres.create_database("optuna_restart"))
    spec, out = write_spec(tmp_path, "pgrestart", mlflow_server.url, storage, steps=6)
    driver = start_driver(["launch", str(spec)], tmp_path / "launch.log", BSS_STUDY_TRACKING_RETRY_S="1")
    wait_for(lambda: finished_trials(out) >= 1, "a trial's last epoch", driver)
    postgres.restart()  # Optuna's and the MLflow server's connections all drop
    assert driver.wait(timeout=600) == 0, (tmp_path / "launch.log").read_text()[-3000:]
    assert_recorded_once(out, "pgrestart", mlflow_server.url, storage)


def test_storage_calls_survive_restarts_while_queries_are_in_flight(postgres: Postgres) -> None:
    """Optuna's trial read falls back to a second query in the same session when the first fails;
    that one raises ``PendingRollbackError`` (the dropped connection as its context), which must be
    retried like the drop itself (a study once failed on exactly that, mid-restart)."""
    import threading

    from study.record import RetryingStorage

    storage = RetryingStorage(postgres.url(postgres.create_database("optuna_inflight")))
    study = optuna.create_study(storage=storage, study_name="inflight")
    stop = threading.Event()
    errors: list[BaseException] = []
    told: list[int] = []

    def query() -> None:
        mine = optuna.load_study(study_name="inflight", storage=storage)
        while not stop.is_set():
            try:
                mine.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                trial = mine.ask()
                mine.tell(trial, 1.0)
                told.append(trial.number)
            except BaseException as exc:  # every failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(4):
            time.sleep(0.7)
            postgres.restart()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, [f"{type(e).__name__}: {e} <- {e.__cause__ or e.__context__!r}" for e in errors]
    numbers = {t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
    assert set(told) <= numbers and len(told) > 20
