"""What one ``fit`` call costs beyond its arithmetic, on tiny networks (issue 18).

Measures, in one process with interleaved repeats (best and median of each):

- ``fit(X, Y, epochs=1)`` on the OR gate (2-2-1 sigmoid, float64): the fixed cost of a
  call, wall clock and CPU time of the calling thread;
- the cost per epoch of a callback, of validation data (its loss is computed inside the
  run) and of ``patience`` (and ``restore_best``), minus the plain fit (a callback
  returns to Python after every epoch; patience after at most ``patience`` epochs);
- ``fit(epochs=1)`` piece by piece (its floor: checks, plan, snapshot, the kernel call);
- whole fits of the seed's 2-1 sigmoid net (2,000 epochs) and of the OR gate's 2-2-1
  net (5,000 epochs), float64, lr 0.01, against JAX ``jit(lax.scan)`` over the same
  epochs (``nnkit.bench.peers.make_jax_scan_epochs``, compiled before timing).

Run: ``python benchmarks/fit_latency.py [--json PATH] [--repeats N]`` (not part of pytest;
JAX is optional: without it the JAX rows are skipped).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import numpy as np

import nnkit
from nnkit.bench.workloads import Workload

OR_21 = Workload("or-2-1", (2, 1), 4)
OR_221 = Workload("or-gate", (2, 2, 1), 4)
LR = 0.01  # the rate nnkit.bench.peers' JAX update uses


def _best_median(samples):
    return min(samples), statistics.median(samples)


def _time(fn, number):
    """(wall, cpu) seconds per call of ``number`` calls."""
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(number):
        fn()
    return (time.perf_counter() - w0) / number, (time.thread_time() - c0) / number


def _interleaved(fns, number, repeats):
    """{name: (wall samples, cpu samples)}, each repeat timing every fn once in turn."""
    out = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = _time(fn, number)
            out[name][0].append(wall)
            out[name][1].append(cpu)
    return out


def fixed_costs(repeats):
    """fit(epochs=1) and the per-epoch cost of returning to Python, numba and numpy."""
    X, Y = OR_221.data("float64")
    rows = {}
    for backend in ("numba", "numpy"):
        net = OR_221.network(backend=backend, dtype="float64")
        net.fit(X, Y, epochs=5000, lr=LR)  # compile / load every kernel first
        net.fit(X, Y, epochs=200, lr=LR, callback=lambda e, r: None)
        E = 2000 if backend == "numba" else 200
        val = (X, Y)
        fns = {
            "fit(epochs=1)": lambda: net.fit(X, Y, epochs=1, lr=LR),
            "fit": lambda: net.fit(X, Y, epochs=E, lr=LR),
            "callback": lambda: net.fit(X, Y, epochs=E, lr=LR, callback=lambda e, r: None),
            "validation": lambda: net.fit(X, Y, epochs=E, lr=LR, validation_data=val),
            "patience+restore_best": lambda: net.fit(X, Y, epochs=E, lr=LR,
                                                     patience=10 * E, restore_best=True),
            # chunks of at most 10 epochs (the loss falls every epoch: no stop)
            "patience=10+restore_best": lambda: net.fit(X, Y, epochs=E, lr=LR, patience=10,
                                                        restore_best=True),
        }
        numbers = {"fit(epochs=1)": 2000 if backend == "numba" else 500}
        got = {name: _interleaved({name: fn}, numbers.get(name, 3), 1)[name]
               for name, fn in fns.items()}  # warm
        got = {name: ([], []) for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                wall, cpu = _time(fn, numbers.get(name, 3))
                got[name][0].append(wall)
                got[name][1].append(cpu)
        plain_wall = min(got["fit"][0])
        plain_cpu = min(got["fit"][1])
        row = {"path": net.backend.plan("epochs", net.spec, 4, None, 1, E), "epochs": E}
        for name, (walls, cpus) in got.items():
            if name in ("fit(epochs=1)", "fit"):
                row[name] = {"wall_us": [1e6 * v for v in _best_median(walls)],
                             "cpu_us": [1e6 * v for v in _best_median(cpus)]}
            else:  # per epoch, over the plain fit of as many epochs
                row[name + " per epoch"] = {
                    "wall_us": [1e6 * (v - plain_wall) / E for v in _best_median(walls)],
                    "cpu_us": [1e6 * (v - plain_cpu) / E for v in _best_median(cpus)]}
        rows[backend] = row
    return rows


def fit_pieces(repeats):
    """What one ``fit(epochs=1)`` of the OR gate (numba, float64, generated path) is made
    of: each piece timed alone (CPU time of this thread, best of ``repeats``), and an
    empty numba function of the generated kernel's signature (its call cost alone)."""
    import numba
    from nnkit.backends.numba_backend import _fit_kernel, _fit_state
    from nnkit.history import History
    from nnkit.schedules import learning_rates
    X, Y = OR_221.data("float64")
    net = OR_221.network(backend="numba", dtype="float64")
    net.fit(X, Y, epochs=5000, lr=LR)  # the net has paid for its generated kernel
    Xp, Yp = net.prepare(X, Y)
    be, state = net.backend, net.train_state
    run = be.prepare_epochs(state, 4, None, 1)
    kernel, (P, _) = _fit_kernel(state.spec, 4), _fit_state(state)  # (the state holds the arrays)
    args = (P,)  # the state arrays' address table
    lrs, losses = np.full(1, LR), np.empty(1)

    names = ", ".join(f"a{i}" for i in range(len(args) + 4))
    scope = {}
    exec(f"def empty({names}):\n    return 0", scope)  # the kernel's arity, no body
    empty = numba.njit(scope["empty"])
    empty(Xp, Yp, *args, lrs, losses)
    pieces = {
        "fit(epochs=1)": lambda: net.fit(X, Y, epochs=1, lr=LR),
        "prepare(X, Y): checks, finite X and Y": lambda: net.prepare(X, Y),
        "plan (prepare_epochs)": lambda: be.prepare_epochs(state, 4, None, 1),
        "learning rates": lambda: learning_rates(None, LR, 1),
        "History()": History,
        "snapshot": net._snapshot,
        "finite check of the parameters": net._params_finite,
        "runner, one epoch": lambda: run(Xp, Yp, lrs),
        "generated kernel, one epoch": lambda: kernel(Xp, Yp, *args, lrs, losses),
        f"empty numba call, {len(args) + 4} array args": lambda: empty(Xp, Yp, *args, lrs,
                                                                      losses),
    }
    out = {}
    for name, fn in pieces.items():
        best = math.inf
        for _ in range(repeats):
            best = min(best, _time(fn, 2000)[1])
        out[name] = 1e6 * best
    return out


def versus_jax(repeats):
    """Whole float64 fits: nnkit numba vs JAX jit(lax.scan) over the same epochs."""
    try:
        from nnkit.bench.peers import make_jax_scan_epochs
        import jax  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"JAX not installed ({exc})"}
    rows = {}
    for w, epochs in ((OR_21, 2000), (OR_221, 5000)):
        X, Y = w.data("float64")
        net = w.network(backend="numba", dtype="float64")
        net.fit(X, Y, epochs=epochs, lr=LR)
        jax_fit = make_jax_scan_epochs(w, "float64", epochs)
        jax_fit()  # compile
        got = _interleaved({"nnkit numba fit": lambda: net.fit(X, Y, epochs=epochs, lr=LR),
                            "JAX jit(lax.scan)": jax_fit}, 20, repeats)
        row = {"epochs": epochs, "path": net.backend.plan("epochs", net.spec, 4, None, 1,
                                                          epochs)}
        for name, (walls, _) in got.items():
            row[name] = {"us": [1e6 * v for v in _best_median(walls)]}
        row["nnkit vs JAX (best)"] = (min(got["JAX jit(lax.scan)"][0])
                                      / min(got["nnkit numba fit"][0]))
        row["nnkit vs JAX (median)"] = (statistics.median(got["JAX jit(lax.scan)"][0])
                                        / statistics.median(got["nnkit numba fit"][0]))
        rows[f"{w.name} {'-'.join(map(str, w.sizes))}"] = row
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "load_before": load, "nnkit": nnkit.__version__, "numpy": np.__version__,
              "fixed": fixed_costs(args.repeats), "pieces": fit_pieces(args.repeats),
              "versus_jax": versus_jax(args.repeats)}
    result["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for backend, row in result["fixed"].items():
        print(f"{backend} (path {row['path']}, {row['epochs']} epochs for the per-epoch rows):")
        for name, v in row.items():
            if isinstance(v, dict):
                print(f"  {name:34s} wall {v['wall_us'][0]:8.2f} us (median "
                      f"{v['wall_us'][1]:8.2f})  cpu {v['cpu_us'][0]:8.2f} us")
    print("numba fit(epochs=1), piece by piece (CPU time, best):")
    for name, us in result["pieces"].items():
        print(f"  {name:42s} {us:6.2f} us")
    for name, row in result["versus_jax"].items():
        if not isinstance(row, dict):
            print(f"JAX: {row}")
            continue
        print(f"{name}, {row['epochs']} epochs float64 (nnkit path {row['path']}): nnkit "
              f"{row['nnkit numba fit']['us'][0]:.1f} us, JAX {row['JAX jit(lax.scan)']['us'][0]:.1f}"
              f" us -> nnkit {row['nnkit vs JAX (best)']:.2f}x faster (best), "
              f"{row['nnkit vs JAX (median)']:.2f}x (median)")
    print(f"load average {result['load_before']} -> {result['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
