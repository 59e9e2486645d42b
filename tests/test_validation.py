"""Bad input gets a ValueError/TypeError naming the argument and what was expected."""
import numpy as np
import pytest

import nnkit


@pytest.fixture
def net(backend):
    return nnkit.Network([nnkit.Dense(2, 3, "sigmoid"), nnkit.Dense(3, 1, "linear")],
                         dtype="float64", backend=backend)


X, Y = nnkit.datasets.or_gate()

FIT_CASES = [
    (dict(X=np.zeros((4, 3))), ValueError, r"X: expected shape \(n_samples, 2\), got \(4, 3\)"),
    (dict(Y=np.zeros((4, 2))), ValueError, r"Y: expected shape \(n_samples, 1\)"),
    (dict(Y=np.zeros((3, 1))), ValueError, r"Y: expected 4 samples to match X, got 3"),
    (dict(X=np.zeros((0, 2)), Y=np.zeros((0, 1))), ValueError, "X: expected at least one"),
    (dict(X=np.array([[0, np.nan]] * 4)), ValueError, "X: contains NaN"),
    (dict(Y=np.array([[np.inf]] * 4)), ValueError, "Y: contains NaN or infinite"),
    (dict(X=np.array([["a", "b"]] * 4)), TypeError, "X: expected numbers"),
    (dict(X=np.zeros(4)), ValueError, r"X: expected a 2-D array"),
    (dict(X="abc"), TypeError, "X: expected numbers"),
    (dict(X={"a": 1}), TypeError, "X: expected an array of numbers, got dict"),
    (dict(lr=0), ValueError, "lr: expected a finite number > 0, got 0"),
    (dict(lr=-1.0), ValueError, "lr: expected a finite number > 0"),
    (dict(lr=float("nan")), ValueError, "lr: expected a finite number > 0"),
    (dict(epochs=0), ValueError, "epochs: expected an integer >= 1"),
    (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1"),
    (dict(batch_size=2.5), ValueError, "batch_size: expected an integer"),
    (dict(lr_schedule="cosine"), ValueError, "lr_schedule: expected one of"),
    (dict(validation_split=1.5), ValueError, "validation_split: expected a fraction"),
    (dict(validation_data=(np.zeros((2, 5)), np.zeros((2, 1)))), ValueError, "X: expected"),
]


@pytest.mark.parametrize("kwargs,exc,match", FIT_CASES)
def test_fit_rejects_bad_input(net, kwargs, exc, match):
    args = dict(X=X, Y=Y, epochs=2, lr=0.1)
    args.update(kwargs)
    before = net.get_params()
    with pytest.raises(exc, match=match):
        net.fit(args.pop("X"), args.pop("Y"), **args)
    for (W, b), (W0, b0) in zip(net.get_params(), before):  # nothing changed
        assert np.array_equal(W, W0) and np.array_equal(b, b0)


def test_data_changed_in_place_is_checked_again(net):
    """Arrays that passed the checks as they are (the network's dtype and layout) are
    checked again at every call: a NaN written into them afterwards is refused."""
    Xc, Yc = X.astype(np.float64), Y.astype(np.float64)
    net.fit(Xc, Yc, epochs=2, lr=0.1)
    before = net.get_params()
    Yc[2, 0] = np.inf
    with pytest.raises(ValueError, match="Y: contains NaN or infinite"):
        net.fit(Xc, Yc, epochs=2, lr=0.1)
    Yc[2, 0] = 1.0
    Xc[1, 1] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN"):
        net.fit(Xc, Yc, epochs=2, lr=0.1)
    for (W, b), (W0, b0) in zip(net.get_params(), before):  # nothing changed
        assert np.array_equal(W, W0) and np.array_equal(b, b0)


def test_batch_size_larger_than_data_is_clamped_to_full_batch(net):
    ref = nnkit.Network(net.layers, dtype="float64", backend=net.backend)
    assert net.fit(X, Y, epochs=3, lr=0.5, batch_size=100).loss == \
        ref.fit(X, Y, epochs=3, lr=0.5).loss


@pytest.mark.parametrize("bad,exc,match", [
    (np.zeros((3, 2)), ValueError, r"X: expected shape \(n_samples, 2\), got \(3, 3\)"),
    (np.full((3, 2), np.inf), ValueError, "X: contains NaN"),
])
def test_predict_rejects_bad_input(net, bad, exc, match):
    if bad.shape == (3, 2) and np.isfinite(bad).all():
        bad = np.zeros((3, 3))
    with pytest.raises(exc, match=match):
        net.predict(bad)


@pytest.mark.parametrize("params,exc,match", [
    ([], ValueError, r"params: expected a list of 2 \(W, b\) pairs"),
    ([(np.zeros((2, 3)), np.zeros(3))], ValueError, "params: expected a list of 2"),
    ([(np.zeros((3, 2)), np.zeros(3)), (np.zeros((3, 1)), np.zeros(1))], ValueError,
     r"params\[0\]\[0\] \(W\): expected shape \(2, 3\), got \(3, 2\)"),
    ([(np.zeros((2, 3)), np.zeros(2)), (np.zeros((3, 1)), np.zeros(1))], ValueError,
     r"params\[0\]\[1\] \(b\): expected shape \(3,\)"),
    ([(np.zeros((2, 3)), np.zeros(3)), (np.full((3, 1), np.nan), np.zeros(1))], ValueError,
     r"params\[1\]\[0\] \(W\): contains NaN"),
    ([(np.zeros((2, 3), dtype=complex), np.zeros(3)), (np.zeros((3, 1)), np.zeros(1))],
     TypeError, r"params\[0\]\[0\] \(W\): expected a real floating-point array"),
    ([(np.zeros((2, 3)),), (np.zeros((3, 1)), np.zeros(1))], ValueError,
     r"params\[0\]: expected a \(W, b\) pair"),
])
def test_set_params_rejects_bad_params(net, params, exc, match):
    with pytest.raises(exc, match=match):
        net.set_params(params)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: nnkit.Dense(0, 2), ValueError, "n_in: expected an integer >= 1, got 0"),
    (lambda: nnkit.Dense(2, 1, "softplus"), ValueError, "activation: expected one of"),
    (lambda: nnkit.Network([nnkit.Dense(2, 2, "softmax"), nnkit.Dense(2, 2, "softmax")],
                           loss="categorical_crossentropy"), ValueError,
     "layers: softmax is for the output layer only"),
    (lambda: nnkit.Network([]), TypeError, "layers: expected a non-empty list"),
    (lambda: nnkit.Network([nnkit.Dense(2, 3), nnkit.Dense(4, 1)]), ValueError,
     "layers: layer 1 expects 4 inputs but layer 0 gives 3 outputs"),
    (lambda: nnkit.Network([nnkit.Dense(2, 1)], loss="hinge"), ValueError,
     "loss: expected one of"),
    (lambda: nnkit.Network([nnkit.Dense(2, 1, "linear")], loss="binary_crossentropy"),
     ValueError, "needs a 'sigmoid' output layer"),
    (lambda: nnkit.Network([nnkit.Dense(2, 1)], dtype="float16"), ValueError,
     "dtype: expected one of"),
    (lambda: nnkit.Network([nnkit.Dense(2, 1)], seed=-1), ValueError, "seed: expected"),
])
def test_construction_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_divergence_stops_and_keeps_finite_params(backend):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 8, "relu"), nnkit.Dense(8, 1, "linear")],
                        dtype="float64", seed=0, backend=backend)
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y * 1e3, epochs=500, lr=50.0)
    err = info.value
    assert 0 < err.epoch < 500
    assert len(err.history.loss) == err.epoch
    assert err.last_finite_loss == err.history.loss[-1]
    assert np.isfinite(err.last_finite_loss)
    assert "learning rate" in str(err)
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in net.get_params())


def test_divergence_in_minibatches(backend):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 8, "relu"), nnkit.Dense(8, 1, "linear")],
                        dtype="float64", seed=0, backend=backend)
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y * 1e3, epochs=500, lr=50.0, batch_size=3, shuffle=True)
    assert all(np.isfinite(W).all() for W, _ in net.get_params())
    assert all(np.isfinite(info.value.history.loss))


@pytest.mark.parametrize("make", [
    lambda a: np.lib.stride_tricks.as_strided(a, writeable=False),     # read-only
    lambda a: np.asfortranarray(a),                                      # not C-contiguous
    lambda a: np.broadcast_to(a[:1], a.shape),                           # both
], ids=["read-only", "fortran", "broadcast"])
def test_data_enters_as_writable_c_arrays(backend, make):
    """Kernels get data in one form (numba compiles a kernel again for each array type:
    scikit-learn's checks pass read-only arrays): a read-only or strided input is copied
    once where it enters, the caller's array left as it was."""
    net = nnkit.Network([nnkit.Dense(2, 1)], dtype="float64", backend=backend)
    X = make(np.arange(8.0).reshape(4, 2))
    Y = make(np.arange(4.0).reshape(4, 1))
    before = (X.copy(), X.flags.writeable, Y.copy())
    for given, got in zip((X, Y), net.prepare(X, Y)):
        host = nnkit.get_backend(backend).to_numpy(got)
        assert host.flags.c_contiguous and host.flags.writeable
        np.testing.assert_array_equal(host, given)
    np.testing.assert_array_equal(X, before[0])
    assert X.flags.writeable == before[1]
    np.testing.assert_array_equal(Y, before[2])
