"""The cupy backend's code run on CPU through tests/fake_cupy.py (kernels compiled as
C++): its Python logic and kernel math against the NumPy backend. Real GPU checks are in
test_gpu.py."""
import sys

import numpy as np
import pytest

import nnkit
from nnkit import backends as registry

import fake_cupy

pytestmark = pytest.mark.skipif(not fake_cupy.compiler_available(),
                                reason="no C++ compiler to emulate cupy kernels")


@pytest.fixture
def cupy_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_module())
    monkeypatch.setattr(registry, "_instances", {})
    return nnkit.get_backend("cupy")


def nets(sizes, acts, loss, backend, dtype="float64", seed=0):
    layers = [nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)]
    return (nnkit.Network(layers, loss=loss, dtype=dtype, seed=seed, backend=backend),
            nnkit.Network(layers, loss=loss, dtype=dtype, seed=seed, backend="numpy"))


CASES = [  # (sizes, activations, loss, rows): <= 64 rows -> one generated RawKernel
    ((2, 2, 1), ("sigmoid", "sigmoid"), "squared_error", 4),
    ((3, 5, 2), ("tanh", "sigmoid"), "binary_crossentropy", 20),
    ((3, 6, 2), ("relu", "linear"), "mse", 100),                 # ElementwiseKernel path
    ((4, 8, 3, 1), ("sigmoid", "tanh", "sigmoid"), "squared_error", 90),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[0])) + f"-n{c[3]}")
@pytest.mark.parametrize("batch_size", [None, 7])
def test_training_matches_numpy_backend(cupy_backend, case, batch_size):
    sizes, acts, loss, n = case
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(n, sizes[0])), rng.uniform(size=(n, sizes[-1]))
    got, ref = nets(sizes, acts, loss, cupy_backend)
    assert got.backend.name == "cupy"
    h1 = got.fit(X, Y, epochs=30, lr=0.2, batch_size=batch_size, shuffle=True)
    h2 = ref.fit(X, Y, epochs=30, lr=0.2, batch_size=batch_size, shuffle=True)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-9)
    for (W, b), (rW, rb) in zip(got.get_params(), ref.get_params()):
        np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.predict(X), ref.predict(X), rtol=1e-9)
    assert type(got.predict(X, as_numpy=False)).__module__ == "cupy"
    assert type(got.predict(X)) is np.ndarray


def test_single_steps_and_gradients(cupy_backend):
    X, Y = nnkit.datasets.or_gate()
    got, ref = nets((2, 2, 1), ("sigmoid", "sigmoid"), "squared_error", cupy_backend)
    Xd, Yd = got.prepare(X, Y)
    losses = [float(cupy_backend.train_step(got.train_state, Xd, Yd, 0.5)) for _ in range(3)]
    assert losses == pytest.approx(ref.fit(X, Y, epochs=3, lr=0.5).loss, rel=1e-12)
    for (g, rg) in zip(got.gradients(X, Y), ref.gradients(X, Y)):
        np.testing.assert_allclose(g[0], rg[0], rtol=1e-12)
    assert nnkit.gradcheck(got, X, Y) < 1e-6


@pytest.mark.parametrize("rows", [4, 100])
def test_sweep_matches_numpy_including_divergence(cupy_backend, rows):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(rows, 2)), 100 * rng.uniform(size=(rows, 1))
    got, ref = nets((2, 3, 1), ("relu", "linear"), "mse", cupy_backend)
    lrs = [1e-3, 0.05, 30.0]
    a = nnkit.sweep(got, X, Y, lr=lrs, seed=[0, 1], epochs=40,
                    lr_schedule=nnkit.InverseTime(0.05))
    b = nnkit.sweep(ref, X, Y, lr=lrs, seed=[0, 1], epochs=40,
                    lr_schedule=nnkit.InverseTime(0.05))
    np.testing.assert_array_equal(a.diverged_epoch, b.diverged_epoch)
    assert a.diverged.any()
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-9)
    np.testing.assert_allclose(a.stacked[0][0], b.stacked[0][0], rtol=1e-9, atol=1e-12)


def test_float32_and_save_load_across(cupy_backend, tmp_path):
    X, Y = nnkit.datasets.xor_gate()
    got, ref = nets((2, 4, 1), ("tanh", "sigmoid"), "binary_crossentropy", cupy_backend,
                    dtype="float32")
    h1 = got.fit(X, Y, epochs=100, lr=0.5)
    h2 = ref.fit(X, Y, epochs=100, lr=0.5)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-4)
    nnkit.save(got, tmp_path / "n.npz")
    back = nnkit.load(tmp_path / "n.npz", backend="numpy")
    np.testing.assert_allclose(back.predict(X), got.predict(X), rtol=1e-6)


def test_device_info_and_availability(cupy_backend):
    # (Refusing real CuPy arrays on the numpy backend is tested in test_gpu.py: the
    # stand-in's arrays are NumPy arrays underneath.)
    assert cupy_backend.device() == "cuda:0 fake GPU"
    assert "cupy" in nnkit.available_backends()
    assert cupy_backend.versions()["cupy"] == "0.0-fake"


def test_kernels_are_built_once_per_architecture(cupy_backend):
    X, Y = nnkit.datasets.or_gate()
    for _ in range(3):
        got, _ = nets((2, 2, 1), ("sigmoid", "sigmoid"), "squared_error", cupy_backend)
        got.fit(X, Y, epochs=3, lr=0.5)
        got.fit(np.tile(X, (30, 1)), np.tile(Y, (30, 1)), epochs=2, lr=0.5)  # 120 rows
    raw = [k for k in cupy_backend._kernels if isinstance(k, tuple)]
    assert len(raw) == 1 and raw[0][0] == "nnkit_fit"
    assert {"nnkit_act", "nnkit_act_backward", "nnkit_sgd"} <= set(cupy_backend._kernels)
