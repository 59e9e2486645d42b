"""Seed 001: the OR gate by hand and by gradient descent.

Walk-through (w1=0.1, w2=0.6, b=0, lr=1), the cost curve, the decision boundary and a
learning-rate comparison (0.05 crawls, 1 and 5 converge, 50 converges fastest here: with a
sigmoid output and squared error the cost stays bounded, so this net does not diverge;
`nnkit.sweep` marks rates that do), written as PNGs to --out when matplotlib is installed.
Any backend: NNKIT_BACKEND=numba python examples/or_gate.py
"""
import argparse
import os

import numpy as np

import nnkit

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=5000)
parser.add_argument("--out", default="or_gate_plots")
args = parser.parse_args()

X, Y = nnkit.datasets.or_gate()
net = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], loss="squared_error", dtype="float64")
net.set_params([(np.array([[0.1], [0.6]]), np.array([0.0]))])
print(f"backend: {net.backend.name}")
print(f"initial predictions: {net.predict(X)[:, 0].round(3)}  cost {net.evaluate(X, Y):.3f}")
hist = net.fit(X, Y, epochs=1, lr=1.0, trace=1)
(dW, db), = net.gradients(X, Y)
print(f"after one update: cost {net.evaluate(X, Y):.3f}, dCost/dW = {dW[:, 0].round(3)}, "
      f"dCost/db = {db.round(3)}")
hist = net.fit(X, Y, epochs=args.epochs, lr=1.0)
print(f"after {args.epochs + 1} epochs: cost {hist.loss[-1]:.5f}, "
      f"predictions {net.predict(X)[:, 0].round(3)}")

rates = [0.05, 1.0, 5.0, 50.0]
res = nnkit.sweep(net, X, Y, lr=rates, epochs=args.epochs)
for cfg, curve, div in zip(res.configs, res.loss, res.diverged_epoch):
    state = f"diverged at epoch {div}" if div >= 0 else f"final cost {curve[-1]:.5f}"
    print(f"  lr {cfg['lr']:>5}: {state}")

try:
    from nnkit import plot
except ImportError:
    plot = None
if plot is not None:
    try:
        os.makedirs(args.out, exist_ok=True)
        plot.cost_curve({"lr 1": hist.loss}).savefig(os.path.join(args.out, "cost.png"))
        plot.decision_boundary(net, X, Y).savefig(os.path.join(args.out, "boundary.png"))
        plot.lr_comparison(res).savefig(os.path.join(args.out, "learning_rates.png"))
        print(f"plots written to {args.out}/")
    except ImportError as exc:
        print(f"no plots: {exc}")
