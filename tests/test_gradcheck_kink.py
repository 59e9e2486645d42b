"""Issue 17 probe: gradcheck tells a relu kink from a wrong gradient."""
import numpy as np
import pytest

import nnkit
from nnkit.gradcheck import GradcheckResult

from test_seeds import seed002_networks


def moons_net(backend, dtype="float32"):
    """The probe's net: moons 2-8-8-1 relu, seed 0 (samples whose first-layer units are
    all off put every second-layer pre-activation exactly on the kink, z = b = 0)."""
    layers = [nnkit.Dense(2, 8, "relu"), nnkit.Dense(8, 8, "relu"), nnkit.Dense(8, 1, "sigmoid")]
    return nnkit.Network(layers, loss="binary_crossentropy", dtype=dtype, seed=0,
                         backend=backend)


def test_healthy_relu_net_on_the_kink_passes(backend):
    X, Y = nnkit.datasets.moons(seed=0)
    net = moons_net(backend)
    assert nnkit.gradcheck(net, X, Y, skip_kinks=False) == pytest.approx(0.53, abs=0.01)
    res = nnkit.gradcheck(net, X, Y)
    assert isinstance(res, GradcheckResult) and isinstance(res, float)
    assert res < 1e-6
    assert res.at_kink == [(0, 0), (0, 8), (0, 0)] and res.n_at_kink == 8
    assert res.n_skipped == 0          # each is checked on the samples away from the kink
    assert res.kink_error == pytest.approx(0.53, abs=0.01)
    assert res.per_layer == nnkit.gradcheck(net, X, Y, per_layer=True)
    assert "8 entries whose step crosses a relu kink" in res.summary()
    assert f"{res:.1e}" == f"{float(res):.1e}"


def test_an_entry_on_the_kink_for_every_sample_is_skipped(backend):
    net = nnkit.Network([nnkit.Dense(1, 1, "relu")], loss="mse", dtype="float64",
                        backend=backend)
    net.set_params([([[1.0]], [0.0])])
    X, Y = np.zeros((3, 1)), np.ones((3, 1))          # z = 0 for every sample
    res = nnkit.gradcheck(net, X, Y)
    assert res == 0.0 and res.skipped == [(0, 1)] and res.n_skipped == 1
    assert res.kink_error > 0.1                        # relu'(0) = 0 vs a one-sided slope
    assert "1 skipped" in res.summary()
    smooth = nnkit.gradcheck(net, X + 1.0, Y + 2.0)
    assert smooth < 1e-6 and smooth.n_at_kink == 0 and "kink" not in smooth.summary()


def test_a_wrong_gradient_at_the_kink_is_still_caught(backend):
    """The kinked entries are rechecked on the other samples, not waved through."""
    X, Y = nnkit.datasets.moons(seed=0)
    net = moons_net(backend)

    def off_by_a_bit(net64, X, Y):
        grads = nnkit.Network.gradients(net64, X, Y)
        grads[1][1][:] *= 1.05                          # exactly the entries at the kink
        return grads

    res = nnkit.gradcheck(net, X, Y, grad_fn=off_by_a_bit)
    assert res > 1e-2 and res.per_layer[1][1] > 1e-2
    assert max(res.per_layer[0] + res.per_layer[2]) < 1e-6


def test_seed002_bug_is_caught_on_a_relu_net_with_kinks(rng):
    X = np.vstack([np.zeros((2, 3)), rng.normal(size=(6, 3))])   # z = b = 0 for two rows
    Y = rng.uniform(size=(8, 3))
    layers = [nnkit.Dense(3, 3, "relu"), nnkit.Dense(3, 3, "sigmoid")]
    net, good, buggy_grads = seed002_networks(layers)
    caught = nnkit.gradcheck(net, X, Y, grad_fn=buggy_grads)
    healthy = nnkit.gradcheck(good, X, Y)
    assert healthy.n_at_kink > 0 and healthy < 1e-6
    assert caught > 1e-2
