"""The study's live progress line (in place of Tune's status tables)."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from study.run.trial_errors import trial_error_message


class ProgressLine(Callback):
    """The study's progress, one line whenever a trial ends (in place of Tune's status tables):
    a bar of trials ended out of requested (also those ended before a resume), the best value of
    the selection metric so far, elapsed time and an estimate of what is left."""

    def __init__(self, requested: int, metric: str = "best_val_acc") -> None:
        self.requested = requested
        self.metric = metric
        self.best: float | None = None
        self.ended: set[str] = set()  # ended while this driver ran
        self.started_here: set[str] = set()
        self.started = time.monotonic()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tune pickles its callbacks: one saved by an older version lacks the newer fields
        self.__dict__.update({"ended": set(), "started_here": set(), "started": time.monotonic(), **state})

    def line(self, trial_id: str, what: str, ended_before: int) -> str:
        done = ended_before + len(self.ended)
        width = 20
        filled = min(width, round(width * done / max(1, self.requested)))
        bar = "#" * filled + "." * (width - filled)
        best = f"{self.best:.4f}" if self.best is not None else "-"
        label = "val_acc" if self.metric == "best_val_acc" else self.metric
        elapsed = time.monotonic() - self.started
        left = self.requested - done
        eta = _duration(elapsed / len(self.ended) * left) if self.ended and left > 0 else "-"
        return (
            f"[study] [{bar}] {done}/{self.requested} ended, best {label} {best}, "
            f"{_duration(elapsed)} elapsed, ~{eta} left (trial {trial_id} {what})"
        )

    def _report(self, trial: Trial, what: str, trials: list[Trial] | None = None) -> None:
        self.ended.add(trial.trial_id)
        value = (trial.last_result or {}).get(self.metric)
        if isinstance(value, int | float) and (self.best is None or value > self.best):
            self.best = float(value)
        # trials a resumed study had ended before this driver started (never started here)
        ended = {t.trial_id for t in trials or [] if t.status in (Trial.TERMINATED, Trial.ERROR)}
        print(self.line(trial.trial_id, what, len(ended - self.ended - self.started_here)), flush=True)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.started_here.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._report(trial, "finished", trials)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._report(trial, f"failed ({trial_error_message(trial)[:120]})", trials)

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        start = "its last saved epoch"
        print(
            f"[study] trial {trial.trial_id} failed ({trial_error_message(trial)[:120]}); "
            f"retry {trial.num_failures} from {start}",
            flush=True,
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
