from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """With ``TESTS_SKIP_TEARDOWN=1`` (``make test``, so CI): once pytest has reported, end the
    process with pytest's own exit status, skipping the interpreter's teardown.

    This one process has run Ray, MLflow, Optuna, torch, pyarrow and Playwright's driver, and their
    native objects are destroyed in no set order as the interpreter exits: once, in CI, that
    teardown crashed (SIGSEGV after "304 passed" was printed), failing a run whose every test had
    passed; it did not recur in later runs (to look at that teardown, run with
    TESTS_SKIP_TEARDOWN=0 and PYTHONFAULTHANDLER=1, which prints its stacks if it crashes). A
    crash or failure while tests run still fails the run; only the teardown after the report is
    skipped, after Ray is shut down and every stream and log handler flushed."""
    if os.environ.get("TESTS_SKIP_TEARDOWN") != "1" or EXIT_STATUS not in config.stash:
        return
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(config.stash[EXIT_STATUS])


@pytest.fixture(autouse=True, scope="session")
def _test_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # tests only: token auth stays on for users
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "RAY_ADDRESS"):  # a user's settings stay theirs
        os.environ.pop(key, None)
    # shared caches (decoded images, DELTA attention) in a fresh folder, not the user's
    os.environ["BSS_STUDY_CACHE"] = str(tmp_path_factory.mktemp("bss-study-cache"))


def tiny_base(**overrides: object) -> dict:
    """A base config small enough for a CPU test: 32 px, 2 steps an epoch, no pretrained download."""
    base: dict = {
        "data": {
            "dataset": "embedded-fashion-mnist",
            "sampling_rate": 0.05,
            "image_size": 32,
            "batch_size": 8,
            "eval_batch_size": 256,
        },
        "model": {"backbone": "mobilenet_v2", "weights": "IMAGENET1K_V1"},
        "optim": {"epochs": 2, "steps_per_epoch": 2, "lr": 0.01},
        "num_threads": 1,
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def small_study(out: Path, name: str, search_space: object, base: dict, **values: object) -> dict:
    """A spec of ``num_samples: 2`` trials, two at a time, no early stopping, on the local Ray's 2 CPUs."""
    return {
        "name": name,
        "output_dir": str(out),
        "search_space": search_space,
        "num_samples": 2,
        "max_concurrent": 2,
        "scheduler": {"name": "fifo"},
        "ray_num_cpus": 2,
        "base": base,
        **values,
    }


def run_in_processes(target: object, args: tuple, count: int, timeout: float = 120) -> None:
    """Start ``count`` spawned processes running ``target(*args)`` at once; each must exit 0."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for _ in range(count)]  # type: ignore[arg-type]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A throwaway PostgreSQL 15 cluster on a loopback port, for the whole session (never skipped:
    without PostgreSQL's programs this fails, naming what to install)."""
    import shutil

    from tests.servers import Postgres, postgres_root

    root = postgres_root()
    server = Postgres(root / "cluster").init()
    server.start()
    os.environ["PGPASSWORD"] = server.password  # libpq's convention, as a user would give it
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real ``mlflow server`` with its backend store on the throwaway PostgreSQL."""
    from tests.servers import MlflowServer

    database = postgres.create_database("mlflow")
    server = MlflowServer(postgres.url(database), tmp_path_factory.mktemp("mlflow-artifacts"), postgres.env())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real S3-compatible server (moto's standalone server) on a loopback port, for the session."""
    from tests.servers import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def s3(s3_server, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The S3 server with its AWS environment set, as a user sets it (``AWS_ENDPOINT_URL``, keys)."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server
