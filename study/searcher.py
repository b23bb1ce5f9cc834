"""Stand-in for a path Tune pickled (study/frozen.py): the searcher."""

from study.run.searcher import FolderStorage, TaggedOptunaSearch

__all__ = ["FolderStorage", "TaggedOptunaSearch"]
