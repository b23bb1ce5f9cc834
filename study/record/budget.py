"""Compute budgets: a study stops cleanly once it has spent what its spec (or ``study resume
--budget``) allows, and ``study status`` says what is spent and left.

The ledger ``budget.json`` in the study folder holds the limits in force and what was spent: each
trial's device-seconds as it last reported them (``device_s``: its epochs' wall time x the share of
a GPU it held, x its CPUs on a CPU; every start of it included) and the time the study's drivers
have run (``wall_s``). The driver's ``study.run.stop_callbacks.BudgetCallback`` updates it on every
result and checks it on every step of Tune's loop. Once a limit is reached the searcher asks for
no new trial, every trial that was running finishes the epoch it is in (its state is saved as each
epoch ends), and then the driver stops Tune as Ctrl-C does: the study is interrupted, not ended,
and ``study resume STUDY_DIR --budget gpu_hours=N`` continues it with the new limit. No Ray import
here: ``study status`` reads the ledger.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.record import live
from study.spec import BudgetSpec, StudyError, check_budget

LEDGER_FILE = "budget.json"
LIMITS = ("gpu_hours", "wall_hours")


@dataclass
class Ledger:
    """The limits in force and what the study spent, as kept in ``budget.json``."""

    gpu_hours: float | None = None
    wall_hours: float | None = None
    wall_s: float = 0.0  # the drivers' time, every start included
    device_s: dict[str, float] = field(default_factory=dict)  # Tune trial id -> its device-seconds so far
    on_gpu: bool = False  # whether any trial held a GPU (the unit: GPU-hours, else CPU-hours)

    @property
    def limited(self) -> bool:
        return self.gpu_hours is not None or self.wall_hours is not None

    @property
    def device_hours(self) -> float:
        return sum(self.device_s.values()) / 3600

    @property
    def unit(self) -> str:
        return "GPU-hours" if self.on_gpu else "CPU-hours"

    def spent(self, extra_wall_s: float = 0.0) -> str | None:
        """Why the budget is spent (None while it is not), ``extra_wall_s`` being the running driver's time."""
        if self.gpu_hours is not None and self.device_hours >= self.gpu_hours:
            return f"gpu_hours: {self.device_hours:.4f} of {self.gpu_hours:g} {self.unit} spent"
        wall = (self.wall_s + extra_wall_s) / 3600
        if self.wall_hours is not None and wall >= self.wall_hours:
            return f"wall_hours: {wall:.4f} of {self.wall_hours:g} hours spent"
        return None

    def save(self, folder: Path) -> None:
        path = folder / LEDGER_FILE
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(json.dumps(self.__dict__, indent=1, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, folder: Path) -> Ledger | None:
        """The folder's ledger; None where the study never had one. A damaged file is one line."""
        path = folder / LEDGER_FILE
        if not path.is_file():
            return None
        try:
            values = json.loads(path.read_text())
            ledger = cls(**values)
            ledger.device_s = {str(k): float(v) for k, v in ledger.device_s.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise StudyError(
                f"{path} is damaged ({type(exc).__name__}); delete it (the study then counts from zero) or restore it"
            ) from None
        return ledger


def opened(folder: Path, budget: BudgetSpec) -> Ledger:
    """The ledger of the study in ``folder``: the one kept there, else a new one with the spec's limits."""
    return Ledger.load(folder) or Ledger(budget.gpu_hours, budget.wall_hours)


def parse_budget(text: str) -> dict[str, float | None]:
    """``--budget gpu_hours=2,wall_hours=10`` -> the limits it names (``none`` lifts one); a bad one
    is one line naming the flag."""
    values: dict[str, float | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep or name not in LIMITS:
            raise StudyError(
                f"--budget: {part!r} is not NAME=HOURS with NAME one of {', '.join(LIMITS)}; e.g. --budget gpu_hours=2"
            )
        try:
            values[name] = None if value.lower() in ("none", "null") else float(value)
        except ValueError:
            raise StudyError(f"--budget: {name}={value!r} is not a number of hours; e.g. {name}=2.5") from None
    if not values:
        raise StudyError("--budget: give at least one limit, e.g. --budget gpu_hours=2")
    check_budget(BudgetSpec(**values), "--budget")
    return values


def raise_limits(folder: Path, spec_budget: BudgetSpec, limits: Mapping[str, float | None]) -> Ledger:
    """Put ``limits`` (what ``study resume --budget`` named) in force, the rest of the ledger kept."""
    ledger = opened(folder, spec_budget)
    for name, value in limits.items():
        setattr(ledger, name, value)
    ledger.save(folder)
    return ledger


# the driver's side ---------------------------------------------------------------------------


class Guard:
    """A running study's ledger in the driver: updated from results, saved as it changes, asked by the
    searcher (may a trial start?) and the callback (is it time to stop?)."""

    def __init__(self, folder: Path, ledger: Ledger) -> None:
        self.folder = folder
        self.ledger = ledger
        self.started = time.monotonic()
        self.reason: str | None = None  # why the budget is spent, once it is
        self.waiting: set[str] = set()  # trials running when it was spent that have not ended an epoch since
        self.running: set[str] = set()  # as Tune's loop last saw them
        self.stop_requested = False
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def record(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """A trial ended an epoch: its cost so far; if that spends the budget, the other trials
        running now are waited for (this one has just saved its epoch)."""
        cost = result.get("device_s")
        with self._lock:
            if isinstance(cost, (int, float)) and math.isfinite(cost):
                self.ledger.device_s[trial_id] = max(float(cost), self.ledger.device_s.get(trial_id, 0.0))
                self.ledger.on_gpu = self.ledger.on_gpu or bool(result.get("device_gpu"))
            self.waiting.discard(trial_id)
            if self.ledger.limited and self.reason is None:
                self.reason = self.ledger.spent(self.elapsed())
                if self.reason is not None:
                    self.waiting = self.running - {trial_id}
            self.save()

    def check(self, running: set[str]) -> bool:
        """Whether to stop Tune now: the budget is spent and every trial that was running then has
        ended the epoch it was in since (or is no longer running)."""
        if not self.ledger.limited:
            return False
        with self._lock:
            self.running = running
            if self.reason is None:
                self.reason = self.ledger.spent(self.elapsed())
                if self.reason is None:
                    return False
                self.waiting = set(running)
            self.waiting &= running
            return not self.waiting

    @property
    def exhausted(self) -> bool:
        return self.reason is not None

    def save(self) -> None:
        saved = Ledger(**{**self.ledger.__dict__, "wall_s": self.ledger.wall_s + self.elapsed()})
        saved.device_s = dict(self.ledger.device_s)
        saved.save(self.folder)

    def close(self) -> None:
        """The driver's run is over: its time goes into the ledger for good."""
        with self._lock:
            self.save()
            self.ledger.wall_s += self.elapsed()
            self.started = time.monotonic()


@contextmanager
def guarded(key: str, folder: Path, budget: BudgetSpec) -> Iterator[Guard]:
    """The study ``key``'s budget is watched in this process for the block (the driver's run)."""
    guard = Guard(folder, opened(folder, budget))
    if guard.ledger.limited:
        guard.save()
    try:
        with live.holding(key, "budget", guard):
            yield guard
    finally:
        if guard.ledger.limited or (folder / LEDGER_FILE).is_file():
            guard.close()


def active(key: str | None) -> Guard | None:
    guard = live.held(key, "budget")
    return guard if isinstance(guard, Guard) else None


def status_line(folder: Path) -> str | None:
    """``study status``'s budget line: spent, left, and the trials what is left still buys at the
    mean cost of the trials so far; None for a study without a budget."""
    ledger = Ledger.load(folder)
    if ledger is None or not ledger.limited:
        return None
    parts = []
    costs = [c for c in ledger.device_s.values() if c > 0]
    mean = sum(costs) / len(costs) / 3600 if costs else None
    if ledger.gpu_hours is not None:
        left = max(0.0, ledger.gpu_hours - ledger.device_hours)
        buys = f", about {int(left / mean)} more trial(s) at {mean:.4f} each so far" if mean else ""
        parts.append(f"{ledger.device_hours:.4f} of {ledger.gpu_hours:g} {ledger.unit} spent, {left:.4f} left{buys}")
    if ledger.wall_hours is not None:
        wall = ledger.wall_s / 3600
        left = max(0.0, ledger.wall_hours - wall)
        parts.append(f"{wall:.4f} of {ledger.wall_hours:g} wall-hours spent, {left:.4f} left")
    spent = ledger.spent()
    tail = f"; spent ({spent.split(':')[0]}): `study resume {folder} --budget ...` continues" if spent else ""
    return "budget: " + "; ".join(parts) + tail
