"""Where a study's record lives: its MLflow tracking URI and its Optuna storage, decided once.

At launch :func:`choose` decides both, in this order: the spec (``tracking_uri``,
``optuna_storage``), then MLflow's own environment convention (``MLFLOW_TRACKING_URI``; Optuna
has none), then the study folder's own SQLite files (``mlflow.db``, ``optuna.db``: the default,
relocatable with the folder). ``study.json`` records the choice (:class:`StoreChoice`) and every
later command opens the stores from it (:meth:`StoreChoice.open`), wherever it runs.

Credentials are never recorded: a URL that holds a password is refused in a spec (it would be
written into ``spec.yaml`` and MLflow's params); write ``${VAR}`` naming an environment variable
that holds the URL, or leave the password to libpq (``PGPASSWORD``, ``~/.pgpass``) or to MLflow
(``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``). A URL taken from
``MLFLOW_TRACKING_URI`` that holds a password is recorded as ``${MLFLOW_TRACKING_URI}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from study.errors import StudyError

MLFLOW_FILE = "mlflow.db"
OPTUNA_FILE = "optuna.db"
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
OPTUNA_SCHEMES = ("sqlite", "postgresql", "mysql")
ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
EXTRA = {"postgresql": "postgres", "mysql": "mysql"}


def scheme(uri: str) -> str:
    """``postgresql`` of ``postgresql+psycopg2://...``; '' for a string that is no URI."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri or uri.startswith("sqlite:") else ""


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for every message and record)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def redact_text(text: str) -> str:
    """Free text (an error message) with the password of any URL in it replaced by ``***``."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def has_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password is not None
    except ValueError:
        return False


def expand(value: str, field: str, environ: Mapping[str, str] | None = None) -> str:
    """``${VAR}``: the environment variable's value (read at every command, never written down)."""
    match = ENV_REFERENCE.match(value.strip())
    if match is None:
        return value
    found = (os.environ if environ is None else environ).get(match.group(1), "").strip()
    if not found:
        raise StudyError(f"{field}: {value} names environment variable {match.group(1)}, which is not set; set it")
    return found


def is_remote(uri: str) -> bool:
    return scheme(uri) in ("http", "https")


def is_server_database(uri: str) -> bool:
    """A database server (not a SQLite file, not an HTTP tracking server)."""
    return scheme(uri) in ("postgresql", "mysql", "mssql")


def check_uri(value: str | None, field: str, schemes: tuple[str, ...], what: str) -> None:
    """One line naming ``field`` if ``value`` is not a usable URI of ``schemes`` (a ``${VAR}``
    reference is checked once it is expanded), holds a password, or needs a driver that is missing."""
    if value is None:
        return
    if ENV_REFERENCE.match(value.strip()):
        return
    if scheme(value) not in schemes:
        raise StudyError(
            f"{field}: {redact(value)!r} is not {what}; use "
            + ", ".join(f"{s}://..." for s in schemes)
            + " or null (the study folder's own file)"
        )
    if has_password(value):
        raise StudyError(
            f"{field}: the URL holds a password, which would be written into spec.yaml and MLflow; write "
            "${VAR} naming an environment variable that holds the URL, or give the password in PGPASSWORD / "
            "~/.pgpass (MLFLOW_TRACKING_PASSWORD for an MLflow server)"
        )
    check_driver(value, field)


def check_driver(uri: str, field: str) -> None:
    """The database driver SQLAlchemy will load for ``uri`` must be installed (asked of SQLAlchemy
    itself: its default driver of a scheme changes between versions, psycopg2 -> psycopg)."""
    name = scheme(uri)
    if name not in EXTRA and name != "mssql":
        return
    from sqlalchemy.engine import make_url

    try:
        dialect = make_url(uri).get_dialect()
        dialect.import_dbapi()
    except Exception as exc:
        extra = EXTRA.get(name)
        hint = f"pip install -e '.[{extra}]'" if extra else "install its driver"
        module = getattr(exc, "name", None) or str(exc).split(":")[-1].strip()
        raise StudyError(f"{field}: {redact(uri)} needs the {module} driver, not installed; {hint}") from None


def absolute(uri: str, cwd: Path) -> str:
    """A ``sqlite:///relative.db`` URI made absolute against ``cwd``; any other URI unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return f"{prefix}{(cwd / uri[len(prefix) :]).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@dataclass(frozen=True)
class Stores:
    """The live stores of one study for one command: URIs to connect to (credentials included
    where they come from the environment: never print these, print :meth:`shown`)."""

    tracking_uri: str
    optuna_url: str
    tracking_local: bool  # the folder's own mlflow.db
    optuna_local: bool  # the folder's own optuna.db

    @property
    def tracking_remote(self) -> bool:
        return is_remote(self.tracking_uri)

    def shown(self, which: str = "tracking") -> str:
        return redact(self.tracking_uri if which == "tracking" else self.optuna_url)

    def optuna_storage(self) -> object:
        """Optuna's storage on ``optuna_url``: a database server reconnects after a restart
        (``pool_pre_ping``) and a call that failed on a lost connection is retried."""
        from study.optuna_storage import open_storage

        return open_storage(self.optuna_url, retry=not self.optuna_local)


@dataclass(frozen=True)
class StoreChoice:
    """What ``study.json`` records of the stores: None for the folder's own file, else the URI as
    given (absolute for SQLite; ``${VAR}`` for one from the environment; never a password)."""

    tracking: str | None = None
    optuna: str | None = None

    def open(self, folder: Path, environ: Mapping[str, str] | None = None) -> Stores:
        tracking = expand(self.tracking, "tracking_uri", environ) if self.tracking else None
        optuna = expand(self.optuna, "optuna_storage", environ) if self.optuna else None
        return Stores(
            tracking_uri=tracking or f"sqlite:///{folder / MLFLOW_FILE}",
            optuna_url=optuna or f"sqlite:///{folder / OPTUNA_FILE}",
            tracking_local=tracking is None,
            optuna_local=optuna is None,
        )


def choose(
    tracking_uri: str | None,
    optuna_storage: str | None,
    folder: Path,
    cwd: Path,
    environ: Mapping[str, str] | None = None,
) -> StoreChoice:
    """The stores of a new study: the spec's values, then ``MLFLOW_TRACKING_URI``, then the folder's
    own files. Relative SQLite paths are resolved against ``cwd``; one that names the folder's own
    file is the folder default (so it moves with the folder). Raises StudyError naming the field."""
    env = os.environ if environ is None else environ
    check_uri(tracking_uri, "tracking_uri", TRACKING_SCHEMES, "an MLflow tracking URI")
    check_uri(optuna_storage, "optuna_storage", OPTUNA_SCHEMES, "an Optuna storage URL")
    tracking = tracking_uri
    if tracking is None and env.get("MLFLOW_TRACKING_URI", "").strip():
        from_env = env["MLFLOW_TRACKING_URI"].strip()
        try:
            check_uri(from_env, "MLFLOW_TRACKING_URI", TRACKING_SCHEMES, "an MLflow tracking URI")
        except StudyError as exc:
            message = str(exc).split(": ", 1)[1]
            if not has_password(from_env):
                raise StudyError(f"MLFLOW_TRACKING_URI (environment): {message}") from None
            check_driver(from_env, "MLFLOW_TRACKING_URI (environment)")
            tracking = "${MLFLOW_TRACKING_URI}"  # the password stays in the environment
        else:
            tracking = from_env
    return StoreChoice(
        _folder_or(tracking, folder / MLFLOW_FILE, cwd), _folder_or(optuna_storage, folder / OPTUNA_FILE, cwd)
    )


def _folder_or(uri: str | None, own: Path, cwd: Path) -> str | None:
    if uri is None:
        return None
    uri = absolute(uri, cwd)
    path = sqlite_path(uri)
    if path is not None and path.resolve() == own.resolve():
        return None
    return uri
