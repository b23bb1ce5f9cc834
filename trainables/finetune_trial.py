"""The Ray Tune trainable: one trial = one ``finetune.fit`` run, reported to Tune each epoch."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from finetune import EpochMetrics, FitResult, config_to_yaml, fit, resolve_config
from finetune.config import TrainConfig

BEST_WEIGHTS = "best_model.pt"
RESOLVED_CONFIG = "config.yaml"


class TuneReporter:
    """Engine callback: each epoch's flat metrics go to ``tune.report``.

    The last epoch is reported together with a Tune checkpoint holding the selected
    (best-validation) weights and the resolved config, which Tune persists in the study's
    storage; early-stopped trials end without one.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.final: EpochMetrics | None = None

    def on_epoch_end(self, metrics: EpochMetrics) -> None:
        if metrics.test_acc is not None:
            self.final = metrics  # reported with the checkpoint in on_fit_end
            return
        tune.report(metrics.flat())

    def on_fit_end(self, result: FitResult) -> None:
        assert self.final is not None
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(result.best_state, Path(tmp) / BEST_WEIGHTS)
            (Path(tmp) / RESOLVED_CONFIG).write_text(config_to_yaml(self.config))
            tune.report(self.final.flat(), checkpoint=tune.Checkpoint.from_directory(tmp))


def finetune_trial(params: dict[str, Any], *, base: dict[str, Any]) -> None:
    """Resolve the trial's flat parameters onto ``base`` and fine-tune; Tune calls this per trial."""
    config = resolve_config(base, params)
    fit(config, [TuneReporter(config)])
