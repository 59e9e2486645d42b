"""Issue 14's speed benchmark: classification with Adam.

1. scikit-learn's 8x8 digits (``nnkit.datasets.digits()``: 1,347 training and 450 test
   images), a 64-64-10 net, relu -> softmax, categorical cross-entropy, Adam at lr 1e-3,
   shuffled mini-batches of 64, 50 epochs (the ``digits-adam`` workload of
   ``nnkit.bench.workloads``), trained by

   - nnkit on numba (and on numpy, for reference),
   - scikit-learn's ``MLPClassifier(solver="adam", alpha=0, learning_rate_init=1e-3,
     batch_size=64, max_iter=50, tol=0, n_iter_no_change > max_iter)``: it runs all 50
     epochs (checked),
   - PyTorch eager with ``torch.optim.Adam`` (optional: ``pip install torch``), started from
     nnkit's initial weights, on one intra-op thread by default (``--torch-threads``): on a
     2-core machine its default two OpenMP threads, contending with numba's and OpenBLAS's,
     made it about 10x slower in our measurements.

   Every contender trains ``--repeats`` times, interleaved (one run of each in turn, the
   order rotating), repeat r with seed r; the table gives the best and the median fit time
   and the median test accuracy (min-max over the seeds), and the speed ratios. numba
   compiles (or loads its cache) before any timing: that time is reported apart.

2. The OR gate (2-2-1 sigmoid, squared error, full batch, the ``or-gate`` workload) on
   numba: seconds per epoch of a 5,000-epoch ``fit`` with each optimizer; the ratio to
   plain SGD (target for Adam: <= 1.5x).

BLAS (OpenBLAS, used by numpy, scikit-learn and nnkit's numba BLAS path) and OpenMP pools
are limited to one thread by default (``--blas-threads``, threadpoolctl), as torch is
(``--torch-threads``): these networks are too small for a second thread to help, and on a
busy 2-core machine two-thread pools made the same 128x784x256 matmul swing from 0.23 ms
to 48 ms between processes.

Run ``python benchmarks/classification.py [--repeats 7] [--json PATH]``. All figures come
from one process on one machine; a busy machine slows any run, so compare best-of and
median figures, and ratios measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import nnkit  # noqa: E402
from nnkit.bench import peers  # noqa: E402
from nnkit.bench.runner import machine_info  # noqa: E402
from nnkit.bench.workloads import WORKLOADS  # noqa: E402

DTYPE = "float32"


class NNKit:
    """nnkit on one backend, with the workload's fit options."""

    def __init__(self, w, backend, dtype=DTYPE):
        self.w, self.backend, self.dtype = w, backend, dtype
        self.X, self.y, self.Xt, self.yt = w.split(dtype)
        self.seed = 0
        self.net = None

    def compile_time(self):
        """Seconds of the first one-epoch fit in this process (compile or cache load)."""
        t0 = time.perf_counter()
        self.reset()
        self.fit(1)
        first = time.perf_counter() - t0
        self.reset()
        self.fit(1)  # anything left lazy
        return first

    def reset(self):
        self.net = self.w.network(backend=self.backend, dtype=self.dtype, seed=self.seed)

    def fit(self, epochs):
        self.net.fit(self.X, self.y, epochs=epochs, **self.w.fit_options())
        self.net.backend.synchronize()

    def timed_fit(self, epochs):
        self.reset()
        t0 = time.perf_counter()
        self.fit(epochs)
        return time.perf_counter() - t0

    def score(self):
        s = self.net.evaluate(self.Xt, self.yt, metrics=True)
        return float(s["loss"]), float(s["accuracy"])


def contenders(w, want_torch=True, want_numpy=True, torch_threads=1):
    out, skipped = {}, {}
    out["nnkit numba"] = NNKit(w, "numba")
    if want_numpy:
        out["nnkit numpy"] = NNKit(w, "numpy")
    try:
        out["sklearn"] = peers.SklearnClassifier(w, DTYPE)
    except ImportError as exc:
        skipped["sklearn"] = str(exc)
    if want_torch:
        try:
            import torch
            if torch_threads:
                torch.set_num_threads(torch_threads)
            out["torch eager"] = peers.TorchClassifier(w, DTYPE)
        except ImportError as exc:
            skipped["torch eager"] = f"not installed ({exc})"
    return out, skipped


def digits_benchmark(repeats, epochs, want_torch=True, want_numpy=True, torch_threads=1,
                     log=print):
    w = WORKLOADS["digits-adam"]
    runners, skipped = contenders(w, want_torch, want_numpy, torch_threads)
    warm = {}
    for name, r in runners.items():
        if isinstance(r, NNKit):
            warm[name] = r.compile_time()
        else:
            t0 = time.perf_counter()
            r.fit(1)  # torch: lazy initialisation, sklearn: imports
            warm[name] = time.perf_counter() - t0
    times = {name: [] for name in runners}
    acc = {name: [] for name in runners}
    loss = {name: [] for name in runners}
    names = list(runners)
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            r = runners[name]
            r.seed = rep
            times[name].append(r.timed_fit(epochs))
            l, a = r.score()
            acc[name].append(a)
            loss[name].append(l)
        log(f"  repeat {rep + 1}/{repeats}: " + ", ".join(
            f"{n} {times[n][-1]:.3f} s acc {acc[n][-1]:.3f}" for n in names))
    n_train = len(runners["nnkit numba"].y)
    rows = []
    for name in names:
        rows.append({"contender": name, "fit_s": times[name], "best_s": min(times[name]),
                     "median_s": statistics.median(times[name]),
                     "accuracy": acc[name], "median_accuracy": statistics.median(acc[name]),
                     "test_loss": loss[name], "warmup_s": warm[name],
                     "step_us": min(times[name]) / (epochs * -(-n_train // w.batch)) * 1e6})
    threads = {}
    if "torch eager" in runners:
        import torch
        threads["torch"] = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info
        threads["blas"] = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
    except ImportError:
        pass
    return {"workload": w.name, "sizes": w.sizes, "epochs": epochs, "batch": w.batch,
            "threads": threads,
            "lr": w.lr, "optimizer": w.optimizer, "dtype": DTYPE, "repeats": repeats,
            "n_train": n_train, "n_test": len(runners["nnkit numba"].yt),
            "rows": rows, "skipped": skipped}


def or_gate_benchmark(repeats, epochs, optimizers=("sgd", "momentum", "nesterov", "adam")):
    """Seconds per epoch of a full-batch OR-gate fit on numba, per optimizer."""
    w = WORKLOADS["or-gate"]
    X, Y = w.data(DTYPE)
    lr = {"sgd": 1.0, "momentum": 0.5, "nesterov": 0.5, "adam": 0.01}
    nets = {}
    for opt in optimizers:
        net = w.network(backend="numba", dtype=DTYPE)
        # compile, with the run's epoch count (a path may depend on it)
        net.fit(X, Y, epochs=epochs, lr=lr[opt], optimizer=opt, progress=False)
        nets[opt] = net
    times = {opt: [] for opt in optimizers}
    for rep in range(repeats):
        order = list(optimizers[rep % len(optimizers):]) + list(optimizers[:rep % len(optimizers)])
        for opt in order:
            net = w.network(backend="numba", dtype=DTYPE)
            t0 = time.perf_counter()
            net.fit(X, Y, epochs=epochs, lr=lr[opt], optimizer=opt, progress=False)
            times[opt].append((time.perf_counter() - t0) / epochs)
    best_sgd = min(times["sgd"])
    med_sgd = statistics.median(times["sgd"])
    return {"workload": w.name, "sizes": w.sizes, "epochs": epochs, "repeats": repeats,
            "rows": [{"optimizer": opt, "epoch_s": times[opt], "best_epoch_s": min(times[opt]),
                      "median_epoch_s": statistics.median(times[opt]),
                      "best_vs_sgd": min(times[opt]) / best_sgd,
                      "median_vs_sgd": statistics.median(times[opt]) / med_sgd}
                     for opt in optimizers]}


def format_digits(res):
    rows = {r["contender"]: r for r in res["rows"]}
    base = rows["nnkit numba"]
    lines = [f"digits {'-'.join(map(str, res['sizes']))} relu->softmax, cross-entropy, "
             f"{res['optimizer']} lr {res['lr']:g}, batch {res['batch']}, {res['epochs']} "
             f"epochs shuffled, {res['dtype']}; {res['n_train']} train / {res['n_test']} "
             f"test; {res['repeats']} interleaved repeats (seeds 0..{res['repeats'] - 1})"]
    head = ("contender", "best fit", "median fit", "per step", "test acc (median, min-max)",
            "vs nnkit numba (best / median)", "warm-up (excluded)")
    table = [head]
    for name, r in rows.items():
        ratio = (f"{r['best_s'] / base['best_s']:.2f}x / {r['median_s'] / base['median_s']:.2f}x"
                 if name != "nnkit numba" else "1")
        table.append((name, f"{r['best_s'] * 1e3:.1f} ms", f"{r['median_s'] * 1e3:.1f} ms",
                      f"{r['step_us']:.1f} us",
                      f"{r['median_accuracy']:.4f} ({min(r['accuracy']):.4f}-"
                      f"{max(r['accuracy']):.4f})", ratio, f"{r['warmup_s']:.3f} s"))
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for i, t in enumerate(table):
        lines.append("  ".join(c.ljust(wd) for c, wd in zip(t, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    if res.get("threads"):
        lines.append("threads: " + ", ".join(f"{k} {v}" for k, v in res["threads"].items()))
    for name, why in res["skipped"].items():
        lines.append(f"{name}: skipped: {why}")
    lines.append("ratios: the contender's fit time over nnkit numba's (> 1: nnkit is faster)")
    for peer, target in (("sklearn", 5.0), ("torch eager", 2.0)):
        if peer in rows:
            r = rows[peer]
            sp = r["best_s"] / base["best_s"]
            lines.append(f"  nnkit numba vs {peer}: {sp:.2f}x faster (best), "
                         f"{r['median_s'] / base['median_s']:.2f}x (median); target >= "
                         f"{target:g}x: {'met' if sp >= target else 'NOT met'}")
    if "sklearn" in rows:
        d = (base["median_accuracy"] - rows["sklearn"]["median_accuracy"]) * 100
        lines.append(f"  accuracy nnkit numba - sklearn: {d:+.2f} points (median over seeds); "
                     f"target within 1 point: {'met' if d >= -1 else 'NOT met'}")
    return "\n".join(lines)


def format_or(res):
    lines = [f"OR gate {'-'.join(map(str, res['sizes']))} full batch on numba, {res['epochs']} "
             f"epochs a fit, {res['repeats']} interleaved repeats: time per epoch"]
    for r in res["rows"]:
        lines.append(f"  {r['optimizer']:<9} best {r['best_epoch_s'] * 1e9:8.1f} ns  median "
                     f"{r['median_epoch_s'] * 1e9:8.1f} ns  vs sgd {r['best_vs_sgd']:.2f}x "
                     f"(best) {r['median_vs_sgd']:.2f}x (median)")
    adam = next((r for r in res["rows"] if r["optimizer"] == "adam"), None)
    if adam:
        lines.append(f"  Adam / SGD: {adam['best_vs_sgd']:.2f}x; target <= 1.5x: "
                     f"{'met' if adam['best_vs_sgd'] <= 1.5 else 'NOT met'}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default 5)")
    p.add_argument("--epochs", type=int, default=50, help="digits epochs (default 50)")
    p.add_argument("--or-epochs", type=int, default=5000,
                   help="OR-gate epochs a fit (default 5000)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch.set_num_threads (default 1: on a small machine its OpenMP "
                        "threads otherwise contend with the others' and run several times "
                        "slower; 0: torch's default)")
    p.add_argument("--no-numpy", action="store_true", help="leave nnkit numpy out")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="limit every BLAS/OpenMP pool (threadpoolctl) to N threads for the "
                        "whole run (default 1; 0: the libraries' own)")
    p.add_argument("--skip-or", action="store_true", help="only the digits benchmark")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.json:
        from nnkit.cli import check_output_path
        check_output_path("--json", args.json)
    info = machine_info()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"machine: {info['cpu']}, {info['cores']} cores; " +
          ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("cpu", "cores")))
    try:
        import sklearn
        print(f"scikit-learn {sklearn.__version__}")
    except ImportError:
        pass
    if args.blas_threads:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # comes with scikit-learn
            print("threadpoolctl not installed: BLAS threads left as they are")
        else:
            threadpool_limits(args.blas_threads)
    t0 = time.perf_counter()
    digits = digits_benchmark(args.repeats, args.epochs, not args.no_torch, not args.no_numpy,
                              args.torch_threads)
    print(format_digits(digits))
    result = {"machine": info, "digits": digits}
    if not args.skip_or:
        orr = or_gate_benchmark(args.repeats, args.or_epochs)
        print(format_or(orr))
        result["or_gate"] = orr
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result["loadavg_1min"] = {"start": load0, "end": load1}
    print(f"load average {load0:.2f} at the start, {load1:.2f} at the end; took "
          f"{time.perf_counter() - t0:.1f} s" if load0 is not None else "")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=float)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
