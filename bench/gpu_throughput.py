"""Training throughput of the real engine: ResNet-50, 224 px, batch 48, bf16 + channels_last,
data from the decoded-image cache; L2, L2+BSS and DELTA+BSS; 1, 2 and 4 concurrent trials.

Meant for one GPU (the goal: >= 2,500 images/s aggregate for L2+BSS on one H100, data
loading included; BSS step-time ratio <= 1.02). Runs on a CPU too, at small sizes, which is
how the test suite checks it. Each rate is one epoch of the engine (its time includes a
validation pass over a few images). Concurrent trials are separate processes sharing the device,
as Ray's fractional GPUs place them (Ray itself is not needed here).

    python bench/gpu_throughput.py                                   # GPU, full sizes
    python bench/gpu_throughput.py --device cpu --image-size 32 --batch 8 --steps 2 --images 64
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_pipeline import make_jpegs

from finetune import config_from_dict
from finetune.engine import Trainer

METHODS = {
    "l2": {"regularizer": {"name": "l2"}, "bss": {"enabled": False}},
    "l2+bss": {"regularizer": {"name": "l2"}, "bss": {"enabled": True, "k": 1}},
    # uniform attention: this measures the training step; the attention is computed once per study
    "delta+bss": {
        "regularizer": {"name": "delta"},
        "bss": {"enabled": True, "k": 1},
        "delta": {"attention": "uniform"},
    },
}


def config(args: argparse.Namespace, root: Path, method: str) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "imagefolder",
            "root": str(root),
            "sampling_rate": 1.0,
            "val_fraction": 0.01,
            "image_size": args.image_size,
            "resize_size": args.image_size * 8 // 7,
            "batch_size": args.batch,
            "eval_batch_size": 256,
            "train_transform": "random_resized_crop",
            "cache_dir": str(root.parent / "cache"),
        },
        "model": {"backbone": args.backbone, "weights": None},
        "optim": {"epochs": 2, "steps_per_epoch": args.steps},
        "precision": args.precision,
        "channels_last": args.channels_last,
        "device": args.device,
        **METHODS[method],
    }


def images_per_second(cfg: dict[str, Any], warmup_steps: int) -> tuple[float, float]:
    """(images/s of the timed epoch, its seconds); a warm-up epoch of ``warmup_steps`` first."""
    trainer = Trainer(config_from_dict(cfg))
    trainer.steps_per_epoch = warmup_steps
    trainer.train_epoch()
    trainer.steps_per_epoch = cfg["optim"]["steps_per_epoch"]
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    metrics = trainer.train_epoch()
    images = trainer.steps_per_epoch * cfg["data"]["batch_size"]
    return images / metrics.seconds, metrics.seconds


def _worker(cfg: dict[str, Any], warmup: int, barrier: Any, queue: Any) -> None:
    trainer = Trainer(config_from_dict(cfg))
    trainer.steps_per_epoch = warmup
    trainer.train_epoch()
    barrier.wait()
    start = time.perf_counter()
    trainer.steps_per_epoch = cfg["optim"]["steps_per_epoch"]
    trainer.train_epoch()
    queue.put((trainer.steps_per_epoch * cfg["data"]["batch_size"], start, time.perf_counter()))


def concurrent_rate(cfg: dict[str, Any], warmup: int, k: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(cfg, warmup, barrier, queue)) for _ in range(k)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    images = sum(r[0] for r in results)
    return images / (max(r[2] for r in results) - min(r[1] for r in results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--images", type=int, default=2048, help="generated JPEGs in the cached training set")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--channels-last", default="on")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--if-gpu", action="store_true", help="without a CUDA device, list the figures and goals as not measured"
    )
    args = parser.parse_args()
    if args.if_gpu and not torch.cuda.is_available():
        figures = (
            [f"images_per_s[{m}]" for m in METHODS]
            + ["bss_step_ratio"]
            + [f"aggregate_images_per_s[l2+bss, {k} trials]" for k in args.concurrency]
        )
        goals = {
            "bss_step_ratio": "<=1.02",
            f"aggregate_images_per_s[l2+bss, {max(args.concurrency)} trials]": ">=2500",
        }
        for figure in figures:
            print(f"{figure:<40} {'not measured':>12}   goal {goals.get(figure, '-'):<8} no CUDA device here")
        return
    name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        make_jpegs(root, args.images)
        setup = f"{args.backbone}, {args.image_size} px, batch {args.batch}, {args.precision}"
        print(f"# {setup}, channels_last {args.channels_last}, {args.steps} timed steps, decoded cache, device: {name}")
        rates = {}
        for method in METHODS:
            rates[method], _ = images_per_second(config(args, root, method), args.warmup)
            print(f"{'images_per_s[' + method + ']':<30} {rates[method]:10.1f}   goal -        {name}")
        ratio = rates["l2"] / rates["l2+bss"]
        print(f"{'bss_step_ratio':<30} {ratio:10.4f}   goal <=1.02   {name}")
        for k in args.concurrency:
            rate = concurrent_rate(config(args, root, "l2+bss"), args.warmup, k)
            goal = ">=2500" if k == max(args.concurrency) else "-"
            print(f"{'aggregate_images_per_s[l2+bss, ' + str(k) + ' trials]':<30} {rate:10.1f}   goal {goal:<8} {name}")


if __name__ == "__main__":
    main()
