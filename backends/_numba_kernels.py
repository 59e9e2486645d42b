"""Numba kernels. Imported on first use of the numba backend; compiled on first call
and cached on disk (``cache=True``). No ``fastmath``: it would break NaN checks and parity.

Activation codes: 0 linear, 1 sigmoid, 2 tanh, 3 relu.
Loss codes: 0 squared_error, 1 mse, 2 binary_crossentropy (on logits).
Every kernel works on the first ``nb`` rows of its (n, .) arrays so that one set of
buffers serves a full batch and a smaller last batch.
"""
import math

import numpy as np
from numba import njit

LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3
SQUARED_ERROR, MSE, BCE = 0, 1, 2


@njit(cache=True, inline="always", error_model="numpy")
def _sigmoid(z):
    # Branch on the sign so exp never overflows: accurate in both tails.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, inline="always", error_model="numpy")
def activation_forward(Z, act, out, nb):
    """out[:nb] = act(Z[:nb]); out may be Z."""
    m = Z.shape[1]
    for i in range(nb):
        for j in range(m):
            z = Z[i, j]
            if act == SIGMOID:
                out[i, j] = _sigmoid(z)
            elif act == TANH:
                out[i, j] = math.tanh(z)
            elif act == RELU:
                out[i, j] = z if z > 0 else 0.0
            else:
                out[i, j] = z


@njit(cache=True, inline="always", error_model="numpy")
def dense_forward(X, W, b, act, out, nb):
    """out[:nb] = act(X[:nb] @ W + b); X (n, i), W (i, o), b (o,)."""
    n_in, n_out = W.shape
    for i in range(nb):
        for j in range(n_out):
            out[i, j] = 0.0
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                out[i, j] += x * W[k, j]
        for j in range(n_out):
            out[i, j] += b[j]
    activation_forward(out, act, out, nb)


@njit(cache=True, inline="always", error_model="numpy")
def activation_backward(dA, A, act, out, nb):
    """out[:nb] = dA * act'(A), the derivative from the output A; out may be dA."""
    m = A.shape[1]
    for i in range(nb):
        for j in range(m):
            a = A[i, j]
            if act == SIGMOID:
                out[i, j] = (a - a * a) * dA[i, j]
            elif act == TANH:
                out[i, j] = (1.0 - a * a) * dA[i, j]
            elif act == RELU:
                out[i, j] = dA[i, j] if a > 0 else 0.0
            else:
                out[i, j] = dA[i, j]


@njit(cache=True, inline="always", error_model="numpy")
def dense_backward_params(dZ, X, nb, dW, db):
    """dW = X[:nb]^T dZ[:nb], db = column sums of dZ[:nb]."""
    n_in, n_out = dW.shape
    for k in range(n_in):
        for j in range(n_out):
            dW[k, j] = 0.0
    for j in range(n_out):
        db[j] = 0.0
    for i in range(nb):
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                dW[k, j] += x * dZ[i, j]
        for j in range(n_out):
            db[j] += dZ[i, j]


@njit(cache=True, inline="always", error_model="numpy")
def dense_backward_input(dZ, W, dX, nb):
    """dX[:nb] = dZ[:nb] @ W^T."""
    n_in, n_out = W.shape
    for i in range(nb):
        for k in range(n_in):
            s = 0.0
            for j in range(n_out):
                s += dZ[i, j] * W[k, j]
            dX[i, k] = s


@njit(cache=True, inline="always", error_model="numpy")
def loss_value(Yhat, Y, kind, nb):
    """Mean over the nb rows of the per-sample loss summed over outputs (float64)."""
    m = Yhat.shape[1]
    total = 0.0
    for i in range(nb):
        for j in range(m):
            z = Yhat[i, j]
            if kind == BCE:
                total += (max(z, 0.0) - Y[i, j] * z) + math.log1p(math.exp(-abs(z)))
            else:
                d = z - Y[i, j]
                total += d * d
    if kind == SQUARED_ERROR:
        return total / (2 * nb)
    return total / nb


@njit(cache=True, inline="always", error_model="numpy")
def loss_grad(Yhat, Y, kind, out, nb):
    """out[:nb] = d loss / d Yhat (for BCE: d loss / d logits)."""
    m = Yhat.shape[1]
    for i in range(nb):
        for j in range(m):
            if kind == BCE:
                out[i, j] = (_sigmoid(Yhat[i, j]) - Y[i, j]) / nb
            elif kind == MSE:
                out[i, j] = (Yhat[i, j] - Y[i, j]) * (2.0 / nb)
            else:
                out[i, j] = (Yhat[i, j] - Y[i, j]) / nb


@njit(cache=True, inline="always", error_model="numpy")
def sgd_update(P, dP, lr):
    """P -= lr * dP for a 2-D P."""
    for k in range(P.shape[0]):
        for j in range(P.shape[1]):
            P[k, j] -= lr * dP[k, j]


@njit(cache=True, inline="always", error_model="numpy")
def sgd_update_1d(p, g, lr):
    """p -= lr * g for a 1-D p."""
    for j in range(p.shape[0]):
        p[j] -= lr * g[j]


@njit(cache=True, inline="always", error_model="numpy")
def train_step(X, Y, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs):
    """One fused step on rows :nb of (X, Y): forward, loss, backward, update.

    Ws/bs/As/Gs/dWs/dbs are tuples over layers; Gs holds dA then dZ in place.
    Returns the loss before the update.
    """
    L = len(Ws)
    for l in range(L):
        inp = X if l == 0 else As[l - 1]
        dense_forward(inp, Ws[l], bs[l], acts[l], As[l], nb)
    loss = loss_value(As[L - 1], Y, loss_kind, nb)
    loss_grad(As[L - 1], Y, loss_kind, Gs[L - 1], nb)
    for l in range(L - 1, -1, -1):
        activation_backward(Gs[l], As[l], acts[l], Gs[l], nb)
        inp = X if l == 0 else As[l - 1]
        dense_backward_params(Gs[l], inp, nb, dWs[l], dbs[l])
        if l > 0:
            dense_backward_input(Gs[l], Ws[l], Gs[l - 1], nb)
    for l in range(L):
        sgd_update(Ws[l], dWs[l], lr)
        sgd_update_1d(bs[l], dbs[l], lr)
    return loss


@njit(cache=True, error_model="numpy")
def train_epochs(X, Y, Ws, bs, acts, loss_kind, lrs, batch_size, orders, use_order,
                 Xb, Yb, As, Gs, dWs, dbs, losses):
    """Run len(lrs) epochs in one call; losses[e] = epoch e's mean loss.

    Stops after the first epoch whose loss is not finite; returns epochs run.
    """
    n = X.shape[0]
    full = batch_size >= n and not use_order
    for e in range(lrs.shape[0]):
        lr = lrs[e]
        total = 0.0
        if full:
            total = train_step(X, Y, n, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs)
        else:
            start = 0
            while start < n:
                stop = min(start + batch_size, n)
                nb = stop - start
                for r in range(nb):
                    src = orders[e, start + r] if use_order else start + r
                    Xb[r, :] = X[src, :]
                    Yb[r, :] = Y[src, :]
                loss = train_step(Xb, Yb, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs)
                total += loss * (nb / n)
                start = stop
        losses[e] = total
        if not np.isfinite(total):
            return e + 1
    return lrs.shape[0]
