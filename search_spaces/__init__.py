"""Optuna search spaces, by name."""

from search_spaces import demo as _demo  # noqa: F401  (registers)
from search_spaces import incremental as _incremental  # noqa: F401
from search_spaces.registry import SPACES, SearchSpace, get_space, register_space, sample_params

__all__ = ["SPACES", "SearchSpace", "get_space", "register_space", "sample_params"]
