"""The driver: build the searcher, scheduler and Tuner for a spec, run or resume it, record results."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter

from finetune import config_to_yaml, resolve_config
from finetune.config import flatten
from study.errors import StudyError
from study.folder import (
    MLFLOW_FILE,
    OPTUNA_FILE,
    SPEC_FILE,
    TUNE_DIR,
    StudyFolder,
    StudyRecord,
    load_optuna_study,
    read_trials,
    rebase_artifacts,
    tracking_client,
    trials_table_state,
)
from study.results import TrialRow, best_row, format_table, trials_table, write_table
from study.searcher import FolderStorage, TaggedOptunaSearch, close_orphans, optuna_numbers
from study.spec import StudySpec, check_inputs, spec_to_yaml
from study.tracking import (
    MlflowTrialLogger,
    ProgressLine,
    StudyRun,
    trial_error_message,
)
from trainables.finetune_trial import START_EPOCH, finetune_trial
from trainables.trial_store import BEST_WEIGHTS

PACKAGES = ("torch", "torchvision", "ray", "optuna", "mlflow", "pyarrow", "bss-study")
# URIs held by objects that Tune pickles (searcher, callbacks) are relative to the study folder,
# which is the driver's working directory while Tune runs (see ``inside``): a moved or copied
# study restores them pointing at its own files.
RELATIVE_OPTUNA_URL = f"sqlite:///{OPTUNA_FILE}"
RELATIVE_MLFLOW_URI = f"sqlite:///{MLFLOW_FILE}"
TRAINABLE = finetune_trial  # tests wrap it to inject faults


@contextmanager
def inside(folder: StudyFolder) -> Iterator[None]:
    """Run with the study folder as the working directory (restored afterwards)."""
    previous = os.getcwd()
    os.chdir(folder.path)
    try:
        yield
    finally:
        os.chdir(previous)


@dataclass(frozen=True)
class StudyOutcome:
    study_dir: Path
    table: pa.Table | None
    best: TrialRow | None
    best_config_path: Path | None
    parent_run_id: str | None
    already_complete: bool = False
    interrupted: bool = False

    @classmethod
    def complete(cls, folder: StudyFolder) -> StudyOutcome:
        """A study that had finished before this command: its table, nothing run."""
        return cls(folder.path, read_trials(folder), None, folder.best_file, None, already_complete=True)

    @property
    def all_failed(self) -> bool:
        rows = self.table.to_pylist() if self.table is not None else []
        return bool(rows) and all(r["status"] == "failed" for r in rows)


def check_study_dir(spec: StudySpec) -> bool:
    """True if the folder already holds this very study, finished; raise if it holds anything else."""
    folder = spec.study_dir
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise StudyError(f"output_dir: {folder} is a file; choose a folder path")
    spec_file = folder / SPEC_FILE
    if not spec_file.is_file():
        if any(folder.iterdir()):
            raise StudyError(f"output_dir: {folder} is not empty and holds no study; choose another output_dir")
        return False
    if spec_file.read_text() != spec_to_yaml(spec):
        raise StudyError(
            f"output_dir: {folder} already holds a different study; choose another output_dir or delete it"
        )
    if trials_table_state(StudyFolder(folder)) == "ok":
        return True
    if not StudyFolder(folder).record_file.is_file():
        return False  # killed while it was being created: nothing ran, start it again
    raise StudyError(
        f"output_dir: {folder} holds an unfinished run of this study; continue it with `study resume {folder}`"
    )


def make_scheduler(spec: StudySpec, max_epochs: int) -> TrialScheduler:
    """Schedulers count epochs (the engine's ``epoch``), not Tune's ``training_iteration``, which
    starts again at 1 whenever a trial restarts from its saved state."""
    if spec.scheduler.name == "asha":
        return ASHAScheduler(
            time_attr="epoch",
            max_t=max_epochs,
            grace_period=min(spec.scheduler.grace_period, max_epochs),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    if spec.scheduler.name == "hyperband":
        return HyperBandScheduler(time_attr="epoch", max_t=max_epochs, reduction_factor=spec.scheduler.reduction_factor)
    return FIFOScheduler()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[f"version.{name}"] = "not installed"
    return versions


def start_record(spec: StudySpec) -> StudyRecord:
    """Create the study folder, the MLflow experiment and parent run; write spec.yaml and study.json."""
    folder = StudyFolder(spec.study_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.spec_file.write_text(spec_to_yaml(spec))
    record_uri = spec.tracking_uri  # None: the folder's own mlflow.db, found from the folder
    spec_values = {k: v for k, v in flatten(spec.__dict__).items() if not k.startswith("base.")}
    experiment_id, parent = StudyRun.create(
        MlflowClient(spec.tracking_uri or folder.local_tracking_uri),
        spec.name,
        folder.path,
        folder.artifacts_dir,
        tags={**package_versions(), "search_space": spec.space.description[:5000]},
        params={**spec_values, **{f"base.{k}": v for k, v in flatten(spec.base).items()}},
        texts={SPEC_FILE: spec_to_yaml(spec)},
    )
    record = StudyRecord(record_uri, experiment_id, parent.run_id)
    record.save(folder)
    return record


def _trainable(spec: StudySpec) -> Any:
    trials_root = str(StudyFolder(spec.study_dir).trials_root)
    return tune.with_resources(
        tune.with_parameters(TRAINABLE, base=spec.base, trials_root=trials_root),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def trial_logger(spec: StudySpec, record: StudyRecord) -> MlflowTrialLogger:
    """The MLflow callback; its URIs are relative to the study folder (Tune pickles it)."""
    return MlflowTrialLogger(
        record.tracking_uri or RELATIVE_MLFLOW_URI,
        record.experiment_id,
        record.parent_run_id,
        spec.base,
        spec.base_config.total_epochs,
        OptunaNumber(RELATIVE_OPTUNA_URL, spec.name),
    )


def build_tuner(spec: StudySpec, record: StudyRecord) -> tune.Tuner:
    """The Tuner of a new study; call it inside the study folder (``inside``)."""
    max_epochs = spec.base_config.total_epochs
    searcher = TaggedOptunaSearch(
        space=spec.space.define,
        metric=str(spec.metric),
        mode="max",
        study_name=spec.name,
        storage=FolderStorage(RELATIVE_OPTUNA_URL),
        sampler=spec.space.sampler(spec.seed),
        max_epochs=max_epochs,
    )
    return tune.Tuner(
        _trainable(spec),
        tune_config=tune.TuneConfig(
            metric=str(spec.metric),
            mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent),
            scheduler=make_scheduler(spec, max_epochs),
            num_samples=spec.num_samples,
            reuse_actors=spec.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(spec.study_dir),
            callbacks=[trial_logger(spec, record), ProgressLine(spec.num_samples, str(spec.metric))],
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            verbose=0,  # the progress line reports; Tune's status tables would bury it
        ),
    )


def ended(trial: Trial) -> bool:
    """Failed for good, or ended by itself or its scheduler (Tune marks that result ``done``). A
    trial that Ctrl-C or SIGTERM stopped is TERMINATED too, but its last result is not done."""
    return trial.status == Trial.ERROR or (
        trial.status == Trial.TERMINATED and bool((trial.last_result or {}).get("done"))
    )


class OptunaNumber:
    """Picklable lookup of a Tune trial's Optuna trial number (from the Optuna storage)."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name

    def __call__(self, trial_id: str) -> int | None:
        return optuna_numbers(self.storage_url, self.study_name).get(trial_id)


def trial_rows(
    trials: list[Trial], runs: dict[str, str], numbers: dict[str, int], max_epochs: int, folder: StudyFolder
) -> list[TrialRow]:
    rows = []
    for trial in trials:
        failed = trial.status == Trial.ERROR
        last = dict(trial.last_result or {})
        store = folder.trial_store(trial.trial_id)
        rows.append(
            TrialRow(
                trial_id=trial.trial_id,
                status="failed" if failed else "finished",
                params=dict(trial.config),
                metrics=last,
                mlflow_run_id=runs.get(trial.trial_id),
                optuna_trial_number=numbers.get(trial.trial_id),
                error=trial_error_message(trial) if failed else None,
                retries=trial.num_failures - (1 if failed else 0),
                early_stopped=not failed and int(last.get("epoch", 0)) < max_epochs,
                trial_dir=folder.relative(store.folder) if store.folder.is_dir() else None,
                has_weights=store.has_weights(),
            )
        )
    return rows


def tune_trials(results: tune.ResultGrid) -> list[Trial]:
    """Every Tune trial of a finished or interrupted ``fit`` (status, failures, error files, last
    result). Ray's public ResultGrid has Results, not Trials: this is the one place that reaches
    into its private ``_experiment_analysis`` (``tests/study/test_searcher.py`` fails when Ray changes it)."""
    return list(results._experiment_analysis.trials)


def _fit(spec: StudySpec, record: StudyRecord, make_tuner: Any, out: IO[str] | None) -> StudyOutcome:
    """Build the tuner and run it inside the study folder; write the results if every trial ended,
    else leave the study resumable."""
    folder = StudyFolder(spec.study_dir)
    parent = StudyRun(tracking_client(folder, record), record.parent_run_id)
    started = time.monotonic()
    monitor = system_metrics(record, folder)
    try:
        with inside(folder):
            results = make_tuner().fit()
    except BaseException:
        parent.interrupted([])
        raise
    finally:
        if monitor is not None:
            monitor.finish()
    trials = tune_trials(results)
    max_epochs = spec.base_config.total_epochs
    logger = trial_logger(spec, record)
    with inside(folder):
        runs = logger.child_runs()
    complete = len(trials) == spec.num_samples and all(ended(t) for t in trials)
    if not complete:  # the interrupted trials' runs are continued by `study resume`
        parent.interrupted([runs[t.trial_id] for t in trials if not ended(t) and t.trial_id in runs])
        return StudyOutcome(folder.path, None, None, None, record.parent_run_id, interrupted=True)
    with inside(folder):
        for trial in trials:  # a driver killed between a trial's end and its MLflow update left it RUNNING
            status = parent.run_status(runs[trial.trial_id]) if trial.trial_id in runs else None
            if status is not None and status not in ("FINISHED", "FAILED"):
                epochs = int((trial.last_result or {}).get("epoch", 0))
                logger.close(trial.trial_id, trial.status == Trial.ERROR, epochs, trial_error_message(trial))
        logger.remove_orphans({t.trial_id for t in trials})
    close_orphans(folder.optuna_url, spec.name, {t.trial_id for t in trials})
    rows = trial_rows(trials, runs, optuna_numbers(folder.optuna_url, spec.name), max_epochs, folder)
    efficiency = sweep_efficiency(rows, time.monotonic() - started, spec.max_concurrent)
    if efficiency is not None:
        value, overhead = efficiency
        parent.log_metrics({"sweep_efficiency": value, "overhead_per_trial_s": overhead})
        print(
            f"sweep efficiency {value:.3f} (trial time / (wall time x {spec.max_concurrent} slots)); "
            f"overhead {overhead:.2f} s per trial",
            file=out or sys.stdout,
        )
    return write_results(spec, rows, parent, out)


def system_metrics(record: StudyRecord, folder: StudyFolder) -> Any:
    """MLflow's system metrics (CPU, memory, disk, network, GPUs) of the driver's machine on the
    parent run while trials run: on a local study, the machine the trials run on. None without psutil."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        uri = record.tracking_uri_in(folder)
        monitor = SystemMetricsMonitor(record.parent_run_id, resume_logging=True, tracking_uri=uri)
        monitor.start()
        return monitor
    except ImportError:
        return None


def sweep_efficiency(rows: list[TrialRow], wall: float, slots: int) -> tuple[float, float] | None:
    """(sum of the trials' own time / (wall x slots), the rest per trial). None when a trial was
    restarted (a resumed or retried run: the wall time does not cover its earlier time)."""
    busy = [float(r.metrics.get("time_total_s", 0.0)) for r in rows]
    restarted = any(r.retries or r.metrics.get(START_EPOCH) for r in rows)
    if not rows or wall <= 0 or restarted:
        return None
    return sum(busy) / (wall * slots), max(0.0, wall * slots - sum(busy)) / len(rows)


def write_results(spec: StudySpec, rows: list[TrialRow], parent: StudyRun, out: IO[str] | None) -> StudyOutcome:
    folder = StudyFolder(spec.study_dir)
    table = trials_table(rows)
    best = best_row(rows, str(spec.metric))
    best_path: Path | None = None
    if best is not None:
        best_path = folder.best_file
        weights = f"{best.trial_dir}/{BEST_WEIGHTS}" if best.has_weights else "none (stopped early)"
        best_path.write_text(
            f"# best trial {best.trial_id} by {spec.metric} ({best.metrics[str(spec.metric)]:.4f}; "
            f"selection: {spec.selection}); "
            f"weights: {weights} (in the study folder)\n" + config_to_yaml(resolve_config(spec.base, best.params))
        )
        parent.log_file(best_path)
        values = {
            name: float(best.metrics[key])
            for name, key in (("best_val_acc", "best_val_acc"), ("best_test_acc", "test_acc"))
            if best.metrics.get(key) is not None
        }
        parent.log_metrics(
            values, tags={"best.trial_id": best.trial_id, "best.mlflow_run_id": best.mlflow_run_id or ""}
        )
    write_table(table, folder.trials_file)  # last: its presence marks the study complete
    parent.log_file(folder.trials_file)
    parent.finish(sum(1 for r in rows if r.status == "failed"), len(rows))
    print(format_table(table), file=out or sys.stdout)
    return StudyOutcome(folder.path, table, best, best_path, parent.run_id)


def run_study(spec: StudySpec, out: IO[str] | None = None) -> StudyOutcome:
    """Run a validated spec to the end. Ray must already be initialised (the CLI does it)."""
    folder = StudyFolder(spec.study_dir)
    if check_study_dir(spec):
        return StudyOutcome.complete(folder)
    record = start_record(spec)
    return _fit(spec, record, lambda: build_tuner(spec, record), out)


def load_study_spec(path: Path) -> StudySpec:
    """The spec a study folder was launched with, its ``output_dir`` being this folder (wherever it
    was launched: a study folder can be moved or copied)."""
    from study.spec import load_spec

    folder = StudyFolder(path)
    folder.require_launched()
    return load_spec(folder.spec_file, output_dir=folder.path)


@dataclass(frozen=True)
class Resumable:
    """A study folder checked for ``study resume``, before Ray starts and before anything is written."""

    folder: StudyFolder
    spec: StudySpec
    table_state: str  # of trials.parquet: "ok" (already complete), "missing" or "damaged"
    record: StudyRecord | None

    @property
    def complete(self) -> bool:
        return self.table_state == "ok"


def check_resumable(path: Path) -> Resumable:
    """Every file a resume needs, each missing or damaged one a one-line StudyError."""
    folder = StudyFolder(path)
    spec = load_study_spec(folder.path)
    table_state = trials_table_state(folder)
    if table_state == "ok":
        return Resumable(folder, spec, table_state, None)
    record = StudyRecord.load(folder)
    tracking_client(folder, record)
    load_optuna_study(folder, spec.name)  # the searcher's history must be there
    check_inputs(spec)
    return Resumable(folder, spec, table_state, record)


def resume_study(checked: Resumable, out: IO[str] | None = None) -> StudyOutcome:
    """Continue an interrupted study (Ctrl-C or a killed driver) that :func:`check_resumable`
    accepted: unfinished trials continue from their last saved epoch in their own MLflow runs;
    the searcher continues its history. A study whose ``trials.parquet`` is damaged is restored
    too: its table is written again."""
    folder, spec, table_state = checked.folder, checked.spec, checked.table_state
    if checked.record is None:
        return StudyOutcome.complete(folder)
    record = checked.record
    parent = StudyRun(tracking_client(folder, record), record.parent_run_id)
    rebase_artifacts(folder, record)
    if table_state == "damaged":
        folder.trials_file.replace(folder.path / f"{folder.trials_file.name}.damaged")
    parent.set_status(RunStatus.to_string(RunStatus.RUNNING))
    tune_dir = str(folder.tune_dir)
    if not tune.Tuner.can_restore(tune_dir):
        # killed before Tune saved its first state: nothing ran yet, start the trials afresh
        return _fit(spec, record, lambda: build_tuner(spec, record), out)
    trainable = _trainable(spec)
    return _fit(
        spec,
        record,
        lambda: tune.Tuner.restore(tune_dir, trainable=trainable, resume_unfinished=True, resume_errored=True),
        out,
    )
