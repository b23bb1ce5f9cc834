"""The Ray Tune trainable: one trial = one fine-tuning run, reported to Tune each epoch.

The trial's state lives in its own folder of the study (:class:`TrialStore`), not in Tune's
checkpoints: every start of the function (first run, retry after a crash, ``study resume``
after a killed driver) continues from the newest complete state there and first reports that
epoch again, so an epoch whose report the driver never received is recorded; the driver's
MLflow logger skips epochs it already has.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from ray import tune

from finetune import Callback, EpochMetrics, FitResult, InputError, Trainer, config_to_yaml, resolve_config
from finetune.digests import data_inputs
from finetune.engine import engine_text, train_to_end, use_threads
from trainables.gpu_metrics import GpuSampler
from trainables.storage import location
from trainables.trial_store import TrialStore

REPLAYED = "replayed"  # 1.0 in a result that repeats the epoch a restarted trial continues from
START_EPOCH = "start_epoch"  # the epoch this start of the trial continued from (0: from the beginning)
ENGINE = "engine"  # torch, its threads, the CPU's instruction set or the GPU (finetune.engine.engine_text)
DATA_INPUTS = "data_inputs"  # JSON of each split's name, source, digest and rows (MLflow datasets)


class TrialInputError(InputError):
    """A trial's config, data or weights cannot work; it is not worth retrying."""


class TuneReporter:
    """Engine callback: each epoch's state goes to the trial's folder (atomically), then its flat
    metrics go to ``tune.report``, with what ``auto`` resolved to (``bf16``, ``channels_last``,
    ``cuda_graph``: 1 or 0) and the split sizes (``n_train``, ``n_val``, ``n_test``). The last
    epoch also writes the selected weights (of the best validation epoch, or the last epoch's)."""

    def __init__(
        self,
        store: TrialStore,
        start_epoch: int,
        inputs: str = "",
        share: tuple[bool, float] = (False, 1.0),
        gpu: GpuSampler | None = None,
    ) -> None:
        self.store = store
        self.gpu = gpu  # the trial's own GPU utilisation and memory each epoch (trainables.gpu_metrics)
        self.start_epoch = start_epoch
        self.inputs = inputs  # JSON: the digests of the images each split holds (finetune.digests)
        self.on_gpu, self.share = share  # what the trial holds: a fraction of a GPU, else CPUs

    def result(self, metrics: EpochMetrics, trainer: Trainer, replayed: bool = False) -> dict[str, float | str]:
        return {
            **metrics.flat(),
            "bf16": float(trainer.bf16),
            ENGINE: engine_text(trainer.device),
            "channels_last": float(trainer.memory_format == torch.channels_last),
            "cuda_graph": float(trainer.graphed),
            "n_train": float(trainer.sizes.train),
            "n_val": float(trainer.sizes.val),
            "n_test": float(trainer.sizes.test),
            "tsvd_r": float(trainer.config.model.tsvd_r),  # with which matrix TSVD evaluated (0: no TSVD)
            "tsvd_per_batch": float(trainer.config.model.tsvd_r > 0 and trainer.config.model.tsvd_eval == "batch"),
            REPLAYED: float(replayed),
            START_EPOCH: float(self.start_epoch),
            DATA_INPUTS: self.inputs,
            **self.cost(trainer),
        }

    def cost(self, trainer: Trainer) -> dict[str, float]:
        """What the trial has cost so far, every start of it included (the epochs' own times, restored
        with its state): ``wall_s``, and ``device_s``, the device-seconds it held: wall x the GPU
        fraction on a GPU, wall x its CPUs on a CPU (``device_gpu`` says which)."""
        wall = sum(m.seconds for m in trainer.history)
        return {"wall_s": wall, "device_s": wall * self.share, "device_gpu": float(self.on_gpu)}

    def on_epoch_end(self, metrics: EpochMetrics, trainer: Trainer) -> None:
        best = trainer.best_state if trainer.done else None
        self.store.save_epoch(metrics.epoch, trainer.state_dict(), best)
        tune.report({**self.result(metrics, trainer), **(self.gpu.epoch() if self.gpu is not None else {})})

    def on_fit_end(self, result: FitResult) -> None:
        if self.gpu is not None:
            self.gpu.stop()


def held_share() -> tuple[bool, float]:
    """(on a GPU, the GPU fraction or the CPUs) this Tune trial reserved; (False, 1.0) outside Tune."""
    try:
        resources = tune.get_context().get_trial_resources().required_resources
    except Exception:  # not inside a Tune trial (tests call run_trial directly)
        return False, 1.0
    return share_of(resources)


def share_of(resources: dict[str, float]) -> tuple[bool, float]:
    gpu = float(resources.get("GPU", 0.0))
    return (True, gpu) if gpu > 0 else (False, float(resources.get("CPU", 1.0)))


def run_trial(
    params: dict[str, Any], base: dict[str, Any], store: TrialStore, callbacks: Sequence[Callback] = ()
) -> FitResult:
    """Resolve the trial's parameters onto ``base``, continue from the store's newest state (or
    start), and train to the end. A config, data or weights error is recorded in the store, so
    a retry of the trial ends at once with the same message instead of training again."""
    fatal = store.fatal_error()
    if fatal is not None:
        raise TrialInputError(f"{fatal} (not retried: the same input fails again)")
    try:
        config = resolve_config(base, params)
        store.save_config(config_to_yaml(config))
        use_threads(config)
        trainer = Trainer(config)
    except InputError as exc:
        store.record_fatal(str(exc))
        raise
    state = store.latest_state()
    if state is not None:
        trainer.load_state_dict(state)
    inputs = json.dumps(data_inputs(config, trainer.splits), sort_keys=True)
    reporter = TuneReporter(store, trainer.epoch, inputs, held_share(), GpuSampler(trainer.device).start())
    if trainer.history:  # report the epoch it continues from: the driver may never have seen it
        tune.report(reporter.result(trainer.history[-1], trainer, replayed=True))
    return train_to_end(trainer, [reporter, *callbacks])


def finetune_trial(params: dict[str, Any], *, base: dict[str, Any], trials_root: str) -> None:
    """Tune calls this once per start of a trial; ``trials_root`` is the study's absolute
    ``trials/`` folder (given anew on resume, so a moved study folder works), or its URI in the
    study's object-store ``storage``."""
    run_trial(params, base, TrialStore(location(trials_root).child(tune.get_context().get_trial_id())))
