"""Augmentation and evaluation views on uint8 image tensors (n, 3, s, s), batched, on any device."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from finetune.config import DataConfig
from finetune.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TrainTransform = Callable[[torch.Tensor, DataConfig, torch.Generator], torch.Tensor]
EvalViews = Callable[[torch.Tensor, DataConfig], list[torch.Tensor]]


def _scale_shift(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return 1.0 / (255.0 * std), -mean / std


def normalize_(x: torch.Tensor) -> torch.Tensor:
    """In place: float pixel values in [0, 255] -> ImageNet-normalised (one multiply-add per channel)."""
    scale, shift = _scale_shift(x.device)
    return x.mul_(scale).add_(shift)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, h, w) -> float, scaled to [0, 1] and normalised with ImageNet statistics, in
    the batch's memory format. A channels-last batch is converted as the (n, h, w, 3) array it
    is, with the per-channel multiply-add along its contiguous last axis (2.7x faster on a CPU
    than broadcasting over the strided channel axis)."""
    scale, shift = _scale_shift(batch.device)
    if batch.dim() == 4 and not batch.is_contiguous() and batch.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = batch.shape
        hwc = torch.empty((n, h, w, c), dtype=torch.float32, device=batch.device)
        hwc.copy_(batch.permute(0, 2, 3, 1))
        torch.addcmul(shift.view(3), hwc, scale.view(3), out=hwc)
        return hwc.permute(0, 3, 1, 2)
    out = torch.empty(batch.shape, dtype=torch.float32, device=batch.device)
    out.copy_(batch)
    return torch.addcmul(shift, out, scale, out=out)


def _flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def _center(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def translate_flip(x: torch.Tensor, config: DataConfig, generator: torch.Generator) -> torch.Tensor:
    """Centre crop to image_size, random flip, random translation by up to 1/8 (reflect padding)."""
    x = _flip(_center(normalize(x), config.image_size), generator)
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(shifts)])


def random_resized_crop(x: torch.Tensor, config: DataConfig, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop(image_size, scale=(crop_scale_min, 1), ratio=(3/4, 4/3)) + flip.

    On a CPU each crop is cut from the uint8 batch and resized on its own (bilinear, antialiased,
    in uint8 and channels_last: PyTorch's vectorised path, as torchvision's v2 uses). On a GPU
    the whole batch is cropped and resized at once (:func:`batched_resized_crops`: one kernel
    instead of one per image). The boxes and flips are the same draws on either device; the
    batch is normalised once at the end.
    """
    n, _, h, w = x.shape
    size = config.image_size
    flip_draws = torch.rand(n, generator=generator) < 0.5
    boxes = [_crop_box(h, w, config.crop_scale_min, generator) for _ in range(n)]
    if x.device.type != "cpu":
        return normalize_(batched_resized_crops(x.float(), boxes, flip_draws.to(x.device), size))
    flips = flip_draws.tolist()
    source = (
        x if x.is_contiguous(memory_format=torch.channels_last) else x.contiguous(memory_format=torch.channels_last)
    )
    out = torch.empty((n, size, size, 3), dtype=torch.uint8).permute(0, 3, 1, 2)  # channels-last uint8
    for i, (top, left, ch, cw) in enumerate(boxes):
        crop = source[i : i + 1, :, top : top + ch, left : left + cw]
        if flips[i]:
            crop = crop.flip(-1)
        out[i : i + 1] = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalize(out)


def batched_resized_crops(
    x: torch.Tensor, boxes: list[tuple[int, int, int, int]], flips: torch.Tensor, size: int
) -> torch.Tensor:
    """Every (top, left, height, width) box of a float batch resized to ``size`` x ``size`` in one
    ``roi_align`` call, flipped where ``flips`` says.

    With ``aligned=True`` roi_align samples at the same points as ``interpolate(bilinear,
    align_corners=False)`` of the cut-out crop, so upscaled crops agree with the per-image path
    except in their outermost pixels (roi_align reads the image beyond the box where the per-crop
    resize repeats the crop's edge). Downscaling: ``sampling_ratio=0`` averages ceil(box / size)
    bilinear samples per output pixel along each axis (a box filter), where the per-image path's
    antialiasing is PyTorch's triangle filter: both suppress aliasing; they differ by a few grey
    levels (tests/finetune/test_engine.py measures it).
    """
    from torchvision.ops import roi_align

    rois = torch.tensor(
        [[i, left, top, left + cw, top + ch] for i, (top, left, ch, cw) in enumerate(boxes)], dtype=x.dtype
    ).to(x.device, non_blocking=True)
    out = roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    return torch.where(flips.view(-1, 1, 1, 1), out.flip(-1), out)


def _crop_box(h: int, w: int, scale_min: float, generator: torch.Generator) -> tuple[int, int, int, int]:
    area = h * w
    log_ratio = torch.log(torch.tensor([3 / 4, 4 / 3]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale_min, 1.0, generator=generator))
        ratio = float(torch.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator)))
        cw, ch = round((target * ratio) ** 0.5), round((target / ratio) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return top, left, ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def center_view(x: torch.Tensor, config: DataConfig) -> list[torch.Tensor]:
    return [_center(normalize(x), config.image_size)]


def ten_crop_views(x: torch.Tensor, config: DataConfig) -> list[torch.Tensor]:
    """The four corners and the centre, each also flipped (the official BSS evaluation)."""
    x = normalize(x)
    s = config.image_size
    h, w = x.shape[-2:]
    crops = [x[..., :s, :s], x[..., :s, w - s :], x[..., h - s :, :s], x[..., h - s :, w - s :], _center(x, s)]
    return crops + [c.flip(-1) for c in crops]


TRAIN_TRANSFORMS: Registry[TrainTransform] = Registry("training transform", "data.train_transform")
TRAIN_TRANSFORMS.add("none", lambda x, config, generator: center_view(x, config)[0], "the centre crop, unaugmented")
TRAIN_TRANSFORMS.add("translate_flip", translate_flip, "random shifts of a few pixels + horizontal flip")
TRAIN_TRANSFORMS.add("random_resized_crop", random_resized_crop, "RandomResizedCrop (scale crop_scale_min-1) + flip")
EVAL_TRANSFORMS: Registry[EvalViews] = Registry("evaluation transform", "data.eval_transform")
EVAL_TRANSFORMS.add("center", center_view, "one centre crop")
EVAL_TRANSFORMS.add("ten_crop", ten_crop_views, "4 corners + centre, each also flipped, logits summed (official BSS)")


def train_transform(config: DataConfig) -> TrainTransform:
    return TRAIN_TRANSFORMS[config.train_transform]


def eval_views(config: DataConfig) -> EvalViews:
    return EVAL_TRANSFORMS[config.eval_transform]
