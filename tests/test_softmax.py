"""Issue 14: softmax output + categorical cross-entropy: probabilities, invariance, stability
for huge logits, loss and gradients against ``optim_reference.py``, integer labels, the
errors that name Y / layers / loss, predict_classes, accuracy, evaluate(metrics=True),
gradcheck (with L2)."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nnkit
import optim_reference as ref

from conftest import BACKENDS

# The shapes test_optimizers.py trains too (one set of kernels for both files).
SIZES, ACTS, LOSS = (3, 4, 3), ("tanh", "softmax"), "categorical_crossentropy"
K = SIZES[-1]
ROWS = 8
PROPS = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def network(backend="numpy", seed=2, dtype="float64"):
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(SIZES, SIZES[1:], ACTS)],
                         loss=LOSS, dtype=dtype, seed=seed, backend=backend)


def bce_network(backend="numpy", loss="binary_crossentropy"):
    return nnkit.Network([nnkit.Dense(2, 3, "relu"), nnkit.Dense(3, 1, "sigmoid")],
                         loss=loss, dtype="float64", seed=2, backend=backend)


def data(n=ROWS, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, SIZES[0]))
    labels = rng.integers(0, K, n)
    labels[:K] = np.arange(K)  # every class present
    return X, labels, ref.one_hot(labels, K)


def close(got, want, rtol=1e-10, atol=1e-13):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def params_close(got, want, rtol=1e-10, atol=1e-13):
    for (W, b), (rW, rb) in zip(got, want):
        close(W, rW, rtol, atol)
        close(b, rb, rtol, atol)


values = st.floats(-30, 30, allow_nan=False, allow_subnormal=False)


@st.composite
def parameters(draw, scale=st.sampled_from([1.0, 10.0, 300.0])):
    s = draw(scale)
    out = []
    for a, b in zip(SIZES, SIZES[1:]):
        W = draw(arrays(np.float64, (a, b), elements=values)) * s
        bias = draw(arrays(np.float64, (b,), elements=values)) * s
        out.append((W, bias))
    return out


# ================================================================== properties
@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(params=parameters(), X=arrays(np.float64, (5, SIZES[0]), elements=values))
def test_predict_gives_probability_rows_equal_to_the_reference(name, params, X):
    net = network(name)
    net.set_params(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid warnings for huge logits
        P = net.predict(X)
    assert P.shape == (5, K) and np.isfinite(P).all()
    assert (P >= 0).all() and (P <= 1).all()
    close(P.sum(axis=1), np.ones(5), rtol=0, atol=1e-12)
    close(P, ref.predict(params, ACTS, X), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(params=parameters(scale=st.just(1.0)), c=st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([1e3, -1e3, 0.5])))
def test_adding_a_constant_to_every_logit_changes_nothing(name, params, c):
    X, labels, Y = data()
    net, shifted = network(name), network(name)
    net.set_params(params)
    (W1, b1), (W2, b2) = params
    shifted.set_params([(W1, b1), (W2, b2 + c)])
    # |z| <= ~150 here; z + c rounds to ulp(|z| + |c|): the probabilities move by about that
    tol = 4e-16 * (abs(c) + 200) * 4
    P = net.predict(X)
    close(shifted.predict(X), P, rtol=0, atol=tol)
    assert shifted.evaluate(X, Y) == pytest.approx(net.evaluate(X, Y), rel=1e-12, abs=tol)
    for (dW, db), (rW, rb) in zip(shifted.gradients(X, Y), net.gradients(X, Y)):
        close(dW, rW, rtol=0, atol=tol * 1e5)  # dW1 = X^T (dz W2^T * (1 - h^2)): |X|, |W2| <= 30
        close(db, rb, rtol=0, atol=tol * 1e5)
    top = np.sort(P, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-9  # no near-ties
    np.testing.assert_array_equal(shifted.predict_classes(X)[clear], net.predict_classes(X)[clear])


@pytest.mark.parametrize("name", BACKENDS)
def test_huge_logits_give_a_finite_loss_and_gradients(name):
    X, labels, Y = data()
    net = network(name)
    (W1, b1), (W2, b2) = net.get_params()
    # every row: logits (1e4, 0, -1e4) + O(1): the loss of a row of class k is ~ 1e4 * k
    net.set_params([(W1, b1), (W2 * 1e-3, np.array([1e4, 0.0, -1e4]))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = net.evaluate(X, Y)
        grads = net.gradients(X, Y)
        P = net.predict(X)
        hist = net.fit(X, Y, epochs=2, lr=1e-6, optimizer="adam")
    want, want_grads = ref.loss_and_grads(
        [(W1, b1), (W2 * 1e-3, np.array([1e4, 0.0, -1e4]))], ACTS, LOSS, X, Y)
    assert math.isfinite(loss) and loss == pytest.approx(want, rel=1e-12)
    assert loss == pytest.approx(1e4 * np.mean(labels), rel=1e-3)
    params_close(grads, want_grads, rtol=1e-9, atol=1e-12)
    assert all(np.isfinite(dW).all() and np.isfinite(db).all() for dW, db in grads)
    assert np.isfinite(P).all() and np.isfinite(hist.loss).all()
    close(P.sum(axis=1), np.ones(ROWS), rtol=0, atol=1e-12)
    # extreme but representable: 1e300 logits still give a finite loss and probabilities
    net.set_params([(W1 * 0, b1 * 0), (W2 * 0, np.array([1e300, -1e300, 0.0]))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isfinite(net.evaluate(X, Y))
        P = net.predict(X)
    close(P, np.tile([1.0, 0.0, 0.0], (ROWS, 1)), rtol=0, atol=0)


# ============================================================ loss and labels
@pytest.mark.parametrize("name", BACKENDS)
def test_loss_and_gradients_equal_the_reference_for_labels_and_one_hot(name):
    X, labels, Y = data()
    net = network(name)
    want, want_grads = ref.loss_and_grads(net.get_params(), ACTS, LOSS, X, Y)
    for target in (Y, labels, labels.astype(np.int32), list(labels)):
        assert net.evaluate(X, target) == pytest.approx(want, rel=1e-12)
        params_close(net.gradients(X, target), want_grads)
    # the value by hand: -1/n sum log p[label]
    P = net.predict(X)
    assert want == pytest.approx(-np.mean(np.log(P[np.arange(ROWS), labels])), rel=1e-12)


@pytest.mark.parametrize("name", BACKENDS)
def test_probability_rows_as_targets_equal_the_reference(name):
    """(n, k) rows of probabilities (one-hot being one case) are the targets of the loss."""
    X, labels, Y = data()
    soft = 0.7 * Y + 0.3 * np.random.default_rng(1).dirichlet(np.ones(K), ROWS)
    net = network(name)
    want, want_grads = ref.loss_and_grads(net.get_params(), ACTS, LOSS, X, soft, 0.1)
    assert net.evaluate(X, soft) == pytest.approx(
        ref.loss_and_grads(net.get_params(), ACTS, LOSS, X, soft)[0], rel=1e-12)
    params_close(net.gradients(X, soft, l2=0.1), want_grads)
    want_loss, want_params = ref.train(net.get_params(), ACTS, LOSS, X, soft, 20, 0.02,
                                       optimizer="adam", l2=0.1)
    hist = net.fit(X, soft, epochs=20, lr=0.02, optimizer="adam", l2=0.1)
    close(hist.loss, want_loss, rtol=1e-9)
    params_close(net.get_params(), want_params, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", BACKENDS)
def test_integer_labels_train_like_one_hot(name):
    X, labels, Y = data()
    for batch in (None, 3):
        a, b = network(name), network(name)
        want_loss, want_params = ref.train(a.get_params(), ACTS, LOSS, X, Y, 30, 0.5, batch,
                                           a.seed)
        ha = a.fit(X, Y, epochs=30, lr=0.5, batch_size=batch, shuffle=True)
        hb = b.fit(X, labels, epochs=30, lr=0.5, batch_size=batch, shuffle=True)
        close(ha.loss, hb.loss, rtol=1e-13, atol=0)
        params_close(a.get_params(), b.get_params(), rtol=1e-13, atol=0)
        close(ha.loss, want_loss, rtol=1e-9)
        params_close(a.get_params(), want_params, rtol=1e-9, atol=1e-12)
        assert a.accuracy(X, labels) == a.accuracy(X, Y)


BAD_Y = {
    "label-too-big": lambda labels, Y: np.where(labels == 0, K, labels),
    "label-negative": lambda labels, Y: np.where(labels == 0, -1, labels),
    "label-non-integer": lambda labels, Y: labels + 0.5,
    "label-nan": lambda labels, Y: np.where(labels == 0, np.nan, labels * 1.0),
    "too-many-columns": lambda labels, Y: np.hstack([Y, np.zeros((ROWS, 1))]),
    "too-few-columns": lambda labels, Y: Y[:, :2],
    "three-dims": lambda labels, Y: Y[:, :, None],
    "wrong-rows-labels": lambda labels, Y: labels[:-1],
    "wrong-rows-one-hot": lambda labels, Y: Y[:-1],
    "one-hot-nan": lambda labels, Y: np.where(Y == 1, np.nan, Y),
    "strings": lambda labels, Y: np.array(["a"] * ROWS),
    "rows-sum-to-2": lambda labels, Y: 2 * Y,
    "negative-entries": lambda labels, Y: Y - 0.5 * (1 - Y),
    "all-zero-row": lambda labels, Y: np.where(np.arange(ROWS)[:, None] == 0, 0.0, Y),
}


@pytest.mark.parametrize("bad", list(BAD_Y))
def test_bad_targets_raise_errors_naming_Y(bad):
    X, labels, Y = data()
    net = network()
    before = net.get_params()
    target = BAD_Y[bad](labels, Y)
    error = TypeError if bad == "strings" else ValueError
    for call in (lambda: net.fit(X, target, epochs=2, lr=0.1),
                 lambda: net.evaluate(X, target),
                 lambda: net.gradients(X, target),
                 lambda: net.accuracy(X, target)):
        with pytest.raises((error, ValueError), match=r"\bY\b"):
            call()
    params_close(net.get_params(), before, rtol=0, atol=0)


# ======================================================== architecture checks
def test_softmax_only_on_the_last_layer():
    with pytest.raises(ValueError, match="layers|activation"):
        nnkit.Network([nnkit.Dense(3, 4, "softmax"), nnkit.Dense(4, 3, "softmax")], loss=LOSS)
    with pytest.raises(ValueError, match="layers|activation"):
        nnkit.Network([nnkit.Dense(3, 4, "softmax"), nnkit.Dense(4, 3, "linear")], loss="mse")
    with pytest.raises(ValueError, match="layers|activation"):
        nnkit.Network([nnkit.Dense(3, 4, "tanh"), nnkit.Dense(4, 4, "softmax"),
                       nnkit.Dense(4, 3, "softmax")], loss=LOSS)
    nnkit.Dense(3, 4, activation="softmax")  # a layer alone is fine
    net = nnkit.Network([nnkit.Dense(3, 3, activation="softmax")], loss=LOSS, dtype="float64")
    close(net.predict(np.zeros((2, 3))), np.full((2, 3), 1 / 3), rtol=1e-15, atol=0)


@pytest.mark.parametrize("loss", ["squared_error", "mse", "binary_crossentropy"])
def test_softmax_needs_categorical_crossentropy(loss):
    with pytest.raises(ValueError, match="loss|softmax|activation"):
        nnkit.Network([nnkit.Dense(3, 4, "tanh"), nnkit.Dense(4, 3, "softmax")], loss=loss)


@pytest.mark.parametrize("act", ["sigmoid", "linear", "tanh", "relu"])
def test_categorical_crossentropy_needs_a_softmax_output(act):
    with pytest.raises(ValueError, match="loss|softmax|activation"):
        nnkit.Network([nnkit.Dense(3, 4, "tanh"), nnkit.Dense(4, 3, act)], loss=LOSS)


# ========================================== predict_classes, accuracy, metrics
@pytest.mark.parametrize("name", BACKENDS)
def test_predict_classes_accuracy_and_metrics(name):
    X, labels, Y = data()
    net = network(name)
    net.fit(X, labels, epochs=50, lr=0.05, optimizer="adam")
    P = net.predict(X)
    classes = net.predict_classes(X)
    assert classes.shape == (ROWS,) and classes.dtype.kind in "iu"
    np.testing.assert_array_equal(classes, np.argmax(P, axis=1))
    np.testing.assert_array_equal(nnkit.predict_classes(net, X), classes)
    acc = float(np.mean(classes == labels))
    for target in (labels, Y):
        got = net.accuracy(X, target)
        assert isinstance(got, float) and got == pytest.approx(acc, abs=1e-15)
        m = net.evaluate(X, target, metrics=True)
        assert set(m) == {"loss", "accuracy"}
        assert isinstance(m["loss"], float) and isinstance(m["accuracy"], float)
        assert m["loss"] == pytest.approx(net.evaluate(X, target), rel=1e-15)
        assert m["accuracy"] == pytest.approx(acc, abs=1e-15)
    assert isinstance(net.evaluate(X, Y), float)
    # ties: all probabilities equal -> the first class, as argmax
    (W1, b1), (W2, b2) = net.get_params()
    net.set_params([(W1, b1), (W2 * 0, b2 * 0)])
    np.testing.assert_array_equal(net.predict_classes(X), np.zeros(ROWS, dtype=int))
    assert net.accuracy(X, labels) == pytest.approx(np.mean(labels == 0))


@pytest.mark.parametrize("loss", ["binary_crossentropy", "squared_error"])
@pytest.mark.parametrize("name", BACKENDS)
def test_one_sigmoid_output_classes_threshold_at_one_half(name, loss):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(ROWS, 2))
    y = (X[:, 0] > 0).astype(np.float64)
    net = bce_network(name, loss)
    p = net.predict(X)[:, 0]
    classes = net.predict_classes(X)
    assert classes.shape == (ROWS,) and classes.dtype.kind in "iu"
    np.testing.assert_array_equal(classes, (p >= 0.5).astype(int))
    np.testing.assert_array_equal(nnkit.predict_classes(net, X), classes)
    for target in (y, y[:, None]):
        assert net.accuracy(X, target) == pytest.approx(np.mean(classes == y), abs=1e-15)
        m = net.evaluate(X, target, metrics=True)
        assert m["loss"] == pytest.approx(net.evaluate(X, target), rel=1e-15)
        # accuracy is a metric of the classification losses (nnkit documents it so)
        assert set(m) == ({"loss", "accuracy"} if loss == "binary_crossentropy" else {"loss"})
        if "accuracy" in m:
            assert m["accuracy"] == pytest.approx(np.mean(classes == y), abs=1e-15)
    # p exactly 0.5 is class 1
    (W1, b1), (W2, b2) = net.get_params()
    net.set_params([(W1, b1), (W2 * 0, b2 * 0)])
    np.testing.assert_array_equal(net.predict_classes(X), np.ones(ROWS, dtype=int))


# ==================================================================== gradcheck
@pytest.mark.parametrize("name", BACKENDS)
def test_gradcheck_passes_for_softmax_with_and_without_l2(name):
    X, labels, Y = data()
    net = network(name)
    for l2 in (0.0, 0.1):
        for target in (Y, labels):
            err = nnkit.gradcheck(net, X, target, l2=l2)
            assert err < 1e-6, (l2, float(err))
    # also at a trained, sharper point, and in float32 (checked on a float64 copy)
    net.fit(X, labels, epochs=30, lr=0.05, optimizer="adam", l2=0.01)
    assert nnkit.gradcheck(net, X, labels, l2=0.01) < 1e-6
    # gradcheck sees an L2 gradient that is wrong: on the biases too, or missing on W
    on_biases = lambda n, X, Y: [(dW, db + 0.1 * b) for (dW, db), (_, b)  # noqa: E731
                                 in zip(n.gradients(X, Y), n.get_params())]
    missing = lambda n, X, Y: [(dW - 0.1 * W, db) for (dW, db), (W, _)  # noqa: E731
                               in zip(n.gradients(X, Y), n.get_params())]
    assert nnkit.gradcheck(net, X, labels, l2=0.1, grad_fn=on_biases) > 1e-3
    assert nnkit.gradcheck(net, X, labels, l2=0.1, grad_fn=missing) > 1e-3
    net32 = network(name, dtype="float32")
    assert nnkit.gradcheck(net32, X, Y, l2=0.1) < 1e-6


@pytest.mark.parametrize("name", BACKENDS)
def test_float32_softmax_predict_sums_to_one(name):
    X, labels, Y = data()
    net = network(name, dtype="float32")
    P = net.predict(X)
    assert P.dtype == np.float32
    close(P.sum(axis=1), np.ones(ROWS), rtol=0, atol=1e-6)
    close(P, ref.predict(net.get_params(), ACTS, X.astype(np.float32)), rtol=1e-5, atol=1e-7)
    assert net.evaluate(X, labels) == pytest.approx(
        ref.loss_and_grads(net.get_params(), ACTS, LOSS, X.astype(np.float32), Y)[0], rel=1e-5)
