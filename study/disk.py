"""Stand-in for a path Tune pickled (study/frozen.py): the disk's stop callback, once beside the free-space check."""

from study.run.stop_callbacks import DiskSpaceCallback

__all__ = ["DiskSpaceCallback"]
