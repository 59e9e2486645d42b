"""Peer implementations of the benchmark workloads: PyTorch eager and JAX ``jit``.

Optional: each ``make_*`` raises ImportError when its package is missing. Every
maker returns ``(step, sync)``: ``step()`` runs one training step on the workload's
batch, ``sync()`` waits for the device. ``make_*_epochs`` return ``run(epochs)``
for a full-batch multi-epoch fit. Networks: sigmoid layers, squared error 1/(2n).
"""
from __future__ import annotations

import numpy as np


def _jax_squared_error(X, Y):
    """JAX loss of sigmoid layers [(W, b), ...] on (X, Y): squared error / (2 n)."""
    import jax
    import jax.numpy as jnp

    def loss_fn(params):
        a = X
        for W, b in params:
            a = jax.nn.sigmoid(a @ W + b)
        return jnp.sum((a - Y) ** 2) / (2 * X.shape[0])
    return loss_fn


def _init(w, dtype):
    net = w.network(backend="numpy", dtype=dtype)
    return net.get_params()


def make_torch_eager(w, dtype, device="cpu"):
    """Autograd + torch.optim.SGD, the usual PyTorch loop."""
    import torch
    X, Y = (torch.tensor(a, device=device) for a in w.data(dtype))
    params = []
    for W, b in _init(w, dtype):
        params += [torch.tensor(W, device=device, requires_grad=True),
                   torch.tensor(b, device=device, requires_grad=True)]
    opt = torch.optim.SGD(params, lr=0.01)
    n = X.shape[0]

    def step():
        opt.zero_grad(set_to_none=False)
        a = X
        for i in range(0, len(params), 2):
            a = torch.sigmoid(a @ params[i] + params[i + 1])
        loss = ((a - Y) ** 2).sum() / (2 * n)
        loss.backward()
        opt.step()
        return loss

    return step, _torch_sync(torch, device)


def make_torch_manual(w, dtype, device="cpu"):
    """Hand-written gradients with in-place torch ops, no autograd."""
    import torch
    X, Y = (torch.tensor(a, device=device) for a in w.data(dtype))
    params = [(torch.tensor(W, device=device), torch.tensor(b, device=device))
              for W, b in _init(w, dtype)]
    n = X.shape[0]

    @torch.no_grad()
    def step():
        acts = [X]
        for W, b in params:
            acts.append(torch.sigmoid(torch.addmm(b, acts[-1], W)))
        g = (acts[-1] - Y) / n
        for i in range(len(params) - 1, -1, -1):
            a = acts[i + 1]
            g = g * a * (1 - a)
            W, b = params[i]
            dX = g @ W.T if i else None
            W.sub_(acts[i].T @ g, alpha=0.01)
            b.sub_(g.sum(0), alpha=0.01)
            g = dX

    return step, _torch_sync(torch, device)


def _torch_sync(torch, device):
    if str(device).startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def _jax_setup(w, dtype):
    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    X, Y = (jnp.asarray(a) for a in w.data(dtype))
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in _init(w, dtype)]
    loss_fn = _jax_squared_error(X, Y)

    def update(params):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        return [(W - 0.01 * dW, b - 0.01 * db) for (W, b), (dW, db) in zip(params, grads)], loss

    return jax, params, update


def make_jax_jit(w, dtype):
    """One ``jax.jit``-compiled step called from Python."""
    jax, params, update = _jax_setup(w, dtype)
    step_fn = jax.jit(update)
    state = {"p": params}

    def step():
        state["p"], loss = step_fn(state["p"])
        return loss

    return step, lambda: jax.block_until_ready(state["p"])


def make_jax_scan_epochs(w, dtype, epochs):
    """``jit(lax.scan)`` over ``epochs`` full-batch steps: the fair peer of a fused fit."""
    jax, params, update = _jax_setup(w, dtype)

    @jax.jit
    def run(params):
        return jax.lax.scan(lambda p, _: update(p), params, None, length=epochs)

    def go():
        out = run(params)
        jax.block_until_ready(out)
        return out

    return go


def make_torch_epochs(w, dtype):
    step, sync = make_torch_eager(w, dtype)

    def go(epochs):
        for _ in range(epochs):
            step()
        sync()

    return go



def make_jax_sweep(w, dtype, lrs, epochs):
    """``jit(scan(vmap(step)))``: one full-batch step of every network per scan step."""
    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    X, Y = (jnp.asarray(a) for a in w.data(dtype))
    nets = len(lrs)
    base = _init(w, dtype)
    params = [(jnp.asarray(np.repeat(W[None], nets, 0)), jnp.asarray(np.repeat(b[None], nets, 0)))
              for W, b in base]
    rates = jnp.asarray(np.asarray(lrs, dtype=dtype))
    loss_fn = _jax_squared_error(X, Y)

    def step(p, lr):
        loss, g = jax.value_and_grad(loss_fn)(p)
        return [(W - lr * dW, b - lr * db) for (W, b), (dW, db) in zip(p, g)], loss

    vstep = jax.vmap(step)

    @jax.jit
    def run(p):
        return jax.lax.scan(lambda q, _: vstep(q, rates), p, None, length=epochs)

    def go():
        out = run(params)
        jax.block_until_ready(out)
        return out

    return go


def make_torch_sweep(w, dtype, lrs, epochs, device="cpu"):
    """Stacked weights and ``bmm`` with hand-written gradients (PyTorch)."""
    import torch
    X, Y = (torch.tensor(a, device=device) for a in w.data(dtype))
    nets = len(lrs)
    params = [(torch.tensor(np.repeat(W[None], nets, 0), device=device),
               torch.tensor(np.repeat(b[None], nets, 0), device=device))
              for W, b in _init(w, dtype)]
    rates = torch.tensor(np.asarray(lrs, dtype=dtype), device=device)[:, None, None]
    Xs, Ys = X.expand(nets, *X.shape), Y.expand(nets, *Y.shape)
    n = X.shape[0]

    @torch.no_grad()
    def go():
        for _ in range(epochs):
            acts = [Xs]
            for W, b in params:
                acts.append(torch.sigmoid(torch.baddbmm(b[:, None, :], acts[-1], W)))
            g = (acts[-1] - Ys) / n
            for i in range(len(params) - 1, -1, -1):
                a = acts[i + 1]
                g = g * a * (1 - a)
                W, b = params[i]
                dX = torch.bmm(g, W.transpose(1, 2)) if i else None
                W.sub_(rates * torch.bmm(acts[i].transpose(1, 2), g))
                b.sub_(rates[:, 0] * g.sum(1))
                g = dX
        _torch_sync(torch, device)()

    return go
