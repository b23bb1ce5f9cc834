from __future__ import annotations

import pytest

from finetune import ConfigError, TrainConfig, config_from_dict, config_from_yaml, config_to_yaml, resolve_config
from finetune.config import flatten, unflatten


def test_yaml_round_trip() -> None:
    config = config_from_dict(
        {
            "bss": {"enabled": True, "k": 3, "eta": 0.01},
            "optim": {"epochs": 8, "lr_decay_epochs": [3, 6]},
            "regularizer": {"name": "l2sp"},
        }
    )
    text = config_to_yaml(config)
    again = config_from_yaml(text)
    assert again == config
    assert config_to_yaml(again) == text
    assert isinstance(again.optim.lr_decay_epochs, tuple)


def test_defaults_and_frozen() -> None:
    config = config_from_dict({})
    assert config == TrainConfig()
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]


def test_resolve_flat_tune_params() -> None:
    config = resolve_config({"optim": {"epochs": 4}}, {"bss.enabled": True, "bss.k": 2, "optim.lr": 0.05})
    assert config.bss.k == 2 and config.bss.enabled and config.optim.lr == 0.05 and config.optim.epochs == 4


def test_flatten_unflatten_inverse() -> None:
    nested = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert unflatten(flatten(nested)) == nested


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"bss": {"kk": 1}}, "bss.kk"),
        ({"bogus": 1}, "bogus"),
        ({"bss": {"eta": -1.0}}, "bss.eta"),
        ({"bss": {"k": "two"}}, "bss.k"),
        ({"bss": {"enabled": True, "k": 32}, "data": {"batch_size": 32}}, "bss.k"),
        ({"data": {"sampling_rate": 1.5}}, "data.sampling_rate"),
        ({"data": {"sampling_rate": 0}}, "data.sampling_rate"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"optim": {"epochs": 2.5}}, "optim.epochs"),
        ({"bss": {"enabled": "yes"}}, "bss.enabled"),
        ({"data": 3}, "data"),
    ],
)
def test_bad_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(values)
    assert str(info.value).startswith(f"{field}:")


def test_yaml_errors() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_from_yaml("bss: [unclosed", "x.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_yaml("- 1\n- 2\n", "x.yaml")


@pytest.mark.parametrize("name", ["paper", "official-code", "tllib"])
def test_protocols_fill_in_and_yield_to_overrides(name: str) -> None:
    from finetune.protocols import PROTOCOLS

    config = config_from_dict({"protocol": name, "optim": {"lr": 0.001}})
    preset = PROTOCOLS[name].values
    assert config.protocol == name
    assert config.optim.lr == 0.001  # overridden
    assert config.optim.momentum == preset["optim"]["momentum"]
    assert config.data.batch_size == 48 and config.data.image_size == 224
    assert config_from_yaml(config_to_yaml(config)) == config  # the resolved protocol is recorded


def test_protocol_specifics() -> None:
    assert config_from_dict({"protocol": "paper"}).optim.momentum == 0.95
    official = config_from_dict({"protocol": "official-code"})
    assert official.optim.weight_decay == 0 and official.regularizer.alpha == 5e-4  # one mechanism, its scale
    assert official.data.eval_transform == "ten_crop"
    assert official.optim.epochs * official.optim.steps_per_epoch == 9000
    tllib = config_from_dict({"protocol": "tllib"})
    assert tllib.optim.nesterov and tllib.data.crop_scale_min == 0.2 and tllib.optim.epochs == 20
    with pytest.raises(ConfigError, match=r"^protocol: unknown"):
        config_from_dict({"protocol": "imagenet"})


def test_settings_that_do_not_act_are_not_recorded() -> None:
    from finetune.config import applicable_params

    off = applicable_params(config_from_dict({"bss": {"enabled": False, "k": 3}, "regularizer": {"name": "l2"}}))
    assert off["bss.enabled"] is False and not any(k.startswith(("bss.k", "bss.eta", "delta.")) for k in off)
    assert "regularizer.beta" not in off and "regularizer.alpha" in off
    on = applicable_params(config_from_dict({"bss": {"enabled": True, "k": 3}, "regularizer": {"name": "delta"}}))
    assert on["bss.k"] == 3 and "bss.eta" in on and "delta.attention" in on and "regularizer.beta" in on


def test_coefficients_default_to_each_references_scale() -> None:
    assert config_from_dict({"regularizer": {"name": "l2"}}).regularizer.alpha == 5e-4  # official BSS code
    for name in ("l2sp", "delta"):
        r = config_from_dict({"regularizer": {"name": name}}).regularizer
        assert (r.alpha, r.beta) == (0.01, 0.01)  # tllib
    assert config_from_dict({"regularizer": {"name": "l2", "alpha": 0.02}}).regularizer.alpha == 0.02
    tllib = config_from_dict({"protocol": "tllib", "regularizer": {"name": "delta"}})
    assert tllib.delta.batch_reduction == "sum" and tllib.regularizer.beta == 0.01
    with pytest.raises(ConfigError, match=r"^optim\.weight_decay: must be 0, got 0\.0005: the regulariser applies"):
        config_from_dict({"optim": {"weight_decay": 5e-4}})


def test_the_l2_term_is_on_the_official_codes_scale() -> None:
    """(alpha/2)||w||^2 with alpha = 5e-4: the penalty the official code's SGD weight decay applies."""
    import torch

    from finetune.regularizers import L2
    from finetune.regularizers.base import StepState

    model = torch.nn.Linear(10, 10)
    expected = 0.5 * 5e-4 * sum(float(p.detach().pow(2).sum()) for p in model.parameters())
    zero = torch.zeros(1)
    state = StepState(model=model, images=zero, features=zero, logits=zero)  # type: ignore[arg-type]
    assert float(L2()(state)) == pytest.approx(expected)


@pytest.mark.parametrize("zero", [{"bss.k": 0}, {"bss.eta": 0.0}, {"bss.eta": 0}])
def test_k_or_eta_zero_is_bss_off(zero: dict) -> None:
    """A grid over k or eta holds its own baseline: nothing shrunk is BSS off, whatever else is set."""
    config = resolve_config({}, {"bss.enabled": True, "bss.k": 2, "bss.eta": 0.01, **zero})
    assert not config.bss.enabled
    from finetune.config import applicable_params

    assert not any(k.startswith(("bss.k", "bss.eta")) for k in applicable_params(config))
