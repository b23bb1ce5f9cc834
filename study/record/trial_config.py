"""The one way to learn the config a trial ran with: ``best.yaml``, ``export-best``, the report and
the MLflow run all read it here.

A trial writes its resolved config to ``<trial_dir>/config.yaml`` when it starts (``TrialStore``);
that file, not a config rebuilt from the parameters, is what it ran with. Only a trial that never
started (lost, queued, failed before it began) has no file, and its searched parameters resolved
onto the spec's base stand in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finetune import ConfigError, TrainConfig, config_from_yaml, load_config, resolve_config
from study.record.results import row_params
from study.spec import StudyError
from trainables.layout import RESOLVED_CONFIG
from trainables.storage import files_at, is_remote


def trial_config(trial_dir: Path | str | None, params: Mapping[str, Any], base: Mapping[str, Any]) -> TrainConfig:
    """The config of the trial in ``trial_dir`` (a folder, or a URI in a bucket): its saved
    ``config.yaml``, else ``params`` resolved onto ``base``. A saved file that does not load is one
    line naming it."""
    if isinstance(trial_dir, str) and is_remote(trial_dir):
        return _stored_config(trial_dir, params, base)
    trial_dir = Path(trial_dir) if trial_dir is not None else None
    path = trial_dir / RESOLVED_CONFIG if trial_dir is not None else None
    if path is not None and path.is_file():
        try:
            return load_config(path)  # the core's one reader of a config file (``finetune.analysis`` too)
        except ConfigError as exc:
            raise StudyError(f"{path}: the trial's saved config does not load ({exc}); restore or remove it") from None
    return resolve_config(dict(base), dict(params))


def _stored_config(uri: str, params: Mapping[str, Any], base: Mapping[str, Any]) -> TrainConfig:
    files = files_at(uri)
    if not files.exists(RESOLVED_CONFIG):
        return resolve_config(dict(base), dict(params))
    source = f"{uri}/{RESOLVED_CONFIG}"
    try:
        return config_from_yaml(files.read(RESOLVED_CONFIG).decode("utf-8"), source)
    except (ConfigError, UnicodeDecodeError) as exc:
        raise StudyError(f"{source}: the trial's saved config does not load ({exc}); restore or remove it") from None


def row_config(study_dir: Path | None, row: Mapping[str, Any], base: Mapping[str, Any]) -> TrainConfig:
    """The config of a ``trials.parquet`` row's trial (see :func:`trial_config`); without a study
    folder, its parameters on the base."""
    trial_dir = str(row.get("trial_dir") or "")
    folder: Path | str | None = None
    if is_remote(trial_dir):
        folder = trial_dir  # in a bucket
    elif study_dir is not None and trial_dir:
        folder = study_dir / trial_dir
    return trial_config(folder, row_params(row), base)
