"""Named, seeded benchmark workloads, defined once for ``nnkit bench`` and
``benchmarks/`` (pytest-benchmark)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    """An MLP trained on seeded data, ``batch`` rows a step: by default sigmoid layers,
    squared error and plain SGD on uniform random data.

    A classification workload (``dataset`` set: "digits" or "blobs") is a relu -> softmax
    net trained with categorical cross-entropy and ``optimizer`` on a train/test split
    (``split``): shuffled mini-batches of ``batch`` rows at rate ``lr`` for ``epochs``
    (``quick_epochs`` under ``--quick``), then scored on the test set (``accuracy``)."""

    name: str
    sizes: tuple
    batch: int
    hidden: str = "sigmoid"
    output: str = "sigmoid"
    loss: str = "squared_error"
    optimizer: str = "sgd"
    lr: float = 0.01
    dataset: str = None  # None: seeded uniform data (or the gate's truth table)
    epochs: int = 0
    quick_epochs: int = 0

    @property
    def classification(self):
        return self.dataset is not None

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
        """(X, Y): gates give the truth table; classification workloads the first ``n``
        (default ``batch``) training rows, Y one-hot; others seeded uniform inputs and
        targets."""
        if self.classification:
            X, y, _, _ = self.split(dtype)
            n = self.batch if n is None else n
            Y = np.zeros((min(n, len(y)), self.sizes[-1]), dtype=dtype)
            Y[np.arange(len(Y)), y[:n]] = 1
            return X[:n], Y
        if self.sizes[0] == 2 and self.batch == 4:
            from ..datasets import or_gate, xor_gate
            X, Y = (xor_gate() if self.name == "xor" else or_gate())
        else:
            rng = np.random.default_rng(seed)
            n = self.batch if n is None else n
            X = rng.uniform(-1, 1, size=(n, self.sizes[0]))
            Y = rng.uniform(0, 1, size=(n, self.sizes[-1]))
        return X.astype(dtype), Y.astype(dtype)

    def split(self, dtype="float32"):
        """(X_train, y_train, X_test, y_test) of a classification workload, y int labels:
        ``digits`` is scikit-learn's 8x8 digits (``nnkit.datasets.digits()``; without
        scikit-learn, an ImportError), ``blobs`` seeded synthetic data of the workload's
        sizes (see ``blobs``)."""
        if self.dataset == "digits":
            from ..datasets import digits
            X, y, Xt, yt = digits()
        elif self.dataset == "blobs":
            X, y, Xt, yt = blobs(self.sizes[0], self.sizes[-1])
        else:
            raise ValueError(f"{self.name}: not a classification workload")
        return X.astype(dtype), y, Xt.astype(dtype), yt

    def fit_options(self):
        """The ``fit`` arguments of a classification workload's training run."""
        return {"lr": self.lr, "batch_size": self.batch, "shuffle": True,
                "optimizer": self.optimizer, "progress": False}

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


def blobs(n_features=784, classes=10, n_train=8192, n_test=2048, seed=0):
    """MNIST-sized synthetic classification data, no download. A seeded common image in
    [0.2, 0.8]^n_features; each class's prototype is it plus Gaussian N(0, 0.06) pixel
    offsets; each sample is its class's prototype plus N(0, 0.5) pixel noise, clipped to
    [0, 1]. The classes overlap, so the task is not trivial: a linear model (logistic
    regression) scores about 0.86 on the test set, a 784-256-10 net a little more.
    Returns (X_train, y_train, X_test, y_test): X float64, y int64 labels; the arrays are
    made once per process and copied."""
    key = (n_features, classes, n_train, n_test, seed)
    if key not in _BLOBS:
        rng = np.random.default_rng(seed)
        base = rng.uniform(0.2, 0.8, size=n_features)
        protos = base + rng.normal(0, 0.06, size=(classes, n_features))
        y = rng.integers(0, classes, size=n_train + n_test)
        X = np.clip(protos[y] + rng.normal(0, 0.5, size=(len(y), n_features)), 0, 1)
        _BLOBS.clear()
        _BLOBS[key] = (X[:n_train], y[:n_train], X[n_train:], y[n_train:])
    return tuple(a.copy() for a in _BLOBS[key])


_BLOBS = {}


_CLASSIFIER = {"hidden": "relu", "output": "softmax", "loss": "categorical_crossentropy",
               "optimizer": "adam", "lr": 1e-3}

WORKLOADS = {w.name: w for w in (
    Workload("or-gate", (2, 2, 1), 4),
    Workload("xor", (2, 4, 1), 4),
    Workload("digits", (64, 64, 10), 256),
    Workload("mnist", (784, 256, 10), 512),
    Workload("large", (1024, 1024, 1024), 1024),
    # Classification, Adam, accuracy on a held-out test set (issue 14).
    Workload("digits-adam", (64, 64, 10), 64, dataset="digits", epochs=50, quick_epochs=10,
             **_CLASSIFIER),
    Workload("mnist-adam", (784, 256, 10), 128, dataset="blobs", epochs=5, quick_epochs=1,
             **_CLASSIFIER),
)}
QUICK = ("or-gate", "xor", "digits", "mnist")  # the classification ones: --workloads
