"""Stand-in for a path Tune pickled (study/frozen.py): the budget's stop callback, once beside the ledger."""

from study.run.stop_callbacks import BudgetCallback

__all__ = ["BudgetCallback"]
