"""The generated CUDA kernels (backends/_cuda_codegen.py), compiled as plain C++ with the
host compiler and run one 'thread' at a time, against the NumPy backend. This checks
their math on CPU CI; tests/test_gpu.py runs them on a GPU where one is usable."""
import shutil

import numpy as np
import pytest

import fake_cupy
import nnkit
from nnkit.backends import _cuda_codegen as cg

CXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to run CUDA sources on CPU")


def kernel(source, name):
    """The generated kernel compiled as C++, run thread by thread (tests/fake_cupy.py)."""
    return fake_cupy.RawKernel(source, name)


ARCHS = [((2, 2, 1), ("sigmoid", "sigmoid"), "squared_error"),
         ((2, 4, 1), ("tanh", "sigmoid"), "binary_crossentropy"),
         ((3, 5, 4, 2), ("relu", "tanh", "linear"), "mse")]


def data(sizes, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, sizes[0])), rng.uniform(size=(n, sizes[-1]))


def network(sizes, acts, loss, seed=0, dtype="float64"):
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend="numpy")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: "-".join(map(str, a[0])))
def test_fit_kernel_matches_numpy_backend(arch, dtype):
    sizes, acts, loss = arch
    X, Y = data(sizes)
    ref = network(sizes, acts, loss, dtype=dtype)
    kacts = list(acts[:-1]) + ["linear" if loss == "binary_crossentropy" else acts[-1]]
    fit = kernel(cg.fit_source(sizes, kacts, loss, len(X), dtype), "nnkit_fit")
    params = [np.ascontiguousarray(a) for pair in ref.get_params() for a in pair]
    lrs = np.full(300, 0.3)
    losses = np.full(300, np.nan)
    done = np.zeros(1, dtype=np.int32)
    Xd, Yd = X.astype(dtype), Y.astype(dtype)
    fit((1,), (1,), (Xd, Yd, *params, lrs, np.float64(0), np.int32(300), losses, done))
    hist = ref.fit(X, Y, epochs=300, lr=0.3)
    tol = 1e-9 if dtype == "float64" else 1e-4
    assert done[0] == 300
    np.testing.assert_allclose(losses, hist.loss, rtol=tol)
    for got, want in zip(params, [a for pair in ref.get_params() for a in pair]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 1e-3)


def test_fit_kernel_single_step_with_a_constant_rate():
    sizes, acts, loss = ARCHS[0]
    X, Y = nnkit.datasets.or_gate()
    ref = network(sizes, acts, loss)
    fit = kernel(cg.fit_source(sizes, acts, loss, 4, "float64"), "nnkit_fit")
    params = [np.ascontiguousarray(a) for pair in ref.get_params() for a in pair]
    losses = np.full(1, np.nan)
    done = np.zeros(1, dtype=np.int32)
    # A null rate table: the kernel uses the constant rate.
    fit((1,), (1,), (X, Y, *params, np.uint64(0), np.float64(1.0), np.int32(1), losses, done))
    hist = ref.fit(X, Y, epochs=1, lr=1.0)
    assert losses[0] == pytest.approx(hist.loss[0], rel=1e-12)
    np.testing.assert_allclose(params[0], ref.get_params()[0][0], rtol=1e-12)


def test_sweep_kernel_matches_numpy_sweep_with_schedule_and_divergence():
    sizes, acts = (2, 4, 1), ("relu", "linear")
    X, Y = nnkit.datasets.or_gate()
    Y = Y * 1e3
    template = network(sizes, acts, "mse")
    lrs = [1e-4, 1e-3, 40.0]
    seeds = [0, 3]
    schedule = nnkit.InverseTime(0.01)
    ref = nnkit.sweep(template, X, Y, lr=lrs, seed=seeds, epochs=200, lr_schedule=schedule)
    sweep = kernel(cg.sweep_source(sizes, acts, "mse", 4, "float64"), "nnkit_sweep")
    C = len(ref.configs)
    init = {s: network(sizes, acts, "mse", seed=s).get_params() for s in seeds}
    stacked = [np.ascontiguousarray(np.stack([init[c["seed"]][l][k] for c in ref.configs]))
               for l in range(2) for k in range(2)]
    rates = np.array([c["lr"] for c in ref.configs])
    factors = schedule.rates(1.0, 200)
    losses = np.full((C, 200), np.nan)
    diverged = np.zeros(C, dtype=np.int64)
    sweep((2,), (4,), (X, Y, *stacked, rates, factors, np.int32(200), losses, diverged,
                       np.int32(C)))  # 8 threads for 6 configurations: 2 idle
    np.testing.assert_array_equal(diverged, ref.diverged_epoch)
    assert ref.diverged.any() and not ref.diverged.all()
    for i in range(C):
        e = ref.diverged_epoch[i]
        upto = 200 if e < 0 else e + 1
        np.testing.assert_allclose(losses[i, :upto], ref.loss[i, :upto], rtol=1e-9)
        np.testing.assert_allclose(stacked[0][i], ref.params[i][0][0], rtol=1e-9, atol=1e-12)
