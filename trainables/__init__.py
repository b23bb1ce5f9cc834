"""Ray Tune adapters around the fine-tuning core. All Ray code that runs inside a trial lives here."""

from trainables.finetune_trial import BEST_WEIGHTS, ENGINE_STATE, RESOLVED_CONFIG, TuneReporter, finetune_trial

__all__ = ["BEST_WEIGHTS", "ENGINE_STATE", "RESOLVED_CONFIG", "TuneReporter", "finetune_trial"]
