"""Crashed trials are retried from their last checkpoint; a trial that fails for good is recorded
with its reason in MLflow and the table, and the study goes on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient
from ray import cloudpickle, tune

import study.run.driver
from search_spaces import register_space
from study.cli import main
from study.run import failure_reason
from tests.conftest import tiny_base
from trainables.finetune_trial import run_trial
from trainables.trial_store import TrialStore

pytestmark = pytest.mark.slow


def run(tmp_path: Path, name: str, **spec_extra: object) -> list[dict]:
    spec = {
        "name": name,
        "output_dir": str(tmp_path / name),
        "num_samples": 2,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": tiny_base(optim={"epochs": 3, "steps_per_epoch": 2}),
        **spec_extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["launch", str(path)]) == 0
    return pq.read_table(tmp_path / name / "trials.parquet").to_pylist()


class CrashOnce:
    """Engine callback: the trial dies once, after its second epoch was saved and reported, as a
    preempted node would; ``markers`` records that it did."""

    def __init__(self, markers: str, trial_id: str) -> None:
        self.marker = Path(markers) / f"{trial_id}.crashed"

    def on_epoch_end(self, metrics: Any, trainer: Any) -> None:
        if metrics.epoch == 2 and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError(f"injected crash of trial {self.marker.stem} at epoch 2")

    def on_fit_end(self, result: Any) -> None:
        pass


def crashing_trial(params: dict[str, Any], *, base: dict[str, Any], trials_root: str) -> None:
    """The study's trainable, with a :class:`CrashOnce` (markers beside the study folder)."""
    trial_id = tune.get_context().get_trial_id()
    markers = str(Path(trials_root).parent.parent / "markers")
    run_trial(params, base, TrialStore(Path(trials_root) / trial_id), [CrashOnce(markers, trial_id)])


def test_crashed_trial_resumes_from_its_last_saved_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers get this test's code with the trial
    monkeypatch.setattr(study.run.driver, "TRAINABLE", crashing_trial)
    rows = run(tmp_path, "retry", max_failures=1)
    assert len(list(markers.glob("*.crashed"))) == 2  # both trials really crashed once
    assert all(r["status"] == "finished" and r["epoch"] == 3 and r["retries"] == 1 for r in rows)
    client = MlflowClient(f"sqlite:///{tmp_path / 'retry' / 'mlflow.db'}")
    for row in rows:
        history = client.get_metric_history(row["mlflow_run_id"], "val_acc")
        # continued from the saved epoch 2 (reported again, not logged twice): epochs 1..3 once each, one run
        assert sorted(m.step for m in history) == [1, 2, 3]
        run_info = client.get_run(row["mlflow_run_id"])
        assert run_info.info.status == "FINISHED" and run_info.data.tags["retries"] == "1"
        assert run_info.data.tags["last_failure"].startswith("RuntimeError: injected crash of trial")


@register_space("diverge-probe", "tests: one trial diverges, one trains", grid={"optim.lr": [1e12, 0.01]})
def diverge_probe(trial: optuna.Trial) -> None:
    trial.suggest_categorical("optim.lr", [1e12, 0.01])


def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    rows = run(tmp_path, "fail", search_space="diverge-probe", max_failures=0)
    by_status = {r["status"] for r in rows}
    assert by_status == {"failed", "finished"}
    failed = next(r for r in rows if r["status"] == "failed")
    assert "non-finite loss" in failed["error"] and failed["retries"] == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'fail' / 'mlflow.db'}")
    run_info = client.get_run(failed["mlflow_run_id"])
    assert run_info.info.status == "FAILED" and "non-finite loss" in run_info.data.tags["error"]


def test_a_study_whose_every_trial_failed_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = {"optim.momentum": {"type": "categorical", "choices": [0.0, 0.5]}}
    spec = {
        "name": "allfail",
        "output_dir": str(tmp_path / "allfail"),
        "num_samples": 2,
        "max_concurrent": 2,
        "max_failures": 0,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "search_space": space,
        "base": tiny_base(optim={"epochs": 2, "steps_per_epoch": 2, "lr": 1e12}),
    }
    path = tmp_path / "allfail.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["launch", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error: every trial failed (1 distinct error(s)):" in err
    assert err.count("non-finite loss") == 1  # one line per distinct error, not one per trial


def test_an_input_error_inside_a_trial_is_not_trained_again(tmp_path: Path) -> None:
    from finetune import DataError
    from trainables.finetune_trial import TrialInputError

    store = TrialStore(tmp_path / "trials" / "t1")
    base = tiny_base(data={"dataset": "imagefolder", "root": str(tmp_path / "gone")})
    with pytest.raises(DataError, match=r"data\.root"):
        run_trial({}, base, store)
    assert "data.root" in (store.fatal_error() or "")
    with pytest.raises(TrialInputError, match=r"data\.root.*\(not retried: the same input fails again\)"):
        run_trial({}, tiny_base(), store)  # the retry ends at once, without building anything


def test_failure_reason_is_the_last_failures_exception_line() -> None:
    text = (
        "Failure # 1 (occurred at 2026-11-28_01-14-02)\nray.exceptions.RayTaskError(RuntimeError): "
        'ray::finetune_trial()\n  File "x.py", line 3, in f\nRuntimeError: first\n'
        "Failure # 2 (occurred at 2026-11-28_01-14-09)\nThe actor died unexpectedly before finishing this task.\n"
        "\tclass_name: ImplicitFunc\n"
    )
    assert failure_reason(text) == "The actor died unexpectedly before finishing this task."
    assert failure_reason(text.split("Failure # 2")[0]) == "RuntimeError: first"
    assert failure_reason("") == ""


class KillWorker:
    """Engine callback: SIGKILL the trial's own worker process (as the OOM killer or a lost node
    would), once after epoch 2 for one trial (``markers``), after every epoch for the other (each
    start of it continues from its last saved epoch, trains one more, and dies)."""

    def __init__(self, markers: str, trial_id: str, always: bool) -> None:
        self.marker = Path(markers) / f"{trial_id}.killed"
        self.always = always

    def on_epoch_end(self, metrics: Any, trainer: Any) -> None:
        import os
        import signal

        if self.always:
            os.kill(os.getpid(), signal.SIGKILL)
        if not self.always and metrics.epoch == 2 and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    def on_fit_end(self, result: Any) -> None:
        pass


def killed_trial(params: dict[str, Any], *, base: dict[str, Any], trials_root: str) -> None:
    trial_id = tune.get_context().get_trial_id()
    markers = str(Path(trials_root).parent.parent / "markers")
    always = params["optim.lr"] == 0.02
    run_trial(params, base, TrialStore(Path(trials_root) / trial_id), [KillWorker(markers, trial_id, always)])


@register_space(
    "kill-probe", "tests: one trial's worker is killed once, the other's every time", grid={"optim.lr": [0.02, 0.01]}
)
def kill_probe(trial: optuna.Trial) -> None:
    trial.suggest_categorical("optim.lr", [0.02, 0.01])


def test_a_killed_worker_is_retried_from_its_state_and_one_killed_every_time_fails_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(study.run.driver, "TRAINABLE", killed_trial)
    rows = run(tmp_path, "killed", search_space="kill-probe", max_failures=1, reuse_actors=False)
    by_lr = {r["param.optim.lr"]: r for r in rows}
    retried, failed = by_lr[0.01], by_lr[0.02]
    assert len(list(markers.glob("*.killed"))) == 1  # the worker was really killed once
    assert retried["status"] == "finished" and retried["epoch"] == 3 and retried["retries"] == 1
    assert failed["status"] == "failed" and failed["retries"] == 1
    assert failed["error"].startswith("ActorDiedError: The actor died unexpectedly") and failed["epoch"] == 2
    client = MlflowClient(f"sqlite:///{tmp_path / 'killed' / 'mlflow.db'}")
    history = client.get_metric_history(retried["mlflow_run_id"], "train_loss")  # a grid: no validation split
    assert sorted(m.step for m in history) == [1, 2, 3]  # continued from epoch 2, each epoch once, one run
    failed_run = client.get_run(failed["mlflow_run_id"])
    assert failed_run.info.status == "FAILED" and "died" in failed_run.data.tags["error"].lower()
    experiment = client.get_experiment_by_name("killed")
    assert experiment is not None
    assert len([r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]) == 2
    assert main(["status", str(tmp_path / "killed")]) == 0
    assert "2/2 trials ended (failed 1, finished 1)" in capsys.readouterr().out
