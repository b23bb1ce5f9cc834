"""What MLflow has not taken yet, kept in the study folder until it does.

A tracking server that is restarting, or gone, must not stop a study: an event that MLflow
refuses for a reason that may pass (no answer, a timeout, a server error) is appended to
``mlflow-pending.jsonl`` in the study folder (flushed to disk), and so is every later event, in
order, until MLflow answers again; then they are applied in order and the file is removed. While
it is down a replay is tried at most every ``BSS_STUDY_TRACKING_RETRY_S`` seconds (default 10),
so a study does not wait on every event. ``study sync`` (and ``study resume``) replay what a
study left there. Applying an event twice records it once (:mod:`study.record.run_writer`), so a replay
cut short by another outage is simply tried again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

PENDING_FILE = "mlflow-pending.jsonl"
RETRY_ENV = "BSS_STUDY_TRACKING_RETRY_S"
# MLflow's answers that a retry cannot change (a malformed or conflicting write): logged and dropped
PERMANENT_CODES = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST")


def is_permanent(exc: BaseException) -> bool:
    return str(getattr(exc, "error_code", "")) in PERMANENT_CODES


def reason(exc: BaseException) -> str:
    from study.record.folder import first_line

    return first_line(exc)[:200]


class Outbox:
    """Events for ``apply`` (one MLflow writer), kept in ``path`` while it fails."""

    def __init__(
        self, path: Path, apply: Callable[[Mapping[str, Any]], None], shown_uri: str, out: IO[str] | None = None
    ) -> None:
        self.path, self.apply, self.shown_uri = path, apply, shown_uri
        self.retry_s = float(os.environ.get(RETRY_ENV, "10"))
        self.out = out
        self.pending: list[dict[str, Any]] = self._read()
        self.next_try = 0.0
        self.failure: str | None = None  # why MLflow last refused, while events are pending

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        events = []
        for line in self.path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:  # a line cut short by a crash while it was appended
                continue
        return events

    def _say(self, text: str) -> None:
        print(f"[study] {text}", file=self.out or sys.stdout, flush=True)

    def _keep(self, event: Mapping[str, Any]) -> None:
        self.pending.append(dict(event))
        with open(self.path, "a") as handle:
            handle.write(json.dumps(event) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _rewrite(self) -> None:
        if not self.pending:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(f".{self.path.name}.partial")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in self.pending))
        tmp.replace(self.path)

    def _down(self, exc: BaseException) -> None:
        first = self.failure is None
        self.failure = reason(exc)
        self.next_try = time.monotonic() + self.retry_s
        if first:
            self._say(
                f"MLflow at {self.shown_uri} did not answer ({self.failure}); the study goes on, keeping what it "
                f"records in {self.path} until MLflow answers again"
            )

    def emit(self, event: Mapping[str, Any]) -> None:
        """Apply ``event`` now, or keep it (after those already kept) for a later replay."""
        if self.pending:
            self._keep(event)
            self.flush()
            return
        try:
            self.apply(event)
        except Exception as exc:
            if is_permanent(exc):
                self._say(f"MLflow refused {event.get('op')} of trial {event.get('trial', '-')} ({reason(exc)})")
                return
            self._keep(event)
            self._down(exc)

    def flush(self, force: bool = False) -> bool:
        """Replay the kept events in order; True when none is left. Without ``force``, at most
        once every ``retry_s`` seconds while MLflow does not answer."""
        if not self.pending:
            return True
        if not force and time.monotonic() < self.next_try:
            return False
        replayed = 0
        try:
            while self.pending:
                try:
                    self.apply(self.pending[0])
                except Exception as exc:
                    if not is_permanent(exc):
                        raise
                    self._say(f"MLflow refused a kept {self.pending[0].get('op')} ({reason(exc)}); dropped")
                self.pending.pop(0)
                replayed += 1
        except Exception as exc:
            self._down(exc)
            return False
        finally:
            if replayed:
                self._rewrite()
        if self.failure is not None:
            self._say(f"MLflow at {self.shown_uri} answers again; {replayed} kept event(s) replayed")
        self.failure = None
        return True

    def drain(self, wait_s: float) -> bool:
        """Replay until none is left or ``wait_s`` seconds have passed (the study's end)."""
        deadline = time.monotonic() + wait_s
        while not self.flush(force=True):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self.retry_s, max(0.0, deadline - time.monotonic()), 5.0))
        return True
