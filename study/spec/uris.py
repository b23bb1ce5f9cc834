"""The URIs a spec names for its record (an MLflow tracking URI, an Optuna storage URL): their scheme,
their checks, ``${VAR}`` references to the environment, and their redaction (a password is never shown)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from study.spec.errors import StudyError

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
