"""Every method (L2, L2-SP, DELTA, each with and without BSS) runs from a config via `study train`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.cli import main
from tests.conftest import tiny_base


@pytest.mark.parametrize("bss", [False, True])
@pytest.mark.parametrize("method", ["l2", "l2sp", "delta"])
def test_study_train_runs_every_method(
    method: str, bss: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_base(
        regularizer={"name": method},
        bss={"enabled": bss, "k": 1},
        optim={"epochs": 1, "steps_per_epoch": 2},
        delta={"attention_epochs": 1, "attention_batches": 1, "attention_batch_size": 8, "cache_dir": str(tmp_path)},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(path), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{method}=" in out and ("bss=" in out) == bss
    assert "test_acc=" in out and (tmp_path / "out" / "best_model.pt").is_file()
