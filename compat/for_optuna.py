"""Optuna's private names and changed signatures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


# Optuna's tables, read directly by `study status` (Optuna's RDB storage imports SQLAlchemy's ORM and
# alembic: over a second before one trial is read). The schema is Optuna's own (storages/_rdb/models.py),
# the same from 4.0 through 5.1; the probe compares this reader with Optuna's API on the same database.


@dataclass(frozen=True)
class TrialSummary:
    """What ``study status`` shows of one Optuna trial."""

    number: int
    state: str  # TrialState's name: RUNNING, COMPLETE, PRUNED, FAIL, WAITING
    value: float | None  # its value (first objective) once complete
    best_intermediate: float | None  # its best reported intermediate value
    user_attrs: dict[str, Any]


def read_summaries(
    connection: Any, study_name: str, placeholder: str = "?"
) -> tuple[dict[str, Any], list[TrialSummary]] | None:
    """(the study's user attributes, its trials in number order) read with a DB-API ``connection``
    (sqlite3, or psycopg with ``placeholder="%s"``); None when no study has that name."""
    import json

    def rows(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        cursor = connection.cursor()
        cursor.execute(sql.replace("?", placeholder), args)
        found = list(cursor.fetchall())
        cursor.close()
        return found

    def guarded(sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return _guard("optuna-rdb-schema", lambda: rows(sql, *args))

    try:
        studies = rows("SELECT study_id FROM studies WHERE study_name = ?", study_name)
    except Exception as exc:  # a missing table is a schema change; a server fault is the caller's
        if "studies" in str(exc) and ("no such table" in str(exc) or "does not exist" in str(exc)):
            raise broken("optuna-rdb-schema", exc) from None
        raise
    if not studies:
        return None
    study_id = studies[0][0]
    study_attrs = {k: json.loads(v) for k, v in guarded(
        "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?", study_id)}  # fmt: skip
    trials = guarded("SELECT trial_id, number, state FROM trials WHERE study_id = ? ORDER BY number", study_id)
    join = "JOIN trials t ON t.trial_id = x.trial_id WHERE t.study_id = ?"
    values = dict(guarded(f"SELECT x.trial_id, x.value FROM trial_values x {join} AND x.objective = 0", study_id))
    best = dict(guarded(f"SELECT x.trial_id, MAX(x.intermediate_value) FROM trial_intermediate_values x {join} "
                        "GROUP BY x.trial_id", study_id))  # fmt: skip
    attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value in guarded(f"SELECT x.trial_id, x.key, x.value_json FROM trial_user_attributes x {join}",
                                        study_id):  # fmt: skip
        attrs.setdefault(trial_id, {})[key] = json.loads(value)
    summaries = [
        TrialSummary(
            int(number),
            str(state).rsplit(".", 1)[-1],  # "COMPLETE" (an enum stored by name)
            None if values.get(trial_id) is None else float(values[trial_id]),
            None if best.get(trial_id) is None else float(best[trial_id]),
            attrs.get(trial_id, {}),
        )
        for trial_id, number, state in trials
    ]
    return study_attrs, summaries
