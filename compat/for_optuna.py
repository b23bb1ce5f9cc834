"""Optuna's private names and changed signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from compat import _guard, broken


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
