"""Named, seeded benchmark workloads, defined once for ``nnkit bench`` and
``benchmarks/`` (pytest-benchmark)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    """A sigmoid MLP trained with squared error on seeded data; ``batch`` rows a step."""

    name: str
    sizes: tuple
    batch: int
    hidden: str = "sigmoid"
    output: str = "sigmoid"
    loss: str = "squared_error"

    @property
    def weights(self):
        return sum(a * b for a, b in zip(self.sizes, self.sizes[1:]))

    def flops_per_step(self, batch=None):
        """Multiply-adds x2 of forward (X W), backward (X^T dZ, dZ W^T except the
        first layer) and the update; elementwise work ignored."""
        b = self.batch if batch is None else batch
        pairs = list(zip(self.sizes, self.sizes[1:]))
        fwd = sum(2 * b * i * o for i, o in pairs)
        dW = fwd
        dX = sum(2 * b * i * o for i, o in pairs[1:])
        return fwd + dW + dX + 2 * self.weights

    def data(self, dtype="float32", n=None, seed=0):
        """(X, Y): gates give the truth table; others seeded uniform inputs and targets."""
        if self.sizes[0] == 2 and self.batch == 4:
            from ..datasets import or_gate, xor_gate
            X, Y = (xor_gate() if self.name == "xor" else or_gate())
        else:
            rng = np.random.default_rng(seed)
            n = self.batch if n is None else n
            X = rng.uniform(-1, 1, size=(n, self.sizes[0]))
            Y = rng.uniform(0, 1, size=(n, self.sizes[-1]))
        return X.astype(dtype), Y.astype(dtype)

    def network(self, backend=None, dtype="float32", seed=0):
        from ..layers import Dense
        from ..network import Network
        acts = [self.hidden] * (len(self.sizes) - 2) + [self.output]
        layers = [Dense(a, b, k) for a, b, k in zip(self.sizes, self.sizes[1:], acts)]
        return Network(layers, loss=self.loss, dtype=dtype, seed=seed, backend=backend)

    @property
    def tiny(self):
        """Tiny full-batch problems where a multi-epoch fit is the fair measure."""
        return self.batch <= 8


WORKLOADS = {w.name: w for w in (
    Workload("or-gate", (2, 2, 1), 4),
    Workload("xor", (2, 4, 1), 4),
    Workload("digits", (64, 64, 10), 256),
    Workload("mnist", (784, 256, 10), 512),
    Workload("large", (1024, 1024, 1024), 1024),
)}
QUICK = ("or-gate", "xor", "digits", "mnist")
