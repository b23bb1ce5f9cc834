"""One driver per study: ``launch`` and ``resume`` hold the study's lock while they run.

In the study folder the lock is ``driver.lock``, held with ``flock`` for the life of the driver
process: the kernel lets go of it when the process ends in any way (exit, SIGKILL, a reboot), so
a lock left by a dead driver is simply free, and ``resume`` takes it over (saying whose it was;
the file names its last holder). On NFS, Linux maps ``flock`` to NFS byte-range locks, which the
server releases once a dead client's lease runs out. With the Optuna storage on PostgreSQL, the
driver also holds a session-level advisory lock keyed by the study's name on a connection of its
own, so two drivers on different machines (different folders) never run one study name at once;
the server releases it when that connection ends, also when the driver's machine dies (TCP
keepalive).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from study.spec import StudyError, redact, scheme

LOCK_FILE = "driver.lock"
ADVISORY_NAMESPACE = 0x5B55  # the first key of every advisory lock of this project


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since} ({self.command})"

    @classmethod
    def me(cls) -> Holder:
        command = " ".join(["study", *sys.argv[1:2]]) if sys.argv else "study"
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S %Z"), command)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            values = json.loads(text)
            return cls(int(values["pid"]), str(values["host"]), str(values["since"]), str(values["command"]))
        except (ValueError, KeyError, TypeError):
            return None


def _try_flock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def running_driver(folder: Path) -> Holder | None:
    """The live driver holding ``folder``'s lock, or None (no lock file, or its holder is gone)."""
    path = folder / LOCK_FILE
    if not path.is_file():
        return None
    with open(path) as handle:
        if _try_flock(handle):
            return None  # free: closing the handle lets go of it again
        return Holder.parse(handle.read()) or Holder(0, "?", "?", "unknown")


def refused(holder: Holder, where: str) -> StudyError:
    return StudyError(
        f"{where}: a driver is running this study: {holder.describe()}; wait for it to end, or stop it "
        f"(Ctrl-C in its terminal, or kill -INT {holder.pid} on {holder.host}) and then `study resume`"
    )


class FolderLock:
    """The study folder's ``driver.lock``, held by this process until :meth:`release`."""

    def __init__(self, folder: Path, where: str = "STUDY_DIR") -> None:
        self.path = folder / LOCK_FILE
        self.where = where
        self.handle: IO[str] | None = None
        self.previous: Holder | None = None  # a dead driver's, taken over

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held open for the life of the lock)
        if not _try_flock(handle):
            handle.seek(0)
            holder = Holder.parse(handle.read()) or Holder(0, "?", "?", "unknown")
            handle.close()
            raise refused(holder, self.where)
        handle.seek(0)
        self.previous = Holder.parse(handle.read())
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(Holder.me().__dict__))
        handle.flush()
        os.fsync(handle.fileno())
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            self.handle.seek(0)
            self.handle.truncate()
        self.handle.close()  # closing lets go of the flock
        self.handle = None


def advisory_key(study_name: str) -> int:
    return int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:4], "big") & 0x7FFFFFFF


class DatabaseLock:
    """A PostgreSQL session-level advisory lock on the study's name, held on its own connection."""

    def __init__(self, url: str, study_name: str, where: str = "optuna_storage") -> None:
        self.url, self.study_name, self.where = url, study_name, where
        self.connection: Any = None
        self.engine: Any = None

    def acquire(self) -> DatabaseLock:
        import sqlalchemy

        holder = Holder.me()
        name = f"bss-study driver {holder.pid} on {holder.host}"[:63]
        self.engine = sqlalchemy.create_engine(
            self.url, poolclass=sqlalchemy.pool.NullPool, connect_args={"application_name": name}
        )
        key = advisory_key(self.study_name)
        self.connection = self.engine.connect()
        got = self.connection.execute(
            sqlalchemy.text("SELECT pg_try_advisory_lock(:ns, :key)"), {"ns": ADVISORY_NAMESPACE, "key": key}
        ).scalar()
        self.connection.commit()
        if not got:
            row = self.connection.execute(
                sqlalchemy.text(
                    "SELECT a.application_name, a.client_addr, a.backend_start FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.classid = :ns AND l.objid = :key AND l.objsubid = 2"
                ),
                {"ns": ADVISORY_NAMESPACE, "key": key},
            ).first()
            self.release()
            who = f"{row[0]} (client {row[1] or 'local'}, connected {row[2]:%Y-%m-%d %H:%M:%S})" if row else "another"
            raise StudyError(
                f"{self.where}: a driver is running study {self.study_name!r} on {redact(self.url)}: {who}; "
                "wait for it to end or stop it, or give this study another name"
            )
        return self

    def release(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()  # ends the session: the server lets go of its advisory locks
            self.connection = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None


@contextlib.contextmanager
def driver_lock(folder: Path, optuna_url: str, study_name: str, where: str = "STUDY_DIR") -> Iterator[FolderLock]:
    """The study's locks for the block: its folder's, and on PostgreSQL its name's."""
    folder_lock = FolderLock(folder, where).acquire()
    database: DatabaseLock | None = None
    try:
        if scheme(optuna_url) == "postgresql":
            database = DatabaseLock(optuna_url, study_name).acquire()
        if folder_lock.previous is not None:
            print(f"taking over the lock of a driver that is gone: {folder_lock.previous.describe()}", flush=True)
        yield folder_lock
    finally:
        if database is not None:
            database.release()
        folder_lock.release()
