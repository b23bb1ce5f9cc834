"""A study whose trials live in a bucket keeps a copy of the driver's own small files there too
(``<storage>/driver/``: ``spec.yaml``, ``study.json`` and the budget ledger), so that a new head
machine with an empty folder can continue it: ``study resume DIR --from <storage>`` rebuilds the
folder from that copy, and the record (on its servers) and the trials (in the bucket) do the rest.

A folder's own SQLite record (``optuna.db``, ``mlflow.db``) is not copied: a database being
written cannot be copied whole, so only a study recorded on servers can move this way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from study.record.budget import LEDGER_FILE
from study.record.folder import RECORD_FILE, SPEC_FILE, StudyFolder, StudyRecord
from study.spec import StudyError
from trainables.storage import StorageError, check_reachable, files_at

DRIVER_DIR = "driver"
MIRRORED = (SPEC_FILE, RECORD_FILE, LEDGER_FILE)


def mirror_driver_files(folder: StudyFolder) -> None:
    """Copy the driver's files of a study whose trials are in a bucket there (no-op otherwise)."""
    storage = folder.storage
    if storage is None:
        return
    files = files_at(f"{storage}/{DRIVER_DIR}")
    for name in MIRRORED:
        path = folder.path / name
        if path.is_file():
            files.write(name, _copy_of(path.read_bytes()))


def _copy_of(data: bytes) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write


def rebuild_folder(uri: str, target: Path) -> StudyFolder:
    """The study folder ``target`` (absent or empty) rebuilt from the copy at ``uri`` (a study's
    prefix in its bucket, as ``launch`` printed it); one line if it cannot be."""
    uri = uri.rstrip("/")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StudyError(f"--from: {target} is not empty; give a new folder (its own study resumes without --from)")
    try:
        check_reachable(uri, "--from")
        files = files_at(f"{uri}/{DRIVER_DIR}")
        found = {name: files.exists(name) for name in MIRRORED}
        if not (found[SPEC_FILE] and found[RECORD_FILE]):
            raise StudyError(
                f"--from: {uri} holds no study ({DRIVER_DIR}/{SPEC_FILE}, {DRIVER_DIR}/{RECORD_FILE}); give the "
                "prefix a launch printed (storage/<name>-<id>)"
            )
        texts = {name: files.read(name) for name, there in found.items() if there}
    except StorageError as exc:
        raise StudyError(str(exc)) from None
    values = json.loads(texts[RECORD_FILE])
    if values.get("storage", "").rstrip("/") != uri:
        raise StudyError(f"--from: {uri}'s {RECORD_FILE} names another prefix ({values.get('storage')!r})")
    record = StudyRecord(**values)
    if record.tracking_uri is None or record.optuna_storage is None:
        raise StudyError(
            f"--from: the study's record is its folder's own SQLite (mlflow.db / optuna.db), which {uri} does "
            "not hold; only a study recorded on servers (tracking_uri, optuna_storage) resumes on a new machine"
        )
    target.mkdir(parents=True, exist_ok=True)
    for name, data in texts.items():
        (target / name).write_bytes(data)
    return StudyFolder(target)
