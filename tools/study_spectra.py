"""Smallest singular values of every finished trial's features, paired by seed against the trial
without BSS: does BSS shrink more than the k values it penalises (Fig. 1c-d, 3b-c)?

    python tools/study_spectra.py runs/fig3d-embedded [--batches 8] [--smallest 8]

For each trial with saved weights: the singular values of ``--batches`` batch feature matrices
of its own training images (eval mode, no augmentation; ``finetune.analysis.feature_spectrum``),
averaged over batches. For each BSS setting and rate: the mean relative change of the i-th
smallest value against the partner without BSS of the same seed, the paired t-test p and the
exact sign-flip p adjusted over the whole table (one family; ``--correction holm`` or ``bh``, as
``study report``). Prints a Markdown table and what survives the adjustment.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from finetune.analysis import feature_spectrum, load_run
from finetune.regularizers import BSSConfig
from study.record import StudyFolder, read_trials
from study.reporting import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--smallest", type=int, default=8)
    parser.add_argument("--correction", choices=sorted(stats.CORRECTIONS), default="holm")
    args = parser.parse_args()
    folder = StudyFolder(Path(args.study_dir).resolve())
    smallest: dict[tuple[float, int, int], np.ndarray] = {}  # (rate, k (0: no BSS), seed) -> ascending values
    for row in read_trials(folder).to_pylist():
        if not row["has_weights"] or row["status"] != "finished":
            continue
        run = load_run(folder.path / row["trial_dir"])
        spectra = feature_spectrum(run, args.batches)  # (batches, b), descending
        values = spectra.mean(0)[::-1][: args.smallest]
        bss = BSSConfig.of(run.config)
        smallest[(run.config.data.sampling_rate, bss.k if bss.enabled else 0, run.config.seed)] = values
    pairs: dict[tuple[float, int], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for (rate, k, seed), values in smallest.items():
        if k and (rate, 0, seed) in smallest:
            pairs[(rate, k)].append((values, smallest[(rate, 0, seed)]))
    found = []  # (rate, k, index, change, t p, sign-flip p)
    for (rate, k), members in sorted(pairs.items()):
        for i in range(args.smallest):
            diffs = [float(a[i] - b[i]) for a, b in members]
            change = statistics.fmean(float(a[i] / b[i] - 1) for a, b in members)
            found.append((rate, k, i, change, stats.t_test(diffs).p, stats.sign_flip_p(diffs)))
    adjusted = stats.adjust([f[5] for f in found], args.correction)
    header = " | ".join(f"s_{i} (p t, adj.)" for i in range(1, args.smallest + 1))
    print(f"| rate | k | pairs | {header} |")
    print("|" + " --- |" * (3 + args.smallest))
    rows: dict[tuple[float, int], list[str]] = defaultdict(list)
    for (rate, k, _, change, p_t, _), p_adj in zip(found, adjusted, strict=True):
        t_text = "undefined" if p_t is None else f"{p_t:.2g}"
        rows[(rate, k)].append(f"{100 * change:+.0f}% ({t_text}, {'-' if p_adj is None else f'{p_adj:.2g}'})")
    for (rate, k), cells in rows.items():
        print(f"| {100 * rate:g}% | {k} | {len(pairs[(rate, k)])} | " + " | ".join(cells) + " |")
    survivors = [f"s_{i + 1} at {100 * r:g}%, k {k}" for (r, k, i, *_), p in zip(found, adjusted, strict=True)
                 if p is not None and p < 0.05]  # fmt: skip
    smallest_n = min((len(m) for m in pairs.values()), default=0)
    print(
        f"\n{stats.CORRECTIONS[args.correction]} over the {len(found)} sign-flip p of this table: "
        + (f"{len(survivors)} survive at 0.05: {'; '.join(survivors)}" if survivors else "none survives at 0.05")
        + f" (with {smallest_n} pairs the smallest possible p is {stats.smallest_sign_flip_p(smallest_n):.3g})."
    )


if __name__ == "__main__":
    main()
