"""The driver: build the searcher, scheduler and Tuner for a spec, run or resume it, record results."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
import uuid
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

import compat
from compat import for_mlflow, for_ray
from finetune import config_to_yaml
from finetune.config import flatten
from study.record import (
    LOCK_FILE,
    PENDING_FILE,
    SPEC_FILE,
    TUNE_DIR,
    UID_ATTR,
    BoundStorage,
    StoreChoice,
    StudyFolder,
    StudyRecord,
    StudyRun,
    TrialRow,
    best_row,
    bound,
    check_stores,
    disk,
    format_table,
    guarded,
    launched_spec,
    load_optuna_study,
    mirror_driver_files,
    read_trials,
    rebase_artifacts,
    refused,
    running_driver,
    tracking_client,
    trials_table,
    trials_table_state,
    write_table,
)
from study.record.trial_config import trial_config
from study.run import warm_start
from study.run.progress import ProgressLine
from study.run.searcher import TaggedOptunaSearch, close_orphans, optuna_numbers, tell_ended
from study.run.stop_callbacks import BudgetCallback, DiskSpaceCallback
from study.run.sync import replay_pending
from study.run.trial_errors import trial_error_message
from study.run.trial_logger import MlflowTrialLogger, behind_message, trial_logger
from study.spec import StudyError, StudySpec, check_inputs, check_links, load_folder_spec, spec_to_yaml
from trainables.finetune_trial import START_EPOCH, finetune_trial
from trainables.layout import BEST_WEIGHTS
from trainables.storage import StorageError, is_remote
from trainables.trial_store import TrialStore

PACKAGES = ("torch", "torchvision", "ray", "optuna", "mlflow", "pyarrow", "bss-study")
TRAINABLE = finetune_trial  # tests wrap it to inject faults
BOOKKEEPING = (LOCK_FILE, PENDING_FILE)  # files of the driver's that do not make a folder a study
TRACKING_WAIT_ENV = "BSS_STUDY_TRACKING_WAIT_S"  # how long a study's end waits for MLflow to answer


@dataclass(frozen=True)
class StudyOutcome:
    study_dir: Path
    table: pa.Table | None
    best: TrialRow | None
    best_config_path: Path | None
    parent_run_id: str | None
    already_complete: bool = False
    interrupted: bool = False
    tracking_behind: str | None = None  # why MLflow lacks part of the record (kept in the folder)
    budget_spent: str | None = None  # the study stopped at its budget (``study.record.budget``): which limit
    disk_low: str | None = None  # the study stopped before its disk was full (``study.record.disk``): the one line

    @classmethod
    def complete(cls, folder: StudyFolder) -> StudyOutcome:
        """A study that had finished before this command: its table, nothing run."""
        return cls(folder.path, read_trials(folder), None, folder.best_file, None, already_complete=True)

    @property
    def all_failed(self) -> bool:
        rows = self.table.to_pylist() if self.table is not None else []
        return bool(rows) and all(r["status"] == "failed" for r in rows)


def _same_spec(spec: StudySpec, folder: Path) -> bool:
    """Whether the folder's spec.yaml, read by this version (its defaults and resolved fields
    filled in), is ``spec``: a folder written by an older version lacks fields added since."""
    try:
        return load_folder_spec(folder) == spec
    except StudyError:
        return False


def check_study_dir(spec: StudySpec, locked: bool = False) -> bool:
    """True if the folder already holds this very study, finished; raise if it holds anything else
    (also a live driver's study; ``locked``: this process holds the lock)."""
    folder = spec.study_dir
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise StudyError(f"output_dir: {folder} is a file; choose a folder path")
    holder = None if locked else running_driver(folder)
    if holder is not None:
        raise refused(holder, "output_dir")
    spec_file = folder / SPEC_FILE
    if not spec_file.is_file():
        if any(p.name not in BOOKKEEPING for p in folder.iterdir()):
            raise StudyError(f"output_dir: {folder} is not empty and holds no study; choose another output_dir")
        return False
    if spec_file.read_text() != spec_to_yaml(spec) and not _same_spec(spec, folder):
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


def start_record(spec: StudySpec, choice: StoreChoice, seed: warm_start.Seed | None = None) -> StudyRecord:
    """Create the study folder, the MLflow experiment and parent run, and the Optuna study (on a
    shared database, one of this name must not exist yet) with the trials of its warm start;
    write spec.yaml and study.json."""
    import optuna

    seed = seed if seed is not None else warm_start.seed_trials(spec)
    params = {k: v for k, v in flatten(spec.__dict__).items() if not k.startswith("base.")}
    texts = {SPEC_FILE: spec_to_yaml(spec)}
    if spec.warm_start.source is not None:
        warm_start.record(seed, params, texts)
    folder = StudyFolder(spec.study_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.spec_file.write_text(texts[SPEC_FILE])
    stores = choice.open(folder.path)
    experiment_id, parent = StudyRun.create(
        MlflowClient(stores.tracking_uri),
        spec.name,
        folder.path,
        folder.artifacts_dir,
        tags={**package_versions(), "search_space": spec.space.description[:5000]},
        params={**params, **{f"base.{k}": v for k, v in flatten(spec.base).items()}},
        texts=texts,
    )
    uid = uuid.uuid4().hex
    storage = f"{spec.storage.rstrip('/')}/{spec.name}-{uid[:8]}" if spec.storage else None
    record = StudyRecord(choice.tracking, experiment_id, parent.run_id, choice.optuna, uid, storage)
    optuna_storage = stores.optuna_storage()
    try:
        study = optuna.create_study(study_name=spec.name, storage=optuna_storage, direction="maximize")  # type: ignore[arg-type]
    except optuna.exceptions.DuplicatedStudyError:
        if stores.optuna_local:  # the folder's own file, from a start killed before its record was written
            study = optuna.load_study(study_name=spec.name, storage=optuna_storage)  # type: ignore[arg-type]
        else:
            parent.set_status("KILLED")
            raise StudyError(
                f"optuna_storage: {stores.shown('optuna')} already holds a study named {spec.name!r}; "
                "give this study another name (or resume the folder that holds it)"
            ) from None
    if not warm_start.taken_counts(study.get_trials(deepcopy=False)):  # not again after a killed start
        warm_start.add_to(study, seed)
    study.set_user_attr(UID_ATTR, record.uid)
    study.set_user_attr("bss_study.dir", str(folder.path))
    record.save(folder)
    keep_copy(folder, None)  # a study whose trials are in a bucket keeps its driver files there too
    return record


def _trainable(spec: StudySpec) -> Any:
    trials_root = StudyFolder(spec.study_dir).trials_location()  # a URI when the trials are in a bucket
    return tune.with_resources(
        tune.with_parameters(TRAINABLE, base=spec.base, trials_root=trials_root),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )


def build_tuner(spec: StudySpec, record: StudyRecord) -> tune.Tuner:
    """The Tuner of a new study; call it with the study bound (``_fit`` does)."""
    max_epochs = spec.base_config.total_epochs
    searcher = TaggedOptunaSearch(
        space=spec.space.define,
        metric=str(spec.metric),
        mode="max",
        study_name=spec.name,
        storage=BoundStorage(record.parent_run_id),
        sampler=spec.space.sampler(spec.seed),
        max_epochs=max_epochs,
        key=record.parent_run_id,
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
            storage_path=record.storage or str(spec.study_dir),
            callbacks=[
                trial_logger(spec, record),
                ProgressLine(spec.num_samples, str(spec.metric)),
                BudgetCallback(record.parent_run_id),
                DiskSpaceCallback(record.parent_run_id),
            ],
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
    """What MLflow loggers pickled by older versions hold; kept so that their state unpickles
    (the logger now asks the searcher and the storage itself)."""

    def __init__(self, storage_url: str, study_name: str) -> None:
        self.storage_url, self.study_name = storage_url, study_name


def trial_rows(
    trials: list[Trial], runs: dict[str, str], numbers: dict[str, int], max_epochs: int, folder: StudyFolder
) -> list[TrialRow]:
    rows = []
    store_of = folder.trial_stores()
    for trial in trials:
        failed = trial.status == Trial.ERROR
        last = dict(trial.last_result or {})
        store = store_of(trial.trial_id)
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
                trial_dir=trial_dir_of(folder, store),
                has_weights=store.has_weights(),
            )
        )
    return rows


def trial_dir_of(folder: StudyFolder, store: TrialStore) -> str | None:
    """The table's ``trial_dir``: relative to the folder (it can move), or the trial's URI in a bucket;
    None for a trial that wrote nothing."""
    if store.location.remote:
        return store.location.root if store.files.names() else None
    return folder.relative(store.folder) if store.folder.is_dir() else None


def tune_trials(results: tune.ResultGrid) -> list[Trial]:
    """Every Tune trial of a finished or interrupted ``fit`` (status, failures, error files, last
    result). Ray's public ResultGrid has Results, not Trials (``for_ray.tune_result_trials``)."""
    return for_ray.tune_result_trials(results)


def _fit(spec: StudySpec, record: StudyRecord, make_tuner: Any, out: IO[str] | None) -> StudyOutcome:
    """Build the tuner and run it with the study bound; write the results if every trial ended,
    else leave the study resumable. What MLflow does not take stays in the folder (the outbox)."""
    folder = StudyFolder(spec.study_dir)
    stores = record.stores(folder)
    started = time.monotonic()
    wait_s = float(os.environ.get(TRACKING_WAIT_ENV, "60"))
    with bound(record.parent_run_id, folder.path, stores):
        with (
            guarded(record.parent_run_id, folder.path, spec.budget) as guard,
            disk.guarded(record.parent_run_id, folder.path, spec.max_concurrent) as disk_guard,
        ):
            trials = _tune(spec, record, make_tuner, wait_s)
        keep_copy(folder, out)  # the budget ledger as this run leaves it, beside the trials in a bucket
        logger = trial_logger(spec, record)  # the driver's own: it replays what Tune's copy kept
        logger.drain(0.0)
        runs = logger.child_runs()
        # stopped for space: a trial the full disk failed is retried by `study resume`, so not ended
        if disk_guard.stop_requested or len(trials) != spec.num_samples or not all(ended(t) for t in trials):
            # the interrupted trials' runs are continued by `study resume`
            logger.killed([t.trial_id for t in trials if not ended(t)])
            behind = None if logger.drain(min(wait_s, 10.0)) else behind_message(logger, stores.shown())
            return StudyOutcome(
                folder.path,
                None,
                None,
                None,
                record.parent_run_id,
                interrupted=True,
                tracking_behind=behind,
                budget_spent=guard.reason if guard.stop_requested else None,
                disk_low=disk_guard.reason if disk_guard.stop_requested else None,
            )
        logger.settle(trials, out)
        optuna_storage = stores.optuna_storage()
        ends = {
            t.trial_id: ("failed" if t.status == Trial.ERROR else "complete", dict(t.last_result or {})) for t in trials
        }
        tell_ended(optuna_storage, spec.name, ends, str(spec.metric), spec.base_config.total_epochs)
        close_orphans(optuna_storage, spec.name, {t.trial_id for t in trials})
        numbers = optuna_numbers(optuna_storage, spec.name)
        rows = trial_rows(trials, runs, numbers, spec.base_config.total_epochs, folder)
        report_efficiency(rows, time.monotonic() - started, spec.max_concurrent, logger, out)
        outcome = write_results(spec, rows, logger, out)
        if logger.drain(wait_s):
            return outcome
        return StudyOutcome(**{**outcome.__dict__, "tracking_behind": behind_message(logger, stores.shown())})


def keep_copy(folder: StudyFolder, out: IO[str] | None) -> None:
    """The driver's files copied to the study's bucket again (no-op for a study in its folder); a
    bucket that does not answer now is said in one line, never fails the study (the copy of the
    launch stays)."""
    try:
        mirror_driver_files(folder)
    except StorageError as exc:
        print(f"warning: the driver's files were not copied to the bucket ({exc})", file=out or sys.stderr)


def _tune(spec: StudySpec, record: StudyRecord, make_tuner: Any, wait_s: float) -> list[Trial]:
    """Run the tuner with the machine's system metrics on the parent run; a driver stopped mid-way
    (SIGINT, an error) marks the parent run KILLED before the stop goes on."""
    monitor = system_metrics(record.parent_run_id, record.stores(StudyFolder(spec.study_dir)).tracking_uri)
    try:
        return tune_trials(make_tuner().fit())
    except BaseException:
        ending = trial_logger(spec, record)
        ending.killed([])
        ending.drain(min(wait_s, 5.0))
        raise
    finally:
        if monitor is not None:
            monitor.finish()


def report_efficiency(
    rows: list[TrialRow], wall: float, slots: int, logger: MlflowTrialLogger, out: IO[str] | None
) -> None:
    efficiency = sweep_efficiency(rows, wall, slots)
    if efficiency is None:
        return
    value, overhead = efficiency
    logger.parent_metrics({"sweep_efficiency": value, "overhead_per_trial_s": overhead})
    print(
        f"sweep efficiency {value:.3f} (trial time / (wall time x {slots} slots)); overhead {overhead:.2f} s per trial",
        file=out or sys.stdout,
    )


def system_metrics(parent_run_id: str, tracking_uri: str) -> Any:
    """MLflow's system metrics (CPU, memory, disk, network, GPUs) of the driver's machine on the
    parent run while trials run: on a local study, the machine the trials run on. None without psutil."""
    try:
        monitor = for_mlflow.system_metrics_monitor(parent_run_id, tracking_uri)
    except compat.CompatError as exc:  # the study goes on without them
        print(f"[study] no system metrics on the parent run: {exc}", file=sys.stderr)
        return None
    monitor.start()
    return monitor


def sweep_efficiency(rows: list[TrialRow], wall: float, slots: int) -> tuple[float, float] | None:
    """(sum of the trials' own time / (wall x slots), the rest per trial). None when a trial was
    restarted (a resumed or retried run: the wall time does not cover its earlier time)."""
    busy = [float(r.metrics.get("time_total_s", 0.0)) for r in rows]
    restarted = any(r.retries or r.metrics.get(START_EPOCH) for r in rows)
    if not rows or wall <= 0 or restarted:
        return None
    return sum(busy) / (wall * slots), max(0.0, wall * slots - sum(busy)) / len(rows)


def write_results(
    spec: StudySpec, rows: list[TrialRow], logger: MlflowTrialLogger, out: IO[str] | None
) -> StudyOutcome:
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
            f"weights: {weights}{'' if is_remote(weights) else ' (in the study folder)'}\n"
            + config_to_yaml(
                trial_config(folder.trial_path(best.trial_dir) if best.trial_dir else None, best.params, spec.base)
            )
        )
        logger.parent_file(folder.relative(best_path))
        values = {
            name: float(best.metrics[key])
            for name, key in (("best_val_acc", "best_val_acc"), ("best_test_acc", "test_acc"))
            if best.metrics.get(key) is not None
        }
        logger.parent_metrics(
            values, tags={"best.trial_id": best.trial_id, "best.mlflow_run_id": best.mlflow_run_id or ""}
        )
    write_table(table, folder.trials_file)  # last: its presence marks the study complete
    logger.parent_file(folder.relative(folder.trials_file))
    failed = sum(1 for r in rows if r.status == "failed")
    logger.parent_metrics({"trials_failed": failed, "trials_total": len(rows)})
    logger.parent_status(RunStatus.to_string(RunStatus.FAILED if failed == len(rows) else RunStatus.FINISHED))
    print(format_table(table), file=out or sys.stdout)
    return StudyOutcome(folder.path, table, best, best_path, logger.parent_run_id)


def run_study(
    spec: StudySpec, choice: StoreChoice, out: IO[str] | None = None, seed: warm_start.Seed | None = None
) -> StudyOutcome:
    """Run a validated spec to the end with the stores ``choice`` names (``seed``: its warm start,
    read before Ray started). Ray must already be initialised and the study's lock held (the CLI
    does both)."""
    folder = StudyFolder(spec.study_dir)
    if check_study_dir(spec, locked=True):
        return StudyOutcome.complete(folder)
    record = start_record(spec, choice, seed)
    if record.storage:
        print(
            f"trials in:   {record.storage}  (on a new machine: study resume DIR --from {record.storage})",
            file=out or sys.stdout, flush=True,
        )  # fmt: skip
    return _fit(spec, record, lambda: build_tuner(spec, record), out)


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
    spec = launched_spec(folder.path)
    check_links(folder.path, "STUDY_DIR")  # nothing it writes may land outside it
    table_state = trials_table_state(folder)
    if table_state == "ok":
        return Resumable(folder, spec, table_state, None)
    record = StudyRecord.load(folder)
    stores = record.stores(folder)
    check_stores(stores)
    tracking_client(folder, record)
    load_optuna_study(folder, record, spec.name)  # the searcher's history must be there
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
    if folder.path.joinpath(PENDING_FILE).is_file():  # what MLflow missed last time comes first
        with bound(record.parent_run_id, folder.path, record.stores(folder)):
            replay_pending(spec, record, out)
    if table_state == "damaged":
        folder.trials_file.replace(folder.path / f"{folder.trials_file.name}.damaged")
    parent.set_status(RunStatus.to_string(RunStatus.RUNNING))
    tune_dir = f"{record.storage}/{TUNE_DIR}" if record.storage else str(folder.tune_dir)
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
