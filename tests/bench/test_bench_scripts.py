"""The benchmark scripts run end to end (tiny sizes) and print every figure with its goal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_bss_overhead_prints_every_figure() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "bench/bss_overhead.py",
            "--image-size",
            "32",
            "--batch",
            "8",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    for method in ("svdvals", "gram_eigvalsh", "eigvec"):
        for figure in ("step_ratio", "penalty_share", "penalty_ms", "grad_rel_err"):
            assert f"{figure}[{method}]" in out
    assert "goal <=1.02" in out and "cpu" in out


def run(*args: str) -> str:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=True
    ).stdout


def test_regularizer_norms_prints_its_figures() -> None:
    out = run("bench/regularizer_norms.py", "--repeats", "1")
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert {"norm_ms[loop]", "norm_ms[foreach]", "speedup"} <= set(lines)
    assert lines["calls[foreach,3]"] == lines["calls[foreach,161]"]  # no loop over the 161 tensors
    assert int(lines["calls[loop,161]"]) > int(lines["calls[loop,3]"])


def test_data_pipeline_prints_its_figures() -> None:
    out = run("bench/data_pipeline.py", "--images", "64", "--batch", "16", "--quick")
    assert "data_speedup[cache/jpeg_pil]" in out and "goal >=5" in out


def test_delta_attention_prints_its_figures() -> None:
    out = run(
        "bench/delta_attention.py",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--batch",
        "4",
        "--loop-channels",
        "2",
    )
    assert "delta_speedup[all layers]" in out and "goal >=10" in out


def test_amp_parity_prints_its_figures() -> None:
    out = run(
        "bench/amp_parity.py", "--epochs", "1", "--seeds", "0", "1", "--steps", "2", "--image-size", "32", "--layers"
    )
    assert "bf16_minus_fp32" in out and "epoch_time_ratio[bf16/fp32]" in out
    assert "layer_error[bf16+channels_last]  worst: " in out


def test_gpu_throughput_script_runs_on_the_cpu() -> None:
    out = run(
        "bench/gpu_throughput.py",
        "--device",
        "cpu",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--batch",
        "8",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--images",
        "32",
        "--precision",
        "fp32",
        "--channels-last",
        "off",
        "--concurrency",
        "1",
        "2",
    )
    values = {line[:44].strip(): line[44:55].strip() for line in out.splitlines() if not line.startswith("#")}
    for figure in (
        "bare_images_per_s[eager]",
        "images_per_s[l2]",
        "images_per_s[l2+bss]",
        "images_per_s[delta+bss]",
        "images_per_s[l2+bss, eager backbone]",
        "ceiling_ratio[l2+bss]",
        "step_ms[gather+copy]",
        "step_ms[augment]",
        "step_ms[forward+terms]",
        "step_ms[backward+step]",
        "bss_step_ratio",
        "aggregate_images_per_s[l2+bss, 2 trials]",
    ):
        assert float(values[figure]) > 0, figure
    assert values["bare_images_per_s[cuda graph]"] == "no CUDA"
    assert "goal >=0.8" in out and "of the eager bare step" in out  # no graph on a CPU: the eager ceiling
    assert "CUDA graphs need a CUDA device" in out  # why the engine's backbone ran eagerly


def test_sweep_overhead_prints_its_figures() -> None:
    out = run("bench/sweep_overhead.py", "--trials", "3", "--epochs", "2")
    for mode in ("reused-workers", "fresh-process"):
        for figure in ("sweep_efficiency", "framework_overhead_per_trial_s", "handoff_per_trial_s"):
            assert f"{figure}[{mode}]" in out
    assert "goal >=0.85" in out and "goal <=2" in out
    values = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if not line.startswith("#")}
    for mode in ("reused-workers", "fresh-process"):
        parts = ("startup", "handoff", "trial_edges", "idle_at_end", "shutdown")
        total = sum(values[f"{part}_per_trial_s[{mode}]"] for part in parts)
        assert abs(total - values[f"overhead_per_trial_s[{mode}]"]) < 0.01  # the split accounts for all of it


def test_gpu_throughput_lists_its_figures_as_not_measured_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: the script measures instead")
    out = run("bench/gpu_throughput.py", "--if-gpu")
    assert "aggregate_images_per_s[l2+bss, 4 trials]" in out and "not measured" in out and "goal >=0.8" in out
    assert "bare_images_per_s[cuda graph]" in out and "step_ms" not in out


def test_study_overhead_prints_its_figures_and_the_ratio_last() -> None:
    out = run("bench/study_overhead.py", "--sizes", "4", "8", "--backends", "folder", "--repeats", "1")
    lines = [line for line in out.splitlines() if line.strip()]
    for size in (4, 8):
        (row,) = [line for line in lines if line.startswith(f"folder   N={size} ")]
        for figure in ("overhead_per_trial_s", "overhead_last_tenth_s", "status_s", "report_s"):
            assert f" {figure} " in row
    assert lines[-1].startswith("overhead ratio 8/4: ") and float(lines[-1].split()[-1]) > 0


def test_cli_latency_prints_each_command_against_its_goal() -> None:
    out = run("bench/cli_latency.py", "--repeats", "1", "--sizes", "3")
    assert "study --help" in out and "study status (3 trials, folder SQLite)" in out and "study list" in out
    assert "study ui --print-only" in out and "study dashboard --print-only" in out
    assert "(<= 1.5 s)" in out and "(<= 250 MB)" in out and "os.wait4" in out


def test_trial_store_io_prints_the_folder_the_bucket_and_their_ratio() -> None:
    out = run("bench/trial_store_io.py", "--backbone", "resnet18", "--epochs", "1")
    assert "  folder  save" in out and "  bucket  save" in out and "bucket / folder: save" in out
