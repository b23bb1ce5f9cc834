"""Real servers for the tests, started here and thrown away: a PostgreSQL 15 cluster in a
temporary folder on a loopback port (``initdb`` + ``pg_ctl``, as the ``postgres`` user when the
tests run as root, since ``initdb`` refuses root), and ``mlflow server`` on one of its databases.

Password authentication is on (scram-sha-256 over TCP): the tests give the password the way users
do, in ``PGPASSWORD`` (libpq's convention), and check that it is never written down.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(base: str, server: subprocess.Popen, seconds: float = 90, log: Path | None = None) -> None:
    """Wait until an MLflow server answers /health, or fail if it exits or times out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            shown = log.read_text()[-3000:] if log is not None and log.is_file() else ""
            raise AssertionError(f"no MLflow server answered at {base} {shown}")
        time.sleep(0.5)


def dashboard_studies(port: int, server: subprocess.Popen, seconds: float = 90) -> list[dict]:
    """The study summaries optuna-dashboard serves on ``port``, once it answers."""
    import json

    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                return list(json.loads(response.read())["study_summaries"])
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "optuna-dashboard did not answer"
            time.sleep(0.5)


def postgres_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, else Debian's versioned folder (the package puts them there)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (apt-get install postgresql); .ci/run does")
    return found


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def postgres_root() -> Path:
    """A folder the ``postgres`` user can reach (pytest's temporary folders are root's own, 0700)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="bss-study-pg-", dir="/tmp"))
    root.chmod(0o711)
    return root


@dataclass
class Postgres:
    root: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: f"pg-{uuid.uuid4().hex}")
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str, driver: str = "") -> str:
        """A URL without the password (libpq reads PGPASSWORD)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password}

    def init(self) -> Postgres:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [postgres_bin("initdb"), "-D", str(self.data), "-U", self.user, "-E", "UTF8", "--no-sync"]
        options = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        done = subprocess.run(_as_postgres([*initdb, *options]), capture_output=True, text=True, timeout=120)
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()[-2000:]}")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        command = [postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60"]
        subprocess.run(_as_postgres([*command, "-o", options, "start"]), check=True, capture_output=True, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        command = [postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
        subprocess.run(_as_postgres(command), check=False, capture_output=True, timeout=90)

    def restart(self) -> None:
        self.stop()
        self.start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        command = [shutil.which("psql") or postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port)]
        command += ["-U", self.user, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql]
        done = subprocess.run(command, env=self.env(), check=True, capture_output=True, text=True, timeout=60)
        return done.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def dump(self, database: str) -> str:
        """Every row of a database as SQL text (to search it for what must not be there)."""
        command = [postgres_bin("pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, database]
        return subprocess.run(command, env=self.env(), check=True, capture_output=True, text=True, timeout=120).stdout


@dataclass
class MlflowServer:
    """``mlflow server`` on a PostgreSQL database, artifacts proxied into a folder."""

    backend_uri: str
    artifacts: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--backend-store-uri", self.backend_uri, "--artifacts-destination", str(self.artifacts)]
        command += ["--workers", "1"]
        self.log = self.log or self.artifacts.parent / f"mlflow-server-{self.port}.log"
        with open(self.log, "a") as handle:
            self.process = subprocess.Popen(
                command, cwd=self.artifacts.parent, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        wait_for_health(self.url, self.process, timeout, self.log)

    def kill(self) -> None:
        """SIGKILL the server and every process it started (a crash, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None


def stop_group(process: subprocess.Popen, grace_s: float = 30) -> None:
    """End a process started in its own session: SIGTERM to its group, then SIGKILL if it has not
    exited after ``grace_s`` (a loaded machine can take long to shut a server's workers down)."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@dataclass
class S3Server:
    """moto's standalone S3-compatible server on a loopback port (``moto[server]``), with the AWS
    environment a user would set for it: ``AWS_ENDPOINT_URL`` and a key pair it accepts."""

    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    # moto's own setting: after this many requests, every one must carry a key it knows (None: any key)
    checked_after: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "bss-test-key",
            "AWS_SECRET_ACCESS_KEY": "bss-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, seconds: float = 60) -> None:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        env = {**os.environ}
        if self.checked_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.checked_after)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
            )
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no S3 server answered at {self.endpoint}: {self.log.read_text()[-2000:]}")
            time.sleep(0.25)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_group(self.process)
        self.process = None

    def bucket(self, name: str) -> str:
        """A new bucket (created as an administrator would, with boto3); its ``s3://`` URI."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_keys(self.env()))
        client.create_bucket(Bucket=name)
        return f"s3://{name}"


def _boto_keys(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_REGION"],
    }
