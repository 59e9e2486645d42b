"""Divergence with a stateful optimizer: as with plain gradient descent, the network
keeps the parameters at which the last finite epoch loss was measured, and its optimizer
state (moments, step count) is the one those parameters were reached with."""
import numpy as np
import pytest

import nnkit

from conftest import BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_diverging_run_keeps_last_finite_parameters_and_state(backend, optimizer):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)) * 50
    Y = rng.normal(size=(20, 1)) * 1e3

    def net():
        return nnkit.Network([nnkit.Dense(3, 4, "linear"), nnkit.Dense(4, 1, "linear")],
                             loss="mse", dtype="float64", seed=2, backend=backend)
    lr = 5.0 if optimizer == "momentum" else 1e160  # Adam moves a parameter by <= ~lr
    a = net()
    with pytest.raises(nnkit.TrainingDiverged) as info:
        a.fit(X, Y, epochs=3000, lr=lr, optimizer=optimizer)
    exc = info.value
    assert 0 < exc.epoch < 3000 and len(exc.history.loss) == exc.epoch
    for W, b in a.get_params():
        assert np.isfinite(W).all() and np.isfinite(b).all()
    # full batch: the kept parameters are those the last finite loss was measured at
    assert a.evaluate(X, Y) == pytest.approx(exc.history.loss[-1], rel=1e-9)
    # ... reached by exc.epoch - 1 updates: a fresh run of that many epochs ends there,
    # optimizer state included
    b = net()
    if exc.epoch > 1:
        b.fit(X, Y, epochs=exc.epoch - 1, lr=lr, optimizer=optimizer)
    # else the first epoch's loss was the last finite one: the initial parameters
    for (Wa, ba), (Wb, bb) in zip(a.get_params(), b.get_params()):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-9)
        np.testing.assert_allclose(ba, bb, rtol=1e-9)
    _, _, ta, slots_a = a.get_optimizer_state()
    _, _, tb, slots_b = b.get_optimizer_state()
    assert ta == tb == exc.epoch - 1
    if exc.epoch == 1:
        assert all(not s.any() for s in slots_a)  # fresh: zero moments
    for sa, sb in zip(slots_a, slots_b):
        np.testing.assert_allclose(sa, sb, rtol=1e-9)
