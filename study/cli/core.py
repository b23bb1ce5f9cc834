"""``study train`` and ``study analyze``: thin commands over the fine-tuning core's own (:mod:`finetune.commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune import PrintProgress, config_to_yaml, fit, load_config
from finetune.engine import use_threads
from study.spec import StudyError


def cmd_train(args: argparse.Namespace) -> int:
    from finetune.regularizers import BSSConfig

    config = load_config(args.config)
    bss = BSSConfig.of(config)
    print(
        f"training {config.model.backbone} with {config.regularizer.name}"
        + (f" + BSS(k={bss.k}, eta={bss.eta})" if bss.enabled else ""),
        flush=True,
    )
    use_threads(config)
    result = fit(config, [PrintProgress()])
    if args.output:
        import torch

        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(result.best_state, out / "best_model.pt")
        (out / "config.yaml").write_text(config_to_yaml(config))
        print(f"weights: {out / 'best_model.pt'} (with config.yaml: `study analyze ... --run {out}`)")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    import matplotlib

    from finetune.analysis import corresponding_angles, feature_spectrum, load_run, spectrum_table

    matplotlib.use("Agg")  # files only, no display
    from finetune.plots import plot_angles, plot_spectrum
    from study.record import write_table

    labels = args.label or [Path(r).name for r in args.run]
    if len(labels) != len(args.run):
        raise StudyError(f"--label: give one label per --run ({len(args.run)}), got {len(labels)}")
    runs = [load_run(r) for r in args.run]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.analysis == "spectra":
        table = spectrum_table(
            {label: feature_spectrum(run, args.batches) for label, run in zip(labels, runs, strict=True)}
        )
        write_table(table, out / "spectra.parquet")
        plot_spectrum(table, out / "spectra.png")
        written = ["spectra.parquet", "spectra.png"]
    else:
        if len(runs) != 1:
            raise StudyError("--run: angles compare one run with its pretrained start; pass exactly one --run")
        table = corresponding_angles(runs[0], args.layers)
        write_table(table, out / "angles.parquet")
        plot_angles(table, out / "angles.png")
        written = ["angles.parquet", "angles.png"]
    for name in written:
        print(out / name)
    return 0
