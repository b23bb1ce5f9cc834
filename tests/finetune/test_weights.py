"""Offline ImageNet weights pass torch's own hash check; bad files get a one-line error naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune import WeightsError
from finetune import weights as weights_mod
from finetune.backbones import build_classifier
from finetune.config import ModelConfig

FILENAME = "mobilenet_v2-b0353104.pth"


@pytest.fixture
def fresh_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def test_offline_copy_is_staged_and_loads(fresh_hub: Path) -> None:
    assert weights_mod.offline_copy(FILENAME) is not None, "run `make setup`: the offline weights package is missing"
    model = build_classifier(ModelConfig("mobilenet_v2", "IMAGENET1K_V1"), num_classes=3)
    assert (fresh_hub / FILENAME).is_file()
    # real ImageNet weights, not a random init: the first conv of torchvision's file, exactly
    state = torch.load(fresh_hub / FILENAME, weights_only=True)
    assert torch.equal(model.backbone[0][0][0].weight, state["features.0.0.weight"])


def test_corrupt_offline_copy_fails_torch_hash_check(
    fresh_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "pkg" / FILENAME
    bad.parent.mkdir()
    bad.write_bytes(b"not the real weights")
    monkeypatch.setattr(weights_mod, "offline_copy", lambda _name: bad)
    with pytest.raises(WeightsError, match="hash"):
        weights_mod.stage_offline_copy(FILENAME)
    assert not (fresh_hub / FILENAME).exists()
    assert not list(fresh_hub.glob("*.partial"))


def test_wrong_architecture_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"resnet\.pt does not fit mobilenet_v2"):
        build_classifier(ModelConfig("mobilenet_v2", str(path)), num_classes=3)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("junk")
    with pytest.raises(WeightsError, match=r"junk\.pt is not a readable"):
        weights_mod.file_state_dict(junk)
    with pytest.raises(WeightsError, match="no file at"):
        weights_mod.file_state_dict(tmp_path / "missing.pt")
