import numpy as np
import pytest

import nnkit
from reference import grads as reference_grads

ACTS = ["sigmoid", "tanh", "relu", "linear"]
LOSSES = ["squared_error", "mse", "binary_crossentropy"]


def make(backend, sizes, hidden, loss, seed=0, dtype="float64"):
    out = "sigmoid" if loss == "binary_crossentropy" else "linear"
    acts = [hidden] * (len(sizes) - 2) + [out]
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend=backend)


@pytest.mark.parametrize("hidden", ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_match_finite_differences(backend, hidden, loss, rng):
    X = rng.normal(size=(7, 3))
    Y = rng.uniform(size=(7, 2))
    net = make(backend, [3, 5, 4, 2], hidden, loss, seed=11)
    assert nnkit.gradcheck(net, X, Y) < 1e-6


@pytest.mark.parametrize("hidden", ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_match_independent_reference(backend, hidden, loss, rng):
    X = rng.normal(size=(9, 4))
    Y = rng.uniform(size=(9, 3))
    net = make(backend, [4, 6, 3], hidden, loss, seed=3)
    acts = [layer.activation for layer in net.layers]
    value, ref = reference_grads(net.get_params(), acts, loss, X, Y)
    assert net.evaluate(X, Y) == pytest.approx(value, rel=1e-12)
    for (dW, db), (rW, rb) in zip(net.gradients(X, Y), ref):
        np.testing.assert_allclose(dW, rW, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(db, rb, rtol=1e-9, atol=1e-14)


def test_output_output_only_network_and_deep_network(backend, rng):
    X = rng.normal(size=(5, 2))
    Y = rng.normal(size=(5, 1))
    for sizes in ([2, 1], [2, 3, 3, 3, 1]):
        net = make(backend, sizes, "tanh", "mse", seed=1)
        assert nnkit.gradcheck(net, X, Y) < 1e-6


def test_gradcheck_per_layer(backend, rng):
    X = rng.normal(size=(4, 2))
    Y = rng.uniform(size=(4, 1))
    net = make(backend, [2, 3, 1], "sigmoid", "squared_error")
    errs = nnkit.gradcheck(net, X, Y, per_layer=True)
    assert len(errs) == 2 and all(len(e) == 2 for e in errs)
    assert max(max(e) for e in errs) < 1e-6


@pytest.mark.parametrize("hidden", ACTS)
@pytest.mark.parametrize("loss", LOSSES)
def test_one_sgd_epoch_moves_each_parameter_by_lr_times_its_gradient(backend, hidden, loss,
                                                                      rng):
    """Plain SGD's step takes the gradients of lr x the loss (one subtraction a
    parameter): the update is still -lr times the independent reference's gradient."""
    X = rng.normal(size=(9, 4))
    Y = rng.uniform(size=(9, 3))
    net = make(backend, [4, 6, 3], hidden, loss, seed=5)
    before = net.get_params()
    _, ref = reference_grads(before, [layer.activation for layer in net.layers], loss, X, Y)
    net.fit(X, Y, epochs=1, lr=0.3)
    for (W, b), (W0, b0), (rW, rb) in zip(net.get_params(), before, ref):
        np.testing.assert_allclose(W - W0, -0.3 * rW, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(b - b0, -0.3 * rb, rtol=1e-8, atol=1e-14)


def test_scaled_backpropagation_does_not_overflow_where_the_step_does_not():
    """Plain SGD's reference step scales each layer's dZ by lr after the layer below took
    dZ W^T: with lr x dZ W^T (1e39) overflowing and the hidden tanh saturated (derivative
    0), 0 x inf would put NaN into the hidden weights; unscaled, they stay as they were."""
    from nnkit.backends.base import TrainState
    be = nnkit.get_backend("numpy")
    f = np.float32
    state = TrainState(be, [(np.full((1, 2), 100, f), np.zeros(2, f)),
                            (np.full((2, 1), 1e20, f), np.zeros(1, f))],
                       ("tanh", "linear"), "binary_crossentropy")
    with np.errstate(over="ignore", invalid="ignore"):
        be.train_step(state, np.ones((1, 1), f), np.zeros((1, 1), f), 1e19)
    np.testing.assert_array_equal(state.params[0][0], np.full((1, 2), 100, f))
    assert np.isfinite(state.params[1][0]).all()


def test_sgd_update_takes_a_learning_rate_per_configuration(backend):
    """``sgd_update`` / ``apply_update`` with lr broadcasting against stacked parameters
    (C, i, o), as the sweeps pass it, and with lr exactly 1."""
    from nnkit.backends.base import OptimizerState
    be = nnkit.get_backend(backend)
    xp = be.xp
    C = 3
    params = [(be.asarray(np.ones((C, 4, 2))), be.asarray(np.ones((C, 1, 2))))]
    grads = [(be.asarray(np.full((C, 4, 2), 2.0)), be.asarray(np.full((C, 1, 2), 2.0)))]
    lr = be.asarray(np.array([0.1, 0.25, 1.0]).reshape(C, 1, 1))
    be.apply_update(params, grads, OptimizerState(be, params), lr)
    want = 1.0 - 2.0 * np.array([0.1, 0.25, 1.0])
    np.testing.assert_allclose(be.to_numpy(params[0][0])[:, 0, 0], want)
    np.testing.assert_allclose(be.to_numpy(params[0][1])[:, 0, 0], want)
    W, b = xp.ones((2, 2)), xp.ones(2)
    be.sgd_update([(W, b)], [(xp.full((2, 2), 0.5), xp.full(2, 0.5))], 1.0)
    np.testing.assert_array_equal(be.to_numpy(W), np.full((2, 2), 0.5))
