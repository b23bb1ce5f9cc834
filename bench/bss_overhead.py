"""What BSS costs a training step, and how its implementations compare.

Prints, in one run, one line per figure: name, value, goal, device.

1. ``step_ratio[<method>]``: median time of a ResNet-50 training step with BSS over the
   same step without it (variants interleaved, so drift on a shared machine hits both).
   Goal: at most 1.02.
2. ``penalty_share[<method>]``: the penalty's own forward+backward time on the batch's
   (b, 2048) features, over the step time without BSS: the overhead free of step noise.
3. ``penalty_ms[<method>]`` and ``grad_rel_err[<method>]``: each implementation's time and
   the max relative error of its gradient against float64 ``svdvals``.

CPU (default): small input. GPU (``--device cuda``): 224 px, batch 48, bf16 autocast and
channels_last, as the paper's protocol runs on a GPU.

    python bench/bss_overhead.py                        # CPU, 64 px, batch 16
    python bench/bss_overhead.py --device cuda --image-size 224 --batch 48 --bf16 --channels-last
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from finetune.backbones import build_classifier
from finetune.config import ModelConfig
from finetune.regularizers.bss import BSS_METHODS, BatchSpectralShrinkage
from finetune.regularizers.bss import METHOD_NAMES as BSS_METHOD_NAMES


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def make_step(args: argparse.Namespace, device: torch.device, method: str | None) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_classifier(ModelConfig("resnet50", None), num_classes=100).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    bss = BatchSpectralShrinkage(k=1, eta=1e-3, method=method) if method else None
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    if args.channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (args.batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits, features = model(x)
            loss = F.cross_entropy(logits, y)
            if bss is not None:
                loss = loss + bss.penalty(features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_steps(step: Callable[[], None], n: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - start) / max(1, n)


def penalty_timing(method: str, b: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """(ms per forward+backward, max relative gradient error vs float64 svdvals) on (b, 2048) features."""
    torch.manual_seed(1)
    features = torch.randn(b, 2048, device=device) * torch.linspace(0.1, 3.0, 2048, device=device)
    reference = features.double().cpu().requires_grad_(True)
    BSS_METHODS["svdvals"](reference, 1).backward()
    f = features.clone().requires_grad_(True)
    BSS_METHODS[method](f, 1).backward()
    assert f.grad is not None and reference.grad is not None
    err = float((f.grad.double().cpu() - reference.grad).abs().max() / reference.grad.abs().max())
    times = []
    for _ in range(repeats):
        g = features.clone().requires_grad_(True)
        sync(device)
        start = time.perf_counter()
        BSS_METHODS[method](g, 1).backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved blocks per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--methods", nargs="+", default=list(BSS_METHOD_NAMES))
    args = parser.parse_args()
    device = torch.device(args.device)
    name = device_name(device)
    print(
        f"# ResNet-50, {args.image_size} px, batch {args.batch}, bf16={args.bf16}, "
        f"channels_last={args.channels_last}, {args.repeats} x {args.steps} steps, device: {name}"
    )

    variants: dict[str, Callable[[], None]] = {"none": make_step(args, device, None)}
    variants.update({m: make_step(args, device, m) for m in args.methods})
    for step in variants.values():
        time_steps(step, args.warmup, device)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for key, step in variants.items():
            samples[key].append(time_steps(step, args.steps, device))
    base = statistics.median(samples["none"])

    def line(label: str, value: str, goal: str) -> None:
        print(f"{label:<28} {value:>12}   goal {goal:<7} {name}")

    line("step_time[none]", f"{1000 * base:.1f} ms", "-")
    for method in args.methods:
        ms, err = penalty_timing(method, args.batch, device, repeats=20)
        line(f"step_ratio[{method}]", f"{statistics.median(samples[method]) / base:.4f}", "<=1.02")
        line(f"penalty_share[{method}]", f"{ms / (1000 * base):.4f}", "<=0.02")
        line(f"penalty_ms[{method}]", f"{ms:.3f} ms", "-")
        line(f"grad_rel_err[{method}]", f"{err:.2e}", "<=1e-3")


if __name__ == "__main__":
    main()
