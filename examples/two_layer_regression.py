"""Seed 000: a 2-layer network (sigmoid hidden layer, linear output) fitted with squared
error E = 1/(2n) sum (y - yhat)^2 by batch gradient descent, with a gradient check first."""
import argparse

import numpy as np

import nnkit

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=3000)
args = parser.parse_args()

rng = np.random.default_rng(0)
X = rng.uniform(-2, 2, size=(64, 1))
Y = np.sin(X) + 0.05 * rng.normal(size=X.shape)
net = nnkit.Network([nnkit.Dense(1, 8, "sigmoid"), nnkit.Dense(8, 1, "linear")],
                    loss="squared_error", dtype="float64", seed=0)
print(f"backend: {net.backend.name}; gradient check: max relative error "
      f"{nnkit.gradcheck(net, X, Y):.2e}")
hist = net.fit(X, Y, epochs=args.epochs, lr=0.5)
print(f"cost: {hist.loss[0]:.4f} -> {hist.loss[-1]:.4f}")
grid = np.linspace(-2, 2, 5)[:, None]
print("x, sin(x), prediction:")
for x, p in zip(grid[:, 0], net.predict(grid)[:, 0]):
    print(f"  {x:5.2f}  {np.sin(x):6.3f}  {p:6.3f}")
