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


# --- issue 14: optimizers, L2 and softmax cross-entropy on the cublas path -------------
CLASSIFIER = [nnkit.Dense(3, 16, "relu"), nnkit.Dense(16, 4, "softmax")]


def classification(n=96):
    rng = np.random.default_rng(4)
    return rng.normal(size=(n, 3)), rng.integers(0, 4, n)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("l2", [0.0, 1e-3])
@pytest.mark.parametrize("loss", ["mse", "categorical_crossentropy"])
def test_optimizer_parity_float64_200_steps(optimizer, l2, loss):
    """The update kernels (one per rule, L2 fused) and the rowwise CE kernel equal the
    NumPy backend: 100 full-batch steps, then 100 mini-batch steps on the same state."""
    if loss == "mse":
        rng = np.random.default_rng(0)
        X, Y, arch = rng.normal(size=(96, 3)), rng.normal(size=(96, 2)), ARCH
    else:
        (X, Y), arch = classification(), CLASSIFIER
    lr = {"sgd": 0.1, "momentum": 0.02, "nesterov": 0.02, "adam": 0.005}[optimizer]
    nets = [nnkit.Network(arch, loss=loss, dtype="float64", seed=1, backend=b)
            for b in ("numpy", "cupy")]
    hists = [[net.fit(X, Y, epochs=100, lr=lr, optimizer=optimizer, l2=l2).loss,
              net.fit(X, Y, epochs=25, lr=lr, batch_size=24, shuffle=True,
                      optimizer=optimizer, l2=l2).loss] for net in nets]
    assert nets[1].backend.plan("epochs", nets[1].train_state.spec, 96) == "cublas"
    for got, want in zip(hists[1], hists[0]):
        np.testing.assert_allclose(got, want, rtol=1e-9)
    for (W, b), (rW, rb) in zip(nets[1].get_params(), nets[0].get_params()):
        np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(nets[1].predict(X), nets[0].predict(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["nesterov", "adam"])
def test_optimizer_float32_losses_100_steps(optimizer):
    X, Y = classification()
    losses = [nnkit.Network(CLASSIFIER, loss="categorical_crossentropy", dtype="float32",
                            seed=1, backend=b).fit(X, Y, epochs=100, lr=0.01,
                                                   optimizer=optimizer, l2=1e-3).loss
              for b in ("numpy", "cupy")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_tiny_network_with_adam_leaves_the_generated_kernel_and_matches_numpy():
    X, Y = nnkit.datasets.or_gate()
    layers = [nnkit.Dense(2, 2, "tanh"), nnkit.Dense(2, 1, "sigmoid")]  # generated-sized
    nets = [nnkit.Network(layers, dtype="float64", seed=0, backend=b)
            for b in ("numpy", "cupy")]
    hists = [net.fit(X, Y, epochs=200, lr=0.05, optimizer="adam", l2=1e-3).loss
             for net in nets]
    be = nets[1].backend
    assert be.plan("epochs", nets[1].train_state.spec, 4) == "cublas"
    np.testing.assert_allclose(hists[1], hists[0], rtol=1e-9)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_no_host_synchronisation_in_an_optimizer_step(optimizer):
    import cupyx
    X, Y = classification(200)
    net = nnkit.Network(CLASSIFIER, loss="categorical_crossentropy", dtype="float32", seed=1,
                        backend="cupy")
    net.fit(X, Y, epochs=1, lr=0.01, optimizer=optimizer, l2=1e-3)  # state, kernels, buffers
    be = net.backend
    Xd, Yd = net.prepare(X, Y)
    be.train_step(net.train_state, Xd, Yd, 0.01)
    with cupyx.allow_synchronize(False):  # raises DeviceSynchronized on any sync
        for _ in range(10):
            be.train_step(net.train_state, Xd, Yd, 0.01)
    be.synchronize()
    names = {k if isinstance(k, str) else k[0] for k in be._kernels}
    assert {f"nnkit_update_{optimizer}", "nnkit_rowwise_loss"} <= names


def test_sweep_with_adam_matches_numpy():
    X, Y = classification()
    net = nnkit.Network(CLASSIFIER, loss="categorical_crossentropy", dtype="float64", seed=0)
    kwargs = dict(lr=[0.003, 0.01, 0.03], seed=[0, 1], epochs=40, optimizer="adam", l2=1e-3)
    ref = nnkit.sweep(net, X, Y, backend="numpy", **kwargs)
    got = nnkit.sweep(net, X, Y, backend="cupy", **kwargs)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-9)
