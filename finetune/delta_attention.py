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
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from finetune.config import TrainConfig, config_to_dict
from finetune.filelock import cache_root, file_lock
from finetune.model import Classifier

if TYPE_CHECKING:  # the section's type only: the regulariser hands its own section down
    from finetune.regularizers.delta import DeltaConfig

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
        "backbone": config.model.backbone,
        "weights": weights,
        "data": data,
        "seed": config.seed,
        "delta": delta,
        "layers": layers,
        "version": 1,
    }
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
    d: DeltaConfig,
    device: torch.device,
) -> Attention:
    """Per hooked layer, softmax(z-scored loss increase from zeroing each channel / 5); ``d`` is the
    run's DELTA section (its attention's batch size, epochs, learning rate and batches)."""
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


BlockInput = Callable[[torch.Tensor], torch.Tensor]
# On a CPU, large replicated batches are memory-bound: the replicated feature map of the
# ablated layer is kept to about this many bytes (measured on ResNet-50: layer1 is fastest
# at 64-128 rows at 64 px, layer4 at 1024 or more); a GPU takes ``rows`` as given.
CPU_REPLICA_BYTES = 32 << 20


def ablated_block_output(block: nn.Module, name: str) -> BlockInput | None:
    """For a torchvision ResNet block in eval mode whose last conv is the ablated layer: a map
    from the block's input to what each channel of its output becomes when that channel of the
    conv is zeroed, ``relu(bn_shift + identity)`` (the block output's other channels do not
    change). None for any other block, which then runs once per replica."""
    last = {Bottleneck: ("conv3", "bn3"), BasicBlock: ("conv2", "bn2")}.get(type(block))
    if last is None or name.rsplit(".", 1)[-1] != last[0] or block.training:
        return None
    bn = block.get_submodule(last[1])
    assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias - bn.running_mean * scale).view(1, -1, 1, 1)
    downsample = block.downsample if isinstance(block.downsample, nn.Module) else None

    def output(x: torch.Tensor) -> torch.Tensor:
        identity = downsample(x) if downsample is not None else x
        return torch.relu(identity + shift)

    return output


@torch.no_grad()
def loss_increases_vectorised(
    probe: Classifier, name: str, batches: Batches, rows: int = 1024, limit: int | None = None
) -> torch.Tensor:
    """Many channels per forward pass: what follows the layer runs on a batch replicated once per
    channel of a chunk (up to ``rows`` images), replica r with channel j_r zeroed at the layer;
    what comes before runs once. For a ResNet block ending in the layer, the block itself runs
    once too and the ablated channel is set in its output; any other block runs per replica.
    Same numbers as the loop, up to float summation order; ``limit``: the first channels only."""
    module = probe.backbone.get_submodule(name)
    block = probe.backbone.get_submodule(enclosing_block(name))
    closed_form = ablated_block_output(block, name)
    channels = min(_channels(probe.backbone, name), limit or 1 << 30)
    shape: list[torch.Size] = []
    handle = module.register_forward_hook(lambda _m, _i, out: shape.append(out.shape))
    try:
        base = _mean_loss(probe, batches)
    finally:
        handle.remove()
    if batches[0][0].device.type == "cpu":  # keep the replicated feature map within the caches
        rows = min(rows, max(1, CPU_REPLICA_BYTES // (shape[0][1:].numel() * batches[0][0].element_size())))
    sums = torch.zeros(channels, dtype=torch.float64)
    count = sum(len(y) for _, y in batches)
    for x, y in batches:
        b = len(y)
        chunk = max(1, min(channels, rows // b))
        for start in range(0, channels, chunk):
            js = torch.arange(start, min(channels, start + chunk), device=x.device)
            hooks = _replicate_and_ablate(closed_form, js)
            handles = [
                block.register_forward_pre_hook(hooks[0]),
                (block if closed_form is not None else module).register_forward_hook(hooks[1]),
            ]
            try:
                logits, _ = probe(x)
            finally:
                for handle in handles:
                    handle.remove()
            m = len(js)
            losses = F.cross_entropy(logits, y.repeat_interleave(m), reduction="none").view(b, m)
            sums[start : start + m] += losses.sum(0).double().cpu()
    return (sums / count - base).float()


Hook = Callable[..., object]


def _replicate_and_ablate(closed_form: BlockInput | None, js: torch.Tensor) -> tuple[Hook, Hook]:
    """(pre-hook on the block, forward hook on the block or the layer): row i*m + r of the
    replicated batch is sample i with channel js[r] ablated."""
    m = len(js)
    seen: list[torch.Tensor] = []

    def rows_and_channels(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.arange(n, device=device)
        return rows, js[rows % m]

    if closed_form is not None:

        def keep_input(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen[:] = [inputs[0]]

        def set_channel(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
            ablated = closed_form(seen[0])
            replicated = out.repeat_interleave(m, dim=0)
            rows, chans = rows_and_channels(len(replicated), out.device)
            replicated[rows, chans] = ablated[rows // m, chans]
            return replicated

        return keep_input, set_channel

    def replicate(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(t.repeat_interleave(m, dim=0) if i == 0 else t for i, t in enumerate(inputs))

    def ablate(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        rows, chans = rows_and_channels(len(out), out.device)
        out[rows, chans] = 0.0  # the layer's fresh output, read by nothing else
        return out

    return replicate, ablate


def attention_from_increases(increases: torch.Tensor) -> torch.Tensor:
    """softmax(z / 5) of the z-scored loss increases of one layer's channels."""
    z = (increases - increases.mean()) / (increases.std(unbiased=False) + 1e-12)
    return torch.softmax(z / 5.0, dim=0)
