"""``study``: the command-line interface. Side effects (Ray, printing, exit codes) live here."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from finetune import InputError, NonFiniteLossError, PrintProgress, config_to_yaml, fit, load_config
from finetune.engine import use_threads
from finetune.registry import Registry
from study.record.folder import TRIALS_FILE, StudyFolder, open_study
from study.record.stores import Stores
from study.spec.errors import StudyError
from study.spec.load import load_spec
from study.spec.model import StudySpec
from study.spec.uris import has_password, is_server_database, redact

if TYPE_CHECKING:
    from study.run.driver import StudyOutcome


@contextmanager
def ray_session(spec: StudySpec) -> Iterator[None]:
    """Start Ray in-process (or join ``ray_address`` / ``RAY_ADDRESS``) for the duration of a study; SIGTERM then
    stops the study as Ctrl-C does (resumable), and a watchdog ends a killed driver's Ray."""
    import ray

    if ray.is_initialized():
        yield
        return
    if spec.cluster_address:  # a cluster's own resources; num_cpus cannot be set when joining
        ray.init(address=spec.cluster_address, logging_level=logging.WARNING)
    else:
        from study.run import watchdog

        # a killed driver cannot shut its local Ray down: the watchdog ends what it leaves behind; it
        # starts first, so a driver killed while Ray starts leaves nothing either
        watchdog.start(os.getpid())
        ray.init(num_cpus=spec.ray_num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM)
    if on_main_thread:  # after ray.init, whose own SIGTERM handler aborts the process
        signal.signal(signal.SIGTERM, lambda _sig, _frame: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
        ray.shutdown()


def runs_address(study_dir: Path, host: str = "127.0.0.1", port: int = 5000) -> str:
    """The study's runs table in the MLflow UI (MLflow 3 opens an experiment on its GenAI
    overview by default; the runs table is this address): on the study's tracking server when it
    has one, else where ``study ui`` serves it."""
    opened = open_study(study_dir)
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


def cmd_launch(args: argparse.Namespace) -> int:
    import torch

    from study.record.disk import check_free
    from study.record.lock import driver_lock
    from study.record.stores import choose
    from study.record.tracking import check_stores
    from study.run import warm_start
    from study.run.driver import StudyOutcome, check_study_dir, run_study
    from study.spec.checks import check_inputs, check_local_resources, check_output_dir

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
    check_free(spec.study_dir, spec.max_concurrent, "output_dir")
    seed = warm_start.seed_trials(spec)  # its source read (one line if it is not there) before Ray starts
    print(f"study '{spec.name}' -> {spec.study_dir}", flush=True)
    if spec.warm_start.source is not None:
        print(seed.summary(), flush=True)
    with driver_lock(spec.study_dir, stores.optuna_url, spec.name, "output_dir"), ray_session(spec):
        outcome = run_study(spec, choice, seed=seed)
        return confirm_then_report(spec, outcome, ray_started=True)


def confirm_then_report(spec: StudySpec, outcome: StudyOutcome, ray_started: bool = False) -> int:
    """The search's outcome, then its confirmation on fresh seeds where the spec asks for one and
    the search ran to its end (``study.run.confirm``)."""
    from study.run import confirm

    code = report_outcome(spec, outcome)
    if code != 0 or outcome.interrupted or not confirm.pending(spec):
        return code
    if ray_started:
        done = confirm.run_confirmation(spec)
    else:
        with ray_session(spec):
            done = confirm.run_confirmation(spec)
    if not done:
        print(f"interrupted: continue with `study resume {shlex.quote(str(spec.study_dir))}`", file=sys.stderr)
        return 130
    where = spec.study_dir / confirm.CONFIRM_DIR
    print(
        f"confirmed:   the top {spec.confirm.top} on {spec.confirm.seeds} fresh seeds in {where}; "
        f"`study report {shlex.quote(str(spec.study_dir))}` gives the headline numbers"
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from study.record.budget import parse_budget, raise_limits
    from study.record.disk import check_free
    from study.record.lock import driver_lock
    from study.record.outbox import PENDING_FILE
    from study.run.driver import StudyOutcome, check_resumable, resume_study

    limits = parse_budget(args.budget) if args.budget is not None else {}
    checked = check_resumable(Path(args.study_dir))
    folder, spec = checked.folder, checked.spec
    if checked.complete:
        if (folder.path / PENDING_FILE).is_file():  # finished, but MLflow missed part of it
            return cmd_sync(args)
        return confirm_then_report(spec, StudyOutcome.complete(folder))
    assert checked.record is not None
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
    from study.record.lock import driver_lock
    from study.run.sync import sync_study

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
        from study.record.results import format_table

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


def cmd_train(args: argparse.Namespace) -> int:
    from finetune.regularizers import BSSConfig

    config = load_config(args.config)
    bss = BSSConfig.of(config)
    print(
        f"training {config.model.backbone} with {config.regularizer.name}"
        + (f" + BSS(k={bss.k}, eta={bss.eta})" if bss.enabled else ""),
        flush=True,
    )
    use_threads(config)
    result = fit(config, [PrintProgress()])
    if args.output:
        import torch

        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(result.best_state, out / "best_model.pt")
        (out / "config.yaml").write_text(config_to_yaml(config))
        print(f"weights: {out / 'best_model.pt'} (with config.yaml: `study analyze ... --run {out}`)")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    import matplotlib

    from finetune.analysis import corresponding_angles, feature_spectrum, load_run, spectrum_table

    matplotlib.use("Agg")  # files only, no display
    from finetune.plots import plot_angles, plot_spectrum
    from study.record.results import write_table

    labels = args.label or [Path(r).name for r in args.run]
    if len(labels) != len(args.run):
        raise StudyError(f"--label: give one label per --run ({len(args.run)}), got {len(labels)}")
    runs = [load_run(r) for r in args.run]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.analysis == "spectra":
        table = spectrum_table(
            {label: feature_spectrum(run, args.batches) for label, run in zip(labels, runs, strict=True)}
        )
        write_table(table, out / "spectra.parquet")
        plot_spectrum(table, out / "spectra.png")
        written = ["spectra.parquet", "spectra.png"]
    else:
        if len(runs) != 1:
            raise StudyError("--run: angles compare one run with its pretrained start; pass exactly one --run")
        table = corresponding_angles(runs[0], args.layers)
        write_table(table, out / "angles.parquet")
        plot_angles(table, out / "angles.png")
        written = ["angles.parquet", "angles.png"]
    for name in written:
        print(out / name)
    return 0


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
    for registry in registries():
        print(f"{registry.field} ({registry.kind}):")
        width = max(len(name) for name in registry)
        for name, description in registry.describe():
            print(f"  {name.ljust(width)}  {description}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from study.reporting.status import study_status

    print(study_status(Path(args.study_dir).resolve()).render())
    return 0


def cmd_export_best(args: argparse.Namespace) -> int:
    from study.reporting.export import export_best

    for path in export_best(Path(args.study_dir).resolve(), args.top, Path(args.out) if args.out else None):
        print(path)
    if args.register is not None:
        from study.reporting.export import register_best

        uri = register_best(Path(args.study_dir).resolve(), args.register or None)
        print(f"registered: {uri} (load it with mlflow.pytorch.load_model({uri!r}))")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from study.reporting.data import ReportOptions
    from study.reporting.report import write_report

    options = ReportOptions(correction=args.correction, interval=args.interval, seed=args.seed)
    for path in write_report(Path(args.study_dir).resolve(), options):
        print(path)
    return 0


LOOPBACK = ("127.0.0.1", "localhost", "::1")
WRITES = {"MLflow": "its UI and API write runs, tags and models", "optuna-dashboard": "it edits trials and notes"}
# how to let others in without opening the record to the network, per server
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
    opened = open_study(Path(args.study_dir))
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
    opened = open_study(Path(args.study_dir))
    folder, stores = opened.folder, opened.stores
    if stores.optuna_local and not folder.optuna_file.is_file():
        raise StudyError(f"STUDY_DIR: no {folder.optuna_file.name} in {folder.path}; pass the output_dir of a study")
    check_server_args(args.host, args.port, "optuna-dashboard")
    if is_server_database(stores.optuna_url):
        from study.record.tracking import check_database

        check_database(stores.optuna_url, "optuna_storage")
    command = dashboard_command(stores, args.host, args.port)
    print(" ".join(shlex.quote(redact(c)) for c in command), flush=True)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"the dashboard: http://{shown}:{args.port}/dashboard", flush=True)
    return serve(command, args.print_only)


Arg = tuple[tuple[str, ...], dict[str, Any]]
STUDY_DIR: Arg = (("study_dir",), {"help": "the study's output_dir"})


def server_args(port: int) -> list[Arg]:
    return [
        STUDY_DIR,
        (("--host",), {"default": "127.0.0.1", "help": "bind address (default 127.0.0.1: this machine only)"}),
        (("--port",), {"type": int, "default": port}),
        (("--print-only",), {"action": "store_true", "help": "print the command instead of running it"}),
    ]


# name -> (function, help, description, arguments): every subcommand in one table


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


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str, list[Arg]]] = {
    "launch": (
        cmd_launch,
        "run a study from a YAML spec",
        "Run a study from a YAML spec.",
        [(("spec",), {"help": "study spec, e.g. studies/demo.yaml"})],
    ),
    "resume": (
        cmd_resume,
        "continue an interrupted study",
        "Continue a study stopped by Ctrl-C, a killed driver or its budget: unfinished trials continue from their "
        "last checkpoint, in their own MLflow runs, up to num_samples trials in all.",
        [
            STUDY_DIR,
            (
                ("--budget",),
                {
                    "metavar": "LIMITS",
                    "help": "new limits, e.g. gpu_hours=4 or gpu_hours=4,wall_hours=12 (none lifts one); the hours "
                    "already spent count against them",
                },
            ),
        ],
    ),
    "sync": (
        cmd_sync,
        "replay into MLflow what it missed while its server did not answer",
        "Bring MLflow up to date with the study folder: replay the records kept while the tracking server did "
        "not answer (each once), close runs left open, add missing run ids to trials.parquet.",
        [STUDY_DIR],
    ),
    "list": (
        cmd_list,
        "what every registry offers: spaces, protocols, datasets, backbones, ...",
        "The names a spec can use, with a description each.",
        [],
    ),
    "status": (
        cmd_status,
        "trials running / finished / failed and the best so far",
        "Progress of a study, also while it runs (read from its MLflow runs).",
        [STUDY_DIR],
    ),
    "export-best": (
        cmd_export_best,
        "YAML configs of the best trials, runnable by `study train`",
        "Write the top trials' resolved configs (with their checkpoint paths).",
        [
            STUDY_DIR,
            (
                ("--top",),
                {
                    "type": int,
                    "default": 1,
                    "help": "how many trials (by the study's selection metric: best_val_acc, or a grid's test_acc)",
                },
            ),
            (("--out",), {"help": "folder for the YAML files (default: STUDY_DIR/export)"}),
            (
                ("--register",),
                {
                    "nargs": "?",
                    "const": "",
                    "metavar": "NAME",
                    "help": "also log the best trial's weights as an MLflow model and register it as NAME "
                    "(default: the study's name) in MLflow's model registry",
                },
            ),
        ],
    ),
    "report": (
        cmd_report,
        "Table-2 style table, BSS gains, Fig. 3(d) sensitivity, importances, parallel coordinates",
        "Write STUDY_DIR/report (Markdown + PNG + summary.parquet) and log it to the study's parent MLflow run.",
        [
            STUDY_DIR,
            (
                ("--correction",),
                {
                    "choices": ["holm", "bh"],
                    "default": "holm",
                    "help": "each table's p adjusted for its family: holm (family-wise error, default) or bh "
                    "(Benjamini-Hochberg, false discovery rate)",
                },
            ),
            (
                ("--interval",),
                {
                    "choices": ["t", "bootstrap"],
                    "default": "t",
                    "help": "95%% intervals of means: t (default) or a seeded bootstrap percentile interval",
                },
            ),
            (("--seed",), {"type": int, "default": 0, "help": "seed of the bootstrap and Monte-Carlo resampling"}),
        ],
    ),
    "train": (
        cmd_train,
        "one fine-tuning run from a config (no Ray)",
        "One fine-tuning run from a config YAML, e.g. a study's best.yaml.",
        [
            (("--config",), {"required": True, "help": "config YAML (e.g. runs/demo/best.yaml)"}),
            (("--output",), {"help": "folder to save the selected weights in"}),
        ],
    ),
    "analyze": (
        cmd_analyze,
        "the paper's analyses of finished runs (spectra, angles)",
        "Singular-value spectra of batch features (Fig. 1c-d, 3b-c) or corresponding angles to the "
        "pretrained weights (Eq. 5-6, Fig. 1b); writes Parquet + PNG.",
        [
            (("analysis",), {"choices": ["spectra", "angles"]}),
            (
                ("--run",),
                {
                    "action": "append",
                    "required": True,
                    "help": "folder with config.yaml + best_model.pt; repeat to compare runs (e.g. with/without BSS)",
                },
            ),
            (("--label",), {"action": "append", "help": "a legend label per --run"}),
            (("--out",), {"required": True, "help": "folder for the table and the plot"}),
            (("--batches",), {"type": int, "default": 8, "help": "spectra: batches to average over"}),
            (("--layers",), {"nargs": "+", "help": "angles: conv layer names (default: the backbone's stage ends)"}),
        ],
    ),
    "ui": (cmd_ui, "open the MLflow UI of a study", "Serve the MLflow UI of a study.", server_args(5000)),
    "versions": (
        cmd_versions,
        "the installed dependencies against the supported ranges",
        "Each dependency's installed version beside the range this project supports and was tested on "
        "(compat/supported.py); exit 1 if one is outside it.",
        [],
    ),
    "dashboard": (
        cmd_dashboard,
        "open optuna-dashboard on a study's Optuna storage",
        "Serve optuna-dashboard (pip install -e '.[dashboard]') on the study's Optuna storage (its optuna.db, "
        "or the database named by optuna_storage).",
        server_args(8080),
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study", description="Hyperparameter studies of BSS fine-tuning on Ray Tune.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, help_text, description, arguments) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=description)
        for flags, options in arguments:
            command.add_argument(*flags, **options)
        command.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not cmd_versions:
        from compat.versions import VersionError, check

        try:  # before anything of the study: an untested dependency is one line, nothing started or written
            for warning in check():
                print(f"warning: {warning} (BSS_STUDY_ALLOW_UNTESTED=1: going on untested)", file=sys.stderr)
        except VersionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" lines
    # a clean report: the progress line and the final table, warnings and errors; no INFO lines of
    # MLflow ("Creating initial MLflow database tables", system metrics), no Tune configuration box
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's classic reporter, which verbose=0 silences
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" line per trial
    # a tracking server that does not answer fails a call in seconds, not after MLflow's minutes of
    # retries: the study keeps the record in its folder meanwhile (study.record.outbox) and goes on
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: training diverged: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
