"""Smallest singular values of every finished trial's features, paired by seed against the trial
without BSS: does BSS shrink more than the k values it penalises (Fig. 1c-d, 3b-c)?

    python tools/study_spectra.py runs/fig3d-embedded [--batches 8] [--smallest 8]

For each trial with saved weights: the singular values of ``--batches`` batch feature matrices
of its own training images (eval mode, no augmentation; ``finetune.analysis.feature_spectrum``),
averaged over batches. For each BSS setting and rate: the mean relative change of the i-th
smallest value against the partner without BSS of the same seed, and the paired t-test p.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from finetune.analysis import feature_spectrum, load_run
from study.folder import StudyFolder, read_trials
from study.report_data import paired_t_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--smallest", type=int, default=8)
    args = parser.parse_args()
    folder = StudyFolder(Path(args.study_dir).resolve())
    smallest: dict[tuple[float, int, int], np.ndarray] = {}  # (rate, k (0: no BSS), seed) -> ascending values
    for row in read_trials(folder).to_pylist():
        if not row["has_weights"] or row["status"] != "finished":
            continue
        run = load_run(folder.path / row["trial_dir"])
        spectra = feature_spectrum(run, args.batches)  # (batches, b), descending
        values = spectra.mean(0)[::-1][: args.smallest]
        bss = run.config.bss
        smallest[(run.config.data.sampling_rate, bss.k if bss.enabled else 0, run.config.seed)] = values
    pairs: dict[tuple[float, int], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for (rate, k, seed), values in smallest.items():
        if k and (rate, 0, seed) in smallest:
            pairs[(rate, k)].append((values, smallest[(rate, 0, seed)]))
    header = " | ".join(f"s_{i}" for i in range(1, args.smallest + 1))
    print(f"| rate | k | pairs | {header} |")
    print("|" + " --- |" * (3 + args.smallest))
    for (rate, k), members in sorted(pairs.items()):
        cells = []
        for i in range(args.smallest):
            change = statistics.fmean(float(a[i] / b[i] - 1) for a, b in members)
            p = paired_t_test([float(a[i] - b[i]) for a, b in members])
            cells.append(f"{100 * change:+.0f}% ({'-' if p is None else f'{p:.2g}'})")
        print(f"| {100 * rate:g}% | {k} | {len(members)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
