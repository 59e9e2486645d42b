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
