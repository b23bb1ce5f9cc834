"""The training engine: ``fit(config, callbacks)``. Pure PyTorch; never imports ray or mlflow.

:class:`Trainer` holds the whole state of a run (model, regularisers, optimiser, schedule,
RNGs, data position, step, selection); ``state_dict()`` / ``load_state_dict()`` at an
epoch boundary resume it exactly.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from finetune.backbones import build_classifier
from finetune.callbacks import Callback, EpochMetrics, FitResult
from finetune.config import TrainConfig
from finetune.cuda_graph import announce_fallback, capture_backbone, plan_graph
from finetune.data import BatchStream, Split, check_batch_fits, eval_batches, load_splits
from finetune.errors import NonFiniteLossError
from finetune.model import Classifier, drop_smallest_components
from finetune.prefetch import BatchPrefetcher
from finetune.regularizers import (
    REGISTRY,
    BuildContext,
    Regularizer,
    StepState,
    TaskEnd,
    build_regularizers,
    smallest_singular_values,
)
from finetune.reported import NUM_REPORTED_SINGULAR_VALUES
from finetune.tasks import TaskView, task_views
from finetune.transforms import EvalViews, center_view, eval_views, train_transform

GPU_CHECK_EVERY = 25  # steps between read-backs (finite-loss check) on a GPU; a CPU checks every step


def use_threads(config: TrainConfig) -> None:
    """Apply ``num_threads`` to this process (torch's intra-op threads): a process-wide setting,
    so the edges call it (the trainable, ``study train``), not the engine."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)


def engine_text(device: torch.device) -> str:
    """What a run's numbers depend on beyond its config: torch's version, its intra-op threads and
    the kernels it dispatches to (the CPU's instruction set, or the GPU). A trial's accuracy moves
    by points when only these change (the float summation order differs and SGD amplifies it:
    docs/fig3d-embedded.md), so every trial records them."""
    cpu = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu {cpu}"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(config: TrainConfig, device: torch.device) -> bool:
    """``auto``: bf16 on a GPU that supports it; fp32 on a CPU.

    On CPUs of one kind (same AVX512-BF16/AMX flags) bf16 + channels_last trained at parity
    with fp32 on one machine and 6 % off it on another, so ``auto`` never picks bf16 on a CPU;
    ``precision: bf16`` opts in, after ``bench/amp_parity.py`` has shown parity there.
    """
    if config.precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return config.precision == "bf16"


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``auto``: on for a GPU, off on a CPU (fp32 channels_last is only a reordering there)."""
    if config.channels_last == "auto":
        return device.type == "cuda"
    return config.channels_last == "on"


def make_optimizer(model: Classifier, config: TrainConfig) -> torch.optim.SGD:
    """The new head at ``lr``, the pretrained backbone at ``lr * backbone_lr_ratio``."""
    o = config.optim
    groups = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": o.lr * o.backbone_lr_ratio},
        {"params": list(model.head.parameters()), "lr": o.lr},
    ]
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)


@torch.no_grad()
def accuracy(model: Classifier, split: Split, config: TrainConfig, device: torch.device, views_of: EvalViews) -> float:
    """Top-1 accuracy; with several views (ten-crop) the logits of the views are summed.

    With TSVD (``model.tsvd_r`` > 0, Eq. 10) the r smallest spectral components are removed from
    a feature matrix per view: of each batch of ``data.batch_size`` images of a fixed, seeded
    permutation of the split (``model.tsvd_eval: batch``, Eq. 10's batch of b) or of the whole
    split (``split``); either way the accuracy depends neither on ``eval_batch_size`` nor on the
    loader's order.
    """
    was_training = model.training
    model.eval()
    bf16 = use_bf16(config, device)
    memory_format = torch.channels_last if use_channels_last(config, device) else torch.contiguous_format
    per_view: list[list[torch.Tensor]] = []  # features (TSVD) or logits, per view, per batch
    labels = []
    for x, y in eval_batches(split, config.data.eval_batch_size):
        views = [v.contiguous(memory_format=memory_format) for v in views_of(x.to(device), config.data)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = [model.backbone(v) if model.tsvd_r else model(v)[0] for v in views]
        if not per_view:
            per_view = [[] for _ in outputs]
        for store, output in zip(per_view, outputs, strict=True):
            store.append(output.float())
        labels.append(y)
    model.train(was_training)
    if not labels:
        return 0.0
    targets = torch.cat(labels)
    if model.tsvd_r:
        groups = tsvd_batches(len(targets), config)
        logits = sum(
            torch.cat(
                [model.head(drop_smallest_components(torch.cat(f)[g.to(device)], model.tsvd_r)).float() for g in groups]
            )
            for f in per_view
        )
        targets = targets[torch.cat(groups)]
    else:
        logits = sum(torch.cat(view) for view in per_view)
    assert isinstance(logits, torch.Tensor)
    return int((logits.argmax(1).cpu() == targets).sum()) / max(1, len(split))


def tsvd_batches(n: int, config: TrainConfig) -> list[torch.Tensor]:
    """The index groups whose feature matrices TSVD truncates at evaluation: one group of all ``n``
    (``split``), or batches of ``data.batch_size`` of a permutation seeded by the run's seed
    (``batch``; the last holds the remainder)."""
    if config.model.tsvd_eval == "split":
        return [torch.arange(n)]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 7919 + 17))
    return list(order.split(config.data.batch_size))


@dataclass
class _Running:
    """One epoch's running sums, on the device: each term's loss, the total, correct predictions."""

    terms: dict[str, torch.Tensor]
    loss: torch.Tensor
    correct: torch.Tensor
    seen: int = 0
    features: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    @classmethod
    def zeros(cls, names: Sequence[str], device: torch.device) -> _Running:
        zero = torch.zeros((), dtype=torch.float64, device=device)
        return cls({name: zero.clone() for name in names}, zero.clone(), zero.clone())

    def add(
        self,
        values: dict[str, torch.Tensor],
        loss: torch.Tensor,
        logits: torch.Tensor,
        y: torch.Tensor,
        features: torch.Tensor,
    ) -> None:
        for name, value in values.items():
            self.terms[name] += value.detach()
        self.loss += loss.detach()
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)
        self.features = features


class Trainer:
    """One run's model, optimisation and data state, advanced an epoch at a time."""

    def __init__(self, config: TrainConfig, device: torch.device | None = None) -> None:
        seed_everything(config.seed)
        self.config = config
        self.device = device or resolve_device(config.device)
        self.splits = load_splits(config.data, config.seed)
        self.sizes = self.splits.sizes
        check_batch_fits(config.data, self.sizes)
        self.model = build_classifier(
            config.model, num_classes=len(self.splits.classes), image_size=config.data.image_size
        ).to(self.device)
        self.bf16 = use_bf16(config, self.device)
        self.memory_format = torch.channels_last if use_channels_last(config, self.device) else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        train = self.splits.train
        # regularisers may ask for the non-augmented, centre-cropped training images (DELTA's attention)
        context = BuildContext(
            self.model, config, lambda: center_view(train.all_images(), config.data)[0], train.labels, self.device
        )
        self.terms = build_regularizers(context).to(self.device)
        # the backbone's training pass as CUDA graphs: planned now (cuda_graph: on with something that
        # blocks it is refused here), captured on the first training batch (static shapes from then on)
        self.graph_plan = plan_graph(config.cuda_graph, self.device, self.terms.items())
        self.graph_pending, self.graphed = self.graph_plan.use, False
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.optim.lr_decay_epochs), gamma=config.optim.lr_decay_factor
        )
        self.task_views = task_views(config)  # a task sequence's pixel orders (none: ordinary fine-tuning)
        self.stream = BatchStream(len(train), config.data.batch_size, config.seed)
        self.prefetch = BatchPrefetcher(train, config.data.batch_size, self.device)
        self.augment = train_transform(config.data)
        self.aug_generator = torch.Generator().manual_seed(config.seed + 1)
        self.steps_per_epoch = config.optim.steps_per_epoch or self.stream.batches_per_pass()
        self.epoch = 0
        self.step = 0
        self.best_val, self.best_epoch = -1.0, 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.history: list[EpochMetrics] = []
        self.check_every = 1 if self.device.type == "cpu" else GPU_CHECK_EVERY  # steps between read-backs

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.total_epochs

    @property
    def task(self) -> int:
        """The task the current (or last) epoch trains on: 1.. (always 1 without a sequence)."""
        return min(self.config.tasks.count, max(0, self.epoch - 1) // self.config.optim.epochs + 1)

    def losses(
        self, x: torch.Tensor, y: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training batch's forward pass: (cross-entropy, each term's value, their sum, logits,
        features)."""
        with self._autocast():
            logits, features = self.model(x)
            ce = F.cross_entropy(logits.float(), y)
            state = StepState(model=self.model, images=x, features=features, logits=logits)
            try:
                values = {name: term(state).float() for name, term in self.terms.items()}
            except torch.linalg.LinAlgError as exc:  # a solver's check: the features are not finite
                if bool(torch.isfinite(features).all()):
                    raise
                self._diverged("non-finite features", f"step {step}", str(exc).splitlines()[0])
        loss = ce + sum(values.values(), torch.zeros((), device=self.device))
        return ce, values, loss, logits, features

    def update(self, loss: torch.Tensor) -> None:
        """Backward and one optimiser step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def _autocast(self) -> torch.autocast:
        # no autocast cache: a graph capture requires that, and each weight is cast once a step anyway
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False)

    def _capture(self, x: torch.Tensor) -> None:
        """Graph the backbone's training pass on the first batch; stay eager, saying why, if that fails."""
        self.graph_pending = False
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        why = capture_backbone(self.model.backbone, x, self._autocast, dtype)
        self.graphed = not why
        if why:
            announce_fallback(why)

    def _in_task(self, images: torch.Tensor, task: int) -> torch.Tensor:
        return self.task_views[task - 1](images) if self.task_views else images

    def train_epoch(self) -> EpochMetrics:
        started = time.perf_counter()
        self.epoch += 1
        self.model.train()
        running = self._train_steps()
        lr = self.optimizer.param_groups[1]["lr"]
        self.scheduler.step()
        val_acc, test_acc, task_accs = self._evaluate()
        if self.task_views and self.epoch % self.config.optim.epochs == 0 and not self.done:
            self._end_task()
        last = running.features.detach()
        k = min(NUM_REPORTED_SINGULAR_VALUES, min(last.shape) - 1)
        metrics = EpochMetrics(
            epoch=self.epoch,
            train_loss=float(running.loss) / self.steps_per_epoch,
            train_acc=int(running.correct) / max(1, running.seen),
            terms={name: float(value) / self.steps_per_epoch for name, value in running.terms.items()},
            val_acc=val_acc,
            best_val_acc=self.best_val if val_acc is not None else None,
            best_epoch=self.best_epoch,
            smallest_singular_values=smallest_singular_values(last, k).cpu().tolist(),
            lr=lr,
            seconds=time.perf_counter() - started,
            test_acc=test_acc,
            task=self.task if self.task_views else 0,
            task_accs=task_accs,
            task_learned_accs=self._learned_accs(task_accs),
            diagnostics={k: v for term in self.terms.values() for k, v in _diagnostics(term).items()},
        )
        self.history.append(metrics)
        return metrics

    def _train_steps(self) -> _Running:
        """One epoch's optimiser steps. Running sums stay on the device: reading a value back
        synchronises a GPU, so the finite-loss check (and any read) happens every ``check_every``
        steps, not every step; the next batch travels while a step's work runs."""
        config, device = self.config, self.device
        running = _Running.zeros(("ce", *self.terms), device)
        finite = torch.ones((), dtype=torch.bool, device=device)
        self.prefetch.request(self.stream.next())
        for step in range(1, self.steps_per_epoch + 1):
            images, y = self.prefetch.get()
            x = self.augment(self._in_task(images, self.task), config.data, self.aug_generator)
            x = x.contiguous(memory_format=self.memory_format)
            if self.graph_pending:
                self._capture(x)
            ce, values, loss, logits, features = self.losses(x, y, step)
            finite &= torch.isfinite(loss)
            if step % self.check_every == 0 or step == self.steps_per_epoch:
                self._check_finite(finite, step, ce, values)
            self.update(loss)
            if step < self.steps_per_epoch:
                self.prefetch.request(self.stream.next())
            self.step += 1
            running.add({"ce": ce, **values}, loss, logits, y, features)
        return running

    def _evaluate(self) -> tuple[float | None, float | None, list[float]]:
        """(val_acc, test_acc, task accuracies) after an epoch. ``best_val``: validation accuracy, the
        best epoch's weights kept, the test split evaluated once with them after the last epoch.
        ``last``: no validation; the test accuracy of the current weights after every epoch (a
        learning curve from the centre view, cheap; the last epoch with ``data.eval_transform``,
        which the run reports). In a task sequence: the test accuracy on each task seen so far, in
        its own pixel order; ``test_acc`` is their mean."""
        if self.splits.val is None:
            self.best_epoch = self.epoch
            if self.done:
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            views = eval_views(self.config.data) if self.done else center_view
            if not self.task_views:
                return None, accuracy(self.model, self.splits.test, self.config, self.device, views), []
            accs = [
                accuracy(self.model, self.splits.test, self.config, self.device, _viewed(views, self.task_views[t]))
                for t in range(self.task)
            ]
            return None, sum(accs) / len(accs), accs
        val_acc = accuracy(self.model, self.splits.val, self.config, self.device, center_view)
        if val_acc > self.best_val:
            self.best_val, self.best_epoch = val_acc, self.epoch
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return val_acc, self.test() if self.done else None, []

    def _end_task(self) -> None:
        """Tell the terms that the current task ended (EWC computes its Fisher at these weights)."""
        train, task = self.splits.train, self.task

        def take(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            images = self._in_task(train.take(positions).to(self.device), task)
            x = center_view(images, self.config.data)[0].contiguous(memory_format=self.memory_format)
            return x, train.labels[positions].to(self.device)

        ending = TaskEnd(self.model, task, len(train), take, curvature_limits(self.model, self.optimizer))
        for term in self.terms.values():
            assert isinstance(term, Regularizer)
            term.end_task(ending)

    def _learned_accs(self, task_accs: list[float]) -> list[float]:
        """Each seen task's test accuracy at the end of its own training (forgetting = that - now)."""
        if not self.task_views:
            return []
        per_task = self.config.optim.epochs
        ends = [m.task_accs[m.epoch // per_task - 1] for m in self.history if m.epoch % per_task == 0]
        if self.epoch % per_task == 0:
            ends.append(task_accs[self.task - 1])
        return ends

    def _check_finite(self, finite: torch.Tensor, step: int, ce: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        """Raise if a loss since the last check was not finite (one read-back per ``check_every`` steps)."""
        if bool(finite):
            return
        every = self.check_every
        where = f"step {step}" if every == 1 else f"one of steps {max(1, step - every + 1)}-{step}"
        terms_text = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in values.items())
        self._diverged("non-finite loss", where, f"ce={float(ce.detach()):.4g}, {terms_text}")

    def _diverged(self, what: str, where: str, detail: str) -> None:
        """Stop the run: ``what`` went non-finite; name the settings that control the step size."""
        knobs = ["optim.lr"] + [knob for term in self.terms if (knob := REGISTRY[term].knob)]
        raise NonFiniteLossError(f"{what} at epoch {self.epoch}, {where} ({detail}); lower {' or '.join(knobs)}")

    def test(self) -> float:
        """Test accuracy of the selected (best-validation) weights with ``data.eval_transform``."""
        self.model.load_state_dict(self.best_state)
        return accuracy(self.model, self.splits.test, self.config, self.device, eval_views(self.config.data))

    def result(self) -> FitResult:
        assert self.done and self.history[-1].test_acc is not None
        best_val = self.best_val if self.splits.val is not None else None
        return FitResult(best_val, self.best_epoch, self.history[-1].test_acc, list(self.history), self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "terms": self.terms.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "stream": self.stream.state_dict(),
            "aug_rng": self.aug_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": _numpy_state_to_tensors(np.random.get_state()),
            "python_rng": random.getstate(),
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "history": [m.as_dict() for m in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.model.load_state_dict(state["model"])
        self.terms.load_state_dict(state["terms"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stream.load_state_dict(state["stream"])
        self.aug_generator.set_state(state["aug_rng"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(_numpy_state_from_tensors(state["numpy_rng"]))
        random.setstate(state["python_rng"])
        self.best_val, self.best_epoch = float(state["best_val"]), int(state["best_epoch"])
        self.best_state = state["best_state"]
        self.history = [EpochMetrics.from_dict(m) for m in state["history"]]


def _diagnostics(term: torch.nn.Module) -> dict[str, float]:
    return term.diagnostics() if isinstance(term, Regularizer) else {}


def curvature_limits(model: Classifier, optimizer: torch.optim.SGD) -> dict[str, float]:
    """Per trainable weight, the largest curvature h on which the optimiser's steps at its current
    learning rate are stable: lr x h < 2 (1 + m) for heavy-ball momentum m, 2 (1 + m) / (1 + 2m)
    for Nesterov's (the stability limits of those iterations on a quadratic)."""
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    limits = {}
    for name, p in model.named_parameters():
        group = group_of.get(id(p))
        if group is None or group["lr"] <= 0:
            continue
        m = group["momentum"]
        stable = 2 * (1 + m) / (1 + 2 * m) if group["nesterov"] else 2 * (1 + m)
        limits[name] = stable / group["lr"]
    return limits


def _viewed(views: EvalViews, task_view: TaskView) -> EvalViews:
    return lambda images, data: views(task_view(images), data)


def _numpy_state_to_tensors(state: Any) -> tuple[Any, ...]:
    """NumPy's RNG state with its key array as a tensor, so ``torch.load(weights_only=True)`` reads it."""
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_tensors(state: tuple[Any, ...]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def fit(
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    device: torch.device | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Fine-tune per ``config`` (or continue from a ``Trainer.state_dict()``); select the epoch on
    validation accuracy; test the selected weights once at the end."""
    trainer = Trainer(config, device)
    if resume is not None:
        trainer.load_state_dict(resume)
    return train_to_end(trainer, callbacks)


def train_to_end(trainer: Trainer, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train ``trainer`` from where it stands to its last epoch, reporting each epoch."""
    while not trainer.done:
        metrics = trainer.train_epoch()
        for callback in callbacks:
            callback.on_epoch_end(metrics, trainer)
    result = trainer.result()
    for callback in callbacks:
        callback.on_fit_end(result)
    return result
