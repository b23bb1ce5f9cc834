"""Free space in the study folder: a study stops cleanly before its disk is full, not after.

Each trial keeps its two newest epoch states and writes a third before deleting the oldest
(``trainables.trial_store``), so a study needs about three state files a running trial, plus room
for its records (MLflow's and Optuna's databases, Tune's state): :data:`RECORDS_BYTES`. The driver's
``study.run.stop_callbacks.DiskSpaceCallback`` learns the size of a state file from the trials' own and checks the free
space on every step of Tune's loop (and when a trial fails, where a full disk is the likely cause):
below what the study needs it stops Tune as Ctrl-C does, every completed trial intact and every
unfinished one resumable, and the driver ends with one line naming the folder, the space it has and
the space it needs. ``study launch`` and ``study resume`` check the same before Ray starts.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from study.record import live
from study.spec import StudyError
from trainables.layout import KEEP_STATES, TRIALS_DIR

MIB = 2**20
RECORDS_BYTES = 64 * MIB  # MLflow's and Optuna's databases, Tune's state, the table and report
CHECK_EVERY_S = 0.5


def largest_state(folder: Path) -> int:
    """The size of the largest epoch state file of the study's trials (0 before the first)."""
    root = folder / TRIALS_DIR
    sizes = [p.stat().st_size for p in root.glob("*/epoch_*.pt")] if root.is_dir() else []
    return max(sizes, default=0)


class DiskGuard:
    """The free space of a study folder's file system against what the study needs; a folder not
    created yet is measured on its nearest existing parent."""

    def __init__(self, folder: Path, slots: int) -> None:
        self.folder = folder
        self.measured = next((p for p in (folder, *folder.parents) if p.is_dir()), folder)
        self.slots = max(1, slots)
        self.state_bytes = largest_state(folder)
        self.reason: str | None = None
        self.stop_requested = False
        self._checked = 0.0

    def need(self) -> int:
        return RECORDS_BYTES + (KEEP_STATES + 1) * self.state_bytes * self.slots

    def saw(self, trial_id: str) -> None:
        """A trial ended an epoch: the size of its newest state file."""
        from trainables.trial_store import TrialStore

        store = TrialStore.of(self.folder, trial_id)
        epochs = store.epochs()
        if epochs:
            with suppress(OSError):  # pruned meanwhile: the next epoch's will do
                self.state_bytes = max(self.state_bytes, store.state_size(epochs[-1]))

    def low(self, field_name: str = "output_dir") -> str | None:
        """Why the free space is too low (one line: the folder, what it has, what it needs), or None."""
        free = shutil.disk_usage(self.measured).free
        need = self.need()
        if free >= need:
            return None
        states = (
            f"{KEEP_STATES + 1} saved states of {self.state_bytes / MIB:.1f} MB for each of {self.slots} trial(s) "
            f"at a time, and {RECORDS_BYTES // MIB} MB for its records"
            if self.state_bytes
            else f"{RECORDS_BYTES // MIB} MB for its records, before its trials' states"
        )
        return (
            f"{field_name}: {self.folder} has {free / MIB:.1f} MB free; this study needs about {need / MIB:.0f} MB "
            f"free ({states}); free space there, then `study resume {self.folder}`"
        )

    def check(self, force: bool = False) -> bool:
        """Whether to stop now (checked at most every ``CHECK_EVERY_S`` unless ``force``)."""
        now = time.monotonic()
        if self.reason is not None or (not force and now - self._checked < CHECK_EVERY_S):
            return self.reason is not None
        self._checked = now
        self.reason = self.low()
        return self.reason is not None


def active(key: str | None) -> DiskGuard | None:
    guard = live.held(key, "disk")
    return guard if isinstance(guard, DiskGuard) else None


@contextmanager
def guarded(key: str, folder: Path, slots: int) -> Iterator[DiskGuard]:
    """The study ``key``'s free space is watched in this process for the block (the driver's run)."""
    with live.holding(key, "disk", DiskGuard(folder, slots)) as guard:
        yield guard


def check_free(folder: Path, slots: int, field_name: str) -> None:
    """Before Ray starts: enough free space for the study's next steps, else one line."""
    reason = DiskGuard(folder, slots).low(field_name)
    if reason is not None:
        raise StudyError(reason)
