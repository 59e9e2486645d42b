"""The ``nnkit`` command: info, train, gradcheck, bench, sweep.

Every error is one line ``nnkit <command>: error: ...`` on stderr: exit code 2 for bad
arguments, files or backends, 1 when training diverges, 130 when interrupted. Output
paths and optional packages are checked before any training starts.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

import numpy as np

from .backends import ACTIVATIONS, LOSSES, BackendUnavailableError
from .backends import _math
from .errors import TrainingDiverged, TrainingInterrupted
from .schedules import SCHEDULES
from .validation import DTYPES, MAX_EPOCHS  # MAX_EPOCHS: 10**9, as for fit and sweep

DEFAULT_DTYPE = "float32"  # the same default as nnkit.Network
# The output layer may also be softmax (with categorical_crossentropy only).
OUTPUT_ACTIVATIONS = getattr(_math, "LAYER_ACTIVATIONS", ACTIVATIONS + ("softmax",))
try:  # the names fit(optimizer=...) accepts
    from .optim import OPTIMIZERS as _NAMED
    OPTIMIZERS = tuple(_NAMED)
except ImportError:  # pragma: no cover
    OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
# --lr when not given: 1.0 for the SGD family (the seed tutorials' rate), Adam's usual 1e-3.
DEFAULT_LR = {"adam": 1e-3}


class _Parser(argparse.ArgumentParser):
    """argparse, except that an error is one line on stderr: ``prog: error: message``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(text):
    return " ".join(str(text).split())


def _int_range(lo, hi=None, what="an integer"):
    """An argparse type: an int in lo..hi, with a message that says so."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"from {lo} to {hi:,}"
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text}")
        return value
    return parse


_epochs = _int_range(1, MAX_EPOCHS, "a number of epochs")


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
                   help="or, and, xor, moons, spirals, digits (scikit-learn's 8x8 digits: "
                        "64 inputs, 10 one-hot outputs, a fixed 25%% test split; needs "
                        "scikit-learn), or a PATH.csv (comma-separated numbers, one sample "
                        "per line, an optional header line; default: or)")
    p.add_argument("--target-cols", type=_int_range(1), default=1,
                   help="for a CSV: how many last columns are the target (default: 1)")
    p.add_argument("--layers", type=_layers, default=_layers(default_layers),
                   help=f"layer sizes, inputs first (default: {default_layers})")
    p.add_argument("--activation", default="sigmoid", choices=ACTIVATIONS,
                   help="hidden activation (default: sigmoid)")
    p.add_argument("--output-activation", default=None, choices=OUTPUT_ACTIVATIONS,
                   help="output activation (default: softmax with --loss "
                        "categorical_crossentropy, else sigmoid)")
    p.add_argument("--loss", default="squared_error", choices=LOSSES,
                   help="(default: squared_error)")
    p.add_argument("--backend", default=None,
                   help="numpy, numba, cupy or auto (default: NNKIT_BACKEND, else numpy)")
    p.add_argument("--dtype", default=DEFAULT_DTYPE, choices=DTYPES,
                   help=f"(default: {DEFAULT_DTYPE}, as in the Python API)")
    p.add_argument("--seed", type=_int_range(0), default=0,
                   help="initialisation seed (default: 0)")


# "Selected by NNKIT_BACKEND=cupy (or auto) or backend='cupy'." ends the backends'
# messages; the CLI says instead which option or variable selected the backend.
_SELECTED_BY = re.compile(r"\s*Selected by .*?backend='[\w-]+'\.")


def _backend(args):
    """The Backend that --backend (else NNKIT_BACKEND, else numpy) names; an error says
    which of the two asked for it."""
    from .config import ENV_VAR, get_backend
    try:
        return get_backend(args.backend)
    except (ValueError, BackendUnavailableError) as exc:
        source = ("--backend" if args.backend is not None
                  else f"{ENV_VAR}={os.environ.get(ENV_VAR, '').strip()}")
        msg = _SELECTED_BY.sub("", str(exc)).removeprefix("backend: ")
        cls = BackendUnavailableError if isinstance(exc, BackendUnavailableError) else ValueError
        raise cls(f"{source}: {msg}") from None


def _build(args, X=None, Y=None):
    """The network the arguments describe; with data, check that --layers fits it."""
    import nnkit
    sizes = args.layers
    if X is not None and (sizes[0] != X.shape[1] or sizes[-1] != Y.shape[1]):
        raise ValueError(
            f"--layers {','.join(map(str, sizes))}: the data set has {X.shape[1]} input "
            f"column(s) and {Y.shape[1]} target column(s), so the first size must be "
            f"{X.shape[1]} and the last {Y.shape[1]}")
    backend = _backend(args)
    acts = [args.activation] * (len(sizes) - 2) + [_output_activation(args)]
    layers = [nnkit.Dense(a, b, act) for a, b, act in zip(sizes[:-1], sizes[1:], acts)]
    return nnkit.Network(layers, loss=args.loss, dtype=args.dtype, seed=args.seed,
                         backend=backend)


def _output_activation(args):
    if args.output_activation is not None:
        return args.output_activation
    return "softmax" if args.loss == "categorical_crossentropy" else "sigmoid"


def _dataset(args, split=False):
    """(X, Y) of --dataset: a built-in name or a CSV file; with ``split``,
    (X, Y, X_test, Y_test), the test parts None for a data set without a test set."""
    from . import datasets
    try:
        return datasets.load_dataset(args.dataset, seed=args.seed,
                                     target_cols=args.target_cols, split=split)
    except ImportError as exc:  # digits without scikit-learn
        raise ValueError(f"--dataset {args.dataset}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"--dataset: cannot read {args.dataset!r}: "
                         f"{exc.strerror or exc}") from None
    except ValueError as exc:
        msg = str(exc)
        for name, option in (("dataset:", "--dataset:"), ("target_cols:", "--target-cols:")):
            if msg.startswith(name):
                raise ValueError(option + msg[len(name):]) from None
        raise ValueError(f"--dataset: {msg}") from None


def _nonnegative(text):
    """A finite number >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < np.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _fraction(text):
    """A number strictly between 0 and 1 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def check_output_path(option, path):
    """Raise ValueError unless ``path`` can be written: not a folder, in an existing
    folder this process can create files in. Run before training, not after."""
    if not path:
        raise ValueError(f"{option}: expected a file path, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{option}: {path!r} is a folder; expected a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"{option}: cannot write {path!r}: {folder!r} {what}")
    try:  # os.access is not enough: root, read-only file systems, ACLs
        with tempfile.TemporaryFile(dir=folder, prefix=".nnkit-check-"):
            pass
    except OSError as exc:
        raise ValueError(f"{option}: cannot write in the folder {folder!r}: "
                         f"{exc.strerror or exc}") from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{option}: {path!r} exists and is not writable")


def check_plotting(option):
    """Raise ValueError now, not after training, when matplotlib cannot be imported."""
    from .plot import pyplot
    try:
        pyplot()
    except ImportError as exc:
        raise ValueError(f"{option}: {exc}") from None


def accuracy(Yhat, Y):
    """Fraction correct: threshold 0.5 for one output, argmax for several."""
    Y = np.asarray(Y).reshape(len(Yhat), -1)
    if Yhat.shape[1] == 1:
        return float(np.mean((Yhat[:, 0] > 0.5) == (Y[:, 0] > 0.5)))
    return float(np.mean(Yhat.argmax(1) == Y.argmax(1)))


def cmd_info(args):
    import nnkit
    from .backends import backend_names, backend_status, get_backend
    from .config import DEFAULT, ENV_VAR, resolve_auto
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
    raw = os.environ.get(ENV_VAR)
    env = (raw or "").strip()
    auto, reason = resolve_auto()
    problem = None
    if env and env != "auto":
        if env not in backend_names():
            problem = f"is not a known backend (expected one of {backend_names() + ['auto']})"
        else:
            ok, why = backend_status(env)
            if not ok:
                problem = f"names a backend that is unusable here ({why.split(';')[0]})"
    target = auto if env == "auto" else env or DEFAULT
    print(f"{ENV_VAR}={raw!r} -> {'nothing usable (see the warning)' if problem else target}")
    print(f"auto -> {auto} ({reason})")
    if problem:
        print(f"nnkit info: warning: {ENV_VAR}={raw!r} {problem}; training without --backend "
              f"fails until it is changed or unset", file=sys.stderr)
    return 0


def _fit_options(args):
    """The optimizer and L2 arguments of ``fit``, only where they differ from plain SGD
    without L2 (so that a run without them takes exactly the path it always took)."""
    opts = {}
    if args.optimizer != "sgd":
        opts["optimizer"] = args.optimizer
    if args.l2:
        opts["l2"] = args.l2
    return opts


def _lr(args):
    return args.lr if args.lr is not None else DEFAULT_LR.get(args.optimizer, 1.0)


def _warm_up(net, X, Y, args):
    """Seconds to compile (or load from cache) the kernels ``fit`` will use: one epoch of a
    copy of ``net`` on the path the real run is planned to take, so the µs/epoch printed
    afterwards are training alone."""
    be = net.backend
    rows = len(X) - (int(round(len(X) * args.validation_split)) if args.validation_split else 0)
    batch = None if args.batch_size is None or args.batch_size >= rows else args.batch_size
    path = be.plan("epochs", net.spec, rows, batch, 1, args.epochs)
    copy = net.to(be)
    t0 = time.perf_counter()
    with be.use_path(path):
        try:
            copy.fit(X, Y, epochs=1, lr=_lr(args), batch_size=args.batch_size,
                     progress=False, validation_split=args.validation_split,
                     **_fit_options(args))
        except (TrainingDiverged, ValueError):
            pass  # the real run reports it
    return time.perf_counter() - t0


def cmd_train(args):
    if args.save:
        check_output_path("--save", args.save)
    if args.plot:
        check_output_path("--plot", args.plot)
        check_plotting("--plot")
    X, Y, X_test, Y_test = _dataset(args, split=True)
    net = _build(args, X, Y)
    progress = False if args.quiet else None
    compile_s = _warm_up(net, X, Y, args)
    t0 = time.perf_counter()
    try:
        hist = net.fit(X, Y, epochs=args.epochs, lr=_lr(args), batch_size=args.batch_size,
                       shuffle=args.batch_size is not None, lr_schedule=args.schedule,
                       progress=progress, validation_split=args.validation_split,
                       trace=args.trace, **_fit_options(args))
    except TrainingInterrupted as exc:
        print(f"nnkit train: interrupted at epoch {exc.epoch}", file=sys.stderr)
        if args.save:
            from .io import save
            save(net, args.save)
            print(f"nnkit train: saved the model reached (epoch {exc.epoch}) to {args.save}",
                  file=sys.stderr)
        return 130
    dt = time.perf_counter() - t0
    Yhat = net.predict(X)
    epochs = len(hist.loss)
    print(f"backend: {net.backend.name} ({net.backend.device()}), dtype: {net.dtype}, "
          f"optimizer: {args.optimizer}, lr: {_lr(args):g}"
          + (f", l2: {args.l2:g}" if args.l2 else ""))
    print(f"trained {epochs} epochs in {dt:.3f} s "
          f"({dt / max(epochs, 1) * 1e6:.2f} us/epoch; compiling or loading the kernels "
          f"took {compile_s:.3f} s before that)")
    print(f"final loss: {net.evaluate(X, Y):.6g}  accuracy: {accuracy(Yhat, Y):.3f}")
    if hist.val_loss:
        print(f"final val_loss: {hist.val_loss[-1]:.6g}")
    if X_test is not None:
        print(f"test loss: {net.evaluate(X_test, Y_test):.6g}  "
              f"test accuracy: {accuracy(net.predict(X_test), Y_test):.3f}  "
              f"({len(X_test)} held-out samples)")
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
    net = _build(args, X, Y)
    res = gradcheck(net, X, Y)
    for i, (ew, eb) in enumerate(res.per_layer):
        print(f"layer {i + 1}: max relative error W {ew:.3e}  b {eb:.3e}")
    if res.n_at_kink:
        print(res.summary())
    worst = float(res)
    print(f"max relative error: {worst:.3e} ({'ok' if worst < 1e-6 else 'FAILED'})")
    return 0 if worst < 1e-6 else 1


def _lr_range(text):
    """'0.01:50:64' -> 64 log-spaced rates; '0.1,1,5' -> those rates."""
    try:
        if ":" in text:
            lo, hi, k = text.split(":")
            lo, hi, k = float(lo), float(hi), int(k)
            if not (0 < lo < np.inf and 0 < hi < np.inf and k >= 1):
                raise ValueError
            return list(np.geomspace(lo, hi, k))
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO:HI:COUNT (rates > 0, COUNT >= 1) or a comma list, got {text!r}") \
            from None


def cmd_sweep(args):
    import json

    from .sweep import BLOWUP_FACTOR, sweep
    from .sweep_exec import SweepChunkError
    if args.json:
        check_output_path("--json", args.json)
    if args.plot:
        check_output_path("--plot", args.plot)
        check_plotting("--plot")
    if args.workers is not None and args.scheduler is not None:
        raise ValueError("--workers, --scheduler: give one (a local pool of N workers, or "
                         "an existing Dask scheduler)")
    if args.min_epochs is not None and args.halving is None:
        raise ValueError("--min-epochs: applies to successive halving only; pass --halving "
                         "ETA too")
    X, Y = _dataset(args)
    net = _build(args, X, Y)
    # Only the final losses are printed or written: keep the curves only for --plot.
    record = args.record_every or (None if args.plot else "final")
    with _sweep_executor(args) as (executor, where):
        t0 = time.perf_counter()
        try:
            res = sweep(net, X, Y, lr=args.lr,
                        seed=list(range(args.seed, args.seed + args.seeds)),
                        epochs=args.epochs, batch_size=args.batch_size,
                        shuffle=args.batch_size is not None, chunk_size=args.chunk_size,
                        executor=executor, checkpoint=args.checkpoint, halving=args.halving,
                        min_epochs=args.min_epochs, record_every=record,
                        progress=False if args.quiet else None, **_fit_options(args))
        except SweepChunkError as exc:
            print(f"nnkit sweep: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        dt = max(time.perf_counter() - t0, 1e-9)
    n = len(res.configs)
    print(f"backend: {net.backend.name}{where}; {n} configurations x {args.epochs} epochs "
          f"in {dt:.2f} s ({res.net_epochs / dt / 1e6:.3g} M net-epochs/s); "
          f"{int(res.diverged.sum())} diverged, {int(res.blown_up.sum())} blown up (final "
          f"loss > {BLOWUP_FACTOR:g}x the first)")
    if args.halving:
        full = n * args.epochs
        print(f"successive halving (eta {args.halving}): {int((~res.pruned).sum())} trained "
              f"to the end, {res.net_epochs:,} net-epochs ({res.net_epochs / full:.1%} of "
              f"the full sweep)")
    if args.checkpoint:
        print(f"checkpoint {args.checkpoint}: {res.chunks_reused} chunk(s) reused, "
              f"{res.chunks_run} trained")
    for rank, i in enumerate(res.best(min(args.top, n))):
        c = res.configs[i]
        print(f"  #{rank + 1}: lr {c['lr']:.4g}  seed {c['seed']}  final loss "
              f"{res.final_loss[i]:.4g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"configs": res.configs, "final_loss": res.final_loss.tolist(),
                       "diverged_epoch": res.diverged_epoch.tolist(),
                       "pruned_epoch": res.pruned_epoch.tolist(),
                       "blown_up": res.blown_up.tolist()}, fh, indent=1)
    if args.plot:
        from .plot import lr_comparison
        lr_comparison(res).savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}")
    return 0


class _sweep_executor:
    """``with _sweep_executor(args) as (executor, where)``: None for --workers/--scheduler
    not given; a Dask client of an existing scheduler (--scheduler) or of a local cluster of
    N one-thread worker processes (--workers N; a spawn process pool without dask)."""

    def __init__(self, args):
        self.args = args
        self.close = []

    def __enter__(self):
        args = self.args
        if args.scheduler is None and args.workers is None:
            return None, ""
        try:
            import distributed
        except ImportError:
            if args.scheduler is not None:
                raise ValueError("--scheduler: needs Dask: pip install 'nnkit[dask]'") \
                    from None
            import concurrent.futures
            import multiprocessing
            pool = concurrent.futures.ProcessPoolExecutor(
                args.workers, mp_context=multiprocessing.get_context("spawn"))
            self.close.append(pool.shutdown)
            return pool, f", {args.workers} local worker process(es)"
        if args.scheduler is not None:
            try:
                client = distributed.Client(args.scheduler, timeout=10)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ValueError(f"--scheduler: cannot connect to {args.scheduler!r}: "
                                 f"{_one_line(exc)}") from None
            self.close.append(client.close)
            n = len(client.scheduler_info().get("workers", {}))
            return client, f", Dask scheduler {args.scheduler} ({n} workers)"
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
        self.close.append(cluster.close)
        client = distributed.Client(cluster)
        self.close.append(client.close)
        return client, f", local Dask cluster of {args.workers} worker(s)"

    def __exit__(self, *exc):
        for close in reversed(self.close):
            close()
        return False


def _add_optimizer_args(p):
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                   help="update rule, as torch.optim's: sgd, momentum (SGD with momentum "
                        "0.9), nesterov (the same, Nesterov's form) or adam (default: sgd)")
    p.add_argument("--l2", type=_nonnegative, default=0.0,
                   help="L2 penalty: adds l2/2 * sum of squared weights to the loss "
                        "(torch's weight_decay; biases excluded; default: 0)")


def _parser():
    from . import __version__
    from .bench import add_bench_parser
    parser = _Parser(
        prog="nnkit", description="Fully connected networks trained by gradient descent on "
        "NumPy, Numba or CuPy (NNKIT_BACKEND picks the default backend).")
    parser.add_argument("--version", action="version", version=f"nnkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("info", help="backends: usable or why not, versions, device")

    p = sub.add_parser("train", help="train a network on a dataset")
    _add_model_args(p)
    p.add_argument("--epochs", type=_epochs, default=5000,
                   help=f"1 to {MAX_EPOCHS:,} (default: 5000)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 0.001 with --optimizer adam, else 1.0)")
    _add_optimizer_args(p)
    p.add_argument("--batch-size", type=_int_range(1), default=None,
                   help="default: full batch")
    p.add_argument("--schedule", default=None, choices=tuple(SCHEDULES),
                   help="(default: constant)")
    p.add_argument("--validation-split", type=_fraction, default=None,
                   help="hold out this fraction of the data (the last samples), in (0, 1)")
    p.add_argument("--save", default=None, help="write the trained network (.npz)")
    p.add_argument("--plot", default=None, help="write a PNG (decision boundary for 2-D data)")
    p.add_argument("--plot-cost", action="store_true", help="plot the cost curve instead")
    p.add_argument("--trace", type=_int_range(1), default=None,
                   help="print the first N updates")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("gradcheck", help="compare gradients with finite differences")
    _add_model_args(p, default_layers="2,2,1")

    p = sub.add_parser("sweep", help="train many learning rates x seeds in one call")
    _add_model_args(p, default_layers="2,2,1")
    p.add_argument("--lr", type=_lr_range, default=_lr_range("0.01:50:64"),
                   help="LO:HI:COUNT log-spaced, or a comma list (default: 0.01:50:64)")
    p.add_argument("--seeds", type=_int_range(1), default=4,
                   help="how many seeds: --seed .. --seed+N-1 (default: 4)")
    p.add_argument("--epochs", type=_epochs, default=5000,
                   help=f"1 to {MAX_EPOCHS:,} (default: 5000)")
    p.add_argument("--batch-size", type=_int_range(1), default=None)
    _add_optimizer_args(p)
    p.add_argument("--top", type=_int_range(1), default=5,
                   help="how many best configurations to print")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None, help="write the learning-rate picture (PNG)")
    p.add_argument("--workers", type=_int_range(1), default=None, metavar="N",
                   help="train the chunks on N local worker processes (a local Dask cluster, "
                        "or a process pool without dask)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="train the chunks on an existing Dask cluster (tcp://host:8786)")
    p.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="save each finished chunk in DIR; a rerun trains only the rest")
    p.add_argument("--halving", type=_int_range(2), default=None, metavar="ETA",
                   help="successive halving: keep the best 1/ETA at each rung")
    p.add_argument("--min-epochs", type=_epochs, default=None, metavar="N",
                   help="epochs of the first halving rung (default: epochs // ETA**2)")
    p.add_argument("--record-every", type=_int_range(1), default=None, metavar="K",
                   help="keep every K-th epoch's loss (default: the final loss only, every "
                        "epoch with --plot)")
    p.add_argument("--chunk-size", type=_int_range(1), default=None, metavar="N",
                   help="configurations per chunk (default: 1/16 of them, at least 8,192)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    add_bench_parser(sub)
    for p in sub.choices.values():
        p.set_defaults(parser=p)  # so that main reports stray arguments as the command's
    return parser


# The API's argument names in its messages, as the CLI options that set them.
_OPTIONS = {"lr": "--lr", "epochs": "--epochs", "batch_size": "--batch-size",
            "validation_split": "--validation-split", "seed": "--seed",
            "lr_schedule": "--schedule", "dtype": "--dtype", "loss": "--loss",
            "trace": "--trace", "chunk_size": "--chunk-size", "optimizer": "--optimizer",
            "l2": "--l2", "halving": "--halving"}


def _describe(exc):
    """One line for an expected error; an OSError names its file; a message about an API
    argument names the option instead."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    line = _one_line(exc)
    name, sep, rest = line.partition(": ")
    return f"{_OPTIONS[name]}: {rest}" if sep and name in _OPTIONS else line


def main(argv=None):
    """Run the ``nnkit`` command line; returns the exit code (0 ok, 1 training failed,
    2 bad usage or input, 130 interrupted)."""
    try:
        args, extra = _parser().parse_known_args(argv)
        if extra:
            args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a one-line argparse error
        return exc.code if isinstance(exc.code, int) else 0
    prog = f"nnkit {args.command}"
    handler = {"info": cmd_info, "train": cmd_train, "gradcheck": cmd_gradcheck,
               "sweep": cmd_sweep}.get(args.command) or args.handler
    try:
        return handler(args)
    except TrainingDiverged as exc:
        print(f"{prog}: error: {_describe(exc)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, BackendUnavailableError) as exc:
        print(f"{prog}: error: {_describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        where = f" at epoch {exc.epoch}" if isinstance(exc, TrainingInterrupted) else ""
        print(f"{prog}: interrupted{where}", file=sys.stderr)
        return 130
