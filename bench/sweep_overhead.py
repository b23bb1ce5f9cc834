"""Sweep overhead: how much of a study's slot time goes to trials, and where the rest goes.

Runs the same study twice with ``study launch``, side by side: trial after trial in reused
worker processes (``reuse_actors: true``, the default) and with a fresh process per trial.
Per mode it prints the sweep efficiency (the trials' own time / (wall time x slots); goal
>= 0.85) and the overhead per trial, then where the overhead goes, from the
MLflow runs (driver-side start and end of each trial) and Tune's per-trial results:

- ``startup``: from the study's parent run to the first trial's start (Ray, Optuna, MLflow);
- ``handoff``: from a trial's end to the start of the trial that takes its slot (Tune's
  scheduling, the Optuna suggestion, the worker process start or reset);
- ``trial_edges``: a trial's window (driver-side start to end) beyond its own time (the
  round trips to the driver: results, checkpoints, MLflow writes);
- ``idle_at_end``: slots with no trial left to run while the last trials finish;
- ``shutdown``: from the last trial's end to the end of the study;
- ``setup_in_trial``: the first epoch's time beyond a later epoch's (model, weights, data;
  counted as trial time, listed for information).
The ``*_per_trial_s`` parts add up to ``overhead_per_trial_s``; all but ``idle_at_end`` (how
the trials' lengths happen to pack into the slots) are Ray, Optuna and MLflow's
``framework_overhead_per_trial_s`` (goal <= 2 s).

    python bench/sweep_overhead.py                      # the demo study as shipped (~5 min on 2 cores)
    python bench/sweep_overhead.py --trials 6 --epochs 4  # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TrialTimes:
    start: float  # driver: the trial's MLflow run created (trial start)
    end: float  # driver: the run terminated (trial end)
    busy: float  # Tune's time_total_s: the trial's own time
    first_epoch: float
    later_epoch: float | None


@dataclass(frozen=True)
class StudyTimes:
    start: float
    end: float
    trials: list[TrialTimes]


def run_study(spec: dict, folder: Path) -> StudyTimes:
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    subprocess.run(
        [sys.executable, "-m", "study", "launch", str(path)],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = MlflowClient(f"sqlite:///{Path(spec['output_dir']) / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec["name"])
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    trials = []
    for run in runs:
        if run is parent:
            continue
        tune_dir = next((Path(spec["output_dir"]) / "tune").glob(f"*_{run.data.tags['tune.trial_id']}_*"))
        results = [json.loads(line) for line in (tune_dir / "result.json").open()]
        epochs = [r["time_this_iter_s"] for r in results]
        trials.append(
            TrialTimes(
                run.info.start_time / 1000,
                run.info.end_time / 1000,
                results[-1]["time_total_s"],
                epochs[0],
                statistics.median(epochs[1:-1]) if len(epochs) > 2 else None,
            )
        )
    return StudyTimes(parent.info.start_time / 1000, parent.info.end_time / 1000, trials)


def breakdown(times: StudyTimes, slots: int) -> dict[str, float]:
    """The figures, the overhead split so that its parts add up to ``overhead_per_trial_s``:
    every slot runs from the study's start to its end, so slots x wall = the trials' own time
    + slots x startup + the handoffs + the trials' edges + idle slots at the end + slots x shutdown."""
    starts = sorted(t.start for t in times.trials)
    ends = sorted(t.end for t in times.trials)
    wall = times.end - times.start
    busy = sum(t.busy for t in times.trials)
    n = len(times.trials)
    handoffs = [s - e for s, e in zip(starts[slots:], ends[: n - slots], strict=True)]
    edges = [t.end - t.start - t.busy for t in times.trials]
    idle_at_end = sum(ends[-1] - e for e in ends[-slots:])
    setups = [t.first_epoch - t.later_epoch for t in times.trials if t.later_epoch is not None]
    return {
        "sweep_efficiency": busy / (wall * slots),
        "overhead_per_trial_s": (wall * slots - busy) / n,
        "framework_overhead_per_trial_s": (wall * slots - busy - idle_at_end) / n,
        "startup_per_trial_s": sum(s - times.start for s in starts[:slots]) / n,
        "handoff_per_trial_s": sum(handoffs) / n,
        "trial_edges_per_trial_s": sum(edges) / n,
        "idle_at_end_per_trial_s": idle_at_end / n,
        "shutdown_per_trial_s": slots * (times.end - ends[-1]) / n,
        "startup_s": starts[0] - times.start,
        "handoff_s": statistics.mean(handoffs) if handoffs else 0.0,
        "setup_in_trial_s": statistics.mean(setups) if setups else 0.0,
    }


GOALS = {"sweep_efficiency": ">=0.85", "framework_overhead_per_trial_s": "<=2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "studies" / "demo.yaml")
    parser.add_argument("--trials", type=int, help="num_samples (default: the spec's)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the spec's)")
    args = parser.parse_args()
    spec = yaml.safe_load(args.spec.read_text())
    if args.trials:
        spec["num_samples"] = args.trials
    if args.epochs:
        optim = spec.setdefault("base", {}).setdefault("optim", {})
        optim["epochs"] = args.epochs
        optim["lr_decay_epochs"] = [e for e in optim.get("lr_decay_epochs", []) if e < args.epochs]
    slots = int(spec.get("max_concurrent", 2))
    device = f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"# {spec['name']}: {spec['num_samples']} trials, {slots} at a time, "
        f"{spec['base']['optim']['epochs']} epochs, device: {device}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for label, reuse in (("reused-workers", True), ("fresh-process", False)):
            folder = Path(tmp) / ("reuse" if reuse else "fresh")
            folder.mkdir()
            study = {**spec, "name": f"bench-{folder.name}", "output_dir": str(folder / "study"), "reuse_actors": reuse}
            figures = breakdown(run_study(study, folder), slots)
            for figure, value in figures.items():
                print(f"{figure + '[' + label + ']':<46} {value:8.3f}   goal {GOALS.get(figure, '-'):<6} {device}")


if __name__ == "__main__":
    main()
