"""Stand-in for a path Tune pickled (study/frozen.py): the Optuna lookup that older MLflow loggers held."""

from study.run.driver import OptunaNumber

__all__ = ["OptunaNumber"]
