"""The numba backend's "blas" path: a step, or every epoch of a fit slice, in one compiled
call (``blas_train_step`` / ``blas_train_epochs``: BLAS gemms from inside the kernel,
fused elementwise passes, one update pass), against the NumPy reference backend
(float64 to 1e-9, float32 losses to 1e-4), and no per-step Python loop."""
import contextlib

import numpy as np
import pytest

import nnkit
from nnkit.backends import get_backend

from conftest import BACKENDS

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba not usable here")


def network(sizes, acts, loss, backend, dtype="float64", seed=1):
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend=backend)


def data(sizes, loss, n=50, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    if loss == "categorical_crossentropy":
        return X, rng.integers(0, sizes[-1], n)
    if loss == "binary_crossentropy":
        return X, (rng.uniform(size=(n, sizes[-1])) < 0.5).astype(np.float64)
    return X, rng.uniform(size=(n, sizes[-1]))


def close(got, want, rtol=1e-9):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)


def fit_both(sizes, acts, loss, fits, dtype="float64"):
    """The same fits (in a row: optimizer state carries over) on numpy and on the numba
    blas path; returns (numpy net, numba net, numpy losses, numba losses)."""
    X, Y = data(sizes, loss)
    X = X.astype(dtype)
    be = get_backend("numba")
    nets = [network(sizes, acts, loss, "numpy", dtype), network(sizes, acts, loss, be, dtype)]
    losses = [[], []]
    for kwargs in fits:
        losses[0].extend(nets[0].fit(X, Y, **kwargs).loss)
        with be.use_path("blas") as record:
            losses[1].extend(nets[1].fit(X, Y, **kwargs).loss)
        assert record.paths() == {"blas"}, record.ran
    return nets[0], nets[1], np.array(losses[0]), np.array(losses[1])


def params_close(net, ref, rtol=1e-9):
    for (W, b), (rW, rb) in zip(net.get_params(), ref.get_params()):
        close(W, rW, rtol)
        close(b, rb, rtol)


CE = ((7, 16, 4), ("relu", "softmax"), "categorical_crossentropy")


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
def test_minibatch_adam_l2_softmax_ce(shuffle):
    # 50 rows in batches of 16: a last batch of 2 rows; two fits: Adam's state carries on
    fit = dict(epochs=6, lr=0.01, batch_size=16, shuffle=shuffle, optimizer="adam", l2=1e-3)
    ref, net, want, got = fit_both(*CE, [fit, dict(fit, epochs=4)])
    close(got, want)
    params_close(net, ref)
    assert int(net.train_state.opt.t[0]) == int(ref.train_state.opt.t[0]) == 10 * 4


@pytest.mark.parametrize("loss,act", [("squared_error", "sigmoid"), ("mse", "linear"),
                                      ("binary_crossentropy", "sigmoid")])
def test_full_batch_sgd(loss, act):
    ref, net, want, got = fit_both((5, 12, 2), ("tanh", act), loss,
                                   [dict(epochs=30, lr=0.3)])
    close(got, want)
    params_close(net, ref)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("acts,loss", [
    (("tanh", "sigmoid", "relu"), "mse"),
    (("relu", "tanh", "sigmoid"), "binary_crossentropy"),
    (("sigmoid", "relu", "softmax"), "categorical_crossentropy"),
], ids=["tanh-sigmoid-relu", "relu-tanh-sigmoid", "sigmoid-relu-softmax"])
def test_three_layers(acts, loss, optimizer):
    lr = 0.01 if optimizer == "adam" else 0.1
    fits = [dict(epochs=5, lr=lr, batch_size=8, shuffle=True, optimizer=optimizer, l2=1e-4),
            dict(epochs=5, lr=lr, optimizer=optimizer, l2=1e-4)]  # then full batch
    ref, net, want, got = fit_both((6, 10, 9, 3), acts, loss, fits)
    close(got, want)
    params_close(net, ref)


def test_float32_close_to_the_reference():
    fit = dict(epochs=10, lr=0.01, batch_size=16, shuffle=True, optimizer="adam", l2=1e-4)
    ref, net, want, got = fit_both(*CE, [fit], dtype="float32")
    close(got, want, rtol=1e-4)
    assert net.get_params()[0][0].dtype == np.float32


def test_python_steps_match_the_reference():
    sizes, acts, loss = (6, 10, 9, 3), ("tanh", "relu", "softmax"), "categorical_crossentropy"
    X, Y = data(sizes, loss)
    be = get_backend("numba")
    net, ref = network(sizes, acts, loss, be), network(sizes, acts, loss, "numpy")
    for n in (net, ref):
        n.fit(X, Y, epochs=1, lr=1e-3, optimizer="adam", l2=1e-3)  # sets up Adam + L2
    Xd, Yd = net.prepare(X, Y)
    Xr, Yr = ref.prepare(X, Y)
    with be.use_path("blas") as record:
        got = [float(be.train_step(net.train_state, Xd[:20], Yd[:20], 0.01)) for _ in range(8)]
    assert record.paths() == {"blas"}
    want = [float(ref.backend.train_step(ref.train_state, Xr[:20], Yr[:20], 0.01))
            for _ in range(8)]
    close(got, want)
    params_close(net, ref)


class _Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


def test_one_kernel_call_per_fit_slice(monkeypatch):
    """A fit on the blas path runs each slice's epochs (every mini-batch step, shuffled
    orders included) in one compiled call: nothing per step from Python."""
    be = get_backend("numba")
    k = be.k
    counters = {name: _Counter(getattr(k, name)) for name in (
        "blas_train_epochs", "blas_train_step", "train_epochs", "optimizer_step",
        "bias_activation", "loss_grad", "dense_forward")}
    for name, counter in counters.items():
        monkeypatch.setattr(k, name, counter)
    plans = _Counter(be.prepare_epochs)  # once per fit: every slice runs what it gives
    monkeypatch.setattr(be, "prepare_epochs", plans)
    X, Y = data(CE[0], CE[2], n=200)
    net = network(*CE, be)
    with be.use_path("blas"):
        net.fit(X, Y, epochs=5, lr=0.01, batch_size=16, shuffle=True, optimizer="adam")
    assert plans.calls == 1
    assert counters["blas_train_epochs"].calls == 1  # 5 epochs x 13 batches in one call
    with be.use_path("blas"):  # a callback every epoch: one slice, one call, per epoch
        net.fit(X, Y, epochs=3, lr=0.01, batch_size=16, shuffle=True, optimizer="adam",
                callback=lambda epoch, record: None)
    assert plans.calls == 1 + 1
    assert counters["blas_train_epochs"].calls == 1 + 3
    assert all(c.calls == 0 for name, c in counters.items() if name != "blas_train_epochs")
    # a step from Python: one compiled call
    Xd, Yd = net.prepare(X, Y)
    with be.use_path("blas"):
        be.train_step(net.train_state, Xd[:64], Yd[:64], 0.01)
    assert counters["blas_train_step"].calls == 1
    assert counters["optimizer_step"].calls == counters["bias_activation"].calls == 0


def test_the_planner_sends_large_work_to_the_blas_path():
    be = get_backend("numba")
    spec = network((64, 64, 10), ("relu", "softmax"), "categorical_crossentropy", be).spec
    assert be.plan("epochs", spec, 1000, 64) == "blas"
    assert be.plan("step", spec, 64) == "blas"


def test_blas_path_without_scipy_takes_the_reference_composition(monkeypatch):
    """numba calls BLAS through SciPy, which nnkit does not require: without it the blas
    path composes NumPy's BLAS with numba's elementwise kernels, to the same numbers."""
    from nnkit.backends import numba_backend
    monkeypatch.setattr(numba_backend, "_blas_in_numba", lambda: False)
    calls = []
    be = nnkit.get_backend("numba")
    monkeypatch.setattr(be, "_epochs_kernel", lambda *a, **k: calls.append(a))
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(50, 6)), rng.integers(0, 3, 50)

    def trained(backend, path=None):
        net = nnkit.Network([nnkit.Dense(6, 9, "tanh"), nnkit.Dense(9, 3, "softmax")],
                            loss="categorical_crossentropy", dtype="float64", seed=3,
                            backend=backend)
        ctx = nnkit.get_backend(backend).use_path(path) if path else contextlib.nullcontext()
        with ctx:
            hist = net.fit(X, y, epochs=4, lr=0.01, batch_size=16, shuffle=True,
                           optimizer="adam", l2=1e-3)
        return net, hist
    net, hist = trained("numba", "blas")
    ref, ref_hist = trained("numpy")
    assert not calls  # no compiled blas kernel ran
    np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=1e-9)
    for (W, b), (W0, b0) in zip(net.get_params(), ref.get_params()):
        np.testing.assert_allclose(W, W0, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b0, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_is_the_blas_paths_matmul_for_every_operand_layout(dtype):
    """``Backend.gemm`` (what ``nnkit bench`` times a step's matmuls with) on C and
    transposed (F) operands, against a float64 NumPy product."""
    be = get_backend("numba")
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(37, 23)), rng.normal(size=(23, 19))
    tol = 1e-12 if dtype == "float64" else 1e-5
    for a, b in ((A, B), (np.ascontiguousarray(A.T).T, B),
                 (A, np.ascontiguousarray(B.T).T)):
        out = np.full((37, 19), np.nan, dtype=dtype)
        got = be.gemm(a.astype(dtype, order="K"), b.astype(dtype, order="K"), out)
        assert got is out
        np.testing.assert_allclose(out, A @ B, rtol=tol, atol=tol)


@pytest.mark.parametrize("path", ["fused", "blas"])
def test_one_to_four_layers_share_the_kernels_compilations_and_match_the_reference(path):
    """The fused and BLAS kernels take per-layer tuples padded to 2 or 4 layers (a tuple's
    length is part of a kernel's type: one compilation per length, 5-10 s each), so nets of
    1-4 layers compile at most two per dtype; each depth still trains like the reference."""
    be = get_backend("numba")
    kernels = {"fused": (be.k.train_epochs,), "blas": (be.k.blas_train_epochs,
                                                        be.k.blas_train_step)}[path]
    for depth in (1, 2, 3, 4):
        sizes = (3,) + (5,) * (depth - 1) + (2,)
        acts = ("tanh",) * (depth - 1) + ("sigmoid",)
        X, Y = data(sizes, "binary_crossentropy", n=12)
        nets = [network(sizes, acts, "binary_crossentropy", name) for name in ("numpy", "numba")]
        ref = nets[0].fit(X, Y, epochs=5, lr=0.3, batch_size=4, optimizer="momentum").loss
        with be.use_path(path) as record:
            got = nets[1].fit(X, Y, epochs=5, lr=0.3, batch_size=4, optimizer="momentum").loss
        assert record.paths() == {path}, record.ran
        close(got, ref)
        params_close(nets[1], nets[0])
    from numba import types
    lengths = {next(a.count for a in sig if isinstance(a, types.UniTuple))  # Ws's
               for kernel in kernels for sig in kernel.signatures
               if str(sig[0].dtype) == "float64"}
    assert lengths and lengths <= {2, 4}, lengths
