"""Ray Tune adapters around the fine-tuning core. All Ray code that runs inside a trial lives here.

The package itself imports no Ray and no torch: a trial folder's layout is :mod:`trainables.layout`
(read by the study's read-only commands), its state :mod:`trainables.trial_store` (imported on first
use of :class:`TrialStore`); the trainable is :mod:`trainables.finetune_trial`.
"""

from typing import TYPE_CHECKING

from finetune._front import front_door
from trainables.layout import BEST_WEIGHTS, RESOLVED_CONFIG, TRIALS_DIR

__all__ = ["BEST_WEIGHTS", "RESOLVED_CONFIG", "TRIALS_DIR", "TrialStore"]
__getattr__ = front_door(__name__, {"TrialStore": "trial_store"})

if TYPE_CHECKING:
    from trainables.trial_store import TrialStore
