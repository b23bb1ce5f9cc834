"""Why a Tune trial failed, read from what Ray kept of it (its error file and pickled error)."""

from __future__ import annotations

import re
from pathlib import Path

from mlflow.entities import RunTag
from ray import cloudpickle
from ray.exceptions import RayTaskError
from ray.tune.experiment import Trial


def failure_tags(trial: Trial) -> list[RunTag]:
    """``retries`` and ``last_failure`` of a trial that Tune has retried; none for the others."""
    if trial.num_failures == 0:
        return []
    return [RunTag("retries", str(trial.num_failures)), RunTag("last_failure", trial_error_message(trial)[:5000])]


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


def failure_reason(text: str) -> str:
    """The reason of the last failure in a Tune error file: the last ``SomeError: ...`` line of
    its last ``Failure # N`` block, else that block's first line."""
    blocks = re.split(r"^Failure # \d+.*$", text, flags=re.MULTILINE)
    lines = [line.strip() for line in blocks[-1].splitlines() if line.strip()]
    if not lines:
        return ""
    exceptions = [line for line in lines if EXCEPTION_LINE.match(line)]
    return exceptions[-1] if exceptions else lines[0]


def trial_error_message(trial: Trial) -> str:
    """The reason of the trial's last failure, or a placeholder when Ray kept none. An error
    raised by Ray itself (a dead actor or node) is named by its type."""
    path = trial.error_file
    reason = failure_reason(Path(path).read_text(errors="replace")) if path and Path(path).is_file() else ""
    if not reason:
        return "trial failed; Ray kept no error file"
    kind = ray_error_type(trial)
    return reason if kind is None or kind in reason else f"{kind}: {reason}"


def ray_error_type(trial: Trial) -> str | None:
    """The class name of a Ray-side failure (``ActorDiedError``, ``NodeDiedError``...), from the
    error Tune pickled next to the text; None for errors raised inside the trainable."""
    path = trial.pickled_error_file
    if not path or not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as handle:
            error = cloudpickle.load(handle)
    except Exception:  # an unreadable pickle only loses the type name, never the study
        return None
    return None if isinstance(error, RayTaskError) else type(error).__name__
