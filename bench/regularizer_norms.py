"""What the weight norms of L2 / L2-SP cost a step: one multi-tensor call against a loop.

Prints, in one run, one line per figure: name, value, goal, device.

1. ``norm_ms[loop]`` / ``norm_ms[foreach]``: forward + backward of sum ||w - w0||^2 over every
   tensor of ResNet-50 (161), median over repeats: the reference loop (two operators per tensor)
   and ``finetune.regularizers.l2.squared_norm`` (``torch._foreach_*``, explicit gradient).
2. ``speedup``: loop / foreach, measured in the same run (goal: >= 1, no slower).
3. ``calls[<impl>,<n>]``: operators called from Python and autograd for n tensors (the gradient
   accumulation into each ``.grad`` left out: every loss term shares it). Goal: the same for
   3 and 161 tensors (no loop over parameters; a GPU then launches a fixed number of kernels).

    python bench/regularizer_norms.py                 # CPU
    python bench/regularizer_norms.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch.autograd.profiler import profile
from torchvision.models import resnet50

from finetune.regularizers.l2 import squared_norm

Norm = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], torch.Tensor]


def loop_norm(params: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The reference: one subtraction, power and sum per tensor."""
    return torch.stack([(p - r).pow(2).sum() for p, r in zip(params, refs, strict=True)]).sum()


IMPLEMENTATIONS: dict[str, Norm] = {"loop": loop_norm, "foreach": squared_norm}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(norm: Norm, params: list[torch.Tensor], refs: list[torch.Tensor], device: torch.device) -> float:
    for p in params:
        p.grad = None
    sync(device)
    started = time.perf_counter()
    norm(params, refs).backward()
    sync(device)
    return 1000 * (time.perf_counter() - started)


def calls(norm: Norm, params: list[torch.Tensor], refs: list[torch.Tensor]) -> int:
    with profile() as prof:
        norm(params, refs).backward()
    shallow = [e for e in prof.function_events if e.cpu_parent is None or e.cpu_parent.cpu_parent is None]
    return len([e for e in shallow if "AccumulateGrad" not in e.name])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    params = [p.detach().to(device).requires_grad_() for p in resnet50().parameters()]
    refs = [p.detach() + 0.01 for p in params]
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.repeats + 1):  # interleaved, so drift on a shared machine hits both; first round is warm-up
        for name, norm in IMPLEMENTATIONS.items():
            times[name].append(timed(norm, params, refs, device))
    medians = {name: statistics.median(values[1:]) for name, values in times.items()}
    for name, value in medians.items():
        print(f"norm_ms[{name}]".ljust(34), f"{value:8.2f}", "  goal -", f" {where} ({len(params)} tensors)")
    print("speedup".ljust(34), f"{medians['loop'] / medians['foreach']:8.2f}", "  goal >=1", f" {where}")
    for name, norm in IMPLEMENTATIONS.items():
        few, all_ = calls(norm, params[:3], refs[:3]), calls(norm, params, refs)
        for count, value in ((3, few), (len(params), all_)):
            print(
                f"calls[{name},{count}]".ljust(34),
                f"{value:8d}",
                "  goal same for 3 and all" if name == "foreach" else "  goal -",
                f" {where}",
            )


if __name__ == "__main__":
    main()
