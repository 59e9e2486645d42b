"""GPU-only checks of the cupy backend (marker `gpu`; skipped with the reason where no
GPU is usable). The backend-parametrized suite also runs on cupy wherever it is usable."""
import numpy as np
import pytest

import nnkit

pytestmark = pytest.mark.gpu

ARCH = [nnkit.Dense(3, 16, "tanh"), nnkit.Dense(16, 8, "sigmoid"), nnkit.Dense(8, 2, "linear")]


def run(backend, dtype, steps, batch_size=None, shuffle=False):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    Y = rng.normal(size=(64, 2))
    net = nnkit.Network(ARCH, loss="mse", dtype=dtype, seed=1, backend=backend)
    per_epoch = 1 if batch_size is None else -(-64 // batch_size)
    hist = net.fit(X, Y, epochs=steps // per_epoch, lr=0.05, batch_size=batch_size,
                   shuffle=shuffle)
    return np.array(hist.loss), net


@pytest.mark.parametrize("batch_size,shuffle", [(None, False), (16, True)])
def test_float64_parity_1000_steps(batch_size, shuffle):
    ref, ref_net = run("numpy", "float64", 1000, batch_size, shuffle)
    got, net = run("cupy", "float64", 1000, batch_size, shuffle)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    for (W, b), (rW, rb) in zip(net.get_params(), ref_net.get_params()):
        np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)


def test_float32_parity_100_steps():
    ref, _ = run("numpy", "float32", 100)
    got, _ = run("cupy", "float32", 100)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_parameters_and_outputs_stay_on_the_device():
    import cupy
    _, net = run("cupy", "float32", 10)
    assert all(isinstance(W, cupy.ndarray) for W, _ in net._state.params)
    X = cupy.asarray(np.random.default_rng(0).normal(size=(5, 3)), dtype=cupy.float32)
    out = net.predict(X, as_numpy=False)
    assert isinstance(out, cupy.ndarray) and out.shape == (5, 2)
    assert isinstance(net.predict(X), np.ndarray)


def test_no_host_synchronisation_inside_a_step():
    import cupyx
    net = nnkit.Network(ARCH, loss="mse", dtype="float32", seed=1, backend="cupy")
    be = net.backend
    X, Y = net._data(np.ones((32, 3)), np.zeros((32, 2)))
    be.train_step(net._state, X, Y, 0.1)  # warm: buffers, kernels
    with cupyx.allow_synchronize(False):  # raises DeviceSynchronized on any sync
        for _ in range(10):
            be.train_step(net._state, X, Y, 0.1)
    be.synchronize()


def test_fused_kernels_are_built_once():
    run("cupy", "float32", 5)
    be = nnkit.get_backend("cupy")
    kernels = dict(be._kernels)
    assert {"act", "act_backward", "sgd"} <= set(kernels)
    run("cupy", "float32", 5)
    assert all(be._kernels[k] is v for k, v in kernels.items())


def test_numpy_backend_refuses_cupy_arrays_clearly():
    import cupy
    net = nnkit.Network(ARCH, backend="numpy")
    with pytest.raises(TypeError, match="convert"):
        net.predict(cupy.zeros((2, 3)))
