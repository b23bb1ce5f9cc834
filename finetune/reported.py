"""What the engine reports, as plain values a reader of its results needs without importing the
engine (and torch): ``study``'s result table names its spectrum columns from these."""

from __future__ import annotations

# the smallest singular values of the last batch's features reported each epoch (sv_min_1..4)
NUM_REPORTED_SINGULAR_VALUES = 4
