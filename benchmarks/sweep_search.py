"""Issue 15's benchmark: a 5-fold grid search over 16 learning rates x 4 seeds of a
64-32-10 relu classifier on the digits (plain SGD, batch 64, shuffled, 30 epochs),
three ways:

- ``SweepSearchCV(NNKitClassifier(backend=B))``: each fold's 64 configurations in one
  ``nnkit.sweep`` call;
- ``GridSearchCV(NNKitClassifier(backend=B), n_jobs=2)``: one fit per candidate and fold;
- ``GridSearchCV(MLPClassifier(solver="sgd", momentum=0, alpha=0, ...), n_jobs=2)`` with
  the same settings (no early stopping, no stopping on the training loss).

    python benchmarks/sweep_search.py [--backend numba] [--json PATH] [--quick]

Prints the wall time of each search, the ratios, and whether their best_params_ agree
(the two NNKit searches must: same networks; MLPClassifier initialises its weights
differently, so its best candidate may differ). Each contender runs once untimed on a
small grid first (numba compiles, process pools start).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np


def _searches(args, grid_lrs, seeds):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier

    from nnkit.sklearn import NNKitClassifier, SweepSearchCV

    cv = StratifiedKFold(args.folds)
    nn = NNKitClassifier(hidden_layer_sizes=(32,), activation="relu", optimizer="sgd",
                         batch_size=args.batch_size, max_iter=args.epochs, shuffle=True,
                         backend=args.backend, dtype=args.dtype)
    grid = {"lr": list(grid_lrs), "random_state": list(seeds)}
    mlp = MLPClassifier(hidden_layer_sizes=(32,), activation="relu", solver="sgd",
                        momentum=0.0, nesterovs_momentum=False, alpha=0.0,
                        learning_rate="constant", batch_size=args.batch_size,
                        max_iter=args.epochs, shuffle=True, tol=0.0,
                        n_iter_no_change=args.epochs + 1, early_stopping=False)
    mlp_grid = {"learning_rate_init": list(grid_lrs), "random_state": list(seeds)}
    return {
        "SweepSearchCV(nnkit)": lambda: SweepSearchCV(nn, grid, cv=cv),
        "GridSearchCV(nnkit, n_jobs=2)": lambda: GridSearchCV(nn, grid, cv=cv,
                                                              n_jobs=args.n_jobs),
        "GridSearchCV(MLPClassifier, n_jobs=2)": lambda: GridSearchCV(mlp, mlp_grid, cv=cv,
                                                                      n_jobs=args.n_jobs),
    }


def _best(search):
    p = dict(search.best_params_)
    if "learning_rate_init" in p:
        p["lr"] = p.pop("learning_rate_init")
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numba", help="nnkit backend (default numba)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="data and network dtype, for every contender (default float32)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--lrs", type=int, default=16, help="learning rates, log-spaced")
    ap.add_argument("--lr-min", type=float, default=0.01)
    ap.add_argument("--lr-max", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--n-jobs", type=int, default=2, help="GridSearchCV's n_jobs")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs each (the best counts)")
    ap.add_argument("--skip", action="append", default=[],
                    help="skip contenders whose name contains this (e.g. MLP)")
    ap.add_argument("--quick", action="store_true",
                    help="4 rates x 2 seeds, 3 folds, 5 epochs: a smoke test")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.lrs, args.seeds, args.folds, args.epochs = 4, 2, 3, 5

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning

    import nnkit

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(args.dtype)
    lrs = np.geomspace(args.lr_min, args.lr_max, args.lrs).tolist()
    seeds = list(range(args.seeds))
    searches = {k: v for k, v in _searches(args, lrs, seeds).items()
                if not any(s in k for s in args.skip)}
    warm = _searches(argparse.Namespace(**{**vars(args), "epochs": 2, "folds": 2}),
                     lrs[:2], seeds[:1])
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # large rates overflow
        warnings.filterwarnings("ignore", "One or more of the test scores")
        warnings.filterwarnings("ignore", ".*fits failed", )
        for name, make in searches.items():
            warm[name]().fit(X, y)  # untimed: compiles, starts worker processes
            best_t, search = np.inf, None
            for _ in range(args.repeat):
                s = make()
                t0 = time.perf_counter()
                s.fit(X, y)
                dt = time.perf_counter() - t0
                if dt < best_t:
                    best_t, search = dt, s
            results[name] = {"seconds": best_t, "best_params": _best(search),
                             "best_score": float(search.best_score_)}
            print(f"{name:40s} {best_t:8.2f} s  best {results[name]['best_params']} "
                  f"score {search.best_score_:.4f}", flush=True)

    sweep = results.get("SweepSearchCV(nnkit)")
    ratios = {}
    if sweep is not None:
        for name, r in results.items():
            if name != "SweepSearchCV(nnkit)":
                ratios[name] = r["seconds"] / sweep["seconds"]
                same = r["best_params"] == sweep["best_params"]
                r["same_best_params_as_sweep"] = same
                print(f"SweepSearchCV is {ratios[name]:6.2f}x faster than {name}; "
                      f"best_params_ {'equal' if same else 'DIFFER'}")
    # useful work: forward + backward ~ 6 flops per weight per sample, per epoch
    weights = 64 * 32 + 32 + 32 * 10 + 10
    n_train = len(X) * (args.folds - 1) / args.folds
    flops = 6.0 * weights * n_train * args.epochs * args.lrs * args.seeds * args.folds
    if sweep is not None:
        sweep["gflops"] = flops / sweep["seconds"] / 1e9
        print(f"SweepSearchCV: {sweep['gflops']:.2f} GFLOP/s of training "
              f"({flops / 1e9:.1f} GFLOP)")
    out = {"benchmark": "sweep_search", "args": vars(args), "lrs": lrs, "seeds": seeds,
           "results": results, "ratios": ratios, "training_gflop": flops / 1e9,
           "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                       "cpus": os.cpu_count(), "nnkit": nnkit.__version__}}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
