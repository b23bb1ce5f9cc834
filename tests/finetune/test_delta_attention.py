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


# resnet50 (bottleneck blocks) takes about a minute on 2 CPU cores: with the slow tests, out of the fast suite
@pytest.mark.parametrize("backbone", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow), "mobilenet_v2"])
def test_vectorised_ablation_matches_the_loop(backbone: str) -> None:
    from finetune.delta_attention import (
        ablated_block_output,
        enclosing_block,
        loss_increases_loop,
        loss_increases_vectorised,
    )

    torch.manual_seed(0)
    # random-init MobileNetV2 passes almost nothing through in eval mode: use its real weights
    weights = "IMAGENET1K_V1" if backbone == "mobilenet_v2" else None
    model = build_classifier(ModelConfig(backbone, weights), num_classes=4).eval()
    with torch.no_grad():
        model.head.weight.normal_(0.0, 0.2)  # a head that reacts to the features
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) and weights is None):
            # pretrained-like statistics, so that a zeroed channel's BN shift is not zero
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    # in float64 both methods are exact: they must agree to the float32 rounding of the result
    model = model.double()
    batches = [
        (torch.randn(5, 3, 32, 32, dtype=torch.float64), torch.randint(0, 4, (5,))),
        (torch.randn(3, 3, 32, 32, dtype=torch.float64), torch.arange(3)),
    ]
    limit = 24  # the loop on the first 24 channels (MobileNetV2's first stage has 24)
    for name in BACKBONES[backbone].stage_layers(model.backbone)[::3]:  # the first and the last stage
        # ResNets set the ablated channel in the block's output; other blocks run once per replica
        closed_form = ablated_block_output(model.backbone.get_submodule(enclosing_block(name)), name)
        assert (closed_form is not None) == backbone.startswith("resnet")
        loop = loss_increases_loop(model, name, batches, limit=limit)
        fast = loss_increases_vectorised(model, name, batches, rows=160)  # several chunks per batch
        scale = float(loop.abs().max())
        assert scale > 0
        error = float((fast[: len(loop)] - loop).abs().max()) / scale
        assert error < 1e-6, (name, error)
        if len(loop) == len(fast):
            assert torch.allclose(attention_from_increases(fast), attention_from_increases(loop), atol=1e-6), name
