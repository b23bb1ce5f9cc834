from __future__ import annotations

import pytest

from finetune import EpochMetrics, FitResult, NonFiniteLossError, config_from_dict, fit
from tests.conftest import tiny_base


class Record:
    def __init__(self) -> None:
        self.epochs: list[EpochMetrics] = []
        self.result: FitResult | None = None

    def on_epoch_end(self, metrics: EpochMetrics) -> None:
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
    assert result.best_val_acc == max(m.val_acc for m in record.epochs)


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
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        fit(config, [])
