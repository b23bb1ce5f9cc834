"""The study's result table (one typed row per trial) and the best configuration."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from finetune.reported import NUM_REPORTED_SINGULAR_VALUES

METRIC_COLUMNS = ("best_val_acc", "best_epoch", "val_acc", "test_acc", "train_loss", "epoch", "time_total_s")
COST_COLUMNS = ("wall_s", "device_s", "device_gpu")  # what a trial cost (trainables.finetune_trial.TuneReporter.cost)
SIZE_COLUMNS = ("n_train", "n_val", "n_test")  # images in each split of the trial
# the smallest singular values of the last training batch's features at the trial's last epoch
SPECTRUM_COLUMNS = tuple(f"sv_min_{i}" for i in range(1, NUM_REPORTED_SINGULAR_VALUES + 1))
INT_COLUMNS = ("best_epoch", "epoch", "task", *SIZE_COLUMNS)
# a task sequence's: the task of the last epoch, each task's test accuracy now and at the end of its own training
TASK_COLUMN = re.compile(r"task|task_acc_(\d+)|task_learned_acc_(\d+)")


def task_columns(rows: Sequence[TrialRow]) -> list[str]:
    """The task-sequence columns the trials reported (none without a task sequence), tasks in order."""
    names = {k for r in rows for k in r.metrics if TASK_COLUMN.fullmatch(k)}

    def order(name: str) -> tuple[int, int]:
        match = TASK_COLUMN.fullmatch(name)
        assert match is not None
        now, learned = match.groups()
        return (0, 0) if name == "task" else (1, int(now)) if now else (2, int(learned))

    return sorted(names, key=order)


@dataclass(frozen=True)
class TrialRow:
    trial_id: str
    status: str  # "finished" or "failed"
    params: Mapping[str, Any]  # the searched parameters of this trial only
    metrics: Mapping[str, Any]  # its last reported result
    mlflow_run_id: str | None = None
    optuna_trial_number: int | None = None
    error: str | None = None
    retries: int = 0  # failures Tune recovered from (retried from the trial's last saved epoch)
    early_stopped: bool = False
    trial_dir: str | None = None  # the trial's folder, relative to the study folder
    has_weights: bool = False  # whether it holds the selected weights (not for early-stopped trials)


def _arrow_type(values: Sequence[Any]) -> pa.DataType:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


DIGEST_COLUMNS = {"training": "digest_train", "validation": "digest_val", "test": "digest_test"}


def _digest(metrics: Mapping[str, Any], context: str) -> str | None:
    """A split's digest from a trial's reported ``data_inputs`` (None when it reported none)."""
    raw = metrics.get("data_inputs")
    if not isinstance(raw, str) or not raw:
        return None
    found = json.loads(raw).get(context)
    return str(found["digest"]) if found else None


def tsvd_text(metrics: Mapping[str, Any]) -> str | None:
    """How a trial's TSVD evaluated (``model.tsvd_eval``), from its reported ``tsvd_r`` and
    ``tsvd_per_batch``: ``r=2, per batch`` or ``r=2, whole split``; None without TSVD."""
    r = metrics.get("tsvd_r")
    if not r:
        return None
    return f"r={int(r)}, " + ("per batch" if metrics.get("tsvd_per_batch") else "whole split")


def precision_text(metrics: Mapping[str, Any]) -> str | None:
    """Which precision the trial trained in (``bf16`` autocast or ``fp32``), from its reported ``bf16``."""
    flag = metrics.get("bf16")
    return None if flag is None else ("bf16" if flag else "fp32")


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def trials_table(rows: Sequence[TrialRow]) -> pa.Table:
    """Typed columns: identity, status, one ``param.<name>`` per searched parameter (null where
    it does not apply to a trial), then the metrics."""
    param_names = sorted({name for row in rows for name in row.params})
    columns: dict[str, tuple[list[Any], pa.DataType | None]] = {
        "trial_id": ([r.trial_id for r in rows], pa.string()),
        "optuna_trial_number": ([r.optuna_trial_number for r in rows], pa.int64()),
        "mlflow_run_id": ([r.mlflow_run_id for r in rows], pa.string()),
        "status": ([r.status for r in rows], pa.string()),
        "early_stopped": ([r.early_stopped for r in rows], pa.bool_()),
        "error": ([r.error for r in rows], pa.string()),
        "retries": ([r.retries for r in rows], pa.int64()),
        "trial_dir": ([r.trial_dir for r in rows], pa.string()),
        "has_weights": ([r.has_weights for r in rows], pa.bool_()),
    }
    for name in param_names:
        columns[f"param.{name}"] = ([r.params.get(name) for r in rows], None)
    for name in (*METRIC_COLUMNS, *COST_COLUMNS, *SIZE_COLUMNS, *SPECTRUM_COLUMNS, *task_columns(rows)):
        values = [_clean(r.metrics.get(name)) for r in rows]
        columns[name] = (values, pa.int64() if name in INT_COLUMNS else pa.float64())
    columns["tsvd"] = ([tsvd_text(r.metrics) for r in rows], pa.string())
    columns["precision"] = ([precision_text(r.metrics) for r in rows], pa.string())
    # torch, its threads, the CPU's instruction set or the GPU: what a trial's numbers depend on beyond its config
    columns["engine"] = ([r.metrics.get("engine") for r in rows], pa.string())
    # when the trial reported its last result (Tune's timestamp, Unix seconds): "latest" across merged studies
    columns["ended_at"] = ([_clean(r.metrics.get("timestamp")) for r in rows], pa.float64())
    for context, column in DIGEST_COLUMNS.items():  # which images each split held (finetune.digests)
        columns[column] = ([_digest(r.metrics, context) for r in rows], pa.string())
    arrays, names = [], []
    for name, (values, dtype) in columns.items():
        dtype = dtype or _arrow_type(values)
        if dtype == pa.string():
            values = [None if v is None else str(v) for v in values]
        elif dtype == pa.int64():
            values = [None if v is None else int(v) for v in values]
        arrays.append(pa.array(values, type=dtype))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".parquet.partial")
    pq.write_table(table, tmp)
    tmp.replace(path)


def row_params(row: Mapping[str, Any]) -> dict[str, Any]:
    """The searched parameters of a ``trials.parquet`` row (its non-null ``param.*`` columns)."""
    return {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None}


def params_text(params: Mapping[str, Any], name: Callable[[str], str] = lambda k: k) -> str:
    """``name=value, ...`` of searched parameters, floats to 3 significant digits."""
    return ", ".join(f"{name(k)}={v:.3g}" if isinstance(v, float) else f"{name(k)}={v}" for k, v in params.items())


def counts_for(metric: str, status: str, early_stopped: bool) -> bool:
    """Whether a trial's value of ``metric`` can rank it: a grid's test accuracy only from a trial
    that ran to its last epoch (validation accuracy so far counts from any trial)."""
    return metric != "test_acc" or (status == "finished" and not early_stopped)


def best_row(rows: Sequence[TrialRow], metric: str = "best_val_acc") -> TrialRow | None:
    """Highest ``metric`` (the study's selection metric: validation accuracy for a search; the last
    epoch's test accuracy for a fixed-setting grid, which selects nothing); ties go to the earlier
    trial. Early-stopped trials never reach a final test accuracy, so they never win on it."""
    candidates = [
        r for r in rows if _clean(r.metrics.get(metric)) is not None and counts_for(metric, r.status, r.early_stopped)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: float(r.metrics[metric]))


def format_table(table: pa.Table) -> str:
    """A plain-text table of trials for the terminal."""
    metric = ["best_val_acc"] if any(v is not None for v in table.column("best_val_acc").to_pylist()) else []
    shown = [c for c in table.column_names if c.startswith("param.")] + ["status", "epoch", *metric, "test_acc"]
    header = ["trial"] + [c.removeprefix("param.") for c in shown]
    lines = [header]
    data = table.to_pylist()
    for row in data:
        cells = [str(row["trial_id"])]
        for c in shown:
            v = row[c]
            if isinstance(v, float):
                cells.append(f"{v:.4g}")
            else:
                cells.append("-" if v is None else str(v))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)
