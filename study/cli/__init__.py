"""The CLI: the command table (:mod:`study.cli.table`), the entry point (:mod:`study.cli.main`) and
thin commands over the rooms below (running, reading, servers, the core's own train and analyze)."""

from study.cli.main import main

__all__ = ["main"]
