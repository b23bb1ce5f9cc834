"""Stand-in for a path Tune pickled (study/frozen.py): the Optuna storage."""

from study.record.optuna_storage import BoundStorage, RetryingStorage

__all__ = ["BoundStorage", "RetryingStorage"]
