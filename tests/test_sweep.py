import numpy as np
import pytest

import nnkit
from warm_kernels import OTHER_ROWS, OTHER_SHAPES


def template(backend, dtype="float64"):
    return nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                         loss="squared_error", dtype=dtype, seed=0, backend=backend)


def separate_fit(cfg, X, Y, epochs, **kw):
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        loss="squared_error", dtype="float64", seed=cfg["seed"],
                        backend="numpy")
    try:
        hist = net.fit(X, Y, epochs=epochs, lr=cfg["lr"], **kw)
        return np.array(hist.loss), -1, net.get_params()
    except nnkit.TrainingDiverged as exc:
        return np.array(exc.history.loss), exc.epoch, net.get_params()


@pytest.mark.parametrize("kw", [{}, {"batch_size": 3, "shuffle": True}, {"batch_size": 3},
                                {"lr_schedule": nnkit.InverseTime(0.01)}],
                         ids=["batch", "minibatch", "minibatch-in-order", "schedule"])
def test_every_configuration_equals_a_separate_fit(backend, kw):
    X, Y = nnkit.datasets.xor_gate()
    res = nnkit.sweep(template(backend), X, Y, lr=[0.1, 2.0, 5.0], seed=[0, 1], epochs=150,
                      **kw)
    assert res.loss.shape == (6, 150) and len(res.configs) == 6
    assert {(c["lr"], c["seed"]) for c in res.configs} == \
        {(a, s) for a in (0.1, 2.0, 5.0) for s in (0, 1)}
    for i, cfg in enumerate(res.configs):
        loss, div, params = separate_fit(cfg, X, Y, 150, **kw)
        assert res.diverged_epoch[i] == div == -1
        np.testing.assert_allclose(res.loss[i], loss, rtol=1e-9)
        for (W, b), (rW, rb) in zip(res.params[i], params):
            np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-13)


def test_diverging_configurations_stop_alone(backend):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 4, "relu"), nnkit.Dense(4, 1, "linear")],
                        dtype="float64", seed=0, backend=backend)
    res = nnkit.sweep(net, X, Y * 1e3, lr=[1e-4, 50.0], seed=[0], epochs=300)
    assert res.diverged_epoch[0] == -1 and res.diverged_epoch[1] > 0
    ref = nnkit.Network(net.layers, dtype="float64", seed=0)
    with pytest.raises(nnkit.TrainingDiverged) as info:
        ref.fit(X, Y * 1e3, epochs=300, lr=50.0)
    e = info.value.epoch
    assert res.diverged_epoch[1] == e
    np.testing.assert_allclose(res.loss[1, :e], info.value.history.loss, rtol=1e-9)
    assert np.isnan(res.loss[1, e + 1:]).all()
    assert np.isfinite(res.loss[0]).all()
    assert all(np.isfinite(W).all() for W, _ in res.params[1])
    assert res.best() == 0 and res.final_loss[1] == np.inf


def test_chunking_gives_identical_results(backend):
    X, Y = nnkit.datasets.or_gate()
    lrs = np.geomspace(0.01, 20, 7)
    full = nnkit.sweep(template(backend), X, Y, lr=lrs, seed=[3, 4], epochs=60)
    parts = nnkit.sweep(template(backend), X, Y, lr=lrs, seed=[3, 4], epochs=60, chunk_size=3)
    assert np.array_equal(full.loss, parts.loss)
    assert all(np.array_equal(a[0][0], b[0][0]) for a, b in zip(full.params, parts.params))


def test_result_network_and_best(backend):
    X, Y = nnkit.datasets.or_gate()
    res = nnkit.sweep(template(backend), X, Y, lr=[0.01, 1.0, 10.0], epochs=500)
    best = res.best()
    assert res.configs[best]["lr"] != 0.01  # too small a rate crawls (seed 001)
    assert res.best(2)[0] == best
    net = res.network(best)
    assert net.evaluate(X, Y) < res.loss[best, -1]  # one more step's worth lower
    assert net.backend.name == backend


def test_sweep_rejects_bad_input():
    X, Y = nnkit.datasets.or_gate()
    with pytest.raises(ValueError, match="lr: expected finite numbers > 0, got -1.0"):
        nnkit.sweep(template("numpy"), X, Y, lr=[0.1, -1])
    with pytest.raises(ValueError, match="lr: expected finite numbers > 0, got nan"):
        nnkit.sweep(template("numpy"), X, Y, lr=[float("nan")])
    with pytest.raises(ValueError, match="lr: expected a number or a 1-D list"):
        nnkit.sweep(template("numpy"), X, Y, lr=[[0.1]])
    with pytest.raises(ValueError, match="lr: expected finite numbers"):
        nnkit.sweep(template("numpy"), X, Y, lr=["fast"])
    with pytest.raises(ValueError, match="seed: expected integers"):
        nnkit.sweep(template("numpy"), X, Y, lr=[0.1], seed=[-2])
    with pytest.raises(TypeError, match="net: expected a template"):
        nnkit.sweep("net", X, Y, lr=[0.1])
    with pytest.raises(ValueError, match="X: expected shape"):
        nnkit.sweep(template("numpy"), np.zeros((4, 3)), Y, lr=[0.1])


def test_minibatch_divergence_matches_separate_fits(backend):
    X, Y = nnkit.datasets.moons(40, seed=2)
    net = nnkit.Network([nnkit.Dense(2, 6, "relu"), nnkit.Dense(6, 1, "linear")],
                        loss="mse", dtype="float64", seed=0, backend=backend)
    lrs = [1e-3, 0.05, 3.0, 40.0]
    res = nnkit.sweep(net, X, Y * 100, lr=lrs, seed=[0, 5], epochs=60, batch_size=7,
                      shuffle=True)
    assert res.diverged.any() and not res.diverged.all()
    for i, cfg in enumerate(res.configs):
        ref = nnkit.Network(net.layers, loss="mse", dtype="float64", seed=cfg["seed"])
        try:
            hist = ref.fit(X, Y * 100, epochs=60, lr=cfg["lr"], batch_size=7, shuffle=True)
            losses, epoch = hist.loss, -1
        except nnkit.TrainingDiverged as exc:
            losses, epoch = exc.history.loss, exc.epoch
        assert res.diverged_epoch[i] == epoch
        np.testing.assert_allclose(res.loss[i, :len(losses)], losses, rtol=1e-9)
        if epoch < 0:
            for (W, b), (rW, rb) in zip(res.params[i], ref.get_params()):
                np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)


# (shared with warm_kernels.py, which compiles their sweep kernels ahead of the tests)
@pytest.mark.parametrize("sizes,acts,loss", OTHER_SHAPES,
                         ids=["1-layer", "1-layer-bce", "wide", "3-layer", "wide-bce"])
def test_other_shapes_equal_separate_fits(backend, sizes, acts, loss):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(OTHER_ROWS, sizes[0]))
    Y = rng.uniform(size=(OTHER_ROWS, sizes[-1]))
    layers = [nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)]
    net = nnkit.Network(layers, loss=loss, dtype="float64", seed=0, backend=backend)
    res = nnkit.sweep(net, X, Y, lr=[0.01, 0.2], seed=[0, 2], epochs=40)
    for i, cfg in enumerate(res.configs):
        ref = nnkit.Network(layers, loss=loss, dtype="float64", seed=cfg["seed"])
        hist = ref.fit(X, Y, epochs=40, lr=cfg["lr"])
        np.testing.assert_allclose(res.loss[i], hist.loss, rtol=1e-9)
        for (W, b), (rW, rb) in zip(res.params[i], ref.get_params()):
            np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-12)



@pytest.mark.parametrize("sizes,acts,loss,dtype,rtol", [
    ((16, 40, 3), ("sigmoid", "sigmoid"), "squared_error", "float32", 1e-4),
    ((16, 40, 3), ("tanh", "sigmoid"), "binary_crossentropy", "float64", 1e-9),
    ((16, 40, 3), ("relu", "linear"), "mse", "float64", 1e-9),
    ((16, 3), ("sigmoid",), "squared_error", "float64", 1e-9),
    ((16, 30, 20, 3), ("tanh", "relu", "sigmoid"), "squared_error", "float64", 1e-9),
], ids=["f32", "bce", "diverging", "1-layer", "3-layer"])
def test_full_batch_sweeps_past_the_generated_sizes(backend, sizes, acts, loss, dtype, rtol):
    """80 rows, past the generated kernels: numba's stacked sweep path (wide first-layer
    GEMM, batched later layers), against separate NumPy fits."""
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, size=(80, sizes[0]))
    Y = rng.uniform(size=(80, sizes[-1]))
    if acts[-1] == "linear":
        Y = Y * 10  # large enough for lr 4 to diverge
    layers = [nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)]
    net = nnkit.Network(layers, loss=loss, dtype=dtype, seed=0, backend=backend)
    res = nnkit.sweep(net, X, Y, lr=[0.01, 0.1, 4.0], seed=[1, 2], epochs=100)
    for i, cfg in enumerate(res.configs):
        ref = nnkit.Network(layers, loss=loss, dtype=dtype, seed=cfg["seed"], backend="numpy")
        try:
            losses, epoch = ref.fit(X, Y, epochs=100, lr=cfg["lr"]).loss, -1
        except nnkit.TrainingDiverged as exc:
            losses, epoch = exc.history.loss, exc.epoch
        assert res.diverged_epoch[i] == epoch
        np.testing.assert_allclose(res.loss[i, :len(losses)], losses, rtol=rtol)
        if dtype == "float64" and epoch < 0:
            for (W, b), (rW, rb) in zip(res.params[i], ref.get_params()):
                np.testing.assert_allclose(W, rW, rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(b, rb, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"optimizer": "momentum"}, {"batch_size": 7}])
def test_numpy_reference_sweep_is_the_reference_fit_to_the_bit(kw):
    """The numpy backend's "reference" sweep path trains each configuration by the
    reference step (plain SGD: lr-scaled gradients, then one subtraction a parameter):
    the same bits as the configuration's own fit."""
    be = nnkit.get_backend("numpy")
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(30, 3)), rng.uniform(size=(30, 2))
    layers = [nnkit.Dense(3, 5, "tanh"), nnkit.Dense(5, 2, "sigmoid")]
    with be.use_path("reference"):
        res = nnkit.sweep(nnkit.Network(layers, seed=0, backend="numpy", dtype="float64"),
                          X, Y, lr=[0.3], seed=[5], epochs=20, progress=False, **kw)
    net = nnkit.Network(layers, seed=5, backend="numpy", dtype="float64")
    net.fit(X, Y, epochs=20, lr=0.3, **kw)
    for (W, b), (fW, fb) in zip(res.params[0], net.get_params()):
        np.testing.assert_array_equal(W, fW)
        np.testing.assert_array_equal(b, fb)
