"""numba's generated sweep kernels share their blocks (mini-batch: configurations) out
dynamically: each worker takes the next one from a shared counter. Which thread trains a
block, how many workers there are and numba's parallel chunk size change no number, every
block is trained exactly once, and the kernels stay cacheable by numba."""
import os

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
def test_threads_and_chunk_size_change_nothing(kind):
    """The OR gate (full batch: 150 configurations, three blocks of 64, the last padded) and
    XOR in mini-batches of 3, on 1 thread, on all of them, and with a chunk size set (it
    is the caller's and stays as it was)."""
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
    chunk = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(3)
    try:
        chunked = _generated_sweep(net, X, Y, **kwargs)
        assert numba.get_parallel_chunksize() == 3
    finally:
        numba.set_parallel_chunksize(chunk)
    _same(chunked, whole)
    assert np.isfinite(whole.loss).all()


def _blocks(block, nblk, seed=0):
    rng = np.random.default_rng(seed)
    W0 = rng.normal(size=(nblk, 2, 2, block)).astype(np.float32)
    b0 = rng.normal(size=(nblk, 2, block)).astype(np.float32)
    W1 = rng.normal(size=(nblk, 2, 1, block)).astype(np.float32)
    b1 = rng.normal(size=(nblk, 1, block)).astype(np.float32)
    lrs = np.geomspace(0.01, 10, nblk * block).reshape(nblk, block)
    return [W0, b0, W1, b1], lrs


@pytest.mark.parametrize("workers", [1, 2, 5, 9])
def test_every_block_is_trained_exactly_once(workers):
    """The kernel called directly, with more workers than threads or than blocks: each of
    the 7 blocks is trained once (a block trained twice, or skipped, would end elsewhere),
    equal to training every block alone."""
    w = WORKLOADS["or-gate"]
    X, Y = w.data("float32")
    block = 64  # the OR gate's block (numba_backend._many_block), compiled for it anyway
    kernel = _numba_codegen.kernel("many", (2, 2, 1), ("sigmoid", "sigmoid"),
                                   "squared_error", 4, "float32", block)
    epochs, nblk = 20, 7
    factors = np.ones(epochs)
    params, lrs = _blocks(block, nblk)
    losses = np.full((nblk, block, epochs), np.nan)
    diverged = np.full((nblk, block), -1, dtype=np.int64)
    kernel(X, Y, *params, lrs, factors, losses, diverged, workers)
    for blk in range(nblk):  # block by block, one worker each
        alone, rates = _blocks(block, nblk)
        alone = [a[blk:blk + 1].copy() for a in alone]
        got = np.full((1, block, epochs), np.nan)
        div = np.full((1, block), -1, dtype=np.int64)
        kernel(X, Y, *alone, rates[blk:blk + 1].copy(), factors, got, div, 1)
        np.testing.assert_array_equal(got[0], losses[blk])
        for a, b in zip(alone, params):
            np.testing.assert_array_equal(a[0], b[blk])
    assert np.isfinite(losses).all()


def test_sweep_kernels_are_cached_by_numba():
    """The counter is an intrinsic in the kernel's own module and the thread count an
    argument, so numba can cache the parallel kernel (``numba.get_num_threads()`` inside
    it, for one, would make it uncacheable)."""
    kernel = _numba_codegen.kernel("many", (2, 2, 1), ("sigmoid", "sigmoid"),
                                   "squared_error", 4, "float32", 64)
    source = open(kernel.py_func.__code__.co_filename).read()
    assert "_claim(taken)" in source and "prange(workers)" in source
    params, lrs = _blocks(64, 1)
    kernel(*WORKLOADS["or-gate"].data("float32"), *params, lrs, np.ones(2),
           np.empty((1, 64, 2)), np.full((1, 64), -1, dtype=np.int64), 2)
    index = getattr(getattr(kernel._cache, "_cache_file", None), "_index_path", None)
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
