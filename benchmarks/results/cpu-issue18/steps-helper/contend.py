import time, statistics, numpy as np
import nnkit
from nnkit.bench.workloads import WORKLOADS
from nnkit.bench.runner import step_setup, time_per_call
w = WORKLOADS["mnist"]
net, X, Y, step = step_setup(w, "numba", "float32")
step()
a = np.random.default_rng(0).uniform(size=(512, 512)).astype(np.float32); o = np.empty_like(a)
for rep in range(3):
    time.sleep(0.5)
    t_quiet = time_per_call(step, budget=0.3)
    for _ in range(20): np.matmul(a, a, out=o)   # numpy's OpenBLAS threads now spinning
    t_after_np = time_per_call(step, budget=0.3)
    time.sleep(0.5)
    t0 = time.perf_counter(); 
    for _ in range(20): np.matmul(a, a, out=o)
    ts = []
    for _ in range(20):
        t1 = time.perf_counter(); step(); ts.append(time.perf_counter() - t1)
    print(f"after sleep {t_quiet*1e3:.3f} ms   right after numpy gemms {t_after_np*1e3:.3f} ms   first 20 steps after numpy gemm: {[round(t*1e3,2) for t in ts[:8]]}")
