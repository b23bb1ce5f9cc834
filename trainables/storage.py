"""Where a trial's files live: a local (or shared, mounted) folder, or an object store (S3 and
S3-compatible servers) through ``pyarrow.fs``, the filesystem layer Ray Tune itself uses.

No torch, no Ray: the driver, the read-only commands and the trainable all reach trial files
through :func:`location`. Credentials and endpoints come from where every S3 tool finds them (the
``AWS_*`` environment variables, ``~/.aws/config`` and ``~/.aws/credentials``, an instance role;
``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO or Ceph), never from a URI: a URI
that carries a key is refused, so none reaches a spec, a record or a log.

Writes are whole or absent: a local file is written under a temporary name, synced and renamed; an
object is one PUT (or one multipart upload), which S3 makes visible only once complete. A call to
an object store that fails on the connection is tried again for up to ``BSS_STUDY_STORAGE_RETRY_S``
seconds (default 60), then fails with the store's reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

RETRY_ENV = "BSS_STUDY_STORAGE_RETRY_S"
T = TypeVar("T")

# every scheme a study's ``storage`` may name, and how far it is proven
SCHEMES = {
    "s3": "S3 and S3-compatible servers (AWS_ENDPOINT_URL): tested against a real S3-compatible server",
    "gs": "Google Cloud Storage through pyarrow's GcsFileSystem: admitted, not tested",
}
# query parameters of a pyarrow URI that would put a secret into the spec
SECRET_KEYS = {"access_key", "secret_key", "session_token", "credential_token"}


class StorageError(ValueError):
    """A storage URI that cannot work, or a store that does not answer; one line, naming the fix."""


def is_remote(target: str | Path) -> bool:
    return isinstance(target, str) and "://" in target and not target.startswith("file://")


def check_uri(uri: str, field: str = "storage") -> str:
    """``uri`` as a study may use it (a trailing ``/`` dropped), or one line naming the fault."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise StorageError(f"{field}: {uri!r} is no object-store URI; use one of {known} (or leave it out: the folder)")
    if parts.username or parts.password or "@" in parts.netloc:
        raise StorageError(
            f"{field}: the URI holds credentials; remove them and give them as AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or an instance role"
        )
    if SECRET_KEYS & {k.lower() for k in parse_qs(parts.query)}:
        raise StorageError(f"{field}: the URI holds a key in its query; give credentials through the AWS environment")
    if parts.query or parts.fragment:
        raise StorageError(
            f"{field}: {uri!r} has a query; set the endpoint with AWS_ENDPOINT_URL and the region with AWS_REGION"
        )
    if not parts.netloc:
        raise StorageError(f"{field}: {uri!r} names no bucket; write {parts.scheme}://BUCKET/PREFIX")
    return uri.rstrip("/")


@dataclass(frozen=True)
class Location:
    """One folder of trial files: ``root`` is a local path or an object-store URI."""

    root: str

    def child(self, *names: str) -> Location:
        return Location("/".join([self.root.rstrip("/"), *names]))

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def __str__(self) -> str:
        return self.root


def location(target: str | Path) -> Location:
    return Location(str(target))


class Files(Protocol):
    """The few operations a trial's folder needs, on a local folder or an object store."""

    def names(self) -> list[str]: ...
    def write(self, name: str, produce: Callable[[BinaryIO], None]) -> None: ...
    def read(self, name: str) -> bytes: ...
    def exists(self, name: str) -> bool: ...
    def size(self, name: str) -> int: ...
    def delete(self, name: str) -> None: ...


class FolderFiles:
    """A local (or mounted) folder: each file written under a temporary name, synced, renamed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names(self) -> list[str]:
        return [p.name for p in self.folder.iterdir()] if self.folder.is_dir() else []

    def write(self, name: str, produce: Callable[[BinaryIO], None]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        tmp = path.with_name(f".{name}.partial")
        with open(tmp, "wb") as handle:
            produce(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def read(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    def exists(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def size(self, name: str) -> int:
        return (self.folder / name).stat().st_size

    def delete(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)


class ObjectFiles:
    """A prefix of an object store through ``pyarrow.fs``: each file one whole object."""

    def __init__(self, root: str) -> None:
        import pyarrow.fs as pafs

        self.uri = root.rstrip("/")
        self._pafs = pafs
        self.fs, self.prefix = pafs.FileSystem.from_uri(self.uri)

    def _path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def names(self) -> list[str]:
        selector = self._pafs.FileSelector(self.prefix, allow_not_found=True)
        infos = retried(lambda: self.fs.get_file_info(selector), f"{self.uri}: list")
        return [info.base_name for info in infos if info.type == self._pafs.FileType.File]

    def write(self, name: str, produce: Callable[[BinaryIO], None]) -> None:
        buffer = io.BytesIO()  # the whole object first: one upload, retried whole
        produce(buffer)
        data = buffer.getvalue()

        def put() -> None:
            with self.fs.open_output_stream(self._path(name)) as out:
                out.write(data)

        retried(put, f"{self.uri}/{name}: write")

    def read(self, name: str) -> bytes:
        def get() -> bytes:
            with self.fs.open_input_file(self._path(name)) as stream:
                return bytes(stream.read())

        return retried(get, f"{self.uri}/{name}: read")

    def _info(self, name: str) -> Any:
        return retried(lambda: self.fs.get_file_info(self._path(name)), f"{self.uri}/{name}: stat")

    def exists(self, name: str) -> bool:
        return bool(self._info(name).type == self._pafs.FileType.File)

    def size(self, name: str) -> int:
        info = self._info(name)
        if info.type != self._pafs.FileType.File:
            raise FileNotFoundError(f"{self.uri}/{name}")
        return int(info.size)

    def delete(self, name: str) -> None:
        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self._path(name))

        retried(remove, f"{self.uri}/{name}: delete")


def files_at(root: str | Path) -> Files:
    return ObjectFiles(str(root)) if is_remote(root) else FolderFiles(Path(root))


def _retry_s() -> float:
    return float(os.environ.get(RETRY_ENV, "60"))


def retried(call: Callable[[], T], what: str, seconds: float | None = None) -> T:
    """``call()``, tried again while the store does not answer (for ``seconds``, by default
    ``BSS_STUDY_STORAGE_RETRY_S``); then one line naming ``what`` and the store's reason."""
    deadline = time.monotonic() + (_retry_s() if seconds is None else seconds)
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if time.monotonic() > deadline or not _transient(exc):
                raise StorageError(f"{what}: {first_line(exc)}") from exc
            time.sleep(min(2.0, 0.25 * attempt))


def _transient(exc: OSError) -> bool:
    """A store that did not answer (refused, reset, timed out, 5xx), not one that said no."""
    text = str(exc).lower()
    refusals = (
        "access denied",
        "access_denied",
        "forbidden",
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "nosuchbucket",
    )
    return not any(word in text for word in refusals)


def check_reachable(uri: str, field: str = "storage", seconds: float = 5.0) -> None:
    """The bucket of ``uri`` answers and lets these credentials list it (before Ray starts)."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        bucket = path.split("/", 1)[0]
        info = retried(lambda: fs.get_file_info(bucket), uri, seconds)
        if info.type == pafs.FileType.NotFound:
            raise StorageError(f"{uri}: no bucket {bucket!r}")
        retried(lambda: fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)), uri, seconds)
    except (StorageError, OSError, ValueError) as exc:
        reason = str(exc).removeprefix(f"{uri}: ")
        raise StorageError(
            f"{field}: {uri} cannot be reached ({first_line_of(reason)}); check the bucket, AWS_ENDPOINT_URL "
            "and the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role)"
        ) from None


def first_line_of(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0][:300] if text else "no answer"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
