"""`study export-best`: the top trials' resolved configs, runnable again by `study train --config`;
with ``--register``, the best trial's weights as an MLflow model in MLflow's model registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compat import for_mlflow
from finetune import config_to_yaml
from study.record import EXPORT_DIR, StudyFolder, StudyRecord, ranked_rows, rebase_artifacts, row_config
from study.spec import StudyError, load_folder_spec, saved_settings
from trainables import BEST_WEIGHTS


def export_best(path: Path, top: int = 1, out: Path | None = None) -> list[Path]:
    if top < 1:
        raise StudyError(f"--top: must be >= 1, got {top}")
    folder = StudyFolder(path)
    folder.require_launched()
    # the settings as launch resolved and checked them, not checked again (no torch); a folder
    # written before launch resolved the metric and the selection is checked as before
    settings = saved_settings(folder.path)
    if not (settings.get("metric") and settings.get("selection") and isinstance(settings.get("base"), dict)):
        spec = load_folder_spec(folder.path)
        settings = {"metric": spec.metric, "selection": spec.selection, "base": spec.base}
    metric, selection, base = str(settings["metric"]), settings["selection"], settings["base"]
    rows = ranked_rows(folder, metric)
    out = out or folder.path / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, row in enumerate(rows[:top], start=1):
        config = row_config(folder.path, row, base)
        has = row.get("has_weights") and row.get("trial_dir")
        weights = f"{folder.trial_path(row['trial_dir'])}/{BEST_WEIGHTS}" if has else "none (stopped early)"
        path = out / f"best-{rank}.yaml"
        path.write_text(
            f"# rank {rank} by {metric} (selection: {selection}): trial {row['trial_id']}, "
            f"val_acc {_number(row['best_val_acc'])}, test_acc {_number(row['test_acc'])}\n"
            f"# weights: {weights}\n" + config_to_yaml(config)
        )
        written.append(path)
    return written


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def register_best(path: Path, model_name: str | None = None) -> str:
    """Log the best trial's selected weights as an MLflow PyTorch model in that trial's run (with
    its resolved config) and register it under ``model_name`` (default: the study's name).
    Returns the registered model's URI (``models:/<name>/<version>``), which
    ``mlflow.pytorch.load_model`` loads: a :class:`finetune.model.Classifier` whose forward
    returns ``(logits, features)`` for normalised images."""
    import mlflow
    import torch

    import finetune
    from finetune.analysis import load_run

    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_folder_spec(folder.path)
    record = StudyRecord.load(folder)
    candidates = [r for r in ranked_rows(folder, str(spec.metric)) if r.get("has_weights") and r.get("trial_dir")]
    if not candidates:
        raise StudyError(
            f"--register: no trial of {folder.path} ran to its end with saved weights; nothing to register"
        )
    best = candidates[0]
    run = load_run(folder.trial_path(best["trial_dir"]))  # the trial's own config.yaml and selected weights
    model, config = run.model, run.config
    rebase_artifacts(folder, record)
    name = model_name or spec.name
    requirements = [f"torch=={torch.__version__}", f"mlflow=={mlflow.__version__}"]
    with mlflow_uris(record.stores(folder).tracking_uri), mlflow.start_run(run_id=best["mlflow_run_id"]):
        info = mlflow.pytorch.log_model(
            model,
            # name="model" and the nn.Module itself pickled (loaded back by mlflow.pytorch.load_model)
            **for_mlflow.pytorch_log_model_arguments("model"),
            registered_model_name=name,
            pip_requirements=requirements,  # stated, not inferred (inference loads the model in a subprocess)
            code_paths=[str(Path(finetune.__file__).parent)],  # the Classifier's code travels with it
            metadata={"study": spec.name, "trial_id": str(best["trial_id"]), "config": config_to_yaml(config)},
        )
    return f"models:/{name}/{info.registered_model_version}"


@contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """MLflow's fluent API pointed at ``uri`` for the block, then back: ``mlflow.set_tracking_uri``
    also sets ``MLFLOW_TRACKING_URI`` in the environment, which would send later studies launched
    from this process (``with_tracking_env``) to this study's database."""
    import mlflow

    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        # None unsets it (and the environment variable)
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
