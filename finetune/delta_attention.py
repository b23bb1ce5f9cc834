"""DELTA's supervised channel attention, computed once and shared through a file cache.

Fixes over the reference implementation: the backbone really is frozen while the
attention head trains (its features are computed once, in eval mode); the chosen
pretrained weights are the ones measured; images are not augmented; any number of
batches works; layer names come from the backbone registry (right for ResNet-101 too).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from finetune.config import TrainConfig, config_to_dict
from finetune.filelock import cache_root, file_lock
from finetune.model import Classifier

Attention = list[torch.Tensor]


def default_cache_dir() -> Path:
    return cache_root() / "delta"


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def attention_key(config: TrainConfig, layers: list[str]) -> str:
    """Everything the attention depends on: backbone, weights, data, sampling, seed, method."""
    weights = config.model.weights
    if weights is not None and Path(weights).is_file():
        weights = f"file:{_file_digest(weights)}"
    data = config_to_dict(config)["data"]
    delta = {k: v for k, v in config_to_dict(config)["delta"].items() if k != "cache_dir"}
    payload = {
        "backbone": config.model.backbone, "weights": weights, "data": data, "seed": config.seed,
        "delta": delta, "layers": layers, "version": 1,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def cached_attention(cache_dir: Path, key: str, compute: Callable[[], Attention]) -> tuple[Attention, bool]:
    """Load the attention for ``key``, or compute and store it; safe when many trials ask at once.

    Returns (attention, computed_here). One process computes while the others wait on the lock.
    """
    target = cache_dir / f"{key}.pt"
    with file_lock(cache_dir / f"{key}.lock"):
        if target.is_file():
            return list(torch.load(target, weights_only=True)), False
        attention = compute()
        tmp = target.with_suffix(f".{os.getpid()}.partial")
        torch.save([a.cpu() for a in attention], tmp)
        os.replace(tmp, target)
        return attention, True


def uniform_attention(model: Classifier, layers: list[str]) -> Attention:
    return [torch.full((_channels(model.backbone, n),), 1.0 / _channels(model.backbone, n)) for n in layers]


def _channels(backbone: nn.Module, name: str) -> int:
    module = backbone.get_submodule(name)
    assert isinstance(module, nn.Conv2d)
    return int(module.out_channels)


@torch.no_grad()
def _pooled(backbone: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    return torch.cat([backbone(images[i : i + batch_size].to(device)) for i in range(0, len(images), batch_size)])


def supervised_attention(
    model: Classifier,
    layers: list[str],
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    device: torch.device,
) -> Attention:
    """Per hooked layer, softmax(z-scored loss increase from zeroing each channel / 5)."""
    d = config.delta
    probe = copy.deepcopy(model).to(device).eval()
    for p in probe.backbone.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed)
    # 1. the head, trained on features of the frozen backbone (computed once, eval mode)
    features = _pooled(probe.backbone, images, d.attention_batch_size, device)
    targets = labels.to(device)
    head = probe.head
    optimizer = torch.optim.SGD(head.parameters(), lr=d.attention_lr, momentum=0.9)
    for _ in range(d.attention_epochs):
        order = torch.randperm(len(targets), generator=generator)
        for i in range(0, len(order), d.attention_batch_size):
            idx = order[i : i + d.attention_batch_size].to(device)
            loss = F.cross_entropy(head(features[idx]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    # 2. loss increase when each channel's filter is zeroed, on fixed non-augmented batches
    order = torch.randperm(len(labels), generator=generator)
    batches = [order[i : i + d.attention_batch_size] for i in range(0, len(order), d.attention_batch_size)]
    batches = batches[: d.attention_batches]
    probe_batches = [(images[idx].to(device), labels[idx].to(device)) for idx in batches]
    measure = loss_increases_vectorised if d.vectorised else loss_increases_loop
    return [attention_from_increases(measure(probe, name, probe_batches, d.ablation_rows)) for name in layers]


Batches = list[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def _mean_loss(probe: Classifier, batches: Batches) -> float:
    total = sum(float(F.cross_entropy(probe(x)[0], y, reduction="sum")) for x, y in batches)
    return total / sum(len(y) for _, y in batches)


@torch.no_grad()
def loss_increases_loop(
    probe: Classifier, name: str, batches: Batches, _rows: int = 0, limit: int | None = None
) -> torch.Tensor:
    """The reference method: one full forward pass per channel (per batch); ``limit``: the first channels only."""
    module = probe.backbone.get_submodule(name)
    base = _mean_loss(probe, batches)
    increases = torch.empty(min(_channels(probe.backbone, name), limit or 1 << 30))
    for j in range(len(increases)):
        channel = torch.tensor([j], device=batches[0][0].device)
        handle = module.register_forward_hook(lambda _m, _i, out, c=channel: out.index_fill(1, c, 0.0))
        try:
            increases[j] = _mean_loss(probe, batches) - base
        finally:
            handle.remove()
    return increases


def enclosing_block(name: str) -> str:
    """The block a stage-end conv lives in (``layer3.5.conv3`` -> ``layer3.5``; ``0.13.conv.2`` -> ``0.13``):
    everything before it runs once; the block and what follows run once per ablated channel."""
    return ".".join(name.split(".")[:2])


@torch.no_grad()
def loss_increases_vectorised(probe: Classifier, name: str, batches: Batches, rows: int = 1024) -> torch.Tensor:
    """Many channels per forward pass: the input of the layer's block is replicated once per
    channel of a chunk (the layers before it run once), and replica r has channel j_r zeroed at
    the layer. Same numbers as the loop, up to float summation order."""
    module = probe.backbone.get_submodule(name)
    block = probe.backbone.get_submodule(enclosing_block(name))
    channels = _channels(probe.backbone, name)
    base = _mean_loss(probe, batches)
    sums = torch.zeros(channels, dtype=torch.float64)
    count = sum(len(y) for _, y in batches)
    for x, y in batches:
        b = len(y)
        chunk = max(1, min(channels, rows // b))
        for start in range(0, channels, chunk):
            js = torch.arange(start, min(channels, start + chunk), device=x.device)
            m = len(js)

            def replicate(_m: nn.Module, inputs: tuple[torch.Tensor, ...], m: int = m) -> tuple[torch.Tensor, ...]:
                return tuple(t.repeat_interleave(m, dim=0) if i == 0 else t for i, t in enumerate(inputs))

            def ablate(_m: nn.Module, _i: object, out: torch.Tensor, js: torch.Tensor = js) -> torch.Tensor:
                mask = torch.ones(out.shape[0], out.shape[1], 1, 1, device=out.device, dtype=out.dtype)
                replica = torch.arange(out.shape[0], device=out.device) % len(js)  # sample i, replica r: row i*m + r
                mask[torch.arange(out.shape[0], device=out.device), js[replica]] = 0.0
                return out * mask

            handles = [block.register_forward_pre_hook(replicate), module.register_forward_hook(ablate)]
            try:
                logits, _ = probe(x)
            finally:
                for handle in handles:
                    handle.remove()
            losses = F.cross_entropy(logits, y.repeat_interleave(m), reduction="none").view(b, m)
            sums[start : start + m] += losses.sum(0).double().cpu()
    return (sums / count - base).float()


def attention_from_increases(increases: torch.Tensor) -> torch.Tensor:
    """softmax(z / 5) of the z-scored loss increases of one layer's channels."""
    z = (increases - increases.mean()) / (increases.std(unbiased=False) + 1e-12)
    return torch.softmax(z / 5.0, dim=0)
