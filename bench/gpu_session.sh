#!/usr/bin/env bash
# Everything a session with a GPU checks and measures, in one run (a few minutes on an H200):
#   bash bench/gpu_session.sh            # output also written under $OUT (or /tmp/gpu-session)
# The GPU image has torch, torchvision, numpy, pyarrow, PyYAML, Pillow; none of this needs Ray,
# Optuna or MLflow. Record the figures, with the device's name, in docs/benchmarks.md.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-session}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() {  # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"
}
nvidia-smi -L | tee "$out/device.txt"
python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/device.txt"
step gpu_checks 120 python bench/gpu_checks.py
step gpu_throughput 330 python bench/gpu_throughput.py --concurrency 1 2 4
step regularizer_norms 60 python bench/regularizer_norms.py --device cuda --repeats 5
step delta_attention 60 python bench/delta_attention.py --device cuda --image-size 224 --batch 48
