import numpy as np
import pytest

import nnkit
from reference import train as reference_train


def net_for(backend, dtype="float64", seed=4, sizes=(3, 4, 2), hidden="tanh", loss="mse"):
    acts = [hidden] * (len(sizes) - 2) + ["linear"]
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend=backend)


@pytest.mark.parametrize("batch_size", [None, 1, 4, 10, 11, 100])
def test_batch_minibatch_sgd_match_reference(backend, batch_size, rng):
    """Updates per epoch = ceil(n / batch_size); the last partial batch is its own update;
    the epoch loss is the sample-weighted mean of the batch losses."""
    X = rng.normal(size=(10, 3))
    Y = rng.normal(size=(10, 2))
    net = net_for(backend)
    acts = [layer.activation for layer in net.layers]
    ref_loss, updates, ref_params = reference_train(net.get_params(), acts, "mse", X, Y,
                                                    epochs=5, lr=0.05, batch_size=batch_size)
    expected_updates = 5 * (1 if batch_size is None or batch_size >= 10
                            else -(-10 // batch_size))
    assert updates == expected_updates
    hist = net.fit(X, Y, epochs=5, lr=0.05, batch_size=batch_size)
    np.testing.assert_allclose(hist.loss, ref_loss, rtol=1e-10)
    for (W, b), (rW, rb) in zip(net.get_params(), ref_params):
        np.testing.assert_allclose(W, rW, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(b, rb, rtol=1e-10, atol=1e-14)


def test_shuffled_minibatches_follow_host_permutations(backend, rng):
    X = rng.normal(size=(13, 3))
    Y = rng.normal(size=(13, 2))
    net = net_for(backend, seed=9)
    acts = [layer.activation for layer in net.layers]
    shuffle_rng = np.random.default_rng([9, 1])  # the documented shuffle stream
    orders = [shuffle_rng.permutation(13) for _ in range(4)]
    ref_loss, _, ref_params = reference_train(net.get_params(), acts, "mse", X, Y, epochs=4,
                                              lr=0.05, batch_size=5, orders=orders)
    hist = net.fit(X, Y, epochs=4, lr=0.05, batch_size=5, shuffle=True)
    np.testing.assert_allclose(hist.loss, ref_loss, rtol=1e-10)
    np.testing.assert_allclose(net.get_params()[0][0], ref_params[0][0], rtol=1e-10)


def test_full_batch_loss_is_cost_before_update(backend, rng):
    X = rng.normal(size=(6, 3))
    Y = rng.normal(size=(6, 2))
    net = net_for(backend)
    before = net.evaluate(X, Y)
    hist = net.fit(X, Y, epochs=3, lr=0.1)
    assert hist.loss[0] == pytest.approx(before, rel=1e-12)
    assert hist.loss[2] > net.evaluate(X, Y)  # still descending


@pytest.mark.parametrize("schedule,factor", [
    (None, lambda e: 1.0),
    ("constant", lambda e: 1.0),
    (nnkit.StepDecay(drop=0.5, every=3), lambda e: 0.5 ** (e // 3)),
    (nnkit.Exponential(decay=0.1), lambda e: np.exp(-0.1 * e)),
    (nnkit.InverseTime(decay=0.2), lambda e: 1 / (1 + 0.2 * e)),
    (lambda e: 1.0 / (e + 1), lambda e: 1.0 / (e + 1)),
])
def test_schedules_set_each_epochs_rate(backend, schedule, factor, rng):
    X = rng.normal(size=(5, 3))
    Y = rng.normal(size=(5, 2))
    net = net_for(backend)
    ref = net_for("numpy")
    hist = net.fit(X, Y, epochs=8, lr=0.2, lr_schedule=schedule)
    expected = [0.2 * factor(e) for e in range(8)]
    np.testing.assert_allclose(hist.lr, expected, rtol=1e-12)
    # Same as running each epoch by hand with that rate.
    for e in range(8):
        ref.fit(X, Y, epochs=1, lr=expected[e])
    np.testing.assert_allclose(net.get_params()[0][0], ref.get_params()[0][0], rtol=1e-9)


def test_same_seed_is_bit_identical(backend, rng):
    X = rng.normal(size=(20, 3))
    Y = rng.normal(size=(20, 2))
    runs = []
    for _ in range(2):
        net = net_for(backend, seed=21)
        hist = net.fit(X, Y, epochs=30, lr=0.05, batch_size=6, shuffle=True)
        runs.append((hist.loss, net.get_params()))
    assert runs[0][0] == runs[1][0]
    for (W1, b1), (W2, b2) in zip(runs[0][1], runs[1][1]):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)


def test_different_seeds_differ():
    a = net_for("numpy", seed=1).get_params()[0][0]
    b = net_for("numpy", seed=2).get_params()[0][0]
    assert not np.array_equal(a, b)


def test_initialisation_scales():
    wide = nnkit.Network([nnkit.Dense(400, 300, "tanh"), nnkit.Dense(300, 400, "relu")],
                         dtype="float64", seed=0)
    (W1, b1), (W2, b2) = wide.get_params()
    assert np.abs(W1).max() <= np.sqrt(6 / 700)                  # Glorot uniform bound
    assert W1.std() == pytest.approx(np.sqrt(2 / 700), rel=0.05)
    assert W2.std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)  # He normal
    assert not b1.any() and not b2.any()


def test_float32_stays_float32(backend, rng):
    X = rng.normal(size=(8, 3))
    Y = rng.normal(size=(8, 2))
    net = net_for(backend, dtype="float32")
    net.fit(X, Y, epochs=5, lr=0.1, batch_size=3)
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in net.get_params())
    assert net.predict(X).dtype == np.float32
    assert all(g.dtype == np.float32 for pair in net.gradients(X, Y) for g in pair)


def test_one_dimensional_target_for_single_output(backend):
    X, Y = nnkit.datasets.and_gate()
    net = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], dtype="float64", backend=backend)
    hist = net.fit(X, Y[:, 0], epochs=3000, lr=2.0)
    assert hist.loss[-1] < hist.loss[0]
    assert np.array_equal(net.predict(X)[:, 0] > 0.5, Y[:, 0] > 0.5)


def test_xor_needs_hidden_layer_and_learns(backend):
    X, Y = nnkit.datasets.xor_gate()
    net = nnkit.Network([nnkit.Dense(2, 4, "tanh"), nnkit.Dense(4, 1, "sigmoid")],
                        loss="binary_crossentropy", dtype="float64", seed=1, backend=backend)
    net.fit(X, Y, epochs=2000, lr=0.5)
    assert np.array_equal(net.predict(X)[:, 0] > 0.5, Y[:, 0] > 0.5)


def test_validation_and_history(backend, rng):
    X = rng.normal(size=(20, 3))
    Y = rng.normal(size=(20, 2))
    net = net_for(backend)
    hist = net.fit(X, Y, epochs=4, lr=0.05, validation_split=0.25)
    assert len(hist.loss) == len(hist.val_loss) == len(hist.lr) == 4
    assert hist.val_loss[-1] == pytest.approx(net.evaluate(X[15:], Y[15:]), rel=1e-12)
