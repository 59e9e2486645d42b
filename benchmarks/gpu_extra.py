"""GPU measurements beyond `nnkit bench`, run by ci/gpu.sh: PyTorch CUDA baselines of the
workloads, the big sweep (131,072 OR-gate nets x 1,000 epochs) and the batch size where
cupy starts to beat numba. Writes gpu-extra.json into the folder given as argv[1]."""
import json
import os
import sys

import numpy as np

import nnkit
from nnkit.bench import WORKLOADS, Workload, peers, step_setup, sweep_rows, time_per_call

out = sys.argv[1] if len(sys.argv) > 1 else "."
result = {"device": nnkit.get_backend("cupy").device(), "torch_cuda": [], "sweeps": [],
          "crossover": []}

for name, w in WORKLOADS.items():
    for maker in (peers.make_torch_eager, peers.make_torch_manual):
        try:
            step, sync = maker(w, "float32", device="cuda")
        except Exception as exc:  # torch missing or no CUDA build
            result["torch_cuda"].append({"workload": name, "error": repr(exc)})
            break
        t = time_per_call(step, sync)
        result["torch_cuda"].append({"workload": name, "peer": maker.__name__, "step_s": t})
        print(f"{name:8s} {maker.__name__:18s} {t * 1e6:9.1f} us", flush=True)

for dtype in ("float32", "float64"):
    for r in sweep_rows(["cupy"], dtype, [], 131072, 1000):
        result["sweeps"].append(r)
        print(f"sweep cupy {dtype}: {r['net_epochs_per_s'] / 1e9:.2f} G net-epochs/s", flush=True)
try:
    go = peers.make_torch_sweep(WORKLOADS["or-gate"], "float32", np.geomspace(0.01, 50, 131072),
                                100, device="cuda")
    go()
    t = time_per_call(go, budget=1.0, repeats=3)
    rate = 131072 * 100 / t
    result["sweeps"].append({"backend": "torch bmm cuda", "net_epochs_per_s": rate})
    print(f"sweep torch bmm cuda: {rate / 1e9:.3f} G net-epochs/s", flush=True)
except Exception as exc:
    print(f"torch sweep skipped: {exc!r}")

for batch in (16, 64, 256, 1024, 4096):
    w = Workload(f"digits-b{batch}", (64, 64, 10), batch)
    row = {"batch": batch}
    for backend in ("numba", "cupy"):
        net, X, Y, step = step_setup(w, backend, "float32")
        row[backend] = time_per_call(step, net.backend.synchronize)
    result["crossover"].append(row)
    print(f"digits batch {batch:5d}: numba {row['numba'] * 1e6:8.1f} us, "
          f"cupy {row['cupy'] * 1e6:8.1f} us", flush=True)

with open(os.path.join(out, "gpu-extra.json"), "w") as fh:
    json.dump(result, fh, indent=1, default=float)
