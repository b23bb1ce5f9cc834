"""The study's Optuna searcher, without Ray running: what Optuna is told, and how it takes over
the Optuna trials of Tune trials lost with a killed driver (it reaches OptunaSearch's private
state through ``compat``; ``tests/test_compat.py`` fails loudly if Ray renames it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study.record import BoundStorage, StoreChoice, bound
from study.run import TAKEN_OVER_ATTR, TUNE_TRIAL_ATTR, TaggedOptunaSearch


def space(trial: optuna.Trial) -> None:
    trial.suggest_float("optim.lr", 1e-3, 1e-1, log=True)


def searcher(max_epochs: int = 4) -> TaggedOptunaSearch:
    return TaggedOptunaSearch(
        space=space,
        metric="best_val_acc",
        mode="max",
        study_name="s",
        storage=BoundStorage("key"),
        sampler=optuna.samplers.TPESampler(seed=0),
        max_epochs=max_epochs,
        key="key",
    )


@pytest.fixture
def in_study_folder(tmp_path: Path) -> Iterator[Path]:
    """A study bound as the driver binds it (its folder's own optuna.db); the working directory stays."""
    with bound("key", tmp_path, StoreChoice().open(tmp_path)):
        yield tmp_path


def save_tune_state(folder: Path, statuses: dict[str, str], later: bool = False) -> None:
    """Tune's experiment state file as Tune writes it (each trial's JSON state as a string)."""
    tune = folder / "tune"
    tune.mkdir(exist_ok=True)
    entries = [[json.dumps({"trial_id": t, "status": status}), "{}"] for t, status in statuses.items()]
    path = tune / "experiment_state-2026-12-06_10-00-00.json"
    path.write_text(json.dumps({"trial_data": entries}))
    if later:  # a new write: a later modification time, so it is read again
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_optuna_sees_the_selection_metric_per_epoch_and_early_stops_as_pruned(in_study_folder: Path) -> None:
    search = searcher(max_epochs=4)
    for trial_id in ("a", "b"):
        assert search.suggest(trial_id) is not None
    for epoch, value in ((1, 0.5), (2, 0.6)):
        search.on_trial_result("a", {"best_val_acc": value, "epoch": epoch, "training_iteration": epoch})
    search.on_trial_result("a", {"best_val_acc": 0.6, "epoch": 2, "replayed": 1.0, "training_iteration": 1})
    search.on_trial_complete("a", {"best_val_acc": 0.6, "epoch": 2})  # stopped by ASHA at epoch 2 of 4
    search.on_trial_complete("b", {"best_val_acc": 0.7, "epoch": 4})
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{in_study_folder / 'optuna.db'}")
    # told only once Tune's saved state records the ends (a driver killed before would lose them)
    assert all(t.state == TrialState.RUNNING for t in study.trials) and search.tell_saved() == 0
    save_tune_state(in_study_folder, {"a": "TERMINATED", "b": "RUNNING"})
    assert search.tell_saved() == 1 and set(search.deferred) == {"b"}
    save_tune_state(in_study_folder, {"a": "TERMINATED", "b": "TERMINATED"}, later=True)
    assert search.tell_saved() == 1 and not search.deferred
    assert study.metric_names == ["best_val_acc"]
    by_tune_id = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.trials}
    assert by_tune_id["a"].state == TrialState.PRUNED and by_tune_id["a"].intermediate_values == {1: 0.5, 2: 0.6}
    assert by_tune_id["b"].state == TrialState.COMPLETE and by_tune_id["b"].value == 0.7
    assert study.best_value == 0.7


def test_a_lost_trial_is_taken_over_with_its_parameters_and_folder(in_study_folder: Path) -> None:
    first = searcher()
    lost_params = first.suggest("lost")
    (in_study_folder / "trials" / "lost").mkdir(parents=True)
    (in_study_folder / "trials" / "lost" / "epoch_000001.pt").write_bytes(b"state")
    restarted = searcher()  # a driver that restored no searcher state knows nothing of "lost"
    assert restarted.suggest("new") == lost_params
    assert (in_study_folder / "trials" / "new" / "epoch_000001.pt").read_bytes() == b"state"
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{in_study_folder / 'optuna.db'}")
    assert len(study.trials) == 1
    assert study.trials[0].user_attrs[TUNE_TRIAL_ATTR] == "new"
    assert study.trials[0].user_attrs[TAKEN_OVER_ATTR] == "lost"
    assert restarted.suggest("another") is not None and len(study.trials) == 2  # no orphan left: a new trial
