"""The study layer's cost per trial as studies grow: it must stay flat in the number of trials.

Runs ``study launch`` (in this process, Ray started once) with a trivial trainable in place of
the fine-tuning run (two epochs of a 50 ms sleep, reporting what a trial reports), through the
same driver, Optuna searcher (TPE over one parameter), scheduler, MLflow writer and result
table, at N = 10, 100 and 500 trials, ``max_concurrent: 2``, for two record back-ends:

- ``folder``: the default, the study folder's own SQLite files (``optuna.db``, ``mlflow.db``);
- ``postgres``: Optuna on PostgreSQL, MLflow behind a real ``mlflow server`` on PostgreSQL (both
  started here and thrown away, as in the tests: ``tests/servers.py``).

Per run it prints the study layer's overhead a trial, measured between the first round of trial
ends and the last end (so Ray's start-up is not spread over the trials): ``(t_last_end -
t_end[slots]) / (N - slots) x slots - a trial's own time``, and the same over the last tenth of the
trials (where any cost that grows with the number of trials is largest); then the time of ``study
status`` and ``study report`` on the finished study. A small study has few trial ends to measure
between, so sizes up to 20 run ``--repeats`` times (default 5) and report the median. Its last
line is ``overhead ratio 500/10: <x>``: the larger of the two back-ends' ratio of the overhead a
trial at the largest N to that at the smallest (target <= 1.3; ``study status`` target <= 2 s at 500).

    python bench/study_overhead.py                       # 10, 100, 500 on both back-ends (~15 min on 2 cores)
    python bench/study_overhead.py --sizes 10 50 --backends folder   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EPOCHS, SLEEP_S, SLOTS = 2, 0.05, 2


def trivial_trial(params: dict[str, Any], *, base: dict[str, Any], trials_root: str) -> None:
    """The cheapest trial: what a fine-tuning trial reports, without the training."""
    from ray import tune

    value = 0.5 + 0.4 * float(params.get("optim.lr", 0.01))
    for epoch in range(1, EPOCHS + 1):
        time.sleep(SLEEP_S)
        metrics = {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": value, "best_val_acc": value}
        tune.report({**metrics, "best_epoch": epoch, "test_acc": value, "n_train": 8, "n_val": 8, "n_test": 8})


def spec_for(name: str, out: Path, trials: int, tracking: str | None, storage: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "output_dir": str(out),
        "search_space": {"optim.lr": {"type": "loguniform", "low": 1.0e-3, "high": 1.0e-1}},
        "num_samples": trials,
        "max_concurrent": SLOTS,
        "scheduler": {"name": "fifo"},
        "tracking_uri": tracking,
        "optuna_storage": storage,
        "base": {
            "data": {"dataset": "embedded-fashion-mnist", "sampling_rate": 0.05, "image_size": 32, "batch_size": 8},
            "model": {"backbone": "mobilenet_v2", "weights": None},
            "optim": {"epochs": EPOCHS, "steps_per_epoch": 1},
        },
    }


def trial_ends(out: Path) -> tuple[list[float], float]:
    """(every trial's end, driver side, sorted; the mean of the trials' own time) from the table and MLflow."""
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    from study.record import StudyFolder, StudyRecord

    folder = StudyFolder(out)
    record = StudyRecord.load(folder)
    client = MlflowClient(record.stores(folder).tracking_uri)
    table = pq.read_table(folder.trials_file).to_pylist()
    ends = sorted(client.get_run(r["mlflow_run_id"]).info.end_time / 1000 for r in table)
    busy = sum(float(r["time_total_s"]) for r in table) / len(table)
    return ends, busy


def per_trial(ends: list[float], busy: float, share: float = 1.0) -> float:
    """The slot time a trial costs beyond its own, over the last ``share`` of the trial ends: with
    every slot busy, ``SLOTS`` trials end per ``SLOTS x (own time + overhead)``, so k ends after a
    given one take k / SLOTS rounds (the first ``SLOTS`` ends are the first round: not counted)."""
    first = max(SLOTS - 1, int(len(ends) * (1 - share)) - 1)
    span = ends[-1] - ends[first]
    return span / max(1, len(ends) - 1 - first) * SLOTS - busy


@contextlib.contextmanager
def backend(name: str, root: Path) -> Iterator[tuple[str | None, Any]]:
    """(tracking URI, a function naming a fresh Optuna storage) of a back-end, its servers running."""
    if name == "folder":
        yield None, lambda _study: None
        return
    from tests.servers import MlflowServer, Postgres, postgres_root

    pg_root = postgres_root()
    postgres = Postgres(pg_root / "cluster").init()
    postgres.start()
    os.environ["PGPASSWORD"] = postgres.password
    server = MlflowServer(postgres.url(postgres.create_database("mlflow")), root / "artifacts", postgres.env())
    server.artifacts.mkdir()
    server.start()
    try:
        yield server.url, lambda study: postgres.url(postgres.create_database(f"optuna_{study}"))
    finally:
        server.kill()
        postgres.stop("immediate")


def run(name: str, root: Path, size: int, tracking: str | None, storage: str | None) -> dict[str, float]:
    import study.run.driver
    from study.cli import main
    from study.reporting import study_status, write_report

    study.run.driver.TRAINABLE = trivial_trial  # type: ignore[assignment]
    out = root / name
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec_for(name, out, size, tracking, storage)))
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["launch", str(path)])
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{name}: study launch exited {code}")
    ends, busy = trial_ends(out)
    timed = time.monotonic()
    status = study_status(out)
    status_s = time.monotonic() - timed
    assert sum(v for k, v in status.counts.items() if k in ("FINISHED", "FAILED")) == size, status.render()
    timed = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        write_report(out)
    report_s = time.monotonic() - timed
    return {
        "wall_s": wall,
        "overhead_per_trial_s": per_trial(ends, busy),
        "overhead_last_tenth_s": per_trial(ends, busy, 0.1),
        "status_s": status_s,
        "report_s": report_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--backends", nargs="+", default=["folder", "postgres"], choices=["folder", "postgres"])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each size up to 20 (the median is kept)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=SLOTS, include_dashboard=False, logging_level="ERROR")
    figures: dict[str, dict[int, dict[str, float]]] = {}
    print(f"# study layer overhead, {SLOTS} at a time, trivial trials ({EPOCHS} x {SLEEP_S} s), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends:
            root = Path(tmp) / name
            root.mkdir()
            with backend(name, root) as (tracking, storage_for):
                for size in args.sizes:
                    runs = []
                    for repeat in range(args.repeats if size <= 20 else 1):
                        label = f"{name}{size}r{repeat}"
                        runs.append(run(label, root, size, tracking, storage_for(label)))
                    result = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    figures.setdefault(name, {})[size] = result
                    cells = "  ".join(f"{k} {v:.3f}" for k, v in result.items())
                    print(f"{name:<8} N={size:<4} {cells}", flush=True)
    ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    small, large = min(args.sizes), max(args.sizes)
    ratios = {
        name: by_size[large]["overhead_per_trial_s"] / by_size[small]["overhead_per_trial_s"]
        for name, by_size in figures.items()
    }
    for name, ratio in ratios.items():
        print(f"{name}: overhead ratio {large}/{small}: {ratio:.2f}")
    print(f"overhead ratio {large}/{small}: {max(ratios.values()):.2f}")


if __name__ == "__main__":
    main()
