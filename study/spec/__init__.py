"""The spec: a study's settings as a typed model (:mod:`~study.spec.model`), every check that can be
made before anything starts (:mod:`~study.spec.checks`), the URIs a spec names for its record
(:mod:`~study.spec.uris`) and the one loader (:mod:`~study.spec.load`). The lowest room: it imports
no other room, and no Ray, MLflow or Optuna."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune._front import front_door

# each public name -> its module in this room (imported on first use)
_EXPORTS = {
    "BudgetSpec": "model",
    "HELD_FIXED": "model",
    "OPTUNA_SCHEMES": "uris",
    "SPEC_FILE": "load",
    "SchedulerSpec": "model",
    "StudyError": "errors",
    "StudySpec": "model",
    "TRACKING_SCHEMES": "uris",
    "absolute": "uris",
    "check_budget": "checks",
    "check_driver": "uris",
    "check_inputs": "checks",
    "check_links": "checks",
    "check_local_resources": "checks",
    "check_output_dir": "checks",
    "check_uri": "uris",
    "expand": "uris",
    "has_password": "uris",
    "is_remote": "uris",
    "is_server_database": "uris",
    "load_folder_spec": "load",
    "load_spec": "load",
    "saved_settings": "load",
    "redact": "uris",
    "redact_text": "uris",
    "scheme": "uris",
    "spec_from_mapping": "load",
    "spec_to_yaml": "load",
    "sqlite_path": "uris",
}
__all__ = [
    "BudgetSpec",
    "HELD_FIXED",
    "OPTUNA_SCHEMES",
    "SPEC_FILE",
    "SchedulerSpec",
    "StudyError",
    "StudySpec",
    "TRACKING_SCHEMES",
    "absolute",
    "check_budget",
    "check_driver",
    "check_inputs",
    "check_links",
    "check_local_resources",
    "check_output_dir",
    "check_uri",
    "expand",
    "has_password",
    "is_remote",
    "is_server_database",
    "load_folder_spec",
    "load_spec",
    "saved_settings",
    "redact",
    "redact_text",
    "scheme",
    "spec_from_mapping",
    "spec_to_yaml",
    "sqlite_path",
]
__getattr__ = front_door(__name__, _EXPORTS)

if TYPE_CHECKING:
    from study.spec.checks import check_budget, check_inputs, check_links, check_local_resources, check_output_dir
    from study.spec.errors import StudyError
    from study.spec.load import (
        SPEC_FILE,
        load_folder_spec,
        load_spec,
        saved_settings,
        spec_from_mapping,
        spec_to_yaml,
    )
    from study.spec.model import HELD_FIXED, BudgetSpec, SchedulerSpec, StudySpec
    from study.spec.uris import (
        OPTUNA_SCHEMES,
        TRACKING_SCHEMES,
        absolute,
        check_driver,
        check_uri,
        expand,
        has_password,
        is_remote,
        is_server_database,
        redact,
        redact_text,
        scheme,
        sqlite_path,
    )
