"""A GPU trial's own utilisation and memory metrics (``trainables.gpu_metrics``).

No GPU here: on a CPU the sampler gives nothing; its NVML arithmetic (the visible device's handle,
the mean of an epoch's samples) is checked with a stand-in for NVML's Python module, since NVML
itself needs an NVIDIA driver. ``bench/gpu_session.sh`` is where a real GPU is measured.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from trainables.gpu_metrics import GpuSampler, nvml, nvml_handle


class StandInNvml:
    """NVML's calls the sampler makes, returning set values (handles are the physical index or UUID)."""

    def __init__(self, utilisations: list[float]) -> None:
        self.utilisations = utilisations

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        return ("index", index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        return ("uuid", uuid)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        return SimpleNamespace(gpu=self.utilisations.pop(0))

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        return SimpleNamespace(used=3 * 2**30)


def test_on_a_cpu_there_is_nothing_to_sample() -> None:
    sampler = GpuSampler(torch.device("cpu")).start()
    assert sampler.epoch() == {} and sampler.handle is None
    sampler.stop()


def test_the_visible_device_maps_to_nvmls_own_numbering(monkeypatch: pytest.MonkeyPatch) -> None:
    lib = StandInNvml([])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert nvml_handle(lib, 1) == ("index", 5)  # torch's cuda:1 is the machine's GPU 5
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234")
    assert nvml_handle(lib, 0) == ("uuid", "GPU-1234")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert nvml_handle(lib, 2) == ("index", 2)


def test_an_epochs_utilisation_is_the_mean_of_its_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no torch peak without CUDA
    sampler = GpuSampler(torch.device("cuda", 0), lib=StandInNvml([20.0, 60.0, 90.0]))
    sampler.sample()
    sampler.sample()
    assert sampler.epoch() == {"gpu_util_pct": 40.0, "gpu_mem_used_mb": 3072.0}
    assert sampler.epoch() == {"gpu_util_pct": 90.0, "gpu_mem_used_mb": 3072.0}  # no sample yet: one taken now


def test_without_nvidia_ml_py_nvml_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if not installed: its import fails
    assert nvml() is None
    assert GpuSampler(torch.device("cuda", 0)).handle is None  # a GPU trial then reports only torch's peak
