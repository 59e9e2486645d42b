import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import settings

# CI explores the same examples every run (a failure there is reproducible); locally
# hypothesis keeps searching new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

import nnkit
from nnkit.backends import backend_status

# One list: every usable backend gets the whole suite (cupy joins where a GPU is usable).
BACKENDS = nnkit.available_backends()
CPU_BACKENDS = [b for b in BACKENDS if nnkit.get_backend(b).device() == "cpu"]


@pytest.fixture
def make_backend(monkeypatch):
    """``make(name)``: the backend ``name``; "cupy-emulated" is the cupy backend on the
    CPU stand-in (tests/fake_cupy.py), for this test only."""
    def make(name):
        if name != "cupy-emulated":
            return nnkit.get_backend(name)
        import fake_cupy
        from nnkit import backends as registry
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy.make_module())
        monkeypatch.setattr(registry, "_instances", {})
        return nnkit.get_backend("cupy")
    return make


def forced(be, path, fn):
    """Run fn() with ``path`` forced; assert that it, and only it, ran for its calls."""
    with be.use_path(path) as record:
        out = fn()
    calls = {c for c, _ in record.ran}
    assert calls, "nothing ran"
    for call in calls & set(be.paths[path]):
        assert record.paths(call) == {path}, record.ran
    return out


# The suite runs in two worker processes (pytest-xdist, in the test extra) unless told
# otherwise (-n N, -n 0 for one process, -p no:xdist, --pdb): cold, numba compiles on both
# cores at once; warm, the rest of the suite does. Set here rather than in addopts so that
# only runs of this folder get it (the benchmarks must run alone).
XDIST_WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    if (config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput")
            and getattr(config.option, "numprocesses", 0) is None
            and not config.option.usepdb):
        config.option.numprocesses = XDIST_WORKERS


def _gpu_reason():
    ok, why = backend_status("cupy")
    return None if ok else f"no usable GPU: {why.splitlines()[0] if why else 'cupy unusable'}"


# Cold caches (a fresh clone, CI): numba compiles each kernel once, seconds apiece, charged
# to the first test that calls it. A run that collects many numba tests compiles the
# costliest ones in a second process meanwhile (tests/warm_kernels.py, on the other core);
# the tests then load them from numba's disk cache. NNKIT_TEST_WARMUP=0 turns it off. Under
# xdist (the default: XDIST_WORKERS) the workers take both cores and compile what they
# need themselves: the warm-up runs only in single-process runs (-n 0).
WARMUP_MIN_NUMBA_TESTS = 100
_warmup = {}


# Modules that compile the most kernels of their own (generated kernels for their shapes,
# in the process or in subprocesses: `nnkit bench`, the examples) run last, in this order:
# by then the rest of the suite (or warm_kernels.py) has put most of their kernels on
# disk. (xdist hands tests to its workers in this order too.)
LATE_MODULES = ("test_paths.py", "test_sweep.py", "test_classification_cli.py",
                "test_cli_and_plots.py", "test_bench_cli.py", "test_examples.py")


def _start_warmup(items):
    """Start warm_kernels.py (returns True) when ``items`` hold enough numba tests."""
    if os.environ.get("NNKIT_TEST_WARMUP", "1") == "0" or "numba" not in BACKENDS:
        return False
    if os.environ.get("PYTEST_XDIST_WORKER"):  # xdist's workers use both cores already
        return False
    if sum("numba" in item.nodeid for item in items) < WARMUP_MIN_NUMBA_TESTS:
        return False
    script = os.path.join(os.path.dirname(__file__), "warm_kernels.py")
    log = os.environ.get("NNKIT_TEST_WARMUP_LOG")  # its timings and errors, if wanted
    with open(log or os.devnull, "a") as out:
        _warmup["proc"] = subprocess.Popen(
            [sys.executable, script], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            env={k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"})
    return True


def pytest_unconfigure(config):
    proc = _warmup.pop("proc", None)
    if proc is not None and proc.poll() is None:
        proc.kill()  # still compiling kernels no test asked for: not worth waiting
        proc.wait()


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config, items):
    _start_warmup(items)
    late = sorted((item for item in items if item.path.name in LATE_MODULES),
                  key=lambda item: LATE_MODULES.index(item.path.name))  # (stable)
    items[:] = [item for item in items if item.path.name not in LATE_MODULES] + late
    reason = _gpu_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
