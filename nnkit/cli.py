"""The ``nnkit`` command: info, train, gradcheck, bench, sweep."""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _layers(text):
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 2,2,1, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two sizes >= 1, got {text!r}")
    return sizes


def _add_model_args(p, default_layers="2,1"):
    p.add_argument("--dataset", default="or",
                   help="or, and, xor, moons, spirals, or a PATH.csv (default: or)")
    p.add_argument("--target-cols", type=int, default=1,
                   help="for a CSV: how many last columns are the target (default: 1)")
    p.add_argument("--layers", type=_layers, default=_layers(default_layers),
                   help=f"layer sizes, inputs first (default: {default_layers})")
    p.add_argument("--activation", default="sigmoid", help="hidden activation (default: sigmoid)")
    p.add_argument("--output-activation", default="sigmoid",
                   help="output activation (default: sigmoid)")
    p.add_argument("--loss", default="squared_error",
                   help="squared_error, mse or binary_crossentropy (default: squared_error)")
    p.add_argument("--backend", default=None,
                   help="numpy, numba, cupy or auto (default: NNKIT_BACKEND, else numpy)")
    p.add_argument("--dtype", default="float64", help="float32 or float64 (default: float64)")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")


def _build(args):
    import nnkit
    sizes = args.layers
    acts = [args.activation] * (len(sizes) - 2) + [args.output_activation]
    layers = [nnkit.Dense(a, b, act) for a, b, act in zip(sizes[:-1], sizes[1:], acts)]
    return nnkit.Network(layers, loss=args.loss, dtype=args.dtype, seed=args.seed,
                         backend=args.backend)


def _dataset(args):
    from . import datasets
    if args.dataset.endswith(".csv") or os.path.sep in args.dataset:
        data = np.loadtxt(args.dataset, delimiter=",", ndmin=2)
        k = args.target_cols
        if not 1 <= k < data.shape[1]:
            raise ValueError(f"--target-cols: expected 1..{data.shape[1] - 1}, got {k}")
        return data[:, :-k], data[:, -k:]
    return datasets.load_dataset(args.dataset, seed=args.seed)


def accuracy(Yhat, Y):
    """Fraction correct: threshold 0.5 for one output, argmax for several."""
    Y = np.asarray(Y).reshape(len(Yhat), -1)
    if Yhat.shape[1] == 1:
        return float(np.mean((Yhat[:, 0] > 0.5) == (Y[:, 0] > 0.5)))
    return float(np.mean(Yhat.argmax(1) == Y.argmax(1)))


def cmd_info(args):
    import nnkit
    from .backends import backend_names, backend_status, get_backend
    from .config import ENV_VAR, backend_name, resolve_auto
    print(f"nnkit {nnkit.__version__}, Python {sys.version.split()[0]}")
    for name in backend_names():
        ok, why = backend_status(name)
        if ok:
            be = get_backend(name)
            vers = ", ".join(f"{k} {v}" for k, v in be.versions().items())
            extra = "".join(f"; {line}" for line in be.info_lines())
            print(f"  {name:<6} usable    {vers}; device: {be.device()}{extra}")
        else:
            print(f"  {name:<6} unusable  {why}")
    env = os.environ.get(ENV_VAR)
    auto, reason = resolve_auto()
    print(f"{ENV_VAR}={env!r} -> {backend_name() if env != 'auto' else auto}")
    print(f"auto -> {auto} ({reason})")
    return 0


def cmd_train(args):
    X, Y = _dataset(args)
    net = _build(args)
    progress = False if args.quiet else None
    t0 = time.perf_counter()
    hist = net.fit(X, Y, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                   shuffle=args.batch_size is not None, lr_schedule=args.schedule,
                   progress=progress, validation_split=args.validation_split,
                   trace=args.trace)
    dt = time.perf_counter() - t0
    Yhat = net.predict(X)
    print(f"backend: {net.backend.name} ({net.backend.device()}), dtype: {net.dtype}")
    print(f"trained {len(hist.loss)} epochs in {dt:.3f} s ({dt / len(hist.loss) * 1e6:.2f} "
          f"us/epoch)")
    print(f"final loss: {net.evaluate(X, Y):.6g}  accuracy: {accuracy(Yhat, Y):.3f}")
    if hist.val_loss:
        print(f"final val_loss: {hist.val_loss[-1]:.6g}")
    if args.save:
        from .io import save
        save(net, args.save)
        print(f"saved to {args.save}")
    if args.plot:
        from .plot import cost_curve, decision_boundary
        fig = (decision_boundary(net, X, Y) if X.shape[1] == 2 and not args.plot_cost
               else cost_curve({"train": hist.loss}))
        fig.savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import gradcheck
    X, Y = _dataset(args)
    net = _build(args)
    errs = gradcheck(net, X, Y, per_layer=True)
    for i, (ew, eb) in enumerate(errs):
        print(f"layer {i + 1}: max relative error W {ew:.3e}  b {eb:.3e}")
    worst = max(max(e) for e in errs)
    print(f"max relative error: {worst:.3e} ({'ok' if worst < 1e-6 else 'FAILED'})")
    return 0 if worst < 1e-6 else 1


def _lr_range(text):
    """'0.01:50:64' -> 64 log-spaced rates; '0.1,1,5' -> those rates."""
    try:
        if ":" in text:
            lo, hi, k = text.split(":")
            return list(np.geomspace(float(lo), float(hi), int(k)))
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO:HI:COUNT or a comma list, got {text!r}") \
            from None


def cmd_sweep(args):
    import json

    from .sweep import sweep
    X, Y = _dataset(args)
    net = _build(args)
    t0 = time.perf_counter()
    res = sweep(net, X, Y, lr=args.lr, seed=list(range(args.seed, args.seed + args.seeds)),
                epochs=args.epochs,
                batch_size=args.batch_size, shuffle=args.batch_size is not None)
    dt = time.perf_counter() - t0
    n = len(res.configs)
    print(f"backend: {net.backend.name}; {n} configurations x {args.epochs} epochs in "
          f"{dt:.2f} s ({n * args.epochs / dt / 1e6:.3g} M net-epochs/s); "
          f"{int(res.diverged.sum())} diverged")
    for rank, i in enumerate(res.best(min(args.top, n))):
        c = res.configs[i]
        print(f"  #{rank + 1}: lr {c['lr']:.4g}  seed {c['seed']}  final loss "
              f"{res.final_loss[i]:.4g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"configs": res.configs, "final_loss": res.final_loss.tolist(),
                       "diverged_epoch": res.diverged_epoch.tolist()}, fh, indent=1)
    if args.plot:
        from .plot import lr_comparison
        lr_comparison(res).savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="nnkit", description="Fully connected networks trained by gradient descent on "
        "NumPy, Numba or CuPy (NNKIT_BACKEND picks the default backend).")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("info", help="backends: usable or why not, versions, device")

    p = sub.add_parser("train", help="train a network on a dataset")
    _add_model_args(p)
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=None, help="default: full batch")
    p.add_argument("--schedule", default=None,
                   help="constant, step, exponential or inverse_time")
    p.add_argument("--validation-split", type=float, default=None)
    p.add_argument("--save", default=None, help="write the trained network (.npz)")
    p.add_argument("--plot", default=None, help="write a PNG (decision boundary for 2-D data)")
    p.add_argument("--plot-cost", action="store_true", help="plot the cost curve instead")
    p.add_argument("--trace", type=int, default=None, help="print the first N updates")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("gradcheck", help="compare gradients with finite differences")
    _add_model_args(p, default_layers="2,2,1")

    p = sub.add_parser("sweep", help="train many learning rates x seeds in one call")
    _add_model_args(p, default_layers="2,2,1")
    p.add_argument("--lr", type=_lr_range, default=_lr_range("0.01:50:64"),
                   help="LO:HI:COUNT log-spaced, or a comma list (default: 0.01:50:64)")
    p.add_argument("--seeds", type=int, default=4,
                   help="how many seeds: --seed .. --seed+N-1 (default: 4)")
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--top", type=int, default=5, help="how many best configurations to print")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="write the learning-rate picture (PNG)")

    from .bench import add_bench_parser
    add_bench_parser(sub)

    args = parser.parse_args(argv)
    handler = {"info": cmd_info, "train": cmd_train, "gradcheck": cmd_gradcheck,
               "sweep": cmd_sweep}.get(
        args.command) or args.handler
    try:
        return handler(args)
    except (ValueError, TypeError) as exc:
        print(f"nnkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .errors import BackendUnavailableError, TrainingDiverged
        if isinstance(exc, (BackendUnavailableError, TrainingDiverged)):
            print(f"nnkit {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
