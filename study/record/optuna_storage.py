"""Optuna's RDB storage as a study opens it: SQLite in the study folder, or a database server
(PostgreSQL, MySQL) that may restart while a study runs.

On a server the engine checks a pooled connection before using it (``pool_pre_ping``), so a
restarted server is reconnected to, and a storage call that fails because the connection was lost
(the server restarting, a network blip) is tried again for up to ``BSS_STUDY_DB_RETRY_S`` seconds
(default 120) before it fails the study.

:class:`BoundStorage` is the storage Tune pickles with the searcher: it holds only the study's
key and finds its URL in the driver's binding (:mod:`study.record.live`), so no URL (and no
password) is written into Tune's state, and a moved study folder restores onto its own files.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import optuna

from compat import for_optuna
from study.record.attrs import TUNE_TRIAL_ATTR  # noqa: F401  (its home is attrs; imported from here by older code)

RETRY_ENV = "BSS_STUDY_DB_RETRY_S"
FINISHED_ERROR, _IS_FINISHED = for_optuna.finished_trial_error()
RETRIED = (
    *for_optuna.rdb_storage_methods(),
    "create_new_study",
    "set_trial_param",
    *("get_all_studies", "get_study_directions", "get_study_id_from_name", "get_study_name_from_id"),
    *("get_study_system_attrs", "get_study_user_attrs", "get_trial", "get_trial_id_from_study_id_trial_number"),
    *("set_study_system_attr", "set_study_user_attr", "set_trial_intermediate_value", "set_trial_state_values"),
    *("set_trial_system_attr", "set_trial_user_attr", "get_all_trials", "get_n_trials", "get_best_trial"),
)


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from or while handling) is a dropped connection.

    The whole chain is read: Optuna wraps SQLAlchemy's errors in ``StorageInternalError``, and its
    own fallbacks query again in a session whose connection has just died, which raises
    ``PendingRollbackError`` with the lost connection as its context.
    """
    from sqlalchemy.exc import DBAPIError, OperationalError

    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OperationalError):
            return True
        if isinstance(link, DBAPIError) and link.connection_invalidated:
            return True
        link = link.__cause__ or link.__context__
    return False


def _retrying(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(self, *args, **kwargs)
            except FINISHED_ERROR as exc:
                if attempt > 1 and name == "set_trial_state_values" and _IS_FINISHED(exc):
                    return True  # the lost call had committed before its answer was lost
                raise
            except Exception as exc:
                if not self.retry or not _lost_connection(exc) or time.monotonic() > deadline:
                    raise
                self.engine.dispose()  # drop every pooled connection to the old server process
                time.sleep(min(2.0, 0.25 * attempt))

    return call


class RetryingStorage(optuna.storages.RDBStorage):
    """An RDB storage whose calls survive a restart of its database server."""

    def __init__(self, url: str, retry: bool = True) -> None:
        self.retry = retry
        self.retry_s = float(os.environ.get(RETRY_ENV, "120"))
        engine_kwargs: dict[str, Any] = {} if url.startswith("sqlite") else {"pool_pre_ping": True}
        super().__init__(url, engine_kwargs=engine_kwargs)


_PRIVATE = for_optuna.rdb_storage_methods()
for _name in RETRIED:  # every call that reaches the database (the private ones through compat)
    _method = _PRIVATE[_name] if _name.startswith("_") else getattr(optuna.storages.RDBStorage, _name)
    setattr(RetryingStorage, _name, _retrying(_name, _method))


def open_storage(url: str, retry: bool = True) -> RetryingStorage:
    return RetryingStorage(url, retry=retry)


class BoundStorage(RetryingStorage):
    """The storage of the study bound under ``key`` in this process (pickled as the key alone)."""

    def __init__(self, key: str) -> None:
        from study.record.live import lookup

        self.key = key
        stores = lookup(key).stores
        super().__init__(stores.optuna_url, retry=not stores.optuna_local)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BoundStorage, (self.key,))
