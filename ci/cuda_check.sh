#!/usr/bin/env bash
# Compiles every CUDA source the cupy backend can emit with NVRTC (no GPU needed) and
# checks ptxas's register report: no compile errors, no spills in a launched kernel.
# Run after `pip install -e ".[test]"` (ci/test.sh does that).
set -euo pipefail
cd "$(dirname "$0")/.."
# NVRTC (libnvrtc.so.12) and ptxas of CUDA 12, from PyPI: no CUDA toolkit, no driver.
python -m pip install --quiet "nvidia-cuda-nvrtc-cu12==12.*" "nvidia-cuda-nvcc-cu12==12.*"
python ci/cuda_check.py "$@"
