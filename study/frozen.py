"""Module paths and names that Tune pickles into a study folder's ``tune/`` (the searcher, its
storage, the callbacks, the search space's function), and so are frozen: a study interrupted
under one version must resume under the next. Each path a version pickled keeps a stand-in module
that re-exports the name from where it lives now (``study/searcher.py`` and the like, 3 lines
each), and what is pickled today is listed too, so that moving it again keeps a stand-in behind.
``tests/study/test_frozen.py`` checks every entry; ``tests/study/test_upgrade_resume.py`` resumes a
folder written by the code of a672218, before ``study/`` had rooms."""

from __future__ import annotations

# a pickled path -> where the name lives now
FROZEN: dict[str, str] = {
    # pickled until study/ had rooms (a672218 and before)
    "study.optuna_storage.BoundStorage": "study.record.optuna_storage.BoundStorage",
    "study.optuna_storage.RetryingStorage": "study.record.optuna_storage.RetryingStorage",
    "study.searcher.TaggedOptunaSearch": "study.run.searcher.TaggedOptunaSearch",
    "study.searcher.FolderStorage": "study.run.searcher.FolderStorage",
    "study.progress.ProgressLine": "study.run.progress.ProgressLine",
    "study.stop_callbacks.BudgetCallback": "study.run.stop_callbacks.BudgetCallback",
    "study.stop_callbacks.DiskSpaceCallback": "study.run.stop_callbacks.DiskSpaceCallback",
    "study.trial_logger.MlflowTrialLogger": "study.run.trial_logger.MlflowTrialLogger",
    # pickled while the stop callbacks lived beside the budget ledger and the disk check (5106fda..0889c34)
    "study.budget.BudgetCallback": "study.run.stop_callbacks.BudgetCallback",
    "study.disk.DiskSpaceCallback": "study.run.stop_callbacks.DiskSpaceCallback",
    # held by the MLflow logger of versions before the live registry (its Optuna lookup)
    "study.driver.OptunaNumber": "study.run.driver.OptunaNumber",
    "study.run.driver.OptunaNumber": "study.run.driver.OptunaNumber",
    # pickled before the MLflow logger and the progress line had modules of their own
    "study.tracking.MlflowTrialLogger": "study.run.trial_logger.MlflowTrialLogger",
    "study.tracking.ProgressLine": "study.run.progress.ProgressLine",
    # pickled today (the paths above's targets) and the search spaces' functions, which never moved
    "study.record.optuna_storage.BoundStorage": "study.record.optuna_storage.BoundStorage",
    "study.run.searcher.TaggedOptunaSearch": "study.run.searcher.TaggedOptunaSearch",
    "study.run.searcher.FolderStorage": "study.run.searcher.FolderStorage",
    "study.run.progress.ProgressLine": "study.run.progress.ProgressLine",
    "study.run.stop_callbacks.BudgetCallback": "study.run.stop_callbacks.BudgetCallback",
    "study.run.stop_callbacks.DiskSpaceCallback": "study.run.stop_callbacks.DiskSpaceCallback",
    "study.run.trial_logger.MlflowTrialLogger": "study.run.trial_logger.MlflowTrialLogger",
    "study.record.optuna_storage.RetryingStorage": "study.record.optuna_storage.RetryingStorage",
    "search_spaces.demo.demo_space": "search_spaces.demo.demo_space",
    "search_spaces.demo.methods_space": "search_spaces.demo.methods_space",
    "search_spaces.registry.GridDefine": "search_spaces.registry.GridDefine",
    "search_spaces.declarative.DeclaredSpace": "search_spaces.declarative.DeclaredSpace",
    "search_spaces.declarative.DeclaredGrid": "search_spaces.declarative.DeclaredGrid",
}
