import asyncio
import inspect
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import nnkit
from nnkit.backends import Backend, backend_names, backend_status, get_backend
from nnkit.backends.base import Backend as BaseBackend

from conftest import BACKENDS


def test_import_nnkit_imports_neither_numba_nor_cupy():
    code = ("import sys, nnkit; net = nnkit.Network([nnkit.Dense(2, 1)]);"
            "print('numba' in sys.modules, 'cupy' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "False"], out.stderr


def _parameters(fn):
    """Names, kinds and defaults (annotations live on the base class only)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_every_backend_keeps_the_base_signatures(backend):
    be = get_backend(backend)
    for name, base_fn in inspect.getmembers(BaseBackend, inspect.isfunction):
        if name.startswith("__"):
            continue
        mine = getattr(type(be), name)
        assert _parameters(mine) == _parameters(base_fn), name


def test_every_declared_path_has_its_methods(backend):
    """Each (path, call) a backend declares has its ``_<call>_<path>`` method, with the
    reference path's signature."""
    be = get_backend(backend)
    prefix = {"step": "_step_", "epochs": "_epochs_", "sweep": "_sweep_"}
    for path, calls in be.paths.items():
        for call in calls:
            method = getattr(be, prefix[call] + path)
            ref = getattr(BaseBackend, prefix[call] + "reference")
            assert _parameters(method)[-3:] == _parameters(ref)[-3:], (path, call)


def test_unknown_backend_lists_names():
    with pytest.raises(ValueError, match="numpy"):
        get_backend("tensorflow")
    with pytest.raises(ValueError, match="backend"):
        nnkit.Network([nnkit.Dense(2, 1)], backend="nope")


def test_known_but_unusable_backend_says_why(monkeypatch):
    ok, why = backend_status("cupy")
    if ok:
        pytest.skip("cupy is usable here")
    with pytest.raises(nnkit.BackendUnavailableError) as exc:
        get_backend("cupy")
    msg = str(exc.value)
    assert "cupy" in msg and "NNKIT_BACKEND" in msg
    assert "pip install" in msg or "CUDA" in msg


def test_available_backends():
    names = nnkit.available_backends()
    assert names[0] == "numpy" and set(names) <= set(backend_names())
    assert "numba" in names  # a required dependency


def test_precedence_argument_context_env_default(monkeypatch):
    monkeypatch.delenv("NNKIT_BACKEND", raising=False)
    assert nnkit.get_backend().name == "numpy"
    monkeypatch.setenv("NNKIT_BACKEND", "numba")
    assert nnkit.get_backend().name == "numba"
    with nnkit.use_backend("numpy"):
        assert nnkit.get_backend().name == "numpy"
        assert nnkit.Network([nnkit.Dense(2, 1)]).backend.name == "numpy"
        assert nnkit.Network([nnkit.Dense(2, 1)], backend="numba").backend.name == "numba"
    assert nnkit.Network([nnkit.Dense(2, 1)]).backend.name == "numba"
    monkeypatch.setenv("NNKIT_BACKEND", "auto")
    assert nnkit.get_backend().name in BACKENDS and nnkit.get_backend().name != "numpy"
    monkeypatch.setenv("NNKIT_BACKEND", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        nnkit.get_backend()


def test_use_backend_is_per_thread_and_per_task():
    def in_thread(name):
        with nnkit.use_backend(name):
            import time
            time.sleep(0.01)
            return nnkit.get_backend().name

    names = ["numpy", "numba"] * 8
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(in_thread, names)) == names

    async def task(name):
        with nnkit.use_backend(name):
            await asyncio.sleep(0.01)
            return nnkit.get_backend().name

    async def main():
        return await asyncio.gather(*(task(n) for n in names))

    assert asyncio.run(main()) == names


def test_two_backends_train_together_without_interfering(rng):
    X = rng.normal(size=(16, 3))
    Y = rng.normal(size=(16, 1))

    def train(name):
        net = nnkit.Network([nnkit.Dense(3, 4, "tanh"), nnkit.Dense(4, 1, "linear")],
                            loss="mse", dtype="float64", seed=1, backend=name)
        return net.fit(X, Y, epochs=200, lr=0.05, batch_size=4, shuffle=True).loss

    alone = {name: train(name) for name in BACKENDS}
    with ThreadPoolExecutor(len(BACKENDS) * 2) as pool:
        together = list(pool.map(train, BACKENDS * 2))
    for name, losses in zip(BACKENDS * 2, together):
        assert losses == alone[name]


def test_third_party_backend_via_entry_point(monkeypatch):
    from nnkit import backends as registry

    class Tiny(Backend):
        name = "tiny"

    class EP:
        name = "tiny"

        def load(self):
            return Tiny

    monkeypatch.setattr(registry, "_entry_points", lambda: {"tiny": EP()})
    monkeypatch.setattr(registry, "_instances", {})
    assert "tiny" in registry.available_backends()
    net = nnkit.Network([nnkit.Dense(2, 1)], backend="tiny", dtype="float64")
    X, Y = nnkit.datasets.or_gate()
    assert net.fit(X, Y, epochs=2, lr=1.0).loss[1] < net.fit(X, Y, epochs=1, lr=1.0).loss[0] + 1


def test_a_backend_written_against_the_one_array_all_finite_still_trains():
    """A third-party backend that overrides ``all_finite(x)`` (one array, as the
    interface has it) is asked about X and Y through it, in fit's common case too."""
    checked = []

    class Counting(Backend):
        name = "counting"

        def all_finite(self, x):
            checked.append(x.shape)
            return super().all_finite(x)

    net = nnkit.Network([nnkit.Dense(2, 1)], backend=Counting(), dtype="float64")
    X, Y = (a.astype(np.float64) for a in nnkit.datasets.or_gate())
    net.fit(X, Y, epochs=2, lr=1.0)
    assert (4, 2) in checked and (4, 1) in checked
    Y[0, 0] = np.nan
    with pytest.raises(ValueError, match="Y: contains NaN"):
        net.fit(X, Y, epochs=2, lr=1.0)


def test_arrays_of_another_kind_are_refused_clearly():
    class Foreign:
        def __array__(self, dtype=None, copy=None):
            return np.zeros((4, 2))

    net = nnkit.Network([nnkit.Dense(2, 1)])
    with pytest.raises(TypeError, match="X: got a .*Foreign.*convert"):
        net.predict(Foreign())


@pytest.mark.parametrize("backend", BACKENDS + ["cupy-emulated"])
def test_finite_copy_copies_and_says_whether_every_value_is_finite(backend, make_backend):
    be = make_backend(backend)
    for x in (np.arange(7.0), np.arange(6.0, dtype=np.float32).reshape(2, 3),
              np.array([1.0, np.inf, 2.0]), np.array([[np.nan, 1.0]]), np.zeros(0)):
        src, out = be.asarray(x), be.zeros(x.shape, x.dtype)
        assert be.finite_copy(src, out) is bool(np.isfinite(x).all())  # (a bool)
        np.testing.assert_array_equal(be.to_numpy(out), x)
