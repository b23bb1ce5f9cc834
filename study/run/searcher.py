"""Ray's OptunaSearch, with each Optuna trial tagged by its Tune trial id (restore-proof linking),
and Optuna trials lost with a killed driver taken over instead of left RUNNING.

A driver killed after Optuna created a trial but before Tune saved its experiment state leaves
that Optuna trial RUNNING with no Tune trial behind it. On ``study resume`` the restored
searcher asks for new trials: the first ones take over such orphans (same Optuna trial, same
parameters, a grid point kept), and the lost trial's saved epochs move to the new Tune trial's
folder, so the study ends with exactly ``num_samples`` Optuna trials and no training lost.

A trial's end is told to Optuna only once Tune's saved state in the study folder records it
(:meth:`TaggedOptunaSearch.tell_saved`): told at once, a driver killed before Tune saved its state
(at most every 10 s) would leave the trial COMPLETE in Optuna while the resumed study, not knowing
it, runs another in its place. Ends Tune saved but the searcher had not told yet are told by
:func:`tell_ended` at the end of the study.

This module reaches into ``OptunaSearch``'s private state (Ray has no public hook for it) through
:mod:`compat` only (``ray-optuna-search``); ``tests/test_compat.py`` fails loudly if Ray renames it.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from compat import for_optuna, for_ray
from study.record import TUNE_DIR, TUNE_TRIAL_ATTR, RetryingStorage, StudyFolder, budget
from study.record import live as binding
from trainables.finetune_trial import REPLAYED
from trainables.layout import TRIALS_DIR

TAKEN_OVER_ATTR = "taken_over_from"


class FolderStorage(RetryingStorage):
    """What searchers pickled by older versions hold (a folder-relative ``sqlite:///optuna.db``):
    it unpickles onto the bound study's storage. New searchers hold a ``BoundStorage``."""

    def __init__(self, relative_url: str) -> None:
        self.relative_url = relative_url
        stores = binding.only().stores
        super().__init__(stores.optuna_url, retry=not stores.optuna_local)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FolderStorage, (self.relative_url,))


class TaggedOptunaSearch(OptunaSearch):
    """Records ``tune_trial_id`` as a user attribute of every Optuna trial it asks for, so the
    link survives a driver restart (it lives in the Optuna storage, not in memory). Runs with the
    study folder as the working directory (the trial folders are moved relative to it).

    Optuna sees what the study selects on: the metric's name on the Optuna study (dashboards show
    ``best_val_acc``, not "Objective 0"), intermediate values per epoch (a restarted trial's
    repeated epoch is not reported again), and a trial its scheduler stopped before
    ``max_epochs`` is PRUNED, not COMPLETE.
    """

    def __init__(self, *args: Any, max_epochs: int, key: str | None = None, **kwargs: Any) -> None:
        self.max_epochs = max_epochs
        self.key = key  # the study's key in the driver's binding (its folder and stores)
        super().__init__(*args, **kwargs)

    @property
    def bound(self) -> binding.Binding:
        key = getattr(self, "key", None)  # a searcher pickled by an older version has none
        return binding.lookup(key) if key else binding.only()

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        study, metric = for_ray.ot_study(self), for_ray.search_metric(self)
        if study is not None and metric:
            with warnings.catch_warnings():  # set_metric_names is marked experimental
                warnings.simplefilter("ignore")
                study.set_metric_names([metric])

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.tell_saved()
        trials = for_ray.ot_trials(self)
        if result.get(REPLAYED) or trial_id in for_ray.completed_trials(self) or trial_id not in trials:
            return
        trials[trial_id].report(float(result[str(for_ray.search_metric(self))]), int(result["epoch"]))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        """Kept until Tune's saved state records the end (:meth:`tell_saved`)."""
        if trial_id in for_ray.completed_trials(self) or trial_id not in for_ray.ot_trials(self):
            super().on_trial_complete(trial_id, result, error)
            return
        self.deferred[trial_id] = (dict(result or {}), error)
        self.tell_saved()

    @property
    def deferred(self) -> dict[str, tuple[dict[str, Any], bool]]:
        """Ended trials not told to Optuna yet (pickled with the searcher)."""
        return self.__dict__.setdefault("_deferred", {})

    def tell_saved(self) -> int:
        """Tell Optuna the deferred ends that Tune's newest saved state in the study folder records."""
        if not self.deferred:
            return 0
        saved = saved_ended(tune_location(self.bound.folder, self.bound.tune_state), self.bound.tune_state)
        told = [trial_id for trial_id in self.deferred if trial_id in saved]
        for trial_id in told:
            result, error = self.deferred.pop(trial_id)
            self._tell(trial_id, result, error)
        return len(told)

    def _tell(self, trial_id: str, result: dict[str, Any], error: bool) -> None:
        trials, completed = for_ray.ot_trials(self), for_ray.completed_trials(self)
        if not stopped_early(result, error, self.max_epochs) or trial_id in completed or trial_id not in trials:
            super().on_trial_complete(trial_id, result or None, error)
            return
        study: optuna.Study = for_ray.ot_study(self)
        study.tell(trials[trial_id], state=TrialState.PRUNED)
        completed.add(trial_id)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        self.tell_saved()
        guard = budget.active(getattr(self, "key", None))
        if guard is not None and guard.exhausted:
            return None  # the budget is spent: no new trial (the study stops once the running ones end an epoch)
        if trial_id not in for_ray.ot_trials(self):
            self._take_over_orphan(trial_id)
        config = super().suggest(trial_id)
        ot_trial = for_ray.ot_trials(self).get(trial_id)
        if ot_trial is not None and isinstance(config, dict):
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
            self.bound.numbers[trial_id] = ot_trial.number  # the MLflow logger's lookup, in memory
        return config

    def _take_over_orphan(self, trial_id: str) -> None:
        study: optuna.Study = for_ray.ot_study(self)
        trials = for_ray.ot_trials(self)
        known = {t.number for t in trials.values()}
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number in known:
                continue
            trial = optuna.Trial(study, for_optuna.frozen_trial_id(frozen))
            previous = frozen.user_attrs.get(TUNE_TRIAL_ATTR)
            if previous:
                trial.set_user_attr(TAKEN_OVER_ATTR, previous)
                root = self.bound.folder / TRIALS_DIR
                lost, new = root / str(previous), root / trial_id
                if lost.is_dir() and not new.exists():
                    lost.replace(new)  # its saved epochs continue under the new trial id
            trials[trial_id] = trial
            return


def stopped_early(result: dict[str, Any], failed: bool, max_epochs: int) -> bool:
    """Whether a trial that ended was stopped by its scheduler before ``max_epochs`` (PRUNED in Optuna)."""
    return bool(result) and not failed and int(result.get("epoch", 0)) < max_epochs


def tune_location(folder: Path, last: dict[str, Any]) -> Path | str:
    """Where Tune keeps the study's experiment state: the folder's ``tune/``, or under the study's
    object-store ``storage`` (study.json says which; read once, kept with the last reading)."""
    if "where" not in last:
        storage = StudyFolder(folder).storage
        last["where"] = f"{storage}/{TUNE_DIR}" if storage else folder / TUNE_DIR
    where: Path | str = last["where"]
    return where


def saved_ended(tune_dir: Path | str, last: dict[str, Any]) -> frozenset[str]:
    """The Tune trial ids that Tune's newest experiment state in ``tune_dir`` records as ended
    (TERMINATED or ERROR); read again only when the file changes (``last``: the last reading,
    kept with the study's live state)."""
    newest = for_ray.tune_state_file(tune_dir)
    if newest is None:
        return frozenset()
    path, mtime = newest
    if last.get("path") == path and last.get("mtime") == mtime:
        ended: frozenset[str] = last["ended"]
        return ended
    statuses = for_ray.tune_saved_statuses(path)
    if statuses is None:
        return frozenset()  # being written: the next look reads it whole
    ended = frozenset(trial_id for trial_id, status in statuses.items() if status in ("TERMINATED", "ERROR"))
    last.update(path=path, mtime=mtime, ended=ended)
    return ended


def tell_ended(
    storage: Any, study_name: str, ended: dict[str, tuple[str, dict[str, Any]]], metric: str, max_epochs: int
) -> list[int]:
    """At the end of a study: every Optuna trial still RUNNING whose Tune trial ended (``ended``:
    Tune trial id -> (``complete`` or ``failed``, its last result)) is told so, as the searcher
    would have (PRUNED when stopped before ``max_epochs``); returns their numbers."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    told = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tune_id = frozen.user_attrs.get(TUNE_TRIAL_ATTR)
        if tune_id not in ended:
            continue
        how, result = ended[str(tune_id)]
        value = result.get(metric)
        if how == "failed" or not isinstance(value, (int, float)) or not math.isfinite(value):
            study.tell(frozen.number, state=TrialState.FAIL)
        elif stopped_early(result, False, max_epochs):
            study.tell(frozen.number, state=TrialState.PRUNED)
        else:
            study.tell(frozen.number, float(value))
        told.append(frozen.number)
    return told


def optuna_numbers(storage: Any, study_name: str) -> dict[str, int]:
    """Tune trial id -> Optuna trial number, read from the storage (a URL or a storage object)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return {}
    return {str(t.user_attrs[TUNE_TRIAL_ATTR]): t.number for t in study.trials if TUNE_TRIAL_ATTR in t.user_attrs}


def close_orphans(storage: Any, study_name: str, trial_ids: set[str]) -> list[int]:
    """Mark FAIL (user attribute ``orphaned``) the Optuna trials still RUNNING at the end of a
    study that belong to no Tune trial of it; returns their numbers."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    closed = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.user_attrs.get(TUNE_TRIAL_ATTR) not in trial_ids:
            optuna.Trial(study, for_optuna.frozen_trial_id(frozen)).set_user_attr("orphaned", True)
            study.tell(frozen.number, state=TrialState.FAIL)
            closed.append(frozen.number)
    return closed
