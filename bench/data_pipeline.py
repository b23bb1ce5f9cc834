"""Training-input images per second: the shared decoded-image cache against a per-trial JPEG + PIL pipeline.

Both produce the same thing, augmented 224 px training batches of 48 (RandomResizedCrop + flip,
normalised) from a folder of JPEGs, on the same cores, measured side by side in one run:

- ``jpeg_pil``: what the reference codes do in every trial: open and decode each JPEG with
  PIL, square-resize to 256, RandomResizedCrop(224) + flip with torchvision transforms, in a
  DataLoader with one worker process per core.
- ``cache``: the split decoded once (at 256 px) into the memory-mapped cache, then batches
  gathered from it and augmented as tensors (batched crop-and-resize), torch using the cores.

    python bench/data_pipeline.py                 # 512 generated 500x375 JPEGs, all cores
    python bench/data_pipeline.py --images 128 --quick
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from finetune.config import DataConfig
from finetune.data import load_splits
from finetune.transforms import IMAGENET_MEAN, IMAGENET_STD, random_resized_crop


def make_jpegs(root: Path, count: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / "train" / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.random((12, 16, 3)) * 255
        picture = Image.fromarray(base.astype(np.uint8)).resize((500, 375), Image.Resampling.BICUBIC)
        picture.save(folder / f"{i}.jpg", quality=90)
    for c in range(classes):  # the layout wants a test split too
        (root / "test" / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (500, 375)).save(root / "test" / f"c{c}" / "0.jpg")


class JpegFolder(Dataset):
    def __init__(self, root: Path) -> None:
        self.paths = sorted((root / "train").glob("*/*.jpg"))
        self.transform = v2.Compose(
            [
                v2.Resize((256, 256)),
                v2.RandomResizedCrop(224),
                v2.RandomHorizontalFlip(),
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.paths[i]) as image:
            return self.transform(image.convert("RGB"))


def jpeg_rate(root: Path, batch: int, workers: int, epochs: int) -> float:
    loader = DataLoader(
        JpegFolder(root),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    next(iter(loader))  # start the workers
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for x in loader:
            seen += len(x)
    return seen / (time.perf_counter() - start)


def cache_rate(config: DataConfig, batch: int, epochs: int) -> tuple[float, float]:
    start = time.perf_counter()
    splits = load_splits(config, seed=0)  # builds the cache on first use
    build = time.perf_counter() - start
    train = splits.train
    generator = torch.Generator().manual_seed(0)
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for i in range(0, len(order) - batch + 1, batch):
            x = random_resized_crop(train.take(order[i : i + batch]), config, generator)
            seen += len(x)
    return seen / (time.perf_counter() - start), build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="one epoch each")
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    torch.set_num_threads(args.cores)
    device = f"cpu ({args.cores} cores)"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        make_jpegs(root, args.images)
        config = DataConfig(
            dataset="imagefolder",
            root=str(root),
            sampling_rate=1.0,
            val_fraction=0.01,
            image_size=224,
            resize_size=256,
            train_transform="random_resized_crop",
            cache_dir=str(Path(tmp) / "cache"),
        )
        cached, build = cache_rate(config, args.batch, epochs)
        baseline = jpeg_rate(root, args.batch, args.cores, epochs)
    print(f"# {args.images} JPEGs 500x375 -> 224 px batches of {args.batch}, {epochs} epoch(s), {device}")
    print(f"{'data_images_per_s[jpeg_pil]':<30} {baseline:10.1f}   goal -     {device}")
    print(f"{'data_images_per_s[cache]':<30} {cached:10.1f}   goal -     {device}")
    print(f"{'data_speedup[cache/jpeg_pil]':<30} {cached / baseline:10.2f}   goal >=5   {device}")
    print(f"{'cache_build_s (once a study)':<30} {build:10.2f}   goal -     {device}")


if __name__ == "__main__":
    main()
