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
    rows = [r for r in read_trials(folder).to_pylist() if r["best_val_acc"] is not None]
    rows.sort(key=lambda r: r["best_val_acc"], reverse=True)
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
            f"# rank {rank}: trial {row['trial_id']}, val_acc {row['best_val_acc']:.4f}, "
            f"test_acc {row['test_acc'] if row['test_acc'] is not None else '-'}\n"
            f"# weights: {weights}\n" + config_to_yaml(config)
        )
        written.append(path)
    return written
