"""Ray's OptunaSearch, with each Optuna trial tagged by its Tune trial id (restore-proof linking)."""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

TUNE_TRIAL_ATTR = "tune_trial_id"


class TaggedOptunaSearch(OptunaSearch):
    """Records ``tune_trial_id`` as a user attribute of every Optuna trial it asks for, so the
    link survives a driver restart (it lives in the Optuna storage, not in memory)."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and isinstance(config, dict):
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return config


def optuna_numbers(storage_url: str, study_name: str) -> dict[str, int]:
    """Tune trial id -> Optuna trial number, read from the storage."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError:
        return {}
    return {str(t.user_attrs[TUNE_TRIAL_ATTR]): t.number for t in study.trials if TUNE_TRIAL_ATTR in t.user_attrs}
