"""A tanh hidden layer on the BLAS path (issue 18): the MNIST-shaped 784-256-10 step
(tanh hidden, sigmoid output, squared error, plain SGD, batch 512, float32) on nnkit's
numba and numpy backends and in PyTorch eager (autograd, same network), and the XOR
gate's 2-4-1 tanh/sigmoid full-batch fit (generated kernel, 2,000 epochs) on numba.

Before numba's tanh was built from arithmetic (``_numba_kernels.tanh64``/``tanh32``), a
loop over ``math.tanh`` was a scalar libm call per element. Interleaved rounds with a
pause before each measurement, best of each. torch is optional (skipped without it).

Run: ``python benchmarks/tanh_step.py [--json PATH]`` (not part of pytest).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import nnkit
from nnkit.bench import time_per_call

SIZES, BATCH, LR = (784, 256, 10), 512, 0.01


def nnkit_step(backend):
    net = nnkit.Network([nnkit.Dense(SIZES[0], SIZES[1], "tanh"),
                         nnkit.Dense(SIZES[1], SIZES[2], "sigmoid")],
                        loss="squared_error", dtype="float32", seed=0, backend=backend)
    rng = np.random.default_rng(0)
    X, Y = net.prepare(rng.uniform(size=(BATCH, SIZES[0])), rng.uniform(size=(BATCH, SIZES[2])))
    be, state = net.backend, net.train_state
    return lambda: be.train_step(state, X, Y, LR)


def torch_step():
    import torch
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.uniform(size=(BATCH, SIZES[0])), dtype=torch.float32)
    Y = torch.tensor(rng.uniform(size=(BATCH, SIZES[2])), dtype=torch.float32)
    params = [torch.randn(a, b) * 0.05 for a, b in zip(SIZES, SIZES[1:])]
    params = [p.requires_grad_() for W in params for p in (W, torch.zeros(W.shape[1]))]

    def step():
        h = torch.tanh(X @ params[0] + params[1])
        out = torch.sigmoid(h @ params[2] + params[3])
        loss = ((out - Y) ** 2).sum() / (2 * BATCH)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
    return step


def xor_net(dtype):
    return nnkit.Network([nnkit.Dense(2, 4, "tanh"), nnkit.Dense(4, 1, "sigmoid")],
                         loss="mse", dtype=dtype, seed=0, backend="numba")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    steps = {"nnkit numba": nnkit_step("numba"), "nnkit numpy": nnkit_step("numpy")}
    try:
        steps["torch eager"] = torch_step()
    except ImportError:
        print("torch not installed: its row is skipped")
    names = list(steps)
    best = [float("inf")] * len(names)
    for _ in range(args.rounds):  # in turn, a pause before each: the other library's
        for i, n in enumerate(names):  # BLAS / OpenMP threads spin after its calls
            time.sleep(0.3)
            best[i] = min(best[i], time_per_call(steps[n], budget=0.3))
    out = {"machine": f"{platform.processor() or platform.machine()}, python "
                      f"{platform.python_version()}, numpy {np.__version__}",
           "load_average": list(os.getloadavg()),
           "step_ms": {n: 1e3 * t for n, t in zip(names, best)}}
    for n in names:
        print(f"784-256-10 tanh step, {n:12s} {out['step_ms'][n]:.3f} ms")
    X, Y = nnkit.datasets.xor_gate()
    out["xor_fit_us"] = {}
    for dtype in ("float64", "float32"):
        xor_net(dtype).fit(X, Y, epochs=2000, lr=0.5)  # compile or load its kernel
        samples = []
        for _ in range(15):
            net = xor_net(dtype)
            t = time.thread_time()
            net.fit(X, Y, epochs=2000, lr=0.5)
            samples.append(time.thread_time() - t)
        out["xor_fit_us"][dtype] = 1e6 * min(samples)
        print(f"xor 2-4-1 tanh, 2,000 epochs, numba {dtype}: {1e6 * min(samples):.1f} us")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
