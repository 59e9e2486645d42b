"""Network.to carries the optimizer state: training continued on the other backend equals
training continued on the first (float64, 1e-9)."""
import numpy as np
import pytest

import nnkit

from conftest import BACKENDS


@pytest.mark.parametrize("target", BACKENDS)
def test_to_another_backend_keeps_the_optimizer_state(target):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    net = nnkit.Network([nnkit.Dense(4, 6, "tanh"), nnkit.Dense(6, 3, "softmax")],
                        loss="categorical_crossentropy", dtype="float64", seed=5,
                        backend="numpy")
    opt = nnkit.Adam(beta1=0.8)
    net.fit(X, y, epochs=20, lr=0.01, batch_size=8, optimizer=opt, l2=1e-3)
    moved = net.to(target)
    assert moved.optimizer == opt and moved.l2 == 1e-3
    a = net.fit(X, y, epochs=20, lr=0.01, batch_size=8, optimizer=opt, l2=1e-3)
    b = moved.fit(X, y, epochs=20, lr=0.01, batch_size=8, optimizer=opt, l2=1e-3)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-9)
    for (W, bb), (W0, b0) in zip(moved.get_params(), net.get_params()):
        np.testing.assert_allclose(W, W0, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bb, b0, rtol=1e-9, atol=1e-12)
    kept, reset = net.to(target), net.to(target)
    reset.reset_optimizer()
    assert reset.optimizer is None
    kept.fit(X, y, epochs=1, lr=0.01, batch_size=8, optimizer=opt, l2=1e-3)
    reset.fit(X, y, epochs=1, lr=0.01, batch_size=8, optimizer=opt, l2=1e-3)
    assert not np.allclose(kept.get_params()[0][0], reset.get_params()[0][0], rtol=1e-6)
