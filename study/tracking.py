"""MLflow: one parent run per study, one child run per trial, all written from the driver.

The driver is the only writer (a single SQLite writer, no lock contention between trials),
and the trial -> run mapping is explicit, so a later resume can continue a trial's own run.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray import cloudpickle
from ray.exceptions import RayTaskError
from ray.tune import Callback
from ray.tune.experiment import Trial

from finetune import config_to_yaml, resolve_config
from finetune.config import applicable_params
from study.errors import StudyError
from study.folder import absolute_sqlite

MAX_PARAM_LENGTH = 6000
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
NOT_METRICS = {
    *("epoch", "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "done"),
    *("replayed", "start_epoch"),  # bookkeeping of restarted trials
}
SIZE_PARAMS = ("n_train", "n_val", "n_test")  # reported by the trial, logged as params


def git_commit() -> str | None:
    """The commit of the code that runs the study (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def source_tags() -> dict[str, str]:
    """MLflow's own source tags (``mlflow.source.git.commit``, shown in the UI's run overview)."""
    commit = git_commit()
    return {MLFLOW_GIT_COMMIT: commit} if commit else {}


def is_remote(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def open_experiment(client: MlflowClient, name: str, artifact_root: Path) -> str:
    """The experiment's id, creating it if needed: with an absolute local artifact location for a
    local store, with the server's own (proxied) artifact store for an HTTP tracking server."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    location = None if is_remote(client.tracking_uri) else artifact_root.resolve().as_uri()
    # the kind tag makes MLflow 3's UI open the experiment as model training (runs, metrics, charts)
    tags = {EXPERIMENT_KIND_TAG: "custom_model_development"}
    return str(client.create_experiment(name, artifact_location=location, tags=tags))


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before Ray starts, on an HTTP tracking server that does not answer."""
    if not is_remote(tracking_uri):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (OSError, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise StudyError(f"tracking_uri: {tracking_uri} does not answer ({problem}); start the server or fix the URI")


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in values.items()]


def log_params(client: MlflowClient, run_id: str, values: Mapping[str, Any]) -> None:
    params = _params(values)
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])


class StudyRun:
    """The study's parent run: every MLflow write of the driver that is not a trial's own goes
    through here (the trials' child runs through :class:`MlflowTrialLogger`)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    @classmethod
    def create(
        cls,
        client: MlflowClient,
        name: str,
        study_dir: Path,
        artifact_root: Path,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        texts: Mapping[str, str],
    ) -> tuple[str, StudyRun]:
        """(experiment id, the new parent run). A parent run of this folder left by a start that
        was killed before its record was written is deleted first."""
        experiment_id = open_experiment(client, name, artifact_root)
        for stale in client.search_runs([experiment_id], filter_string=f"tags.`study.dir` = '{study_dir}'"):
            client.delete_run(stale.info.run_id)
        all_tags = {MLFLOW_RUN_NAME: f"study-{name}", "study.dir": str(study_dir), **source_tags(), **tags}
        run_id = client.create_run(experiment_id, run_name=f"study-{name}", tags=all_tags).info.run_id
        log_params(client, run_id, params)
        for path, text in texts.items():
            client.log_text(run_id, text, path)
        return experiment_id, cls(client, run_id)

    def set_status(self, status: str) -> None:
        """RUNNING (resumed), KILLED (interrupted: resumable) or FINISHED / FAILED."""
        if status == RunStatus.to_string(RunStatus.RUNNING):
            self.client.update_run(self.run_id, status=status)
        else:
            self.client.set_terminated(self.run_id, status)

    def interrupted(self, trial_runs: list[str]) -> None:
        """The runs of interrupted trials and the parent run KILLED; `study resume` continues them."""
        for run_id in trial_runs:
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        self.set_status(RunStatus.to_string(RunStatus.KILLED))

    def run_status(self, run_id: str) -> str:
        return str(self.client.get_run(run_id).info.status)

    def log_metrics(self, values: Mapping[str, float], tags: Mapping[str, str] | None = None) -> None:
        metrics = [Metric(k, float(v), 0, 0) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in (tags or {}).items()])

    def log_file(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, failed: int, total: int) -> None:
        """The trial counts; FAILED when every trial failed, else FINISHED."""
        self.log_metrics({"trials_failed": failed, "trials_total": total})
        self.set_status(RunStatus.to_string(RunStatus.FAILED if failed == total else RunStatus.FINISHED))


class MlflowTrialLogger(Callback):
    """Tune callback (runs in the driver): a child run per trial under ``parent_run_id``.

    Params: the trial's resolved config, flattened. Artifact: ``config.yaml``. Metrics: every
    numeric result per epoch (step = epoch); the split sizes ``n_train``/``n_val``/``n_test`` as
    params. Status: FINISHED (tagged ``early_stopped`` when the
    scheduler stopped it) or FAILED with the error message as a tag.

    Restore-aware: the trial -> run link is the run's ``tune.trial_id`` tag, looked up in MLflow,
    so a resumed study continues each trial's own run instead of opening a second one. A Tune
    trial that took over the Optuna trial of one lost with a killed driver (see
    ``study.searcher``) takes over its run too (found by ``optuna.trial_number``). An epoch is
    logged once: a restarted trial repeats the epoch it continues from, and epochs the run
    already has are skipped (a resumed engine recomputes them exactly). The client is not
    pickled with Tune's experiment state; it is re-created from the URI.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        base: Mapping[str, Any],
        max_epochs: int,
        optuna_number: Callable[[str], int | None] = lambda _trial_id: None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.base = dict(base)
        self.max_epochs = max_epochs
        self.optuna_number = optuna_number
        self.source = source_tags()  # on the driver, once: every trial runs the driver's code
        self._client: MlflowClient | None = None
        self._run_ids: dict[str, str] = {}
        self._last_step: dict[str, int] = {}
        self._sized: set[str] = set()  # runs whose split sizes this process has logged

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_run_ids"] = {}
        state["_last_step"] = {}
        state["_sized"] = set()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a study interrupted under an older version is resumed with this one: new fields get defaults
        self.__dict__.update({"_last_step": {}, "_sized": set(), "source": {}, **state})

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(absolute_sqlite(self.tracking_uri))
        return self._client

    def _children(self) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
                max_results=50000,
            )
        )

    def child_runs(self) -> dict[str, str]:
        """Tune trial id -> MLflow run id, for every child run of the study's parent run."""
        return {r.data.tags["tune.trial_id"]: r.info.run_id for r in self._children() if "tune.trial_id" in r.data.tags}

    def _adopt(self, trial_id: str, number: int | None) -> str | None:
        """The run of the lost Tune trial whose Optuna trial this one took over, relinked to it."""
        if number is None:
            return None
        for run in self._children():
            tags = run.data.tags
            if tags.get("optuna.trial_number") == str(number) and tags.get("tune.trial_id") != trial_id:
                previous = tags.get("tune.trial_id", "")
                relink = {"tune.trial_id": trial_id, "tune.previous_trial_id": previous}
                relink["trial_dir"] = f"trials/{trial_id}"
                self.client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in relink.items()])
                self._run_ids[trial_id] = run.info.run_id
                return str(run.info.run_id)
        return None

    def remove_orphans(self, trial_ids: set[str]) -> list[str]:
        """Delete (MLflow's soft delete: ``mlflow gc`` or the UI can restore them) child runs of
        Tune trials that no longer exist, lost with a killed driver before Tune recorded them and
        not taken over; tagged ``orphaned`` first. Returns their run ids."""
        removed = []
        for run in self._children():
            if run.data.tags.get("tune.trial_id") not in trial_ids:
                self.client.log_batch(run.info.run_id, tags=[RunTag("orphaned", "true")])
                self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
                self.client.delete_run(run.info.run_id)
                removed.append(run.info.run_id)
        return removed

    def last_logged_step(self, run_id: str) -> int:
        if run_id not in self._last_step:
            history = self.client.get_metric_history(run_id, "train_loss")
            self._last_step[run_id] = max((m.step for m in history), default=0)
        return self._last_step[run_id]

    def run_id(self, trial_id: str) -> str | None:
        if trial_id not in self._run_ids:
            self._run_ids.update(self.child_runs())
        return self._run_ids.get(trial_id)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        number = self.optuna_number(trial.trial_id)
        existing = self.run_id(trial.trial_id) or self._adopt(trial.trial_id, number)
        if existing is not None:  # a resumed or retried trial continues its own run
            self.client.update_run(existing, status=RunStatus.to_string(RunStatus.RUNNING))
            return
        config = resolve_config(self.base, trial.config)
        tags = {
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            "tune.trial_id": trial.trial_id,
            "trial_dir": f"trials/{trial.trial_id}",
            "searched": ",".join(sorted(trial.config)),
            **self.source,
        }
        if number is not None:
            tags["optuna.trial_number"] = str(number)
        tags.update((tag.key, tag.value) for tag in failure_tags(trial))  # failed before it ever started
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.trial_id}", tags=tags)
        run_id = run.info.run_id
        self._run_ids[trial.trial_id] = run_id
        log_params(self.client, run_id, applicable_params(config))
        self.client.log_text(run_id, config_to_yaml(config), "config.yaml")

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        run_id = self.run_id(trial.trial_id)
        if run_id is None:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        if step <= self.last_logged_step(run_id):
            return  # an epoch this run has already (repeated by a restarted trial)
        self._last_step[run_id] = step
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in result.items()
            if k not in NOT_METRICS and k not in SIZE_PARAMS and isinstance(v, int | float) and not isinstance(v, bool)
        ]
        sizes = {k: int(result[k]) for k in SIZE_PARAMS if k in result} if run_id not in self._sized else {}
        self.client.log_batch(run_id, metrics=metrics, params=_params(sizes))
        self._sized.add(run_id)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.close(trial.trial_id, failed=False, epochs=int((trial.last_result or {}).get("epoch", 0)))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.close(trial.trial_id, failed=True, error=trial_error_message(trial))

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """A failed trial that Tune retries: its run records how often and why (a trial that failed
        before it ever started has no run yet; ``on_trial_start`` creates it with these tags)."""
        run_id = self.run_id(trial.trial_id)
        if run_id is not None:
            self.client.log_batch(run_id, tags=failure_tags(trial))

    def close(self, trial_id: str, failed: bool, epochs: int = 0, error: str = "") -> None:
        """Set a trial's run to its final status (FINISHED or FAILED with the error)."""
        run_id = self.run_id(trial_id)
        if run_id is None:
            return
        if failed:
            self.client.log_batch(run_id, tags=[RunTag("error", error[:5000])])
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        else:
            self.client.log_batch(run_id, tags=[RunTag("early_stopped", str(epochs < self.max_epochs).lower())])
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))


def failure_tags(trial: Trial) -> list[RunTag]:
    """``retries`` and ``last_failure`` of a trial that Tune has retried; none for the others."""
    if trial.num_failures == 0:
        return []
    return [RunTag("retries", str(trial.num_failures)), RunTag("last_failure", trial_error_message(trial)[:5000])]


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def failure_reason(text: str) -> str:
    """The reason of the last failure in a Tune error file: the last ``SomeError: ...`` line of
    its last ``Failure # N`` block, else that block's first line."""
    blocks = re.split(r"^Failure # \d+.*$", text, flags=re.MULTILINE)
    lines = [line.strip() for line in blocks[-1].splitlines() if line.strip()]
    if not lines:
        return ""
    exceptions = [line for line in lines if EXCEPTION_LINE.match(line)]
    return exceptions[-1] if exceptions else lines[0]


def trial_error_message(trial: Trial) -> str:
    """The reason of the trial's last failure, or a placeholder when Ray kept none. An error
    raised by Ray itself (a dead actor or node) is named by its type."""
    path = trial.error_file
    reason = failure_reason(Path(path).read_text(errors="replace")) if path and Path(path).is_file() else ""
    if not reason:
        return "trial failed; Ray kept no error file"
    kind = ray_error_type(trial)
    return reason if kind is None or kind in reason else f"{kind}: {reason}"


def ray_error_type(trial: Trial) -> str | None:
    """The class name of a Ray-side failure (``ActorDiedError``, ``NodeDiedError``...), from the
    error Tune pickled next to the text; None for errors raised inside the trainable."""
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as handle:
            error = cloudpickle.load(handle)
    except Exception:  # an unreadable pickle only loses the type name, never the study
        return None
    return None if isinstance(error, RayTaskError) else type(error).__name__


class ProgressLine(Callback):
    """The study's progress, one line whenever a trial ends (in place of Tune's status tables):
    a bar of trials ended out of requested (also those ended before a resume), the best value of
    the selection metric so far, elapsed time and an estimate of what is left."""

    def __init__(self, requested: int, metric: str = "best_val_acc") -> None:
        self.requested = requested
        self.metric = metric
        self.best: float | None = None
        self.ended: set[str] = set()  # ended while this driver ran
        self.started_here: set[str] = set()
        self.started = time.monotonic()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tune pickles its callbacks: one saved by an older version lacks the newer fields
        self.__dict__.update({"ended": set(), "started_here": set(), "started": time.monotonic(), **state})

    def line(self, trial_id: str, what: str, ended_before: int) -> str:
        done = ended_before + len(self.ended)
        width = 20
        filled = min(width, round(width * done / max(1, self.requested)))
        bar = "#" * filled + "." * (width - filled)
        best = f"{self.best:.4f}" if self.best is not None else "-"
        label = "val_acc" if self.metric == "best_val_acc" else self.metric
        elapsed = time.monotonic() - self.started
        left = self.requested - done
        eta = _duration(elapsed / len(self.ended) * left) if self.ended and left > 0 else "-"
        return (
            f"[study] [{bar}] {done}/{self.requested} ended, best {label} {best}, "
            f"{_duration(elapsed)} elapsed, ~{eta} left (trial {trial_id} {what})"
        )

    def _report(self, trial: Trial, what: str, trials: list[Trial] | None = None) -> None:
        self.ended.add(trial.trial_id)
        value = (trial.last_result or {}).get(self.metric)
        if isinstance(value, int | float) and (self.best is None or value > self.best):
            self.best = float(value)
        # trials a resumed study had ended before this driver started (never started here)
        ended = {t.trial_id for t in trials or [] if t.status in (Trial.TERMINATED, Trial.ERROR)}
        print(self.line(trial.trial_id, what, len(ended - self.ended - self.started_here)), flush=True)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.started_here.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._report(trial, "finished", trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._report(trial, f"failed ({trial_error_message(trial)[:120]})", trials)

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        start = "its last saved epoch"
        print(
            f"[study] trial {trial.trial_id} failed ({trial_error_message(trial)[:120]}); "
            f"retry {trial.num_failures} from {start}",
            flush=True,
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
