"""GPU-only checks of the cupy backend (marker `gpu`; skipped with the reason where no
GPU is usable). The backend-parametrized suite also runs on cupy wherever it is usable."""
import numpy as np
import pytest

import nnkit

pytestmark = pytest.mark.gpu

ARCH = [nnkit.Dense(3, 16, "tanh"), nnkit.Dense(16, 8, "sigmoid"), nnkit.Dense(8, 2, "linear")]
TINY = [nnkit.Dense(3, 2, "tanh"), nnkit.Dense(2, 2, "linear")]  # fits a thread's registers


def run(backend, dtype, steps, batch_size=None, shuffle=False, n=64, arch=ARCH):
    """ARCH: cuBLAS + fused kernels; TINY on few rows: the generated one-launch kernels."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    Y = rng.normal(size=(n, 2))
    net = nnkit.Network(arch, loss="mse", dtype=dtype, seed=1, backend=backend)
    per_epoch = 1 if batch_size is None else -(-n // batch_size)
    hist = net.fit(X, Y, epochs=steps // per_epoch, lr=0.05, batch_size=batch_size,
                   shuffle=shuffle)
    return np.array(hist.loss), net


@pytest.mark.parametrize("batch_size,shuffle,n,arch", [
    (None, False, 4, TINY), (None, False, 64, ARCH), (None, False, 200, ARCH),
    (16, True, 64, ARCH)])
def test_float64_parity_1000_steps(batch_size, shuffle, n, arch):
    ref, ref_net = run("numpy", "float64", 1000, batch_size, shuffle, n, arch)
    got, net = run("cupy", "float64", 1000, batch_size, shuffle, n, arch)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    for (W, b), (rW, rb) in zip(net.get_params(), ref_net.get_params()):
        np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [64, 200])
def test_float32_parity_100_steps(n):
    ref, _ = run("numpy", "float32", 100, n=n)
    got, _ = run("cupy", "float32", 100, n=n)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_parameters_and_outputs_stay_on_the_device():
    import cupy
    _, net = run("cupy", "float32", 10)
    assert all(isinstance(W, cupy.ndarray) for W, _ in net.train_state.params)
    X = cupy.asarray(np.random.default_rng(0).normal(size=(5, 3)), dtype=cupy.float32)
    out = net.predict(X, as_numpy=False)
    assert isinstance(out, cupy.ndarray) and out.shape == (5, 2)
    assert isinstance(net.predict(X), np.ndarray)


@pytest.mark.parametrize("n", [32, 200])
def test_no_host_synchronisation_inside_a_step(n):
    import cupyx
    net = nnkit.Network(ARCH, loss="mse", dtype="float32", seed=1, backend="cupy")
    be = net.backend
    X, Y = net.prepare(np.ones((n, 3)), np.zeros((n, 2)))
    be.train_step(net.train_state, X, Y, 0.1)  # warm: buffers, kernels
    with cupyx.allow_synchronize(False):  # raises DeviceSynchronized on any sync
        for _ in range(10):
            be.train_step(net.train_state, X, Y, 0.1)
    be.synchronize()


def test_fused_kernels_are_built_once():
    run("cupy", "float32", 5, n=200)
    run("cupy", "float32", 5, n=4, arch=TINY)
    be = nnkit.get_backend("cupy")
    kernels = dict(be._kernels)
    assert {"nnkit_act", "nnkit_act_backward", "nnkit_sgd"} <= set(kernels)
    assert any(isinstance(k, tuple) and k[0] == "nnkit_fit" for k in kernels)
    run("cupy", "float32", 5, n=200)
    run("cupy", "float32", 5, n=4, arch=TINY)
    assert dict(be._kernels).keys() == kernels.keys()
    assert all(be._kernels[k] is v for k, v in kernels.items())


def test_sweep_in_one_launch_matches_numpy():
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        dtype="float64", seed=0)
    lrs = np.geomspace(0.01, 50, 300)
    ref = nnkit.sweep(net, X, Y, lr=lrs, seed=[0, 1], epochs=500, backend="numpy")
    got = nnkit.sweep(net, X, Y, lr=lrs, seed=[0, 1], epochs=500, backend="cupy")
    np.testing.assert_array_equal(got.diverged_epoch, ref.diverged_epoch)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-9)


def test_numpy_backend_refuses_cupy_arrays_clearly():
    import cupy
    net = nnkit.Network(ARCH, backend="numpy")
    with pytest.raises(TypeError, match="convert"):
        net.predict(cupy.zeros((2, 3)))
