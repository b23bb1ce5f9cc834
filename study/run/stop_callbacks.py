"""The driver's Tune callbacks that end a run cleanly before it should go on: at the study's budget
(``study.record.budget``) and before its disk is full (``study.record.disk``). Each stops Tune as Ctrl-C does
(``for_ray.stop_tune_run``): Tune saves its state with every unfinished trial resumable. They are
pickled with the study's key only; on ``study resume`` they find the resumed driver's guards.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from compat import for_ray
from study.record import budget, disk


class BudgetCallback(Callback):
    """Tune's side: records each result's cost and stops the run (as Ctrl-C does, so that every
    unfinished trial resumes) once the budget is spent and the running trials have ended their epoch.
    Pickled with the study's key only; on ``study resume`` it finds the resumed driver's guard."""

    def __init__(self, key: str) -> None:
        self.key = key

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        guard = budget.active(self.key)
        if guard is not None:
            guard.record(trial.trial_id, result)

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        guard = budget.active(self.key)
        if guard is None or guard.stop_requested:
            return
        if guard.check({t.trial_id for t in trials if t.status == Trial.RUNNING}):
            guard.stop_requested = True
            for_ray.stop_tune_run()


class DiskSpaceCallback(Callback):
    """Tune's side of :class:`DiskGuard`; pickled with the study's key only (as the MLflow logger)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _stop_if_low(self, force: bool = False) -> None:
        guard = disk.active(self.key)
        if guard is None or guard.stop_requested:
            return
        if guard.check(force):
            guard.stop_requested = True
            for_ray.stop_tune_run()

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        guard = disk.active(self.key)
        if guard is not None:
            guard.saw(trial.trial_id)

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._stop_if_low()

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._stop_if_low(force=True)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._stop_if_low(force=True)
