"""A study spec's typed model: the dataclasses a spec YAML becomes, and what a base config holds fixed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune import TrainConfig, config_from_dict

if TYPE_CHECKING:
    from search_spaces import SearchSpace


SCHEDULERS = ("asha", "hyperband", "fifo")


@dataclass(frozen=True)
class SchedulerSpec:
    """Early stopping on epochs: ``asha`` (asynchronous successive halving), ``hyperband``, or ``fifo`` (none)."""

    name: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2


@dataclass(frozen=True)
class ResourcesSpec:
    """What one trial reserves; fractions of a GPU are allowed."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class ConfirmSpec:
    """After a search: its ``top`` configurations (by the selection metric) run again on ``seeds``
    fresh seeds, each with its partner without BSS (``study.run.confirm``); 0: no confirmation."""

    top: int = 0
    seeds: int = 5


@dataclass(frozen=True)
class BudgetSpec:
    """What a study may spend before it stops cleanly (``study.record.budget``): ``gpu_hours``, the sum of
    its trials' device-hours (wall time x the share of a GPU each held; on CPUs, x the CPUs it held:
    CPU-hours), and ``wall_hours``, the time its drivers have run, every start included. Null: no limit."""

    gpu_hours: float | None = None
    wall_hours: float | None = None


@dataclass(frozen=True)
class WarmStartSpec:
    """``from``: an earlier study's folder (relative to the working directory, as ``output_dir``) or
    an MLflow experiment's name on this study's tracking store, whose finished trials that fit this
    space seed the sampler (``study.run.warm_start``); ``same_rate``: only trials at this study's rate."""

    source: str | None = None  # YAML key ``from``
    same_rate: bool = False


@dataclass(frozen=True)
class StudySpec:
    name: str
    output_dir: str
    search_space: str | dict[str, Any] = "demo"
    num_samples: int = 8
    max_concurrent: int = 2
    max_failures: int = 1
    reuse_actors: bool = True  # one worker process runs trial after trial (no process start, imports, warm caches)
    seed: int = 0
    # which epoch a trial reports: best_val (searches) or last (grids: the paper's tables); null: by space
    selection: str | None = None
    metric: str | None = None  # what Optuna, ASHA, best.yaml and status use; null: the selection's metric
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    tracking_uri: str | None = None  # null: MLFLOW_TRACKING_URI if set, else the folder's mlflow.db
    optuna_storage: str | None = None  # null: the folder's optuna.db; or postgresql://..., mysql://...
    # null: each trial's state, config and weights in the study folder (a shared file system on a
    # cluster); s3://BUCKET/PREFIX: there instead, with Tune's experiment state (trainables.storage)
    storage: str | None = None
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    # what stays the same across sampling rates: "steps" (optimiser steps: optim.steps_per_epoch
    # set; a rate changes the data only) or "epochs" (passes over each rate's data: steps_per_epoch
    # null; a higher rate trains longer); null: as the base config says
    held_fixed: str | None = None
    confirm: ConfirmSpec = field(default_factory=ConfirmSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    warm_start: WarmStartSpec = field(default_factory=WarmStartSpec)
    base: dict[str, Any] = field(default_factory=dict)

    @property
    def study_dir(self) -> Path:
        return Path(self.output_dir)

    @property
    def space(self) -> SearchSpace:
        from search_spaces import get_space
        from search_spaces.declarative import parse_space

        if isinstance(self.search_space, dict):
            return parse_space(self.search_space)
        return get_space(self.search_space)

    @property
    def base_config(self) -> TrainConfig:
        return config_from_dict(self.base)

    @property
    def cluster_address(self) -> str | None:
        """The Ray cluster to join: ``ray_address``, else ``RAY_ADDRESS`` (set by ``ray job submit``
        for the job's driver); None starts a local Ray in the driver's process."""
        return self.ray_address or os.environ.get("RAY_ADDRESS") or None


HELD_FIXED = {
    "steps": "the number of optimiser steps (optim.epochs x optim.steps_per_epoch): a higher sampling rate "
    "changes the data only, not the training length",
    "epochs": "the number of epochs (passes over each rate's own data, optim.steps_per_epoch null): a higher "
    "sampling rate also trains for more steps",
}


def held_fixed(base: TrainConfig) -> str:
    """What a base config holds fixed across sampling rates."""
    return "steps" if base.optim.steps_per_epoch is not None else "epochs"
