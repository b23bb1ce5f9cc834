"""A real 2-trial study through Ray Tune, Optuna (SQLite) and MLflow (SQLite), then `study train`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from finetune import load_config
from study.cli import main
from tests.conftest import REPO, tiny_base
from tests.servers import dashboard_studies, stop_group, wait_for_health

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def background(command: list[str], **options: object) -> subprocess.Popen:
    """A server or cluster process in its own session (stopped with os.killpg), quiet."""
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **options
    )  # type: ignore[call-overload]


def two_trial_spec(tmp_path: Path, name: str, **base: object) -> tuple[Path, Path]:
    """(spec file, study folder) of a tiny two-trial demo-space study on the local Ray."""
    out = tmp_path / "study"
    spec = {
        "name": name,
        "output_dir": str(out),
        "search_space": "demo",
        "num_samples": 2,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": tiny_base(**base),
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, out


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def assert_ui_lists_runs(study_dir: Path, parent_id: str, children: int) -> None:
    port = free_port()
    server = background([sys.executable, "-m", "study", "ui", str(study_dir), "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, server)
        experiments = post(f"{base}/api/2.0/mlflow/experiments/search", {"max_results": 10})["experiments"]
        (experiment,) = [e for e in experiments if e["name"] == "itest"]
        runs = post(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
        assert len(runs) == 1 + children
        child_runs = [r for r in runs if r["info"]["run_id"] != parent_id]
        for run in child_runs:
            metric_names = {m["key"] for m in run["data"]["metrics"]}
            assert {"val_acc", "train_loss", "sv_min_1", "bf16", "channels_last", "cuda_graph"} <= metric_names
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            assert b"MLflow" in response.read()
    finally:
        stop_group(server)


def test_two_trial_study_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    spec_path, out = two_trial_spec(tmp_path, "itest")
    assert main(["launch", str(spec_path)]) == 0
    printed = capsys.readouterr().out
    assert "study ui" in printed and "best config:" in printed
    assert "] 2/2 ended, best val_acc" in printed and "elapsed" in printed  # the live progress line
    assert "sweep efficiency" in printed
    # a clean report: no Tune configuration box or status tables, no MLflow INFO lines
    assert "Configuration for experiment" not in printed and "Trial status" not in printed
    assert "INFO mlflow" not in printed

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("itest")
    assert experiment is not None and experiment.artifact_location == (out / "mlartifacts").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    from tests.study.test_cross_version import monitor_takes_a_store

    # the machine while trials ran, where MLflow's monitor can be given the study's store (3.7 on)
    assert ("system/cpu_utilization_percentage" in parents[0].data.metrics) == monitor_takes_a_store()
    assert {"sweep_efficiency", "best_val_acc", "best_test_acc", "trials_total"} <= set(parents[0].data.metrics)
    assert len(children) == 2
    digests: dict[str, dict[str, str]] = {}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")] == [1, 2]
        for name in ("loss_ce", "sv_min_1", "train_loss"):
            assert len(client.get_metric_history(child.info.run_id, name)) == 2
        assert child.data.params["regularizer.name"] in ("l2", "l2sp")
        # a search selects on validation: the embedded set's own 500, training images untouched
        assert child.data.params["data.selection"] == "best_val"
        sizes = {k: child.data.params[k] for k in ("n_train", "n_val", "n_test")}
        assert sizes == {"n_train": "150", "n_val": "500", "n_test": "1000"}
        assert "test_acc" in child.data.metrics
        # what its numbers depend on beyond the config: torch, its threads, the CPU's kernels
        assert (
            child.data.tags["bss.engine"].startswith("torch ") and ", 1 threads, cpu " in child.data.tags["bss.engine"]
        )
        assert child.data.metrics["bf16"] == 0.0  # auto on a CPU: fp32 (the table's precision column)
        assert "config.yaml" in [a.path for a in client.list_artifacts(child.info.run_id)]
        assert (out / child.data.tags["trial_dir"] / "best_model.pt").is_file()
        bss_on = child.data.params["bss.enabled"] == "True"
        assert ("loss_bss" in child.data.metrics) == bss_on
        # the images of each split as MLflow datasets, once (finetune.digests)
        inputs = client.get_run(child.info.run_id).inputs.dataset_inputs
        contexts = sorted(t.value for d in inputs for t in d.tags if t.key == "mlflow.data.context")
        assert contexts == ["test", "training", "validation"]
        digests[child.data.tags["tune.trial_id"]] = {
            t.value: d.dataset.digest for d in inputs for t in d.tags if t.key == "mlflow.data.context"
        }

    tags_of = {c.data.tags["tune.trial_id"]: c.data.tags for c in children}
    table = pq.read_table(out / "trials.parquet")
    assert table.num_rows == 2 and set(table.column("status").to_pylist()) == {"finished"}
    for row in table.to_pylist():  # the table's digests are MLflow's; the same data and seed drew the same images
        assert digests[row["trial_id"]] == {
            "training": row["digest_train"], "validation": row["digest_val"], "test": row["digest_test"]
        }  # fmt: skip
    assert len(set(table.column("digest_train").to_pylist())) == 1
    assert set(table.column("mlflow_run_id").to_pylist()) == {c.info.run_id for c in children}
    # a parameter that does not apply to a trial is null
    for row in table.to_pylist():
        assert (row["param.bss.k"] is None) == (not row["param.bss.enabled"])
        assert (row["n_train"], row["n_val"], row["n_test"]) == (150, 500, 1000)
        assert row["precision"] == "fp32" and row["engine"] == tags_of[row["trial_id"]]["bss.engine"]
        assert row["ended_at"] is not None and row["ended_at"] > 1.7e9  # the time of its last result

    study = optuna.load_study(study_name="itest", storage=f"sqlite:///{out / 'optuna.db'}")
    assert len(study.trials) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)

    best = load_config(out / "best.yaml")
    assert best.optim.epochs == 2
    rerun = subprocess.run(
        [sys.executable, "-m", "study", "train", "--config", str(out / "best.yaml"), "--output", str(tmp_path / "w")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "test_acc=" in rerun.stdout and (tmp_path / "w" / "best_model.pt").is_file()

    # the best trial as an MLflow model in the model registry, loadable by mlflow.pytorch
    assert main(["export-best", str(out), "--register"]) == 0
    assert "registered: models:/itest/1" in capsys.readouterr().out
    import mlflow
    import torch

    from study.reporting import mlflow_uris

    assert "MLFLOW_TRACKING_URI" not in os.environ  # registering left the process's MLflow settings alone
    with mlflow_uris(f"sqlite:///{out / 'mlflow.db'}"):
        loaded = mlflow.pytorch.load_model("models:/itest/1")
    best_id = client.get_run(parents[0].info.run_id).data.tags["best.trial_id"]
    saved = torch.load(out / "trials" / best_id / "best_model.pt", weights_only=True)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items())
    logits, _ = loaded.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    version = MlflowClient(f"sqlite:///{out / 'mlflow.db'}").get_model_version("itest", "1")
    assert version.run_id == next(c.info.run_id for c in children if c.data.tags["tune.trial_id"] == best_id)

    # the MLflow UI, started as the README says, lists the study and its trials with their metrics
    assert_ui_lists_runs(out, parent_id=parents[0].info.run_id, children=2)

    # optuna-dashboard, started by `study dashboard`, serves the study with its metric's name
    port = free_port()
    dashboard = background([sys.executable, "-m", "study", "dashboard", str(out), "--port", str(port)])
    try:
        (served,) = [s for s in dashboard_studies(port, dashboard) if s["study_name"] == "itest"]
        assert served["directions"] == ["maximize"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{served['study_id']}", timeout=10) as r:
            detail = json.loads(r.read())
        assert detail["objective_names"] == ["best_val_acc"] and len(detail["trials"]) == 2  # not "Objective 0"
    finally:
        stop_group(dashboard)

    # the same spec again: nothing is rerun, the finished study is reported
    assert main(["launch", str(spec_path)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_every_method_inside_a_study(tmp_path: Path) -> None:
    """The six methods as a grid study; DELTA's attention is computed once for both DELTA trials."""
    cache = tmp_path / "delta-cache"
    base = tiny_base(
        optim={"epochs": 1, "steps_per_epoch": 2},
        bss={"k": 1},
        delta={"attention_epochs": 1, "attention_batches": 1, "attention_batch_size": 8, "cache_dir": str(cache)},
    )
    spec = {
        "name": "methods",
        "output_dir": str(tmp_path / "study"),
        "search_space": "methods-grid",
        "num_samples": 6,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": base,
    }
    spec_path = tmp_path / "methods.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    assert main(["launch", str(spec_path)]) == 0
    table = pq.read_table(tmp_path / "study" / "trials.parquet").to_pylist()
    combos = {(row["param.regularizer.name"], row["param.bss.enabled"]) for row in table}
    assert combos == {(m, b) for m in ("l2", "l2sp", "delta") for b in (False, True)}
    assert all(row["status"] == "finished" and row["test_acc"] is not None for row in table)
    # a grid selects nothing: no validation, every sampled image trains, the last epoch's test accuracy
    assert all((row["n_train"], row["n_val"], row["best_val_acc"]) == (150, 0, None) for row in table)
    client = MlflowClient(f"sqlite:///{tmp_path / 'study' / 'mlflow.db'}")
    children = [
        r
        for r in client.search_runs([client.get_experiment_by_name("methods").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert all(c.data.params["data.selection"] == "last" and "val_acc" not in c.data.metrics for c in children)
    best = (tmp_path / "study" / "best.yaml").read_text()
    assert "by test_acc" in best and "selection: last" in best
    assert len(list(cache.glob("*.pt"))) == 1
    # the report of a real study: one Table-2 row per method, BSS gains paired by seed
    assert main(["report", str(tmp_path / "study")]) == 0
    report = (tmp_path / "study" / "report" / "report.md").read_text()
    for method in ("l2", "l2+BSS", "l2sp", "l2sp+BSS", "delta", "delta+BSS"):
        assert f"| embedded-fashion-mnist | {method} |" in report
    # one seed: no made-up spread
    assert "(n=1, no std, no interval: fewer than 3 values)" in report and "± 0.00" not in report
    assert "| embedded-fashion-mnist | delta+BSS | 5% | " in report  # paired with delta on its seed


def test_a_task_sequence_study_logs_every_task_each_epoch_and_reports_table3(tmp_path: Path) -> None:
    """EWC + BSS on two permuted tasks through Ray, Optuna and MLflow: each trial's run has the
    accuracy of every task seen so far at every epoch, trials.parquet has the task columns, and
    the report has a Table-3 section."""
    from tests.finetune.test_incremental import sequence_base

    base = sequence_base(
        model={"mlp_hidden": [32]},
        optim={"epochs": 2, "steps_per_epoch": 3},
        ewc={"enabled": True, "lam": 10.0, "fisher_samples": 50},
        bss={"enabled": True},
    )
    spec = {
        "name": "seq",
        "output_dir": str(tmp_path / "study"),
        "search_space": "table3-small",  # two of its 40 settings
        "num_samples": 2,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": base,
    }
    spec_path = tmp_path / "seq.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    assert main(["launch", str(spec_path)]) == 0
    table = pq.read_table(tmp_path / "study" / "trials.parquet").to_pylist()
    assert all(row["status"] == "finished" and row["epoch"] == 4 and row["task"] == 2 for row in table)
    for row in table:
        assert row["test_acc"] == pytest.approx((row["task_acc_1"] + row["task_acc_2"]) / 2)
        assert row["task_learned_acc_1"] is not None and row["task_learned_acc_2"] == row["task_acc_2"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'study' / 'mlflow.db'}")
    for row in table:
        steps = {
            name: [m.step for m in client.get_metric_history(row["mlflow_run_id"], name)]
            for name in ("task_acc_1", "task_acc_2")
        }
        assert sorted(steps["task_acc_1"]) == [1, 2, 3, 4] and sorted(steps["task_acc_2"]) == [3, 4]
        params = client.get_run(row["mlflow_run_id"]).data.params
        assert params["tasks.count"] == "2" and params["model.backbone"] == "mlp"
    assert main(["report", str(tmp_path / "study")]) == 0
    report = (tmp_path / "study" / "report" / "report.md").read_text()
    assert "## Table 3 style" in report and "| task A | task B | average | A forgotten |" in report


def test_study_against_a_real_mlflow_http_server(tmp_path: Path) -> None:
    port = free_port()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{server_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(server_dir / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(uri, server)
        spec = {
            "name": "http-study",
            "output_dir": str(tmp_path / "study"),
            "num_samples": 2,
            "search_space": {  # a declarative space, with a conditional parameter
                "optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
                "bss.enabled": {"type": "categorical", "choices": [True, False]},
                "bss.k": {"type": "int", "low": 1, "high": 3, "when": {"bss.enabled": True}},
            },
            "max_concurrent": 2,
            "scheduler": {"name": "fifo"},
            "ray_num_cpus": 2,
            "tracking_uri": uri,
            "base": tiny_base(),
        }
        spec_path = tmp_path / "http.yaml"
        spec_path.write_text(yaml.safe_dump(spec))
        assert main(["launch", str(spec_path)]) == 0
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("http-study")
        assert experiment is not None and experiment.artifact_location.startswith("mlflow-artifacts:")
        runs = client.search_runs([experiment.experiment_id])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(runs) == 3 and len(children) == 2
        for child in children:
            assert child.info.status == "FINISHED"
            assert len(client.get_metric_history(child.info.run_id, "val_acc")) == 2
            assert "config.yaml" in [a.path for a in client.list_artifacts(child.info.run_id)]
        assert not (tmp_path / "study" / "mlflow.db").exists()  # everything went to the server
    finally:
        stop_group(server)


def test_the_printed_address_opens_the_runs_table_in_a_real_browser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`study ui` prints the runs table's address; headless Chromium (the system's package, driven
    by Playwright; nothing downloaded) opens it on MLflow's training runs, not its GenAI overview,
    with the study's parent run and all of its child runs counted."""
    chromium = Path("/usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser test")
    if not chromium.is_file():
        pytest.skip("no /usr/bin/chromium: apt-get install chromium to run the browser test")
    spec_path, out = two_trial_spec(tmp_path, "browse", optim={"epochs": 1})
    assert main(["launch", str(spec_path)]) == 0
    port = free_port()
    assert main(["ui", str(out), "--port", str(port), "--print-only"]) == 0
    (address,) = [line.split()[-1] for line in capsys.readouterr().out.splitlines() if "the study's runs:" in line]
    server = background([sys.executable, "-m", "study", "ui", str(out), "--port", str(port)])
    try:
        wait_for_health(f"http://127.0.0.1:{port}", server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(address)
            page.get_by_text("3 matching runs").wait_for(timeout=90_000)  # the parent and its two trials
            page.get_by_text("study-browse", exact=True).first.wait_for(timeout=30_000)  # the parent's row
            # the side nav lists the runs tab once the UI has learned the experiment has training runs
            page.get_by_text("Training runs").first.wait_for(timeout=30_000)
            text = page.inner_text("body")
            browser.close()
        assert "Training runs" in text and "Traces" in text  # the model-training runs page, under its tabs
    finally:
        stop_group(server)
