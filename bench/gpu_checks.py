"""Checks of the GPU-only paths, runnable where pytest is not installed (the GPU image).

- graph: the same short run with the backbone graphed (``cuda_graph: on``) and eager: the
  capture must pass its own check against the eager pass, and the epochs' training losses must
  agree within bf16's precision (2^-5 relative).
- prefetch: the pinned, side-stream prefetcher hands out exactly the host's batches.

Prints one line per check (``ok`` or ``FAILED`` with why) and exits 1 if any failed. Without a
CUDA device it says so and exits 0 (``tests/finetune/test_cuda_graph.py`` runs it where one is).

    python bench/gpu_checks.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from finetune import config_from_dict
from finetune.data import Split
from finetune.engine import Trainer
from finetune.prefetch import BatchPrefetcher


def base(cuda_graph: str) -> dict:
    return {
        "data": {
            "dataset": "embedded-fashion-mnist",
            "sampling_rate": 0.05,
            "image_size": 32,
            "batch_size": 16,
            "eval_batch_size": 256,
        },
        "model": {"backbone": "resnet18", "weights": None},
        "optim": {"epochs": 2, "steps_per_epoch": 6, "lr": 0.01},
        "bss": {"enabled": True, "k": 1},
        "precision": "bf16",
        "device": "cuda",
        "cuda_graph": cuda_graph,
    }


def check_graph() -> str:
    graphed, eager = Trainer(config_from_dict(base("on"))), Trainer(config_from_dict(base("off")))
    for _ in range(2):
        g, e = graphed.train_epoch(), eager.train_epoch()
        if abs(g.train_loss - e.train_loss) > 2**-5 * abs(e.train_loss):
            return f"epoch {g.epoch}: graphed train_loss {g.train_loss:.5f}, eager {e.train_loss:.5f}"
    if not graphed.graphed:
        return "the capture fell back to eager (see the warning above)"
    return ""


def check_prefetch() -> str:
    stored = torch.randint(0, 256, (64, 8, 8, 3), dtype=torch.uint8)
    split = Split(stored.numpy(), torch.arange(64), hwc=True)
    fetch = BatchPrefetcher(split, 16, torch.device("cuda"))
    for start in range(0, 64, 16):
        idx = torch.arange(start, start + 16).flip(0)
        fetch.request(idx)
        images, labels = fetch.get()
        if not (torch.equal(images.cpu(), split.take(idx)) and torch.equal(labels.cpu(), idx)):
            return f"batch at {start} differs from the host's"
    return ""


CHECKS: dict[str, Callable[[], str]] = {"graph": check_graph, "prefetch": check_prefetch}


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing checked")
        return 0
    failed = 0
    for name, check in CHECKS.items():
        why = check()
        print(f"{name:<10} {'FAILED: ' + why if why else 'ok'}  ({torch.cuda.get_device_name()})")
        failed += bool(why)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
