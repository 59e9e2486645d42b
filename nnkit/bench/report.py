"""The ``nnkit bench`` command: its arguments, the table it prints and the JSON it writes."""
from __future__ import annotations

import json
import time

from .runner import run_bench
from .workloads import QUICK, WORKLOADS


def format_table(result):
    """The step rows of ``run_bench``'s result as an aligned text table."""
    head = ("workload", "backend", "dtype", "path", "step", "samples/s", "GFLOP/s", "%peak",
            "%gemm", "vs numpy", "epoch", "parity", "alloc/step", "first call", "accuracy")
    lines = [head]
    for r in result["rows"]:
        w = WORKLOADS[r["workload"]]
        if "note" in r:
            lines.append((r["workload"], r["backend"], r["dtype"], "", r["note"])
                         + ("",) * (len(head) - 5))
            continue
        step = r.get("step_s")
        gflops = r["flops"] / step / 1e9 if step and "flops" in r else None
        lines.append((
            r["workload"], r["backend"], r["dtype"], r.get("path", "-"),
            _us(step), f"{w.batch / step:.3g}" if step else "",
            f"{gflops:.3g}" if gflops else "",
            _percent(r["flops"] / step / r["peak_flops"], ".1f")
            if gflops and "peak_flops" in r else "",
            _percent(r["gemm_s"] / step, ".0f", over="-") if gflops else "",
            f"{r['speedup_vs_numpy']:.2f}x" if "speedup_vs_numpy" in r else "",
            _us(r.get("epoch_s")),
            f"{r['parity']:.1e}" if "parity" in r else "",
            f"{r['alloc_bytes_per_step']:.0f} B" if "alloc_bytes_per_step" in r else "",
            _us(r.get("first_call_s")),
            f"{r['accuracy']:.3f}" if "accuracy" in r else ""))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(wd) for c, wd in zip(line, widths)).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(out)


def _percent(fraction, fmt, over="noisy"):
    """A share of a bound in percent, never over 100 %: a cell that would be says ``over``
    instead of a number."""
    return over if fraction > 1.0 else f"{100 * fraction:{fmt}}"


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
    p.add_argument("--dtype", default=None, choices=("float32", "float64", "both"),
                   help="(default: float32)")
    p.add_argument("--peers", default="",
                   help="comma list of torch,jax,sklearn (optional packages; sklearn: "
                        "MLPClassifier, classification workloads only)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--scaling", action="store_true",
                   help="instead: step time and GFLOP/s of a 2-layer net against hidden width "
                        "(2..2048) and batch (1..4096), the crossovers and the GEMM roofline "
                        "(--quick: fewer points)")
    p.add_argument("--plot", default=None, help="with --scaling: write the picture (PNG)")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args):
    import nnkit
    from ..cli import check_plotting, check_output_path
    if args.json:
        check_output_path("--json", args.json)  # before the minutes of measuring
    if args.plot:
        if not args.scaling:
            raise ValueError("--plot: only with --scaling")
        check_output_path("--plot", args.plot)
        check_plotting("--plot")
    backends = args.backends.split(",") if args.backends else nnkit.available_backends()
    for name in backends:
        try:
            nnkit.get_backend(name)  # clear error for unknown/unusable names
        except (ValueError, nnkit.BackendUnavailableError) as exc:
            unusable = isinstance(exc, nnkit.BackendUnavailableError)
            raise (nnkit.BackendUnavailableError if unusable else ValueError)(
                f"--backends: {exc}") from None
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in ("torch", "jax", "sklearn"):
            raise ValueError(f"--peers: expected names from torch, jax, sklearn, got {p!r}")
    workloads = (args.workloads.split(",") if args.workloads
                 else list(QUICK if args.quick else WORKLOADS))
    for wname in workloads:
        if wname not in WORKLOADS:
            raise ValueError(f"--workloads: expected names from {tuple(WORKLOADS)}, got {wname!r}")
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype or "float32"]
    if args.scaling:
        if args.workloads:
            raise ValueError("--workloads: --scaling measures its own 2-layer networks")
        if args.dtype == "both":
            raise ValueError("--dtype: --scaling measures one dtype (float32 or float64)")
        return _cmd_scaling(args, backends, args.dtype or "float32", peers)
    print(f"nnkit bench: backends {', '.join(backends)}; workloads {', '.join(workloads)}; "
          f"{', '.join(dtypes)}")
    t0 = time.perf_counter()
    result = run_bench(workloads, backends, dtypes, peers, quick=args.quick)
    info = result["machine"]
    print(f"machine: {info['cpu']}, {info['cores']} cores; " +
          ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("cpu", "cores")))
    for p in result.get("gemm_peaks", []):
        print(f"GEMM peak on {p['backend']} {p['dtype']}: {p['best_flops'] / 1e9:.1f} GFLOP/s "
              f"(best of {p['measurements']} measurements at the start, middle and end; "
              f"lowest {p['min_flops'] / 1e9:.1f})")
    print("path: the execution path the backend takes for the step (backend.plan); "
          "%peak: GFLOP/s over the GEMM peak above; "
          "%gemm: time of the step's matmuls alone (same shapes, same BLAS, in "
          "backpropagation's order) / step time "
          "('-': the BLAS calls alone take longer than the whole step, which then makes "
          "none: a fused kernel); 'noisy': a figure over 100 %, from a busy machine; "
          "first call: the first step in this process (JIT compile or cache load), "
          "excluded from the timings")
    clf = [w for w in workloads if WORKLOADS[w].classification]
    if clf:
        print("classification workloads (" + ", ".join(
            f"{w}: {_describe(WORKLOADS[w], args.quick)}" for w in clf) + "): step and "
              "epoch are the mean of a whole shuffled mini-batch training run (best of the "
              "runs), first call its first epoch; accuracy: on the held-out test set after "
              "that training; parity: 20-50 full-batch steps on one batch vs numpy")
    print(format_table(result))
    for r in result.get("sweeps", []):
        print(f"sweep {r['sweep']} {r['nets']} nets x {r['epochs']} epochs {r['dtype']}: "
              f"{r['backend']:<15} {_rate(r['net_epochs_per_s'])} net-epochs/s"
              f"  path {r.get('path', '-')}")
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


def _describe(w, quick):
    epochs = max(1, w.quick_epochs if quick else w.epochs)
    data = "sklearn digits" if w.dataset == "digits" else "synthetic blobs"
    sizes = "-".join(map(str, w.sizes))
    return (f"{sizes} {w.hidden}->{w.output}, {w.loss}, {w.optimizer} lr {w.lr:g}, batch "
            f"{w.batch}, {epochs} epochs, {data}")


def _cmd_scaling(args, backends, dtype, peers):
    """``nnkit bench --scaling``: measure, print the tables and crossovers, write
    ``--json``/``--plot``."""
    from .scaling import format_scaling, run_scaling
    print(f"nnkit bench --scaling: backends {', '.join(backends)}"
          + (f"; peers {', '.join(peers)}" if peers else "") + f"; {dtype}"
          + ("; quick grid" if args.quick else ""))
    result = run_scaling(backends, dtype, peers, quick=args.quick)
    info = result["machine"]
    load = result["loadavg_1min"]
    print(f"machine: {info['cpu']}, {info['cores']} cores; " +
          ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("cpu", "cores")) +
          (f"; load average {load['start']:.2f} at the start, {load['end']:.2f} at the end"
           if load["start"] is not None else ""))
    print("step: one training step from Python (median); GF/s: the step's matmul FLOPs "
          "(forward, dW, dX, update) / step time; path: backend.plan's path for the step; "
          "'<backend> <path>' columns: that path forced on the same data")
    print(format_scaling(result))
    print(f"took {result['took_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=float)
        print(f"results written to {args.json}")
    if args.plot:
        from ..plot import scaling
        scaling(result).savefig(args.plot, dpi=110)
        print(f"plot written to {args.plot}")
    return 0
