"""Every shipped study spec does what its own comments say: each claim of its header is checked here
against the configs its trials resolve to (every point of a grid; draws of a search). A new spec
under studies/ needs its claims here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from finetune.config import TrainConfig, resolve_config
from search_spaces.registry import sample_params
from study.spec import StudySpec, load_spec

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted((REPO / "studies").glob("*.yaml"))


def trial_configs(spec: StudySpec) -> list[TrainConfig]:
    """The resolved config of every trial of a grid (walked by its own sampler and define-by-run
    function, as a study walks it), or of 20 draws of a search."""
    if spec.space.grid_size is None:
        return [resolve_config(spec.base, sample_params(spec.space, seed)) for seed in range(20)]
    study = optuna.create_study(sampler=spec.space.sampler(0))
    configs: list[TrainConfig] = []

    def objective(trial: optuna.Trial) -> float:
        constants = spec.space.define(trial) or {}  # suggests the grid's values, then its constants
        configs.append(resolve_config(spec.base, {**trial.params, **constants}))  # as sample_params merges
        return 0.0

    study.optimize(objective, n_trials=spec.space.grid_size)
    return configs


def cub200_methods(spec: StudySpec, configs: list[TrainConfig]) -> None:
    # "tllib's protocol ... coefficients on tllib's scale": L2 weight decay 5e-4, L2-SP / DELTA 0.01, BSS 0.001 / 1
    assert spec.space.grid_size == 6 and len(configs) == 6
    methods = {(c.regularizer.name, c.bss.enabled) for c in configs}  # type: ignore[attr-defined]
    assert methods == {(name, bss) for name in ("l2", "l2sp", "delta") for bss in (False, True)}
    for c in configs:
        assert c.protocol == "tllib" and c.optim.nesterov and c.optim.momentum == 0.9 and c.optim.epochs == 20
        assert c.data.crop_scale_min == 0.2 and c.model.head_init == "default" and c.precision == "fp32"
        assert (c.data.dataset, c.data.sampling_rate, c.model.backbone) == ("cub200", 0.15, "resnet50")
        expected = {
            "l2": {"alpha": 5e-4},
            "l2sp": {"alpha": 0.01, "beta": 0.01},
            "delta": {"alpha": 0.01, "beta": 0.01},
        }
        for name, value in expected[c.regularizer.name].items():
            assert c.regularizer.coefficient(name) == pytest.approx(value), (c.regularizer.name, name)
        assert (c.bss.eta, c.bss.k) == (0.001, 1)  # type: ignore[attr-defined]
        # "the epoch of best accuracy on a validation split carved from the sampled subset (10% a class)"
        assert c.data.selection == "best_val" and c.data.val_fraction == 0.1
    assert spec.selection == "best_val" and spec.metric == "best_val_acc"


def demo(spec: StudySpec, configs: list[TrainConfig]) -> None:
    # "MobileNetV2 (ImageNet weights) ... 15% per-class sample ... 64 px"; "TPE over {l2, l2sp}, BSS on/off"; ASHA
    assert spec.space.grid is None and spec.scheduler.name == "asha"
    for c in configs:
        assert (c.model.backbone, c.model.weights) == ("mobilenet_v2", "IMAGENET1K_V1")
        assert (c.data.sampling_rate, c.data.image_size, c.data.dataset) == (0.15, 64, "embedded-fashion-mnist")
    assert {c.regularizer.name for c in configs} == {"l2", "l2sp"}
    assert {c.bss.enabled for c in configs} == {False, True}  # type: ignore[attr-defined]


def fig3d(epochs_fixed: bool) -> Callable[[StudySpec, list[TrainConfig]], None]:
    def check(spec: StudySpec, configs: list[TrainConfig]) -> None:
        # "L2 (k = 0: BSS off) and L2+BSS with k in {1, 2, 4, 8}, at 15/30/50/100% ..., 3 seeds: 60 settings"
        assert len(configs) == 60 and spec.selection == "last"
        ks = {c.bss.k if c.bss.enabled else 0 for c in configs}  # type: ignore[attr-defined]
        assert ks == {0, 1, 2, 4, 8} and {c.regularizer.name for c in configs} == {"l2"}
        assert {c.data.sampling_rate for c in configs} == {0.15, 0.3, 0.5, 1.0} and {c.seed for c in configs} == {
            0,
            1,
            2,
        }
        for c in configs:
            assert c.data.batch_size == 32 and c.data.selection == "last"
            if epochs_fixed:  # "the same 6 epochs over its own images"
                assert c.optim.epochs == 6 and c.optim.steps_per_epoch is None
            else:  # "the same 90 SGD steps of 32 images"
                assert c.optim.epochs * c.optim.steps_per_epoch == 90

    return check


def table3(etas: set[float], lams: set[float], seeds: int) -> Callable[[StudySpec, list[TrainConfig]], None]:
    def check(spec: StudySpec, configs: list[TrainConfig]) -> None:
        # "an MLP with two hidden layers of 400 ReLU units, trained from scratch with plain SGD; 20 epochs a task"
        assert len({c.seed for c in configs}) == seeds
        for c in configs:
            assert (c.model.backbone, c.model.mlp_hidden, c.model.weights) == ("mlp", (400, 400), None)
            assert c.optim.momentum == 0.0 and c.optim.epochs == 20 and c.tasks.count == 2
        found = {float(c.bss.eta) if c.bss.enabled else 0.0 for c in configs}  # type: ignore[attr-defined]
        assert found == etas and {float(c.ewc.lam) if c.ewc.enabled else 0.0 for c in configs} == lams  # type: ignore[attr-defined]
        assert {c.bss.k for c in configs if c.bss.enabled} == {1}  # type: ignore[attr-defined]

    return check


CLAIMS: dict[str, Callable[[StudySpec, list[TrainConfig]], None]] = {
    "cub200-methods.yaml": cub200_methods,
    "demo.yaml": demo,
    "fig3d-embedded.yaml": fig3d(epochs_fixed=False),
    "fig3d-embedded-epochs.yaml": fig3d(epochs_fixed=True),
    "table3-embedded.yaml": table3({0.0, 0.001}, {0.0, 10.0, 30.0, 100.0}, 5),
    "table3-eta-embedded.yaml": table3({0.0, 0.001, 0.01, 0.1}, {0.0, 30.0}, 5),
}


def test_every_shipped_spec_has_its_claims_checked() -> None:
    assert {p.name for p in STUDIES} == set(CLAIMS)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_a_shipped_spec_resolves_to_what_it_says(path: Path, tmp_path: Path) -> None:
    values = yaml.safe_load(path.read_text())
    if values["base"]["data"].get("dataset") == "cub200":  # a cluster's spec: its data folder, laid out here
        from tests.dataset_layouts import cub200

        values["base"]["data"]["root"] = str(cub200(tmp_path / "cub"))
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(values))
    spec = load_spec(copy, tmp_path, tmp_path / "out")
    CLAIMS[path.name](spec, trial_configs(spec))
