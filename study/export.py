"""`study export-best`: the top trials' resolved configs, runnable again by `study train --config`."""

from __future__ import annotations

from pathlib import Path

from finetune import config_to_yaml, resolve_config
from study.errors import StudyError
from study.folder import EXPORT_DIR, StudyFolder, read_trials
from study.spec import load_spec
from trainables import BEST_WEIGHTS


def export_best(path: Path, top: int = 1, out: Path | None = None) -> list[Path]:
    if top < 1:
        raise StudyError(f"--top: must be >= 1, got {top}")
    folder = StudyFolder(path)
    folder.require_launched()
    spec = load_spec(folder.spec_file, output_dir=folder.path)
    metric = str(spec.metric)
    rows = [r for r in read_trials(folder).to_pylist() if r[metric] is not None]
    if metric == "test_acc":  # a grid: only trials that ran to their last epoch have its test accuracy
        rows = [r for r in rows if r["status"] == "finished" and not r["early_stopped"]]
    rows.sort(key=lambda r: r[metric], reverse=True)
    out = out or folder.path / EXPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, row in enumerate(rows[:top], start=1):
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None}
        config = resolve_config(spec.base, params)
        has = row.get("has_weights") and row.get("trial_dir")
        weights = str(folder.path / row["trial_dir"] / BEST_WEIGHTS) if has else "none (stopped early)"
        path = out / f"best-{rank}.yaml"
        path.write_text(
            f"# rank {rank} by {metric} (selection: {spec.selection}): trial {row['trial_id']}, "
            f"val_acc {_number(row['best_val_acc'])}, test_acc {_number(row['test_acc'])}\n"
            f"# weights: {weights}\n" + config_to_yaml(config)
        )
        written.append(path)
    return written


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
