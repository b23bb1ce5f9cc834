"""bf16 autocast (and channels_last) against fp32 on the embedded default, over 3 seeds.

Accuracy parity: the test accuracy of the selected epoch, per seed and as mean +- std, for
fp32 and bf16, and their difference in units of the fp32 seed spread. Speed: the mean
epoch time of each on this device. ``precision: auto`` turns bf16 on only where it is faster
(a GPU); this prints the evidence for the device it runs on.

    python bench/amp_parity.py                # demo config (MobileNetV2, 64 px), 4 epochs
"""

from __future__ import annotations

import argparse
import statistics

import torch
import yaml

from finetune import config_from_dict, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="studies/demo.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with open(args.spec) as fh:
        base = yaml.safe_load(fh)["base"]
    base = {**base, "optim": {**base.get("optim", {}), "epochs": args.epochs, "lr_decay_epochs": []},
            "device": args.device, "num_threads": None}  # fmt: skip
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
        print(f"test_acc[{name}]  mean {statistics.fmean(results[name]):.4f} +- "
              f"{statistics.stdev(results[name]) if len(args.seeds) > 1 else 0:.4f}  ({accs})  {device}")  # fmt: skip
    gap = statistics.fmean(results["bf16"]) - statistics.fmean(results["fp32"])
    print(f"bf16_minus_fp32  {gap:+.4f}  ({gap / spread:+.2f} fp32 seed std)  goal: within noise  {device}")
    ratio = statistics.fmean(seconds["bf16"]) / statistics.fmean(seconds["fp32"])
    print(f"epoch_time_ratio[bf16/fp32]  {ratio:.3f}  (below 1: bf16 faster here)  {device}")


if __name__ == "__main__":
    main()
