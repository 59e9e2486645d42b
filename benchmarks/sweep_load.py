"""The OR-gate sweep on a quiet machine and with one core kept busy by another process.

Run: ``python benchmarks/sweep_load.py [--nets 1024] [--epochs 5000] [--rounds 6]
[--json PATH]`` (not part of pytest; needs JAX for the peer column).

Workload: ``nnkit.bench`` 's ``or-gate`` (2-2-1 sigmoid, squared error, the 4 rows of the
truth table, full batch), float32, one learning rate per network (the rates of
``nnkit.bench.runner.sweep_rows``), every epoch's loss recorded. nnkit: ``nnkit.sweep`` on
the numba backend; JAX: ``jit(scan(vmap(step)))`` (``nnkit.bench.peers.make_jax_sweep``).

Rounds alternate quiet and loaded: a loaded round starts a separate Python process that
spins on one core (pinned there with ``os.sched_setaffinity`` where the OS has it), waits
for it to run, times both engines, and stops it. Within a round the engines alternate,
several calls each. Reported per engine and condition: best and median net-epochs/s;
ratios nnkit / JAX of the best and of the medians; loaded / quiet of each engine. The
load average is printed at the start and with every round: the machine is shared, so a
round taken while other work ran shows there.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import nnkit
from nnkit.bench import peers as P
from nnkit.bench.runner import machine_info
from nnkit.bench.workloads import WORKLOADS

_SPIN = ("import os, sys\n"
         "core = int(sys.argv[1])\n"
         "if core >= 0 and hasattr(os, 'sched_setaffinity'):\n"
         "    os.sched_setaffinity(0, {core})\n"
         "print('spinning', flush=True)\n"
         "x = 0\n"
         "while True:\n"
         "    x += 1\n")


class Busy:
    """A separate process spinning on ``core`` (-1: wherever the OS puts it) while open."""

    def __init__(self, core):
        self.core = core
        self.proc = None

    def __enter__(self):
        # Its own session, as another program's would be: with Linux's autogroup
        # scheduling, a process in this benchmark's session would share this session's
        # CPU time instead of taking its own.
        self.proc = subprocess.Popen([sys.executable, "-c", _SPIN, str(self.core)],
                                     stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.proc.stdout.readline()  # it runs (and is pinned) from here on
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def busy_core():
    """The core the busy loop is pinned to: the last one this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(os.sched_getaffinity(0))
    return -1


def engines(nets, epochs, dtype="float32", jax=True):
    """{name: zero-argument callable running the whole sweep once}, warmed up."""
    w = WORKLOADS["or-gate"]
    X, Y = w.data(dtype)
    lrs = np.geomspace(0.01, 50, nets)  # as nnkit.bench.runner.sweep_rows
    net = w.network(backend="numba", dtype=dtype)
    nnkit.sweep(net, X, Y, lr=lrs[:8], epochs=2)  # compile / load the kernels
    runs = {"nnkit numba": lambda: nnkit.sweep(net, X, Y, lr=lrs, epochs=epochs)}
    if jax:
        try:
            runs["JAX jit(scan(vmap))"] = P.make_jax_sweep(w, dtype, lrs, epochs)
        except ImportError:
            print("JAX is not installed: nnkit only", flush=True)
    for run in runs.values():
        run()
    return runs


def sample(run, budget, least=2):
    """Seconds of each call of ``run``, calls until ``budget`` s have passed (>= least)."""
    times = []
    start = time.perf_counter()
    while len(times) < least or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def summary(times, work):
    return {"best_s": min(times), "median_s": statistics.median(times), "calls": len(times),
            "best_net_epochs_per_s": work / min(times),
            "median_net_epochs_per_s": work / statistics.median(times)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=6, help="quiet and loaded rounds each")
    p.add_argument("--budget", type=float, default=1.0,
                   help="seconds of calls per engine per round")
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import numba
    info = machine_info()
    runs = engines(args.nets, args.epochs, jax=not args.no_jax)
    info.update(threading_layer=numba.threading_layer(), numba_threads=numba.get_num_threads())
    core = busy_core()
    work = args.nets * args.epochs
    print(f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, numpy "
          f"{info['numpy']}, numba {info['numba']} ({info['threading_layer']}, "
          f"{info['numba_threads']} threads), JAX {info.get('jax', '-')}", flush=True)
    print(f"OR gate 2-2-1 float32: {args.nets:,} nets x {args.epochs:,} epochs; busy loop "
          f"pinned to core {core}; load average {os.getloadavg()}", flush=True)
    times = {(name, cond): [] for name in runs for cond in ("quiet", "loaded")}
    rounds = []
    for r in range(args.rounds):
        for cond in ("quiet", "loaded"):
            load = os.getloadavg()
            got = {}
            if cond == "loaded":
                busy = Busy(core).__enter__()
            try:
                order = list(runs) if r % 2 == 0 else list(runs)[::-1]
                for name in order:
                    t = sample(runs[name], args.budget)
                    times[name, cond] += t
                    got[name] = work / min(t)
            finally:
                if cond == "loaded":
                    busy.__exit__()
            rounds.append({"round": r, "condition": cond, "loadavg_1min": load[0],
                           "best_net_epochs_per_s": got})
            print(f"  round {r} {cond:6} (load {load[0]:.2f}): " + ", ".join(
                f"{n} {v / 1e6:6.1f} M" for n, v in got.items()), flush=True)
    result = {"machine": info, "nets": args.nets, "epochs": args.epochs, "dtype": "float32",
              "busy_core": core, "rounds": rounds,
              "loadavg_end": os.getloadavg(), "engines": {}}
    for name in runs:
        result["engines"][name] = {c: summary(times[name, c], work) for c in ("quiet",
                                                                                "loaded")}
    print("net-epochs/s, best (median):")
    for name, e in result["engines"].items():
        q, ld = e["quiet"], e["loaded"]
        print(f"  {name:22} quiet {q['best_net_epochs_per_s'] / 1e6:6.1f} M "
              f"({q['median_net_epochs_per_s'] / 1e6:6.1f} M)   loaded "
              f"{ld['best_net_epochs_per_s'] / 1e6:6.1f} M "
              f"({ld['median_net_epochs_per_s'] / 1e6:6.1f} M)   loaded/quiet "
              f"{ld['best_net_epochs_per_s'] / q['best_net_epochs_per_s']:.2f} "
              f"({ld['median_net_epochs_per_s'] / q['median_net_epochs_per_s']:.2f})")
    names = list(runs)
    if len(names) == 2:
        a, b = (result["engines"][n] for n in names)
        ratios = {c: {k: a[c][k + "_net_epochs_per_s"] / b[c][k + "_net_epochs_per_s"]
                      for k in ("best", "median")} for c in ("quiet", "loaded")}
        result["ratio_nnkit_over_jax"] = ratios
        for c in ("quiet", "loaded"):
            print(f"  nnkit / JAX {c:6}: {ratios[c]['best']:.2f}x best, "
                  f"{ratios[c]['median']:.2f}x median")
    print(f"load average at the end: {result['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
