"""Issue 14 on the cupy backend, run on CPU through tests/fake_cupy.py (kernels compiled
as C++): the cublas path's update kernels (one ElementwiseKernel per rule of the math
table, L2 fused into the weights' launch) and its rowwise softmax cross-entropy kernel
train like the NumPy backend in float64 (1e-9), and the planner keeps optimizers and
rowwise losses off the generated RawKernels, which train plain sgd only. The same
parity on a real GPU is in test_gpu.py."""
import sys

import numpy as np
import pytest

import fake_cupy
import nnkit
from nnkit import backends as registry
from nnkit.backends import ModelSpec

pytestmark = pytest.mark.skipif(not fake_cupy.compiler_available(),
                                reason="no C++ compiler to emulate cupy kernels")

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
LR = {"sgd": 0.3, "momentum": 0.05, "nesterov": 0.05, "adam": 0.02}
ARCHS = {  # 40 rows: past the generated kernels' sizes for these nets -> cublas path
    "softmax": ((3, 6, 4), ("tanh", "softmax"), "categorical_crossentropy"),
    "mse": ((3, 5, 2), ("relu", "linear"), "mse"),
}
ROWS = 40


@pytest.fixture
def cupy_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_module())
    monkeypatch.setattr(registry, "_instances", {})
    return nnkit.get_backend("cupy")


def data(arch, n=ROWS, seed=3):
    sizes, _, loss = ARCHS[arch]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    if loss == "categorical_crossentropy":
        return X, rng.integers(0, sizes[-1], n)  # labels; the network one-hot encodes
    return X, rng.uniform(size=(n, sizes[-1]))


def network(arch, backend, dtype="float64", seed=2):
    sizes, acts, loss = ARCHS[arch]
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend=backend)


def assert_params_close(got, ref, rtol=1e-9, atol=1e-12):
    for (W, b), (rW, rb) in zip(got.get_params(), ref.get_params()):
        np.testing.assert_allclose(W, rW, rtol=rtol, atol=atol)
        np.testing.assert_allclose(b, rb, rtol=rtol, atol=atol)


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("l2", [0.0, 0.01])
def test_cublas_path_trains_like_numpy(cupy_backend, arch, optimizer, l2):
    X, Y = data(arch)
    got, ref = network(arch, cupy_backend), network(arch, "numpy")
    # full batch, then mini-batches: the optimizer state carries over between the fits
    for kwargs in (dict(epochs=12), dict(epochs=6, batch_size=16, shuffle=True)):
        with cupy_backend.use_path("cublas") as record:
            h1 = got.fit(X, Y, lr=LR[optimizer], optimizer=optimizer, l2=l2, **kwargs)
        assert record.paths("epochs") == {"cublas"}
        h2 = ref.fit(X, Y, lr=LR[optimizer], optimizer=optimizer, l2=l2, **kwargs)
        np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-9)
    assert_params_close(got, ref)
    np.testing.assert_allclose(got.predict(X), ref.predict(X), rtol=1e-9, atol=1e-12)
    # the fused kernels ran: this rule's update kernel (unless plain sgd), the rowwise loss
    names = {k if isinstance(k, str) else k[0] for k in cupy_backend._kernels}
    if optimizer != "sgd" or l2:
        assert f"nnkit_update_{optimizer}" in names
    assert ("nnkit_rowwise_loss" in names) == (arch == "softmax")


def test_planner_picks_cublas_for_what_the_generated_kernels_cannot_train(cupy_backend):
    tiny = ModelSpec((2, 2, 1), ("sigmoid", "sigmoid"), "mse", "float64")
    assert cupy_backend.supports("generated", tiny)
    assert cupy_backend.plan("epochs", tiny, 4) == "generated"
    for spec in (ModelSpec((2, 2, 1), ("sigmoid", "sigmoid"), "mse", "float64", "adam"),
                 ModelSpec((2, 2, 1), ("sigmoid", "sigmoid"), "mse", "float64", "sgd", True),
                 ModelSpec((2, 3), ("linear",), "categorical_crossentropy", "float64")):
        assert not cupy_backend.supports("generated", spec)
        for call in ("step", "epochs"):
            assert cupy_backend.plan(call, spec, 4) == "cublas"
        # the sweep engine: stacked GEMMs for plain sgd, else the batched path
        assert cupy_backend.plan("sweep", spec, 4) == ("stacked" if spec.plain else "batched")
        with pytest.raises(ValueError, match="cannot train"):
            with cupy_backend.use_path("generated"):
                cupy_backend.plan("epochs", spec, 4)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_tiny_networks_with_optimizers_and_softmax_train_like_numpy(cupy_backend, optimizer):
    """A net small enough for the generated kernels, on few rows: the planner sends it
    to cublas, and the result equals NumPy's."""
    X = np.random.default_rng(0).normal(size=(4, 2))
    for layers, loss, Y in (
            ([nnkit.Dense(2, 2, "tanh"), nnkit.Dense(2, 1, "sigmoid")], "mse",
             np.array([[0.0], [1.0], [1.0], [0.0]])),
            ([nnkit.Dense(2, 3, "softmax")], "categorical_crossentropy",
             np.array([0, 2, 1, 2]))):
        got, ref = (nnkit.Network(layers, loss=loss, dtype="float64", seed=1, backend=b)
                    for b in (cupy_backend, "numpy"))
        l2 = 0.01 if optimizer == "adam" else 0.0
        with cupy_backend.use_path("cublas") as record:
            h1 = got.fit(X, Y, epochs=25, lr=0.1, optimizer=optimizer, l2=l2)
        assert record.paths("epochs") == {"cublas"}
        h2 = ref.fit(X, Y, epochs=25, lr=0.1, optimizer=optimizer, l2=l2)
        np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-9)
        assert_params_close(got, ref)


def test_steps_leave_the_loss_and_parameters_on_the_device(cupy_backend):
    X, Y = data("softmax")
    net = network("softmax", cupy_backend)
    net.fit(X, Y, epochs=1, lr=0.01, optimizer="adam", l2=1e-3)  # state on the network
    Xd, Yd = net.prepare(X, Y)
    loss = cupy_backend.train_step(net.train_state, Xd, Yd, 0.01)
    assert type(loss).__module__ == "cupy"  # a device value: no host round-trip
    assert all(type(a).__module__ == "cupy" for a in net.train_state.opt.arrays())
    assert int(net.train_state.opt.t[0]) == 2


def test_rowwise_loss_kernel_matches_the_reference_for_extreme_logits(cupy_backend):
    be, numpy_be = cupy_backend, nnkit.get_backend("numpy")
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(37, 5)) * 50
    Z[0] = [800.0, -800.0, 0.0, 799.0, 1e-3]
    Y = np.eye(5)[rng.integers(0, 5, 37)]
    Zd, Yd = be.asarray(Z), be.asarray(Y)
    kind = "categorical_crossentropy"
    assert be._rowwise(Zd, Yd, kind) is not None
    got = float(be.to_numpy(be.loss(Zd, Yd, kind)))
    assert np.isfinite(got)
    assert got == pytest.approx(float(numpy_be.loss(Z, Y, kind)), rel=1e-12)
    np.testing.assert_allclose(be.to_numpy(be.loss_grad(Zd, Yd, kind)),
                               numpy_be.loss_grad(Z, Y, kind), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("optimizer", ["nesterov", "adam"])
def test_float32_losses_follow_numpy(cupy_backend, optimizer):
    X, Y = data("softmax")
    got, ref = network("softmax", cupy_backend, "float32"), network("softmax", "numpy", "float32")
    h1 = got.fit(X, Y, epochs=100, lr=LR[optimizer], optimizer=optimizer, l2=1e-3)
    h2 = ref.fit(X, Y, epochs=100, lr=LR[optimizer], optimizer=optimizer, l2=1e-3)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-4)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_sweeps_with_an_optimizer_match_numpy(cupy_backend, batch_size):
    """Sweeps keep the base class's array code for the update (stacked parameters,
    per-configuration rates) on the cupy backend."""
    X, Y = data("softmax")
    kwargs = dict(lr=[0.01, 0.05], seed=[0, 1], epochs=8, batch_size=batch_size,
                  shuffle=batch_size is not None, optimizer="adam", l2=1e-3)
    a = nnkit.sweep(network("softmax", cupy_backend), X, Y, **kwargs)
    b = nnkit.sweep(network("softmax", "numpy"), X, Y, **kwargs)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-9)
    for i in range(len(a.configs)):
        assert_params_close(a.network(i, backend="numpy"), b.network(i, backend="numpy"))


def test_rowwise_loss_source_renders_the_table():
    from nnkit.backends import _cuda_codegen as cg
    from nnkit.backends._math import LOSS_MATH, row_lse_parts
    for loss in (k for k, v in LOSS_MATH.items() if v.rowwise):
        for dtype in ("float32", "float64"):
            src = cg.rowwise_loss_source(loss, dtype)
            e, lse = row_lse_parts(cg.C, "z", "m", "s")
            assert f"s += {e};" in src and f"const T r = {lse};" in src
            assert f"total += {LOSS_MATH[loss].term(cg.C, 'z', 'y', 'r')};" in src
            assert f"= {LOSS_MATH[loss].grad(cg.C, 'z', 'y', 'n', 'r')};" in src
    with pytest.raises(ValueError, match="rowwise"):
        cg.rowwise_loss_source("mse", "float64")


def test_cuda_check_compiles_every_update_kernel_and_rowwise_loss():
    import importlib.util
    from pathlib import Path
    from nnkit.backends import _cuda_codegen as cg
    path = Path(__file__).resolve().parents[1] / "ci" / "cuda_check.py"
    spec = importlib.util.spec_from_file_location("cuda_check", path)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    labels = {j["label"] for j in check.jobs()}
    for name, *_ in cg.elementwise_kernels():
        for dtype in ("float32", "float64"):
            assert f"elementwise {name} {dtype}" in labels
    assert {f"elementwise nnkit_update_{r} float64" for r in OPTIMIZERS} <= labels
    for dtype in ("float32", "float64"):
        assert f"rowwise nnkit_rowwise_loss[categorical_crossentropy] {dtype}" in labels


def test_nvrtc_compiles_the_update_and_rowwise_kernels():
    from nnkit.backends import _cuda_codegen as cg
    from nnkit.backends import _nvrtc as nv
    if not nv.available():
        pytest.skip("NVRTC not installed (pip install 'nvidia-cuda-nvrtc-cu12==12.*'; "
                    "ci/cuda_check.sh does)")
    name, in_params, out_params, op = cg.update_kernel("adam")
    for source, entry in (
            (nv.elementwise_source(name, in_params, out_params, op, "float32"), name),
            (cg.rowwise_loss_source("categorical_crossentropy", "float64"),
             "nnkit_rowwise_loss")):
        assert f".entry {entry}(" in nv.compile_ptx(source, "compute_80")
