"""One contract for a trial's files, on a local folder and in a bucket of a real S3-compatible
server on loopback (moto's standalone server): whole writes, the newest whole state wins, pruning,
weights, the saved config, a fatal input error."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch

from trainables.layout import BEST_WEIGHTS, KEEP_STATES
from trainables.storage import StorageError, check_uri
from trainables.trial_store import TrialStore


@pytest.fixture(params=["folder", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        return str(tmp_path / "study")
    server = request.getfixturevalue("s3")
    return f"{server.bucket(f'b-{uuid.uuid4().hex[:12]}')}/lab/study-1"


def state(epoch: int) -> dict[str, object]:
    return {"epoch": epoch, "weights": torch.full((4,), float(epoch))}


def test_a_new_store_is_empty(root: str) -> None:
    store = TrialStore.of(root, "t1")
    assert store.epochs() == [] and store.latest_state() is None
    assert not store.has_weights() and store.fatal_error() is None


def test_states_are_pruned_to_the_newest_and_the_newest_loads(root: str) -> None:
    store = TrialStore.of(root, "t1")
    store.save_config("optim:\n  lr: 0.01\n")
    for epoch in range(1, 5):
        store.save_epoch(epoch, state(epoch), {"w": torch.ones(2)} if epoch == 4 else None)
    assert store.epochs() == list(range(5 - KEEP_STATES, 5))
    latest = store.latest_state()
    assert latest is not None and latest["epoch"] == 4 and torch.equal(latest["weights"], torch.full((4,), 4.0))
    assert store.has_weights()
    assert store.files.read("config.yaml").decode() == "optim:\n  lr: 0.01\n"
    assert torch.equal(torch.load(__import__("io").BytesIO(store.files.read(BEST_WEIGHTS)))["w"], torch.ones(2))
    assert store.state_size(4) > 0


def test_an_unreadable_newest_state_gives_way_to_the_one_before(root: str) -> None:
    store = TrialStore.of(root, "t1")
    store.save_epoch(1, state(1), None)
    store.save_epoch(2, state(2), None)
    store.files.write(store.state_name(2), lambda handle: handle.write(b"PK\x03\x04 cut short"))
    latest = store.latest_state()
    assert latest is not None and latest["epoch"] == 1


def test_a_fatal_input_error_is_kept(root: str) -> None:
    store = TrialStore.of(root, "t9")
    store.record_fatal("data.root: no such folder")
    assert TrialStore.of(root, "t9").fatal_error() == "data.root: no such folder"
    assert TrialStore.of(root, "t8").fatal_error() is None


def test_trials_do_not_see_each_other(root: str) -> None:
    TrialStore.of(root, "t1").save_epoch(1, state(1), None)
    TrialStore.of(root, "t10").save_epoch(3, state(3), None)
    assert TrialStore.of(root, "t1").epochs() == [1] and TrialStore.of(root, "t10").epochs() == [3]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/data/x", r"^storage: '/data/x' is no object-store URI; use one of s3://, gs://"),
        ("s3://AKIA:secret@bucket/p", r"^storage: the URI holds credentials; remove them"),
        ("s3://bucket/p?secret_key=abc", r"^storage: the URI holds a key in its query"),
        ("s3://bucket/p?endpoint_override=h:9000", r"^storage: 's3://bucket/p\?endpoint_override=h:9000' has a query"),
        ("s3:///p", r"^storage: 's3:///p' names no bucket; write s3://BUCKET/PREFIX"),
    ],
)
def test_a_storage_uri_that_cannot_work_is_one_line(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        check_uri(uri)
    assert check_uri("s3://bucket/lab/") == "s3://bucket/lab"


def test_a_store_that_does_not_answer_fails_in_one_line_after_its_retry_window(
    s3: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import time

    from trainables.storage import RETRY_ENV

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv(RETRY_ENV, "1")
    store = TrialStore.of("s3://lab/study-1", "t1")
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        store.save_epoch(1, state(1), None)
    assert str(caught.value).startswith("s3://lab/study-1/trials/t1/epoch_000001.pt: write: ")
    assert len(str(caught.value).splitlines()) == 1 and time.monotonic() - started < 60
