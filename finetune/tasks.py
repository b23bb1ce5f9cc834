"""Task sequences (incremental learning, the paper's Section 5.3): every task is the dataset's
images in a pixel order of its own, with the same labels (permuted MNIST when the images are MNIST)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from finetune.registry import Registry

if TYPE_CHECKING:
    from finetune.config import TrainConfig

TaskView = Callable[[torch.Tensor], torch.Tensor]  # images (n, c, h, w) -> the same in the task's pixel order
TaskKind = Callable[[int, int, int, bool], TaskView]  # (image side, run seed, task 1.., transform it?) -> view


def identity(images: torch.Tensor) -> torch.Tensor:
    return images


def pixel_order(side: int, seed: int, task: int) -> torch.Tensor:
    """The fixed permutation of the side x side pixel positions of ``task`` (1-based) for a run's
    ``seed``: the same in every split, every epoch and every restart; another for each (seed, task)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, task, 0x7A5C]))
    return torch.from_numpy(rng.permutation(side * side))


def permuted(side: int, seed: int, task: int, transform: bool) -> TaskView:
    """Every channel's pixels moved by one fixed permutation (:func:`pixel_order`)."""
    if not transform:
        return identity
    order = pixel_order(side, seed, task)
    on_device: dict[torch.device, torch.Tensor] = {order.device: order}  # copied to a GPU once, not every step

    def view(images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] * images.shape[-2] != len(order):
            raise ValueError(f"task {task}'s permutation is of {len(order)} pixels, the images have {images.shape}")
        if images.device not in on_device:
            on_device[images.device] = order.to(images.device)
        index = on_device[images.device]
        return images.flatten(-2)[..., index].view(images.shape)

    return view


TASK_KINDS: Registry[TaskKind] = Registry("task kind", "tasks.kind")
TASK_KINDS.add("permuted", permuted, "each task: one fixed, seeded permutation of the pixels (permuted MNIST)")


def task_views(config: TrainConfig) -> list[TaskView]:
    """One view per task of the run's sequence (empty without a sequence: ``tasks.count`` 1)."""
    tasks = config.tasks
    if tasks.count == 1:
        return []
    kind = TASK_KINDS[tasks.kind]
    side = config.data.resize_size or config.data.image_size
    return [kind(side, config.seed, t, t > 1 or tasks.permute_first) for t in range(1, tasks.count + 1)]
