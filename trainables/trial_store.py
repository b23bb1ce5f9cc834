"""A trial's own folder: its engine state per epoch, its resolved config and, once it has ended,
its selected weights. In the study folder, or under the study's object-store ``storage``
(:mod:`trainables.storage`). No Ray import: the driver and read-only commands use it too.

Why not Tune's checkpoints: Tune rotates them (``num_to_keep``) on the driver and snapshots its
experiment state every few seconds, so a driver killed between the two restores a trial from a
checkpoint that no longer exists. Here the trial writes each state whole (on disk a temporary name,
then ``os.replace``; in a bucket one PUT, visible only once complete) and deletes an older one only
after a newer one is complete, so the newest state stored is always whole, whatever moment the
driver or the node dies; a restarted trial (retry or ``study resume``) continues from it, whatever
Tune remembers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from trainables.layout import (
    BEST_WEIGHTS,
    FATAL_ERROR,
    KEEP_STATES,
    RESOLVED_CONFIG,
    STATE_PATTERN,
    TRIALS_DIR,
)
from trainables.storage import Location, files_at, location


def _torch(value: Any) -> Callable[[BinaryIO], None]:
    return lambda handle: torch.save(value, handle)


def _text(text: str) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(text.encode())

    return write


class TrialStore:
    """The folder ``<study>/trials/<trial_id>`` (or ``<storage>/trials/<trial_id>``); also a run
    folder for ``study analyze`` (``config.yaml`` + ``best_model.pt``) once the trial has ended."""

    def __init__(self, folder: Path | str | Location) -> None:
        self.location = folder if isinstance(folder, Location) else location(folder)
        self.files = files_at(self.location.root)

    @property
    def folder(self) -> Path:
        """The local folder (a store in a bucket has none)."""
        if self.location.remote:
            raise ValueError(f"{self.location} is in an object store, not a folder")
        return Path(self.location.root)

    @classmethod
    def of(cls, root: Path | str | Location, trial_id: str) -> TrialStore:
        """The store of ``trial_id`` under a study folder, or under a ``storage`` URI."""
        base = root if isinstance(root, Location) else location(root)
        return cls(base.child(TRIALS_DIR, trial_id))

    def epochs(self) -> list[int]:
        """Epochs with a complete state file, oldest first."""
        found = (STATE_PATTERN.match(name) for name in self.files.names())
        return sorted(int(m.group(1)) for m in found if m)

    @staticmethod
    def state_name(epoch: int) -> str:
        return f"epoch_{epoch:06d}.pt"

    def state_size(self, epoch: int) -> int:
        return self.files.size(self.state_name(epoch))

    def save_config(self, text: str) -> None:
        self.files.write(RESOLVED_CONFIG, _text(text))

    def save_epoch(self, epoch: int, state: dict[str, Any], best_weights: dict[str, Any] | None) -> None:
        """Write one epoch's state (and the selected weights once the run is done), then prune."""
        if best_weights is not None:
            self.files.write(BEST_WEIGHTS, _torch(best_weights))
        self.files.write(self.state_name(epoch), _torch(state))
        for old in self.epochs()[:-KEEP_STATES]:
            self.files.delete(self.state_name(old))

    def latest_state(self) -> dict[str, Any] | None:
        """The newest state that loads; an unreadable one (a disk that lost its tail, an object cut
        short) is skipped for the one before it."""
        for epoch in reversed(self.epochs()):
            try:
                data = self.files.read(self.state_name(epoch))
                state: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception:  # a damaged or vanished state is passed over, an older one is used
                continue
            return state
        return None

    def has_weights(self) -> bool:
        return self.files.exists(BEST_WEIGHTS)

    def record_fatal(self, message: str) -> None:
        self.files.write(FATAL_ERROR, _text(message))

    def fatal_error(self) -> str | None:
        return self.files.read(FATAL_ERROR).decode() if self.files.exists(FATAL_ERROR) else None
