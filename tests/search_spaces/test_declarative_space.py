from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search_spaces.declarative import SpaceError, parse_space
from study.cli import main
from tests.study.test_spec_cli import write_spec

SPACE = {
    "optim.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1},
    "regularizer.name": {"type": "categorical", "choices": ["l2", "l2sp"]},
    "regularizer.beta": {"type": "loguniform", "low": 1e-4, "high": 1.0, "when": {"regularizer.name": "l2sp"}},
    "bss.enabled": {"type": "categorical", "choices": [True, False]},
    "bss.k": {"type": "int", "low": 1, "high": 4, "when": {"bss.enabled": True}},
    "bss.eta": {"type": "uniform", "low": 1e-4, "high": 1e-2, "when": {"bss.enabled": True}},
}


def test_conditional_parameters_only_when_their_condition_holds() -> None:
    space = parse_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        space.define(trial)
        p = trial.params
        assert ("bss.k" in p) == p["bss.enabled"] and ("bss.eta" in p) == p["bss.enabled"]
        assert ("regularizer.beta" in p) == (p["regularizer.name"] == "l2sp")
        assert 1e-3 <= p["optim.lr"] <= 1e-1
        seen.add((p["regularizer.name"], p["bss.enabled"]))
        study.tell(trial, 0.0)
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"optim.lr": {"type": "gaussian"}}, r"search_space\.optim\.lr\.type: expected one of"),
        ({"optim.lr": {"type": "uniform", "low": 1, "high": 1}}, r"low \(1\) must be below high"),
        ({"optim.lr": {"type": "loguniform", "low": 0, "high": 1}}, r"\.low: must be > 0"),
        ({"optim.lr": {"type": "uniform", "low": 0, "high": 1, "step": 2}}, r"unknown key 'step'"),
        ({"bss.k": {"type": "int", "low": 1, "high": 4, "when": {"bss.enabled": True}}}, r"when: unknown parameter"),
        ({"bss.enabled": {"type": "categorical", "choices": []}}, r"choices: expected a non-empty list"),
        ({}, r"declare at least one parameter"),
    ],
)
def test_malformed_declarations(declaration: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        parse_space(declaration)


def test_unknown_config_parameter_is_an_error_at_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, search_space={"optim.learning_rate": {"type": "uniform", "low": 0.001, "high": 0.1}})
    assert main(["launch", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: search_space:") and "optim.learning_rate: unknown key" in err
    assert not (tmp_path / "out").exists()


def test_methods_space_is_conditional() -> None:
    from search_spaces import get_space

    space = get_space("methods")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(60):
        trial = study.ask()
        space.define(trial)
        p = trial.params
        assert ("regularizer.beta" in p) == (p["regularizer.name"] in ("l2sp", "delta"))
        assert ("bss.k" in p) == ("bss.eta" in p) == p["bss.enabled"]
        assert {"optim.lr", "regularizer.alpha"} <= set(p) and "optim.weight_decay" not in p
        study.tell(trial, 0.0)
