"""Layer description: ``Dense(n_in, n_out, activation)``."""
from __future__ import annotations

from .backends import LAYER_ACTIVATIONS
from .validation import check_choice, check_positive_int


class Dense:
    """A fully connected layer ``act(X @ W + b)``, W (n_in, n_out), b (n_out,).

    activation: "sigmoid", "tanh", "relu", "linear", or "softmax" (the output layer of
    a network with loss "categorical_crossentropy" only)."""

    def __init__(self, n_in, n_out, activation="sigmoid"):
        self.n_in = check_positive_int("n_in", n_in)
        self.n_out = check_positive_int("n_out", n_out)
        self.activation = check_choice("activation", activation, LAYER_ACTIVATIONS)

    def init_params(self, rng):
        """Float64 host weights: Glorot uniform (He normal for relu); zero bias."""
        import numpy as np
        if self.activation == "relu":
            W = rng.normal(0.0, np.sqrt(2.0 / self.n_in), size=(self.n_in, self.n_out))
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            W = rng.uniform(-limit, limit, size=(self.n_in, self.n_out))
        return W, np.zeros(self.n_out)

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r})"
