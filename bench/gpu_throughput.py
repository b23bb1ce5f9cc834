"""Training throughput of the real engine against the bare model's ceiling, in one run.

Prints, each with its goal: the bare ResNet-50 step (synthetic data on the device; eager, and the
whole step captured in one CUDA graph: the ceiling); the engine's rate per method (data from the
decoded-image cache, augmentation included) and, for L2+BSS, its ratio to the graphed ceiling,
with the backbone graphed (``cuda_graph: auto``) and eager; where an engine step's time goes
(synchronised timing of each phase); the BSS step ratio; 1, 2 and 4 concurrent L2+BSS trials as
separate processes sharing the device, as Ray's fractional GPUs place them (Ray itself is not
needed here).

Meant for one GPU (ResNet-50, 224 px, batch 48, bf16, channels_last). Runs on a CPU too, at small
sizes, which is how the test suite checks it (rows that need CUDA say so).

    python bench/gpu_throughput.py                                   # GPU, full sizes
    python bench/gpu_throughput.py --device cpu --image-size 32 --batch 8 --steps 2 --images 64
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision

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
CEILING_GOAL = 0.8  # the engine's L2+BSS rate over the bare graphed step's


def config(args: argparse.Namespace, root: Path, method: str, cuda_graph: str = "auto") -> dict[str, Any]:
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
        "cuda_graph": cuda_graph,
        "device": args.device,
        **METHODS[method],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(cfg: dict[str, Any], warmup_steps: int) -> tuple[float, Trainer]:
    """(images/s of a timed epoch of training steps, the trainer); a warm-up epoch first. The
    timed epoch's seconds include its validation pass over a few images."""
    trainer = Trainer(config_from_dict(cfg))
    trainer.steps_per_epoch = warmup_steps
    trainer.train_epoch()
    trainer.steps_per_epoch = cfg["optim"]["steps_per_epoch"]
    _sync(trainer.device)
    metrics = trainer.train_epoch()
    images = trainer.steps_per_epoch * cfg["data"]["batch_size"]
    return images / metrics.seconds, trainer


def phase_breakdown(trainer: Trainer, steps: int) -> dict[str, float]:
    """Milliseconds a step spends in each phase of the engine's loop, each phase synchronised on
    its own: the gather from the cache and the copy to the device, the augmentation, the forward
    pass with every term, and the backward pass with the optimiser step."""
    device, data = trainer.device, trainer.config.data
    trainer.model.train()
    totals = dict.fromkeys(("gather+copy", "augment", "forward+terms", "backward+step"), 0.0)
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        trainer.prefetch.request(trainer.stream.next())
        images, y = trainer.prefetch.get()
        _sync(device)
        t1 = time.perf_counter()
        x = trainer.augment(images, data, trainer.aug_generator).contiguous(memory_format=trainer.memory_format)
        _sync(device)
        t2 = time.perf_counter()
        loss = trainer.losses(x, y, step)[2]
        _sync(device)
        t3 = time.perf_counter()
        trainer.update(loss)
        _sync(device)
        t4 = time.perf_counter()
        for name, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[name] += seconds
    return {name: 1000 * seconds / steps for name, seconds in totals.items()}


def bare_step(args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    """One training step of the bare torchvision model on a synthetic batch already on the device."""
    model = torchvision.models.get_model(args.backbone, weights=None, num_classes=200).to(device)
    memory_format = torch.channels_last if args.channels_last == "on" else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, 200, (args.batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    bf16 = args.precision == "bf16"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()

    return step


def bare_rates(args: argparse.Namespace, device: torch.device) -> tuple[float, float | None]:
    """(eager, graphed) images/s of the bare step; graphed is None without CUDA. The graph holds the
    whole step (forward, backward, SGD), captured after warm-up steps on a side stream."""
    step = bare_step(args, device)

    def rate(run: Callable[[], None]) -> float:
        for _ in range(args.warmup):
            run()
        _sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            run()
        _sync(device)
        return args.steps * args.batch / (time.perf_counter() - start)

    eager = rate(step)
    if device.type != "cuda":
        return eager, None
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return eager, rate(graph.replay)


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


def row(figure: str, value: float | str, goal: str, where: str) -> None:
    text = f"{value:10.4g}" if isinstance(value, float) else f"{value:>10}"
    print(f"{figure:<44} {text}   goal {goal:<8} {where}")


def not_measured(args: argparse.Namespace) -> None:
    figures = {
        "bare_images_per_s[eager]": "-",
        "bare_images_per_s[cuda graph]": "-",
        **{f"images_per_s[{m}]": "-" for m in METHODS},
        "images_per_s[l2+bss, eager backbone]": "-",
        "ceiling_ratio[l2+bss]": f">={CEILING_GOAL}",
        "bss_step_ratio": "<=1.02",
        **{f"aggregate_images_per_s[l2+bss, {k} trials]": "-" for k in args.concurrency},
    }
    for figure, goal in figures.items():
        row(figure, "not measured", goal, "no CUDA device here")
    print(f"# the aggregate of {max(args.concurrency)} trials: goal >= one trial's images_per_s[l2+bss]")


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
        not_measured(args)
        return
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    setup = f"{args.backbone}, {args.image_size} px, batch {args.batch}, {args.precision}"
    print(f"# {setup}, channels_last {args.channels_last}, {args.steps} timed steps, decoded cache, device: {name}")
    eager, graphed = bare_rates(args, device)
    row("bare_images_per_s[eager]", eager, "-", name)
    row("bare_images_per_s[cuda graph]", graphed if graphed is not None else "no CUDA", "-", name)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        make_jpegs(root, args.images)
        rates: dict[str, float] = {}
        for method in METHODS:
            rates[method], trainer = images_per_second(config(args, root, method), args.warmup)
            graph = "backbone graphed" if trainer.graphed else trainer.graph_plan.reason or "eager"
            row(f"images_per_s[{method}]", rates[method], "-", f"{name}; {graph}")
            if method == "l2+bss":  # its step's phases; the other trainers' memory is freed as they go
                for phase, ms in phase_breakdown(trainer, args.steps).items():
                    row(f"step_ms[{phase}]", ms, "-", f"{name}; l2+bss, each phase synchronised")
            del trainer
        eager_engine, _ = images_per_second(config(args, root, "l2+bss", cuda_graph="off"), args.warmup)
        row("images_per_s[l2+bss, eager backbone]", eager_engine, "-", name)
        ceiling, which = (graphed, "the graphed bare step") if graphed is not None else (eager, "the eager bare step")
        row("ceiling_ratio[l2+bss]", rates["l2+bss"] / ceiling, f">={CEILING_GOAL}", f"{name}; of {which}")
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the concurrent trials below get the device's memory
        row("bss_step_ratio", rates["l2"] / rates["l2+bss"], "<=1.02", name)
        for k in args.concurrency:
            rate = concurrent_rate(config(args, root, "l2+bss"), args.warmup, k)
            goal = f">={rates['l2+bss']:.0f}" if k == max(args.concurrency) and k > 1 else "-"
            row(f"aggregate_images_per_s[l2+bss, {k} trials]", rate, goal, f"{name}; goal: one trial's rate")


if __name__ == "__main__":
    main()
