"""Seed 002: a backward pass that uses W1^T where W2^T belongs runs without error on
square layers and even lowers the loss for a while; only a finite-difference check sees it."""
import numpy as np

import nnkit
from nnkit.backends import Backend


class TransposedWeightBug(Backend):
    """The reference kernels, except the hidden layer's upstream gradient uses W1^T."""
    name = "buggy"

    def dense_backward(self, dZ, X, W, need_dX=True, dW=None, db=None, dX=None):
        dW, db, dX = super().dense_backward(dZ, X, W, need_dX, dW, db, dX)
        if need_dX:
            dX[...] = dZ @ self.W1.T
        return dW, db, dX


rng = np.random.default_rng(0)
X = rng.normal(size=(16, 3))
Y = rng.uniform(size=(16, 3))
layers = [nnkit.Dense(3, 3, "sigmoid"), nnkit.Dense(3, 3, "sigmoid")]
buggy = TransposedWeightBug()
net = nnkit.Network(layers, loss="mse", dtype="float64", seed=1, backend=buggy)
good = nnkit.Network(layers, loss="mse", dtype="float64", seed=1)


def buggy_gradients(n, X, Y):
    buggy.W1 = n.train_state.params[0][0]
    return nnkit.Network.gradients(n, X, Y)


print(f"correct backward pass: max relative error {nnkit.gradcheck(good, X, Y):.1e}")
print(f"W1^T bug:              max relative error "
      f"{nnkit.gradcheck(net, X, Y, grad_fn=buggy_gradients):.1e}  <- caught")
