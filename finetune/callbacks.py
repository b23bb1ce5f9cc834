"""How the engine reports: callbacks receive typed per-epoch metrics and the final result."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from finetune.engine import Trainer


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch produced. With ``selection: best_val``, ``test_acc`` is set on the last epoch
    only (of the best-validation weights); with ``last`` on every epoch, and no ``val_acc``."""

    epoch: int
    train_loss: float
    train_acc: float
    terms: dict[str, float]  # mean of each loss term over the epoch: "ce", "l2", "bss", ...
    val_acc: float | None
    best_val_acc: float | None
    best_epoch: int
    smallest_singular_values: list[float]  # of the last training batch's features, ascending
    lr: float
    seconds: float
    test_acc: float | None = None
    task: int = 0  # the task this epoch trained on, 1.. in a task sequence (0: none)
    task_accs: list[float] = field(default_factory=list)  # test accuracy on each task seen so far
    task_learned_accs: list[float] = field(default_factory=list)  # ... at the end of its own training
    diagnostics: dict[str, float] = field(default_factory=dict)  # what terms report of themselves

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochMetrics:
        return cls(**values)

    def flat(self) -> dict[str, float]:
        """Flat numeric metrics, the names used in Tune results, MLflow and the Parquet table."""
        out: dict[str, float] = {
            k: float(v) for k, v in asdict(self).items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if not self.task:
            del out["task"]
        out.update({f"loss_{k}": v for k, v in self.terms.items()})
        out.update({f"sv_min_{i + 1}": v for i, v in enumerate(self.smallest_singular_values)})
        out.update({f"task_acc_{i + 1}": v for i, v in enumerate(self.task_accs)})
        out.update({f"task_learned_acc_{i + 1}": v for i, v in enumerate(self.task_learned_accs)})
        out.update(self.diagnostics)
        return out


@dataclass
class FitResult:
    best_val_acc: float | None  # None with ``selection: last``
    best_epoch: int
    test_acc: float
    history: list[EpochMetrics] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


class Callback(Protocol):
    """``on_epoch_end`` gets the epoch's metrics and the trainer (``trainer.state_dict()`` to checkpoint)."""

    def on_epoch_end(self, metrics: EpochMetrics, trainer: Trainer) -> None: ...

    def on_fit_end(self, result: FitResult) -> None: ...


class PrintProgress:
    """A plain progress printer for ``study train``."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def on_epoch_end(self, metrics: EpochMetrics, trainer: Trainer) -> None:
        terms = " ".join(
            [f"{k}={v:.4f}" for k, v in metrics.terms.items()]
            + [f"{k}={v:.3g}" for k, v in metrics.diagnostics.items()]
        )
        acc = f"val_acc={metrics.val_acc:.4f}" if metrics.val_acc is not None else f"test_acc={metrics.test_acc:.4f}"
        if metrics.task:
            accs = ", ".join(f"{a:.4f}" for a in metrics.task_accs)
            acc = f"task {metrics.task}: {acc} (tasks: {accs})"
        print(
            f"epoch {metrics.epoch}: loss={metrics.train_loss:.4f} ({terms}) {acc} "
            f"sv_min={metrics.smallest_singular_values[0]:.3g} [{metrics.seconds:.1f}s]",
            file=self.stream,
            flush=True,
        )

    def on_fit_end(self, result: FitResult) -> None:
        if result.best_val_acc is None:
            line = f"last epoch {result.best_epoch}: test_acc={result.test_acc:.4f} (selection: last)"
        else:
            line = (
                f"best val_acc={result.best_val_acc:.4f} at epoch {result.best_epoch}; test_acc={result.test_acc:.4f}"
            )
        print(
            line,
            file=self.stream,
            flush=True,
        )
