"""The paper's analyses from a finished run: data checked against definitions, files written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from finetune.analysis import layer_angles
from study.cli import main
from tests.conftest import tiny_base


def test_angles_are_one_for_identical_and_below_for_rotated_weights() -> None:
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    cos, sigma = layer_angles(w, w)
    assert np.allclose(cos, 1.0) and np.all(np.diff(sigma) <= 1e-12)
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    cos_rotated, _ = layer_angles((q @ w.reshape(8, -1)).reshape(w.shape), w)
    assert cos_rotated.mean() < 0.9


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    runs = {}
    root = tmp_path_factory.mktemp("runs")
    for label, bss in (("l2", False), ("l2+bss", True)):
        config = tiny_base(bss={"enabled": bss, "k": 2, "eta": 0.1}, optim={"epochs": 1, "steps_per_epoch": 3})
        path = root / f"{label}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert main(["train", "--config", str(path), "--output", str(root / label)]) == 0
        runs[label] = root / label
    return runs


def test_spectra_from_finished_runs(finished_runs: dict[str, Path], tmp_path: Path) -> None:
    args = ["analyze", "spectra", "--out", str(tmp_path), "--batches", "3"]
    for label, folder in finished_runs.items():
        args += ["--run", str(folder), "--label", label]
    assert main(args) == 0
    table = pq.read_table(tmp_path / "spectra.parquet").to_pydict()
    assert set(table["run"]) == {"l2", "l2+bss"}
    assert table["index"].count(1) == 2 and max(table["index"]) == 8  # batch 8 < 1280 features
    for label in ("l2", "l2+bss"):
        values = [v for r, v in zip(table["run"], table["sigma_mean"], strict=True) if r == label]
        assert values == sorted(values, reverse=True) and values[-1] >= 0
    assert (tmp_path / "spectra.png").stat().st_size > 1000


def test_angles_from_a_finished_run(finished_runs: dict[str, Path], tmp_path: Path) -> None:
    assert main(["analyze", "angles", "--run", str(finished_runs["l2"]), "--out", str(tmp_path)]) == 0
    table = pq.read_table(tmp_path / "angles.parquet").to_pydict()
    assert set(table["layer"]) == {"0.3.conv.2", "0.6.conv.2", "0.13.conv.2", "0.17.conv.2"}
    assert all(0.0 <= c <= 1.0 + 1e-9 for c in table["cos"])
    # three steps of fine-tuning barely move the weights: the top directions stay aligned
    first = [c for c, i in zip(table["cos"], table["index"], strict=True) if i == 1]
    assert min(first) > 0.9
    assert (tmp_path / "angles.png").stat().st_size > 1000


def test_bad_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "spectra", "--run", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: --run:")
