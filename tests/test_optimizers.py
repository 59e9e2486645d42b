"""Issue 14: optimizers (SGD, momentum, Nesterov, Adam) and L2 on every backend and every
execution path, against ``optim_reference.py`` (an independent float64 trainer written from
the documented torch.optim formulas); optimizer state across fit / save / load; errors;
sweeps; hypothesis properties of single updates on a one-layer linear net whose gradient
the test chooses."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fake_cupy
import nnkit
import optim_reference as ref
from nnkit.backends import get_backend

from conftest import BACKENDS, forced

CUPY_EMULATED = "cupy" not in BACKENDS and fake_cupy.compiler_available()

ROWS = 8
# Few shapes on purpose: numba generates (and the cupy stand-in compiles) kernels per shape.
ARCHS = {
    "softmax": ((3, 4, 3), ("tanh", "softmax"), "categorical_crossentropy"),
    "bce": ((2, 3, 1), ("relu", "sigmoid"), "binary_crossentropy"),
    "mse": ((3, 4, 2), ("tanh", "sigmoid"), "mse"),
    "se": ((2, 3, 2), ("sigmoid", "linear"), "squared_error"),
}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
LR = {"sgd": 0.3, "momentum": 0.05, "nesterov": 0.05, "adam": 0.02}
L2 = 0.01
MINI = 3  # 8 rows -> batches of 3, 3, 2


def steps_to_epochs(steps, batch_size, n=ROWS):
    per_epoch = 1 if batch_size is None else -(-n // batch_size)
    return -(-steps // per_epoch)


def data(arch, n=ROWS, seed=5):
    sizes, _, loss = ARCHS[arch]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    if loss == "categorical_crossentropy":
        Y = ref.one_hot(rng.integers(0, sizes[-1], n), sizes[-1])
    elif loss == "binary_crossentropy":
        Y = (rng.uniform(size=(n, sizes[-1])) > 0.5).astype(np.float64)
    else:
        Y = rng.uniform(size=(n, sizes[-1]))
    return X, Y


def network(arch, backend="numpy", seed=2, dtype="float64"):
    sizes, acts, loss = ARCHS[arch]
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend=backend)


def reference(net, arch, X, Y, epochs, lr, batch_size=None, shuffle=False, optimizer="sgd",
              l2=0.0):
    """The reference run from ``net``'s current parameters (call it before net.fit)."""
    _, acts, loss = ARCHS[arch]
    return ref.train(net.get_params(), acts, loss, X, Y, epochs, lr, batch_size,
                     net.seed if shuffle else None, optimizer, l2)


def close(got, want, rtol=1e-9, atol=1e-12):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def params_close(got, want, rtol=1e-9, atol=1e-12):
    assert len(got) == len(want)
    for (W, b), (rW, rb) in zip(got, want):
        close(W, rW, rtol, atol)
        close(b, rb, rtol, atol)


def params_differ(got, want, by=1e-6):
    return max(np.max(np.abs(W - rW)) for (W, _), (rW, _) in zip(got, want)) > by


def case_id(case):
    arch, opt, l2, bs = case
    return f"{arch}-{opt}-{'l2' if l2 else 'nol2'}-{'full' if bs is None else 'mini'}"


# ------------------------------------------------------------- backends, paths
def _cupy_paths():
    from nnkit.backends.cupy_backend import CupyBackend
    return CupyBackend.paths


def _pairs(call):
    pairs = [(b, p) for b in BACKENDS for p, calls in get_backend(b).paths.items()
             if call in calls]
    if CUPY_EMULATED:
        pairs += [("cupy-emulated", p) for p, calls in _cupy_paths().items() if call in calls]
    return pairs


FIT_PAIRS = _pairs("epochs")
SWEEP_PAIRS = _pairs("sweep")
STATE_BACKENDS = BACKENDS + (["cupy-emulated"] if CUPY_EMULATED else [])


# ================================================================ the reference
def test_reference_gradients_match_finite_differences():
    for arch in ARCHS:
        for l2 in (0.0, 0.3):
            X, Y = data(arch)
            _, acts, loss = ARCHS[arch]
            params = [(W * 2.0, b + 0.1) for W, b in network(arch).get_params()]
            _, grads = ref.loss_and_grads(params, acts, loss, X, Y, l2)
            eps = 1e-6
            for layer in range(len(params)):
                for j in range(2):
                    numeric = np.zeros_like(params[layer][j])
                    for idx in np.ndindex(numeric.shape):
                        values = []
                        for sign in (1, -1):
                            moved = [(W.copy(), b.copy()) for W, b in params]
                            moved[layer][j][idx] += sign * eps
                            values.append(ref.loss_and_grads(moved, acts, loss, X, Y, l2)[0])
                        numeric[idx] = (values[0] - values[1]) / (2 * eps)
                    g = grads[layer][j]
                    err = np.linalg.norm(g - numeric) / max(np.linalg.norm(g)
                                                            + np.linalg.norm(numeric), 1e-12)
                    assert err < 1e-7, (arch, l2, layer, j, err)


def _one_neuron():
    # a = 2 W + b with W = 1, b = 0.5 on x = 2, y = 1: residual 1.5, dW = 3, db = 1.5
    return [(np.array([[1.0]]), np.array([0.5]))], ["linear"], np.array([[2.0]]), np.array([[1.0]])


def test_reference_hand_examples_sgd_momentum_nesterov_l2():
    params, acts, X, Y = _one_neuron()
    t = ref.Trainer(params, acts, "squared_error", "momentum")
    assert t.fit(X, Y, 2, 0.1) == pytest.approx([1.125, 0.28125], rel=1e-15)
    (W, b), = t.get_params()
    assert W[0, 0] == pytest.approx(0.28, rel=1e-14) and b[0] == pytest.approx(0.14, rel=1e-14)
    t = ref.Trainer(params, acts, "squared_error", "nesterov")
    # step 2: a = 2 * 0.43 + 0.215 = 1.075, residual 0.075
    assert t.fit(X, Y, 2, 0.1) == pytest.approx([1.125, 0.5 * 0.075 ** 2], rel=1e-12)
    (W, b), = t.get_params()
    assert W[0, 0] == pytest.approx(0.1585, rel=1e-13)
    assert b[0] == pytest.approx(0.07925, rel=1e-13)
    t = ref.Trainer(params, acts, "squared_error", "sgd", l2=0.1)
    assert t.fit(X, Y, 1, 0.1) == pytest.approx([1.175], rel=1e-15)
    (W, b), = t.get_params()
    assert W[0, 0] == pytest.approx(0.69, rel=1e-15) and b[0] == pytest.approx(0.35, rel=1e-15)
    # momentum 0 is plain SGD
    a = ref.Trainer(params, acts, "squared_error", {"kind": "sgd", "momentum": 0.0}, l2=0.1)
    a.fit(X, Y, 3, 0.1)
    s = ref.Trainer(params, acts, "squared_error", "sgd", l2=0.1)
    s.fit(X, Y, 3, 0.1)
    params_close(a.get_params(), s.get_params(), rtol=0, atol=0)


def test_reference_hand_example_adam():
    params, acts, X, Y = _one_neuron()
    lr, eps = 0.01, 1e-8
    t = ref.Trainer(params, acts, "squared_error", "adam", l2=0.1)
    t.fit(X, Y, 1, lr)
    (W, b), = t.get_params()
    g1W, g1b = 3.1, 1.5  # first step: m_hat = g, sqrt(v_hat) = |g|
    W1, b1 = 1.0 - lr * g1W / (g1W + eps), 0.5 - lr * g1b / (g1b + eps)
    assert W[0, 0] == pytest.approx(W1, rel=1e-15) and b[0] == pytest.approx(b1, rel=1e-15)
    t.fit(X, Y, 1, lr)
    (W, b), = t.get_params()
    r = 2 * W1 + b1 - 1.0
    g2W, g2b = 2 * r + 0.1 * W1, r
    for got, start, g1, g2 in ((W[0, 0], W1, g1W, g2W), (b[0], b1, g1b, g2b)):
        m = 0.9 * 0.1 * g1 + 0.1 * g2
        v = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2
        want = start - lr / (1 - 0.9 ** 2) * m / (math.sqrt(v) / math.sqrt(1 - 0.999 ** 2) + eps)
        assert got == pytest.approx(want, rel=1e-14)


def test_reference_hand_examples_softmax_and_bce():
    # z = (0, ln 3): p = (1/4, 3/4); label 0: loss ln 4, dz = p - y = (-3/4, 3/4)
    params = [(np.array([[0.0, 0.0]]), np.array([0.0, math.log(3.0)]))]
    value, grads = ref.loss_and_grads(params, ["softmax"], "categorical_crossentropy",
                                      np.array([[1.0]]), ref.one_hot([0], 2))
    assert value == pytest.approx(math.log(4.0), rel=1e-15)
    close(grads[0][0], [[-0.75, 0.75]], rtol=1e-15, atol=0)
    close(grads[0][1], [-0.75, 0.75], rtol=1e-15, atol=0)
    # huge logits stay finite: z = (1e4, 0), label 1 -> loss 1e4
    params = [(np.array([[0.0, 0.0]]), np.array([1e4, 0.0]))]
    value, grads = ref.loss_and_grads(params, ["softmax"], "categorical_crossentropy",
                                      np.array([[1.0]]), ref.one_hot([1], 2))
    assert value == 1e4
    close(grads[0][1], [1.0, -1.0], rtol=1e-15, atol=0)
    # BCE from logits: z = 0, y = 1: loss ln 2, dz = -1/2
    params = [(np.array([[0.0]]), np.array([0.0]))]
    value, grads = ref.loss_and_grads(params, ["sigmoid"], "binary_crossentropy",
                                      np.array([[1.0]]), np.array([[1.0]]))
    assert value == pytest.approx(math.log(2.0), rel=1e-15) and grads[0][1][0] == -0.5


# ============================================================ parity: numpy, all
@pytest.mark.parametrize("batch", [None, MINI], ids=["full", "mini"])
@pytest.mark.parametrize("l2", [0.0, L2], ids=["nol2", "l2"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_numpy_backend_matches_the_reference_200_steps(arch, opt, l2, batch):
    X, Y = data(arch)
    net = network(arch, "numpy")
    epochs = steps_to_epochs(200, batch)
    want_loss, want_params = reference(net, arch, X, Y, epochs, LR[opt], batch,
                                       shuffle=True, optimizer=opt, l2=l2)
    hist = net.fit(X, Y, epochs=epochs, lr=LR[opt], batch_size=batch, shuffle=True,
                   optimizer=opt, l2=l2)
    close(hist.loss, want_loss)
    params_close(net.get_params(), want_params)
    # training did something (the comparison is not between two idle runs)
    assert want_loss[-1] < want_loss[0]


# A covering set for every (backend, path): each optimizer with and without L2, each
# architecture full batch and mini-batch (shuffled).
CASES = [
    ("softmax", "sgd", 0.0, None),
    ("bce", "sgd", 0.0, None),  # plain SGD: the generated kernels' case
    ("softmax", "adam", L2, MINI),
    ("softmax", "nesterov", L2, None),
    ("softmax", "momentum", 0.0, MINI),
    ("bce", "momentum", L2, None),
    ("bce", "adam", 0.0, None),
    ("bce", "nesterov", 0.0, MINI),
    ("mse", "sgd", L2, MINI),
    ("mse", "adam", L2, None),
]


def _forced_or_skip(be, path, batch, fn):
    """``forced(be, path, fn)``; skipped where the path refuses the run: full batches only
    (on mini-batches) or ``Backend.supports(path, spec)`` False ("cannot train")."""
    try:
        return forced(be, path, fn)
    except ValueError as exc:
        if batch is not None and "full batches only" in str(exc):
            pytest.skip(f"the {path} path trains full batches only")
        if "cannot train" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("name,path", FIT_PAIRS, ids=[f"{b}-{p}" for b, p in FIT_PAIRS])
def test_every_fit_path_matches_the_reference_200_steps(make_backend, name, path, case):
    arch, opt, l2, batch = case
    be = make_backend(name)
    X, Y = data(arch)
    net = network(arch, be)
    epochs = steps_to_epochs(200, batch)
    want_loss, want_params = reference(net, arch, X, Y, epochs, LR[opt], batch,
                                       shuffle=True, optimizer=opt, l2=l2)
    hist = _forced_or_skip(be, path, batch, lambda: net.fit(
        X, Y, epochs=epochs, lr=LR[opt], batch_size=batch, shuffle=True, optimizer=opt,
        l2=l2))
    close(hist.loss, want_loss)
    params_close(net.get_params(), want_params)


@pytest.mark.parametrize("case", [("softmax", "adam", L2, None), ("softmax", "momentum", 0.0, MINI),
                                  ("bce", "nesterov", L2, None), ("mse", "adam", 0.0, MINI)],
                         ids=case_id)
@pytest.mark.parametrize("name", BACKENDS)
def test_float32_losses_follow_the_float64_reference_100_steps(name, case):
    arch, opt, l2, batch = case
    X, Y = data(arch)
    net = network(arch, name, dtype="float32")
    epochs = steps_to_epochs(100, batch)
    X32 = X.astype(np.float32).astype(np.float64)  # what the float32 network sees
    want_loss, _ = reference(net, arch, X32, Y, epochs, LR[opt], batch, shuffle=True,
                             optimizer=opt, l2=l2)
    hist = net.fit(X, Y, epochs=epochs, lr=LR[opt], batch_size=batch, shuffle=True,
                   optimizer=opt, l2=l2)
    np.testing.assert_allclose(hist.loss, want_loss, rtol=1e-4)


@pytest.mark.parametrize("name", BACKENDS)
def test_lr_schedule_scales_the_rate_of_each_epoch_with_adam_and_momentum(name):
    X, Y = data("softmax")
    _, acts, loss = ARCHS["softmax"]
    schedule = lambda e: 0.5 ** (e // 10)  # noqa: E731
    for opt in ("adam", "nesterov"):
        net = network("softmax", name)
        t = ref.Trainer(net.get_params(), acts, loss, opt, l2=L2)
        orders = ref.shuffle_orders(net.seed, ROWS, 40)
        want = [t.fit(X, Y, 1, LR[opt] * schedule(e), MINI, orders[e:e + 1])[0]
                for e in range(40)]
        hist = net.fit(X, Y, epochs=40, lr=LR[opt], batch_size=MINI, shuffle=True,
                       lr_schedule=schedule, optimizer=opt, l2=L2)
        close(hist.loss, want)
        params_close(net.get_params(), t.get_params())


# ======================================================================= sweeps
SWEEP_CASES = [("bce", "sgd", 0.0, None), ("softmax", "adam", L2, None),
               ("bce", "nesterov", 0.0, MINI), ("mse", "momentum", L2, MINI)]


@pytest.mark.parametrize("case", SWEEP_CASES, ids=case_id)
@pytest.mark.parametrize("name,path", SWEEP_PAIRS, ids=[f"{b}-{p}" for b, p in SWEEP_PAIRS])
def test_every_sweep_path_equals_separate_fits(make_backend, name, path, case):
    arch, opt, l2, batch = case
    be = make_backend(name)
    X, Y = data(arch)
    # 3 rates x seeds (0, 4), 30 epochs, 8 rows: test_paths.py's sweeps (shared kernels)
    lrs, seeds, epochs = [LR[opt] * 0.25, LR[opt] * 0.5, LR[opt]], [0, 4], 30
    template = network(arch, be)
    res = _forced_or_skip(be, path, batch, lambda: nnkit.sweep(
        template, X, Y, lr=lrs, seed=seeds, epochs=epochs, batch_size=batch, shuffle=True,
        optimizer=opt, l2=l2))
    assert res.loss.shape == (6, epochs)
    for i, cfg in enumerate(res.configs):
        start = network(arch, "numpy", seed=cfg["seed"])
        want_loss, want_params = reference(start, arch, X, Y, epochs, cfg["lr"], batch,
                                           shuffle=True, optimizer=opt, l2=l2)
        close(res.loss[i], want_loss)
        params_close(res.network(i, backend="numpy").get_params(), want_params)


def test_sweep_with_optimizer_objects_equals_separate_network_fits(backend):
    X, Y = data("softmax")
    opt = nnkit.Adam(beta1=0.8, beta2=0.99, eps=1e-7)
    res = nnkit.sweep(network("softmax", backend), X, Y, lr=[0.01, 0.03], seed=[1, 4],
                      epochs=25, batch_size=MINI, shuffle=True, optimizer=opt, l2=0.05)
    for i, cfg in enumerate(res.configs):
        net = network("softmax", "numpy", seed=cfg["seed"])
        hist = net.fit(X, Y, epochs=25, lr=cfg["lr"], batch_size=MINI, shuffle=True,
                       optimizer=nnkit.Adam(beta1=0.8, beta2=0.99, eps=1e-7), l2=0.05)
        close(res.loss[i], hist.loss)
        params_close(res.network(i, backend="numpy").get_params(), net.get_params())


# ============================================================= optimizer state
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("name", STATE_BACKENDS)
def test_two_fits_of_50_equal_one_of_100(make_backend, name, opt):
    be = make_backend(name)
    X, Y = data("softmax")
    for batch in (None, MINI):
        one, two = network("softmax", be), network("softmax", be)
        want_loss, want_params = reference(one, "softmax", X, Y, 100, LR[opt], batch,
                                           shuffle=True, optimizer=opt, l2=L2)
        kw = dict(lr=LR[opt], batch_size=batch, shuffle=True, optimizer=opt, l2=L2)
        h100 = one.fit(X, Y, epochs=100, **kw)
        h1 = two.fit(X, Y, epochs=50, **kw)
        h2 = two.fit(X, Y, epochs=50, **kw)
        close(list(h1.loss) + list(h2.loss), h100.loss, rtol=1e-11)
        params_close(two.get_params(), one.get_params(), rtol=1e-11)
        close(h100.loss, want_loss)
        params_close(one.get_params(), want_params)


def _continued_or_restarted(name, first, second, batch=MINI):
    """Fit 20 epochs with ``first`` then 20 with ``second`` (no shuffling); return the
    final params and the references for 'the state carried on' and 'it started fresh'."""
    X, Y = data("softmax")
    _, acts, loss = ARCHS["softmax"]
    net = network("softmax", name)
    start = net.get_params()
    net.fit(X, Y, epochs=20, lr=0.02, batch_size=batch, optimizer=first[0], l2=L2)
    net.fit(X, Y, epochs=20, lr=0.02, batch_size=batch, optimizer=second[0], l2=L2)
    t = ref.Trainer(start, acts, loss, first[1], l2=L2)
    t.fit(X, Y, 20, 0.02, batch)
    fresh = ref.Trainer(t.get_params(), acts, loss, second[1], l2=L2)
    fresh.fit(X, Y, 20, 0.02, batch)
    t.settings = ref.optimizer_settings(second[1])
    t.fit(X, Y, 20, 0.02, batch)
    return net.get_params(), t.get_params(), fresh.get_params()


@pytest.mark.parametrize("name", BACKENDS)
def test_the_same_optimizer_or_an_equal_object_keeps_the_state(name):
    adam = {"kind": "adam"}
    for first, second in [(("adam", adam), ("adam", adam)),
                          ((nnkit.Adam(), adam), (nnkit.Adam(), adam)),
                          (("adam", adam), (nnkit.Adam(beta1=0.9), adam)),
                          (("momentum", "momentum"), (nnkit.SGD(momentum=0.9), "momentum")),
                          ((nnkit.SGD(momentum=0.5, nesterov=True),
                            {"kind": "sgd", "momentum": 0.5, "nesterov": True}),
                           (nnkit.SGD(momentum=0.5, nesterov=True),
                            {"kind": "sgd", "momentum": 0.5, "nesterov": True}))]:
        got, carried, fresh = _continued_or_restarted(name, first, second)
        assert params_differ(carried, fresh)
        params_close(got, carried)


@pytest.mark.parametrize("name", BACKENDS)
def test_a_different_optimizer_or_settings_start_fresh(name):
    mom = lambda mu, nest=False: {"kind": "sgd", "momentum": mu, "nesterov": nest}  # noqa
    for first, second in [(("momentum", "momentum"), ("adam", "adam")),
                          (("adam", "adam"), ("nesterov", "nesterov")),
                          ((nnkit.SGD(momentum=0.9), mom(0.9)),
                           (nnkit.SGD(momentum=0.5), mom(0.5))),
                          (("momentum", "momentum"), ("nesterov", "nesterov")),
                          ((nnkit.Adam(), {"kind": "adam"}),
                           (nnkit.Adam(beta1=0.8), {"kind": "adam", "beta1": 0.8})),
                          ((nnkit.Adam(), {"kind": "adam"}),
                           (nnkit.Adam(eps=1e-6), {"kind": "adam", "eps": 1e-6}))]:
        got, carried, fresh = _continued_or_restarted(name, first, second)
        assert params_differ(carried, fresh)
        params_close(got, fresh)


@pytest.mark.parametrize("name", BACKENDS)
def test_reset_optimizer_clears_the_state(name):
    X, Y = data("softmax")
    _, acts, loss = ARCHS["softmax"]
    for opt in ("adam", "momentum"):
        net = network("softmax", name)
        t = ref.Trainer(net.get_params(), acts, loss, opt, l2=L2)
        net.fit(X, Y, epochs=20, lr=0.02, batch_size=MINI, optimizer=opt, l2=L2)
        t.fit(X, Y, 20, 0.02, MINI)
        net.reset_optimizer()
        t.reset()
        net.fit(X, Y, epochs=20, lr=0.02, batch_size=MINI, optimizer=opt, l2=L2)
        t.fit(X, Y, 20, 0.02, MINI)
        params_close(net.get_params(), t.get_params())
    net.reset_optimizer()  # with no state: fine
    network("softmax", name).reset_optimizer()


@pytest.mark.parametrize("opt", ["adam", "nesterov"])
@pytest.mark.parametrize("name", BACKENDS)
def test_save_and_load_keep_the_optimizer_state(tmp_path, name, opt):
    X, Y = data("softmax")
    kw = dict(lr=LR[opt], batch_size=MINI, optimizer=opt, l2=L2)
    whole = network("softmax", name)
    whole.fit(X, Y, epochs=40, **kw)
    for target in dict.fromkeys([name, "numpy"]):
        net = network("softmax", name)
        net.fit(X, Y, epochs=20, **kw)
        path = tmp_path / f"{name}-{target}.npz"
        nnkit.save(net, path)
        loaded = nnkit.load(path, backend=target)
        params_close(loaded.get_params(), net.get_params(), rtol=0, atol=0)
        loaded.fit(X, Y, epochs=20, **kw)
        params_close(loaded.get_params(), whole.get_params())
        # and a loaded network whose state is reset restarts
        again = nnkit.load(path, backend=target)
        again.reset_optimizer()
        again.fit(X, Y, epochs=20, **kw)
        assert params_differ(again.get_params(), whole.get_params())


def test_the_string_names_equal_their_objects(backend):
    X, Y = data("softmax")
    for name, obj in [("sgd", nnkit.SGD()), ("momentum", nnkit.SGD(momentum=0.9)),
                      ("nesterov", nnkit.SGD(momentum=0.9, nesterov=True)),
                      ("adam", nnkit.Adam()), ("adam", nnkit.Adam(0.9, 0.999, 1e-8)),
                      ("sgd", nnkit.SGD(momentum=0.0))]:
        a, b = network("softmax", backend), network("softmax", backend)
        ha = a.fit(X, Y, epochs=15, lr=0.02, batch_size=MINI, optimizer=name, l2=L2)
        hb = b.fit(X, Y, epochs=15, lr=0.02, batch_size=MINI, optimizer=obj, l2=L2)
        close(ha.loss, hb.loss, rtol=1e-14, atol=0)
        params_close(a.get_params(), b.get_params(), rtol=1e-14, atol=0)
    assert nnkit.SGD(momentum=0.9) == nnkit.SGD(momentum=0.9)
    assert nnkit.Adam() == nnkit.Adam(beta1=0.9, beta2=0.999, eps=1e-8)
    assert nnkit.Adam() != nnkit.Adam(beta1=0.8)
    assert nnkit.SGD(momentum=0.9) != nnkit.SGD(momentum=0.9, nesterov=True)


# ======================================================================= errors
BAD_OPTIMIZERS = [
    lambda: "rmsprop", lambda: "", lambda: "Adam ", lambda: 3, lambda: object(),
    lambda: nnkit.Adam, lambda: nnkit.SGD(momentum=-0.1),
    lambda: nnkit.SGD(momentum=0.0, nesterov=True), lambda: nnkit.SGD(nesterov=True),
    lambda: nnkit.Adam(beta1=1.0), lambda: nnkit.Adam(beta1=-0.1), lambda: nnkit.Adam(beta2=1.0),
    lambda: nnkit.Adam(beta2=-0.5), lambda: nnkit.Adam(eps=0.0), lambda: nnkit.Adam(eps=-1e-8),
]


@pytest.mark.parametrize("make", BAD_OPTIMIZERS, ids=[
    "unknown", "empty", "spaced", "int", "object", "class", "negative-momentum",
    "nesterov-without-momentum", "nesterov-default-momentum", "beta1-1", "beta1-negative",
    "beta2-1", "beta2-negative", "eps-0", "eps-negative"])
def test_invalid_optimizers_are_named_and_change_nothing(make):
    X, Y = data("softmax")
    net = network("softmax", "numpy")
    net.fit(X, Y, epochs=3, lr=0.02, optimizer="adam")
    before = net.get_params()
    with pytest.raises((ValueError, TypeError), match="optimizer"):
        net.fit(X, Y, epochs=3, lr=0.02, optimizer=make())
    params_close(net.get_params(), before, rtol=0, atol=0)
    # the Adam state survived the refused call: continuing equals an uninterrupted run
    whole = network("softmax", "numpy")
    whole.fit(X, Y, epochs=6, lr=0.02, optimizer="adam")
    net.fit(X, Y, epochs=3, lr=0.02, optimizer="adam")
    params_close(net.get_params(), whole.get_params(), rtol=1e-13, atol=0)


@pytest.mark.parametrize("l2", [-1e-3, float("nan"), float("inf"), -float("inf")])
def test_invalid_l2_is_named(l2):
    X, Y = data("softmax")
    net = network("softmax", "numpy")
    before = net.get_params()
    with pytest.raises(ValueError, match="l2"):
        net.fit(X, Y, epochs=3, lr=0.02, l2=l2)
    with pytest.raises(ValueError, match="l2"):
        net.gradients(X, Y, l2=l2)
    with pytest.raises(ValueError, match="l2"):
        nnkit.gradcheck(net, X, Y, l2=l2)
    with pytest.raises(ValueError, match="l2"):
        nnkit.sweep(net, X, Y, lr=[0.1], epochs=2, l2=l2)
    with pytest.raises((ValueError, TypeError), match="optimizer"):
        nnkit.sweep(net, X, Y, lr=[0.1], epochs=2, optimizer="rmsprop")
    params_close(net.get_params(), before, rtol=0, atol=0)


def test_zero_l2_and_default_optimizer_are_plain_sgd():
    X, Y = data("mse")
    a, b = network("mse"), network("mse")
    ha = a.fit(X, Y, epochs=30, lr=0.3)
    hb = b.fit(X, Y, epochs=30, lr=0.3, optimizer="sgd", l2=0.0)
    close(ha.loss, hb.loss, rtol=0, atol=0)
    params_close(a.get_params(), b.get_params(), rtol=0, atol=0)


# ======================================================== gradients with L2
@pytest.mark.parametrize("arch", ["softmax", "bce", "mse", "se"])
def test_gradients_with_l2_match_the_reference(backend, arch):
    X, Y = data(arch)
    _, acts, loss = ARCHS[arch]
    net = network(arch, backend)
    for l2 in (0.0, 0.25):
        value, want = ref.loss_and_grads(net.get_params(), acts, loss, X, Y, l2)
        got = net.gradients(X, Y, l2=l2)
        params_close(got, want, rtol=1e-10, atol=1e-14)
        assert nnkit.gradcheck(net, X, Y, l2=l2) < 1e-6
    # evaluate is the plain mean loss (no L2 term), as before
    value, _ = ref.loss_and_grads(net.get_params(), acts, loss, X, Y)
    assert net.evaluate(X, Y) == pytest.approx(value, rel=1e-12)


def test_reported_loss_includes_the_l2_term_at_that_forward_pass(backend):
    X, Y = data("softmax")
    _, acts, loss = ARCHS["softmax"]
    net = network("softmax", backend)
    value, _ = ref.loss_and_grads(net.get_params(), acts, loss, X, Y, 0.5)
    hist = net.fit(X, Y, epochs=1, lr=0.02, optimizer="adam", l2=0.5)
    assert hist.loss[0] == pytest.approx(value, rel=1e-12)
    assert value > ref.loss_and_grads(network("softmax").get_params(), acts, loss, X, Y)[0]


# ============================================ properties on a one-layer linear net
K = 3
PROPS = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
grads_st = st.lists(st.one_of(st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
                              st.sampled_from([0.0, 1e-12, -1e-12, 1.0, -1.0])),
                    min_size=K, max_size=K).map(np.array)


def linear_net(backend, W0, b0):
    """Dense(1, K, linear), squared error, on x = [[1]]: with Y = W + b - g the gradient of
    both W's row and b is g (the residual; n = 1)."""
    net = nnkit.Network([nnkit.Dense(1, K, "linear")], loss="squared_error",
                        dtype="float64", seed=0, backend=backend)
    net.set_params([(np.reshape(W0, (1, K)), b0)])
    return net


def step_with_gradient(net, g, lr, optimizer, l2=0.0):
    """One update whose data gradient is g (for W's row and for b); returns the gradient
    the network actually sees (the float64 residual) and the params before."""
    (W, b), = net.get_params()
    Y = (W[0] + b) - g
    actual = (W[0] + b) - Y
    net.fit(np.ones((1, 1)), Y[None, :], epochs=1, lr=lr, optimizer=optimizer, l2=l2)
    return actual, W[0], b


start_st = st.lists(st.floats(-5, 5, allow_nan=False), min_size=2 * K,
                    max_size=2 * K).map(lambda v: (np.array(v[:K]), np.array(v[K:])))


@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(start=start_st, seq=st.lists(grads_st, min_size=1, max_size=4),
       lr=st.floats(1e-4, 1.0), b1=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
       b2=st.sampled_from([0.5, 0.9, 0.999, 0.9999]))
def test_adam_steps_are_bounded_by_lr(name, start, seq, lr, b1, b2):
    """|step_t| <= lr (1 - b1) sqrt(1 - b2^t) sqrt(sum_{k<t} (b1^2/b2)^k) / ((1 - b1^t)
    sqrt(1 - b2)) by Cauchy-Schwarz on m_t against v_t (eps only shrinks it); for t = 1
    the bound is lr: one Adam step moves each parameter by at most lr, whatever g."""
    net = linear_net(name, *start)
    opt = nnkit.Adam(beta1=b1, beta2=b2, eps=1e-8)
    r = b1 * b1 / b2
    for t, g in enumerate(seq, start=1):
        _, W, b = step_with_gradient(net, g, lr, opt)
        (W1, b1_), = net.get_params()
        S = sum(r ** k for k in range(t))
        bound = lr * (1 - b1) * math.sqrt(1 - b2 ** t) * math.sqrt(S) / (
            (1 - b1 ** t) * math.sqrt(1 - b2))
        if t == 1:
            assert bound == pytest.approx(lr, rel=1e-12)
        slack = bound * (1 + 1e-9) + 1e-15 * (1 + np.abs(W) + np.abs(b))
        assert np.all(np.abs(W1[0] - W) <= slack)
        assert np.all(np.abs(b1_ - b) <= slack)


@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(start=start_st, g=grads_st, lr=st.floats(1e-4, 1.0))
def test_one_adam_step_is_lr_times_the_gradient_sign(name, start, g, lr):
    """t = 1: m_hat = g, sqrt(v_hat) = |g|, so the step is lr g / (|g| + eps)."""
    net = linear_net(name, *start)
    actual, W, b = step_with_gradient(net, g, lr, "adam")
    (W1, b1), = net.get_params()
    want = lr * actual / (np.abs(actual) + 1e-8)
    close(W - W1[0], want, rtol=1e-9, atol=1e-15 * (1 + np.max(np.abs(W))))
    close(b - b1, want, rtol=1e-9, atol=1e-15 * (1 + np.max(np.abs(b))))


@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(start=start_st, seq=st.lists(grads_st, min_size=1, max_size=4),
       lr=st.floats(1e-3, 0.5), l2=st.sampled_from([0.0, 0.1]))
def test_momentum_zero_is_sgd(name, start, seq, lr, l2):
    a, b = linear_net(name, *start), linear_net(name, *start)
    for g in seq:
        step_with_gradient(a, g, lr, nnkit.SGD(momentum=0.0), l2)
        step_with_gradient(b, g, lr, "sgd", l2)
        params_close(a.get_params(), b.get_params(), rtol=0, atol=0)


@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(start=start_st, g=grads_st, t=st.integers(1, 4), lr=st.floats(1e-3, 0.5),
       mu=st.sampled_from([0.1, 0.5, 0.9]))
def test_nesterov_is_momentum_one_step_ahead(name, start, g, t, lr, mu):
    """Under a constant gradient g, v_k = g (1 - mu^k) / (1 - mu); momentum moves by
    lr v_k at step k, Nesterov by lr (g + mu v_k) = lr v_{k+1}: t Nesterov steps move as far
    as t + 1 momentum steps less the first one, lr g."""
    mom, nest = linear_net(name, *start), linear_net(name, *start)
    (W0, b0), = mom.get_params()
    total = np.zeros(K)
    for k in range(1, t + 2):
        actual, _, _ = step_with_gradient(mom, g, lr, nnkit.SGD(momentum=mu))
        total += lr * actual * (1 - mu ** k) / (1 - mu)
    for _ in range(t):
        step_with_gradient(nest, g, lr, nnkit.SGD(momentum=mu, nesterov=True))
    (Wm, bm), = mom.get_params()
    (Wn, bn), = nest.get_params()
    scale = 1e-12 * (1 + np.abs(W0[0]) + np.abs(b0) + lr * np.abs(g) * (t + 1) / (1 - mu))
    close(W0[0] - Wm[0], total, rtol=1e-9, atol=np.max(scale))
    # Nesterov after t steps == momentum after t + 1 steps, plus the first step lr g back
    close(Wn[0], Wm[0] + lr * g, rtol=1e-9, atol=np.max(scale))
    close(bn, bm + lr * g, rtol=1e-9, atol=np.max(scale))


@pytest.mark.parametrize("name", BACKENDS)
@PROPS
@given(start=start_st, lr=st.floats(1e-3, 1.0), l2=st.floats(1e-4, 0.5),
       opt=st.sampled_from(["sgd", "adam"]))
def test_l2_with_zero_gradient_decays_weights_only(name, start, lr, l2, opt):
    """Zero data gradient (Y = the prediction): SGD scales W by (1 - lr l2); Adam's first step
    moves W by lr l2 W / (|l2 W| + eps); biases never move."""
    net = linear_net(name, *start)
    (W, b), = net.get_params()
    Y = W + b  # x = 1: the prediction, exactly
    net.fit(np.ones((1, 1)), Y, epochs=1, lr=lr, optimizer=opt, l2=l2)
    (W1, b1), = net.get_params()
    np.testing.assert_array_equal(b1, b)
    if opt == "sgd":
        close(W1, W * (1 - lr * l2), rtol=1e-13, atol=1e-300)
    else:
        close(W - W1, lr * l2 * W / (np.abs(l2 * W) + 1e-8), rtol=1e-9, atol=1e-15)
