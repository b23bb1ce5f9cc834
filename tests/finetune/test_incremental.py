"""The incremental-learning setting (the paper's Section 5.3): task sequences of permuted images,
the pixel MLP, EWC's Fisher and penalty, per-task metrics, and EWC's effect on forgetting."""

from __future__ import annotations

import io
import statistics
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from finetune import ConfigError, EpochMetrics, FitResult, NonFiniteLossError, Trainer, config_from_dict
from finetune.backbones import PixelMLP
from finetune.engine import train_to_end
from finetune.model import Classifier
from finetune.regularizers import EWC, StepState, TaskEnd, diagonal_fisher
from finetune.tasks import pixel_order, task_views


def sequence_base(**overrides: Any) -> dict[str, Any]:
    """Two permuted tasks of the embedded pool, Kirkpatrick et al.'s MLP (smaller), plain SGD."""
    base: dict[str, Any] = {
        "data": {
            "dataset": "embedded-fashion-mnist",
            "sampling_rate": 1.0,
            "image_size": 28,
            "batch_size": 100,
            "eval_batch_size": 500,
            "train_transform": "none",
            "selection": "last",
        },
        "model": {"backbone": "mlp", "weights": None, "mlp_hidden": [100, 100]},
        "regularizer": {"name": "l2", "alpha": 0.0},
        "tasks": {"count": 2},
        "optim": {"lr": 0.1, "backbone_lr_ratio": 1.0, "momentum": 0.0, "epochs": 3},
        "num_threads": 1,
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def tiny_classifier(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(PixelMLP(4, (5,)), 5, 3)


def direct_fisher(model: Classifier, images: torch.Tensor, labels: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The definition, one image and one class at a time with plain autograd."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for x, y in zip(images, labels, strict=True):
        log_p = F.log_softmax(model(x[None])[0], dim=-1)[0]
        probs = log_p.detach().exp().tolist()
        classes = [(int(y), 1.0)] if kind == "empirical" else list(enumerate(probs))
        for c, weight in classes:
            grads = torch.autograd.grad(log_p[c], params, retain_graph=True)
            for t, g in zip(total, grads, strict=True):
                t += weight * g.pow(2)
    return [t / len(images) for t in total]


@pytest.mark.parametrize("kind", ["expected", "empirical"])
def test_the_fisher_matches_its_definition(kind: str) -> None:
    model = tiny_classifier()
    images, labels = torch.randn(7, 3, 4, 4), torch.randint(0, 3, (7,))
    fisher = diagonal_fisher(model, images, labels, kind, batch_size=3)  # batches of 3, 3, 1
    expected = direct_fisher(model, images, labels, kind)
    assert list(fisher) == [n for n, _ in model.named_parameters()]
    for (name, got), want in zip(fisher.items(), expected, strict=True):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-8), name
    # not the square of the batch gradient (a common shortcut that is not the Fisher)
    mean_log_p = F.log_softmax(model(images)[0], -1).gather(1, labels[:, None]).mean()
    batch = torch.autograd.grad(mean_log_p, [model.head.bias])
    assert not torch.allclose(fisher["head.bias"], batch[0].pow(2), rtol=1e-2)


def consolidate(term: EWC, model: Classifier, task: int, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    images, labels = torch.randn(6, 3, 4, 4, generator=generator), torch.randint(0, 3, (6,), generator=generator)
    term.end_task(TaskEnd(model, task, 6, lambda positions: (images[positions], labels[positions])))


def state_of(model: Classifier) -> StepState:
    images = torch.randn(2, 3, 4, 4)
    logits, features = model(images)
    return StepState(model, images, features, logits)


def test_the_ewc_penalty_is_zero_at_theta_star_and_the_quadratic_form_elsewhere() -> None:
    model = tiny_classifier()
    term = EWC(model, lam=3.0, samples=6, batch_size=4)
    assert term(state_of(model)).item() == 0.0 and term.tasks == 0  # nothing consolidated yet
    consolidate(term, model, task=1)
    value = term(state_of(model))
    value.backward()
    assert value.item() == 0.0  # exactly: theta = theta*
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())

    theta_a = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher_a = diagonal_fisher(model, *_task_data(seed=0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    consolidate(term, model, task=2, seed=1)  # a second task at the moved weights
    theta_b = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher_b = diagonal_fisher(model, *_task_data(seed=1))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    want = sum(
        1.5 * (fisher[n] * (p.detach() - theta[n]).pow(2)).sum()
        for fisher, theta in ((fisher_a, theta_a), (fisher_b, theta_b))
        for n, p in model.named_parameters()
    )
    assert term.tasks == 2
    assert term(state_of(model)).item() == pytest.approx(float(want), rel=1e-5)


def _task_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, 4, 4, generator=generator), torch.randint(0, 3, (6,), generator=generator)


def test_a_fresh_ewc_takes_the_consolidated_tasks_of_a_saved_one() -> None:
    model = tiny_classifier()
    term = EWC(model, lam=1.0)
    consolidate(term, model, task=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.2)
    buffer = io.BytesIO()
    torch.save(term.state_dict(), buffer)
    buffer.seek(0)
    fresh = EWC(model, lam=1.0)
    assert fresh.tasks == 0
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.tasks == 1
    state = state_of(model)
    assert fresh(state).item() == pytest.approx(term(state).item()) and term(state).item() > 0


def test_each_task_has_its_own_fixed_permutation_of_the_pixels() -> None:
    config = config_from_dict(sequence_base(tasks={"count": 3}))
    views = task_views(config)
    images = torch.arange(2 * 3 * 28 * 28).view(2, 3, 28, 28)
    orders = [pixel_order(28, config.seed, t) for t in (1, 2, 3)]
    assert all(sorted(o.tolist()) == list(range(28 * 28)) for o in orders)  # bijections
    assert len({tuple(o.tolist()) for o in orders}) == 3  # one per task
    assert torch.equal(pixel_order(28, config.seed, 2), orders[1])  # fixed
    assert not torch.equal(pixel_order(28, config.seed + 1, 2), orders[1])  # another per seed
    for view, order in zip(views, orders, strict=True):
        moved = view(images)
        assert torch.equal(moved.flatten(-2), images.flatten(-2)[..., order])  # every channel alike
    kept = task_views(config_from_dict(sequence_base(tasks={"count": 2, "permute_first": False})))
    assert torch.equal(kept[0](images), images) and not torch.equal(kept[1](images), images)
    assert task_views(config_from_dict(sequence_base(tasks={"count": 1}, ewc={}))) == []


class Record:
    def __init__(self) -> None:
        self.epochs: list[EpochMetrics] = []

    def on_epoch_end(self, metrics: EpochMetrics, trainer: object) -> None:
        self.epochs.append(metrics)

    def on_fit_end(self, result: FitResult) -> None:
        pass


def test_a_sequence_reports_every_seen_task_after_every_epoch() -> None:
    config = config_from_dict(sequence_base(optim={"epochs": 2, "steps_per_epoch": 3}, ewc={"enabled": True}))
    trainer = Trainer(config)
    record = Record()
    result = train_to_end(trainer, [record])
    assert [m.epoch for m in record.epochs] == [1, 2, 3, 4] and [m.task for m in record.epochs] == [1, 1, 2, 2]
    assert [len(m.task_accs) for m in record.epochs] == [1, 1, 2, 2]
    assert [m.task_learned_accs for m in record.epochs][1:] == [[record.epochs[1].task_accs[0]]] * 2 + [
        [record.epochs[1].task_accs[0], record.epochs[3].task_accs[1]]
    ]
    for m in record.epochs:
        assert m.test_acc == pytest.approx(statistics.fmean(m.task_accs))
    assert result.test_acc == record.epochs[-1].test_acc
    assert record.epochs[1].terms["ewc"] == 0.0 and record.epochs[2].terms["ewc"] > 0  # task A consolidated
    # from task A's end on, how close the penalty's curvature is to what SGD follows stably (lr 0.1)
    assert "ewc_curvature_ratio" not in record.epochs[0].flat()
    assert 0 < record.epochs[1].diagnostics["ewc_curvature_ratio"] == record.epochs[3].flat()["ewc_curvature_ratio"]
    flat = record.epochs[-1].flat()
    assert {"task", "task_acc_1", "task_acc_2", "task_learned_acc_1", "task_learned_acc_2"} <= set(flat)
    # task 1's accuracy is that of its own pixel order, computed here by hand
    model, test = trainer.model.eval(), trainer.splits.test
    x = task_views(config)[0](test.all_images())
    from finetune.transforms import center_view

    with torch.no_grad():
        predicted = model(center_view(x, config.data)[0])[0].argmax(1)
    assert record.epochs[-1].task_accs[0] == pytest.approx(float((predicted == test.labels).float().mean()))


def test_an_ordinary_run_reports_no_task_metrics() -> None:
    config = config_from_dict(sequence_base(tasks={"count": 1}, optim={"epochs": 1, "steps_per_epoch": 2}))
    record = Record()
    train_to_end(Trainer(config), [record])
    assert not any(k.startswith("task") for k in record.epochs[0].flat())


def test_a_sequence_resumed_after_task_a_matches_one_run_straight() -> None:
    """The Fisher and theta* of task A are part of the saved state (EWC's buffers)."""
    config = config_from_dict(
        sequence_base(optim={"epochs": 1, "steps_per_epoch": 4}, ewc={"enabled": True, "fisher_samples": 200})
    )
    straight = Trainer(config)
    while not straight.done:
        straight.train_epoch()
    first = Trainer(config)
    first.train_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Trainer(config)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.train_epoch()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert straight.history[-1].task_accs == resumed.history[-1].task_accs
    assert straight.history[-1].terms["ewc"] == resumed.history[-1].terms["ewc"] > 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tasks": {"count": 1}, "ewc": {"enabled": True}}, "ewc.enabled"),
        ({"data": {"selection": "best_val"}}, "data.selection"),
        ({"data": {"train_transform": "translate_flip"}}, "data.train_transform"),
        ({"data": {"resize_size": 32}}, "data.resize_size"),
        ({"optim": {"lr_decay_epochs": [1]}}, "optim.lr_decay_epochs"),
        ({"regularizer": {"name": "delta"}}, "regularizer.name"),
        ({"tasks": {"kind": "rotated"}}, "tasks.kind"),
        ({"ewc": {"fisher": "sampled"}}, "ewc.fisher"),
        ({"model": {"mlp_hidden": []}}, "model.mlp_hidden"),
    ],
)
def test_settings_a_sequence_cannot_use_are_refused_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        config_from_dict(sequence_base(**overrides))


def test_lambda_zero_is_ewc_off() -> None:
    config = config_from_dict(sequence_base(ewc={"enabled": True, "lam": 0}))
    assert not config.ewc.enabled


def test_ewc_reduces_forgetting_of_task_a_on_every_seed() -> None:
    """The effect EWC exists for: after task B, task A is remembered better than by plain
    fine-tuning, the same seeds and tasks otherwise; and task A was learned before B started."""
    forgotten: dict[bool, list[float]] = {False: [], True: []}
    for seed in (0, 1, 2):
        for ewc in (False, True):
            config = config_from_dict(
                sequence_base(
                    seed=seed,
                    model={"mlp_hidden": [100]},  # one narrow layer: the tasks compete for its units
                    optim={"epochs": 5},
                    ewc={"enabled": ewc, "lam": 10.0, "fisher": "empirical", "fisher_samples": 300},
                )
            )
            record = Record()
            train_to_end(Trainer(config), [record])
            learned, final = record.epochs[-1].task_learned_accs[0], record.epochs[-1].task_accs[0]
            assert learned > 0.6  # ten classes: task A was learned
            forgotten[ewc].append(learned - final)
    assert all(plain > 0.03 for plain in forgotten[False]), forgotten  # plain fine-tuning forgets
    assert all(e < p for e, p in zip(forgotten[True], forgotten[False], strict=True)), forgotten
    assert statistics.fmean(forgotten[False]) - statistics.fmean(forgotten[True]) > 0.03, forgotten


def test_a_diverging_ewc_names_its_lambda() -> None:
    ewc = {"enabled": True, "lam": 1e4}
    config = config_from_dict(sequence_base(model={"mlp_hidden": [100]}, optim={"epochs": 5}, ewc=ewc))
    with pytest.raises(NonFiniteLossError, match=r"lower optim\.lr or ewc\.lam$"):
        train_to_end(Trainer(config))


def test_the_configs_task_kinds_are_the_registered_ones() -> None:
    from finetune.tasks import TASK_KINDS

    for kind in TASK_KINDS:  # the config checks tasks.kind against the registry itself, one list
        assert config_from_dict(sequence_base(tasks={"count": 2, "kind": kind})).tasks.kind == kind
    with pytest.raises(ConfigError, match=r"^tasks\.kind: unknown task kind 'rotated'; choose one of permuted"):
        config_from_dict(sequence_base(tasks={"count": 2, "kind": "rotated"}))


def test_features_gone_non_finite_stop_bss_with_the_reason_not_a_solver_error() -> None:
    """Diverged weights make the features NaN before the loss is checked; BSS's solver then fails
    its own check. The run stops as any divergence does, naming what to lower."""
    config = config_from_dict(sequence_base(tasks={"count": 1}, bss={"enabled": True}, ewc={}))
    trainer = Trainer(config)
    with torch.no_grad():
        trainer.model.backbone.layers[0].weight.fill_(float("nan"))
    with pytest.raises(
        NonFiniteLossError, match=r"^non-finite features at epoch 1, step 1 \(.*\); lower optim\.lr or bss\.eta$"
    ):
        trainer.train_epoch()


def test_the_feature_spectrum_of_a_sequence_run_is_of_its_last_tasks_images(tmp_path: Any) -> None:
    from finetune.analysis import FinishedRun, feature_spectrum
    from finetune.transforms import center_view

    config = config_from_dict(sequence_base(optim={"epochs": 1, "steps_per_epoch": 2}))
    trainer = Trainer(config)
    train_to_end(trainer)
    model = trainer.model.eval()
    spectra = feature_spectrum(FinishedRun(tmp_path, config, model), batches=1, seed=3)
    images = center_view(task_views(config)[1](trainer.splits.train.all_images()), config.data)[0]
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))[: config.data.batch_size]
    with torch.no_grad():
        want = torch.linalg.svdvals(model(images[order])[1].double()).numpy()
    assert spectra.shape == (1, len(want)) and abs(spectra[0] - want).max() < 1e-9


def test_the_optimisers_stable_curvature_per_weight() -> None:
    from finetune.engine import curvature_limits, make_optimizer

    model = tiny_classifier()
    for nesterov, stable in ((False, 2 * 1.9), (True, 2 * 1.9 / 2.8)):
        config = config_from_dict(
            sequence_base(optim={"lr": 0.1, "backbone_lr_ratio": 0.5, "momentum": 0.9, "nesterov": nesterov})
        )
        limits = curvature_limits(model, make_optimizer(model, config))
        assert limits["head.weight"] == pytest.approx(stable / 0.1)
        assert limits["backbone.layers.0.weight"] == pytest.approx(stable / 0.05)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_the_ewc_curvature_ratio_says_when_sgd_on_the_penalty_grows(momentum: float) -> None:
    """Above 1, SGD steps on the penalty alone overshoot theta* and grow; below, they shrink back:
    the ratio a run reports (``ewc_curvature_ratio``) and warns about."""
    import contextlib
    import warnings

    from finetune.engine import curvature_limits

    growth: dict[float, float] = {}
    for target in (0.8, 1.2):
        model = tiny_classifier()
        images, labels = _task_data(seed=0)
        worst = max(float(f.max()) for f in diagonal_fisher(model, images, labels).values())
        optimizer = torch.optim.SGD(model.parameters(), lr=target * 2 * (1 + momentum) / worst, momentum=momentum)
        term = EWC(model, lam=1.0, samples=6)
        assert term.diagnostics() == {}  # nothing consolidated yet
        with contextlib.ExitStack() as stack:
            if target > 1:
                stack.enter_context(pytest.warns(UserWarning, match=r"^ewc\.lam: 1 x F reaches 1\.2 x "))
            else:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("error")
            limits = curvature_limits(model, optimizer)
            term.end_task(TaskEnd(model, 1, 6, lambda p, x=images, y=labels: (x[p], y[p]), limits))
        assert term.diagnostics()["ewc_curvature_ratio"] == pytest.approx(target, rel=1e-4)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3)
        before = term(state_of(model)).item()
        for _ in range(40):
            optimizer.zero_grad()
            term(state_of(model)).backward()
            optimizer.step()
        growth[target] = term(state_of(model)).item() / before
    assert growth[0.8] < 1 < growth[1.2], growth
