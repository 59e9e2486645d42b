"""An independent float64 trainer for softmax / categorical cross-entropy, L2 and the
optimizers (SGD with momentum or Nesterov momentum, Adam), written from the documented
formulas and on purpose unlike nnkit's code: explicit per-layer and per-parameter loops,
the sigmoid through ``logaddexp``, the softmax and its log through an explicit row max and
``log(sum(exp(z - max)))``, optimizer state as plain Python lists.

Formulas (DESIGN.md, issue 14; torch.optim.SGD / torch.optim.Adam semantics):

    loss  squared_error 1/(2n) sum (a - y)^2 | mse 1/n sum (a - y)^2
          binary_crossentropy (sigmoid output, from the logits z) 1/n sum log(1 + e^z) - y z
          categorical_crossentropy (softmax output) -1/n sum_i sum_k y_ik log softmax(z_i)_k
          + (l2 / 2) * sum over weight matrices of ||W||^2 (never biases)
    g     = grad + l2 * W  (weights only)
    sgd       p -= lr * g
    momentum  v = mu * v + g ; p -= lr * v                 (v starts at 0)
    nesterov  v = mu * v + g ; p -= lr * (g + mu * v)
    adam      t += 1 ; m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
              p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

``Trainer`` keeps parameters and optimizer state between ``fit`` calls, as nnkit keeps them
on the network; ``train`` is the one-call form.
"""
import math

import numpy as np

OPTIMIZERS = {
    "sgd": {"kind": "sgd", "momentum": 0.0, "nesterov": False},
    "momentum": {"kind": "sgd", "momentum": 0.9, "nesterov": False},
    "nesterov": {"kind": "sgd", "momentum": 0.9, "nesterov": True},
    "adam": {"kind": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


def optimizer_settings(optimizer):
    """A name from OPTIMIZERS, or a dict {"kind": "sgd", "momentum", "nesterov"} /
    {"kind": "adam", "beta1", "beta2", "eps"} (missing keys take the defaults)."""
    if isinstance(optimizer, str):
        return dict(OPTIMIZERS[optimizer])
    base = dict(OPTIMIZERS["sgd" if optimizer["kind"] == "sgd" else "adam"])
    base.update(optimizer)
    return base


# ------------------------------------------------------------------ activations
def activation(z, kind):
    if kind == "sigmoid":
        return np.exp(-np.logaddexp(0.0, -z))
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return z * (z > 0)
    if kind == "linear":
        return z.copy()
    if kind == "softmax":
        return softmax(z)
    raise ValueError(kind)


def activation_slope(z, kind):
    """d act / d z, from z."""
    if kind == "sigmoid":
        s = activation(z, "sigmoid")
        return s * (1.0 - s)
    if kind == "tanh":
        t = np.tanh(z)
        return 1.0 - t * t
    if kind == "relu":
        return (z > 0).astype(np.float64)
    if kind == "linear":
        return np.ones_like(z)
    raise ValueError(kind)


def log_softmax(z):
    """Row by row: (z - max) - log(sum(exp(z - max)))."""
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        shifted = z[i] - np.max(z[i])
        out[i] = shifted - np.log(np.sum(np.exp(shifted)))
    return out


def softmax(z):
    out = np.empty_like(z)
    for i in range(z.shape[0]):
        e = np.exp(z[i] - np.max(z[i]))
        out[i] = e / np.sum(e)
    return out


def one_hot(labels, k):
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], k))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


# ------------------------------------------------------------ loss and gradients
def output_loss(z, y, activation_name, loss):
    """(loss value, d loss / d z) of the output layer from its pre-activation z."""
    n = z.shape[0]
    if loss == "categorical_crossentropy":
        assert activation_name == "softmax"
        value = -np.sum(y * log_softmax(z)) / n
        dz = (softmax(z) * np.sum(y, axis=1, keepdims=True) - y) / n
        return value, dz
    if loss == "binary_crossentropy":
        assert activation_name == "sigmoid"
        value = np.sum(np.logaddexp(0.0, z) - y * z) / n
        return value, (activation(z, "sigmoid") - y) / n
    a = activation(z, activation_name)
    diff = a - y
    if loss == "squared_error":
        value, da = 0.5 * np.sum(diff * diff) / n, diff / n
    elif loss == "mse":
        value, da = np.sum(diff * diff) / n, 2.0 * diff / n
    else:
        raise ValueError(loss)
    return value, da * activation_slope(z, activation_name)


def loss_and_grads(params, activations, loss, X, Y, l2=0.0):
    """Mean loss (+ L2 term) over (X, Y) and [(dW, db), ...]."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    inputs, zs = [], []
    a = X
    for (W, b), kind in zip(params, activations):
        inputs.append(a)
        z = a @ W + b
        zs.append(z)
        a = activation(z, kind) if kind != "softmax" else None
    value, dz = output_loss(zs[-1], Y, activations[-1], loss)
    grads = [None] * len(params)
    for layer in reversed(range(len(params))):
        W = params[layer][0]
        dW = inputs[layer].T @ dz
        db = np.sum(dz, axis=0)
        if layer > 0:
            dz = (dz @ W.T) * activation_slope(zs[layer - 1], activations[layer - 1])
        grads[layer] = (dW, db)
    if l2:
        for layer, (W, _) in enumerate(params):
            value += 0.5 * l2 * np.sum(W * W)
            grads[layer] = (grads[layer][0] + l2 * W, grads[layer][1])
    return float(value), grads


def predict(params, activations, X):
    a = np.asarray(X, dtype=np.float64)
    for (W, b), kind in zip(params, activations):
        a = activation(a @ W + b, kind)
    return a


# --------------------------------------------------------------------- training
def shuffle_orders(seed, n, epochs):
    """The orders fit(shuffle=True) uses: successive permutations of the generator
    default_rng([seed, 1])."""
    rng = np.random.default_rng([seed, 1])
    return [rng.permutation(n) for _ in range(epochs)]


class Trainer:
    """Parameters + optimizer state; ``fit`` continues from both."""

    def __init__(self, params, activations, loss, optimizer="sgd", l2=0.0):
        self.params = [[np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)]
                       for W, b in params]
        self.activations = list(activations)
        self.loss = loss
        self.l2 = float(l2)
        self.settings = optimizer_settings(optimizer)
        self.reset()

    def reset(self):
        self.t = 0
        self.first = [[np.zeros_like(p) for p in pair] for pair in self.params]
        self.second = [[np.zeros_like(p) for p in pair] for pair in self.params]

    def step(self, X, Y, lr):
        """One update on the batch (X, Y); returns the loss before it."""
        value, grads = loss_and_grads(self.params, self.activations, self.loss, X, Y, self.l2)
        s = self.settings
        self.t += 1
        for layer, pair in enumerate(grads):
            for j, g in enumerate(pair):
                p = self.params[layer][j]
                if s["kind"] == "sgd":
                    mu = s["momentum"]
                    if mu == 0.0:
                        p -= lr * g
                        continue
                    v = self.first[layer][j]
                    v *= mu
                    v += g
                    if s["nesterov"]:
                        p -= lr * (g + mu * v)
                    else:
                        p -= lr * v
                else:
                    b1, b2, eps = s["beta1"], s["beta2"], s["eps"]
                    m, v = self.first[layer][j], self.second[layer][j]
                    m *= b1
                    m += (1.0 - b1) * g
                    v *= b2
                    v += (1.0 - b2) * (g * g)
                    c1 = 1.0 - b1 ** self.t
                    c2 = math.sqrt(1.0 - b2 ** self.t)
                    p -= (lr / c1) * m / (np.sqrt(v) / c2 + eps)
        return value

    def fit(self, X, Y, epochs, lr, batch_size=None, orders=None):
        """Per-epoch losses: full batch, the loss before the epoch's update; mini-batches
        (in ``orders[e]`` order, else in order), the row-weighted mean of the batch losses,
        each before its update."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        n = X.shape[0]
        size = n if batch_size is None or batch_size >= n else batch_size
        history = []
        for e in range(epochs):
            order = np.arange(n) if orders is None else np.asarray(orders[e])
            total = 0.0
            for start in range(0, n, size):
                rows = order[start:start + size]
                total += self.step(X[rows], Y[rows], lr) * len(rows)
            history.append(total / n)
        return np.array(history)

    def get_params(self):
        return [(W.copy(), b.copy()) for W, b in self.params]


def train(params, activations, loss, X, Y, epochs, lr, batch_size=None, shuffle_seed=None,
          optimizer="sgd", l2=0.0):
    """One fit from ``params``: returns (per-epoch losses, final params). ``shuffle_seed``:
    the network's seed when fit(shuffle=True) draws orders (mini-batches only)."""
    trainer = Trainer(params, activations, loss, optimizer, l2)
    n = len(X)
    orders = None
    if shuffle_seed is not None and batch_size is not None and batch_size < n:
        orders = shuffle_orders(shuffle_seed, n, epochs)
    losses = trainer.fit(X, Y, epochs, lr, batch_size, orders)
    return losses, trainer.get_params()
