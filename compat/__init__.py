"""Every use of a dependency's private API, and every signature that differs across the supported
versions, in one place.

Ray, Optuna, MLflow, torch and torchvision offer no public way to do a few things this project
needs, and a few public calls changed their arguments within the supported ranges
(:mod:`compat.supported`); each such use is one function here, listed in :data:`USES`, probed by
feature or signature rather than by version string where it can be (``tests/test_compat.py``
exercises every entry on the installed versions; ``make compat`` runs it on the oldest, newest and
mixed sets). When a version removes or changes one, the call fails with :class:`CompatError`: one
line naming the dependency, its installed version, the name, what it is for, and the supported
range; a ``TypeError`` from a changed signature included.

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
    """One private or version-dependent name used: of ``dependency`` (its distribution name),
    ``name``, for ``why``."""

    dependency: str
    name: str
    why: str


USES: dict[str, Private] = {
    "torch-foreach": Private(
        "torch", "torch._foreach_sub / _foreach_norm / _foreach_mul", "L2 and L2-SP in a few kernels"
    ),
    "torchvision-file-lists": Private(
        "torchvision",
        "OxfordIIITPet._images/_labels, FGVCAircraft._image_files/_labels, StanfordCars._samples",
        "the file lists of the paper's datasets without decoding them",
    ),
    "ray-result-trials": Private(
        "ray", "ResultGrid._experiment_analysis.trials", "every trial of a fit, errored ones included"
    ),
    "ray-tune-state-file": Private(
        "ray",
        "TuneController.CKPT_FILE_TMPL and the file save_to_dir writes (trial_data of Trial.get_json_state)",
        "telling Optuna a trial's end only once Tune's saved state holds it",
    ),
    "ray-optuna-search": Private(
        "ray",
        "OptunaSearch._ot_study / _ot_trials / _completed_trials / _metric / _setup_study",
        "Optuna trials tagged with their Tune trial and taken over after a killed driver",
    ),
    "ray-tune-stop-signal": Private(
        "ray",
        "ray.tune.tune._setup_signal_catching (SIGUSR1 ends a run as Ctrl-C does)",
        "stopping a study at its budget with every unfinished trial resumable",
    ),
    "optuna-trial-id": Private("optuna", "FrozenTrial._trial_id", "reopening a RUNNING trial to tag or take it over"),
    "optuna-rdb-methods": Private(
        "optuna",
        "RDBStorage's private methods behind its public calls (_create_new_trial, _get_trials, ...; which ones "
        "exist differs by version)",
        "retrying every call that reaches the database after a lost connection",
    ),
    "optuna-finished-trial-error": Private(
        "optuna",
        "the error an update of a finished trial raises (UpdateFinishedTrialError from 4.3, RuntimeError before)",
        "a storage call retried after a lost connection that had committed before its answer was lost",
    ),
    "mlflow-system-metrics": Private(
        "mlflow",
        "mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor (tracking_uri= from 3.7)",
        "the machine's system metrics on the study's parent run",
    ),
    "mlflow-artifact-cache": Private(
        "mlflow",
        "mlflow.tracking._tracking_service.utils._artifact_repos_cache",
        "a moved study folder's artifacts found at their new place in the same process",
    ),
    "mlflow-pytorch-log-model": Private(
        "mlflow",
        "mlflow.pytorch.log_model's arguments (name= from 3.0, artifact_path= before; serialization_format= from 3.11)",
        "registering a study's best trial as an MLflow model",
    ),
}


class CompatError(RuntimeError):
    """A private API this project relies on is gone or changed in the installed version."""


def version(dependency: str) -> str:
    try:
        return metadata.version(dependency)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def supported_range(dependency: str) -> str:
    """``>=2.44,<2.61 (tested 2.44.1 to 2.60.0)``: what :mod:`compat.supported` admits."""
    from compat.supported import SUPPORTED
    from compat.versions import describe

    return describe(SUPPORTED[dependency]) if dependency in SUPPORTED else "(no range declared)"


def broken(use: str, exc: BaseException) -> CompatError:
    """The one-line error of a private API or signature that no longer works as ``use`` expects."""
    p = USES[use]
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    return CompatError(
        f"{p.dependency} {version(p.dependency)}: {p.name} is gone or changed ({detail}); it is used for {p.why}; "
        f"the supported range is {p.dependency} {supported_range(p.dependency)}: install a version in it"
    )


def _guard(use: str, call: Callable[[], T]) -> T:
    """``call()``; a missing name or a changed signature (AttributeError, ImportError, TypeError raised
    by the call itself) becomes the use's one-line :class:`CompatError`."""
    try:
        return call()
    except (AttributeError, ImportError, TypeError) as exc:
        raise broken(use, exc) from None


def accepts(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` names a parameter ``name`` (a signature probe, not a version test). A
    catch-all ``**kwargs`` does not count: it often forwards to a call that does not take it."""
    import inspect

    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class Unavailable(CompatError):
    """A feature the installed version lacks; the caller goes on without it, saying so in one line."""


def unavailable(use: str, needs: str) -> Unavailable:
    p = USES[use]
    return Unavailable(f"{p.dependency} {version(p.dependency)} has no {needs} ({p.name}); used for {p.why}")


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


def rdb_storage_methods() -> dict[str, Any]:
    """The private methods of ``optuna.storages.RDBStorage`` that the installed Optuna has, by name
    (wrapped with retries). Which exist differs (4.x has ``_create_new_trial`` and ``_get_trials``;
    5.x adds ``_get_best_trial_id`` and ``_set_trial_param``); where one is absent, its public
    counterpart does the work and is retried itself. None of them at all: the storage changed."""
    import optuna

    cls = _guard("optuna-rdb-methods", lambda: optuna.storages.RDBStorage)
    found = {name: getattr(cls, name) for name in OPTUNA_RDB_PRIVATE if callable(getattr(cls, name, None))}
    if not found:
        raise broken("optuna-rdb-methods", AttributeError(f"RDBStorage has none of {', '.join(OPTUNA_RDB_PRIVATE)}"))
    return found


def finished_trial_error() -> tuple[type[BaseException], Callable[[BaseException], bool]]:
    """(the exception class an update of a finished trial raises, a test that an instance is one):
    ``UpdateFinishedTrialError`` where Optuna has it (4.3 on), else the ``RuntimeError`` that
    ``check_trial_is_updatable`` raised before, recognised by its message."""
    import optuna

    exceptions = _guard("optuna-finished-trial-error", lambda: optuna.exceptions)
    specific = getattr(exceptions, "UpdateFinishedTrialError", None)
    if isinstance(specific, type) and issubclass(specific, BaseException):
        return specific, lambda _exc: True
    return RuntimeError, lambda exc: "has already finished" in str(exc)


# MLflow -------------------------------------------------------------------------------------


def system_metrics_monitor(run_id: str, tracking_uri: str) -> Any:
    """MLflow's system-metrics monitor on ``run_id`` (continuing its steps), not started.

    Raises :class:`Unavailable` where the monitor cannot be given the study's store (MLflow before
    3.7: it writes through the process's global tracking URI, which a study never changes)."""

    def cls() -> Any:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        return SystemMetricsMonitor

    monitor = _guard("mlflow-system-metrics", cls)
    if not accepts(monitor, "tracking_uri"):
        raise unavailable("mlflow-system-metrics", "monitor that writes to a given tracking URI (3.7 on)")
    return _guard("mlflow-system-metrics", lambda: monitor(run_id, resume_logging=True, tracking_uri=tracking_uri))


def pytorch_log_model_arguments(artifact: str) -> dict[str, Any]:
    """The arguments of ``mlflow.pytorch.log_model`` that name the logged model ``artifact`` and
    pickle the ``nn.Module`` itself, as the installed MLflow spells them: ``name=`` (3.0 on) or
    ``artifact_path=``; ``serialization_format="pickle"`` where it is a parameter (3.11 on; before,
    pickling the module was what it did, and an unknown keyword would reach ``torch.save``)."""

    def log_model() -> Callable[..., Any]:
        import mlflow.pytorch

        found: Callable[..., Any] = mlflow.pytorch.log_model
        return found

    func = _guard("mlflow-pytorch-log-model", log_model)
    arguments: dict[str, Any] = {"name": artifact} if accepts(func, "name") else {"artifact_path": artifact}
    if "artifact_path" in arguments and not accepts(func, "artifact_path"):
        raise broken("mlflow-pytorch-log-model", TypeError("log_model takes neither name= nor artifact_path="))
    if accepts(func, "serialization_format"):
        arguments["serialization_format"] = "pickle"
    return arguments


def forget_artifact_repos(run_ids: Sequence[str]) -> None:
    """Drop MLflow's per-process cache of these runs' artifact repositories (by run id)."""

    def cache() -> dict[str, Any]:
        from mlflow.tracking._tracking_service import utils

        found: dict[str, Any] = utils._artifact_repos_cache
        return found

    repos = _guard("mlflow-artifact-cache", cache)
    for run_id in run_ids:
        repos.pop(run_id, None)
