"""The measurements behind ``nnkit bench``: the same workloads on every usable backend,
checked against the NumPy backend and timed side by side (and against PyTorch/JAX when
installed). ``run_bench`` returns the rows; ``report`` prints them."""
from __future__ import annotations

import platform
import statistics
import time
import tracemalloc

import numpy as np

from .workloads import WORKLOADS

LR = 0.01
# Parity runs train at a rate every workload descends with (at 1.0 `large` oscillates
# upwards and float32 rounding differences grow chaotically).
PARITY_LR = 0.1


def time_per_call(fn, sync=lambda: None, budget=0.3, repeats=5):
    """Median seconds per call of ``fn`` over ``repeats`` timed blocks (warm-up excluded).

    The block length is chosen so that all blocks together take about ``budget`` s.
    """
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(budget / repeats / once))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def gemm_peak(backend, dtype, n=1024, budget=0.5):
    """Measured GEMM throughput (FLOP/s) of an n x n x n matmul on ``backend`` (timed for
    about ``budget`` seconds)."""
    xp = backend.xp
    a = backend.asarray(np.random.default_rng(0).uniform(size=(n, n)), dtype)
    out = backend.empty((n, n), a.dtype)
    t = time_per_call(lambda: xp.matmul(a, a, out=out), backend.synchronize, budget=budget,
                      repeats=3)
    return 2 * n ** 3 / t


def gemm_time(w, backend, dtype):
    """Seconds for just the matmuls of one training step of ``w`` (``gemm_call``)."""
    return time_per_call(gemm_call(w, backend, dtype), backend.synchronize, budget=0.3)


def gemm_call(w, backend, dtype):
    """A function running just the matmuls of one training step of ``w``, in the order
    and on the data flow of backpropagation (forward X W layer by layer, each layer's
    input the last one's output; then from the last layer down, dZ W^T into the layer
    below and X^T dZ), with the BLAS the backend's step calls (``Backend.gemm``): the
    roofline a step can approach. (Timed layer by layer instead, each X^T dZ right after
    its X W, the first layer's input is still in cache: mnist's matmuls took 8 % less.)"""
    be = backend
    rng = np.random.default_rng(0)
    b = w.batch
    X = be.asarray(rng.uniform(size=(b, w.sizes[0])), dtype)
    layers = []
    for i, o in zip(w.sizes, w.sizes[1:]):
        W = be.asarray(rng.uniform(size=(i, o)), dtype)
        layers.append((W, be.empty((b, o), X.dtype), be.asarray(rng.uniform(size=(b, o)),
                                                                dtype),
                       be.empty((i, o), X.dtype)))  # W, Z, dZ, dW
    inputs = [X] + [Z for _, Z, _, _ in layers[:-1]]

    def run():
        for inp, (W, Z, _, _) in zip(inputs, layers):
            be.gemm(inp, W, Z)
        for l in range(len(layers) - 1, -1, -1):
            W, _, dZ, dW = layers[l]
            if l:
                be.gemm(dZ, W.T, layers[l - 1][2])  # dZ of the layer below (before act')
            be.gemm(inputs[l].T, dZ, dW)
    return run


def interleaved_times(fns, sync, rounds, budget, settle=lambda: None):
    """The best over ``rounds`` rounds of each function's ``time_per_call`` (``budget``
    s each; ``settle()`` first), the functions timed in turn within every round, so that
    a ratio of two of them compares measurements taken under the same conditions (a
    shared machine's load drifts over seconds: timed one after the other, the MNIST
    step's %gemm ranged over 84-89 % from run to run)."""
    best = [float("inf")] * len(fns)
    settle()
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], time_per_call(fn, sync, budget=budget))
    return best


def step_setup(w, backend, dtype):
    """(net, X, Y, step) where step() is one training step from Python on the
    workload's batch: X (batch, n_in), Y (batch, n_out) on the backend."""
    net = w.network(backend=backend, dtype=dtype)
    X, Y = net.prepare(*w.data(dtype))
    be, state = net.backend, net.train_state
    return net, X, Y, lambda: be.train_step(state, X, Y, LR)


def execution_path(backend, call, spec, rows, batch_size=None, configs=1, epochs=1):
    """The named path ``backend.plan`` says it takes for ``call`` ("step", "epochs" or
    "sweep"; e.g. "generated", "fused", "blas"), or "-" for a backend without ``plan``."""
    plan = getattr(backend, "plan", None)
    if plan is None:
        return "-"
    return plan(call, spec, rows, batch_size=batch_size, configs=configs, epochs=epochs)


def first_call_time(w, backend, dtype):
    """Seconds of the first step in this process (JIT compile / cache load, CUDA init)."""
    net, X, Y, step = step_setup(w, backend, dtype)
    t0 = time.perf_counter()
    step()
    net.backend.synchronize()
    return time.perf_counter() - t0


def allocated_per_step(step, steps=50):
    """Peak bytes newly allocated (tracemalloc) while running warm steps, per step."""
    step()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(steps):
            step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(0, peak - base)


def parity(w, backend, dtype, steps=50):
    """Max relative difference of the loss history vs the NumPy backend after ``steps``
    full-batch steps on the workload's batch (a classification workload: with its
    optimizer and rate)."""
    X, Y = w.data(dtype)
    opts = {"lr": PARITY_LR}
    if w.classification:
        opts = {"lr": w.lr, "optimizer": w.optimizer}
    losses = []
    for name in ("numpy", backend):
        net = w.network(backend=name, dtype=dtype)
        losses.append(np.asarray(net.fit(X, Y, epochs=steps, progress=False, **opts).loss))
    return float(np.max(np.abs(losses[1] - losses[0]) / np.abs(losses[0])))


def epoch_time(w, backend, dtype, epochs):
    """Seconds per epoch of a full-batch ``fit`` (fused multi-epoch path where there is one)."""
    net = w.network(backend=backend, dtype=dtype)
    X, Y = w.data(dtype)
    net.fit(X, Y, epochs=10, lr=1.0, progress=False)  # warm / compile
    return time_per_call(lambda: net.fit(X, Y, epochs=epochs, lr=1.0, progress=False),
                         net.backend.synchronize, budget=0.3, repeats=3) / epochs


def classification_row(w, backend, dtype, quick=False, repeats=None):
    """Train a classification workload as its users would (``w.fit_options()``: shuffled
    mini-batches of ``w.batch``, its optimizer, ``w.epochs`` epochs, ``w.quick_epochs``
    when ``quick``) and score it on its test set. ``first_call_s``: one epoch of a fresh
    network first (JIT compile or cache load included); then ``repeats`` timed runs of
    the whole training (best kept): ``epoch_s`` and ``step_s`` (per mini-batch step), and
    the test ``accuracy`` and ``test_loss`` of the last run (every run is the same seeded
    one)."""
    X, y, Xt, yt = w.split(dtype)
    epochs = max(1, w.quick_epochs if quick else w.epochs)
    repeats = repeats or (1 if quick else 2)
    opts = w.fit_options()
    net = w.network(backend=backend, dtype=dtype)
    t0 = time.perf_counter()
    net.fit(X, y, epochs=1, **opts)
    net.backend.synchronize()
    row = {"workload": w.name, "backend": backend, "dtype": dtype,
           "first_call_s": time.perf_counter() - t0,
           "path": execution_path(net.backend, "epochs", net.spec, len(X), w.batch,
                                  epochs=epochs)}
    best = np.inf
    for _ in range(repeats):
        net = w.network(backend=backend, dtype=dtype)
        t0 = time.perf_counter()
        hist = net.fit(X, y, epochs=epochs, **opts)
        net.backend.synchronize()
        best = min(best, time.perf_counter() - t0)
    steps = -(-len(X) // w.batch) * epochs
    scores = net.evaluate(Xt, yt, metrics=True)
    row.update({"epochs": epochs, "epoch_s": best / epochs, "step_s": best / steps,
                "fit_s": best, "flops": w.flops_per_step(),
                "train_loss": float(hist.loss[-1]), "test_loss": float(scores["loss"]),
                "accuracy": float(scores["accuracy"])})
    return row


def classification_peer_rows(w, dtype, peers, quick=False):
    """The same training (optimizer, rate, batch, epochs, shuffling, initial weights) in
    PyTorch eager (``torch``) and scikit-learn's MLPClassifier (``sklearn``, a one-hidden-
    layer workload only): fit time per epoch and step, test accuracy."""
    from . import peers as P
    epochs = max(1, w.quick_epochs if quick else w.epochs)
    rows = []
    for name in peers:
        label = {"torch": "torch eager", "sklearn": "sklearn", "jax": "jax"}[name]
        try:
            if name == "jax":
                raise ImportError("no JAX peer for classification workloads")
            peer = (P.TorchClassifier if name == "torch" else P.SklearnClassifier)(w, dtype)
        except (ImportError, ValueError) as exc:
            rows.append({"workload": w.name, "backend": label, "dtype": dtype,
                         "note": f"skipped: {exc}"})
            continue
        peer.fit(1)  # warm-up
        fit_s = min(peer.timed_fit(epochs) for _ in range(1 if quick else 2))
        loss, acc = peer.score()
        n = len(peer.y_train)
        threads = "-"
        if name == "torch":
            threads = f"{peer.torch.get_num_threads()} thread(s)"
        rows.append({"workload": w.name, "backend": label, "dtype": peer.dtype,
                     "path": threads, "epochs": epochs, "fit_s": fit_s, "epoch_s": fit_s / epochs,
                     "step_s": fit_s / (epochs * -(-n // w.batch)), "test_loss": loss,
                     "accuracy": acc})
    return rows


def peer_rows(w, dtype, peers, epochs):
    from . import peers as P
    rows = []
    makers = []
    if "torch" in peers:
        makers += [("torch eager", lambda: P.make_torch_eager(w, dtype)),
                   ("torch manual", lambda: P.make_torch_manual(w, dtype))]
    if "jax" in peers:
        makers += [("jax jit", lambda: P.make_jax_jit(w, dtype))]
    for name, make in makers:
        try:
            step, sync = make()
        except ImportError as exc:
            rows.append({"workload": w.name, "backend": name, "dtype": dtype,
                         "note": f"skipped: {exc}"})
            continue
        rows.append({"workload": w.name, "backend": name, "dtype": dtype,
                     "step_s": time_per_call(step, sync)})
    if w.tiny and "jax" in peers:
        try:
            run = P.make_jax_scan_epochs(w, dtype, epochs)
            run()
            rows.append({"workload": w.name, "backend": "jax scan", "dtype": dtype,
                         "epoch_s": time_per_call(run, budget=0.3, repeats=3) / epochs})
        except ImportError:
            pass
    return rows


def _log(msg):
    import sys
    print(msg, file=sys.stderr, flush=True)


def sweep_rows(backends, dtype, peers, nets, epochs, workload="or-gate", budget=1.0):
    """net-epochs/s of a learning-rate sweep of ``nets`` networks x ``epochs`` (full batch),
    each timed for about ``budget`` seconds."""
    import nnkit
    from . import peers as P
    w = WORKLOADS[workload]
    X, Y = w.data(dtype)
    lrs = np.geomspace(0.01, 50, nets)
    rows = []
    runs = []
    paths = {}
    for name in backends:
        net = w.network(backend=name, dtype=dtype)
        paths[name] = execution_path(net.backend, "sweep", net.spec, X.shape[0],
                                     configs=nets, epochs=epochs)
        nnkit.sweep(net, X, Y, lr=lrs[:8], epochs=2)  # compile / warm
        runs.append((name, lambda net=net: nnkit.sweep(net, X, Y, lr=lrs, epochs=epochs)))
    if "jax" in peers:
        try:
            runs.append(("jax scan(vmap)", P.make_jax_sweep(w, dtype, lrs, epochs)))
        except ImportError:
            pass
    if "torch" in peers:
        try:
            runs.append(("torch bmm", P.make_torch_sweep(w, dtype, lrs, max(1, epochs // 10))))
        except ImportError:
            pass
    for name, run in runs:
        scale = 10 if name == "torch bmm" else 1  # torch runs a tenth of the epochs
        run()
        t = time_per_call(run, budget=budget, repeats=3)
        rows.append({"sweep": workload, "backend": name, "dtype": dtype, "nets": nets,
                     "epochs": epochs, "path": paths.get(name, "-"),
                     "net_epochs_per_s": nets * epochs / scale / t})
    return rows


def _settle(quick, tiny):
    """A pause before timing a step (in --quick runs, BLAS-bound ones only): OpenBLAS's
    threads spin for a while after each call, and NumPy and SciPy (numba's BLAS) bring a
    pool each, so a step timed right after the other library's work shared the cores
    with its spinning threads (numba's mnist step: +10-20 % at times, and 0.65-0.78x
    the numpy backend's in --quick runs without the pause, measured)."""
    if not (quick and tiny):
        time.sleep(0.3)


def run_bench(workloads, backends, dtypes, peers=(), quick=False, log=_log):
    """Measure every (workload, backend, dtype); returns a dict for JSON."""
    import nnkit
    rows = []
    samples = {}  # (backend, dtype) -> GEMM peaks measured at the start, middle and end

    def measure_peaks():
        for dtype in dtypes:
            for name in backends:
                samples.setdefault((name, dtype), []).append(
                    gemm_peak(nnkit.get_backend(name), dtype, n=512 if quick else 1024,
                              budget=0.25 if quick else 0.5))
    epochs = 2000 if quick else 5000
    measure_peaks()
    for wname in workloads:
        w = WORKLOADS[wname]
        for dtype in dtypes:
            if w.classification:
                try:
                    w.split(dtype)
                except ImportError as exc:  # digits without scikit-learn
                    rows += [{"workload": wname, "backend": name, "dtype": dtype,
                              "note": f"skipped: {exc}"} for name in backends]
                    log(f"  skipped {wname}: {exc}")
                    continue
                for name in backends:
                    be = nnkit.get_backend(name)
                    row = classification_row(w, name, dtype, quick=quick)
                    row["gemm_s"] = gemm_time(w, be, dtype)
                    row["parity"] = parity(w, name, dtype, steps=20 if quick else 50)
                    rows.append(row)
                    log(f"  measured {wname} {name} {dtype}")
                rows += classification_peer_rows(w, dtype, peers, quick=quick)
                continue
            for name in backends:
                be = nnkit.get_backend(name)
                row = {"workload": wname, "backend": name, "dtype": dtype,
                       "first_call_s": first_call_time(w, name, dtype)}
                net, X, Y, step = step_setup(w, name, dtype)
                row["path"] = execution_path(be, "step", net.spec, X.shape[0])
                row["step_s"], row["gemm_s"] = interleaved_times(
                    [step, gemm_call(w, be, dtype)], be.synchronize,
                    rounds=1 if quick else 3, budget=0.2 if quick else 0.25,
                    settle=lambda: _settle(quick, w.tiny))
                row["flops"] = w.flops_per_step()
                if w.tiny:
                    row["epoch_s"] = epoch_time(w, name, dtype, epochs)
                if be.device() == "cpu":
                    row["alloc_bytes_per_step"] = allocated_per_step(step, 20) / 20
                row["parity"] = parity(w, name, dtype, steps=20 if quick else 50)
                rows.append(row)
                log(f"  measured {wname} {name} {dtype}")
            rows += peer_rows(w, dtype, peers, epochs)
    measure_peaks()
    sweeps = []
    for dtype in dtypes:
        if "or-gate" in workloads:
            log(f"  measuring or-gate sweeps {dtype}")
            sweeps += sweep_rows(backends, dtype, peers, 256 if quick else 1024,
                                 500 if quick else 5000, budget=0.5 if quick else 1.0)
        if "digits" in workloads:
            log(f"  measuring digits sweeps {dtype}")
            sweeps += sweep_rows(backends, dtype, peers, 64, 20 if quick else 100,
                                 workload="digits", budget=0.5 if quick else 1.0)
    measure_peaks()
    # The best of the interleaved measurements: a busy machine only ever lowers a peak.
    peaks = {key: {"best": max(v), "min": min(v), "n": len(v)} for key, v in samples.items()}
    for row in rows:
        peak = peaks.get((row["backend"], row["dtype"]))
        if peak is not None:
            row["peak_flops"] = peak["best"]
    for row in rows:
        base = next((r for r in rows if r["workload"] == row["workload"]
                     and r["dtype"] == row["dtype"] and r["backend"] == "numpy"), None)
        if base and "step_s" in row:
            row["speedup_vs_numpy"] = base["step_s"] / row["step_s"]
    return {"machine": machine_info(), "rows": rows, "sweeps": sweeps,
            "gemm_peaks": [{"backend": b, "dtype": d, "best_flops": p["best"],
                            "min_flops": p["min"], "measurements": p["n"]}
                           for (b, d), p in peaks.items()]}


def machine_info():
    import numpy
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__}
    # Versions from the installed distributions: importing torch and JAX only to read
    # theirs took 2 s of a --quick run.
    from importlib import metadata
    for mod, dists in (("numba", ("numba",)), ("torch", ("torch",)), ("jax", ("jax",)),
                       ("cupy", ("cupy", "cupy-cuda12x", "cupy-cuda11x", "cupy-cuda13x"))):
        for dist in dists:
            try:
                info[mod] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return info
