"""The backbone's training forward and backward as CUDA graphs (``cuda_graph: auto | on | off``).

A ResNet-50 step at batch 48 is launch-bound on a large GPU: some 500 kernels forward and
backward, each launched from Python. :func:`torch.cuda.make_graphed_callables` captures the
backbone's training forward and its backward once (static shapes: every training batch has
``data.batch_size`` images) and replays each as one graph launch a step. The rest of the step
stays eager and unchanged: the head, the losses, BSS (``svdvals`` checks its solver's result, a
host synchronisation no graph can hold), the regularisers and the optimiser.

Evaluation runs the backbone's own forward (the graph serves training mode only; the graphed
module switches by its ``training`` flag). DELTA reads the backbone's intermediate feature maps
through forward hooks, which a graph replay does not run: with DELTA, ``auto`` stays eager and
``on`` is refused.

A capture is checked before it is used: for the first training batch, the graphed backbone's
features and parameter gradients (for a fixed random cotangent) must match the eager pass's
within the precision's tolerance; if they do not, or the capture raises, the run continues
eagerly and says why in one line. Warm-up and check passes run in training mode, which moves
BatchNorm's running statistics: those are restored in place afterwards, so a graphed run starts
its first step from exactly the state an eager one would.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from finetune.errors import ConfigError

# relative to the largest magnitude of each compared tensor: bf16 keeps 8 significant bits
TOLERANCE = {torch.bfloat16: 2.0**-5, torch.float32: 1e-3}


@dataclass(frozen=True)
class GraphPlan:
    """Whether a run graphs its backbone, and if not, why (empty when it does)."""

    use: bool
    reason: str = ""


def graph_blockers(device: torch.device, terms: Iterable[tuple[str, nn.Module]]) -> list[str]:
    """What keeps this run's backbone out of a CUDA graph (empty: nothing)."""
    blockers = []
    if device.type != "cuda":
        blockers.append(f"the device is {device.type}; CUDA graphs need a CUDA device")
    for name, term in terms:
        why = getattr(term, "graph_unsafe", "")
        if why:
            blockers.append(f"{name} {why}")
    return blockers


def plan_graph(mode: str, device: torch.device, terms: Iterable[tuple[str, nn.Module]]) -> GraphPlan:
    """``off``: eager. ``auto``: graphed where nothing blocks it. ``on``: graphed, or a ConfigError
    naming what blocks it."""
    if mode == "off":
        return GraphPlan(False, "cuda_graph: off")
    blockers = graph_blockers(device, terms)
    if not blockers:
        return GraphPlan(True)
    if mode == "on":
        raise ConfigError(
            f"cuda_graph: on, but {'; '.join(blockers)}; set cuda_graph: auto (eager where no graph can run) or off"
        )
    return GraphPlan(False, "; ".join(blockers))


def _pass(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    params: Sequence[torch.Tensor],
    autocast: Callable[[], torch.autocast],
) -> list[torch.Tensor]:
    """The features and every parameter's gradient for a fixed random cotangent (the same draw on
    every call), as float32 copies."""
    with autocast():
        out = forward(x)
    generator = torch.Generator(out.device).manual_seed(0)
    cotangent = torch.randn(out.shape, generator=generator, device=out.device, dtype=torch.float32)
    grads = torch.autograd.grad(out, params, cotangent.to(out.dtype), allow_unused=True)
    return [out.detach().float()] + [
        torch.zeros_like(p, dtype=torch.float32) if g is None else g.float() for p, g in zip(params, grads, strict=True)
    ]


def mismatch(eager: list[torch.Tensor], graphed: list[torch.Tensor], tolerance: float, names: list[str]) -> str:
    """The first compared tensor whose graphed value differs from the eager one by more than
    ``tolerance`` x its largest magnitude, as text ('' when all agree)."""
    for name, a, b in zip(names, eager, graphed, strict=True):
        scale = float(a.abs().max()) if a.numel() else 0.0
        error = float((a - b).abs().max()) if a.numel() else 0.0
        if not error <= tolerance * max(scale, 1e-12):
            return f"{name} differs from the eager pass by {error:.3g} (largest magnitude {scale:.3g})"
    return ""


def capture_backbone(
    backbone: nn.Module, sample: torch.Tensor, autocast: Callable[[], torch.autocast], dtype: torch.dtype
) -> str:
    """Replace ``backbone``'s training forward and backward by CUDA graphs, checked against the
    eager pass on ``sample``; return '' on success, else why not (the backbone is left eager).
    ``autocast`` gives the run's autocast context, which must have ``cache_enabled=False``."""
    names = ["features"] + [f"grad of {n}" for n, p in backbone.named_parameters() if p.requires_grad]
    params = [p for p in backbone.parameters() if p.requires_grad]
    saved = [b.clone() for b in backbone.buffers()]

    def restore() -> None:
        with torch.no_grad():
            for b, s in zip(backbone.buffers(), saved, strict=True):
                b.copy_(s)  # in place: a graph holds these very tensors

    try:
        eager = _pass(backbone, sample, params, autocast)
        restore()
        with autocast():
            torch.cuda.make_graphed_callables(backbone, (sample.clone(),))
        restore()
        graphed = _pass(backbone, sample, params, autocast)
        restore()
        why = mismatch(eager, graphed, TOLERANCE.get(dtype, 1e-3), names)
    except Exception as exc:  # any failure of the capture leaves the run eager
        why = f"the capture failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if why:
        backbone.__dict__.pop("forward", None)  # the module's own forward again
        restore()
    return why


def announce_fallback(why: str) -> None:
    warnings.warn(f"cuda_graph: the backbone stays eager: {why}", stacklevel=3)
