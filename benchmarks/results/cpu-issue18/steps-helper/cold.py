import sys, time, numpy as np
t0 = time.perf_counter()
import nnkit
from nnkit.bench.workloads import WORKLOADS
from nnkit.bench.runner import step_setup
for dtype in ("float32", "float64"):
    net, X, Y, step = step_setup(WORKLOADS["mnist"], "numba", dtype)
    t = time.perf_counter(); step(); s1 = time.perf_counter() - t
    # a fit on the blas epochs path (blas_train_epochs) and the fused path (train_epochs)
    t = time.perf_counter(); net.fit(np.asarray(X), np.asarray(Y), epochs=2, lr=0.01, batch_size=256, progress=False); s2 = time.perf_counter() - t
    small = nnkit.Network([nnkit.Dense(8, 8, "tanh"), nnkit.Dense(8, 2, "sigmoid")], loss="mse", dtype=dtype, seed=0, backend="numba")
    Xs = np.random.default_rng(0).normal(size=(40, 8)); Ys = np.random.default_rng(1).uniform(size=(40, 2))
    t = time.perf_counter(); small.fit(Xs, Ys, epochs=3, lr=0.1, batch_size=4, progress=False); s3 = time.perf_counter() - t
    print(f"{dtype}: first blas step {s1:.2f} s, blas epochs {s2:.2f} s, small fit {s3:.2f} s")
