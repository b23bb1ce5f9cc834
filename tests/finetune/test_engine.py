from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from finetune import EpochMetrics, FitResult, NonFiniteLossError, config_from_dict, fit
from tests.conftest import tiny_base


class Record:
    def __init__(self) -> None:
        self.epochs: list[EpochMetrics] = []
        self.result: FitResult | None = None

    def on_epoch_end(self, metrics: EpochMetrics, trainer: object) -> None:
        self.epochs.append(metrics)

    def on_fit_end(self, result: FitResult) -> None:
        self.result = result


def test_fit_reports_every_epoch_and_tests_once() -> None:
    config = config_from_dict(tiny_base(bss={"enabled": True, "k": 2}, regularizer={"name": "l2sp"}))
    record = Record()
    result = fit(config, [record])
    assert [m.epoch for m in record.epochs] == [1, 2]
    assert record.epochs[0].test_acc is None and record.epochs[1].test_acc == result.test_acc
    assert set(record.epochs[0].terms) == {"ce", "l2sp", "bss"}
    assert len(record.epochs[0].smallest_singular_values) == 4
    sv = record.epochs[0].smallest_singular_values
    assert sv == sorted(sv)
    flat = record.epochs[0].flat()
    assert {"val_acc", "loss_bss", "sv_min_1", "train_loss"} <= set(flat)
    assert record.result is result and 1 <= result.best_epoch <= 2
    assert result.best_val_acc == max(m.val_acc for m in record.epochs if m.val_acc is not None)


def test_selection_last_reports_the_last_epochs_test_accuracy_without_validation() -> None:
    """A grid of fixed settings (the paper's tables): no validation split, the test accuracy of the
    current weights after every epoch, the run's result is the last epoch's, its weights saved."""
    from finetune import Trainer
    from finetune.engine import train_to_end

    config = config_from_dict(tiny_base(data={"selection": "last"}, optim={"epochs": 3, "steps_per_epoch": 2}))
    trainer = Trainer(config)
    assert trainer.splits.val is None and trainer.sizes.val == 0
    record = Record()
    result = train_to_end(trainer, [record])
    assert all(m.val_acc is None and m.best_val_acc is None for m in record.epochs)
    assert all(m.test_acc is not None for m in record.epochs)  # a learning curve on the test split
    assert result.test_acc == record.epochs[-1].test_acc and result.best_epoch == 3 and result.best_val_acc is None
    assert "val_acc" not in record.epochs[0].flat() and "test_acc" in record.epochs[0].flat()
    final = trainer.model.state_dict()
    assert all(torch.equal(result.best_state[k], final[k].cpu()) for k in final)  # the last epoch's weights


def test_same_seed_same_first_step_loss() -> None:
    base = tiny_base(optim={"epochs": 1, "steps_per_epoch": 1})
    a, b = Record(), Record()
    fit(config_from_dict(base), [a])
    fit(config_from_dict(base), [b])
    assert a.epochs[0].train_loss == b.epochs[0].train_loss
    c = Record()
    fit(config_from_dict({**base, "seed": 1}), [c])
    assert c.epochs[0].train_loss != a.epochs[0].train_loss


def test_non_finite_loss_stops_with_reason() -> None:
    config = config_from_dict(tiny_base(optim={"lr": 1e12, "epochs": 1, "steps_per_epoch": 5}))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 1, step \d \(ce="):
        fit(config, [])


def test_non_finite_check_every_few_steps_names_the_window() -> None:
    """A GPU reads the loss back every few steps only (no device sync per step): the error then
    names the window of steps; here forced on the CPU."""
    from finetune.engine import Trainer

    trainer = Trainer(config_from_dict(tiny_base(optim={"lr": 1e12, "epochs": 1, "steps_per_epoch": 5})))
    trainer.check_every = 3
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 1, one of steps 1-3"):
        trainer.train_epoch()


def test_stopped_and_resumed_run_matches_uninterrupted() -> None:
    import io

    import torch

    from finetune.engine import Trainer

    base = tiny_base(
        optim={"epochs": 3, "steps_per_epoch": 3, "lr_decay_epochs": [2]},
        bss={"enabled": True, "k": 1},
        regularizer={"name": "l2sp"},
        data={"train_transform": "random_resized_crop"},
    )
    config = config_from_dict(base)
    straight = Trainer(config)
    while not straight.done:
        straight.train_epoch()

    first = Trainer(config)
    first.train_epoch()
    first.train_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    del first
    torch.manual_seed(12345)  # disturb global RNGs: the saved state must restore them
    resumed = Trainer(config)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed.train_epoch()

    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [m.train_loss for m in straight.history] == [m.train_loss for m in resumed.history]
    assert straight.history[-1].test_acc == resumed.history[-1].test_acc


def test_tsvd_and_ten_crop_run() -> None:
    config = config_from_dict(
        tiny_base(model={"tsvd_r": 2}, data={"resize_size": 40, "eval_transform": "ten_crop"}, optim={"epochs": 1})
    )
    result = fit(config)
    assert 0.0 <= result.test_acc <= 1.0


def test_tsvd_drops_the_smallest_components() -> None:
    import torch

    from finetune.model import drop_smallest_components

    features = torch.randn(8, 16, dtype=torch.float64)
    s = torch.linalg.svdvals(features)
    dropped = torch.linalg.svdvals(drop_smallest_components(features.float(), 3).double())
    assert torch.allclose(dropped[:5], s[:5], atol=1e-4)
    assert torch.all(dropped[5:] < 1e-4)


def test_random_resized_crop_is_batched_seeded_and_in_range() -> None:
    import torch

    from finetune.config import DataConfig
    from finetune.transforms import normalize, random_resized_crop

    images = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    config = DataConfig(image_size=24, resize_size=40, crop_scale_min=0.2)
    a = random_resized_crop(images, config, torch.Generator().manual_seed(0))
    b = random_resized_crop(images, config, torch.Generator().manual_seed(0))
    assert a.shape == (6, 3, 24, 24) and torch.equal(a, b)
    full = normalize(images)
    assert a.min() >= full.min() - 1e-5 and a.max() <= full.max() + 1e-5
    # a constant image stays constant whatever the crop
    flat = torch.full((2, 3, 40, 40), 128, dtype=torch.uint8)
    out = random_resized_crop(flat, config, torch.Generator().manual_seed(1))
    assert torch.allclose(out, normalize(flat)[:, :, :24, :24], atol=1e-5)


def _per_crop(x: torch.Tensor, boxes: list, flips: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    """The reference: each box cut out and resized on its own (the CPU path's method)."""
    import torch.nn.functional as F

    out = []
    for i, (top, left, h, w) in enumerate(boxes):
        crop = F.interpolate(
            x[i : i + 1, :, top : top + h, left : left + w],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.cat(out)


def test_batched_crops_match_the_per_image_resize() -> None:
    """The GPU path's one-call crop-and-resize (roi_align) against the per-image reference: exact
    bilinear when upscaling, away from the few border pixels where roi_align reads the image
    beyond the box; within a few grey levels when downscaling real images (a box filter against
    PyTorch's antialiasing triangle filter)."""
    from finetune.config import DataConfig
    from finetune.data import load_splits
    from finetune.transforms import _crop_box, batched_resized_crops

    noise = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    boxes = [(3, 5, 20, 24), (10, 0, 30, 16), (17, 9, 12, 20), (30, 30, 30, 30)]
    flips = torch.tensor([False, True, False, True])
    batched = batched_resized_crops(noise, boxes, flips, 40)
    reference = _per_crop(noise, boxes, flips, 40, antialias=False)
    for i, (_, _, h, w) in enumerate(boxes):
        my, mx = math.ceil(0.5 * 40 / h), math.ceil(0.5 * 40 / w)  # output pixels sampled outside the box
        inner = (batched[i] - reference[i])[:, my : 40 - my, mx : 40 - mx]
        assert float(inner.abs().max()) < 1e-2, boxes[i]
    real = load_splits(DataConfig(image_size=64, resize_size=96, sampling_rate=0.01), 0).train.all_images()[:16]
    generator = torch.Generator().manual_seed(0)
    crops = [_crop_box(96, 96, 0.08, generator) for _ in range(16)]
    flips = torch.rand(16, generator=generator) < 0.5
    down = batched_resized_crops(real.float(), crops, flips, 32) - _per_crop(real.float(), crops, flips, 32, True)
    assert float(down.abs().mean()) < 1.5  # grey levels of 255 (0.79 measured)
    assert float(down.abs().flatten().quantile(0.99)) < 12  # (8.1 measured)


def test_normalize_is_exact_in_every_memory_format() -> None:
    import torch

    from finetune.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize

    hwc = torch.randint(0, 256, (3, 20, 30, 3), dtype=torch.uint8)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    channels_last = hwc.permute(0, 3, 1, 2)
    for batch in (channels_last, channels_last.contiguous(), channels_last[:, :, 2:15, 5:25]):
        expected = (batch.double() / 255 - mean.double()) / std.double()
        out = normalize(batch)
        assert out.dtype == torch.float32 and out.shape == batch.shape
        assert float((out.double() - expected).abs().max()) < 1e-5
    assert normalize(channels_last).is_contiguous(memory_format=torch.channels_last)


BF16_UNIT_ROUNDOFF = 2.0**-8  # bfloat16 keeps 8 significant bits


def _forward(model: object, images: object, bf16: bool, channels_last: bool) -> object:
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)  # type: ignore[attr-defined]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(images.contiguous(memory_format=fmt))[1].float()  # type: ignore[attr-defined]


def test_bf16_and_channels_last_forward_within_bf16_precision_of_fp32() -> None:
    """Numerics of what is defined, on any CPU: the pooled features of one fixed batch of real
    images in eval mode. channels_last in fp32 only reorders memory (agreement to 1e-4);
    bf16 rounds each of the L conv/linear layers' inputs and weights to 8 bits, so its
    first-order relative error is at most 2 L u (u = 2^-8), with or without channels_last.
    Training parity (a few steps amplify these differences) is bench/amp_parity.py's job."""
    import torch

    from finetune.engine import Trainer
    from finetune.transforms import center_view

    config = config_from_dict({**tiny_base(), "precision": "fp32", "channels_last": "off"})
    trainer = Trainer(config)
    model = trainer.model.eval()
    images = center_view(trainer.splits.train.all_images()[:32], config.data)[0]
    layers = sum(isinstance(m, torch.nn.Conv2d | torch.nn.Linear) for m in model.modules())
    reference = _forward(model, images, bf16=False, channels_last=False)

    def relative_error(bf16: bool, channels_last: bool) -> float:
        out = _forward(model, images, bf16, channels_last)
        return float((out - reference).norm() / reference.norm())  # type: ignore[operator]

    assert relative_error(bf16=False, channels_last=True) < 1e-4
    bound = 2 * layers * BF16_UNIT_ROUNDOFF
    for channels_last in (False, True):
        error = relative_error(bf16=True, channels_last=channels_last)
        assert 0 < error < bound, (channels_last, error, bound)
    with pytest.raises(Exception, match="precision"):
        config_from_dict({"precision": "fp8"})


def test_auto_precision_is_bf16_only_on_a_gpu() -> None:
    import torch

    from finetune import engine
    from finetune.config import TrainConfig

    cpu = torch.device("cpu")
    auto = TrainConfig()
    assert not engine.use_bf16(auto, cpu) and not engine.use_channels_last(auto, cpu)
    assert engine.use_channels_last(auto, torch.device("cuda"))
    fixed = TrainConfig(precision="fp32", channels_last="off")
    assert not engine.use_bf16(fixed, cpu) and not engine.use_channels_last(fixed, cpu)
    assert engine.use_bf16(TrainConfig(precision="bf16"), cpu)
    assert engine.use_channels_last(TrainConfig(channels_last="on"), cpu)


def test_tsvd_accuracy_does_not_depend_on_the_evaluation_batching() -> None:
    """Eq. 10 at evaluation acts on the whole split's feature matrix: the same accuracy whatever
    eval_batch_size cuts the split into (per-batch TSVD changed it)."""
    from finetune.engine import Trainer, accuracy
    from finetune.transforms import eval_views

    config = config_from_dict(tiny_base(model={"tsvd_r": 4}))
    trainer = Trainer(config)
    trainer.train_epoch()
    accs = set()
    for batch in (7, 64, 1000):
        resized = config_from_dict(
            {**tiny_base(model={"tsvd_r": 4}), "data": {**tiny_base()["data"], "eval_batch_size": batch}}
        )
        accs.add(accuracy(trainer.model, trainer.splits.test, resized, trainer.device, eval_views(resized.data)))
    assert len(accs) == 1


def test_per_batch_tsvd_is_eq_10_on_seeded_fixed_batches() -> None:
    """``tsvd_eval: batch``: each batch of data.batch_size of a seeded permutation of the split is
    truncated on its own (Eq. 10's b); the accuracy is that of those batches, the same whatever
    eval_batch_size, and it differs from the whole-split form."""
    from finetune.engine import Trainer, accuracy, tsvd_batches
    from finetune.model import drop_smallest_components
    from finetune.transforms import center_view, eval_views

    def with_eval(**data: object) -> Any:
        return config_from_dict(
            {**tiny_base(model={"tsvd_r": 4, "tsvd_eval": "batch"}), "data": {**tiny_base()["data"], **data}}
        )

    config = with_eval()
    trainer = Trainer(config)
    trainer.train_epoch()
    test = trainer.splits.test
    accs = {
        accuracy(trainer.model, test, with_eval(eval_batch_size=b), trainer.device, eval_views(config.data))
        for b in (7, 1000)
    }
    assert len(accs) == 1
    groups = tsvd_batches(len(test), config)
    assert [len(g) for g in groups[:-1]] == [config.data.batch_size] * (len(groups) - 1)
    assert sorted(torch.cat(groups).tolist()) == list(range(len(test)))  # every image once
    assert all(torch.equal(a, b) for a, b in zip(groups, tsvd_batches(len(test), config), strict=True))  # fixed
    model = trainer.model.eval()
    with torch.no_grad():
        features = model.backbone(center_view(test.take(range(len(test))), config.data)[0])
        correct = sum(
            int((model.head(drop_smallest_components(features[g], 4)).argmax(1) == test.labels[g]).sum())
            for g in groups
        )
    assert accs == {correct / len(test)}
    split = config_from_dict(tiny_base(model={"tsvd_r": 4}))
    assert accuracy(model, test, split, trainer.device, eval_views(split.data)) not in accs  # the other form


def test_the_engine_leaves_the_process_thread_count_to_the_edges() -> None:
    """``num_threads`` is process-wide: ``use_threads`` (called by the trainable and `study train`)
    applies it; building a Trainer does not."""
    from finetune import Trainer
    from finetune.engine import use_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Trainer(config_from_dict(tiny_base(num_threads=1)))
        assert torch.get_num_threads() == 2
        use_threads(config_from_dict(tiny_base(num_threads=1)))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
