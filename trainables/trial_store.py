"""A trial's own folder in the study: its engine state per epoch, its resolved config and, once it
has ended, its selected weights. No Ray import: the driver and read-only commands use it too.

Why not Tune's checkpoints: Tune rotates them (``num_to_keep``) on the driver and snapshots its
experiment state every few seconds, so a driver killed between the two restores a trial from a
checkpoint that no longer exists. Here the trial writes each state file atomically (a temporary
name, then ``os.replace``) and deletes an older one only after a newer one is complete, so the
newest state on disk is always whole, whatever moment the driver or the node dies; a restarted
trial (retry or ``study resume``) continues from it, whatever Tune remembers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainables.layout import (
    BEST_WEIGHTS,
    FATAL_ERROR,
    KEEP_STATES,
    RESOLVED_CONFIG,
    STATE_PATTERN,
    TRIALS_DIR,
)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class TrialStore:
    """The folder ``<study>/trials/<trial_id>``; also a run folder for ``study analyze``
    (``config.yaml`` + ``best_model.pt``) once the trial has ended."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def of(cls, study_dir: Path, trial_id: str) -> TrialStore:
        return cls(study_dir / TRIALS_DIR / trial_id)

    def epochs(self) -> list[int]:
        """Epochs with a complete state file, oldest first."""
        if not self.folder.is_dir():
            return []
        found = (STATE_PATTERN.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def state_path(self, epoch: int) -> Path:
        return self.folder / f"epoch_{epoch:06d}.pt"

    def save_config(self, text: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.folder / RESOLVED_CONFIG, lambda p: p.write_text(text))

    def save_epoch(self, epoch: int, state: dict[str, Any], best_weights: dict[str, Any] | None) -> None:
        """Write one epoch's state (and the selected weights once the run is done), then prune."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if best_weights is not None:
            _atomic_write(self.folder / BEST_WEIGHTS, lambda p: torch.save(best_weights, p))
        _atomic_write(self.state_path(epoch), lambda p: torch.save(state, p))
        for old in self.epochs()[:-KEEP_STATES]:
            self.state_path(old).unlink(missing_ok=True)

    def latest_state(self) -> dict[str, Any] | None:
        """The newest state that loads; an unreadable file (a disk that lost its tail) is skipped."""
        for epoch in reversed(self.epochs()):
            try:
                state: dict[str, Any] = torch.load(self.state_path(epoch), map_location="cpu", weights_only=True)
            except Exception:  # a damaged file is passed over, an older one is used
                continue
            return state
        return None

    def has_weights(self) -> bool:
        return (self.folder / BEST_WEIGHTS).is_file()

    def record_fatal(self, message: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.folder / FATAL_ERROR, lambda p: p.write_text(message))

    def fatal_error(self) -> str | None:
        path = self.folder / FATAL_ERROR
        return path.read_text() if path.is_file() else None
