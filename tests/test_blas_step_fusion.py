"""The numba blas path's fused elementwise passes (``_numba_kernels.blas_output``: the
output layer's bias, activation, loss, gradient, derivative and bias gradient, block by
block of rows; ``derivative_colsum_rows``; ``bias_activation``) against float64 NumPy written
independently of the backends (plain formulas, whole arrays at once), on sizes whose
row blocks end inside the batch (``OUTPUT_BLOCK`` not a multiple of the width, outputs
wider than a block, a batch smaller than the buffers), and a whole blas step of every
activation/loss mix against the same float64 NumPy step."""
import numpy as np
import pytest

import nnkit
from nnkit.backends import get_backend

from conftest import BACKENDS

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba not usable here")

ACT = {"linear": 0, "sigmoid": 1, "tanh": 2, "relu": 3}
LOSS = {"squared_error": 0, "mse": 1, "binary_crossentropy": 2,
        "categorical_crossentropy": 3}
TOL = {"float64": 1e-12, "float32": 2e-5}


def act(name, z):
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), another formula
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    return z


def act_grad(name, z):
    """d act / d z from z (the kernels take it from the output)."""
    if name == "sigmoid":
        s = act("sigmoid", z)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 / np.cosh(z) ** 2
    if name == "relu":
        return (z > 0).astype(np.float64)
    return np.ones_like(z)


def loss_and_grad(kind, z, a, y):
    """(mean loss, d loss / d z) of outputs a = act(z) (logits for the cross-entropies)."""
    n = len(y)
    if kind == "squared_error":
        return ((a - y) ** 2).sum() / (2 * n), (a - y) / n
    if kind == "mse":
        return ((a - y) ** 2).sum() / n, 2 * (a - y) / n
    if kind == "binary_crossentropy":
        loss = (np.logaddexp(0.0, z) - y * z).sum() / n
        return loss, (act("sigmoid", z) - y) / n
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) \
        + z.max(1, keepdims=True)
    return (y * (lse - z)).sum() / n, (np.exp(z - lse) - y) / n


def close(got, want, dtype, what):
    scale = max(np.abs(want).max(), 1e-30)
    err = np.abs(np.asarray(got, np.float64) - want).max() / scale
    assert err <= TOL[dtype], f"{what}: relative error {err:.2e}"


MIXES = [("sigmoid", "squared_error"), ("tanh", "mse"), ("relu", "squared_error"),
         ("linear", "mse"), ("linear", "binary_crossentropy"),
         ("linear", "categorical_crossentropy")]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("nb,m", [(47, 300), (5, 2100), (131, 10), (3, 1)],
                         ids=["blocks-end-inside", "wider-than-a-block", "narrow", "tiny"])
@pytest.mark.parametrize("a,kind", MIXES, ids=[f"{a}-{k}" for a, k in MIXES])
def test_blas_output_against_float64_numpy(a, kind, nb, m, dtype):
    k = get_backend("numba").k
    rng = np.random.default_rng(nb * 7 + m)
    rows = nb + 4  # buffers taller than the batch: rows nb: must stay untouched
    Z0 = rng.normal(scale=2.0, size=(rows, m))
    b = rng.normal(size=m)
    if kind == "categorical_crossentropy":
        Y = np.eye(m)[rng.integers(0, m, rows)]
    elif kind == "binary_crossentropy":
        Y = (rng.uniform(size=(rows, m)) < 0.5).astype(np.float64)
    else:
        Y = rng.uniform(size=(rows, m))
    Z, Yd, bd = (x.astype(dtype) for x in (Z0, Y, b))
    G = np.full((rows, m), 7.0, dtype)
    db = np.full(m, np.nan, dtype)
    loss = k.blas_output(Z, bd, Yd, ACT[a], LOSS[kind], G, db, nb)

    z = Z0[:nb].astype(dtype).astype(np.float64) + b.astype(dtype)
    out = act(a, z)
    want_loss, dA = loss_and_grad(kind, z, out, Y[:nb].astype(dtype))
    dZ = dA * act_grad(a, z)
    close(Z[:nb], out, dtype, "activations")
    close(G[:nb], dZ, dtype, "dZ")
    close(db, dZ.sum(0), dtype, "bias gradient")
    assert abs(loss - want_loss) <= TOL[dtype] * abs(want_loss), (loss, want_loss)
    assert np.array_equal(Z[nb:], Z0[nb:].astype(dtype)) and (G[nb:] == 7).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("a", ["sigmoid", "tanh", "relu", "linear"])
def test_hidden_layer_passes_against_float64_numpy(a, dtype):
    """bias_activation and derivative_colsum_rows (the hidden layers' passes) on 37 of
    40 rows of a 40 x 1031 buffer."""
    k = get_backend("numba").k
    rng = np.random.default_rng(3)
    nb, m = 37, 1031
    Z0 = rng.normal(scale=2.0, size=(40, m))
    b = rng.normal(size=m)
    Z = Z0.astype(dtype)
    k.bias_activation(Z, b.astype(dtype), ACT[a], nb)
    z = Z0[:nb].astype(dtype).astype(np.float64) + b.astype(dtype)
    close(Z[:nb], act(a, z), dtype, "bias + activation")
    assert np.array_equal(Z[nb:], Z0[nb:].astype(dtype))
    dA = rng.normal(size=(40, m))
    G = dA.astype(dtype)
    db = np.zeros(m, dtype)
    k.derivative_colsum_rows(G, Z, ACT[a], db, 0, nb)
    # the derivative from the output the kernel computed, written as act'(z)
    want = dA[:nb].astype(dtype) * act_grad(a, z)
    close(G[:nb], want, dtype, "dZ")
    close(db, want.sum(0), dtype, "bias gradient")
    assert np.array_equal(G[nb:], dA[nb:].astype(dtype))


def numpy_step(params, acts, kind, X, Y, lr):
    """One full-batch gradient-descent step in float64: (loss, new params)."""
    zs, outs = [], [X]
    for (W, b), a in zip(params, acts):
        zs.append(outs[-1] @ W + b)
        outs.append(act(a, zs[-1]))
    loss, dA = loss_and_grad(kind, zs[-1], outs[-1], Y)
    new = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        dZ = dA * act_grad(acts[i], zs[i])
        W, b = params[i]
        dA = dZ @ W.T
        new[i] = (W - lr * (outs[i].T @ dZ), b - lr * dZ.sum(0))
    return loss, new


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden,out,kind", [
    ("sigmoid", "sigmoid", "squared_error"), ("tanh", "relu", "mse"),
    ("relu", "sigmoid", "binary_crossentropy"), ("sigmoid", "softmax", "categorical_crossentropy"),
], ids=["sigmoid-sigmoid-se", "tanh-relu-mse", "relu-sigmoid-bce", "sigmoid-softmax-ce"])
def test_blas_steps_against_a_float64_numpy_step(hidden, out, kind, dtype):
    """Three blas steps (numba's ``blas_train_step``) of a 29-301-263 net, batch 67:
    widths whose row blocks end inside the batch, each step against a float64 NumPy step
    from the same parameters."""
    sizes = (29, 301, 263)
    be = get_backend("numba")
    net = nnkit.Network([nnkit.Dense(sizes[0], sizes[1], hidden),
                         nnkit.Dense(sizes[1], sizes[2], out)],
                        loss=kind, dtype=dtype, seed=5, backend=be)
    rng = np.random.default_rng(11)
    X = rng.normal(size=(67, sizes[0]))
    if kind == "categorical_crossentropy":
        Y = np.eye(sizes[2])[rng.integers(0, sizes[2], 67)]
    elif kind == "binary_crossentropy":
        Y = (rng.uniform(size=(67, sizes[2])) < 0.5).astype(np.float64)
    else:
        Y = rng.uniform(size=(67, sizes[2]))
    Xd, Yd = net.prepare(X, Y)
    acts = net.train_state.activations  # the kernels' ("linear" where the loss takes logits)
    for _ in range(3):
        before = [(W.astype(np.float64), b.astype(np.float64)) for W, b in net.get_params()]
        with be.use_path("blas") as record:
            loss = float(be.train_step(net.train_state, Xd, Yd, 0.5))
        assert record.paths() == {"blas"}
        want_loss, want = numpy_step(before, acts, kind, np.asarray(Xd, np.float64),
                                     np.asarray(Yd, np.float64), 0.5)
        assert abs(loss - want_loss) <= TOL[dtype] * abs(want_loss), (loss, want_loss)
        for (W, b), (wW, wb), (W0, b0) in zip(net.get_params(), want, before):
            # the update itself, relative to its size (the parameters are ~100x larger)
            close(W - W0, wW - W0, dtype if dtype == "float64" else "float32", "dW")
            close(b - b0, wb - b0, dtype, "db")
