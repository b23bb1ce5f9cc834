"""The driver: build the searcher, scheduler and Tuner for a spec, run or resume it, record results."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import optuna
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter

from finetune import config_to_yaml, resolve_config
from finetune.config import flatten
from study.errors import StudyError
from study.results import TrialRow, best_row, format_table, trials_table, write_table
from study.searcher import TaggedOptunaSearch, optuna_numbers
from study.spec import StudySpec, load_spec, spec_to_yaml
from study.tracking import MlflowTrialLogger, ProgressLine, log_params, open_experiment, trial_error_message
from trainables import BEST_WEIGHTS, finetune_trial

SPEC_FILE = "spec.yaml"
RECORD_FILE = "study.json"
TRIALS_FILE = "trials.parquet"
BEST_FILE = "best.yaml"
TUNE_DIR = "tune"
PACKAGES = ("torch", "torchvision", "ray", "optuna", "mlflow", "pyarrow", "bss-study")
FINAL_STATES = (Trial.TERMINATED, Trial.ERROR)


@dataclass(frozen=True)
class StudyRecord:
    """What a study folder needs to be continued: where its runs and trials live."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def save(self, folder: Path) -> None:
        tmp = folder / f"{RECORD_FILE}.partial"
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(folder / RECORD_FILE)

    @classmethod
    def load(cls, folder: Path) -> StudyRecord:
        return cls(**json.loads((folder / RECORD_FILE).read_text()))


@dataclass(frozen=True)
class StudyOutcome:
    study_dir: Path
    table: pa.Table | None
    best: TrialRow | None
    best_config_path: Path | None
    parent_run_id: str | None
    already_complete: bool = False
    interrupted: bool = False


def optuna_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'optuna.db'}"


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
    if (folder / TRIALS_FILE).is_file():
        return True
    raise StudyError(
        f"output_dir: {folder} holds an unfinished run of this study; continue it with `study resume {folder}`"
    )


def make_scheduler(spec: StudySpec, max_epochs: int) -> TrialScheduler:
    if spec.scheduler.name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs,
            grace_period=min(spec.scheduler.grace_period, max_epochs),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    if spec.scheduler.name == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=max_epochs, reduction_factor=spec.scheduler.reduction_factor
        )
    return FIFOScheduler()


def check_cluster_resources(spec: StudySpec, available: dict[str, float]) -> None:
    """A trial that asks for more than any node can give would wait PENDING forever: fail now."""
    for key, wanted in (("GPU", spec.resources.gpu), ("CPU", spec.resources.cpu)):
        have = float(available.get(key, 0.0))
        if wanted > have and not spec.ray_address:
            field = f"resources.{key.lower()}"
            raise StudyError(
                f"{field}: each trial asks for {wanted:g} {key}(s) but this Ray cluster has {have:g}; "
                f"lower {field} or run on a cluster that has them (ray_address)"
            )


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[f"version.{name}"] = "not installed"
    return versions


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def start_record(spec: StudySpec) -> StudyRecord:
    """Create the study folder, the MLflow experiment and parent run; write spec.yaml and study.json."""
    folder = spec.study_dir
    client = MlflowClient(spec.resolved_tracking_uri)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(spec_to_yaml(spec))
    experiment_id = open_experiment(client, spec.name, folder / "mlartifacts")
    tags = {MLFLOW_RUN_NAME: f"study-{spec.name}", "study.dir": str(folder), "code.version": code_version(),
            **package_versions()}  # fmt: skip
    parent_id = client.create_run(experiment_id, run_name=f"study-{spec.name}", tags=tags).info.run_id
    spec_values = {k: v for k, v in flatten(spec.__dict__).items() if not k.startswith("base.")}
    log_params(client, parent_id, {**spec_values, **{f"base.{k}": v for k, v in flatten(spec.base).items()}})
    client.log_text(parent_id, spec_to_yaml(spec), SPEC_FILE)
    client.log_batch(parent_id, tags=[RunTag("search_space", spec.space.description[:5000])])
    record = StudyRecord(spec.resolved_tracking_uri, experiment_id, parent_id)
    record.save(folder)
    return record


def _trainable(spec: StudySpec) -> Any:
    return tune.with_resources(
        tune.with_parameters(finetune_trial, base=spec.base), {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )


def build_tuner(spec: StudySpec, record: StudyRecord) -> tune.Tuner:
    folder = spec.study_dir
    max_epochs = spec.base_config.optim.epochs
    searcher = TaggedOptunaSearch(
        space=spec.space.define,
        metric=spec.metric,
        mode="max",
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(optuna_url(folder)),
        sampler=spec.space.sampler(spec.seed),
    )
    logger = MlflowTrialLogger(
        record.tracking_uri, record.experiment_id, record.parent_run_id, spec.base, max_epochs,
        OptunaNumber(optuna_url(folder), spec.name),
    )  # fmt: skip
    return tune.Tuner(
        _trainable(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent),
            scheduler=make_scheduler(spec, max_epochs),
            num_samples=spec.num_samples,
            reuse_actors=spec.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(folder),
            callbacks=[logger, ProgressLine(spec.num_samples)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            verbose=1,
        ),
    )


class OptunaNumber:
    """Picklable lookup of a Tune trial's Optuna trial number (from the Optuna storage)."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name

    def __call__(self, trial_id: str) -> int | None:
        return optuna_numbers(self.storage_url, self.study_name).get(trial_id)


def trial_rows(trials: list[Trial], runs: dict[str, str], numbers: dict[str, int], max_epochs: int) -> list[TrialRow]:
    rows = []
    for trial in trials:
        failed = trial.status == Trial.ERROR
        last = dict(trial.last_result or {})
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
                checkpoint=trial.checkpoint.path if trial.checkpoint is not None else None,
            )
        )
    return rows


def _fit(spec: StudySpec, record: StudyRecord, tuner: tune.Tuner, out: IO[str] | None) -> StudyOutcome:
    """Run the tuner; write the results if every trial ended, else leave the study resumable."""
    client = MlflowClient(record.tracking_uri)
    folder = spec.study_dir
    started = time.monotonic()
    monitor = system_metrics(record)
    try:
        results = tuner.fit()
    except BaseException:
        client.set_terminated(record.parent_run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    finally:
        if monitor is not None:
            monitor.finish()
    trials: list[Trial] = list(results._experiment_analysis.trials)
    max_epochs = spec.base_config.optim.epochs
    logger = MlflowTrialLogger(record.tracking_uri, record.experiment_id, record.parent_run_id, spec.base, max_epochs)
    runs = logger.child_runs()
    complete = len(trials) == spec.num_samples and all(t.status in FINAL_STATES for t in trials)
    if not complete:
        for trial in trials:  # the interrupted trials' runs are continued by `study resume`
            if trial.status not in FINAL_STATES and trial.trial_id in runs:
                client.set_terminated(runs[trial.trial_id], RunStatus.to_string(RunStatus.KILLED))
        client.set_terminated(record.parent_run_id, RunStatus.to_string(RunStatus.KILLED))
        return StudyOutcome(folder, None, None, None, record.parent_run_id, interrupted=True)
    for trial in trials:  # a driver killed between a trial's end and its MLflow update left it RUNNING
        run = client.get_run(runs[trial.trial_id]) if trial.trial_id in runs else None
        if run is not None and run.info.status not in ("FINISHED", "FAILED"):
            epochs = int((trial.last_result or {}).get("epoch", 0))
            logger.close(trial.trial_id, trial.status == Trial.ERROR, epochs, trial_error_message(trial))
    rows = trial_rows(trials, runs, optuna_numbers(optuna_url(folder), spec.name), max_epochs)
    efficiency = sweep_efficiency(rows, time.monotonic() - started, spec.max_concurrent)
    if efficiency is not None:
        value, overhead = efficiency
        client.log_batch(record.parent_run_id, metrics=[Metric("sweep_efficiency", value, 0, 0),
                                                        Metric("overhead_per_trial_s", overhead, 0, 0)])  # fmt: skip
        print(f"sweep efficiency {value:.3f} (trial time / (wall time x {spec.max_concurrent} slots)); "
              f"overhead {overhead:.2f} s per trial", file=out or sys.stdout)  # fmt: skip
    return write_results(spec, record, rows, out)


def system_metrics(record: StudyRecord) -> Any:
    """MLflow's system metrics (CPU, memory, disk, network, GPUs) of the driver's machine on the
    parent run while trials run: on a local study, the machine the trials run on. None without psutil."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(record.parent_run_id, resume_logging=True, tracking_uri=record.tracking_uri)
        monitor.start()
        return monitor
    except ImportError:
        return None


def sweep_efficiency(rows: list[TrialRow], wall: float, slots: int) -> tuple[float, float] | None:
    """(sum of the trials' own time / (wall x slots), the rest per trial). None for a resumed run
    (its wall time does not cover the trials' earlier time)."""
    busy = [float(r.metrics.get("time_total_s", 0.0)) for r in rows]
    if not rows or wall <= 0 or any(r.metrics.get("iterations_since_restore") != r.metrics.get("training_iteration")
                                    for r in rows):  # fmt: skip
        return None
    return sum(busy) / (wall * slots), max(0.0, wall * slots - sum(busy)) / len(rows)


def write_results(spec: StudySpec, record: StudyRecord, rows: list[TrialRow], out: IO[str] | None) -> StudyOutcome:
    client = MlflowClient(record.tracking_uri)
    folder = spec.study_dir
    parent_id = record.parent_run_id
    table = trials_table(rows)
    best = best_row(rows)
    best_path: Path | None = None
    if best is not None:
        best_path = folder / BEST_FILE
        weights = f"{best.checkpoint}/{BEST_WEIGHTS}" if best.checkpoint else "none (stopped early)"
        best_path.write_text(
            f"# best trial {best.trial_id} (val_acc {best.metrics['best_val_acc']:.4f}); weights: {weights}\n"
            + config_to_yaml(resolve_config(spec.base, best.params))
        )
        client.log_artifact(parent_id, str(best_path))
        metrics = [Metric(f"best_{k}", float(best.metrics[k]), 0, 0) for k in ("best_val_acc", "test_acc")
                   if best.metrics.get(k) is not None]  # fmt: skip
        tags = [RunTag("best.trial_id", best.trial_id), RunTag("best.mlflow_run_id", best.mlflow_run_id or "")]
        client.log_batch(parent_id, metrics=metrics, tags=tags)
    write_table(table, folder / TRIALS_FILE)  # last: its presence marks the study complete
    client.log_artifact(parent_id, str(folder / TRIALS_FILE))
    failed = sum(1 for r in rows if r.status == "failed")
    client.log_batch(parent_id, metrics=[Metric("trials_failed", float(failed), 0, 0),
                                          Metric("trials_total", float(len(rows)), 0, 0)])  # fmt: skip
    client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FINISHED))
    print(format_table(table), file=out or sys.stdout)
    return StudyOutcome(folder, table, best, best_path, parent_id)


def run_study(spec: StudySpec, out: IO[str] | None = None) -> StudyOutcome:
    """Run a validated spec to the end. Ray must already be initialised (the CLI does it)."""
    folder = spec.study_dir
    if check_study_dir(spec):
        return StudyOutcome(folder, pq.read_table(folder / TRIALS_FILE), None, folder / BEST_FILE, None, True)
    record = start_record(spec)
    return _fit(spec, record, build_tuner(spec, record), out)


def load_study_spec(folder: Path) -> StudySpec:
    """The spec a study folder was launched with (output_dir as recorded)."""
    if not (folder / SPEC_FILE).is_file() or not (folder / RECORD_FILE).is_file():
        raise StudyError(f"STUDY_DIR: {folder} holds no launched study (no {SPEC_FILE} / {RECORD_FILE})")
    return load_spec(folder / SPEC_FILE)


def resume_study(folder: Path, out: IO[str] | None = None) -> StudyOutcome:
    """Continue an interrupted study (Ctrl-C or a killed driver): unfinished trials continue from
    their last checkpoint in their own MLflow runs; the searcher continues its history."""
    spec = load_study_spec(folder)
    if (folder / TRIALS_FILE).is_file():
        return StudyOutcome(folder, pq.read_table(folder / TRIALS_FILE), None, folder / BEST_FILE, None, True)
    record = StudyRecord.load(folder)
    tune_dir = folder / TUNE_DIR
    client = MlflowClient(record.tracking_uri)
    client.update_run(record.parent_run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    if not tune.Tuner.can_restore(str(tune_dir)):
        # killed before Tune saved its first state: nothing ran yet, start the trials afresh
        return _fit(spec, record, build_tuner(spec, record), out)
    tuner = tune.Tuner.restore(str(tune_dir), trainable=_trainable(spec), resume_unfinished=True, resume_errored=True)
    return _fit(spec, record, tuner, out)
