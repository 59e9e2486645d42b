"""The tiniest networks' generated fit kernels in scalar form (``_numba_scalar``): the
same numbers as the loop form, to the bit, for every kind of update, loss and L2, with
validation rows; and only below ``SCALAR_MAX_WORK``."""
import numpy as np
import pytest

from nnkit.backends import backend_status

pytestmark = pytest.mark.skipif(not backend_status("numba")[0], reason="numba not usable")

# (sizes, activations, loss, rows, rule, l2, validation rows, dtype): within SCALAR_MAX_WORK
CASES = [
    ((2, 1), ("sigmoid",), "squared_error", 4, "sgd", False, None, "float64"),
    ((2, 2, 1), ("tanh", "linear"), "binary_crossentropy", 3, "adam", True, 1, "float64"),
    ((2, 2, 2), ("relu", "linear"), "categorical_crossentropy", 3, "nesterov", False, None,
     "float32"),
]


def compiled(source, dtype):
    """The kernel of ``source``, loaded as the backend loads its own (cached on disk, so
    a warm run does not compile it again)."""
    from nnkit.backends import _numba_codegen as codegen
    return codegen._load(codegen._header("test", dtype, 0) + source, "test").train_epochs


def run(kernel, sizes, n, rule, val_rows, dtype, epochs=300):
    """Every array the kernel takes, after ``epochs`` epochs from seeded values."""
    from nnkit.backends._math import UPDATE_MATH
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)] if sizes[-1] > 1 \
        else (rng.random((n, 1)) > 0.5).astype(dtype)
    params = [p.astype(dtype) for a, b in zip(sizes, sizes[1:])
              for p in (rng.normal(size=(a, b)), rng.normal(size=b) * 0.1)]
    slots = [np.zeros_like(p) for _ in range(UPDATE_MATH[rule].slots) for p in params]
    state = [*params, *slots, np.array([0.9, 0.999, 1e-7, 0.01]), np.zeros(1, np.int64)]
    args = [np.full(epochs, 0.05), np.empty(epochs)]
    if val_rows:
        args += [X[:val_rows].copy(), Y[:val_rows].copy(), np.empty(epochs)]
    returned = kernel(X, Y, pointers(state, sizes, rule, dtype), *args)
    return returned, [X, Y, *state, *args]


def pointers(state, sizes, rule, dtype):
    from nnkit.backends._numba_codegen import fit_state_pointers
    return fit_state_pointers(state, sizes, rule, dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'-'.join(map(str, c[0]))}-{c[4]}")
def test_the_scalar_form_gives_the_loop_forms_numbers_to_the_bit(monkeypatch, case):
    from nnkit.backends import _numba_codegen as codegen
    sizes, acts, loss, n, rule, l2, val_rows, dtype = case
    scalar_source = codegen._fit_source(sizes, acts, loss, n, rule, l2, val_rows)
    monkeypatch.setattr(codegen, "SCALAR_MAX_WORK", -1)
    loop_source = codegen._fit_source(sizes, acts, loss, n, rule, l2, val_rows)
    assert "for k in range" in loop_source and "for k in range" not in scalar_source
    assert "W0_0_0" in scalar_source and "np.empty" not in scalar_source
    got = run(compiled(scalar_source, dtype), sizes, n, rule, val_rows, dtype)
    want = run(compiled(loop_source, dtype), sizes, n, rule, val_rows, dtype)
    assert got[0] == want[0]
    for a, b in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(got[1][-1]).all()  # it trained (losses, or validation losses)


def test_a_diverging_scalar_kernel_writes_back_the_parameters_it_stopped_at(monkeypatch):
    from nnkit.backends import _numba_codegen as codegen
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    out = {}
    for form, limit in (("scalar", codegen.SCALAR_MAX_WORK), ("loop", -1)):
        monkeypatch.setattr(codegen, "SCALAR_MAX_WORK", limit)
        kernel = compiled(codegen._fit_source((2, 1), ("linear",), "squared_error", 4),
                          "float64")
        W, b, losses = np.array([[0.5], [-0.5]]), np.array([0.1]), np.full(200, np.nan)
        state = [W, b, np.zeros(4), np.zeros(1, np.int64)]
        stopped = kernel(X, np.ones((4, 1)), pointers(state, (2, 1), "sgd", "float64"),
                         np.full(200, 10.0), losses)
        out[form] = stopped, W, b, losses
    stopped, W, b, losses = out["scalar"]
    assert stopped < 200 and not np.isfinite(losses[stopped - 1])
    assert np.isfinite(W).all()  # the state at which the non-finite loss was measured
    assert out["loop"][0] == stopped
    for got, want in zip(out["scalar"][1:], out["loop"][1:]):
        np.testing.assert_array_equal(got, want)


def test_larger_kernels_keep_the_loop_form():
    from nnkit.backends import _numba_codegen as codegen
    from nnkit.backends._numba_scalar import SCALAR_MAX_WORK
    sizes = (3, 4, 2)  # 20 weights, 6 units
    rows = SCALAR_MAX_WORK // 26 + 1
    assert "for k in range" in codegen._fit_source(sizes, ("tanh", "linear"), "mse", rows)
    # a wide output counts its units: a 1-24 softmax on one row keeps the loop form
    assert "for k in range" in codegen._fit_source((1, 24), ("linear",),
                                                   "categorical_crossentropy", 1)


def test_the_state_address_table_takes_only_the_arrays_the_kernel_expects():
    """The kernel reads and writes its state through the addresses alone: the table is
    made only of writable C-contiguous arrays of the layout's shapes and dtypes."""
    from nnkit.backends._numba_codegen import fit_state_layout
    sizes = (2, 3, 1)
    good = [np.zeros(shape, np.dtype("float64" if dt == "DT" else dt))
            for _, shape, dt in fit_state_layout(sizes, "momentum", "DT")]
    P = pointers(good, sizes, "momentum", "float64")
    assert P.dtype == np.int64 and list(P) == [a.ctypes.data for a in good]
    readonly = good[0].copy()
    readonly.flags.writeable = False
    for i, bad in [(0, good[0].astype(np.float32)), (0, np.zeros((3, 2))),
                   (1, np.zeros(6)[::2]), (0, readonly), (-1, np.zeros(1, np.int32))]:
        with pytest.raises(ValueError, match="expected a writable C-contiguous"):
            pointers(good[:i] + [bad] + good[i + 1:] if i != -1 else good[:-1] + [bad],
                     sizes, "momentum", "float64")
    with pytest.raises(ValueError, match="expected 14 state arrays, got 10"):
        pointers(good, sizes, "adam", "float64")  # momentum's one slot, Adam keeps two


def test_a_runner_holds_the_arrays_its_kernel_writes():
    import nnkit
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        dtype="float64", seed=0, backend="numba")
    X, Y = np.eye(4, 2), np.ones((4, 1))
    net.fit(X, Y, epochs=2000, lr=0.1, optimizer="adam")
    (run,) = [r for (path, _, _), r in net.train_state.runs.items() if path == "generated"]
    opt = net.train_state.opt
    assert [a for a in run.state_arrays] == [*[a for p in net.train_state.params for a in p],
                                             *opt.arrays(), opt.hyper, opt.t]


def test_a_runner_keeps_the_update_rule_its_address_table_is_laid_out_for():
    """A runner made under plain sgd, first asked for validation losses after the network
    moved to Adam, builds its validation kernel for sgd too (the table it holds has sgd's
    layout: an Adam kernel would read past it), and trains the state it was made for."""
    import nnkit
    from nnkit.backends.base import MAX_PLANNED_EPOCHS

    def net():
        return nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                             dtype="float64", seed=0, backend="numba")
    X, Y = np.eye(4, 2), np.ones((4, 1))
    lrs = np.full(3, 0.5)
    old, fresh = net(), net()
    runs = [n.backend.prepare_epochs(n.train_state, 4, None, MAX_PLANNED_EPOCHS)
            for n in (old, fresh)]
    old.fit(X, Y, epochs=1, lr=0.1, optimizer="adam")  # a new optimizer state
    fresh.set_params(old.get_params())  # (the parameters both runners start from)
    got = runs[0](X, Y, lrs, None, (X[:2], Y[:2]))
    want = runs[1](X, Y, lrs, None, (X[:2], Y[:2]))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
