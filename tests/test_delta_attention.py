"""DELTA's supervised attention: right layers, computed once, shared safely between processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune import config_from_dict
from finetune.backbones import BACKBONES, build_classifier
from finetune.config import ModelConfig
from finetune.delta_attention import attention_from_increases, attention_key, cached_attention
from finetune.engine import Trainer
from tests.conftest import run_in_processes, tiny_base


def test_stage_layers_match_the_reference_names_and_resnet101() -> None:
    expected = {
        "resnet50": ["layer1.2.conv3", "layer2.3.conv3", "layer3.5.conv3", "layer4.2.conv3"],
        "resnet101": ["layer1.2.conv3", "layer2.3.conv3", "layer3.22.conv3", "layer4.2.conv3"],
        "resnet18": ["layer1.1.conv2", "layer2.1.conv2", "layer3.1.conv2", "layer4.1.conv2"],
    }
    for name, layers in expected.items():
        model = build_classifier(ModelConfig(name, None), num_classes=2)
        assert BACKBONES[name].stage_layers(model.backbone) == layers


def test_attention_is_a_distribution_favouring_important_channels() -> None:
    a = attention_from_increases(torch.tensor([0.0, 0.1, 2.0, 0.05]))
    assert a.sum().item() == pytest.approx(1.0)
    assert int(a.argmax()) == 2


def delta_config(cache: Path) -> dict:
    return tiny_base(
        regularizer={"name": "delta"},
        delta={"attention_epochs": 1, "attention_batches": 1, "attention_batch_size": 8, "cache_dir": str(cache)},
        optim={"epochs": 1, "steps_per_epoch": 1},
    )


def test_supervised_attention_computed_once_and_reused(tmp_path: Path) -> None:
    config = config_from_dict(delta_config(tmp_path))
    first = Trainer(config)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = Trainer(config)
    assert files[0].stat().st_mtime_ns == stamp
    for a, b in zip(first.terms["delta"].buffers(), second.terms["delta"].buffers(), strict=True):
        assert torch.equal(a, b)
    weights = [b for n, b in first.terms["delta"].named_buffers() if n.startswith("attention_")]
    assert [len(w) for w in weights] == [24, 32, 96, 320]  # MobileNetV2's stage-end projections
    assert all(w.sum().item() == pytest.approx(1.0, abs=1e-5) for w in weights)
    assert not all(torch.allclose(w, torch.full_like(w, 1 / len(w))) for w in weights)
    # a different sampling rate is a different key
    other = config_from_dict(
        {**delta_config(tmp_path), "data": {**delta_config(tmp_path)["data"], "sampling_rate": 0.1}}
    )
    assert attention_key(other, ["x"]) != attention_key(config, ["x"])


def _compute_in_process(cache: str, counter: str) -> None:
    def compute() -> list[torch.Tensor]:
        with open(counter, "a") as fh:
            fh.write("computed\n")
        return [torch.ones(3) / 3]

    cached_attention(Path(cache), "shared-key", compute)


def test_concurrent_requests_compute_once(tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    run_in_processes(_compute_in_process, (str(tmp_path), str(counter)), count=4)
    assert counter.read_text().count("computed") == 1
    assert (tmp_path / "shared-key.pt").is_file()


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_vectorised_ablation_matches_the_loop(backbone: str) -> None:
    from finetune.delta_attention import loss_increases_loop, loss_increases_vectorised

    torch.manual_seed(0)
    # random-init MobileNetV2 passes almost nothing through in eval mode: use its real weights
    weights = "IMAGENET1K_V1" if backbone == "mobilenet_v2" else None
    model = build_classifier(ModelConfig(backbone, weights), num_classes=4).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 1.0)  # a head that reacts to the features
    batches = [(torch.randn(6, 3, 32, 32), torch.randint(0, 4, (6,))), (torch.randn(4, 3, 32, 32), torch.arange(4))]
    for name in BACKBONES[backbone].stage_layers(model.backbone)[::3]:  # the first and the last stage
        loop = loss_increases_loop(model, name, batches)
        fast = loss_increases_vectorised(model, name, batches, rows=40)  # several chunks per batch
        scale = float(loop.abs().max())
        assert scale > 0
        # float32 kernels differ with the batch shape: agreement to 1e-5 of the largest increase
        assert torch.allclose(fast, loop, atol=1e-5 * scale, rtol=0), name
        assert torch.allclose(attention_from_increases(fast), attention_from_increases(loop), atol=1e-6), name
