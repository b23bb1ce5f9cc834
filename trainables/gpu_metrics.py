"""A GPU trial's own utilisation and memory, as metrics of its epochs.

MLflow's system metrics (``system/gpu_*``, with ``nvidia-ml-py`` installed) cover the process that
opened a run, here the driver's machine on the study's parent run; trials run elsewhere on a
cluster. So each GPU trial samples its own device: ``gpu_util_pct`` (NVML's utilisation of the
device, the mean of samples taken every ``interval_s`` during the epoch; with a shared GPU
(``resources.gpu`` < 1) it is the whole device's), ``gpu_mem_used_mb`` (the device's memory in use at
the epoch's end, NVML) and ``gpu_mem_peak_mb`` (this trial's own peak of allocated tensors in the
epoch, from torch; no NVML needed). On a CPU there is nothing to sample and no metric.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch


def nvml() -> Any | None:
    """The ``pynvml`` module of ``nvidia-ml-py``, initialised; None where it is not installed or has no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver or no GPU on this machine
        return None
    return pynvml


def nvml_handle(lib: Any, index: int) -> Any:
    """NVML's handle of torch's device ``index``: NVML numbers the machine's GPUs, torch the visible
    ones (``CUDA_VISIBLE_DEVICES``, which Ray sets for each trial: indices or UUIDs)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index < len(visible):
        entry = visible[index]
        if entry.isdigit():
            return lib.nvmlDeviceGetHandleByIndex(int(entry))
        return lib.nvmlDeviceGetHandleByUUID(entry)
    return lib.nvmlDeviceGetHandleByIndex(index)


class GpuSampler:
    """Samples the trial's GPU in a daemon thread; :meth:`epoch` returns the epoch's figures."""

    def __init__(self, device: torch.device, interval_s: float = 1.0, lib: Any | None = None) -> None:
        self.device = device
        self.on_gpu = device.type == "cuda"
        self.lib = (lib or nvml()) if self.on_gpu else None
        self.handle = nvml_handle(self.lib, device.index or 0) if self.lib is not None else None
        self.interval_s = interval_s
        self._samples: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GpuSampler:
        if self.handle is not None:
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def sample(self) -> None:
        assert self.lib is not None
        utilisation = float(self.lib.nvmlDeviceGetUtilizationRates(self.handle).gpu)
        with self._lock:
            self._samples.append(utilisation)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a GPU that stops answering must not end the trial
                return

    def epoch(self) -> dict[str, float]:
        """The figures since the last call (nothing on a CPU)."""
        if not self.on_gpu:
            return {}
        found: dict[str, float] = {}
        if torch.cuda.is_available():
            found["gpu_mem_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.handle is not None and self.lib is not None:
            with self._lock:
                samples, self._samples = self._samples, []
            if not samples:  # an epoch shorter than the interval: one sample now
                samples = [float(self.lib.nvmlDeviceGetUtilizationRates(self.handle).gpu)]
            found["gpu_util_pct"] = sum(samples) / len(samples)
            found["gpu_mem_used_mb"] = float(self.lib.nvmlDeviceGetMemoryInfo(self.handle).used) / 2**20
        return found

    def stop(self) -> None:
        self._stop.set()
