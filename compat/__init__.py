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

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
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
    "optuna-rdb-schema": Private(
        "optuna",
        "the RDB storage's tables (studies, trials, trial_values, trial_intermediate_values, the user attributes)",
        "`study status` in about a second: the trials read with SQL, without Optuna's ORM and alembic",
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
    "mlflow-proxied-artifacts": Private(
        "mlflow",
        "MlflowClient.tracking_uri and get_artifact_repository(tracking_uri=) (not before MLflow 3)",
        "a study's artifacts (its spec, each trial's config, the report) logged through its MLflow server",
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
