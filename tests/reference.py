"""An independent float64 reference, written differently from nnkit on purpose:
per-layer explicit formulas, sigmoid as 1/(1+exp(-z)) on clipped z, a plain Python
loop over batches. Used to check nnkit's semantics and numbers."""
import numpy as np


def act(z, kind):
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return np.where(z > 0, z, 0.0)
    return z


def dact(z, kind):
    if kind == "sigmoid":
        s = act(z, "sigmoid")
        return s * (1 - s)
    if kind == "tanh":
        return 1 - np.tanh(z) ** 2
    if kind == "relu":
        return (z > 0).astype(float)
    return np.ones_like(z)


def loss_and_dout(out_z, out_a, y, loss):
    """Loss and its gradient with respect to the output layer's pre-activation z."""
    n = y.shape[0]
    if loss == "binary_crossentropy":
        p = act(out_z, "sigmoid")
        value = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) / n
        return value, (p - y) / n
    err = out_a - y
    scale = 0.5 if loss == "squared_error" else 1.0
    value = scale * np.sum(err ** 2) / n
    return value, 2 * scale * err / n


def grads(params, acts, loss, X, Y):
    zs, a_s = [], [X]
    for (W, b), k in zip(params, acts):
        z = a_s[-1] @ W + b
        zs.append(z)
        a_s.append(act(z, k))
    value, g = loss_and_dout(zs[-1], a_s[-1], Y, loss)
    if loss != "binary_crossentropy":
        g = g * dact(zs[-1], acts[-1])
    out = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        out[i] = (a_s[i].T @ g, g.sum(axis=0))
        if i:
            g = (g @ params[i][0].T) * dact(zs[i - 1], acts[i - 1])
    return value, out


def train(params, acts, loss, X, Y, epochs, lr, batch_size=None, orders=None):
    """Returns (per-epoch losses, number of updates, final params)."""
    params = [(W.astype(float).copy(), b.astype(float).copy()) for W, b in params]
    n = len(X)
    bs = n if batch_size is None else batch_size
    history, updates = [], 0
    for e in range(epochs):
        order = np.arange(n) if orders is None else orders[e]
        total = 0.0
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            value, g = grads(params, acts, loss, X[idx], Y[idx])
            total += value * len(idx) / n
            params = [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(params, g)]
            updates += 1
        history.append(total)
    return np.array(history), updates, params
