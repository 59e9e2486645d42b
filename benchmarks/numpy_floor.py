"""The floor of the numpy backend's BLAS-bound steps against PyTorch eager (issue 18).

Times, interleaved in one run: the numpy backend's step, PyTorch eager's (when torch is
installed), the step's GEMMs alone with NumPy (the reference's layouts, ``out=``
buffers), and one elementwise pass (an add, an exp) over each array shape the step
works on; then the first layer's SGD update with and without a GEMM reading its weights
on BLAS's threads just before (as in a step). A NumPy step cannot cost less than its
GEMMs plus the elementwise passes its math needs, one ufunc call each (NumPy fuses none);
``min_passes`` counts the fewest a sigmoid / squared-error step under plain SGD can do
with (the reference makes these).

    python benchmarks/numpy_floor.py [--workload large|mnist] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

from nnkit.bench.runner import interleaved_times, step_setup
from nnkit.bench.workloads import WORKLOADS


def min_passes(sizes, n):
    """{shape: (passes, of which exps)} over the arrays of a sigmoid network's step on n
    rows under squared error and plain SGD. Per layer, over its (n, o) output: the
    biased sigmoid with one exp (-b - z, exp, +1, 1/x), the derivative a(1-a)g (three
    passes), dZ times lr and the bias gradient's column sum; over its (i, o) weights: W
    minus dW (lr x the gradient already); over the (n, o) output: the difference, the
    loss's dot product and the gradient's scaling by 1 / n."""
    passes = {}

    def add(shape, k, exps=0):
        p, e = passes.get(shape, (0, 0))
        passes[shape] = (p + k, e + exps)
    for i, o in zip(sizes, sizes[1:]):
        add((n, o), 4 + 5, exps=1)
        add((i, o), 1)
    add((n, sizes[-1]), 3)
    return passes


def gemm_calls(X, sizes):
    """The step's products with NumPy, forward then backward: A_l = A_{l-1} W_l, then
    per layer from the last dW_l = A_{l-1}^T dZ_l and (but the first) dZ_l W_l^T."""
    rng = np.random.default_rng(0)
    f32 = X.dtype
    n = X.shape[0]
    Ws = [rng.random((i, o), dtype=f32) for i, o in zip(sizes, sizes[1:])]
    As = [X] + [rng.random((n, o), dtype=f32) for o in sizes[1:]]
    dZs = [rng.random((n, o), dtype=f32) for o in sizes[1:]]
    dWs = [np.empty_like(W) for W in Ws]
    Gs = [np.empty((n, i), f32) for i in sizes[:-1]]

    def run():
        for l, W in enumerate(Ws):
            np.matmul(As[l], W, out=As[l + 1])
        for l in range(len(Ws) - 1, -1, -1):
            np.matmul(As[l].T, dZs[l], out=dWs[l])
            if l:
                np.matmul(dZs[l], Ws[l].T, out=Gs[l])
    return run


def update_after_gemm(X, W, repeats=200):
    """Median seconds of the SGD update ``W -= dW`` of the first layer (one pass, as the
    reference: dW is already lr times the gradient), (a) right after a GEMM ``X @ W`` read W on BLAS's threads, as in a
    step, and (b) with W untouched by BLAS since its last update."""
    import time
    rng = np.random.default_rng(2)
    W = W.copy()
    dW = rng.random(W.shape, dtype=W.dtype) * np.float32(1e-3)
    H = np.empty((X.shape[0], W.shape[1]), W.dtype)
    out = []
    for read in (True, False):
        ts = []
        for _ in range(repeats):
            if read:
                np.matmul(X, W, out=H)
            t = time.perf_counter()
            W -= dW
            ts.append(time.perf_counter() - t)
        out.append(float(np.median(ts)))
    return tuple(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="large", choices=("large", "mnist", "digits"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per timing")
    args = ap.parse_args(argv)

    w, dtype = WORKLOADS[args.workload], "float32"
    net, X, _, step = step_setup(w, "numpy", dtype)
    X = np.asarray(X)
    passes = min_passes(w.sizes, X.shape[0])
    fns = {"numpy step": step, "numpy gemms": gemm_calls(X, w.sizes)}
    arrays = {}
    for shape in passes:
        A = arrays[shape] = (np.random.default_rng(1).random(shape, dtype=np.float32),
                             np.empty(shape, np.float32))
        fns[f"add {shape}"] = (lambda A=A: np.add(A[0], 1, out=A[1]))
        fns[f"exp {shape}"] = (lambda A=A: np.exp(A[0], out=A[1]))
    try:
        from nnkit.bench import peers
        fns["torch eager step"] = peers.make_torch_eager(w, dtype)[0]
    except ImportError as exc:
        print(f"torch eager: skipped ({exc})")
    times = dict(zip(fns, interleaved_times(list(fns.values()), lambda: None,
                                            args.rounds, args.budget)))
    after_read, alone = update_after_gemm(X, np.asarray(net.get_params()[0][0]))
    elementwise = sum((k - e) * times[f"add {s}"] + e * times[f"exp {s}"]
                      for s, (k, e) in passes.items())
    floor = times["numpy gemms"] + elementwise
    ms = {k: v * 1e3 for k, v in times.items()}
    out = {"workload": args.workload, "sizes": list(w.sizes), "batch": X.shape[0],
           "machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "numpy": np.__version__, "times_ms": ms,
           "min_passes": {str(s): p for s, p in passes.items()},
           "elementwise_floor_ms": elementwise * 1e3, "floor_ms": floor * 1e3,
           "first_update_ms": {"after_gemm_read": after_read * 1e3, "alone": alone * 1e3},
           "loadavg": os.getloadavg()}
    for k, v in ms.items():
        print(f"{k:>22}: {v:9.4f} ms")
    count = sum(k for k, _ in passes.values())
    print(f"{'floor':>22}: {floor * 1e3:9.4f} ms (the GEMMs + {count} passes: "
          f"{elementwise * 1e3:.3f} ms)")
    print(f"first layer's SGD update: {after_read * 1e3:.4f} ms right after a GEMM read W "
          f"on BLAS's threads, {alone * 1e3:.4f} ms otherwise")
    if "torch eager step" in times:
        t = times["torch eager step"]
        out["numpy_vs_torch"] = t / times["numpy step"]
        out["floor_vs_torch"] = t / floor
        out["gemms_vs_torch"] = t / times["numpy gemms"]
        print(f"vs torch eager: the numpy step {out['numpy_vs_torch']:.3f}x, its floor "
              f"{out['floor_vs_torch']:.3f}x, its GEMMs alone {out['gemms_vs_torch']:.3f}x "
              "(target 0.9x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
