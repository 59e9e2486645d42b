#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU (its image has cupy, numba, torch,
# pytest, pytest-benchmark): GPU tests, GPU benchmarks with a PyTorch CUDA eager
# baseline, results (JSON + log) written to the folder given as $1.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: ci/gpu.sh OUTPUT_DIR}"
mkdir -p "$out"
log="$out/gpu.log"
{
  nvidia-smi || true
  pip install --no-deps --no-build-isolation -e . 2>&1 | tail -1
  nnkit info
  echo "== pytest -m gpu + the backend-parametrized suite (cupy included)"
  timeout 240 pytest -q -x tests 2>&1 | tail -25
  echo "== nnkit bench (cupy vs numpy/numba, float32 and float64)"
  timeout 240 nnkit bench --dtype both --json "$out/nnkit-bench.json"
  echo "== PyTorch CUDA eager baseline"
  OUT_DIR="$out" timeout 120 python - <<'PY'
import json, os
from nnkit.bench import time_per_call
from nnkit import peers
from nnkit.workloads import WORKLOADS
rows = []
for name, w in WORKLOADS.items():
    for maker in (peers.make_torch_eager, peers.make_torch_manual):
        step, sync = maker(w, "float32", device="cuda")
        t = time_per_call(step, sync)
        rows.append({"workload": name, "peer": maker.__name__, "step_s": t})
        print(f"{name:8s} {maker.__name__:18s} {t * 1e6:9.1f} us")
json.dump(rows, open(os.path.join(os.environ.get("OUT_DIR", "."), "torch-cuda.json"), "w"))
PY
} 2>&1 | tee "$log"
