"""Headline numbers free of selection bias: a search's top configurations, run again on fresh seeds.

After a search its best trial's accuracy is optimistic: it was chosen because it was high. With
``confirm: {top: 3, seeds: 5}`` the study re-runs each of its ``top`` configurations (ranked by the
selection metric) on ``seeds`` seeds that no trial of the search used (a seed draws the sampled
images and the initialisation), each beside its partner without BSS when it has BSS, so that the
gain of BSS is a paired difference on the same fresh seeds. Each configuration is a grid study of
its own in ``<study>/confirm/rank-<i>/``, built from the selected trial's saved config: its own
MLflow experiment, Optuna study and table, resumable as any study. ``study report`` takes the
headline numbers from them (:func:`confirmed`), with the search's own value beside as "selected".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune import TrainConfig, config_to_dict
from finetune.regularizers import BSSConfig
from study.record.folder import StudyFolder, launched_spec, ranked_rows, read_trials, trials_table_state
from study.record.trial_config import row_config
from study.spec import StudySpec, spec_from_mapping

CONFIRM_DIR = "confirm"


@dataclass(frozen=True)
class Candidate:
    """One selected configuration: its rank in the search, its trial's row and saved config."""

    rank: int
    row: dict[str, Any]
    config: TrainConfig

    @property
    def bss(self) -> bool:
        return BSSConfig.of(self.config).enabled


def candidates(spec: StudySpec) -> list[Candidate]:
    """The search's ``confirm.top`` best trials that ran to the end, best first."""
    folder = StudyFolder(spec.study_dir)
    rows = [r for r in ranked_rows(folder, str(spec.metric)) if r.get("trial_dir") and r["status"] == "finished"]
    chosen = rows[: spec.confirm.top]
    return [Candidate(i, row, row_config(folder.path, row, spec.base)) for i, row in enumerate(chosen, start=1)]


def fresh_seeds(spec: StudySpec, count: int) -> list[int]:
    """``count`` seeds above every seed a trial of the search used."""
    folder = StudyFolder(spec.study_dir)
    used = {row_config(folder.path, row, spec.base).seed for row in read_trials(folder).to_pylist()}
    start = max(used, default=-1) + 1
    return list(range(start, start + count))


def rank_dir(spec: StudySpec, rank: int) -> Path:
    return spec.study_dir / CONFIRM_DIR / f"rank-{rank}"


def confirmation_spec(spec: StudySpec, candidate: Candidate, seeds: Sequence[int]) -> StudySpec:
    """The grid study that runs ``candidate`` (and its partner without BSS) on ``seeds``."""
    grid: dict[str, list[Any]] = {"seed": list(seeds)}
    if candidate.bss:
        grid["bss.enabled"] = [True, False]
    values = {
        "name": f"{spec.name}-confirm-{candidate.rank}",
        "output_dir": str(rank_dir(spec, candidate.rank)),
        "search_space": {"grid": grid},
        "num_samples": len(seeds) * (2 if candidate.bss else 1),
        "max_concurrent": spec.max_concurrent,
        "max_failures": spec.max_failures,
        "reuse_actors": spec.reuse_actors,
        "seed": spec.seed,
        "selection": spec.selection,
        "scheduler": {"name": "fifo"},
        "resources": {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        "tracking_uri": spec.tracking_uri,
        "optuna_storage": spec.optuna_storage,
        "storage": spec.storage,
        "ray_address": spec.ray_address,
        "ray_num_cpus": spec.ray_num_cpus,
        "held_fixed": spec.held_fixed,
        "base": config_to_dict(candidate.config),
    }
    return spec_from_mapping(values, f"confirm rank {candidate.rank}", spec.study_dir)


def confirmation_specs(spec: StudySpec) -> list[StudySpec]:
    """One grid study a selected configuration; the same seeds for all of them."""
    if not spec.confirm.top:
        return []
    seeds = fresh_seeds(spec, spec.confirm.seeds)
    return [confirmation_spec(spec, c, seeds) for c in candidates(spec)]


def pending(spec: StudySpec) -> bool:
    """Whether a confirmation the spec asks for has not run to its end yet."""
    if not spec.confirm.top:
        return False
    ranks = range(1, len(candidates(spec)) + 1)  # fewer than top where fewer trials ran to their end
    return any(trials_table_state(StudyFolder(rank_dir(spec, r))) != "ok" for r in ranks)


@dataclass(frozen=True)
class Confirmed:
    """A confirmation study's trials (with the selected trial's own numbers beside them)."""

    rank: int
    selected: dict[str, Any]  # the search's trial row
    rows: list[dict[str, Any]]
    spec: StudySpec


def confirmed(spec: StudySpec) -> list[Confirmed]:
    """The confirmation studies of a search that ran to their end, by rank."""
    found = []
    for candidate in candidates(spec):  # the ranks the confirmation studies were built from
        folder = StudyFolder(rank_dir(spec, candidate.rank))
        if trials_table_state(folder) == "ok":
            rows = read_trials(folder).to_pylist()
            found.append(Confirmed(candidate.rank, candidate.row, rows, launched_spec(folder.path)))
    return found
