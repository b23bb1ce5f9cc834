"""DELTA's channel attention: vectorised ablation against the one-channel-at-a-time loop.

Per hooked layer of the backbone, the cost per ablated channel of each method (the loop is
timed on the first ``--loop-channels`` channels, its cost per channel being the same for
all), the speed-up, and the largest difference between their loss increases. Goal: >= 10x.

    python bench/delta_attention.py                          # ResNet-50, 64 px, one batch of 32, CPU
    python bench/delta_attention.py --device cuda --image-size 224
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch
from torch.utils.flop_counter import FlopCounterMode

from finetune.backbones import BACKBONES, build_classifier
from finetune.config import ModelConfig
from finetune.delta_attention import loss_increases_loop, loss_increases_vectorised


def counted_flops(run: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--loop-channels", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1024, help="images per vectorised forward pass")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    torch.manual_seed(0)
    model = build_classifier(ModelConfig(args.backbone, None), num_classes=10).to(device).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 1.0)
    batches = [
        (
            torch.randn(args.batch, 3, args.image_size, args.image_size, device=device),
            torch.randint(0, 10, (args.batch,), device=device),
        )
    ]
    print(f"# {args.backbone}, {args.image_size} px, one batch of {args.batch}, device: {name}")
    total_loop = total_fast = 0.0
    full = counted_flops(lambda: model(batches[0][0]))  # the loop's cost per channel: one full forward pass
    flops_loop = flops_fast = 0.0
    for layer in BACKBONES[args.backbone].stage_layers(model.backbone):
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        loop = loss_increases_loop(model, layer, batches, limit=args.loop_channels)
        sync()
        per_loop = (time.perf_counter() - start) / len(loop)
        start = time.perf_counter()
        fast = loss_increases_vectorised(model, layer, batches, rows=args.rows)
        sync()
        channels = len(fast)
        per_fast = (time.perf_counter() - start) / channels
        diff = float((fast[: len(loop)] - loop).abs().max() / loop.abs().max().clamp_min(1e-12))
        total_loop += per_loop * channels
        total_fast += per_fast * channels
        chunk = max(1, min(channels, args.rows // args.batch))  # FLOPs of one vectorised pass, per channel
        per_channel = counted_flops(partial(loss_increases_vectorised, model, layer, batches, args.rows, chunk)) - full
        flops_loop += full * channels
        flops_fast += per_channel / chunk * channels
        detail = f"{1000 * per_loop:.1f} vs {1000 * per_fast:.2f} ms/channel, {channels} channels, rel diff {diff:.1e}"
        print(f"{'delta_speedup[' + layer + ']':<34} {per_loop / per_fast:8.2f}   goal -     ({detail})")
    print(f"{'delta_speedup[all layers]':<34} {total_loop / total_fast:8.2f}   goal >=10  {name}")
    # the most any exact method that runs the network after the layer once per channel can gain
    # on a compute-bound device: the loop's FLOPs over the vectorised method's
    print(f"{'delta_flop_ratio[all layers]':<34} {flops_loop / flops_fast:8.2f}   goal -     {name}")
    print(f"{'delta_attention_s[loop, est.]':<34} {total_loop:8.1f}   goal -     {name}")
    print(f"{'delta_attention_s[vectorised]':<34} {total_fast:8.1f}   goal -     {name}")


if __name__ == "__main__":
    main()
