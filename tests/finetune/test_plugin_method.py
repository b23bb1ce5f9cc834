"""A penalty term from outside the project, defined in this file only.

It is registered as a plug-in (``plugins: [tests.finetune.test_plugin_method:register]`` in the
config), then validated in a spec, trained in a tiny study through the real driver (Ray, Optuna,
MLflow) and reported, with no project file naming it: the registry entry declares all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from finetune import TrainConfig, config_from_dict, config_from_yaml, config_to_yaml
from finetune.config import Section, applicable_params
from finetune.config.schema import check
from finetune.errors import ConfigError
from finetune.plugins import forget, load_plugins
from finetune.regularizers import REGISTRY, BuildContext, Regularizer, StepState, active_terms, build_regularizers
from finetune.regularizers.base import check_regularizer_name
from finetune.regularizers.base import register as register_term
from finetune.regularizers.l2 import squared_norm
from tests.conftest import small_study, tiny_base

PLUGIN = "tests.finetune.test_plugin_method:register"


@dataclass(frozen=True)
class ToyConfig(Section):
    """The toy term's own settings: ``strength`` (unitless, >= 0) scales its penalty."""

    strength: float = 1.0

    def __post_init__(self) -> None:
        check(self.strength >= 0, "toy.strength", f"must be >= 0, got {self.strength}")


class HeadDecay(Regularizer):
    r"""Weight decay on the new head only: :math:`\frac{\alpha s}{2} \lVert w_{head} \rVert^2`."""

    def __init__(self, alpha: float, strength: float) -> None:
        super().__init__()
        self.alpha, self.strength = alpha, strength

    def forward(self, state: StepState) -> torch.Tensor:
        head = [p for p in state.model.head.parameters() if p.requires_grad]
        return 0.5 * self.alpha * self.strength * squared_norm(head)


def _check_with(config: TrainConfig) -> None:
    product = config.regularizer.coefficient("alpha") * ToyConfig.of(config).strength
    check(product < 1, "toy.strength", f"x regularizer.alpha must be < 1, got {product:g}; lower either")


def _build(context: BuildContext) -> HeadDecay:
    return HeadDecay(context.config.regularizer.coefficient("alpha"), ToyConfig.of(context.config).strength)


def register() -> None:
    """What the plug-in entry calls: one registration declares the whole term."""
    register_term(
        "toy",
        "toy: (alpha strength / 2)||w_head||^2",
        term=HeadDecay,
        base=True,
        title="Toy",
        section=ToyConfig,
        coefficients=("alpha",),
        reference={"alpha": 0.02},
        check=_check_with,
    )(_build)


@pytest.fixture
def toy() -> Iterator[None]:
    load_plugins([PLUGIN])
    yield
    REGISTRY.remove("toy")
    forget(PLUGIN)


def toy_config(**toy_values: object) -> dict:
    return {"plugins": [PLUGIN], "regularizer": {"name": "toy"}, "toy": dict(toy_values)}


def test_unknown_until_its_plugin_is_loaded() -> None:
    with pytest.raises(ConfigError, match=r"^toy: unknown key; known keys here are bss, "):
        config_from_dict({"toy": {"strength": 2.0}})
    with pytest.raises(ConfigError, match=r"^regularizer\.name: unknown regulariser 'toy'; choose one of delta, l2"):
        check_regularizer_name("toy")
    with pytest.raises(ConfigError, match=r"^plugins: cannot import 'tests\.no_such_plugin' .*fix the name$"):
        config_from_dict({"plugins": ["tests.no_such_plugin"]})
    with pytest.raises(ConfigError, match=r"^plugins: 'tests\.conftest' has no function 'nothing'"):
        config_from_dict({"plugins": ["tests.conftest:nothing"]})


def test_the_entry_declares_section_coefficients_reference_and_checks() -> None:
    config = config_from_dict(toy_config(strength=2.0))  # the config loads its own plug-in
    try:
        assert ToyConfig.of(config).strength == 2.0 and config.toy.strength == 2.0
        assert config.regularizer.alpha == 0.02 and active_terms(config) == ["toy"]  # its reference's alpha
        params = applicable_params(config)
        assert params["toy.strength"] == 2.0 and params["plugins"] == [PLUGIN]
        assert "regularizer.alpha" in params and "regularizer.beta" not in params  # it reads alpha only
        assert not any(k.startswith("toy.") for k in applicable_params(config_from_dict({"plugins": [PLUGIN]})))
        assert config_from_yaml(config_to_yaml(config)) == config
        with pytest.raises(ConfigError, match=r"^toy\.strength: must be >= 0, got -1\.0$"):
            config_from_dict(toy_config(strength=-1.0))
        with pytest.raises(ConfigError, match=r"^toy\.strength: x regularizer\.alpha must be < 1, got 2; lower"):
            config_from_dict({**toy_config(strength=4.0), "regularizer": {"name": "toy", "alpha": 0.5}})
        with pytest.raises(ConfigError, match=r"^toy\.power: unknown key; known keys here are strength$"):
            config_from_dict(toy_config(power=2))
    finally:
        REGISTRY.remove("toy")
        forget(PLUGIN)


def test_the_registered_term_is_built_and_is_its_formula(toy: None) -> None:
    from finetune.backbones import build_classifier
    from finetune.config import ModelConfig

    torch.manual_seed(0)
    model = build_classifier(ModelConfig("resnet18", None), num_classes=5)
    config = config_from_dict(toy_config(strength=3.0))
    terms = build_regularizers(BuildContext(model, config, lambda: torch.empty(0), torch.zeros(4)))
    images = torch.randn(4, 3, 32, 32)
    logits, features = model(images)
    value = terms["toy"](StepState(model=model, images=images, features=features, logits=logits))
    expected = 0.5 * 0.02 * 3.0 * sum(float(p.detach().pow(2).sum()) for p in model.head.parameters())
    assert float(value.detach()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_a_study_validates_trains_and_reports_a_plugin_term(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    from study.cli import main

    out = tmp_path / "study"
    base = tiny_base(**toy_config())
    space = {"toy.strength": {"type": "uniform", "low": 0.5, "high": 2.0}}
    spec = small_study(out, "toy", space, base, resources={"cpu": 0.5})
    bad = tmp_path / "bad.yaml"
    negative = {"toy.strength": {"type": "uniform", "low": -2, "high": -1}}
    bad.write_text(yaml.safe_dump({**spec, "search_space": negative}))
    try:
        assert main(["launch", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "toy.strength: must be >= 0" in err[0] and not out.exists()

        path = tmp_path / "toy.yaml"
        path.write_text(yaml.safe_dump(spec))
        assert main(["launch", str(path)]) == 0
        table = pq.read_table(out / "trials.parquet").to_pylist()
        assert [row["status"] for row in table] == ["finished", "finished"]
        for row in table:  # what each trial cost: half a CPU held for its wall time
            assert row["wall_s"] > 0 and row["device_gpu"] == 0.0
            assert row["device_s"] == pytest.approx(0.5 * row["wall_s"])
        client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
        (experiment,) = [e for e in client.search_experiments() if e.name == "toy"]
        children = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == 2
        for child in children:
            assert child.data.params["regularizer.name"] == "toy" and "regularizer.beta" not in child.data.params
            assert 0.5 <= float(child.data.params["toy.strength"]) <= 2.0
            assert "loss_toy" in child.data.metrics
        assert main(["report", str(out)]) == 0
        report = (out / "report" / "report.md").read_text()
        assert "2 of 2 trials ran to the end" in report
        best = yaml.safe_load((out / "best.yaml").read_text())
        assert best["regularizer"]["name"] == "toy" and best["plugins"] == [PLUGIN]
    finally:
        REGISTRY.remove("toy")
        forget(PLUGIN)
