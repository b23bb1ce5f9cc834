"""A trial's folder inside the study folder, as names only (no torch): what the study's read-only
commands need to find a trial's files without loading the code that writes them."""

from __future__ import annotations

import re

TRIALS_DIR = "trials"  # inside the study folder: one sub-folder per Tune trial id
BEST_WEIGHTS = "best_model.pt"
RESOLVED_CONFIG = "config.yaml"
FATAL_ERROR = "fatal_error.txt"  # a config, data or weights error: retrying cannot help
STATE_PATTERN = re.compile(r"^epoch_(\d{6})\.pt$")
KEEP_STATES = 2  # the newest and the one before it (in case the newest cannot be read)
