"""Compile, in a second process, the numba kernels the suite spends its cold-cache time on.

``conftest.py`` starts this script in the background (on the other core) at the start of a
run that collects many numba tests; the kernels land in numba's on-disk caches
(``NUMBA_CACHE_DIR`` / ``backends/__pycache__`` and ``NNKIT_CACHE_DIR``), so a test that
needs one later loads it (milliseconds) instead of compiling it (seconds). Nothing here
asserts anything: a kernel not ready yet, or never warmed, is compiled by the test itself,
as without this script. Set ``NNKIT_TEST_WARMUP=0`` to turn it off.

The shapes the tests share live here (``PATH_ARCHS``, ``PATH_ROWS``, ``OTHER_SHAPES``) so the
warmed kernels are exactly the tests' ones: a generated kernel is specific to the
architecture, the row count, the dtype and (sweeps) the block size.
"""
import sys
import time

import numpy as np

# test_paths.py: every (backend, path) pair on these architectures, PATH_ROWS rows.
PATH_ARCHS = [((3, 4, 2), ("tanh", "sigmoid"), "mse"),
              ((2, 3, 1), ("relu", "sigmoid"), "binary_crossentropy")]
PATH_ROWS = 8  # (rows hardly change the compile time: 16 or 24 cost as much)

# test_parity.py: full-batch float64 fits of PARITY_ROWS rows take the generated kernels.
PARITY_ARCHS = [
    ([2, 1], ["sigmoid"], "squared_error"),
    ([3, 8, 2], ["tanh", "linear"], "mse"),
    ([4, 6, 5, 1], ["relu", "sigmoid", "sigmoid"], "binary_crossentropy"),
    ([3, 5, 5, 4, 2], ["sigmoid", "tanh", "relu", "linear"], "squared_error"),
]
PARITY_ROWS = 24

# test_sweep.py::test_other_shapes_equal_separate_fits, 30 rows.
OTHER_SHAPES = [
    ((2, 1), ("sigmoid",), "squared_error"),
    ((3, 2), ("sigmoid",), "binary_crossentropy"),
    ((3, 70, 2), ("tanh", "linear"), "mse"),         # wide, yet within the generated sizes
    ((3, 40, 30, 2), ("relu", "sigmoid", "linear"), "squared_error"),
    ((4, 50, 1), ("relu", "sigmoid"), "binary_crossentropy"),
]
OTHER_ROWS = 30


def _net(nnkit, sizes, acts, loss, dtype="float64"):
    return nnkit.Network([nnkit.Dense(a, b, k) for a, b, k in zip(sizes, sizes[1:], acts)],
                         loss=loss, dtype=dtype, seed=0, backend="numba")


def _data(sizes, n):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, sizes[0])), rng.uniform(size=(n, sizes[-1]))


def main():
    import nnkit
    from nnkit.backends import backend_status, get_backend
    if not backend_status("numba")[0]:
        return
    be = get_backend("numba")
    # In the order the main process needs them, skipping what its first test files need
    # at once (it compiles those itself): the sweep-engine tests, then the late modules
    # (conftest.LATE_MODULES), then kernels earlier tests have usually built by then
    # (they only load here, milliseconds).
    jobs = []
    # test_sweep_dask.py and test_sweep_exec.py (they run before the late modules): the
    # sweeps of their templates on the XOR / OR gate, 4 rows.
    jobs.append(("sweep", (2, 3, 1), ("tanh", "sigmoid"), "squared_error", "float32", 4))
    jobs.append(("sweep", (2, 4, 1), ("relu", "linear"), "squared_error", "float64", 4))
    jobs.append(("sweep", (2, 3, 1), ("tanh", "sigmoid"), "squared_error", "float64", 4))
    jobs.append(("minibatch3", (2, 3, 1), ("tanh", "sigmoid"), "squared_error", "float32", 4))
    for sizes, acts, loss in PATH_ARCHS:  # test_paths: generated step, epochs and sweeps
        jobs.append(("generated", sizes, acts, loss, "float64", PATH_ROWS))
    # test_sweep.py::test_result_network_and_best (the OR gate's sweep, 4 rows)
    jobs.append(("sweep", (2, 2, 1), ("sigmoid", "sigmoid"), "squared_error", "float64", 4))
    for sizes, acts, loss in OTHER_SHAPES:
        jobs.append(("sweep", sizes, acts, loss, "float64", OTHER_ROWS))
    # test_sweep.py::test_minibatch_divergence_matches_separate_fits (moons, 40 rows)
    jobs.append(("minibatch", (2, 6, 1), ("relu", "linear"), "mse", "float64", 40))
    # `nnkit bench --quick --workloads or-gate` (test_bench_cli.py, a subprocess): the OR
    # gate's generated fit and sweep kernels and the stacked sweep's kernels in float32.
    jobs.append(("bench", (2, 2, 1), ("sigmoid", "sigmoid"), "squared_error", "float32", 4))
    # examples/or_gate.py (test_examples.py, a subprocess) and test_seeds.py: a 2-1 net.
    jobs.append(("fit", (2, 1), ("sigmoid",), "squared_error", "float64", 4))
    jobs.append(("sweep", (2, 1), ("sigmoid",), "squared_error", "float64", 4))
    for sizes, acts, loss in PARITY_ARCHS:
        jobs.append(("fit", tuple(sizes), tuple(acts), loss, "float64", PARITY_ROWS))
    # The generic fused kernels: one specialisation per (dtype, depth), ~7 s each cold.
    for dtype, depth in [("float32", 3), ("float32", 4), ("float32", 1), ("float64", 4),
                         ("float64", 1), ("float32", 2), ("float64", 3), ("float64", 2)]:
        sizes = (2,) + (3,) * (depth - 1) + (1,)
        jobs.append(("fused", sizes, ("tanh",) * depth, "mse", dtype, 4))
    start = time.perf_counter()
    for kind, sizes, acts, loss, dtype, n in jobs:
        t0 = time.perf_counter()
        X, Y = _data(sizes, n)
        net = _net(nnkit, sizes, acts, loss, dtype)
        try:
            if kind == "fused":
                with be.use_path("fused", record=False):
                    net.fit(X, Y, epochs=2, lr=0.01)
                    if len(sizes) == 3:  # the fused single step: 2-layer nets
                        Xd, Yd = net.prepare(X, Y)
                        be.train_step(net.train_state, Xd, Yd, 0.01)
            elif kind == "fit":  # a full-batch fit long enough to generate a kernel
                net.fit(X, Y, epochs=-(-4096 // n), lr=0.01)
            elif kind.startswith("minibatch"):  # mini-batch sweeps (batch 7 or as named)
                nnkit.sweep(net, X, Y, lr=[0.01, 0.02], epochs=-(-4096 // (2 * n)),
                            batch_size=int(kind[len("minibatch"):] or 7), shuffle=True)
            elif kind == "bench":
                from nnkit.bench import WORKLOADS
                w = WORKLOADS["or-gate"]
                net = w.network(backend="numba", dtype=dtype)
                X, Y = w.data(dtype)
                net.fit(X, Y, epochs=1024, lr=0.01)
                nnkit.sweep(net, X, Y, lr=[0.01, 0.02], epochs=1024)
                with be.use_path("stacked", record=False):
                    nnkit.sweep(net, X, Y, lr=[0.01, 0.02], epochs=2)
            elif kind == "generated":
                with be.use_path("generated", record=False):
                    Xd, Yd = net.prepare(X, Y)
                    be.train_step(net.train_state, Xd, Yd, 0.01)
                    net.fit(X, Y, epochs=2, lr=0.01)
                    nnkit.sweep(net, X, Y, lr=[0.01, 0.02], epochs=2)
                    nnkit.sweep(net, X, Y, lr=[0.01, 0.02], epochs=2, batch_size=3,
                                shuffle=True)
            else:  # the planner's choice for a sweep long enough to generate a kernel
                epochs = -(-4096 // (2 * n))
                if be.plan("sweep", net.spec, n, None, 2, epochs) != "generated":
                    epochs = 2
                nnkit.sweep(net, X, Y, lr=[0.01, 0.02], epochs=epochs)
        except Exception as exc:  # a warm-up failure is the tests' business, not ours
            print(f"warm_kernels: {kind} {sizes} {exc!r}", file=sys.stderr)
        print(f"warm_kernels: {time.perf_counter() - start:6.1f} s  {kind} {sizes} {dtype} "
              f"n={n} ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
