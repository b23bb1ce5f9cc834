"""The trials' MLflow runs, written from events: one child run per trial under the study's parent.

Every write is an event (a plain dict, kept in the study folder while MLflow does not answer:
:mod:`study.record.outbox`), and applying an event twice records it once: a trial's run is found by its
``tune.trial_id`` tag before one is created, a run whose set-up (params, ``config.yaml``) was cut
short is set up again, an epoch the run already has is skipped, a status is set, not appended.
So a replay after a server outage, a resume, or ``study sync`` records every trial exactly once.

Cost per event is flat in the number of trials: the study's existing child runs are listed once
per driver (the first time a trial is looked up), every run created here is remembered, and a
run's last logged epoch is read once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from compat import for_mlflow
from finetune import config_to_yaml
from finetune.config import applicable_params
from study.record.folder import StudyFolder
from study.record.tracking import log_params, source_tags
from study.record.trial_config import trial_config

NOT_METRICS = {
    *("epoch", "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "done"),
    *("replayed", "start_epoch"),  # bookkeeping of restarted trials
}
DATA_INPUTS = "data_inputs"  # the trial's split digests (JSON; trainables.finetune_trial.DATA_INPUTS)
ENGINE = "engine"  # what its numbers depend on beyond the config (trainables.finetune_trial.ENGINE)
ENGINE_TAG = "bss.engine"
MLFLOW_DATASET_CONTEXT = "mlflow.data.context"
SIZE_PARAMS = ("n_train", "n_val", "n_test")  # reported by the trial, logged as params
SETUP_TAG = "bss.setup"  # "done" once a run has its params and config.yaml


def result_event(trial_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """A Tune result as an event: its epoch, its numeric metrics and the split sizes."""
    step = int(result.get("epoch", result.get("training_iteration", 0)))
    metrics = {
        k: float(v)
        for k, v in result.items()
        if k not in NOT_METRICS and k not in SIZE_PARAMS and isinstance(v, int | float) and not isinstance(v, bool)
    }
    sizes = {k: int(result[k]) for k in SIZE_PARAMS if k in result}
    now = int(time.time() * 1000)
    inputs = result.get(DATA_INPUTS) or ""
    event: dict[str, Any] = {
        "op": "result", "trial": trial_id, "step": step, "metrics": metrics, "sizes": sizes, "time": now
    }  # fmt: skip
    if isinstance(result.get(ENGINE), str):
        event["engine"] = result[ENGINE]
    return {**event, "inputs": inputs} if isinstance(inputs, str) and inputs else event


class RunWriter:
    """Applies events to MLflow (see the module docstring)."""

    def __init__(
        self,
        client: Callable[[], MlflowClient],
        experiment_id: str,
        parent_run_id: str,
        base: Mapping[str, Any],
        max_epochs: int,
        folder: Path,
    ) -> None:
        self._client = client
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.base, self.max_epochs, self.folder = dict(base), max_epochs, folder
        self.source = source_tags()  # on the driver, once: every trial runs the driver's code
        self.runs: dict[str, str] = {}  # Tune trial id -> run id
        self.status: dict[str, str] = {}  # run id -> its status as last written or read
        self.numbers: dict[str, tuple[str, str]] = {}  # Optuna trial number -> (run id, Tune trial id)
        self.set_up: set[str] = set()
        self.last_step: dict[str, int] = {}
        self.sized: set[str] = set()
        self.with_inputs: set[str] = set()  # runs whose datasets are logged
        self.loaded = False
        self._storage: str | bool | None = False  # study.json's ``storage``, read once (False: not yet)

    @property
    def client(self) -> MlflowClient:
        return self._client()

    def children(self) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
                max_results=50000,
            )
        )

    def load(self) -> None:
        """Every existing child run of the study, listed once."""
        if self.loaded:
            return
        for run in self.children():
            tags, run_id = run.data.tags, run.info.run_id
            if "tune.trial_id" in tags:
                self.runs.setdefault(tags["tune.trial_id"], run_id)
            if "optuna.trial_number" in tags:
                self.numbers[tags["optuna.trial_number"]] = (run_id, tags.get("tune.trial_id", ""))
            self.status.setdefault(run_id, str(run.info.status))
            if tags.get(SETUP_TAG) == "done" or (SETUP_TAG not in tags and "searched" in tags):
                self.set_up.add(run_id)  # set up (runs written before the set-up tag existed count too)
        self.loaded = True

    def run_id(self, trial_id: str) -> str | None:
        if trial_id not in self.runs:
            self.load()
        return self.runs.get(trial_id)

    def apply(self, event: Mapping[str, Any]) -> None:
        getattr(self, f"_{event['op']}")(event)

    def trial_dir(self, trial_id: str) -> str:
        """The trial's folder as its run's ``trial_dir`` tag: relative to the study folder, or its
        URI when the study keeps its trials in a bucket."""
        if self._storage is False:
            self._storage = StudyFolder(self.folder).storage
        return f"{self._storage}/trials/{trial_id}" if self._storage else f"trials/{trial_id}"

    def _trial_place(self, trial_id: str) -> Path | str:
        return StudyFolder(self.folder).trial_path(self.trial_dir(trial_id))

    def _adopt(self, trial_id: str, number: int | None) -> str | None:
        """The run of the lost Tune trial whose Optuna trial this one took over, relinked to it."""
        if number is None:
            return None
        self.load()
        found = self.numbers.get(str(number))
        if found is None or found[1] == trial_id:
            return None
        run_id, previous = found
        relink = {"tune.trial_id": trial_id, "tune.previous_trial_id": previous, "trial_dir": self.trial_dir(trial_id)}
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in relink.items()])
        self.runs.pop(previous, None)
        self.runs[trial_id] = run_id
        self.numbers[str(number)] = (run_id, trial_id)
        return run_id

    def _start(self, event: Mapping[str, Any]) -> None:
        trial_id, number = str(event["trial"]), event.get("number")
        failure = [RunTag(k, v) for k, v in (event.get("failure") or {}).items()]
        run_id = self.run_id(trial_id) or self._adopt(trial_id, number)
        config = trial_config(self._trial_place(trial_id), event["config"], self.base)
        if run_id is None:
            tags = {
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                "tune.trial_id": trial_id,
                "trial_dir": self.trial_dir(trial_id),
                "searched": ",".join(sorted(event["config"])),
                **self.source,
            }
            if number is not None:
                tags["optuna.trial_number"] = str(number)
                self.numbers[str(number)] = ("", trial_id)
            tags.update((tag.key, tag.value) for tag in failure)  # failed before it ever started
            run_id = str(
                self.client.create_run(self.experiment_id, run_name=f"trial-{trial_id}", tags=tags).info.run_id
            )
            self.runs[trial_id], self.last_step[run_id], self.status[run_id] = run_id, 0, "RUNNING"
            if number is not None:
                self.numbers[str(number)] = (run_id, trial_id)
        elif self.status.get(run_id) != "RUNNING":  # a resumed or retried trial continues its own run
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            self.status[run_id] = "RUNNING"
        if run_id not in self.set_up:  # the config first: the set-up tag goes with the last batch of params
            with for_mlflow.artifacts_of(self.client):
                self.client.log_text(run_id, config_to_yaml(config), "config.yaml")
            log_params(self.client, run_id, applicable_params(config), tags={SETUP_TAG: "done"})
            self.set_up.add(run_id)

    def last_logged_step(self, run_id: str) -> int:
        if run_id not in self.last_step:
            history = self.client.get_metric_history(run_id, "train_loss")
            self.last_step[run_id] = max((m.step for m in history), default=0)
        return self.last_step[run_id]

    def _result(self, event: Mapping[str, Any]) -> None:
        run_id = self.run_id(str(event["trial"]))
        step = int(event["step"])
        if run_id is None or step <= self.last_logged_step(run_id):
            return  # an epoch this run has already (repeated by a restarted trial, or replayed)
        metrics = [Metric(k, v, int(event["time"]), step) for k, v in event["metrics"].items()]
        sizes = {} if run_id in self.sized else dict(event.get("sizes") or {})
        tags = [RunTag(ENGINE_TAG, str(event["engine"]))] if event.get("engine") else []
        params = [Param(k, str(v)) for k, v in sizes.items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        self.last_step[run_id] = step
        self.sized.add(run_id)
        if event.get("inputs") and run_id not in self.with_inputs:
            self._log_inputs(run_id, json.loads(str(event["inputs"])))

    def _log_inputs(self, run_id: str, inputs: Mapping[str, Mapping[str, Any]]) -> None:
        """The run's training / validation / test images as MLflow datasets (name, source, digest),
        once: a run that has datasets already (a restarted trial, a resumed driver) is left as it is."""
        logged = self.client.get_run(run_id).inputs
        if logged is None or not logged.dataset_inputs:
            datasets = [
                DatasetInput(
                    Dataset(
                        str(d["name"]), str(d["digest"]), "local", json.dumps({"source": d["source"]}),
                        profile=json.dumps({"num_rows": d["rows"]}),
                    ),
                    [InputTag(MLFLOW_DATASET_CONTEXT, context)],
                )
                for context, d in inputs.items()
            ]  # fmt: skip
            self.client.log_inputs(run_id, datasets)
        self.with_inputs.add(run_id)

    def _recover(self, event: Mapping[str, Any]) -> None:
        run_id = self.run_id(str(event["trial"]))
        if run_id is not None:
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in event["tags"].items()])

    def _close(self, event: Mapping[str, Any]) -> None:
        """A trial's run to its final status (FINISHED, tagged ``early_stopped``; or FAILED with the error)."""
        run_id = self.run_id(str(event["trial"]))
        if run_id is None:
            return
        if event["failed"]:
            self.client.log_batch(run_id, tags=[RunTag("error", str(event.get("error") or "")[:5000])])
            status = RunStatus.to_string(RunStatus.FAILED)
        else:
            early = int(event.get("epochs", 0)) < self.max_epochs
            self.client.log_batch(run_id, tags=[RunTag("early_stopped", str(early).lower())])
            status = RunStatus.to_string(RunStatus.FINISHED)
        self.client.set_terminated(run_id, status)
        self.status[run_id] = status

    def _killed(self, event: Mapping[str, Any]) -> None:
        """An interrupted trial's run KILLED; ``study resume`` continues it."""
        run_id = self.run_id(str(event["trial"]))
        if run_id is not None:
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
            self.status[run_id] = "KILLED"

    def _parent_metrics(self, event: Mapping[str, Any]) -> None:
        metrics = [Metric(k, float(v), 0, 0) for k, v in event["metrics"].items()]
        tags = [RunTag(k, str(v)) for k, v in (event.get("tags") or {}).items()]
        self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)

    def _parent_file(self, event: Mapping[str, Any]) -> None:
        path = self.folder / str(event["path"])
        if path.is_file():
            with for_mlflow.artifacts_of(self.client):
                self.client.log_artifact(self.parent_run_id, str(path))

    def _parent_status(self, event: Mapping[str, Any]) -> None:
        status = str(event["status"])
        if status == "RUNNING":
            self.client.update_run(self.parent_run_id, status=status)
        else:
            self.client.set_terminated(self.parent_run_id, status)
