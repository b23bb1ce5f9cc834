"""How long a user waits for the light commands, measured as whole processes (start to exit, the
interpreter's start and every import included) with the child's own peak memory from the kernel
(``os.wait4``'s rusage of that child), median of ``--repeats`` runs, each printed against its goal.

    python bench/cli_latency.py                     # --help, status (10 and 500 trials), list, versions...
    python bench/cli_latency.py --repeats 5 --sizes 10 500 --postgres   # also status on PostgreSQL
    python bench/cli_latency.py --finished runs/demo     # also export-best and sync on a finished study

The studies it reads are written straight into Optuna storages (a folder's own SQLite, and with
``--postgres`` a throwaway PostgreSQL of its own) with the trials a finished study has: no training.
Goals (issue 33): ``--help`` <= 0.6 s; ``status`` <= 1.5 s and <= 250 MB at 10 and 500 trials; ``list`` <= 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOALS = {"help": (0.6, None), "status": (1.5, 250.0), "list": (1.5, None)}


def measure(argv: list[str], repeats: int, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(median seconds, the largest peak RSS in MB) of ``study ARGV`` run ``repeats`` times."""
    seconds, peaks = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "study", *argv],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert child.stderr is not None
        err = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS (KB on Linux)
        seconds.append(time.perf_counter() - started)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"study {' '.join(argv)} failed ({child.returncode}): {err.decode()[-500:]}")
        peaks.append(usage.ru_maxrss / 1024)
    return statistics.median(seconds), max(peaks)


def fake_study(root: Path, trials: int, optuna_url: str | None = None) -> Path:
    """A finished study folder of ``trials`` trials: its spec, record, table-less Optuna study."""
    import optuna
    import yaml

    from study.record.attrs import TUNE_TRIAL_ATTR, UID_ATTR

    folder = root / f"study-{trials}-{'pg' if optuna_url else 'folder'}"
    folder.mkdir(parents=True)
    name = folder.name
    spec = {"name": name, "output_dir": str(folder), "search_space": "demo", "num_samples": trials,
            "metric": "best_val_acc", "selection": "best_val", "base": {}}  # fmt: skip
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    record = {"experiment_id": "1", "parent_run_id": "p", "uid": "u", "tracking_uri": None,
              "optuna_storage": optuna_url}  # fmt: skip
    (folder / "study.json").write_text(json.dumps(record))
    import sqlite3

    with sqlite3.connect(folder / "mlflow.db") as db:  # what `status` checks of the folder's own MLflow store
        db.execute("CREATE TABLE runs (run_uuid TEXT)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna_url or f"sqlite:///{folder / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr(UID_ATTR, "u")
    for i in range(trials):
        trial = study.ask()
        trial.set_user_attr(TUNE_TRIAL_ATTR, f"t{i:05d}")
        for epoch in range(1, 5):
            trial.report(0.5 + 0.01 * epoch, epoch)
        study.tell(trial, 0.6)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 500])
    parser.add_argument("--postgres", action="store_true", help="also status on a throwaway PostgreSQL")
    parser.add_argument(
        "--finished", type=Path, metavar="STUDY_DIR",
        help="also export-best and sync (nothing pending) on this finished study folder (any launched one)",
    )  # fmt: skip
    args = parser.parse_args()
    rows: list[tuple[str, float, float, str]] = []

    def row(label: str, goal: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        seconds, mb = measure(argv, args.repeats, env)
        limit_s, limit_mb = GOALS.get(goal, (None, None))
        verdict = []
        if limit_s is not None:
            verdict.append(f"{'met' if seconds <= limit_s else 'NOT met'} (<= {limit_s} s)")
        if limit_mb is not None:
            verdict.append(f"{'met' if mb <= limit_mb else 'NOT met'} (<= {limit_mb:.0f} MB)")
        rows.append((label, seconds, mb, ", ".join(verdict) or "-"))
        print(f"{label:44s} {seconds:6.2f} s {mb:7.0f} MB   {rows[-1][3]}", flush=True)

    row("study --help", "help", ["--help"])
    row("study status --help", "help", ["status", "--help"])
    row("study versions", "", ["versions"])
    row("study list", "list", ["list"])
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = fake_study(Path(tmp), size)
            row(f"study status ({size} trials, folder SQLite)", "status", ["status", str(folder)])
        folder = Path(tmp) / f"study-{args.sizes[0]}-folder"
        row("study ui --print-only", "", ["ui", str(folder), "--print-only"])
        row("study dashboard --print-only", "", ["dashboard", str(folder), "--print-only"])
        if args.finished is not None:
            out = Path(tmp) / "export"
            row("study export-best (finished study)", "", ["export-best", str(args.finished), "--out", str(out)])
            row("study sync (finished study, nothing pending)", "", ["sync", str(args.finished)])
        if args.postgres:
            from tests.servers import Postgres, postgres_root

            root = postgres_root()
            server = Postgres(root / "cluster").init()
            server.start()
            env = {**os.environ, "PGPASSWORD": server.password}
            os.environ["PGPASSWORD"] = server.password
            try:
                for size in args.sizes:
                    url = server.url(server.create_database(f"optuna_{size}"))
                    folder = fake_study(Path(tmp), size, url)
                    row(f"study status ({size} trials, PostgreSQL)", "status", ["status", str(folder)], env)
            finally:
                server.stop("immediate")
    print(f"median of {args.repeats} runs each, whole processes; peak RSS: the largest of each child's own (os.wait4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
