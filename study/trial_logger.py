"""Stand-in for a path Tune pickled (study/frozen.py): the MLflow logger."""

from study.run.trial_logger import MlflowTrialLogger

__all__ = ["MlflowTrialLogger"]
