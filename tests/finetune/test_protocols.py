"""Each named protocol sets what its reference does, beyond the penalty coefficients
(test_protocol_coefficients.py): the head's initialisation, which epoch is reported, the precision,
and a description that names every choice the reference leaves open or the preset does differently."""

from __future__ import annotations

import math

import pytest
import torch

from finetune import config_from_dict
from finetune.backbones import build_classifier
from finetune.protocols import PROTOCOLS
from study.record import TrialRow, trials_table

REPRODUCTIONS = ("paper", "official-code", "tllib")


def head(protocol: str) -> torch.nn.Linear:
    config = config_from_dict({"protocol": protocol, "model": {"backbone": "resnet18", "weights": None}})
    torch.manual_seed(0)
    return build_classifier(config.model, num_classes=200).head


def test_tllibs_head_starts_from_nn_linears_default_and_the_official_codes_from_n_0_001() -> None:
    tllib = head("tllib")
    bound = 1 / math.sqrt(tllib.in_features)  # nn.Linear: Kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
    tllib = tllib.requires_grad_(False)
    assert float(tllib.weight.abs().max()) <= bound
    assert float(tllib.weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert float(tllib.bias.abs().max()) <= bound and float(tllib.bias.abs().max()) > 0
    for protocol in ("paper", "official-code", "custom"):
        official = head(protocol)
        assert float(official.weight.std()) == pytest.approx(0.01, rel=0.03)
        assert float(official.bias.abs().max()) == 0.0
    assert config_from_dict({"protocol": "tllib"}).model.head_init == "default"


def test_a_protocol_that_names_a_reference_sets_its_selection() -> None:
    # the paper and its code train on the whole sampled subset and report the last iteration
    assert config_from_dict({"protocol": "paper"}).data.selection == "last"
    assert config_from_dict({"protocol": "official-code"}).data.selection == "last"
    # tllib selects an epoch (on test; the preset on a carved validation split instead, and says so)
    assert config_from_dict({"protocol": "tllib"}).data.selection == "best_val"
    assert "selection on a validation split (tllib picks the best epoch on test)" in PROTOCOLS["tllib"].description
    assert config_from_dict({"protocol": "paper", "data": {"selection": "best_val"}}).data.selection == "best_val"


def test_reproduction_protocols_train_in_fp32_unless_asked_and_the_table_says_which_ran() -> None:
    for protocol in REPRODUCTIONS:
        assert config_from_dict({"protocol": protocol}).precision == "fp32", protocol
        assert config_from_dict({"protocol": protocol, "precision": "bf16"}).precision == "bf16"
    assert config_from_dict({}).precision == "auto"  # the project's own default: bf16 on a GPU
    rows = [TrialRow("a", "finished", {}, {"bf16": 1.0}), TrialRow("b", "finished", {}, {"bf16": 0.0})]
    assert trials_table(rows).column("precision").to_pylist() == ["bf16", "fp32"]


def test_each_description_names_the_choices_its_reference_leaves_open_or_the_preset_makes_differently() -> None:
    paper = PROTOCOLS["paper"].description
    for choice in ("18 x 500 iterations, lr x0.1 at epoch 12 = iteration 6,000", "official code",
                   "head lr 0.01 for every dataset (the paper: 0.01 or 0.001 per task)", "centre-crop evaluation",
                   "256 x 256 squares (aspect ratio not kept)", "fp32"):  # fmt: skip
        assert choice in paper, choice
    tllib = PROTOCOLS["tllib"].description
    assert "256 x 256 squares (aspect ratio not kept) where tllib crops the original image" in tllib
    assert "head nn.Linear's default init" in tllib and "fp32" in tllib
    official = PROTOCOLS["official-code"].description
    assert "reports the last iteration" in official and "head N(0, 0.01)" in official and "fp32" in official
    # what `study list` prints is the description itself
    from finetune.catalog import CATALOG

    listed = dict(next(entries for field, _, entries in CATALOG if field == "protocol"))
    assert listed["tllib"] == tllib and listed["paper"] == paper


def test_a_run_names_what_its_numbers_depend_on_beyond_its_config() -> None:
    from finetune.engine import engine_text
    from study.record.run_writer import result_event

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        text = engine_text(torch.device("cpu"))
        assert text.startswith(f"torch {torch.__version__}, 1 threads, cpu ")
    finally:
        torch.set_num_threads(before)
    event = result_event("t", {"epoch": 1, "test_acc": 0.5, "engine": text})
    assert event["engine"] == text and "engine" not in event["metrics"]
    rows = [TrialRow("a", "finished", {}, {"engine": text})]
    assert trials_table(rows).column("engine").to_pylist() == [text]
