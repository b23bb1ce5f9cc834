"""The config of a trial is the one it saved when it started; only a trial that never started is
rebuilt from its parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune import config_from_dict, config_to_yaml
from study.record import row_config
from study.record.trial_config import trial_config
from study.spec import StudyError

BASE = {"optim": {"epochs": 3}, "model": {"backbone": "resnet18", "weights": None}}


def test_the_saved_config_is_what_the_trial_ran_with(tmp_path: Path) -> None:
    ran = config_from_dict({**BASE, "optim": {"epochs": 7}, "bss": {"enabled": True, "k": 3}})
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    (tmp_path / "trials" / "t1" / "config.yaml").write_text(config_to_yaml(ran))
    row = {"trial_id": "t1", "trial_dir": "trials/t1", "param.bss.enabled": True, "param.bss.k": 3}
    assert row_config(tmp_path, row, BASE) == ran  # not the base's 3 epochs: the file, as it ran
    assert trial_config(tmp_path / "trials" / "t1", {}, BASE) == ran


def test_a_trial_that_never_started_is_its_parameters_on_the_base(tmp_path: Path) -> None:
    row = {"trial_id": "t2", "trial_dir": "trials/t2", "param.bss.enabled": True, "param.bss.k": 2, "param.x": None}
    config = row_config(tmp_path, row, BASE)
    assert config == config_from_dict({**BASE, "bss": {"enabled": True, "k": 2}})
    assert row_config(tmp_path, {"trial_id": "t3", "trial_dir": None}, BASE) == config_from_dict(BASE)


def test_a_damaged_saved_config_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    (tmp_path / "trials" / "t1" / "config.yaml").write_text("optim: {epochs: zero}\n")
    with pytest.raises(
        StudyError, match=r"trials/t1/config\.yaml: the trial's saved config does not load \(.*optim\.epochs"
    ):
        row_config(tmp_path, {"trial_id": "t1", "trial_dir": "trials/t1"}, BASE)
