"""Does a warm start pay? On the embedded default: a search at 30% per class, cold and warm-started
from a finished search at 15%, for several searcher seeds; how many trials each needs to reach the
cold search's best validation accuracy.

    python tools/warm_start_trials.py --out runs/warm-start --trials 12 --seeds 0 1 2

Every study is a real ``study launch`` (its own process: Ray, MLflow, Optuna) of the ``demo``
space (regulariser, head lr, BSS on/off, eta, k) on MobileNetV2 at 48 px, a fixed number of steps
per epoch, no early stopping. Trials are counted in Optuna's order (the order the sampler proposed
them). Prints one markdown table (the figures ``docs/warm-start-embedded.md`` records).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]


def spec(out: Path, name: str, rate: float, trials: int, seed: int, warm: Path | None) -> Path:
    values: dict[str, Any] = {
        "name": name,
        "output_dir": str(out / name),
        "search_space": "demo",
        "num_samples": trials,
        "max_concurrent": 2,
        "seed": seed,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": {
            "data": {"dataset": "embedded-fashion-mnist", "sampling_rate": rate, "image_size": 48, "batch_size": 32},
            "model": {"backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"},
            "optim": {"lr": 0.01, "epochs": 4, "steps_per_epoch": 8},
            "seed": 0,
            "num_threads": 1,
        },
    }
    if warm is not None:
        values["warm_start"] = {"from": str(warm)}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def launch(path: Path, log: Path) -> float:
    started = time.monotonic()
    with open(log, "ab") as handle:
        code = subprocess.call(
            [sys.executable, "-m", "study", "launch", str(path)], cwd=REPO, stdout=handle, stderr=handle
        )
    if code != 0:
        raise SystemExit(f"{path}: study launch exited {code}; see {log}")
    return time.monotonic() - started


def curve(folder: Path) -> list[float]:
    """Best validation accuracy so far after each trial, in Optuna's order."""
    rows = sorted(pq.read_table(folder / "trials.parquet").to_pylist(), key=lambda r: r["optuna_trial_number"])
    best, found = float("-inf"), []
    for row in rows:
        value = row.get("best_val_acc")
        best = max(best, float(value)) if value is not None else best
        found.append(best)
    return found


def reached(values: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(values) if v >= target - 1e-12), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "warm-start")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "studies.log"
    source = out / "source-15"
    if not (source / "trials.parquet").is_file():
        seconds = launch(spec(out, "source-15", 0.15, args.trials, 100, None), log)
        print(f"source: {args.trials} trials at 15% in {seconds:.0f} s", flush=True)
    lines = [
        "| searcher seed | cold best val (%) | warm best val (%) | warm trials to reach the cold best | "
        "cold trials to reach it |",
        "| --- | --- | --- | --- | --- |",
    ]
    to_reach: list[int | None] = []
    cold_reach: list[int | None] = []
    for seed in args.seeds:
        for kind, warm in (("cold", None), ("warm", source)):
            name = f"{kind}-30-s{seed}"
            if not (out / name / "trials.parquet").is_file():
                seconds = launch(spec(out, name, 0.3, args.trials, seed, warm), log)
                print(f"{name}: {seconds:.0f} s", flush=True)
        cold, warm_curve = curve(out / f"cold-30-s{seed}"), curve(out / f"warm-30-s{seed}")
        target = cold[-1]
        to_reach.append(reached(warm_curve, target))
        cold_reach.append(reached(cold, target))
        shown = str(to_reach[-1]) if to_reach[-1] is not None else f"not in {args.trials}"
        lines.append(f"| {seed} | {100 * target:.2f} | {100 * warm_curve[-1]:.2f} | {shown} | {cold_reach[-1]} |")
    print("\n".join(lines))
    got = [n for n in to_reach if n is not None]
    cold_n = [n for n in cold_reach if n is not None]
    print(
        f"\nwarm reached the cold best in {len(got)} of {len(to_reach)} seeds"
        + (f", after {statistics.fmean(got):.1f} trials on average" if got else "")
        + (f"; the cold searches found it after {statistics.fmean(cold_n):.1f}" if cold_n else "")
    )


if __name__ == "__main__":
    main()
