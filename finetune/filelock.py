"""An exclusive lock file shared by processes on one machine (or one shared POSIX file system)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cache_root() -> Path:
    """Where shared, recomputable artefacts go: ``$BSS_STUDY_CACHE`` or ``~/.cache/bss-study``."""
    return Path(os.environ.get("BSS_STUDY_CACHE", Path.home() / ".cache" / "bss-study"))
