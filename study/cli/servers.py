"""``study ui`` and ``study dashboard``: MLflow's UI and optuna-dashboard on a study's stores, on loopback
unless asked otherwise (then one warning line naming who can read and write)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from study.record import Stores, open_record
from study.spec import StudyError, has_password, is_server_database, redact


def runs_address(study_dir: Path, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The study's runs table in the MLflow UI (MLflow 3 opens an experiment on its GenAI
    overview by default; the runs table is this address): on the study's tracking server when it
    has one, else where ``study ui`` serves it."""
    opened = open_record(study_dir)
    experiment_id = opened.record.experiment_id
    if opened.stores.tracking_remote:
        return f"{opened.stores.shown().rstrip('/')}/#/experiments/{experiment_id}/runs"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/#/experiments/{experiment_id}/runs"


def ui_command(stores: Stores, host: str = "127.0.0.1", port: int = 5000) -> tuple[list[str], dict[str, str]]:
    """``mlflow ui`` on the study's tracking store: (the command, extra environment). A store URL
    that holds a password goes in the environment (``MLFLOW_BACKEND_STORE_URI``), never on the
    command line, where every user of the machine can read it."""
    command = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port)]
    if has_password(stores.tracking_uri):
        return command, {"MLFLOW_BACKEND_STORE_URI": stores.tracking_uri}
    return [*command[:4], "--backend-store-uri", stores.tracking_uri, *command[4:]], {}


LOOPBACK = ("127.0.0.1", "localhost", "::1")

WRITES = {"MLflow": "its UI and API write runs, tags and models", "optuna-dashboard": "it edits trials and notes"}

PROTECT = {
    "MLflow": "MLflow can ask for a login (`mlflow server --app-name basic-auth`) and serve TLS behind a proxy; "
    "or keep --host 127.0.0.1 and reach it through `ssh -L 5000:127.0.0.1:5000 HOST`",
    "optuna-dashboard": "optuna-dashboard has no login of its own: keep --host 127.0.0.1 and reach it through "
    "`ssh -L 8080:127.0.0.1:8080 HOST`, or put it behind a proxy that asks for one",
}


def check_server_args(host: str, port: int, what: str) -> None:
    """A port must be a TCP port; a host other than loopback gets one warning line: who can read and
    write the record then, and the protection that server offers."""
    if not 1 <= port <= 65535:
        raise StudyError(f"--port: {port} is not a TCP port; pass 1-65535")
    if host not in LOOPBACK:
        print(
            f"warning: --host {host}: anyone on the network who reaches port {port} can read and change the study "
            f"({WRITES.get(what, 'it serves the record')}); " + PROTECT.get(what, "keep --host 127.0.0.1"),
            file=sys.stderr,
        )


def serve(command: list[str], print_only: bool, env: dict[str, str] | None = None) -> int:
    if print_only:
        return 0
    os.execve(command[0], command, {**os.environ, **(env or {})})
    return 0  # pragma: no cover


def cmd_ui(args: argparse.Namespace) -> int:
    opened = open_record(Path(args.study_dir))
    stores = opened.stores
    if stores.tracking_remote:  # its own server serves it: nothing to start here
        print(f"the study is tracked by the MLflow server at {stores.shown()}; nothing is served here", flush=True)
        print(f"the study's runs: {runs_address(opened.folder.path)}", flush=True)
        return 0
    if stores.tracking_local and not opened.folder.mlflow_file.is_file():
        missing = opened.folder.mlflow_file
        raise StudyError(f"STUDY_DIR: no {missing.name} in {missing.parent}; pass the output_dir of a launched study")
    check_server_args(args.host, args.port, "MLflow")
    command, env = ui_command(stores, args.host, args.port)
    print(" ".join(shlex.quote(redact(c)) for c in command), flush=True)
    print(f"the study's runs: {runs_address(opened.folder.path, args.host, args.port)}", flush=True)
    return serve(command, args.print_only, env)


def dashboard_command(stores: Stores, host: str = "127.0.0.1", port: int = 8080) -> list[str]:
    """optuna-dashboard (the ``dashboard`` extra) on the study's Optuna storage."""
    executable = Path(sys.executable).parent / "optuna-dashboard"
    found = str(executable) if executable.is_file() else shutil.which("optuna-dashboard")
    if found is None:
        raise StudyError("dashboard: optuna-dashboard is not installed; pip install -e '.[dashboard]'")
    return [found, stores.optuna_url, "--host", host, "--port", str(port)]


def cmd_dashboard(args: argparse.Namespace) -> int:
    opened = open_record(Path(args.study_dir))
    folder, stores = opened.folder, opened.stores
    if stores.optuna_local and not folder.optuna_file.is_file():
        raise StudyError(f"STUDY_DIR: no {folder.optuna_file.name} in {folder.path}; pass the output_dir of a study")
    check_server_args(args.host, args.port, "optuna-dashboard")
    if is_server_database(stores.optuna_url):
        from study.record import check_database

        check_database(stores.optuna_url, "optuna_storage")
    command = dashboard_command(stores, args.host, args.port)
    print(" ".join(shlex.quote(redact(c)) for c in command), flush=True)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"the dashboard: http://{shown}:{args.port}/dashboard", flush=True)
    return serve(command, args.print_only)
