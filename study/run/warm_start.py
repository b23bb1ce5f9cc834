"""Studies that learn from earlier ones: ``warm_start: {from: SOURCE}`` seeds a new search's Optuna
sampler with the earlier study's finished trials that fit the new space.

SOURCE is a study folder (its ``trials.parquet`` and each trial's saved config; a relative path is
taken from the working directory, as ``output_dir``) or the name of an
MLflow experiment on the new study's tracking store (its child runs' parameters and metrics). A
source trial is taken when it ran to the end with the new study's selection metric, every parameter
the new space suggests has a value in it inside the new range, and its config equals the new study's
(the new base with those parameters) in every setting both record, except the seed and, unless
``same_rate: true``, the sampling rate: a 30% study warm-started from a 15% one is the natural case.
Each taken trial is added to the new Optuna study as a COMPLETE trial (``Study.add_trial``, user
attribute ``warm_start``), before the first new trial is asked for; it counts for the sampler
(TPE's model), not as a trial of the study (status, table, report count only the study's own).
What was taken and why the others were left out is printed, and recorded on the parent MLflow run
(``warm_start.*`` params, ``warm_start.txt``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from finetune import config_to_dict, resolve_config
from finetune.config import flatten
from study.spec import StudyError, StudySpec

WARM_ATTR = "warm_start"  # user attribute of an Optuna trial added from an earlier study (its source)
REPORT_FILE = "warm_start.txt"
# settings that say where or how a run executes, not what it learns: never a reason to leave a trial out
NOT_COMPARED = ("seed", "device", "num_threads", "data.root", "data.cache_dir", "delta.cache_dir", "plugins")
RATE = "data.sampling_rate"


@dataclass(frozen=True)
class SourceTrial:
    """One finished trial of the source: a label, its flat config (or the settings its run recorded), its value."""

    label: str
    settings: dict[str, Any]
    value: float | None


@dataclass(frozen=True)
class Seed:
    """What the warm start takes: the trials for the sampler, and why each other one was left out."""

    source: str
    taken: list[optuna.trial.FrozenTrial]
    other_rate: Counter[str]  # rate -> trials taken from a rate other than the new study's
    left_out: list[tuple[str, str]]  # (trial, why)
    total: int

    def summary(self) -> str:
        rates = ", ".join(f"{n} at {100 * float(r):g}%" for r, n in sorted(self.other_rate.items()))
        other = f" ({rates}, another sampling rate)" if rates else ""
        reasons = Counter(why.split(":")[0] for _, why in self.left_out)
        why = "; ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        left = f"; left out {len(self.left_out)}: {why}" if self.left_out else ""
        return f"warm start: took {len(self.taken)} of {self.total} trials of {self.source}{other}{left}"

    def details(self) -> str:
        lines = [self.summary(), ""] + [f"left out {label}: {why}" for label, why in self.left_out]
        return "\n".join(lines) + "\n"


def source_trials(spec: StudySpec) -> tuple[str, list[SourceTrial]]:
    """(a label of the source, its finished trials); a source that is neither a study folder nor an
    MLflow experiment on the study's tracking store is one line naming ``warm_start.from``."""
    source = str(spec.warm_start.source)
    path = Path(source)
    if path.is_dir():
        return str(path), _folder_trials(path, str(spec.metric))
    return f"MLflow experiment {source!r}", _experiment_trials(spec, source)


def _folder_trials(path: Path, metric: str) -> list[SourceTrial]:
    from study.record import StudyFolder, launched_spec, read_trials, row_config, trials_table_state

    folder = StudyFolder(path)
    if not folder.spec_file.is_file():
        raise StudyError(f"warm_start.from: {path} holds no study (no spec.yaml); name a study folder")
    if trials_table_state(folder) != "ok":
        raise StudyError(
            f"warm_start.from: {path} has no readable trials.parquet (the study has not finished); "
            f"finish it with `study resume {path}` or name another study"
        )
    source_spec = launched_spec(folder.path)
    found = []
    for row in read_trials(folder).to_pylist():
        if row["status"] != "finished" or row.get(metric) is None:
            found.append(SourceTrial(str(row["trial_id"]), {}, None))
            continue
        config = row_config(folder.path, row, source_spec.base)
        found.append(SourceTrial(str(row["trial_id"]), flatten(config_to_dict(config)), float(row[metric])))
    return found


def _experiment_trials(spec: StudySpec, name: str) -> list[SourceTrial]:
    from mlflow.tracking import MlflowClient

    from study.record import choose
    from study.spec import sqlite_path

    stores = choose(spec.tracking_uri, spec.optuna_storage, spec.study_dir, Path.cwd()).open(spec.study_dir)
    database = sqlite_path(stores.tracking_uri)
    # an SQLite store not created yet holds no experiment: it is not opened (which would create it,
    # and its folder, before the launch's checks are through; MLflow before 3.1 fails there instead)
    experiment = None
    if database is None or database.is_file():
        experiment = MlflowClient(stores.tracking_uri).get_experiment_by_name(name)
    if experiment is None:
        raise StudyError(
            f"warm_start.from: {name!r} is neither a study folder nor an MLflow experiment on {stores.shown()}; "
            "name a study folder or an experiment's name"
        )
    found = []
    for run in MlflowClient(stores.tracking_uri).search_runs([experiment.experiment_id], max_results=50_000):
        if "mlflow.parentRunId" not in run.data.tags:
            continue
        value = run.data.metrics.get(str(spec.metric))
        done = run.info.status == "FINISHED" and value is not None
        settings = {k: _parsed(v) for k, v in run.data.params.items()} if done else {}
        label = run.data.tags.get("tune.trial_id", run.info.run_id)
        found.append(SourceTrial(label, settings, float(value) if done and value is not None else None))
    return found


def _parsed(text: str) -> Any:
    """An MLflow param's value as the config held it (MLflow keeps ``str(value)``: ``None``, ``True``, ``0.01``)."""
    if text == "None":
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def fits(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` lies in ``distribution`` (its range, its step, or among its choices)."""
    if isinstance(distribution, CategoricalDistribution):
        return any(_same(value, choice) for choice in distribution.choices)
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if not distribution.low - 1e-12 <= value <= distribution.high + 1e-12:
            return False
        step = distribution.step
        return step is None or math.isclose((value - distribution.low) / step, round((value - distribution.low) / step))
    return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _probe() -> optuna.Study:
    """An in-memory study whose trials run the new space's define-by-run function on fixed values."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)


def _in_new_space(
    spec: StudySpec, settings: Mapping[str, Any], probe: optuna.Study
) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """(the new space's parameters with the source's values, their distributions), or why not."""
    with warnings.catch_warnings():  # an out-of-range fixed value warns; it is checked below
        warnings.simplefilter("ignore")
        probe.enqueue_trial({k: v for k, v in settings.items()})
        trial = probe.ask()
        spec.space.define(trial)
    for name, distribution in trial.distributions.items():
        if name not in settings:
            return f"a parameter the new space searches is not in it: {name}"
        if not fits(distribution, settings[name]):
            return f"a parameter outside the new space: {name} {settings[name]!r} not in {_shown(distribution)}"
    return dict(trial.params), dict(trial.distributions)


def _shown(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return str(list(distribution.choices))
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        return f"[{distribution.low:g}, {distribution.high:g}]"
    return repr(distribution)


def _difference(spec: StudySpec, params: Mapping[str, Any], settings: Mapping[str, Any]) -> str | None:
    """The first setting (other than the seed and, unless ``same_rate``, the rate) in which the
    source trial differs from the new study's config with the same parameters."""
    new = flatten(config_to_dict(resolve_config(spec.base, dict(params))))
    ignored = NOT_COMPARED if spec.warm_start.same_rate else (*NOT_COMPARED, RATE)
    for key, value in new.items():
        if key in settings and not key.startswith(ignored) and not _same(value, settings[key]):
            what = (
                "a different rate" if key == RATE else "a different dataset" if key == "data.dataset" else "a setting"
            )
            return f"{what}: {key} is {settings[key]!r} there, {value!r} here"
    return None


def seed_trials(spec: StudySpec) -> Seed:
    """The source's trials that fit the new study, as Optuna trials to add; every other one with why."""
    if spec.warm_start.source is None:
        return Seed("", [], Counter(), [], 0)
    label, trials = source_trials(spec)
    rate = spec.base_config.data.sampling_rate
    taken: list[optuna.trial.FrozenTrial] = []
    other_rate: Counter[str] = Counter()
    left_out: list[tuple[str, str]] = []
    probe = _probe()
    for trial in trials:
        if trial.value is None or not math.isfinite(trial.value):
            left_out.append((trial.label, f"did not run to the end: no {spec.metric}"))
            continue
        fitted = _in_new_space(spec, trial.settings, probe)
        if isinstance(fitted, str):
            left_out.append((trial.label, fitted))
            continue
        params, distributions = fitted
        differs = _difference(spec, params, trial.settings)
        if differs is not None:
            left_out.append((trial.label, differs))
            continue
        source_rate = trial.settings.get(RATE)
        if isinstance(source_rate, (int, float)) and not _same(source_rate, rate):
            other_rate[f"{source_rate:g}"] += 1
        taken.append(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                value=trial.value,
                user_attrs={WARM_ATTR: f"{label}: {trial.label}"},
            )
        )
    return Seed(label, taken, other_rate, left_out, len(trials))


def add_to(study: optuna.Study, seed: Seed) -> None:
    """Add the taken trials to the new study's Optuna history (before its first trial is asked for)."""
    if seed.taken:
        study.add_trials(seed.taken)


def record(seed: Seed, params: dict[str, Any], texts: dict[str, str]) -> None:
    """What the parent MLflow run records of a warm start."""
    params.update(
        {
            "warm_start.source": seed.source,
            "warm_start.taken": len(seed.taken),
            "warm_start.left_out": len(seed.left_out),
        }
    )
    texts[REPORT_FILE] = seed.details()


def taken_counts(trials: Sequence[optuna.trial.FrozenTrial]) -> int:
    return sum(1 for t in trials if WARM_ATTR in t.user_attrs)
