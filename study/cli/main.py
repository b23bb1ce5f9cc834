"""``study``'s entry point: the parser built from the command table (:mod:`study.cli.table`), the
dependency check, then the command, imported only now (``--help`` imports no command at all)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from study.cli.table import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study", description="Hyperparameter studies of BSS fine-tuning on Ray Tune.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (target, help_text, description, arguments) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=description)
        for flags, options in arguments:
            command.add_argument(*flags, **options)
        command.set_defaults(target=target)
    return parser


def command(target: str) -> Callable[[argparse.Namespace], int]:
    """The function ``module:function`` names, its module imported now."""
    module, _, name = target.partition(":")
    found: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
    return found


def quiet_dependencies() -> None:
    """A clean report: the progress line and the final table, warnings and errors; no INFO lines of
    MLflow ("Creating initial MLflow database tables", system metrics), no Tune configuration box.
    Set in the environment, read by each dependency when (if) the command imports it."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter, which verbose=0 silences
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" line per trial
    # a tracking server that does not answer fails a call in seconds, not after MLflow's minutes of
    # retries: the study keeps the record in its folder meanwhile (study.record.outbox) and goes on
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def quiet_optuna() -> None:
    """No "A new study created in memory" lines: Optuna's verbosity at WARNING. Optuna sets its
    logger's level when it loads, so the commands that use it call this (the light ones never load it)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "versions":
        from compat.versions import VersionError, check

        try:  # before anything of the study: an untested dependency is one line, nothing started or written
            for warning in check():
                print(f"warning: {warning} (BSS_STUDY_ALLOW_UNTESTED=1: going on untested)", file=sys.stderr)
        except VersionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    quiet_dependencies()
    try:
        return int(command(args.target)(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        errors = sys.modules.get("finetune.errors")  # an InputError can only come from a loaded core
        if errors is not None and isinstance(exc, errors.NonFiniteLossError):
            print(f"error: training diverged: {exc}", file=sys.stderr)
            return 1
        if errors is not None and isinstance(exc, errors.InputError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
