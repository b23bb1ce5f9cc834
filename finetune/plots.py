"""Drawing the analyses' tables with matplotlib. Choosing a backend is the caller's (the CLI uses
``Agg``, which needs no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pyarrow as pa


def plot_spectrum(table: pa.Table, path: Path, smallest: int = 16) -> None:
    """Left: the whole spectrum (log scale); right: the ``smallest`` values, where BSS acts."""
    data = table.to_pydict()
    fig, (whole, tail) = plt.subplots(1, 2, figsize=(11, 4))
    for label in dict.fromkeys(data["run"]):
        idx = [i for i, r in enumerate(data["run"]) if r == label]
        x = [data["index"][i] for i in idx]
        y = [data["sigma_mean"][i] for i in idx]
        whole.plot(x, y, label=label)
        tail.plot(x[-smallest:], y[-smallest:], marker="o", label=label)
    whole.set(yscale="log", xlabel="index (1 = largest)", ylabel="singular value", title="batch feature spectrum")
    tail.set(xlabel="index", ylabel="singular value", title=f"the {smallest} smallest")
    whole.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_angles(table: pa.Table, path: Path) -> None:
    """cos of corresponding angles against singular index, one line per layer (Fig. 1b)."""
    data = table.to_pydict()
    fig, ax = plt.subplots(figsize=(7, 4))
    for layer in dict.fromkeys(data["layer"]):
        idx = [i for i, name in enumerate(data["layer"]) if name == layer]
        ax.plot([data["index"][i] for i in idx], [data["cos"][i] for i in idx], label=layer)
    ax.set(
        xlabel="singular index (1 = largest)",
        ylabel="cos(theta)",
        ylim=(0, 1.05),
        title="fine-tuned vs pretrained: corresponding angles",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
