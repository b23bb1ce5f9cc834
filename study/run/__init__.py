"""The run: Ray Tune around a study (the Tuner, the searcher, the Tune callbacks, the progress line, the
watchdog of a killed driver, Ray's session), warm starts, confirmation studies and ``study sync``.
With ``trainables/``, the only code that imports Ray. Never imports the reporting room."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune._front import front_door

# each public name -> its module in this room (imported on first use)
_EXPORTS = {
    "BudgetCallback": "stop_callbacks",
    "DiskSpaceCallback": "stop_callbacks",
    "FolderStorage": "searcher",
    "MlflowTrialLogger": "trial_logger",
    "OptunaNumber": "driver",
    "ProgressLine": "progress",
    "StudyOutcome": "driver",
    "TAKEN_OVER_ATTR": "searcher",
    "TUNE_TRIAL_ATTR": "searcher",
    "TaggedOptunaSearch": "searcher",
    "WARM_ATTR": "warm_start",
    "check_resumable": "driver",
    "check_study_dir": "driver",
    "failure_reason": "trial_errors",
    "fits": "warm_start",
    "make_scheduler": "driver",
    "ray_session": "session",
    "resume_study": "driver",
    "run_confirmation": "confirm",
    "run_study": "driver",
    "seed_trials": "warm_start",
    "start_record": "driver",
    "sweep_efficiency": "driver",
    "sync_study": "sync",
}
__all__ = [
    "BudgetCallback",
    "DiskSpaceCallback",
    "FolderStorage",
    "MlflowTrialLogger",
    "OptunaNumber",
    "ProgressLine",
    "StudyOutcome",
    "TAKEN_OVER_ATTR",
    "TUNE_TRIAL_ATTR",
    "TaggedOptunaSearch",
    "WARM_ATTR",
    "check_resumable",
    "check_study_dir",
    "failure_reason",
    "fits",
    "make_scheduler",
    "ray_session",
    "resume_study",
    "run_confirmation",
    "run_study",
    "seed_trials",
    "start_record",
    "sweep_efficiency",
    "sync_study",
]
__getattr__ = front_door(__name__, _EXPORTS)

if TYPE_CHECKING:
    from study.run.confirm import run_confirmation
    from study.run.driver import (
        OptunaNumber,
        StudyOutcome,
        check_resumable,
        check_study_dir,
        make_scheduler,
        resume_study,
        run_study,
        start_record,
        sweep_efficiency,
    )
    from study.run.progress import ProgressLine
    from study.run.searcher import TAKEN_OVER_ATTR, TUNE_TRIAL_ATTR, FolderStorage, TaggedOptunaSearch
    from study.run.session import ray_session
    from study.run.stop_callbacks import BudgetCallback, DiskSpaceCallback
    from study.run.sync import sync_study
    from study.run.trial_errors import failure_reason
    from study.run.trial_logger import MlflowTrialLogger
    from study.run.warm_start import WARM_ATTR, fits, seed_trials
