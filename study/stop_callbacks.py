"""Stand-in for a path Tune pickled (study/frozen.py): the stop callbacks."""

from study.run.stop_callbacks import BudgetCallback, DiskSpaceCallback

__all__ = ["BudgetCallback", "DiskSpaceCallback"]
