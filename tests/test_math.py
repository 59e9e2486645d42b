"""The table of kernel math (backends/_math.py): every rendering covers every name, the
numba kernels' rendered block is current, and the NumPy reference computes what the
table says (its formulas evaluated independently in float64)."""
import warnings

import numpy as np
import pytest

from nnkit.backends import _cuda_codegen, _math, _numba_codegen, get_backend
from nnkit.backends._math import (ACTIVATION_MATH, ACTIVATIONS, LOSS_MATH, LOSSES,
                                  UPDATE_MATH, UPDATES)


def test_numba_kernels_hold_the_current_rendering():
    assert _math.render_numba_kernels(), (
        "backends/_numba_kernels.py is stale: run `python -m nnkit.backends._math`")


def test_numba_rendering_covers_every_name():
    block = _math.numba_math_source()
    for name in ACTIVATIONS:
        assert _math.code_name(name) in block
        assert ACTIVATION_MATH[name].forward(_math.Dialect(), "z") in block
        assert ACTIVATION_MATH[name].derivative(_math.Dialect(), "g", "a") in block
    for name in LOSSES:
        assert _math.code_name(name) in block
        assert LOSS_MATH[name].term(_math.Dialect(), "z", "y") in block
        assert LOSS_MATH[name].grad(_math.Dialect(), "z", "y", "nb") in block
    for rule in UPDATES:
        for target, expr in _math.Dialect().update_lines(rule, _math.Operands()):
            assert f"{target} = {expr}" in block


def kernel_acts(acts, loss):
    return tuple(acts[:-1]) + (("linear",) if loss == "binary_crossentropy" else acts[-1:])


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_generated_sources_render_every_entry(act, loss):
    """Each generated numba and CUDA source carries the table's expressions for the
    activation (hidden layer), the loss and the update. The numba kernels render every
    loss (a rowwise one with its row log-sum-exp); the CUDA ones the elementwise losses."""
    acts = kernel_acts((act, "sigmoid"), loss)
    sizes, n = (2, 3, 1), 4
    g, c = _numba_codegen.G, _cuda_codegen.C
    numba_sources = [_numba_codegen._fit_source(sizes, acts, loss, n),
                     _numba_codegen._many_source(sizes, acts, loss, n, 8),
                     _numba_codegen._minibatch_source(sizes, acts, loss, n, 2)]
    rowwise = LOSS_MATH[loss].rowwise
    cuda_sources = [] if rowwise else [
        _cuda_codegen.fit_source(sizes, acts, loss, n, "float32"),
        _cuda_codegen.sweep_source(sizes, acts, loss, n, "float64")]
    for d, sources in ((g, numba_sources), (c, cuda_sources)):
        for src in sources:
            assert ACTIVATION_MATH[act].forward(d, "s") in src
            assert ACTIVATION_MATH[act].derivative(d, "g", "a") in src
            residual = LOSS_MATH[loss].residual
            dr = None if residual is None else "dr"
            if rowwise:  # the row statistic, named by each kernel
                dr = "rl[c]" if "rl[c]" in src else "rl"
                m, s = ("zm[c]", "se[c]") if dr == "rl[c]" else ("zm", "se")
                term, lse = _math.row_lse_parts(d, "", m, s)
                assert f"{dr} = {lse}" in src
                assert term.split("(")[0] + "(" in src
            elif dr:
                assert f"dr = {residual(d, 'z', 'y')}" in src
            assert LOSS_MATH[loss].term(d, "z", "y", dr) in src
            assert LOSS_MATH[loss].grad(d, "z", "y", str(n) if "nb" not in src else "nb",
                                        dr) in src
    # The update, with each renderer's own operands.
    fit_lines = _numba_codegen.G.update_lines("sgd", _math.Operands())
    assert [f"{t} = {e}" for t, e in fit_lines][0] not in numba_sources[0]  # plain: in place
    assert _numba_codegen._sgd("W0[k, j]", "dW0[k, j]", "lr") in numba_sources[0]
    assert _numba_codegen._sgd("W0[k, j, c]", "acc[c]", "lr[c]") in numba_sources[1]
    if cuda_sources:
        assert _cuda_codegen._sgd("W0[k * 3 + j]", "s", "lr") in cuda_sources[0]


@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("rule", UPDATES)
def test_generated_fit_source_renders_every_update_rule(rule, l2):
    """The numba fit kernel renders each update rule's lines from the table, in order,
    for weights and biases, with the state slots the rule keeps as arguments, the L2
    decay of the table on the weights only and the rule written in as a constant (so
    the kernel's cache key, its source, differs per rule and L2)."""
    g = _numba_codegen.G
    sizes = (2, 3, 1)
    src = _numba_codegen._fit_source(sizes, ("tanh", "sigmoid"), "mse", 4, rule, l2)
    lines = [f"{t} = {e}" for t, e in g.update_lines(rule, _math.Operands())]
    body = [line.strip() for line in src.splitlines()]
    if rule == "sgd" and not l2:  # plain: the in-place update, as before
        assert _numba_codegen._sgd("W0[k, j]", "dW0[k, j]", "lr") in src
    else:
        starts = [i for i, line in enumerate(body) if line == lines[0]]
        assert len(starts) == 2 * (len(sizes) - 1)  # every W and b
        for i in starts:
            assert body[i:i + len(lines)] == lines
        decayed = f"g = {_math.decay(g, 'dW0[k, j]', 'p', 'l2')}"
        assert (decayed in body) == l2
        assert f"g = {_math.decay(g, 'db0[j]', 'p', 'l2')}" not in body
        assert ("loss += 0.5 * hyper[3] * sq" in body) == l2
    assert "def train_epochs(X, Y, P, lrs, losses):" in body
    # the state arrays, read from the address table P in the order of fit_state_layout
    state = [line.split(" = ")[0] for line in body if "= carray(_address(P[" in line]
    slots = UPDATE_MATH[rule].slots
    for i in (1, 2):
        assert (f"S{i}W0" in state) == (slots >= i)
        assert (f"S{i}b1" in state) == (slots >= i)
    assert state[:4] == ["W0", "b0", "W1", "b1"] and state[-2:] == ["hyper", "count"]
    assert len(state) == 4 * (1 + slots) + 2
    others = {(r, x) for r in UPDATES for x in (False, True)} - {(rule, l2)}
    assert all(_numba_codegen._fit_source(sizes, ("tanh", "sigmoid"), "mse", 4, r, x) != src
               for r, x in others)


def test_elementwise_kernels_cover_every_activation_and_update():
    import re
    kernels = {k[0]: k for k in _cuda_codegen.elementwise_kernels()}
    c = _cuda_codegen.C
    for name in ACTIVATIONS:
        code = _math.ACTIVATION_CODES[name]
        assert ACTIVATION_MATH[name].forward(c, "z") in kernels["nnkit_act"][3]
        assert ACTIVATION_MATH[name].derivative(c, "dA", "a") in kernels["nnkit_act_backward"][3]
        assert f"/* {name} */" in kernels["nnkit_act"][3]
        assert code == ACTIVATIONS.index(name)
    assert c.update("p", "g", "(T)lr") in kernels["nnkit_sgd"][3]
    # one kernel per update rule: L2 fused in (decay), then every line of the rule in
    # order, with the rule's slots as outputs and the scalars its lines read as inputs
    for rule in UPDATES:
        name, in_params, out_params, op = kernels[f"nnkit_update_{rule}"]
        decayed = f"const T gd = {_math.decay(c, 'g', 'p', 'l2')};"
        assert decayed in op
        at = op.index(decayed)
        for target, expr in c.update_lines(rule, _math.Operands(g="gd")):
            at = op.index(f"{target} = {expr}", at + 1)
        assert out_params.split(", ") == ["T p"] + [f"T s{i + 1}"
                                                   for i in range(UPDATE_MATH[rule].slots)]
        scalars = _cuda_codegen.update_scalars(rule)
        assert in_params.split(", ") == ["T g", "float64 l2_"] + [f"float64 {s}_"
                                                                 for s in scalars]
        assert "lr" in scalars
        text = " ".join(e for _, e in c.update_lines(rule, _math.Operands()))
        for s in set(_cuda_codegen.UPDATE_SCALARS) - set(scalars):
            assert not re.search(rf"\b{s}\b", text)  # one left out is one never read


# --- the NumPy reference against the table, in float64 -------------------------------
Z = np.concatenate([np.linspace(-40, 40, 81), [-800.0, -30.5, -1e-3, 0.0, 1e-3, 30.5, 800.0]])


def reference_sigmoid(z):
    # An independent float64 formula: accurate in both tails; exp(-z) may overflow to
    # inf for z < -709, where the sigmoid underflows to 0 anyway.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def table(expr, *args):
    return _math.array_function(expr, *args, xp=np, sigmoid=reference_sigmoid)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_reference_activations_follow_the_table(name):
    be = get_backend("numpy")
    forward = table(ACTIVATION_MATH[name].forward, "z")
    derivative = table(ACTIVATION_MATH[name].derivative, "g", "a")
    Zm = Z.reshape(-1, 1)
    A = be.activation_forward(Zm.copy(), name)
    np.testing.assert_allclose(A, forward(Zm), rtol=1e-14, atol=1e-300)
    G = np.cos(Zm)
    np.testing.assert_allclose(be.activation_backward(G, A, name), derivative(G, A),
                               rtol=1e-14, atol=1e-300)


def test_table_sigmoid_formula_is_the_sigmoid():
    e, ratio = _math.sigmoid_lines(_math.Numpy(), "z", "e")
    sig = eval(f"lambda z: (lambda e: {ratio})({e})", {"np": np})
    with np.errstate(over="raise"):  # the formula never overflows
        np.testing.assert_allclose(sig(Z), reference_sigmoid(Z), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("kind", LOSSES)
def test_reference_losses_follow_the_table(kind):
    be = get_backend("numpy")
    rng = np.random.default_rng(3)
    Yhat = rng.normal(scale=5, size=(7, 3))
    Y = rng.uniform(size=(7, 3)) if kind == "binary_crossentropy" else rng.normal(size=(7, 3))
    term, grad, mean = loss_functions(kind)
    want = mean(term(Yhat, Y).sum(), 7)
    assert float(be.loss(Yhat, Y, kind)) == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(be.loss_grad(Yhat, Y, kind), grad(Yhat, Y, 7), rtol=1e-13)


def loss_functions(kind):
    """(term(z, y), grad(z, y, n), mean(total, n)) from the table; a rowwise loss gets
    its row statistic (the log-sum-exp over the last axis) computed here, in float64."""
    loss = LOSS_MATH[kind]
    mean = table(loss.mean, "total", "n")
    if not loss.rowwise:
        return table(loss.term, "z", "y"), table(loss.grad, "z", "y", "n"), mean
    term, grad = table(loss.term, "z", "y", "r"), table(loss.grad, "z", "y", "n", "r")

    def lse(z):
        z = np.atleast_2d(z)
        return np.log(np.sum(np.exp(z - z.max(-1, keepdims=True)), -1, keepdims=True)) \
            + z.max(-1, keepdims=True)
    return (lambda z, y: term(z, y, lse(z).reshape(np.shape(z)[:-1] + (1,))),
            lambda z, y, n: grad(z, y, n, lse(z).reshape(np.shape(z)[:-1] + (1,))), mean)


def test_loss_gradients_are_the_terms_derivatives():
    """Each loss's gradient entry is the derivative of its term entry (central
    differences on the table itself), so the table cannot disagree with itself."""
    rng = np.random.default_rng(0)
    z, y, h = rng.normal(size=50), rng.uniform(size=50), 1e-6
    for kind in LOSSES:
        term, grad, mean = loss_functions(kind)
        if LOSS_MATH[kind].rowwise:  # a row's term depends on every logit of the row
            # targets are probability rows (softmax - y is the gradient for those)
            zr, yr = z.reshape(10, 5), y.reshape(10, 5) / y.reshape(10, 5).sum(1, keepdims=True)
            numeric = np.empty_like(zr)
            for idx in np.ndindex(zr.shape):
                up, down = zr.copy(), zr.copy()
                up[idx] += h
                down[idx] -= h
                numeric[idx] = (mean(term(up, yr).sum(), 5) - mean(term(down, yr).sum(), 5)) \
                    / (2 * h)
            np.testing.assert_allclose(grad(zr, yr, 5), numeric, rtol=1e-6, atol=1e-9)
            continue
        numeric = (mean(term(z + h, y), 5) - mean(term(z - h, y), 5)) / (2 * h)
        np.testing.assert_allclose(grad(z, y, 5), numeric, rtol=1e-6, atol=1e-9)


def test_reference_sgd_update_follows_the_table():
    be = get_backend("numpy")
    rng = np.random.default_rng(1)
    W, b, dW, db = (rng.normal(size=s) for s in ((3, 2), (2,), (3, 2), (2,)))
    step = table(lambda d, p, g, lr: d.update(p, g, lr), "p", "g", "lr")
    want = [step(W, dW, 0.3), step(b, db, 0.3)]
    be.sgd_update([(W, b)], [(dW.copy(), db.copy())], 0.3)
    np.testing.assert_allclose(W, want[0], rtol=1e-15)
    np.testing.assert_allclose(b, want[1], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_sigmoid_is_accurate_and_quiet_in_both_tails(dtype):
    """The reference's 1 / (1 + exp(-z)): within 4 ulp of an extended-precision sigmoid
    wherever the sigmoid is a normal number, 0 (not a warning) where exp(-z) overflows,
    and the biased sigmoid of dense_forward equals act(X W + b) to the bit."""
    be = get_backend("numpy")
    tiny = np.finfo(dtype).tiny
    z = np.concatenate([np.linspace(-80, 80, 4001), [-1e4, -800.0, 800.0, 1e4]]).astype(dtype)
    zl = z.astype(np.longdouble)
    want = 1 / (1 + np.exp(-zl))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = be.activation_forward(z.copy(), "sigmoid")
        X = np.stack([z, np.ones_like(z)], axis=1)
        W = np.array([[1.0], [0.25]], dtype=dtype)
        dense = be.dense_forward(X, W, np.array([-0.25], dtype=dtype), "sigmoid")
    normal = want >= tiny
    ulps = np.abs(got[normal] - want[normal]) / np.spacing(want[normal].astype(dtype))
    assert ulps.max() <= 4
    assert np.all(got[~normal] <= tiny) and np.all(got >= 0)
    assert got[z == -1e4][0] == 0.0 and got[z == 1e4][0] == 1.0
    expected = be.activation_forward((X @ W + np.array([-0.25], dtype=dtype)), "sigmoid")
    np.testing.assert_array_equal(dense, expected)
