"""numba's generated sweep kernels (a block of configurations; mini-batch: one
configuration) release the GIL and are shared out over a pool of threads, each taking the
next item while any is left (``numba_backend._share_out``). Which thread trains a block
and how many threads there are change no number, every item runs exactly once, a slow item
does not hold the others up, and the kernels stay cacheable by numba."""
import os
import threading
import time

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import nnkit  # noqa: E402
from nnkit.backends import _numba_codegen  # noqa: E402
from nnkit.bench.workloads import WORKLOADS  # noqa: E402

THREADS = numba.config.NUMBA_NUM_THREADS


def _generated_sweep(net, X, Y, **kwargs):
    be = net.backend
    with be.use_path("generated") as record:
        out = nnkit.sweep(net, X, Y, **kwargs)
    assert {p for c, p in record.ran if c == "sweep"} == {"generated"}, record.ran
    return out


def _same(a, b):
    np.testing.assert_array_equal(a.loss, b.loss)
    for pa, pb in zip(a.params, b.params):
        for (W, b_), (W2, b2) in zip(pa, pb):
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(b_, b2)


@pytest.mark.parametrize("kind", ["full", "minibatch"])
def test_thread_count_changes_nothing(kind):
    """The OR gate (full batch: 150 configurations, three blocks of 64, the last padded) and
    XOR in mini-batches of 3, on 1 thread and on all of them."""
    if kind == "full":
        w = WORKLOADS["or-gate"]
        net = w.network(backend="numba", dtype="float32")
        X, Y = w.data("float32")
        kwargs = dict(lr=np.geomspace(0.01, 50, 150), epochs=40)
    else:
        X, Y = (a.astype(np.float32) for a in nnkit.datasets.xor_gate())
        net = nnkit.Network([nnkit.Dense(2, 3, "tanh"), nnkit.Dense(3, 1, "sigmoid")],
                            dtype="float32", seed=0, backend="numba")
        kwargs = dict(lr=[0.05, 0.5, 5.0], seed=[0, 1, 2], epochs=30, batch_size=3,
                      shuffle=True)
    whole = _generated_sweep(net, X, Y, **kwargs)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = _generated_sweep(net, X, Y, **kwargs)
    finally:
        numba.set_num_threads(old)
    _same(one, whole)
    assert np.isfinite(whole.loss).all()


def _blocks(block, nblk, seed=0):
    rng = np.random.default_rng(seed)
    W0 = rng.normal(size=(nblk, 2, 2, block)).astype(np.float32)
    b0 = rng.normal(size=(nblk, 2, block)).astype(np.float32)
    W1 = rng.normal(size=(nblk, 2, 1, block)).astype(np.float32)
    b1 = rng.normal(size=(nblk, 1, block)).astype(np.float32)
    lrs = np.geomspace(0.01, 10, nblk * block).reshape(nblk, block)
    return [W0, b0, W1, b1], lrs


@pytest.mark.parametrize("threads", [1, 2])
def test_every_item_runs_exactly_once(threads):
    from nnkit.backends.numba_backend import _share_out
    seen, lock = [], threading.Lock()

    def run(i):
        with lock:
            seen.append(i)
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, THREADS))
    try:
        _share_out(23, run)
    finally:
        numba.set_num_threads(old)
    assert sorted(seen) == list(range(23))


@pytest.mark.skipif(THREADS < 2, reason="needs 2 numba threads")
def test_a_slow_item_does_not_hold_the_others_up():
    """While one thread is stuck in item 0 (a core taken by another process, say), the
    other takes every other item: nothing is dealt out up front."""
    from nnkit.backends.numba_backend import _share_out
    who, lock = {}, threading.Lock()

    def run(i):
        if i == 0:
            time.sleep(0.3)
        with lock:
            who[i] = threading.get_ident()
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        _share_out(40, run)
    finally:
        numba.set_num_threads(old)
    assert sorted(who) == list(range(40))
    assert all(who[i] != who[0] for i in range(1, 40))


def test_block_kernel_is_cached_by_numba():
    """The generated block kernel releases the GIL, is not a parallel wrapper (numba
    re-optimised the inlined block inside one: most of its compile time), and numba caches
    it."""
    w = WORKLOADS["or-gate"]
    X, Y = w.data("float32")
    block = 64  # the OR gate's block (numba_backend._many_block)
    train_block = _numba_codegen.kernel("many", (2, 2, 1), ("sigmoid", "sigmoid"),
                                        "squared_error", 4, "float32", block)
    source = open(train_block.py_func.__code__.co_filename).read()
    assert "nogil=True" in source and "parallel=True" not in source
    params, lrs = _blocks(block, 1)
    losses = np.full((block, 20), np.nan)
    div = np.full(block, -1, dtype=np.int64)
    train_block(X, Y, *(a[0] for a in params), lrs[0], np.ones(20), losses, div)
    assert np.isfinite(losses).all() and (div == -1).all()
    index = getattr(getattr(train_block._cache, "_cache_file", None), "_index_path", None)
    if index is None:  # a numba whose cache internals differ, or caching turned off
        pytest.skip("numba cache internals differ")
    assert os.path.exists(index), "numba did not cache the generated sweep kernel"


@pytest.mark.skipif(THREADS < 2, reason="needs 2 numba threads")
def test_workers_follow_numba_threads():
    from nnkit.backends.numba_backend import _workers
    old = numba.get_num_threads()
    try:
        assert _workers(1) == 1
        assert _workers(100) == old
        numba.set_num_threads(1)
        assert _workers(100) == 1
    finally:
        numba.set_num_threads(old)


def _sweep_in_child(queue):
    w = WORKLOADS["or-gate"]
    X, Y = w.data("float32")
    net = w.network(backend="numba", dtype="float32")
    queue.put(_generated_sweep(net, X, Y, lr=np.geomspace(0.01, 5, 150), epochs=20).loss)


@pytest.mark.skipif(not hasattr(os, "fork") or THREADS < 2, reason="needs fork, 2 threads")
def test_a_forked_process_gets_its_own_pool():
    """The thread pool is kept per process: a child forked after a sweep (whose copy of the
    parent's pool has no threads) sweeps with a pool of its own instead of waiting forever."""
    import multiprocessing
    w = WORKLOADS["or-gate"]
    X, Y = w.data("float32")
    net = w.network(backend="numba", dtype="float32")
    here = _generated_sweep(net, X, Y, lr=np.geomspace(0.01, 5, 150), epochs=20).loss
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_sweep_in_child, args=(queue,))
    child.start()
    try:
        np.testing.assert_array_equal(queue.get(timeout=120), here)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
