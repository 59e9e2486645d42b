#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (its image has cupy, numba, torch,
# pytest, pytest-benchmark): GPU tests, GPU benchmarks with PyTorch CUDA baselines,
# results (JSON + log) written to the folder given as $1. Worst case about 8 minutes;
# give the device tool a timeout of 540 s or more.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: ci/gpu.sh OUTPUT_DIR}"
mkdir -p "$out"
log="$out/gpu.log"
# The image's packages live in the python first on PATH, which need not be the one
# behind a bare `pip`/`pytest`/`nnkit`: call everything through it.
py="${PYTHON:-python}"
{
  nvidia-smi || true
  "$py" -m pip install --no-deps --no-build-isolation -e . 2>&1 | tail -1
  "$py" -m nnkit info
  echo "== GPU tests"
  timeout 120 "$py" -m pytest -q -p no:cacheprovider -p no:xdist tests/test_gpu.py 2>&1 | tail -15
  # one process (-p no:xdist): two test workers would each initialise CUDA
  echo "== the backend-parametrized suites, their cupy cases (numba compiles cold here)"
  timeout 150 "$py" -m pytest -q -p no:cacheprovider -p no:xdist -k cupy tests/test_parity.py \
    tests/test_sweep.py tests/test_gradients.py tests/test_training.py \
    tests/test_optimizers.py tests/test_softmax.py tests/test_paths.py \
    tests/test_fit_validation.py tests/test_controls.py tests/test_backends.py \
    tests/test_early_stopping.py 2>&1 | tail -15
  echo "== nnkit bench (cupy beside numpy/numba, float32; with the Adam classification workloads)"
  timeout 150 "$py" -m nnkit bench --json "$out/nnkit-bench.json"
  echo "== PyTorch CUDA baselines, the big sweep, the numba/cupy crossover"
  timeout 150 "$py" benchmarks/gpu_extra.py "$out"
} 2>&1 | tee "$log"
