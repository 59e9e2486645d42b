"""Issue 14 on the numba backend's generated kernels (``_numba_codegen``): the full-batch
fit kernel with every update rule of the table (sgd, momentum, Nesterov, Adam), with and
without L2, and softmax + categorical cross-entropy (fit and sweep kernels), against the
NumPy reference backend: float64 to 1e-9, float32 losses to 1e-4."""
import numpy as np
import pytest

import nnkit
from nnkit.backends import get_backend

from conftest import BACKENDS

pytestmark = pytest.mark.skipif("numba" not in BACKENDS, reason="numba not usable here")

ARCHS = {  # name: (sizes, activations, loss); tiny nets, full batch
    "or": ((2, 2, 1), ("sigmoid", "sigmoid"), "squared_error"),
    "ce": ((4, 8, 3), ("tanh", "softmax"), "categorical_crossentropy"),
}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
LR = {"sgd": 0.5, "momentum": 0.1, "nesterov": 0.1, "adam": 0.02}


def data(arch, n=8, seed=3):
    sizes, _, loss = ARCHS[arch]
    rng = np.random.default_rng(seed)
    if arch == "or":
        X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
        return X, np.array([[0], [1], [1], [1]], dtype=np.float64)
    X = rng.normal(size=(n, sizes[0]))
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    return X, Y


def network(arch, backend, dtype="float64", seed=1):
    sizes, acts, loss = ARCHS[arch]
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=seed, backend=backend)


def fit_both(arch, optimizer, l2, dtype="float64", epochs=(60, 40), call="epochs"):
    """The same fits (two in a row: optimizer state carries over) on numpy and on the
    numba generated path; returns (numpy net, numba net, numpy losses, numba losses)."""
    X, Y = data(arch)
    X, Y = X.astype(dtype), Y.astype(dtype)
    nets = [network(arch, "numpy", dtype), network(arch, "numba", dtype)]
    losses = [[], []]
    be = get_backend("numba")
    for i, net in enumerate(nets):
        for ep in epochs:
            if i == 0:
                hist = net.fit(X, Y, epochs=ep, lr=LR[optimizer], optimizer=optimizer, l2=l2)
            else:
                with be.use_path("generated") as record:
                    hist = net.fit(X, Y, epochs=ep, lr=LR[optimizer], optimizer=optimizer,
                                   l2=l2)
                assert record.paths() == {"generated"}, record.ran
            losses[i].extend(hist.loss)
    return nets[0], nets[1], np.array(losses[0]), np.array(losses[1])


# Each case is a kernel of its own to compile (~2 s): every update rule on both
# architectures and every rule with and without L2, in 8 kernels instead of the 16 of the
# full product (the rule, the L2 term and the loss are separate lines of the source).
FLOAT64_CASES = [("ce", "sgd", 0.0), ("ce", "momentum", 0.01), ("ce", "nesterov", 0.0),
                 ("ce", "adam", 0.01), ("or", "sgd", 0.01), ("or", "momentum", 0.0),
                 ("or", "nesterov", 0.01), ("or", "adam", 0.0)]


def test_the_float64_cases_cover_every_pair():
    assert {(a, o) for a, o, _ in FLOAT64_CASES} == {(a, o) for a in ARCHS for o in OPTIMIZERS}
    assert {(o, l2) for _, o, l2 in FLOAT64_CASES} == {(o, l2) for o in OPTIMIZERS
                                                       for l2 in (0.0, 0.01)}


@pytest.mark.parametrize("arch,optimizer,l2", FLOAT64_CASES)
def test_generated_fit_matches_reference_float64(arch, optimizer, l2):
    ref, gen, lref, lgen = fit_both(arch, optimizer, l2)
    np.testing.assert_allclose(lgen, lref, rtol=1e-9, atol=1e-13)
    for (W0, b0), (W1, b1) in zip(ref.get_params(), gen.get_params()):
        np.testing.assert_allclose(W1, W0, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(b1, b0, rtol=1e-9, atol=1e-13)
    t0, t1 = ref._state.opt.t[0], gen._state.opt.t[0]
    assert t0 == t1 == 100
    for a0, a1 in zip(ref._state.opt.arrays(), gen._state.opt.arrays()):
        np.testing.assert_allclose(np.asarray(a1), np.asarray(a0), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("arch,optimizer", [("or", "sgd"), ("ce", "adam")])
def test_generated_fit_matches_reference_float32(arch, optimizer):
    _, _, lref, lgen = fit_both(arch, optimizer, 0.01, "float32", epochs=(100,))
    np.testing.assert_allclose(lgen, lref, rtol=1e-4)


def test_generated_steps_carry_optimizer_state():
    """The "step" call (one epoch per kernel call) continues the same state as the
    "epochs" call: 40 single steps then 60 epochs equal 100 epochs."""
    X, Y = data("ce")
    be = get_backend("numba")
    a, b = network("ce", "numba"), network("ce", "numba")
    with be.use_path("generated"):
        la = a.fit(X, Y, epochs=100, lr=0.02, optimizer="adam", l2=0.01).loss
        lb = []
        for _ in range(40):
            lb += list(b.fit(X, Y, epochs=1, lr=0.02, optimizer="adam", l2=0.01).loss)
        lb += list(b.fit(X, Y, epochs=60, lr=0.02, optimizer="adam", l2=0.01).loss)
    np.testing.assert_allclose(lb, la, rtol=1e-12)
    for (W0, b0), (W1, b1) in zip(a.get_params(), b.get_params()):
        np.testing.assert_allclose(W1, W0, rtol=1e-12)


def test_generated_sweep_trains_cross_entropy():
    """CE in the generated full-batch and mini-batch sweep kernels equals the reference."""
    X, Y = data("ce")
    be = get_backend("numba")
    for batch_size in (None, 3):
        results = []
        for name in ("numpy", "numba"):
            net = network("ce", name)
            if name == "numba":
                with be.use_path("generated") as record:
                    res = nnkit.sweep(net, X, Y, lr=[0.1, 0.5], seed=[0, 1], epochs=30,
                                      batch_size=batch_size)
                assert record.paths() == {"generated"}
            else:
                res = nnkit.sweep(net, X, Y, lr=[0.1, 0.5], seed=[0, 1], epochs=30,
                                  batch_size=batch_size)
            results.append(res)
        np.testing.assert_allclose(results[1].loss, results[0].loss, rtol=1e-9)


def test_generated_sweeps_refuse_optimizers_and_planner_avoids_them():
    X, Y = data("or")
    be = get_backend("numba")
    net = network("or", "numba")
    with be.use_path("generated"), pytest.raises(ValueError, match="cannot train.*plain sgd only"):
        nnkit.sweep(net, X, Y, lr=[0.1, 0.2], epochs=2000, optimizer="adam")
    with be.use_path("batched"):  # reference for the planned run below
        ref = nnkit.sweep(net, X, Y, lr=[0.1, 0.2], epochs=2000, optimizer="adam")
    res = nnkit.sweep(net, X, Y, lr=[0.1, 0.2], epochs=2000, optimizer="adam")
    np.testing.assert_allclose(res.loss, ref.loss, rtol=1e-12)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_adam_on_the_generated_path_does_not_depend_on_how_a_run_is_cut(arch):
    """fit cuts long runs into calls by measured time (and early stopping by patience):
    the numbers must not depend on where. Adam's bias corrections are taken by pow at
    every update, as the reference takes them (a running product drifted by ulps)."""
    X, Y = data(arch)
    be = get_backend("numba")
    outcomes = []
    for cuts in ((90,), (1, 2, 40, 47), (45, 45)):
        net = network(arch, "numba")
        losses = []
        with be.use_path("generated"):
            for epochs in cuts:
                losses += net.fit(X, Y, epochs=epochs, lr=LR["adam"], optimizer="adam").loss
        outcomes.append((losses, [(W.tobytes(), b.tobytes()) for W, b in net.get_params()],
                         [a.tobytes() for a in net.get_optimizer_state()[3]]))
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
