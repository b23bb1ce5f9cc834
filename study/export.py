"""`study export-best`: the top trials' resolved configs, runnable again by `study train --config`."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from finetune import config_to_yaml, resolve_config
from study.driver import TRIALS_FILE, load_study_spec
from study.errors import StudyError
from trainables import BEST_WEIGHTS


def export_best(folder: Path, top: int = 1, out: Path | None = None) -> list[Path]:
    if top < 1:
        raise StudyError(f"--top: must be >= 1, got {top}")
    spec = load_study_spec(folder)
    if not (folder / TRIALS_FILE).is_file():
        raise StudyError(f"STUDY_DIR: {folder} has no {TRIALS_FILE} yet; finish it first (`study resume {folder}`)")
    rows = [r for r in pq.read_table(folder / TRIALS_FILE).to_pylist() if r["best_val_acc"] is not None]
    rows.sort(key=lambda r: r["best_val_acc"], reverse=True)
    out = out or folder / "export"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, row in enumerate(rows[:top], start=1):
        params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.") and v is not None}
        config = resolve_config(spec.base, params)
        weights = f"{row['checkpoint']}/{BEST_WEIGHTS}" if row["checkpoint"] else "none (stopped early)"
        path = out / f"best-{rank}.yaml"
        path.write_text(
            f"# rank {rank}: trial {row['trial_id']}, val_acc {row['best_val_acc']:.4f}, "
            f"test_acc {row['test_acc'] if row['test_acc'] is not None else '-'}\n"
            f"# checkpoint: {weights}\n" + config_to_yaml(config)
        )
        written.append(path)
    return written
