"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017): remember earlier tasks through a
quadratic penalty weighted by each weight's diagonal Fisher information."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from finetune.config.schema import Section, TrainConfig, check
from finetune.regularizers.base import BuildContext, Regularizer, StepState, TaskEnd, register

FISHER_KINDS = ("expected", "empirical")


def check_settings(lam: float, fisher: str) -> None:
    """The one home of EWC's own checks (the config section and the module both call it)."""
    check(math.isfinite(lam) and lam >= 0, "ewc.lam", f"must be >= 0 (0: EWC off), got {lam}")
    kinds = ", ".join(FISHER_KINDS)
    check(fisher in FISHER_KINDS, "ewc.fisher", f"must be one of {kinds}, got {fisher!r}")


@dataclass(frozen=True)
class EWCConfig(Section):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017), used in a task sequence (``tasks``).

    After each task but the last, the diagonal Fisher information F of the task is computed at the
    task's final weights theta* over ``fisher_samples`` of its (non-augmented) training images; while
    the later tasks train, the penalty is (lam / 2) sum_tasks sum_i F_i (theta_i - theta*_i)^2 over
    every trainable weight. ``fisher``: ``expected`` (the Fisher itself: squared per-image gradients
    of log p(y|x) averaged over y ~ the model's prediction, computed exactly over all classes) or
    ``empirical`` (y = the image's label). ``lam: 0`` consolidates nothing, which is EWC off: it
    resolves to ``enabled: false`` (so a grid over lam holds plain fine-tuning, as k = 0 for BSS).
    """

    enabled: bool = False
    lam: float = 100.0
    fisher: str = "expected"
    fisher_samples: int = 500
    fisher_batch_size: int = 100

    def __post_init__(self) -> None:
        check_settings(self.lam, self.fisher)
        if self.lam == 0:
            object.__setattr__(self, "enabled", False)
            object.__setattr__(self, "lam", 100.0)
        check(self.fisher_samples >= 1, "ewc.fisher_samples", f"must be >= 1, got {self.fisher_samples}")
        check(self.fisher_batch_size >= 1, "ewc.fisher_batch_size", f"must be >= 1, got {self.fisher_batch_size}")


def _in_a_sequence(config: TrainConfig) -> bool:
    return config.tasks.count > 1


def _check_with(config: TrainConfig) -> None:
    check(
        _in_a_sequence(config),
        "ewc.enabled",
        "EWC consolidates earlier tasks: set tasks.count >= 2 (e.g. 2: task A then task B) or ewc.enabled: false",
    )


def trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def diagonal_fisher(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, kind: str = "expected", batch_size: int = 100
) -> dict[str, torch.Tensor]:
    r"""The diagonal of the Fisher information of ``model`` (``(logits, features) = model(x)``) at its
    current weights, for every trainable weight:

    .. math::
        F_i = \frac{1}{n} \sum_{x} \mathbb{E}_{y}
              \left[\left(\frac{\partial \log p(y|x)}{\partial\theta_i}\right)^2\right]

    with y over all classes weighted by the model's p(y|x) (``expected``: the Fisher itself, no
    sampling) or y = the label (``empirical``). Per-image gradients (``torch.func.vmap``), not the
    square of a batch gradient; eval mode, float32, no autocast. Returns float32 tensors shaped like
    the weights.
    """
    was_training = model.training
    model.eval()
    names = trainable_names(model)
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    fixed: dict[str, torch.Tensor] = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    fixed.update(model.named_buffers())

    def log_prob(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, _ = functional_call(model, {**weights, **fixed}, (x.unsqueeze(0),))
        return -F.cross_entropy(logits.float(), y.view(1))  # log p(y|x)

    per_image = vmap(grad(log_prob), in_dims=(None, 0, 0))
    fisher = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in params.items()}
    with torch.autocast(images.device.type, enabled=False):
        for start in range(0, len(images), batch_size):
            x, y = images[start : start + batch_size].float(), labels[start : start + batch_size]
            if kind == "empirical":
                targets: list[tuple[torch.Tensor, torch.Tensor | None]] = [(y, None)]
            else:
                with torch.no_grad():
                    probs = F.softmax(model(x)[0].float(), dim=-1)
                targets = [(torch.full_like(y, c), probs[:, c]) for c in range(probs.shape[1])]
            for target, weight in targets:
                grads: dict[str, Any] = per_image(params, x, target)
                for n, g in grads.items():
                    squared = g.float().pow(2)
                    if weight is not None:
                        squared = squared * weight.view(-1, *([1] * (squared.dim() - 1)))
                    fisher[n] += squared.sum(0)
    model.train(was_training)
    return {n: f / max(1, len(images)) for n, f in fisher.items()}


class EWC(Regularizer):
    r"""The EWC penalty over every task consolidated so far:

    .. math:: \Omega(\theta) = \frac{\lambda}{2} \sum_t \sum_i F_{t,i} (\theta_i - \theta^*_{t,i})^2

    :meth:`end_task` appends the task's diagonal Fisher :math:`F_t` and its final weights
    :math:`\theta^*_t` (flat, one row per task, in buffers: saved and resumed with the run).
    Zero before the first task has ended.

    Args:
        model: the classifier; its trainable weights are consolidated.
        lam: lambda, ``>= 0``.
        fisher: ``expected`` or ``empirical`` (see :func:`diagonal_fisher`).
        samples: training images of a task the Fisher averages over (a seeded draw if fewer than the task has).
        batch_size: images per per-image-gradient batch.
        seed: seeds the draw of those images.
    """

    fisher: torch.Tensor
    anchor: torch.Tensor
    curvature_ratio: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        lam: float,
        fisher: str = "expected",
        samples: int = 1000,
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_settings(lam, fisher)
        self.lam, self.kind, self.samples, self.batch_size, self.seed = lam, fisher, samples, batch_size, seed
        self.names = trainable_names(model)
        params = dict(model.named_parameters())
        self.sizes = [params[n].numel() for n in self.names]
        size = sum(self.sizes)
        device = next(iter(params.values())).device
        self.register_buffer("fisher", torch.zeros(0, size, device=device))
        self.register_buffer("anchor", torch.zeros(0, size, device=device))
        self.register_buffer("curvature_ratio", torch.zeros((), device=device))

    @property
    def tasks(self) -> int:
        """Tasks consolidated so far."""
        return int(self.fisher.shape[0])

    def flat_weights(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def forward(self, state: StepState) -> torch.Tensor:
        if self.tasks == 0:
            return torch.zeros((), device=self.fisher.device)
        drift = self.flat_weights(state.model) - self.anchor  # (tasks, size) by broadcasting
        return 0.5 * self.lam * (self.fisher * drift.pow(2)).sum()

    def end_task(self, task: TaskEnd) -> None:
        generator = torch.Generator().manual_seed(self.seed * 1009 + task.task)
        positions = torch.randperm(task.n, generator=generator)[: self.samples]
        images, labels = task.take(positions)
        fisher = diagonal_fisher(task.model, images, labels, self.kind, self.batch_size)
        row = torch.cat([fisher[n].reshape(-1) for n in self.names]).to(self.fisher.device)
        with torch.no_grad():
            anchor = self.flat_weights(task.model).detach().to(self.anchor.device)
        self.fisher = torch.cat([self.fisher, row[None]])
        self.anchor = torch.cat([self.anchor, anchor[None]])
        if task.curvature_limits:
            ratio = self.worst_curvature(task.curvature_limits)
            self.curvature_ratio.fill_(ratio)
            if ratio > 1:
                warnings.warn(
                    f"ewc.lam: {self.lam:g} x F reaches {ratio:.3g} x the largest curvature SGD follows stably at "
                    "these learning rates (lr x curvature < 2 (1 + momentum)); steps on those weights overshoot and "
                    f"can grow without bound (watch loss_ewc): keep ewc.lam below {self.lam / ratio:.3g} or lower "
                    "optim.lr",
                    stacklevel=2,
                )

    def worst_curvature(self, limits: dict[str, float]) -> float:
        """max over weights of lam x (sum over tasks of F) / the optimiser's stable curvature for it:
        above 1, gradient steps on the penalty alone overshoot and grow on that weight."""
        total = self.fisher.sum(0)
        worst, offset = 0.0, 0
        for name, size in zip(self.names, self.sizes, strict=True):
            if name in limits:
                worst = max(worst, self.lam * float(total[offset : offset + size].max()) / limits[name])
            offset += size
        return worst

    def diagnostics(self) -> dict[str, float]:
        """``ewc_curvature_ratio`` once a task is consolidated (see :meth:`worst_curvature`)."""
        return {"ewc_curvature_ratio": float(self.curvature_ratio)} if self.tasks else {}

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        # a saved run may have consolidated more tasks than this fresh module: take its shapes
        for name in ("fisher", "anchor"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty(saved.shape, dtype=saved.dtype, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, fisher={self.kind}, samples={self.samples}, tasks={self.tasks}"


@register(
    "ewc",
    "EWC: (lam/2) sum_t sum_i F_t,i (theta_i - theta*_t,i)^2 after each task of a sequence",
    term=EWC,
    base=False,
    title="EWC",
    section=EWCConfig,
    knob="ewc.lam",
    applies=_in_a_sequence,
    check=_check_with,
)
def _ewc_from_config(context: BuildContext) -> EWC:
    e = EWCConfig.of(context.config)
    return EWC(context.model, e.lam, e.fisher, e.fisher_samples, e.fisher_batch_size, seed=context.config.seed)
