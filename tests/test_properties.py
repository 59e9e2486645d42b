"""Property tests (hypothesis, bounded example counts): every backend's kernels against a
float64 NumPy reference written independently, and fit never raising undocumented errors."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nnkit
from nnkit.backends import ACTIVATIONS, LOSSES

from conftest import BACKENDS

EXAMPLES = 40
TOL = {"float64": 1e-12, "float32": 2e-6}
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

values = st.one_of(st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False),
                   st.sampled_from([0.0, 1e-30, -1e-30, 1e4, -1e4, 1.0, -1.0]))


def matrix(rows, cols):
    return arrays(np.float64, (rows, cols), elements=values)


def ref_act(z, act):
    if act == "sigmoid":  # exact enough in float64 from either tail
        return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))),
                        np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))
    return {"tanh": np.tanh, "relu": lambda x: np.where(x > 0, x, 0.0),
            "linear": lambda x: x}[act](z)


@st.composite
def shapes(draw):
    return draw(st.integers(1, 64)), draw(st.integers(1, 64))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data(), act=st.sampled_from(ACTIVATIONS))
def test_activation_kernels_match_reference(name, dtype, data, act):
    be = nnkit.get_backend(name)
    n, m = data.draw(shapes())
    Z = data.draw(matrix(n, m))
    dA = data.draw(matrix(n, m))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # stable formulas, not silenced warnings
        A = be.to_numpy(be.activation_forward(be.asarray(Z, dtype), act))
        Ad = be.asarray(A, dtype)
        dZ = be.to_numpy(be.activation_backward(be.asarray(dA, dtype), Ad, act))
    assert A.dtype == dtype and not np.isnan(A).any()
    expected = ref_act(Z.astype(dtype).astype(np.float64), act)
    np.testing.assert_allclose(A, expected, rtol=TOL[dtype], atol=TOL[dtype])
    a = A.astype(np.float64)
    deriv = {"sigmoid": a * (1 - a), "tanh": 1 - a * a, "relu": (a > 0) * 1.0,
             "linear": np.ones_like(a)}[act]
    ref = dA.astype(dtype).astype(np.float64) * deriv
    # Results in the dtype's subnormal range carry no relative precision.
    tiny = 2 * np.finfo(dtype).smallest_subnormal
    np.testing.assert_allclose(dZ, ref, rtol=10 * TOL[dtype],
                               atol=10 * TOL[dtype] * np.abs(dA).max() + tiny)
    # In place (out= the input) gives the same values: backends may take another kernel.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Zd = be.asarray(Z.copy(), dtype)  # (asarray may not copy)
        assert be.activation_forward(Zd, act, out=Zd) is Zd
        dAd = be.asarray(dA.copy(), dtype)
        assert be.activation_backward(dAd, Ad, act, out=dAd) is dAd
        Ad2 = be.asarray(A.copy(), dtype)
        assert be.activation_backward(be.asarray(dA, dtype), Ad2, act, out=Ad2) is Ad2
    np.testing.assert_array_equal(be.to_numpy(Zd), A)
    np.testing.assert_array_equal(be.to_numpy(dAd), dZ)
    np.testing.assert_array_equal(be.to_numpy(Ad2), dZ)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data(), act=st.sampled_from(ACTIVATIONS))
def test_dense_forward_and_backward_match_reference(name, dtype, data, act):
    be = nnkit.get_backend(name)
    n, k = data.draw(shapes())
    m = data.draw(st.integers(1, 64))
    small = st.floats(-3, 3, allow_nan=False, allow_subnormal=False)
    X = data.draw(arrays(np.float64, (n, k), elements=small))
    W = data.draw(arrays(np.float64, (k, m), elements=small))
    b = data.draw(arrays(np.float64, (m,), elements=small))
    dZ = data.draw(arrays(np.float64, (n, m), elements=small))
    Xd, Wd, bd, dZd = (be.asarray(a, dtype) for a in (X, W, b, dZ))
    c = [a.astype(dtype).astype(np.float64) for a in (X, W, b, dZ)]
    A = be.to_numpy(be.dense_forward(Xd, Wd, bd, act))
    scale = (np.abs(c[0]) @ np.abs(c[1]) + np.abs(c[2])).max() + 1
    np.testing.assert_allclose(A, ref_act(c[0] @ c[1] + c[2], act), rtol=0,
                               atol=4 * TOL[dtype] * scale * k)
    dW, db, dX = (be.to_numpy(a) for a in be.dense_backward(dZd, Xd, Wd))
    np.testing.assert_allclose(dW, c[0].T @ c[3], rtol=0, atol=TOL[dtype] * 10 * n * 9)
    np.testing.assert_allclose(db, c[3].sum(0), rtol=0, atol=TOL[dtype] * 10 * n * 3)
    np.testing.assert_allclose(dX, c[3] @ c[1].T, rtol=0, atol=TOL[dtype] * 10 * m * 9)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(data=st.data(), kind=st.sampled_from(LOSSES))
def test_losses_match_reference_and_stay_finite(name, dtype, data, kind):
    be = nnkit.get_backend(name)
    n, m = data.draw(shapes())
    Yhat = data.draw(matrix(n, m))
    Y = data.draw(arrays(np.float64, (n, m), elements=st.sampled_from([0.0, 1.0, 0.3])))
    if kind == "categorical_crossentropy":  # targets are probability rows: one-hot here
        Y = np.eye(m)[data.draw(arrays(np.int64, n, elements=st.integers(0, m - 1)))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = float(be.to_numpy(be.loss(be.asarray(Yhat, dtype), be.asarray(Y, dtype), kind)))
        grad = be.to_numpy(be.loss_grad(be.asarray(Yhat, dtype), be.asarray(Y, dtype), kind))
    z = Yhat.astype(dtype).astype(np.float64)
    if kind == "binary_crossentropy":  # from logits: softplus(z) - y z, exact in float64
        ref = np.sum(np.logaddexp(0, z) - Y * z) / n
        ref_grad = (ref_act(z, "sigmoid") - Y) / n
    elif kind == "categorical_crossentropy":  # -y log softmax(z), lse by logaddexp
        lse = np.logaddexp.reduce(z, axis=1, keepdims=True)
        ref = np.sum(Y * (lse - z)) / n
        ref_grad = (np.exp(z - lse) - Y) / n
    else:
        ref = np.sum((z - Y) ** 2) / (2 * n if kind == "squared_error" else n)
        ref_grad = (z - Y) / n * (1 if kind == "squared_error" else 2)
    assert np.isfinite(value)
    assert value == pytest.approx(ref, rel=20 * TOL[dtype] * m, abs=1e-30)
    # sigmoid(z) - y cancels when y = 1 and z >> 0: one rounding of sigmoid in the dtype
    # is the error floor, so the bound is absolute at that scale. softmax(z) - y too, and
    # exp(z - lse) carries the rounding of z - lse, eps * |lse| relative: e.g. z = (10,
    # 0, 0), y = (1, 0, 0) gives -9.08e-5 with an error of 8 eps (found by hypothesis).
    scale = 1 + (np.max(np.abs(z)) if kind == "categorical_crossentropy" else 0)
    np.testing.assert_allclose(grad, ref_grad, rtol=10 * TOL[dtype],
                               atol=2 * np.finfo(dtype).eps * scale / n)


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       hidden=st.sampled_from(ACTIVATIONS), loss=st.sampled_from(LOSSES),
       n=st.integers(1, 12), batch=st.one_of(st.none(), st.integers(1, 14)),
       lr=st.floats(1e-3, 100), dtype=st.sampled_from(["float32", "float64"]),
       shuffle=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_fit_raises_only_documented_errors(name, sizes, hidden, loss, n, batch, lr, dtype,
                                           shuffle, seed):
    out = {"binary_crossentropy": "sigmoid",
           "categorical_crossentropy": "softmax"}.get(loss, hidden)
    acts = [hidden] * (len(sizes) - 2) + [out]
    net = nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                        loss=loss, dtype=dtype, seed=seed, backend=name)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])) * 10
    Y = rng.uniform(size=(n, sizes[-1]))
    if loss == "categorical_crossentropy":  # probability rows
        Y /= Y.sum(axis=1, keepdims=True)
    try:
        hist = net.fit(X, Y, epochs=5, lr=lr, batch_size=batch, shuffle=shuffle)
        assert len(hist.loss) == 5 and np.isfinite(hist.loss).all()
    except nnkit.TrainingDiverged as exc:
        assert len(exc.history.loss) == exc.epoch
    for W, b in net.get_params():
        assert W.dtype == dtype and np.isfinite(W).all() and np.isfinite(b).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_and_bce_extremes_without_warnings(backend, dtype):
    be = nnkit.get_backend(backend)
    z = np.array([[-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4]])
    y = np.array([[1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = be.to_numpy(be.activation_forward(be.asarray(z, dtype), "sigmoid"))
        value = float(be.to_numpy(be.loss(be.asarray(z, dtype), be.asarray(y, dtype),
                                          "binary_crossentropy")))
    assert s[0, 0] == 0 and s[0, -1] == 1 and s[0, 3] == 0.5
    assert np.all(np.diff(s[0]) >= 0)
    # softplus(z) - y z per element: 1e4, 800, 0, log 2, 0, 800, 1e4 (exact from logits).
    assert value == pytest.approx(1e4 + 800 + np.log(2) + 800 + 1e4, rel=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4),
       acts=st.lists(st.sampled_from(ACTIVATIONS), min_size=3, max_size=3),
       loss=st.sampled_from(LOSSES), n=st.sampled_from([5, 70]),
       lrs=st.lists(st.floats(1e-3, 0.5), min_size=1, max_size=3),
       seed=st.integers(0, 2 ** 16))
def test_full_batch_sweep_equals_separate_fits(name, sizes, acts, loss, n, lrs, seed):
    """Every configuration of a sweep equals its own fit on the same backend (float64);
    70 rows take the stacked path past numba's generated kernels. Rates up to 0.5 and
    losses that do not blow up: in exploding or oscillating runs (large rates, saturated
    tanh units) summation order alone moves the results past 1e-9 within a few epochs.
    test_sweep.py covers divergence and the comparison with the NumPy backend."""
    acts = acts[:len(sizes) - 1]
    if loss == "binary_crossentropy":
        acts[-1] = "sigmoid"
    if loss == "categorical_crossentropy":
        acts[-1] = "softmax"
    layers = [nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    Y = rng.uniform(size=(n, sizes[-1]))
    if loss == "categorical_crossentropy":  # probability rows
        Y /= Y.sum(axis=1, keepdims=True)
    net = nnkit.Network(layers, loss=loss, dtype="float64", seed=seed, backend=name)
    res = nnkit.sweep(net, X, Y, lr=lrs, epochs=12)
    for i, cfg in enumerate(res.configs):
        ref = nnkit.Network(layers, loss=loss, dtype="float64", seed=seed, backend=name)
        try:
            losses = ref.fit(X, Y, epochs=12, lr=cfg["lr"]).loss
        except nnkit.TrainingDiverged:
            continue
        if max(losses) > 10 * losses[0]:
            continue
        assert res.diverged_epoch[i] == -1
        np.testing.assert_allclose(res.loss[i], losses, rtol=1e-9)
        for (W, b), (rW, rb) in zip(res.params[i], ref.get_params()):
            # on the layer's scale: a bias far smaller than its weights gets their rounding
            scale = max(np.abs(rW).max(), np.abs(rb).max())
            np.testing.assert_allclose(W, rW, rtol=0, atol=1e-9 * scale)
            np.testing.assert_allclose(b, rb, rtol=0, atol=1e-9 * scale)
