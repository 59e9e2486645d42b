"""Every backend against the NumPy reference backend (DESIGN.md, Parity)."""
import numpy as np
import pytest

import nnkit

from conftest import BACKENDS
from warm_kernels import PARITY_ARCHS, PARITY_ROWS

OTHERS = [b for b in BACKENDS if b != "numpy"] or [
    pytest.param("numba", marks=pytest.mark.skip(reason="only the numpy backend is usable"))]

# Shared with warm_kernels.py, which compiles their generated kernels ahead of the tests.
ARCHS = PARITY_ARCHS
ROWS = PARITY_ROWS


def run(backend, sizes, acts, loss, dtype, steps, batch_size, shuffle):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(ROWS, sizes[0]))
    Y = rng.uniform(size=(ROWS, sizes[-1]))
    net = nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                        loss=loss, dtype=dtype, seed=3, backend=backend)
    per_epoch = 1 if batch_size is None else -(-ROWS // batch_size)
    hist = net.fit(X, Y, epochs=steps // per_epoch, lr=0.05, batch_size=batch_size,
                   shuffle=shuffle)
    return np.array(hist.loss), net.get_params()


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: "-".join(map(str, a[0])))
@pytest.mark.parametrize("batch_size,shuffle", [(None, False), (5, True), (1, True)],
                         ids=["batch", "minibatch", "sgd"])
def test_float64_trajectory_1000_steps(other, arch, batch_size, shuffle):
    ref_loss, ref_params = run("numpy", *arch, "float64", 1000, batch_size, shuffle)
    loss, params = run(other, *arch, "float64", 1000, batch_size, shuffle)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-9)
    for (W, b), (rW, rb) in zip(params, ref_params):
        np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: "-".join(map(str, a[0])))
def test_float32_loss_100_steps(other, arch):
    ref_loss, _ = run("numpy", *arch, "float32", 100, None, False)
    loss, _ = run(other, *arch, "float32", 100, None, False)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)


@pytest.mark.parametrize("other", OTHERS)
def test_large_layers_take_the_blas_path_with_parity(other):
    """Layers above the loop threshold (rows x weights) take the BLAS path on CPU backends."""
    ref_loss, ref_params = run("numpy", [3, 200, 150, 2], ["tanh", "tanh", "linear"], "mse",
                               "float64", 20, 8, True)
    loss, params = run(other, [3, 200, 150, 2], ["tanh", "tanh", "linear"], "mse",
                       "float64", 20, 8, True)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-9)
    np.testing.assert_allclose(params[1][0], ref_params[1][0], rtol=1e-9, atol=1e-12)
