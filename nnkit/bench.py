"""``nnkit bench``: the same workloads on every usable backend, checked against the
NumPy backend and timed side by side (and against PyTorch/JAX when installed)."""
from __future__ import annotations

import json
import platform
import statistics
import time
import tracemalloc

import numpy as np

from .workloads import QUICK, WORKLOADS

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


def gemm_peak(backend, dtype, n=1024):
    """Measured GEMM throughput (FLOP/s) of an n x n x n matmul on ``backend``."""
    xp = backend.xp
    a = backend.asarray(np.random.default_rng(0).uniform(size=(n, n)), dtype)
    out = backend.empty((n, n), a.dtype)
    t = time_per_call(lambda: xp.matmul(a, a, out=out), backend.synchronize, budget=0.5,
                      repeats=3)
    return 2 * n ** 3 / t


def gemm_time(w, backend, dtype):
    """Seconds for just the matmuls of one training step of ``w`` (forward X W, backward
    X^T dZ and dZ W^T) with the backend's BLAS: the roofline a step can approach."""
    be = backend
    rng = np.random.default_rng(0)
    b = w.batch
    mats = []
    for l, (i, o) in enumerate(zip(w.sizes, w.sizes[1:])):
        X = be.asarray(rng.uniform(size=(b, i)), dtype)
        W = be.asarray(rng.uniform(size=(i, o)), dtype)
        dZ = be.asarray(rng.uniform(size=(b, o)), dtype)
        mats.append((X, W, dZ, be.empty((b, o), X.dtype), be.empty((i, o), X.dtype),
                     be.empty((b, i), X.dtype) if l else None))
    xp = be.xp

    def run():
        for X, W, dZ, Z, dW, dX in mats:
            xp.matmul(X, W, out=Z)
            xp.matmul(X.T, dZ, out=dW)
            if dX is not None:
                xp.matmul(dZ, W.T, out=dX)

    return time_per_call(run, be.synchronize, budget=0.3)


def step_setup(w, backend, dtype):
    """(net, X, Y, step) where step() is one training step from Python."""
    net = w.network(backend=backend, dtype=dtype)
    X, Y = w.data(dtype)
    X, Y = net._data(X, Y)
    be, state = net.backend, net._state
    return net, X, Y, lambda: be.train_step(state, X, Y, LR)


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
    """Max relative difference of the loss history vs the NumPy backend after ``steps``."""
    X, Y = w.data(dtype)
    losses = []
    for name in ("numpy", backend):
        net = w.network(backend=name, dtype=dtype)
        losses.append(np.asarray(net.fit(X, Y, epochs=steps, lr=PARITY_LR, progress=False).loss))
    return float(np.max(np.abs(losses[1] - losses[0]) / np.abs(losses[0])))


def epoch_time(w, backend, dtype, epochs):
    """Seconds per epoch of a full-batch ``fit`` (fused multi-epoch path where there is one)."""
    net = w.network(backend=backend, dtype=dtype)
    X, Y = w.data(dtype)
    net.fit(X, Y, epochs=10, lr=1.0, progress=False)  # warm / compile
    return time_per_call(lambda: net.fit(X, Y, epochs=epochs, lr=1.0, progress=False),
                         net.backend.synchronize, budget=0.3, repeats=3) / epochs


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


def sweep_rows(backends, dtype, peers, nets, epochs, workload="or-gate"):
    """net-epochs/s of a learning-rate sweep of ``nets`` networks x ``epochs`` (full batch)."""
    import nnkit
    from . import peers as P
    w = WORKLOADS[workload]
    X, Y = w.data(dtype)
    lrs = np.geomspace(0.01, 50, nets)
    rows = []
    runs = []
    for name in backends:
        net = w.network(backend=name, dtype=dtype)
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
        t = time_per_call(run, budget=1.0, repeats=3)
        rows.append({"sweep": workload, "backend": name, "dtype": dtype, "nets": nets,
                     "epochs": epochs, "net_epochs_per_s": nets * epochs / scale / t})
    return rows


def run_bench(workloads, backends, dtypes, peers=(), quick=False, log=_log):
    """Measure every (workload, backend, dtype); returns a dict for JSON."""
    import nnkit
    rows = []
    peaks = {}
    epochs = 2000 if quick else 5000
    for dtype in dtypes:
        for name in backends:
            be = nnkit.get_backend(name)
            peaks[(name, dtype)] = gemm_peak(be, dtype, n=512 if quick else 1024)
    for wname in workloads:
        w = WORKLOADS[wname]
        for dtype in dtypes:
            for name in backends:
                be = nnkit.get_backend(name)
                row = {"workload": wname, "backend": name, "dtype": dtype,
                       "first_call_s": first_call_time(w, name, dtype)}
                net, X, Y, step = step_setup(w, name, dtype)
                row["step_s"] = time_per_call(step, be.synchronize,
                                              budget=0.2 if quick else 0.5)
                row["flops"] = w.flops_per_step()
                row["peak_flops"] = peaks[(name, dtype)]
                row["gemm_s"] = gemm_time(w, be, dtype)
                if w.tiny:
                    row["epoch_s"] = epoch_time(w, name, dtype, epochs)
                if be.device() == "cpu":
                    row["alloc_bytes_per_step"] = allocated_per_step(step, 20) / 20
                row["parity"] = parity(w, name, dtype, steps=20 if quick else 50)
                rows.append(row)
                log(f"  measured {wname} {name} {dtype}")
            rows += peer_rows(w, dtype, peers, epochs)
    sweeps = []
    for dtype in dtypes:
        log(f"  measuring sweeps {dtype}")
        sweeps += sweep_rows(backends, dtype, peers, 256 if quick else 1024,
                             500 if quick else 5000)
        sweeps += sweep_rows(backends, dtype, peers, 64, 20 if quick else 100,
                             workload="digits")
    for row in rows:
        base = next((r for r in rows if r["workload"] == row["workload"]
                     and r["dtype"] == row["dtype"] and r["backend"] == "numpy"), None)
        if base and "step_s" in row:
            row["speedup_vs_numpy"] = base["step_s"] / row["step_s"]
    return {"machine": machine_info(), "rows": rows, "sweeps": sweeps}


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
    for mod in ("numba", "torch", "jax", "cupy"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info


def format_table(result):
    head = ("workload", "backend", "dtype", "step", "samples/s", "GFLOP/s", "%peak", "%gemm",
            "vs numpy", "epoch", "parity", "alloc/step", "first call")
    lines = [head]
    for r in result["rows"]:
        w = WORKLOADS[r["workload"]]
        if "note" in r:
            lines.append((r["workload"], r["backend"], r["dtype"], r["note"]) + ("",) * 9)
            continue
        step = r.get("step_s")
        gflops = r["flops"] / step / 1e9 if step and "flops" in r else None
        lines.append((
            r["workload"], r["backend"], r["dtype"],
            _us(step), f"{w.batch / step:.3g}" if step else "",
            f"{gflops:.3g}" if gflops else "",
            f"{100 * r['flops'] / step / r['peak_flops']:.1f}" if gflops else "",
            f"{100 * r['gemm_s'] / step:.0f}" if gflops else "",
            f"{r['speedup_vs_numpy']:.2f}x" if "speedup_vs_numpy" in r else "",
            _us(r.get("epoch_s")),
            f"{r['parity']:.1e}" if "parity" in r else "",
            f"{r['alloc_bytes_per_step']:.0f} B" if "alloc_bytes_per_step" in r else "",
            _us(r.get("first_call_s"))))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(wd) for c, wd in zip(line, widths)).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(out)


def _rate(per_s):
    """A rate with 3-4 significant digits and a k/M/G prefix."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_s >= scale:
            return f"{per_s / scale:7.4g} {prefix}"
    return f"{per_s:7.4g}  "


def _us(seconds):
    if seconds is None:
        return ""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def add_bench_parser(sub):
    p = sub.add_parser("bench", help="train the benchmark workloads on every usable backend, "
                                     "check they agree, print a throughput table")
    p.add_argument("--quick", action="store_true",
                   help=f"float32, workloads {','.join(QUICK)}, short timings (< 1 min)")
    p.add_argument("--backends", default=None, help="comma list (default: all usable)")
    p.add_argument("--workloads", default=None,
                   help=f"comma list of {','.join(WORKLOADS)} (default: all; --quick: "
                        f"{','.join(QUICK)})")
    p.add_argument("--dtype", default=None, help="float32, float64 or both (default: float32)")
    p.add_argument("--peers", default="", help="comma list of torch,jax (optional packages)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args):
    import nnkit
    backends = args.backends.split(",") if args.backends else nnkit.available_backends()
    for name in backends:
        nnkit.get_backend(name)  # clear error for unknown/unusable names
    workloads = (args.workloads.split(",") if args.workloads
                 else list(QUICK if args.quick else WORKLOADS))
    for wname in workloads:
        if wname not in WORKLOADS:
            raise ValueError(f"--workloads: expected names from {tuple(WORKLOADS)}, got {wname!r}")
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype or "float32"]
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in ("torch", "jax"):
            raise ValueError(f"--peers: expected torch and/or jax, got {p!r}")
    print(f"nnkit bench: backends {', '.join(backends)}; workloads {', '.join(workloads)}; "
          f"{', '.join(dtypes)}")
    t0 = time.perf_counter()
    result = run_bench(workloads, backends, dtypes, peers, quick=args.quick)
    info = result["machine"]
    print(f"machine: {info['cpu']}, {info['cores']} cores; " +
          ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("cpu", "cores")))
    for (name, dtype), peak in sorted(_peaks(result).items()):
        print(f"GEMM peak measured on {name} {dtype}: {peak / 1e9:.1f} GFLOP/s")
    print("%peak: GFLOP/s over the GEMM peak above; "
          "%gemm: time of the step's matmuls alone (same shapes, same BLAS) / step time; "
          "first call: the first step in this process (JIT compile or cache load), "
          "excluded from the timings")
    print(format_table(result))
    for r in result.get("sweeps", []):
        print(f"sweep {r['sweep']} {r['nets']} nets x {r['epochs']} epochs {r['dtype']}: "
              f"{r['backend']:<15} {_rate(r['net_epochs_per_s'])} net-epochs/s")
    worst = max((r["parity"] for r in result["rows"] if "parity" in r), default=0.0)
    tol = 1e-4 if "float32" in dtypes else 1e-9
    print(f"parity: max relative loss difference vs numpy {worst:.2e} "
          f"({'ok' if worst <= tol else 'MISMATCH'}, tolerance {tol:g}); "
          f"took {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=float)
        print(f"results written to {args.json}")
    return 0 if worst <= tol else 1


def _peaks(result):
    return {(r["backend"], r["dtype"]): r["peak_flops"] for r in result["rows"]
            if "peak_flops" in r}
