"""The core's own two commands, as a user of the core calls them (``study train`` and ``study
analyze`` are thin wrappers): one fine-tuning run from a config file, and the paper's analyses of
finished runs. No Ray, MLflow or Optuna."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from finetune.callbacks import FitResult, PrintProgress
from finetune.config import TrainConfig, config_to_yaml, load_config
from finetune.engine import fit, use_threads
from finetune.errors import InputError

WEIGHTS_FILE = "best_model.pt"
CONFIG_FILE = "config.yaml"


def describe(config: TrainConfig) -> str:
    """One line: the backbone, the regulariser and BSS's settings when it is on."""
    from finetune.regularizers import BSSConfig

    bss = BSSConfig.of(config)
    return f"training {config.model.backbone} with {config.regularizer.name}" + (
        f" + BSS(k={bss.k}, eta={bss.eta})" if bss.enabled else ""
    )


def train(config_file: str | Path, output: str | Path | None = None, say: Callable[[str], None] = print) -> FitResult:
    """One fine-tuning run of ``config_file`` (e.g. a study's ``best.yaml``), its progress printed;
    with ``output``, the selected weights and the config saved there (what ``analyze`` reads)."""
    config = load_config(config_file)
    say(describe(config))
    use_threads(config)
    result = fit(config, [PrintProgress()])
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(result.best_state, out / WEIGHTS_FILE)
        (out / CONFIG_FILE).write_text(config_to_yaml(config))
        say(f"weights: {out / WEIGHTS_FILE} (with {CONFIG_FILE}: `study analyze ... --run {out}`)")
    return result


def _write(table: pa.Table, path: Path) -> None:
    partial = path.with_suffix(".parquet.partial")
    pq.write_table(table, partial)
    partial.replace(path)


def analyze(
    analysis: str,
    runs: Sequence[str | Path],
    out: str | Path,
    labels: Sequence[str] | None = None,
    batches: int = 8,
    layers: Sequence[str] | None = None,
) -> list[Path]:
    """The singular-value spectra of finished runs' batch features (``spectra``: Fig. 1c-d, 3b-c) or
    one run's corresponding angles to its pretrained weights (``angles``: Eq. 5-6, Fig. 1b); writes
    a Parquet table and its plot into ``out`` and returns their paths."""
    import matplotlib

    from finetune.analysis import corresponding_angles, feature_spectrum, load_run, spectrum_table

    matplotlib.use("Agg")  # files only, no display
    from finetune.plots import plot_angles, plot_spectrum

    names = list(labels) if labels else [Path(r).name for r in runs]
    if len(names) != len(runs):
        raise InputError(f"--label: give one label per --run ({len(runs)}), got {len(names)}")
    loaded = [load_run(r) for r in runs]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if analysis == "spectra":
        table = spectrum_table({name: feature_spectrum(run, batches) for name, run in zip(names, loaded, strict=True)})
        _write(table, folder / "spectra.parquet")
        plot_spectrum(table, folder / "spectra.png")
        return [folder / "spectra.parquet", folder / "spectra.png"]
    if analysis != "angles":
        raise InputError(f"analysis: spectra or angles, got {analysis!r}")
    if len(loaded) != 1:
        raise InputError("--run: angles compare one run with its pretrained start; pass exactly one --run")
    table = corresponding_angles(loaded[0], list(layers) if layers else None)
    _write(table, folder / "angles.parquet")
    plot_angles(table, folder / "angles.png")
    return [folder / "angles.parquet", folder / "angles.png"]
