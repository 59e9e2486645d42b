"""Numbers from the seed tutorials (../shared/seeds)."""
import numpy as np
import pytest

import nnkit
from nnkit.backends.base import Backend


def or_net(backend):
    net = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], loss="squared_error",
                        dtype="float64", backend=backend)
    net.set_params([(np.array([[0.1], [0.6]]), np.array([0.0]))])
    return net


def test_or_gate_walkthrough(backend):
    """Seed 001: w1=0.1, w2=0.6, b=0, lr=1, full batch."""
    X, Y = nnkit.datasets.or_gate()
    net = or_net(backend)
    # Forward pass of the vectorised example: z = [0, .6, .1, .7].
    assert np.allclose(net.predict(X)[:, 0], [0.5, 0.646, 0.525, 0.668], atol=5e-4)
    hist = net.fit(X, Y, epochs=1, lr=1.0)
    assert hist.loss[0] == pytest.approx(0.089, abs=5e-4)       # initial cost
    assert net.evaluate(X, Y) == pytest.approx(0.084, abs=5e-4)  # cost after one update
    (dW, db), = net.gradients(X, Y)  # "the result of that should be..."
    assert np.allclose(dW[:, 0], [-0.044, -0.035], atol=5e-4)
    assert np.allclose(db, [-0.031], atol=5e-4)
    hist = net.fit(X, Y, epochs=4999, lr=1.0)
    assert hist.loss[-1] == pytest.approx(0.0005, abs=1e-4)     # "about 0.0005"
    assert np.array_equal(net.predict(X)[:, 0] > 0.5, Y[:, 0] > 0.5)


def test_single_example_bias_update(backend):
    """Seed 001: on x=(0,0), y=0 the weight gradients are zero and db = 0.125."""
    net = or_net(backend)
    X, Y = np.zeros((1, 2)), np.zeros((1, 1))
    (dW, db), = net.gradients(X, Y)
    assert np.array_equal(dW, np.zeros((2, 1)))
    assert db[0] == pytest.approx(0.125)
    net.fit(X, Y, epochs=1, lr=1.0)
    assert net.get_params()[0][1][0] == pytest.approx(-0.125)
    assert net.predict(X)[0, 0] == pytest.approx(0.469, abs=5e-4)
    assert net.evaluate(X, Y) == pytest.approx(0.109, abs=1e-3)  # "around 0.109"


def test_seed000_two_layer_linear_output(backend, rng):
    """Seed 000: sigmoid hidden layer, linear output, E = 1/(2n) sum (y - yhat)^2."""
    X = rng.normal(size=(8, 3))
    Y = rng.normal(size=(8, 1))
    net = nnkit.Network([nnkit.Dense(3, 4, "sigmoid"), nnkit.Dense(4, 1, "linear")],
                        loss="squared_error", dtype="float64", seed=5, backend=backend)
    (W1, b1), (W2, b2) = net.get_params()
    A = 1 / (1 + np.exp(-(X @ W1 + b1)))
    Yhat = A @ W2 + b2
    assert net.evaluate(X, Y) == pytest.approx(np.sum((Y - Yhat) ** 2) / (2 * len(X)))
    # The seed's dE/dW1 = (1/n) sum (yhat - y) W2 A(1-A) X, written per sample.
    dW1 = sum(np.outer(X[i], (Yhat[i] - Y[i]) * W2[:, 0] * A[i] * (1 - A[i]))
              for i in range(len(X))) / len(X)
    assert np.allclose(net.gradients(X, Y)[0][0], dW1, rtol=1e-10)
    assert nnkit.gradcheck(net, X, Y) < 1e-6


class W1TransposeBug(Backend):
    """Seed 002's bug: the hidden layer's upstream gradient uses W1^T instead of W2^T."""
    name = "buggy"

    def dense_backward(self, dZ, X, W, need_dX=True, dW=None, db=None, dX=None):
        dW, db, dX = super().dense_backward(dZ, X, W, need_dX, dW, db, dX)
        if need_dX:
            W1 = self.first_W
            dX[...] = dZ @ W1.T
        return dW, db, dX


def seed002_networks(layers, seed=2):
    """(buggy net, healthy net, grad_fn): the same float64 network on the W1^T-bug backend
    and on the reference, and the gradients ``gradcheck`` should use for the buggy one."""
    buggy = W1TransposeBug()
    net = nnkit.Network(layers, loss="mse", dtype="float64", seed=seed, backend=buggy)
    good = nnkit.Network(layers, loss="mse", dtype="float64", seed=seed)

    def buggy_grads(net64, X, Y):
        buggy.first_W = net64.train_state.params[0][0]
        return nnkit.Network.gradients(net64, X, Y)
    return net, good, buggy_grads


def test_seed002_transposed_weight_bug_is_caught(rng):
    X = rng.normal(size=(6, 3))
    Y = rng.uniform(size=(6, 3))
    layers = [nnkit.Dense(3, 3, "sigmoid"), nnkit.Dense(3, 3, "sigmoid")]
    net, good, buggy_grads = seed002_networks(layers)

    # The bug is shape-compatible (square layers), so nothing crashes; only the check sees it.
    assert nnkit.gradcheck(net, X, Y, grad_fn=buggy_grads) > 1e-2
    assert nnkit.gradcheck(good, X, Y) < 1e-6
