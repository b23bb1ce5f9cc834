"""bf16 autocast (and channels_last) against fp32 on the embedded default, over 3 seeds.

Accuracy parity: the test accuracy of the selected epoch, per seed and as mean +- std, for
fp32 and bf16, and their difference in units of the fp32 seed spread. Speed: the mean
epoch time of each on this device. ``precision: auto`` turns bf16 on only on a GPU; on a CPU
bf16 is an opt-in, and this prints the evidence for the CPU it runs on. ``--layers`` also
prints, for bf16 and bf16 + channels_last, the layers whose outputs (one fixed batch, eval
mode) are furthest from fp32: where a CPU's bf16 channels-last kernel departs from the others.

    python bench/amp_parity.py                # demo config (MobileNetV2, 64 px), 4 epochs
    python bench/amp_parity.py --layers --epochs 1 --seeds 0
"""

from __future__ import annotations

import argparse
import statistics

import torch
import yaml

from finetune import config_from_dict, fit
from finetune.config import TrainConfig
from finetune.engine import Trainer
from finetune.transforms import center_view


def layer_errors(config: TrainConfig, bf16: bool, channels_last: bool, worst: int = 5) -> list[tuple[float, str]]:
    """Relative error against fp32 of every conv / linear / norm layer's output on one batch."""
    trainer = Trainer(config)
    model = trainer.model.eval()
    images = center_view(trainer.splits.train.all_images()[:32], config.data)[0]
    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)

    def outputs(use_bf16: bool, use_cl: bool) -> dict[str, torch.Tensor]:
        fmt = torch.channels_last if use_cl else torch.contiguous_format
        seen: dict[str, torch.Tensor] = {}
        hooks = [
            module.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out.float().clone()))
            for name, module in model.named_modules()
            if isinstance(module, kinds)
        ]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            model.to(memory_format=fmt)(images.contiguous(memory_format=fmt))
        for hook in hooks:
            hook.remove()
        return seen

    reference, other = outputs(False, False), outputs(bf16, channels_last)
    errors = [(float((other[n] - r).norm() / (r.norm() + 1e-12)), n) for n, r in reference.items()]
    return sorted(errors)[-worst:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="studies/demo.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--layers", action="store_true", help="also print the layers furthest from fp32")
    parser.add_argument("--steps", type=int, help="steps per epoch (default: one pass over the data)")
    parser.add_argument("--image-size", type=int, help="image size (default: the spec's)")
    args = parser.parse_args()
    with open(args.spec) as fh:
        base = yaml.safe_load(fh)["base"]
    optim = {**base.get("optim", {}), "epochs": args.epochs, "lr_decay_epochs": [], "steps_per_epoch": args.steps}
    data = {**base.get("data", {}), **({"image_size": args.image_size} if args.image_size else {})}
    base = {**base, "optim": optim, "data": data, "device": args.device, "num_threads": None}
    if args.layers:
        probe = config_from_dict({**base, "device": "cpu", "precision": "fp32", "channels_last": "off"})
        for name, cl in (("bf16", False), ("bf16+channels_last", True)):
            worst = ", ".join(f"{layer} {err:.4f}" for err, layer in reversed(layer_errors(probe, True, cl)))
            print(f"layer_error[{name}]  worst: {worst}")
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
    device = "cpu"
    for seed in args.seeds:
        for name, cl in (("fp32", "off"), ("bf16", "on")):
            result = fit(config_from_dict({**base, "seed": seed, "precision": name, "channels_last": cl}))
            results[name].append(result.test_acc)
            seconds[name] += [m.seconds for m in result.history]
    if torch.cuda.is_available() and args.device != "cpu":
        device = torch.cuda.get_device_name()
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    spread = statistics.stdev(results["fp32"]) if len(args.seeds) > 1 else float("nan")
    for name in ("fp32", "bf16"):
        accs = ", ".join(f"{a:.4f}" for a in results[name])
        print(
            f"test_acc[{name}]  mean {statistics.fmean(results[name]):.4f} +- "
            f"{statistics.stdev(results[name]) if len(args.seeds) > 1 else 0:.4f}  ({accs})  {device}"
        )
    gap = statistics.fmean(results["bf16"]) - statistics.fmean(results["fp32"])
    print(f"bf16_minus_fp32  {gap:+.4f}  ({gap / spread:+.2f} fp32 seed std)  goal: within noise  {device}")
    ratio = statistics.fmean(seconds["bf16"]) / statistics.fmean(seconds["fp32"])
    print(f"epoch_time_ratio[bf16/fp32]  {ratio:.3f}  (below 1: bf16 faster here)  {device}")


if __name__ == "__main__":
    main()
