"""The commands that run a study: ``launch``, ``resume`` (each checks everything before Ray starts), ``sync``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from study.cli.main import quiet_optuna
from study.cli.servers import runs_address
from study.record import TRIALS_FILE, StudyFolder, open_study
from study.run import ray_session
from study.spec import StudyError, StudySpec, load_spec

if TYPE_CHECKING:
    from study.run import StudyOutcome


def cmd_launch(args: argparse.Namespace) -> int:
    quiet_optuna()
    import torch

    from study.record import check_free, check_stores, choose, driver_lock
    from study.run import StudyOutcome, check_study_dir, run_study, warm_start
    from study.spec import check_inputs, check_local_resources, check_output_dir

    spec = load_spec(args.spec)
    choice = choose(spec.tracking_uri, spec.optuna_storage, spec.study_dir, Path.cwd())
    stores = choice.open(spec.study_dir)
    check_inputs(spec)
    check_output_dir(spec)
    if check_study_dir(spec):  # already complete: its table (no Ray unless its confirmation is left)
        folder = StudyFolder(spec.study_dir)
        return confirm_then_report(spec, StudyOutcome.complete(folder))
    check_local_resources(spec, os.cpu_count() or 1, torch.cuda.device_count())
    check_stores(stores)
    check_trial_storage(spec.storage)
    check_free(spec.study_dir, spec.max_concurrent, "output_dir")
    seed = warm_start.seed_trials(spec)  # its source read (one line if it is not there) before Ray starts
    print(f"study '{spec.name}' -> {spec.study_dir}", flush=True)
    if spec.warm_start.source is not None:
        print(seed.summary(), flush=True)
    with driver_lock(spec.study_dir, stores.optuna_url, spec.name, "output_dir"), ray_session(spec):
        outcome = run_study(spec, choice, seed=seed)
        return confirm_then_report(spec, outcome, ray_started=True)


def check_trial_storage(uri: str | None) -> None:
    """The spec's ``storage`` bucket answers to these credentials (one line, before Ray starts)."""
    if uri is None:
        return
    from trainables.storage import StorageError, check_reachable

    try:
        check_reachable(uri)
    except StorageError as exc:
        raise StudyError(str(exc)) from None


def confirm_then_report(spec: StudySpec, outcome: StudyOutcome, ray_started: bool = False) -> int:
    """The search's outcome, then its confirmation on fresh seeds where the spec asks for one and
    the search ran to its end (``study.run.confirm``)."""
    from study.record import confirmations
    from study.run import run_confirmation

    code = report_outcome(spec, outcome)
    if code != 0 or outcome.interrupted or not confirmations.pending(spec):
        return code
    if ray_started:
        done = run_confirmation(spec)
    else:
        with ray_session(spec):
            done = run_confirmation(spec)
    if not done:
        print(f"interrupted: continue with `study resume {shlex.quote(str(spec.study_dir))}`", file=sys.stderr)
        return 130
    where = spec.study_dir / confirmations.CONFIRM_DIR
    print(
        f"confirmed:   the top {spec.confirm.top} on {spec.confirm.seeds} fresh seeds in {where}; "
        f"`study report {shlex.quote(str(spec.study_dir))}` gives the headline numbers"
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    quiet_optuna()
    from study.record import PENDING_FILE, check_free, driver_lock, parse_budget, raise_limits
    from study.run import StudyOutcome, check_resumable, resume_study

    limits = parse_budget(args.budget) if args.budget is not None else {}
    if getattr(args, "from_uri", None):
        from study.record import rebuild_folder

        rebuilt = rebuild_folder(args.from_uri, Path(args.study_dir).resolve())
        print(f"rebuilt {rebuilt.path} from {args.from_uri.rstrip('/')}", flush=True)
    checked = check_resumable(Path(args.study_dir))
    folder, spec = checked.folder, checked.spec
    if checked.complete:
        if (folder.path / PENDING_FILE).is_file():  # finished, but MLflow missed part of it
            return cmd_sync(args)
        return confirm_then_report(spec, StudyOutcome.complete(folder))
    assert checked.record is not None
    check_trial_storage(checked.record.storage)  # its bucket answers, before Ray starts
    check_free(folder.path, spec.max_concurrent, "STUDY_DIR")
    stores = checked.record.stores(folder)
    print(f"resuming study '{spec.name}' in {folder.path}", flush=True)
    with driver_lock(folder.path, stores.optuna_url, spec.name):
        if limits:  # written once this driver holds the study: no other one updates the ledger now
            ledger = raise_limits(folder.path, spec.budget, limits)
            print(f"budget now: gpu_hours {ledger.gpu_hours}, wall_hours {ledger.wall_hours}", flush=True)
        with ray_session(spec):
            outcome = resume_study(checked)
            return confirm_then_report(spec, outcome, ray_started=True)


def cmd_sync(args: argparse.Namespace) -> int:
    from study.record import driver_lock
    from study.run import sync_study

    opened = open_study(Path(args.study_dir))
    with driver_lock(opened.folder.path, "", opened.spec.name):  # not while a driver writes
        print(sync_study(opened.folder.path).render())
    return 0


def report_outcome(spec: StudySpec, outcome: StudyOutcome) -> int:
    if outcome.disk_low:
        print(f"error: {outcome.disk_low}", file=sys.stderr)
        return 1
    if outcome.budget_spent:
        if outcome.tracking_behind:
            print(f"error: {outcome.tracking_behind}", file=sys.stderr)
        folder = shlex.quote(str(outcome.study_dir))
        print(
            f"budget spent ({outcome.budget_spent}): the study stopped cleanly, every unfinished trial at its last "
            f"epoch; continue with `study resume {folder} --budget gpu_hours=N` (or wall_hours=N)"
        )
        return 1 if outcome.tracking_behind else 0
    if outcome.interrupted:
        if outcome.tracking_behind:
            print(f"error: {outcome.tracking_behind}", file=sys.stderr)
        print(f"interrupted: continue with `study resume {shlex.quote(str(outcome.study_dir))}`", file=sys.stderr)
        return 130
    if outcome.already_complete:
        from study.record import format_table

        assert outcome.table is not None
        print(format_table(outcome.table))
        print(f"study already complete in {outcome.study_dir} (delete the folder to run it again)")
    elif outcome.best is not None:
        b = outcome.best
        params = ", ".join(f"{k}={v}" for k, v in sorted(b.params.items()))
        shown = [(name, b.metrics.get(name)) for name in ("best_val_acc", "test_acc")]
        values = " ".join(f"{name}={value:.4f}" for name, value in shown if isinstance(value, float))
        print(f"\nbest trial {b.trial_id} by {spec.metric}: {values}  ({params})")
    if outcome.all_failed:
        assert outcome.table is not None
        errors = sorted({str(r["error"]) for r in outcome.table.to_pylist()})
        print(f"error: every trial failed ({len(errors)} distinct error(s)):", file=sys.stderr)
        for error in errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    if outcome.best is None and not outcome.already_complete:
        print("\nno trial reported a validation accuracy; see the errors in the table above")
    if outcome.best_config_path is not None:
        print(f"best config: {outcome.best_config_path}")
        print(f"rerun it:    study train --config {shlex.quote(str(outcome.best_config_path))}")
    print(f"results:     {outcome.study_dir / TRIALS_FILE}")
    stores = open_study(outcome.study_dir).stores
    if stores.tracking_remote:
        print(f"MLflow:      {runs_address(outcome.study_dir)}")
    else:
        where = "" if stores.tracking_local else f" on {stores.shown()}"
        ui = f"study ui {shlex.quote(str(outcome.study_dir))}"
        print(f"MLflow UI:   {ui}{where}   (then {runs_address(outcome.study_dir)})")
    if outcome.tracking_behind:
        print(f"error: {outcome.tracking_behind}", file=sys.stderr)
        return 1
    return 0
