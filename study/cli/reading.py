"""The commands that read a study or the registries: ``status``, ``list``, ``export-best``, ``report``, ``versions``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from finetune.registry import Registry
from study.cli.main import quiet_optuna


def registries() -> list[Registry[Any]]:
    """Every registry of named choices, in the order a spec uses them."""
    from finetune.backbones import BACKBONES
    from finetune.data import DATASETS
    from finetune.protocols import PROTOCOLS
    from finetune.regularizers import REGISTRY
    from finetune.tasks import TASK_KINDS
    from finetune.transforms import EVAL_TRANSFORMS, TRAIN_TRANSFORMS
    from search_spaces import SPACES

    return [SPACES, PROTOCOLS, DATASETS, BACKBONES, REGISTRY, TASK_KINDS, TRAIN_TRANSFORMS, EVAL_TRANSFORMS]


def cmd_list(args: argparse.Namespace) -> int:
    """Every registry's names from ``finetune.catalog`` (plain data written from the registries, so
    nothing that fills them is imported: torch, Optuna)."""
    from finetune.catalog import CATALOG

    for field, kind, entries in CATALOG:
        print(f"{field} ({kind}):")
        width = max(len(name) for name, _ in entries)
        for name, description in entries:
            print(f"  {name.ljust(width)}  {description}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from study.reporting import study_status

    print(study_status(Path(args.study_dir).resolve()).render())
    return 0


def cmd_export_best(args: argparse.Namespace) -> int:
    from study.reporting import export_best

    for path in export_best(Path(args.study_dir).resolve(), args.top, Path(args.out) if args.out else None):
        print(path)
    if args.register is not None:
        from study.reporting import register_best

        uri = register_best(Path(args.study_dir).resolve(), args.register or None)
        print(f"registered: {uri} (load it with mlflow.pytorch.load_model({uri!r}))")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    quiet_optuna()
    from study.reporting import ReportOptions, write_report

    options = ReportOptions(correction=args.correction, interval=args.interval, seed=args.seed)
    for path in write_report(Path(args.study_dir).resolve(), options):
        print(path)
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """Each dependency's installed version beside the supported range; exit 1 if one is outside it."""
    from compat.supported import SUPPORTED
    from compat.versions import describe, installed, problems

    rows = [("dependency", "installed", "supported", "")]
    for name, supported in SUPPORTED.items():
        found = problems([name])
        rows.append((name, installed(name) or "-", describe(supported), "ok" if not found else "OUTSIDE"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip())
    issues = problems()
    for line in issues:
        print(f"error: {line}", file=sys.stderr)
    return 1 if issues else 0
