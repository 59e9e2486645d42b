"""Finite-difference gradient check (central differences, float64)."""
from __future__ import annotations

import numpy as np


def gradcheck(net, X, Y, eps=1e-6, grad_fn=None, per_layer=False):
    """Max relative error between analytic and central-difference gradients.

    The check runs on a float64 copy of ``net`` on the same backend. For each
    parameter array the error is ``|g - g_fd| / max(|g| + |g_fd|, 1e-12)`` in
    the 2-norm. ``grad_fn(net64, X, Y)`` replaces ``net.gradients`` (to check a
    hand-written backward pass). With ``per_layer=True`` returns a list of
    ``(err_W, err_b)`` per layer instead of the maximum.
    """
    from .network import Network
    net64 = Network(net.layers, loss=net.loss, dtype="float64", seed=net.seed,
                    backend=net.backend)
    net64.set_params(net.get_params())
    X, Y = net64.prepare(X, Y)
    analytic = (grad_fn or Network.gradients)(net64, X, Y)
    params = net64.get_params()
    errors = []
    for i, (W, b) in enumerate(params):
        layer_err = []
        for j, p in enumerate((W, b)):
            numeric = np.zeros_like(p)
            flat = p.reshape(-1)
            for k in range(flat.size):
                orig = flat[k]
                flat[k] = orig + eps
                net64.set_params(params)
                up = net64.evaluate_prepared(X, Y)
                flat[k] = orig - eps
                net64.set_params(params)
                down = net64.evaluate_prepared(X, Y)
                flat[k] = orig
                numeric.reshape(-1)[k] = (up - down) / (2 * eps)
            g = np.asarray(analytic[i][j], dtype=np.float64)
            denom = max(np.linalg.norm(g) + np.linalg.norm(numeric), 1e-12)
            layer_err.append(float(np.linalg.norm(g - numeric) / denom))
        errors.append(tuple(layer_err))
    net64.set_params(params)
    if per_layer:
        return errors
    return max(max(e) for e in errors)
