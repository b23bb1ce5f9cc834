"""The training engine: ``fit(config, callbacks)``. Pure PyTorch; never imports ray or mlflow."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from finetune.backbones import build_classifier
from finetune.callbacks import Callback, EpochMetrics, FitResult
from finetune.config import TrainConfig
from finetune.data import eval_batches, load_splits, to_model_input, train_batches
from finetune.errors import DataError, NonFiniteLossError
from finetune.model import Classifier
from finetune.regularizers import StepState, build_regularizers, smallest_singular_values

NUM_REPORTED_SINGULAR_VALUES = 4


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a generator for the data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(model: Classifier, config: TrainConfig) -> torch.optim.SGD:
    """The new head at ``lr``, the pretrained backbone at ``lr * backbone_lr_ratio``."""
    o = config.optim
    groups = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": o.lr * o.backbone_lr_ratio},
        {"params": list(model.head.parameters()), "lr": o.lr},
    ]
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)


@torch.no_grad()
def accuracy(
    model: Classifier, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for x, y in eval_batches(inputs, labels, batch_size):
        logits, _ = model(x.to(device))
        correct += int((logits.argmax(1).cpu() == y).sum())
    model.train(was_training)
    return correct / max(1, len(labels))


def fit(config: TrainConfig, callbacks: Sequence[Callback] = (), device: torch.device | None = None) -> FitResult:
    """Fine-tune per ``config``; select the epoch on validation accuracy; test it once at the end."""
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    generator = seed_everything(config.seed)
    device = device or resolve_device(config.device)
    splits = load_splits(config.data, config.seed)
    size = config.data.image_size
    train_x, train_y = to_model_input(splits.train.images, size), torch.from_numpy(splits.train.labels)
    val_x, val_y = to_model_input(splits.val.images, size), torch.from_numpy(splits.val.labels)

    model = build_classifier(config.model, num_classes=len(splits.classes)).to(device)
    terms = build_regularizers(model, config).to(device)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.optim.lr_decay_epochs), gamma=config.optim.lr_decay_factor
    )

    best_val, best_epoch, best_state = -1.0, 0, {}
    history: list[EpochMetrics] = []
    for epoch in range(1, config.optim.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums: dict[str, float] = {"ce": 0.0, **{name: 0.0 for name in terms}}
        total_loss, correct, seen, steps = 0.0, 0, 0, 0
        last_features = torch.empty(0)
        for x, y in train_batches(train_x, train_y, config.data.batch_size, generator):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits, features = model(x)
            ce = F.cross_entropy(logits, y)
            state = StepState(model=model, images=x, features=features, logits=logits)
            values = {name: term(state) for name, term in terms.items()}
            loss = ce + sum(values.values(), torch.zeros((), device=device))
            if not torch.isfinite(loss):
                terms_text = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in values.items())
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch}, step {steps + 1} (ce={float(ce.detach()):.4g}, {terms_text}); "
                    "lower optim.lr or bss.eta"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            sums["ce"] += float(ce.detach())
            for name, value in values.items():
                sums[name] += float(value.detach())
            total_loss += float(loss.detach())
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            last_features = features.detach()
            if config.optim.steps_per_epoch is not None and steps >= config.optim.steps_per_epoch:
                break
        if steps == 0:
            raise DataError(
                f"data.batch_size: {config.data.batch_size} exceeds the {len(train_y)} sampled training images; "
                "lower data.batch_size or raise data.sampling_rate"
            )
        lr = optimizer.param_groups[1]["lr"]
        scheduler.step()
        val_acc = accuracy(model, val_x, val_y, config.data.eval_batch_size, device)
        if val_acc > best_val:
            best_val, best_epoch = val_acc, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        k = min(NUM_REPORTED_SINGULAR_VALUES, min(last_features.shape) - 1)
        sv = smallest_singular_values(last_features, k).cpu().tolist()
        test_acc = None
        if epoch == config.optim.epochs:
            model.load_state_dict(best_state)
            test_x, test_y = to_model_input(splits.test.images, size), torch.from_numpy(splits.test.labels)
            test_acc = accuracy(model, test_x, test_y, config.data.eval_batch_size, device)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=total_loss / steps,
            train_acc=correct / max(1, seen),
            terms={name: value / steps for name, value in sums.items()},
            val_acc=val_acc,
            best_val_acc=best_val,
            best_epoch=best_epoch,
            smallest_singular_values=sv,
            lr=lr,
            seconds=time.perf_counter() - started,
            test_acc=test_acc,
        )
        history.append(metrics)
        for callback in callbacks:
            callback.on_epoch_end(metrics)

    assert history[-1].test_acc is not None and not math.isnan(history[-1].test_acc)
    result = FitResult(best_val, best_epoch, history[-1].test_acc, history, copy.copy(best_state))
    for callback in callbacks:
        callback.on_fit_end(result)
    return result
