"""Stand-in for a path Tune pickled (study/frozen.py): the progress line."""

from study.run.progress import ProgressLine

__all__ = ["ProgressLine"]
