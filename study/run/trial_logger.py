"""The Tune callback (in the driver) that turns trial events into MLflow runs.

Params: the trial's resolved config, flattened (only the settings that act on it). Artifact:
``config.yaml``. Metrics: every numeric result per epoch (step = epoch); the split sizes
``n_train``/``n_val``/``n_test`` as params. Status: FINISHED (tagged ``early_stopped`` when the
scheduler stopped it) or FAILED with the error message as a tag.

Restore-aware: the trial -> run link is the run's ``tune.trial_id`` tag, so a resumed study
continues each trial's own run; a Tune trial that took over the Optuna trial of one lost with a
killed driver (``study.run.searcher``) takes over its run too (by ``optuna.trial_number``). Each
write goes through the study's outbox (:mod:`study.record.outbox`): a tracking server that does not
answer delays the record, never the study. Tune pickles this callback: it holds the study's key,
and finds its folder and tracking URI in the driver's binding (:mod:`study.record.live`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import IO, Any

from mlflow.entities import RunStatus, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.experiment import Trial

from study.record import PENDING_FILE, Outbox, RunWriter, StudyRecord, result_event
from study.record import live as binding
from study.run.trial_errors import failure_tags, trial_error_message
from study.spec import StudySpec


class MlflowTrialLogger(Callback):
    def __init__(
        self,
        key: str,
        experiment_id: str,
        parent_run_id: str,
        base: Mapping[str, Any],
        max_epochs: int,
        study_name: str,
        out: IO[str] | None = None,
    ) -> None:
        self.key = key
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.base, self.max_epochs, self.study_name = dict(base), max_epochs, study_name
        self.out = out
        self._writer: RunWriter | None = None
        self._outbox: Outbox | None = None
        self._client: MlflowClient | None = None
        self._stored_numbers: dict[str, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        keep = ("key", "experiment_id", "parent_run_id", "base", "max_epochs", "study_name")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # one pickled by an older version held a tracking URI: it resolves through the binding,
        # under the study's parent run id (the driver's key for it)
        name = getattr(state.get("optuna_number"), "study_name", "")
        self.__init__(  # type: ignore[misc]
            state.get("key") or state["parent_run_id"],
            state["experiment_id"],
            state["parent_run_id"],
            state.get("base", {}),
            state.get("max_epochs", 0),
            state.get("study_name", name),
        )

    @property
    def bound(self) -> binding.Binding:
        return binding.lookup(self.key)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.bound.stores.tracking_uri)
        return self._client

    @property
    def writer(self) -> RunWriter:
        if self._writer is None:
            folder = self.bound.folder
            self._writer = RunWriter(
                lambda: self.client, self.experiment_id, self.parent_run_id, self.base, self.max_epochs, folder
            )
        return self._writer

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            bound = self.bound
            self._outbox = Outbox(bound.folder / PENDING_FILE, self.writer.apply, bound.stores.shown(), self.out)
        return self._outbox

    def emit(self, event: Mapping[str, Any]) -> None:
        self.outbox.emit(event)

    def number(self, trial_id: str) -> int | None:
        """The trial's Optuna number: as the searcher suggested it here, else (a trial restored from an
        earlier driver) from the Optuna storage, read once."""
        found = self.bound.numbers.get(trial_id)
        if found is not None:
            return found
        if self._stored_numbers is None:
            from study.record import BoundStorage
            from study.run.searcher import optuna_numbers

            self._stored_numbers = optuna_numbers(BoundStorage(self.key), self.study_name) if self.study_name else {}
        return self._stored_numbers.get(trial_id)

    # Tune's callbacks
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        failure = {tag.key: tag.value for tag in failure_tags(trial)}
        event = {"op": "start", "trial": trial.trial_id, "config": dict(trial.config), "number": None}
        event.update(number=self.number(trial.trial_id), failure=failure)
        self.emit(event)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        self.emit(result_event(trial.trial_id, result))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.close(trial.trial_id, failed=False, epochs=int((trial.last_result or {}).get("epoch", 0)))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.close(trial.trial_id, failed=True, error=trial_error_message(trial))

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A failed trial that Tune retries: its run records how often and why (a trial that failed
        before it ever started has no run yet; ``on_trial_start`` creates it with these tags)."""
        tags = {tag.key: tag.value for tag in failure_tags(trial)}
        self.emit({"op": "recover", "trial": trial.trial_id, "tags": tags})

    # the driver's own writes, in the same order as the trials'
    def close(self, trial_id: str, failed: bool, epochs: int = 0, error: str = "") -> None:
        self.emit({"op": "close", "trial": trial_id, "failed": failed, "epochs": epochs, "error": error})

    def killed(self, trial_ids: list[str]) -> None:
        for trial_id in trial_ids:
            self.emit({"op": "killed", "trial": trial_id})
        self.emit({"op": "parent_status", "status": RunStatus.to_string(RunStatus.KILLED)})

    def parent_metrics(self, metrics: Mapping[str, float], tags: Mapping[str, str] | None = None) -> None:
        self.emit({"op": "parent_metrics", "metrics": dict(metrics), "tags": dict(tags or {})})

    def parent_file(self, relative_path: str) -> None:
        self.emit({"op": "parent_file", "path": relative_path})

    def parent_status(self, status: str) -> None:
        self.emit({"op": "parent_status", "status": status})

    def child_runs(self) -> dict[str, str]:
        """Tune trial id -> MLflow run id, for every child run known (listed from MLflow once)."""
        with contextlib.suppress(Exception):  # MLflow does not answer: the runs written (or kept) here
            self.writer.load()
        return dict(self.writer.runs)

    def open_runs(self) -> dict[str, str]:
        """Tune trial id -> run id of the runs not FINISHED or FAILED as far as known here (a KILLED
        run of a trial that has since ended is closed by the caller)."""
        runs = self.child_runs()
        return {t: r for t, r in runs.items() if self.writer.status.get(r) not in ("FINISHED", "FAILED")}

    def remove_orphans(self, trial_ids: set[str]) -> list[str]:
        """Delete (MLflow's soft delete: ``mlflow gc`` or the UI can restore them) child runs of
        Tune trials that no longer exist, lost with a killed driver before Tune recorded them and
        not taken over; tagged ``orphaned`` first. Returns their run ids."""
        removed = []
        for run in self.writer.children():
            if run.data.tags.get("tune.trial_id") not in trial_ids:
                self.client.log_batch(run.info.run_id, tags=[RunTag("orphaned", "true")])
                self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                self.client.delete_run(run.info.run_id)
                removed.append(run.info.run_id)
        return removed

    def settle(self, trials: list[Trial], out: IO[str] | None = None) -> None:
        """The end of every run of a study whose trials all ended: a run left RUNNING or KILLED (a
        driver killed between a trial's end and its MLflow update) is closed as its trial ended, and
        the runs of trials that no longer exist are removed (once MLflow has taken everything)."""
        open_runs = self.open_runs()
        for trial in trials:
            if trial.trial_id in open_runs:
                epochs = int((trial.last_result or {}).get("epoch", 0))
                self.close(trial.trial_id, trial.status == Trial.ERROR, epochs, trial_error_message(trial))
        if self.pending:
            return
        try:
            self.remove_orphans({t.trial_id for t in trials})
        except Exception as exc:  # MLflow went away just now: `study sync` tidies up later
            from study.record import first_line

            print(f"[study] orphaned runs not removed ({first_line(exc)})", file=out or sys.stdout)

    def drain(self, wait_s: float) -> bool:
        """Replay what MLflow has not taken yet, for up to ``wait_s`` seconds; True when all is recorded."""
        return self.outbox.drain(wait_s)

    @property
    def pending(self) -> int:
        return len(self.outbox.pending)


def trial_logger(spec: StudySpec, record: StudyRecord) -> MlflowTrialLogger:
    """The MLflow callback; it finds the study's folder and stores through the binding (Tune pickles it)."""
    return MlflowTrialLogger(
        record.parent_run_id,
        record.experiment_id,
        record.parent_run_id,
        spec.base,
        spec.base_config.total_epochs,
        spec.name,
    )


def behind_message(logger: MlflowTrialLogger, shown_uri: str) -> str:
    return (
        f"tracking_uri: {shown_uri} did not answer ({logger.outbox.failure or 'no answer'}); every trial's result "
        f"is in the study folder, and the {logger.pending} record(s) MLflow missed are kept in "
        f"{logger.outbox.path}: `study sync` replays them once it answers"
    )
