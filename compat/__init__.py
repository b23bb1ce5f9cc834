"""Every use of a dependency's private API, in one place.

Ray, Optuna, MLflow, torch and torchvision offer no public way to do a few things this project
needs; each such use is one function here, listed in :data:`USES` with the versions its test has
passed on (``tests/test_compat.py`` exercises every entry on the installed versions, and
``pyproject.toml``'s ranges are those versions). When an upgrade removes or changes one, the call
fails with :class:`CompatError`: one line naming the dependency, its installed version, the private
name, what it is for, and the tested range.

Nothing here imports Ray, Optuna or MLflow at import time: the pure-PyTorch core uses this module
too, and imports only what it calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Private:
    """One private name used: of ``dependency`` (its distribution name), ``name``, for ``why``;
    its test passed on ``tested``."""

    dependency: str
    name: str
    why: str
    tested: str


USES: dict[str, Private] = {
    "torch-foreach": Private(
        "torch", "torch._foreach_sub / _foreach_norm / _foreach_mul", "L2 and L2-SP in a few kernels", "2.14"
    ),
    "torchvision-file-lists": Private(
        "torchvision",
        "OxfordIIITPet._images/_labels, FGVCAircraft._image_files/_labels, StanfordCars._samples",
        "the file lists of the paper's datasets without decoding them",
        "0.29",
    ),
    "ray-result-trials": Private(
        "ray", "ResultGrid._experiment_analysis.trials", "every trial of a fit, errored ones included", "2.60"
    ),
    "ray-tune-state-file": Private(
        "ray",
        "TuneController.CKPT_FILE_TMPL and the file save_to_dir writes (trial_data of Trial.get_json_state)",
        "telling Optuna a trial's end only once Tune's saved state holds it",
        "2.60",
    ),
    "ray-optuna-search": Private(
        "ray",
        "OptunaSearch._ot_study / _ot_trials / _completed_trials / _metric / _setup_study",
        "Optuna trials tagged with their Tune trial and taken over after a killed driver",
        "2.60",
    ),
    "ray-tune-stop-signal": Private(
        "ray",
        "ray.tune.tune._setup_signal_catching (SIGUSR1 ends a run as Ctrl-C does)",
        "stopping a study at its budget with every unfinished trial resumable",
        "2.60",
    ),
    "optuna-trial-id": Private(
        "optuna", "FrozenTrial._trial_id", "reopening a RUNNING trial to tag or take it over", "5.1"
    ),
    "optuna-rdb-methods": Private(
        "optuna",
        "RDBStorage._create_new_trial / _get_best_trial_id / _get_trials / _set_trial_param",
        "retrying every call that reaches the database after a lost connection",
        "5.1",
    ),
    "mlflow-system-metrics": Private(
        "mlflow",
        "mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor",
        "the machine's system metrics on the study's parent run",
        "3.17",
    ),
    "mlflow-artifact-cache": Private(
        "mlflow",
        "mlflow.tracking._tracking_service.utils._artifact_repos_cache",
        "a moved study folder's artifacts found at their new place in the same process",
        "3.17",
    ),
}


class CompatError(RuntimeError):
    """A private API this project relies on is gone or changed in the installed version."""


def version(dependency: str) -> str:
    try:
        return metadata.version(dependency)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def broken(use: str, exc: BaseException) -> CompatError:
    """The one-line error of a private API that no longer works as ``use`` expects."""
    p = USES[use]
    return CompatError(
        f"{p.dependency} {version(p.dependency)}: {p.name} is gone or changed ({type(exc).__name__}: {exc}); "
        f"it is used for {p.why} and was tested with {p.dependency} {p.tested}.x: install that version "
        "(pyproject.toml's range)"
    )


def _guard(use: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except (AttributeError, ImportError) as exc:
        raise broken(use, exc) from None


# torch --------------------------------------------------------------------------------------


def foreach_sub(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    import torch

    return _guard("torch-foreach", lambda: list(torch._foreach_sub(list(a), list(b))))


def foreach_norm(tensors: Sequence[Any]) -> list[Any]:
    import torch

    return _guard("torch-foreach", lambda: list(torch._foreach_norm(list(tensors))))


def foreach_mul(tensors: Sequence[Any], scalar: Any) -> list[Any]:
    import torch

    return _guard("torch-foreach", lambda: list(torch._foreach_mul(list(tensors), scalar)))


# torchvision --------------------------------------------------------------------------------

_FILE_LISTS: dict[str, Callable[[Any], list[tuple[Path, int]]]] = {
    "OxfordIIITPet": lambda d: [(Path(p), int(y)) for p, y in zip(d._images, d._labels, strict=True)],
    "FGVCAircraft": lambda d: [(Path(p), int(y)) for p, y in zip(d._image_files, d._labels, strict=True)],
    "StanfordCars": lambda d: [(Path(p), int(y)) for p, y in d._samples],
}


def torchvision_file_list(dataset: Any) -> list[tuple[Path, int]]:
    """(image path, label) of every image of a torchvision dataset instance, in its own order."""
    read = _FILE_LISTS[type(dataset).__name__]
    return _guard("torchvision-file-lists", lambda: read(dataset))


# Ray ----------------------------------------------------------------------------------------


def tune_result_trials(results: Any) -> list[Any]:
    """Every Tune trial of a fit: ``ResultGrid`` lists results, not the trials (their ids, status
    and error files)."""
    return _guard("ray-result-trials", lambda: list(results._experiment_analysis.trials))


def tune_state_file(tune_dir: Path) -> tuple[Path, float] | None:
    """Tune's newest experiment state file in ``tune_dir`` and its modification time (None: none yet)."""

    def pattern() -> str:
        from ray.tune.execution.tune_controller import TuneController

        return str(TuneController.CKPT_FILE_TMPL.format("*"))

    files = _guard("ray-tune-state-file", pattern)
    try:
        found = [(p.stat().st_mtime, p) for p in tune_dir.glob(files)]
    except OSError:  # one replaced while listed: the next look sees it
        return None
    if not found:
        return None
    mtime, path = max(found)
    return path, mtime


def tune_saved_statuses(path: Path) -> dict[str, str] | None:
    """Tune trial id -> status (``TERMINATED``, ``ERROR``, ``RUNNING``...) as an experiment state
    file records them; None while it cannot be read whole (being written)."""
    import json

    try:
        entries = json.loads(path.read_text())["trial_data"]
        states = (json.loads(e[0]) if isinstance(e[0], str) else e[0] for e in entries)
        return {str(state["trial_id"]): str(state["status"]) for state in states}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def ot_study(search: Any) -> Any:
    """The Optuna study of a ``ray.tune.search.optuna.OptunaSearch`` (None before set-up)."""
    return _guard("ray-optuna-search", lambda: search._ot_study)


def ot_trials(search: Any) -> dict[str, Any]:
    """Tune trial id -> ``optuna.Trial`` of an OptunaSearch: its own dict (changes stay)."""
    trials: dict[str, Any] = _guard("ray-optuna-search", lambda: search._ot_trials)
    return trials


def completed_trials(search: Any) -> set[str]:
    done: set[str] = _guard("ray-optuna-search", lambda: search._completed_trials)
    return done


def search_metric(search: Any) -> str | None:
    return _guard("ray-optuna-search", lambda: search._metric)


def stop_tune_run() -> None:
    """End the Tune run of this (main) thread as Ctrl-C does: Tune saves its experiment state with
    the unfinished trials as they are (resumable), not marked finished as a Stopper's ``stop_all``
    leaves them. Tune catches SIGUSR1 for this while ``fit`` runs in the main thread."""
    import signal

    def check() -> None:
        from ray.tune import tune as tune_module

        if not callable(tune_module._setup_signal_catching):
            raise AttributeError("_setup_signal_catching is not a function")

    _guard("ray-tune-stop-signal", check)
    signal.raise_signal(signal.SIGUSR1)


# Optuna -------------------------------------------------------------------------------------


def frozen_trial_id(frozen: Any) -> int:
    """The storage id of an Optuna ``FrozenTrial`` (``optuna.Trial(study, id)`` reopens it)."""
    return int(_guard("optuna-trial-id", lambda: frozen._trial_id))


OPTUNA_RDB_PRIVATE = ("_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param")


def rdb_storage_method(name: str) -> Any:
    """``optuna.storages.RDBStorage``'s private method ``name`` (wrapped with retries)."""
    import optuna

    return _guard("optuna-rdb-methods", lambda: getattr(optuna.storages.RDBStorage, name))


# MLflow -------------------------------------------------------------------------------------


def system_metrics_monitor(run_id: str, tracking_uri: str) -> Any:
    """MLflow's system-metrics monitor on ``run_id`` (continuing its steps), not started."""

    def make() -> Any:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        return SystemMetricsMonitor(run_id, resume_logging=True, tracking_uri=tracking_uri)

    return _guard("mlflow-system-metrics", make)


def forget_artifact_repos(run_ids: Sequence[str]) -> None:
    """Drop MLflow's per-process cache of these runs' artifact repositories (by run id)."""

    def cache() -> dict[str, Any]:
        from mlflow.tracking._tracking_service import utils

        found: dict[str, Any] = utils._artifact_repos_cache
        return found

    repos = _guard("mlflow-artifact-cache", cache)
    for run_id in run_ids:
        repos.pop(run_id, None)
