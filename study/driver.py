"""The driver: build the searcher, scheduler and Tuner for a spec, run it, record and export results."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
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
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from finetune import config_to_yaml, resolve_config
from finetune.config import flatten
from study.errors import StudyError
from study.results import TrialRow, best_row, format_table, trials_table, write_table
from study.spec import StudySpec, spec_to_yaml
from study.tracking import MlflowTrialLogger, log_params, open_experiment, trial_error_message
from trainables import BEST_WEIGHTS, finetune_trial

SPEC_FILE = "spec.yaml"
TRIALS_FILE = "trials.parquet"
BEST_FILE = "best.yaml"
PACKAGES = ("torch", "torchvision", "ray", "optuna", "mlflow", "pyarrow", "bss-study")


@dataclass(frozen=True)
class StudyOutcome:
    study_dir: Path
    table: pa.Table
    best: TrialRow | None
    best_config_path: Path | None
    parent_run_id: str | None
    already_complete: bool = False


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
    raise StudyError(f"output_dir: {folder} holds an unfinished run of this study; delete the folder to start again")


def make_scheduler(spec: StudySpec, max_epochs: int) -> TrialScheduler:
    if spec.scheduler.name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_epochs,
            grace_period=min(spec.scheduler.grace_period, max_epochs),
            reduction_factor=spec.scheduler.reduction_factor,
        )
    return FIFOScheduler()


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


class TrialCollector(tune.Callback):
    """Keeps every trial the Tuner ran, to build the result table from."""

    def __init__(self) -> None:
        self.trials: dict[str, Trial] = {}

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.trials[trial.trial_id] = trial


def trial_rows(trials: list[Trial], logger: MlflowTrialLogger, max_epochs: int) -> list[TrialRow]:
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
                mlflow_run_id=logger.run_ids.get(trial.trial_id),
                optuna_trial_number=logger.optuna_number(trial.trial_id),
                error=trial_error_message(trial) if failed else None,
                early_stopped=not failed and int(last.get("epoch", 0)) < max_epochs,
                checkpoint=trial.checkpoint.path if trial.checkpoint is not None else None,
            )
        )
    return rows


def run_study(spec: StudySpec, out: IO[str] | None = None) -> StudyOutcome:
    """Run a validated spec to the end. Ray must already be initialised (the CLI does it)."""
    folder = spec.study_dir
    if check_study_dir(spec):
        table = pq.read_table(folder / TRIALS_FILE)
        return StudyOutcome(folder, table, None, folder / BEST_FILE, None, already_complete=True)
    base_config = spec.base_config
    max_epochs = base_config.optim.epochs

    client = MlflowClient(spec.resolved_tracking_uri)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC_FILE).write_text(spec_to_yaml(spec))
    experiment_id = open_experiment(client, spec.name, folder / "mlartifacts")
    parent = client.create_run(
        experiment_id,
        run_name=f"study-{spec.name}",
        tags={
            MLFLOW_RUN_NAME: f"study-{spec.name}",
            "study.dir": str(folder),
            "code.version": code_version(),
            **package_versions(),
        },
    )
    parent_id = parent.info.run_id
    spec_values = {k: v for k, v in flatten(spec.__dict__).items() if not k.startswith("base.")}
    log_params(client, parent_id, {**spec_values, **{f"base.{k}": v for k, v in flatten(spec.base).items()}})
    client.log_text(parent_id, spec_to_yaml(spec), SPEC_FILE)

    searcher = OptunaSearch(
        space=spec.space.define,
        metric=spec.metric,
        mode="max",
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(f"sqlite:///{folder / 'optuna.db'}"),
        sampler=spec.space.sampler(spec.seed),
    )

    def optuna_number(trial_id: str) -> int | None:
        ot_trial = getattr(searcher, "_ot_trials", {}).get(trial_id)
        return None if ot_trial is None else int(ot_trial.number)

    logger = MlflowTrialLogger(client, experiment_id, parent_id, spec.base, max_epochs, optuna_number)
    collector = TrialCollector()
    trainable = tune.with_resources(
        tune.with_parameters(finetune_trial, base=spec.base), {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=spec.metric,
            mode="max",
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent),
            scheduler=make_scheduler(spec, max_epochs),
            num_samples=spec.num_samples,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(folder),
            callbacks=[collector, logger],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
    )
    try:
        tuner.fit()
    except BaseException:
        client.set_terminated(parent_id, RunStatus.to_string(RunStatus.KILLED))
        raise

    rows = trial_rows(list(collector.trials.values()), logger, max_epochs)
    table = trials_table(rows)
    write_table(table, folder / TRIALS_FILE)
    best = best_row(rows)
    best_path: Path | None = None
    if best is not None:
        best_config = resolve_config(spec.base, best.params)
        best_path = folder / BEST_FILE
        weights = f"{best.checkpoint}/{BEST_WEIGHTS}" if best.checkpoint else "none (stopped early)"
        best_path.write_text(
            f"# best trial {best.trial_id} (val_acc {best.metrics['best_val_acc']:.4f}); weights: {weights}\n"
            + config_to_yaml(best_config)
        )
        client.log_artifact(parent_id, str(best_path))
        client.log_batch(
            parent_id,
            metrics=[
                Metric(f"best_{k}", float(best.metrics[k]), 0, 0)
                for k in ("best_val_acc", "test_acc")
                if best.metrics.get(k) is not None
            ],
            tags=[RunTag("best.trial_id", best.trial_id), RunTag("best.mlflow_run_id", best.mlflow_run_id or "")],
        )
    client.log_artifact(parent_id, str(folder / TRIALS_FILE))
    failed = sum(1 for r in rows if r.status == "failed")
    client.log_batch(parent_id, metrics=[Metric("trials_failed", float(failed), 0, 0),
                                          Metric("trials_total", float(len(rows)), 0, 0)])  # fmt: skip
    client.set_terminated(parent_id, RunStatus.to_string(RunStatus.FINISHED))
    print(format_table(table), file=out or sys.stdout)
    return StudyOutcome(folder, table, best, best_path, parent_id)
