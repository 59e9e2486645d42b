"""Parity on every (backend, execution path) pair: each path is forced with
``Backend.use_path``, checked to be the one that ran, and compared in float64 with the
NumPy backend's plain reference path (one configuration at a time for sweeps).
Where cupy is not usable, the cupy backend runs through the CPU stand-in."""

import numpy as np
import pytest

import fake_cupy
import nnkit
from nnkit.backends import backend_status, get_backend

from conftest import BACKENDS, forced
from warm_kernels import PATH_ARCHS, PATH_ROWS

CUPY_EMULATED = "cupy" not in BACKENDS and fake_cupy.compiler_available()


def _pairs():
    pairs = [(b, p) for b in BACKENDS for p in get_backend(b).paths]
    if CUPY_EMULATED:
        from nnkit.backends.cupy_backend import CupyBackend
        pairs += [("cupy-emulated", p) for p in CupyBackend.paths]
    return pairs


# Shared with warm_kernels.py, which compiles their generated kernels ahead of the tests.
ARCHS = PATH_ARCHS


def data(sizes, n=PATH_ROWS):
    rng = np.random.default_rng(5)
    return rng.normal(size=(n, sizes[0])), rng.uniform(size=(n, sizes[-1]))


def network(arch, backend, seed=2):
    sizes, acts, loss = arch
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype="float64", seed=seed, backend=backend)


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def params_close(net, ref):
    for (W, b), (rW, rb) in zip(net.get_params(), ref.get_params()):
        close(W, rW)
        close(b, rb)


@pytest.mark.parametrize("arch", ARCHS, ids=["3-4-2-mse", "2-3-1-bce"])
@pytest.mark.parametrize("name,path", _pairs(), ids=[f"{b}-{p}" for b, p in _pairs()])
def test_path_matches_the_reference(make_backend, name, path, arch):
    be = make_backend(name)
    X, Y = data(arch[0])
    calls = be.paths[path]
    if "step" in calls:  # single steps from Python
        net, ref = network(arch, be), network(arch, "numpy")
        Xd, Yd = net.prepare(X, Y)
        Xr, Yr = ref.prepare(X, Y)
        got = forced(be, path, lambda: [float(be.to_numpy(be.train_step(
            net.train_state, Xd, Yd, 0.3))) for _ in range(20)])
        want = [float(ref.backend.train_step(ref.train_state, Xr, Yr, 0.3)) for _ in range(20)]
        close(got, want)
        params_close(net, ref)
    for batch_size in (None, 3):
        kwargs = dict(epochs=40, lr=0.2, batch_size=batch_size, shuffle=True)
        if "epochs" in calls:
            net, ref = network(arch, be), network(arch, "numpy")
            try:
                hist = forced(be, path, lambda: net.fit(X, Y, **kwargs))
            except ValueError as exc:  # a full-batch-only path, asked for mini-batches
                assert batch_size is not None and "full batches only" in str(exc)
            else:
                close(hist.loss, ref.fit(X, Y, **kwargs).loss)
                params_close(net, ref)
        if "sweep" in calls:
            sweep_kwargs = dict(lr=[0.05, 0.5, 2.0], seed=[0, 4], epochs=30,
                                batch_size=batch_size, shuffle=True)
            numpy_be = get_backend("numpy")
            template = network(arch, be)
            try:
                res = forced(be, path, lambda: nnkit.sweep(template, X, Y, **sweep_kwargs))
            except ValueError as exc:
                assert batch_size is not None and "full batches only" in str(exc)
                continue
            want = forced(numpy_be, "reference", lambda: nnkit.sweep(
                network(arch, "numpy"), X, Y, **sweep_kwargs))
            close(res.loss, want.loss)
            np.testing.assert_array_equal(res.diverged, want.diverged)
            for i in range(len(res.configs)):
                params_close(res.network(i, backend="numpy"), want.network(i, backend="numpy"))


def test_the_reference_sweep_diverges_and_freezes_like_the_engine():
    """A configuration whose loss explodes stops with its last finite parameters."""
    X, Y = data((2, 3, 1))
    Y = Y * 1e3
    arch = ((2, 3, 1), ("relu", "linear"), "mse")
    be = get_backend("numpy")
    runs = {path: forced(be, path, lambda: nnkit.sweep(network(arch, "numpy"), X, Y,
                                                      lr=[1e-4, 5.0], epochs=20))
            for path in ("reference", "stacked", "batched")}
    assert runs["reference"].diverged[1] and not runs["reference"].diverged[0]
    for path in ("stacked", "batched"):
        close(runs[path].loss, runs["reference"].loss)
        np.testing.assert_array_equal(runs[path].diverged, runs["reference"].diverged)


def test_plan_names_a_declared_path_and_forcing_is_checked():
    be = get_backend("numpy")
    spec = network(ARCHS[0], "numpy").spec
    for call in ("step", "epochs", "sweep"):
        assert be.plan(call, spec, 8) in be.paths
    with pytest.raises(ValueError, match="paths"):
        with be.use_path("no-such-path"):
            pass
    with pytest.raises(ValueError, match="call"):
        be.plan("predict", spec, 8)
    with be.use_path("batched") as record:  # a sweep path leaves steps to the planner
        assert be.plan("step", spec, 8) == "reference"
        assert be.plan("sweep", spec, 8) == "batched"
    assert record.ran == []  # plan() alone runs nothing
    ok, _ = backend_status("numba")
    if ok:
        numba = get_backend("numba")
        assert numba.plan("step", spec, 4) == "generated"
        assert numba.plan("step", nnkit.backends.ModelSpec((784, 256, 10), ("sigmoid",) * 2,
                                                           "mse", "float32"), 512) == "blas"
