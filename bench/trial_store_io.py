"""What a trial spends each epoch saving and loading its state: the study folder's disk against a
bucket of an S3-compatible server on loopback (moto's standalone server, started here), measured
in one run with the same states, and their ratio.

Per epoch a trial writes its engine state (the model's weights, the optimiser's momentum, the
regulariser's state) whole, then deletes the state two epochs back (``TrialStore.save_epoch``); a
restarted trial reads the newest one back (``TrialStore.latest_state``). The state here is a real
one: a torchvision backbone's weights and an SGD momentum buffer of the same size.

    python bench/trial_store_io.py                          # ResNet-50 (the paper's backbone), 5 epochs
    python bench/trial_store_io.py --backbone resnet18 --epochs 3   # quick

A loopback server measures the project's own cost (serialising, the client, a whole-object PUT),
not a network: a real bucket adds its bandwidth and latency on top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def engine_state(backbone: str) -> dict[str, object]:
    import torch
    import torchvision

    model = getattr(torchvision.models, backbone)(weights=None)
    weights = model.state_dict()
    momentum = {name: torch.randn_like(value, dtype=torch.float32) for name, value in weights.items()}
    return {"model": weights, "optimizer": {"momentum": momentum}, "epoch": 0}


def measure(root: str, state: dict[str, object], epochs: int) -> tuple[list[float], list[float]]:
    from trainables.trial_store import TrialStore

    store = TrialStore.of(root, f"t{uuid.uuid4().hex[:8]}")
    saves, loads = [], []
    for epoch in range(1, epochs + 1):
        state["epoch"] = epoch
        started = time.perf_counter()
        store.save_epoch(epoch, state, None)
        saves.append(time.perf_counter() - started)
        started = time.perf_counter()
        loaded = store.latest_state()
        loads.append(time.perf_counter() - started)
        assert loaded is not None and loaded["epoch"] == epoch
    return saves, loads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    import torch

    from tests.servers import S3Server

    torch.manual_seed(0)
    state = engine_state(args.backbone)
    buffer_mb = sum(v.numel() * v.element_size() for part in ("model",) for v in state[part].values()) * 2 / 1e6  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        server = S3Server(Path(tmp) / "moto.log")
        server.start()
        os.environ.update(server.env())
        try:
            bucket = server.bucket(f"bench-{uuid.uuid4().hex[:8]}")
            results = {
                "folder": measure(str(Path(tmp) / "study"), state, args.epochs),
                "bucket": measure(f"{bucket}/study", state, args.epochs),
            }
        finally:
            server.kill()
    print(f"{args.backbone} state: {buffer_mb:.0f} MB (weights + momentum), {args.epochs} epochs, median a epoch")
    medians = {}
    for where, (saves, loads) in results.items():
        medians[where] = (statistics.median(saves), statistics.median(loads))
        print(f"  {where:7s} save {medians[where][0]:6.3f} s   load {medians[where][1]:6.3f} s")
    save_ratio = medians["bucket"][0] / medians["folder"][0]
    load_ratio = medians["bucket"][1] / medians["folder"][1]
    print(f"bucket / folder: save {save_ratio:.2f}x, load {load_ratio:.2f}x (S3-compatible server on loopback)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
