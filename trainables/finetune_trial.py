"""The Ray Tune trainable: one trial = one ``finetune.fit`` run, reported to Tune each epoch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from finetune import EpochMetrics, FitResult, config_to_yaml, fit, resolve_config
from finetune.config import TrainConfig
from finetune.engine import Trainer

ENGINE_STATE = "engine.pt"
BEST_WEIGHTS = "best_model.pt"
RESOLVED_CONFIG = "config.yaml"


CRASH_ONCE_ENV = "BSS_STUDY_TEST_CRASH_ONCE"  # tests only: a folder; each trial crashes once, at epoch 2


def _maybe_crash_for_test(trial_id: str, epoch: int) -> None:
    """Fault injection for the retry test: with the variable set, every trial dies once after
    its second epoch's checkpoint, as a preempted node would, and is retried by Tune."""
    folder = os.environ.get(CRASH_ONCE_ENV)
    if not folder or epoch != 2:
        return
    marker = Path(folder) / f"{trial_id}.crashed"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"injected crash of trial {trial_id} at epoch {epoch} ({CRASH_ONCE_ENV})")


class TuneReporter:
    """Engine callback: each epoch's flat metrics go to ``tune.report`` with a Tune checkpoint,
    with the precision and memory format ``auto`` resolved to (``bf16``, ``channels_last``: 1 or 0).

    The checkpoint holds the engine's whole state (so a retried or resumed trial continues
    exactly where it was) and the resolved config; the last one also holds the selected
    (best-validation) weights. Tune persists them in the study's storage.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def on_epoch_end(self, metrics: EpochMetrics, trainer: Trainer) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            torch.save(trainer.state_dict(), folder / ENGINE_STATE)
            (folder / RESOLVED_CONFIG).write_text(config_to_yaml(self.config))
            if trainer.done:
                torch.save(trainer.best_state, folder / BEST_WEIGHTS)
            settings = {
                "bf16": float(trainer.bf16),
                "channels_last": float(trainer.memory_format == torch.channels_last),
            }
            tune.report({**metrics.flat(), **settings}, checkpoint=tune.Checkpoint.from_directory(tmp))
        _maybe_crash_for_test(tune.get_context().get_trial_id(), metrics.epoch)

    def on_fit_end(self, result: FitResult) -> None:
        pass


def finetune_trial(params: dict[str, Any], *, base: dict[str, Any]) -> None:
    """Resolve the trial's flat parameters onto ``base`` and fine-tune, continuing from the
    trial's last checkpoint when Tune restores it; Tune calls this once per trial (attempt)."""
    config = resolve_config(base, params)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(Path(folder) / ENGINE_STATE, map_location="cpu", weights_only=True)
    fit(config, [TuneReporter(config)], resume=resume)
