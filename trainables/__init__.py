"""Ray Tune adapters around the fine-tuning core. All Ray code that runs inside a trial lives here.

The package itself imports no Ray: :mod:`trainables.trial_store` (a trial's folder) is read by
the study's read-only commands; the trainable is :mod:`trainables.finetune_trial`.
"""

from trainables.trial_store import BEST_WEIGHTS, RESOLVED_CONFIG, TRIALS_DIR, TrialStore

__all__ = ["BEST_WEIGHTS", "RESOLVED_CONFIG", "TRIALS_DIR", "TrialStore"]
