"""Where a study's record lives: one resolution of the MLflow tracking URI and the Optuna storage
(spec, then MLFLOW_TRACKING_URI, then the folder's own files), recorded without credentials."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from study.record import StoreChoice, StudyFolder, StudyRecord, bound, choose, lookup
from study.spec import StudyError, expand, redact


def test_the_spec_wins_then_the_environment_then_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    assert choose(None, None, folder, tmp_path, environ={}) == StoreChoice(None, None)
    env = {"MLFLOW_TRACKING_URI": "sqlite:///shared/mlflow.db"}
    assert choose(None, None, folder, tmp_path, env).tracking == f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    assert choose(None, None, folder, tmp_path, env).tracking == "http://127.0.0.1:5000"
    assert choose("http://10.0.0.1:5000", None, folder, tmp_path, env).tracking == "http://10.0.0.1:5000"
    with pytest.raises(StudyError, match=r"^MLFLOW_TRACKING_URI \(environment\): './mlruns' is not an MLflow"):
        choose(None, None, folder, tmp_path, {"MLFLOW_TRACKING_URI": "./mlruns"})


def test_a_sqlite_path_naming_the_folders_own_file_stays_relocatable(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    choice = choose(f"sqlite:///{folder / 'mlflow.db'}", "sqlite:///study/optuna.db", folder, tmp_path, {})
    assert choice == StoreChoice(None, None)
    moved = choice.open(tmp_path / "moved")
    assert moved.tracking_uri == f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}" and moved.tracking_local
    assert moved.optuna_url == f"sqlite:///{tmp_path / 'moved' / 'optuna.db'}" and moved.optuna_local


def test_an_external_sqlite_store_is_honoured_by_the_record(tmp_path: Path) -> None:
    """The defect of 749f745: every sqlite: URI in study.json was taken for the folder's own file."""
    folder = StudyFolder(tmp_path / "study")
    folder.path.mkdir()
    choice = choose("sqlite:///elsewhere/mlflow.db", "sqlite:///elsewhere/optuna.db", folder.path, tmp_path, {})
    record = StudyRecord(choice.tracking, "1", "parent", choice.optuna, "uid")
    record.save(folder)
    stores = StudyRecord.load(folder).stores(folder)
    assert stores.tracking_uri == f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}" and not stores.tracking_local
    assert stores.optuna_url == f"sqlite:///{tmp_path / 'elsewhere' / 'optuna.db'}" and not stores.optuna_local


def test_records_written_before_stores_were_chosen_keep_their_meaning(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path)
    folder.record_file.write_text(json.dumps({"tracking_uri": "sqlite:////old/place/mlflow.db", "experiment_id": "1",
                                              "parent_run_id": "p"}))  # fmt: skip
    assert StudyRecord.load(folder).stores(folder).tracking_local  # older records: sqlite meant the folder's own


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tracking_uri", "ftp://x", r"^tracking_uri: 'ftp://x' is not an MLflow tracking URI"),
        ("optuna_storage", "redis://x", r"^optuna_storage: 'redis://x' is not an Optuna storage URL"),
        ("optuna_storage", "postgresql://u:hunter2@db/optuna", r"^optuna_storage: the URL holds a password"),
        ("tracking_uri", "postgresql://u:hunter2@db/mlflow", r"^tracking_uri: the URL holds a password"),
        (
            "optuna_storage",
            "postgresql+nodriver://db/optuna",
            r"^optuna_storage: postgresql\+nodriver://db/optuna needs",
        ),
    ],
)
def test_bad_store_urls_are_refused_naming_the_field(field: str, value: str, message: str) -> None:
    arguments = {"tracking_uri": None, "optuna_storage": None, field: value}
    with pytest.raises(StudyError, match=message) as caught:
        choose(arguments["tracking_uri"], arguments["optuna_storage"], Path("/s"), Path("/"), {})
    assert "hunter2" not in str(caught.value)


def test_a_password_in_the_environment_is_referenced_never_recorded(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "postgresql://u:hunter2@127.0.0.1/mlflow"}
    choice = choose(None, "${OPTUNA_URL}", tmp_path, tmp_path, env)
    assert choice == StoreChoice("${MLFLOW_TRACKING_URI}", "${OPTUNA_URL}")
    env["OPTUNA_URL"] = "postgresql://u:hunter2@127.0.0.1/optuna"
    stores = choice.open(tmp_path, env)
    assert stores.optuna_url == env["OPTUNA_URL"] and "hunter2" not in stores.shown("optuna")
    with pytest.raises(StudyError, match=r"^optuna_storage: \$\{OPTUNA_URL\} names environment variable OPTUNA_URL"):
        choice.open(tmp_path, {"MLFLOW_TRACKING_URI": env["MLFLOW_TRACKING_URI"]})
    assert redact("postgresql://u:hunter2@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert expand("plain", "f", {}) == "plain"


def test_pickled_storage_holds_the_key_not_the_url(tmp_path: Path) -> None:
    from study.record import BoundStorage

    stores = StoreChoice(None, None).open(tmp_path)
    with bound("parent-1", tmp_path, stores):
        storage = BoundStorage("parent-1")
        data = pickle.dumps(storage)
        assert str(tmp_path).encode() not in data and b"parent-1" in data
        assert pickle.loads(data).url == stores.optuna_url
        assert lookup("parent-1").folder == tmp_path
    with pytest.raises(RuntimeError, match="not bound"):
        lookup("parent-1")
