"""BSS against an independent float64 NumPy SVD: values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune.regularizers import BatchSpectralShrinkage


def numpy_bss(features: np.ndarray, k: int, eta: float) -> tuple[float, np.ndarray]:
    """eta * sum of the k smallest sigma^2 and its gradient sum_i 2 eta sigma_i u_i v_i^T."""
    u, s, vt = np.linalg.svd(features.astype(np.float64), full_matrices=False)
    idx = np.argsort(s)[:k]
    value = eta * float(np.sum(s[idx] ** 2))
    grad = sum(2 * eta * s[i] * np.outer(u[:, i], vt[i]) for i in idx)
    return value, grad


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("shape", [(8, 32), (16, 12), (48, 2048)])
def test_value_and_gradient_match_float64_svd(k: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(k * 100 + shape[0])
    features = rng.normal(size=shape) * rng.uniform(0.1, 3.0, size=shape[1])
    expected, expected_grad = numpy_bss(features, k, eta=1e-3)
    f = torch.tensor(features, dtype=torch.float64, requires_grad=True)
    value = BatchSpectralShrinkage(k=k, eta=1e-3).penalty(f)
    value.backward()
    assert value.dim() == 0
    assert value.item() == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(f.grad.numpy(), expected_grad, rtol=1e-6, atol=1e-12)


def test_float32_close_to_float64() -> None:
    features = np.random.default_rng(0).normal(size=(32, 256))
    expected, _ = numpy_bss(features, 2, 0.01)
    value = BatchSpectralShrinkage(k=2, eta=0.01).penalty(torch.tensor(features, dtype=torch.float32))
    assert value.item() == pytest.approx(expected, rel=1e-4)


def test_takes_the_smallest_not_the_largest() -> None:
    features = torch.diag(torch.tensor([5.0, 4.0, 3.0, 0.5]))
    assert BatchSpectralShrinkage(k=1, eta=1.0).penalty(features).item() == pytest.approx(0.25)
    assert BatchSpectralShrinkage(k=2, eta=2.0).penalty(features).item() == pytest.approx(2 * (0.25 + 9.0))


@pytest.mark.parametrize(("k", "eta"), [(0, 1e-3), (-1, 1e-3), (1.5, 1e-3), (1, 0.0), (1, -1e-3)])
def test_bad_arguments_raise(k: object, eta: float) -> None:
    with pytest.raises(ValueError, match=r"bss\.(k|eta)"):
        BatchSpectralShrinkage(k=k, eta=eta)  # type: ignore[arg-type]


def test_k_must_be_below_min_of_batch_and_dim() -> None:
    with pytest.raises(ValueError, match="must be < min"):
        BatchSpectralShrinkage(k=4).penalty(torch.randn(4, 16))
    with pytest.raises(ValueError, match=r"shape \(b, d\)"):
        BatchSpectralShrinkage(k=1).penalty(torch.randn(4, 16, 2))


@pytest.mark.parametrize("method", ["gram_eigvalsh", "eigvec"])
@pytest.mark.parametrize("shape", [(8, 32), (16, 12)])
def test_alternative_methods_match_float64_svd(method: str, shape: tuple[int, int]) -> None:
    features = np.random.default_rng(3).normal(size=shape)
    expected, expected_grad = numpy_bss(features, 2, eta=0.01)
    f = torch.tensor(features, dtype=torch.float64, requires_grad=True)
    value = BatchSpectralShrinkage(k=2, eta=0.01, method=method).penalty(f)
    value.backward()
    assert value.item() == pytest.approx(expected, rel=1e-8)
    np.testing.assert_allclose(f.grad.numpy(), expected_grad, rtol=1e-6, atol=1e-10)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"bss\.method"):
        BatchSpectralShrinkage(method="qr")


def test_config_names_every_implementation() -> None:
    from finetune import config_from_dict
    from finetune.errors import ConfigError
    from finetune.regularizers.bss import BSS_METHODS, BSSConfig

    for method in BSS_METHODS:  # the config's choices are the implementations, one list
        assert BSSConfig.of(config_from_dict({"bss": {"method": method}})).method == method
    with pytest.raises(ConfigError, match=r"^bss\.method: must be one of svdvals, gram_eigvalsh, eigvec"):
        config_from_dict({"bss": {"method": "qr"}})


@pytest.mark.parametrize("method", ["svdvals", "gram_eigvalsh", "eigvec"])
def test_every_method_is_float32_under_bf16_autocast(method: str) -> None:
    """Under autocast the matmuls of the Gram methods would run in bf16 (0.1-0.3 % off here) and
    CUDA has no bf16 eigh: each method computes in float32 and returns float32."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(48, 512)) * rng.uniform(0.05, 3.0, size=512)
    expected, _ = numpy_bss(features, 2, 1e-3)
    f = torch.tensor(features, dtype=torch.float32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = BatchSpectralShrinkage(k=2, eta=1e-3, method=method).penalty(f)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=1e-4)
    value.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


def _smallest_singular_values(seed: int, bss: bool, k: int) -> list[float]:
    """Fine-tune a pretrained MobileNetV2 briefly (with BSS at a large eta, or without), then the k
    smallest singular values of its features on fixed, non-augmented training batches, averaged.
    The features are those BSS penalises: batch-normalised with each batch's own statistics (after
    12 steps BN's running statistics are still mostly ImageNet's, so eval mode would measure a
    network the penalty never saw; the embedded Fig. 3(d) study measures eval mode after 90)."""
    from finetune import Trainer, config_from_dict
    from finetune.engine import train_to_end
    from finetune.transforms import center_view
    from tests.conftest import tiny_base

    batch = 16
    config = config_from_dict(
        tiny_base(
            data={"batch_size": batch, "sampling_rate": 0.1},
            optim={"epochs": 2, "steps_per_epoch": 6, "lr": 0.01},
            bss={"enabled": bss, "k": k, "eta": 0.1},
            seed=seed,
        )
    )
    trainer = Trainer(config)
    train_to_end(trainer)
    trainer.model.train()  # batch statistics, as in training (no gradient, no step)
    images = trainer.splits.train.take(range(4 * batch))
    values = []
    with torch.no_grad():
        for start in range(0, 4 * batch, batch):
            _, features = trainer.model(center_view(images[start : start + batch], config.data)[0])
            values.append(torch.linalg.svdvals(features.double()).flip(0)[:k])
    return torch.stack(values).mean(0).tolist()


@pytest.mark.slow
def test_bss_shrinks_the_smallest_singular_values_of_trained_features_across_seeds() -> None:
    """The real effect at a small size: trained with BSS (eta 0.1, k 2), each of the k smallest
    singular values of the batch features is below the run without BSS, for every seed."""
    k = 2
    for seed in range(3):
        with_bss = _smallest_singular_values(seed, True, k)
        without = _smallest_singular_values(seed, False, k)
        assert all(a < b for a, b in zip(with_bss, without, strict=True)), (seed, with_bss, without)
