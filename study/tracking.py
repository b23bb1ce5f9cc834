"""Stand-in for a path Tune pickled (study/frozen.py): the MLflow logger and the progress line, before
they had modules of their own."""

from study.run.progress import ProgressLine
from study.run.trial_logger import MlflowTrialLogger

__all__ = ["MlflowTrialLogger", "ProgressLine"]
