"""MLflow's private names and changed signatures (features an older MLflow lacks raise :class:`compat.Unavailable`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from compat import _guard, accepts, broken, unavailable


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


@contextmanager
def artifacts_of(client: Any) -> Iterator[None]:
    """Artifacts that ``client`` logs go to its own tracking server's proxied store
    (``mlflow-artifacts:``). Where ``get_artifact_repository`` takes no ``tracking_uri`` (MLflow 2.x),
    MLflow resolves such a URI against the process's global tracking URI instead of the client's:
    for the block, the global one is the client's, and then what it was (a signature probe)."""

    def registry() -> Callable[..., Any]:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        found: Callable[..., Any] = get_artifact_repository
        return found

    uri = str(_guard("mlflow-proxied-artifacts", lambda: client.tracking_uri))
    if accepts(_guard("mlflow-proxied-artifacts", registry), "tracking_uri") or not uri.startswith(("http:", "https:")):
        yield
        return
    import mlflow

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)  # type: ignore[arg-type]  # None unsets it
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
