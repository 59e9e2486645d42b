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


# ------------------------------------------------------------------ classification peers
class _ClassifierPeer:
    """A classification workload's training (its optimizer, rate, batch, shuffled epochs)
    in another library: ``fit(epochs)`` trains on, ``timed_fit(epochs)`` starts again from
    the initial weights and returns the seconds the training took, ``score()`` gives
    (test loss, test accuracy)."""

    def __init__(self, w, dtype, seed=0):
        if not w.classification:
            raise ValueError(f"{w.name} is not a classification workload")
        self.w, self.seed = w, seed
        self.X_train, self.y_train, self.X_test, self.y_test = w.split(dtype)
        self.dtype = dtype

    def timed_fit(self, epochs):
        import time
        self.reset()
        t0 = time.perf_counter()
        self.fit(epochs)
        return time.perf_counter() - t0


class TorchClassifier(_ClassifierPeer):
    """PyTorch eager, the usual loop: ``nn.Sequential`` of ``nn.Linear`` + ReLU started
    from nnkit's initial weights for the seed, ``F.cross_entropy`` on the logits,
    ``torch.optim.Adam`` (or SGD), a host-drawn permutation per epoch."""

    def __init__(self, w, dtype, seed=0, device="cpu"):
        super().__init__(w, dtype, seed)
        import torch
        self.torch, self.device = torch, device
        t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        self.Xt, self.yt = t(self.X_train), t(self.y_train)
        self.Xv, self.yv = t(self.X_test), t(self.y_test)
        self.reset()

    def reset(self):
        torch = self.torch
        nn = torch.nn
        acts = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
        mods = []
        params = self.w.network(backend="numpy", dtype=self.dtype,
                                seed=self.seed).get_params()
        for i, (W, b) in enumerate(params):
            lin = nn.Linear(*W.shape, dtype=getattr(torch, self.dtype), device=self.device)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(W.T))
                lin.bias.copy_(torch.as_tensor(b))
            mods.append(lin)
            if i < len(params) - 1:
                mods.append(acts[self.w.hidden]())
        self.model = nn.Sequential(*mods)
        opt = self.w.optimizer
        if opt == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=self.w.lr)
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=self.w.lr,
                                       momentum=0.9 if opt != "sgd" else 0.0,
                                       nesterov=opt == "nesterov")
        self.rng = np.random.default_rng(self.seed)

    def fit(self, epochs):
        torch = self.torch
        F = torch.nn.functional
        n, bs = len(self.yt), self.w.batch
        model, opt, X, y = self.model, self.opt, self.Xt, self.yt
        for _ in range(epochs):
            order = torch.as_tensor(self.rng.permutation(n), device=self.device)
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                opt.zero_grad()
                F.cross_entropy(model(X[idx]), y[idx]).backward()
                opt.step()
        _torch_sync(torch, self.device)()

    def score(self):
        torch = self.torch
        with torch.no_grad():
            logits = self.model(self.Xv)
            loss = float(torch.nn.functional.cross_entropy(logits, self.yv))
            acc = float((logits.argmax(1) == self.yv).double().mean())
        return loss, acc


class SklearnClassifier(_ClassifierPeer):
    """scikit-learn's ``MLPClassifier`` with the workload's hidden sizes, activation,
    solver (adam or sgd), rate and batch, no L2 (alpha=0), shuffled, and no early stop
    (tol=0, n_iter_no_change beyond max_iter): it runs every epoch asked for. Its own
    (Glorot) initialisation; float32 data stays float32."""

    def __init__(self, w, dtype, seed=0):
        super().__init__(w, dtype, seed)
        import sklearn.neural_network  # noqa: F401 (ImportError here, not in fit)
        if w.hidden not in ("relu", "tanh", "logistic", "sigmoid"):
            raise ValueError(f"MLPClassifier has no {w.hidden!r} activation")
        self.reset()

    def reset(self):
        self.model = None

    def fit(self, epochs):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
        w = self.w
        self.model = MLPClassifier(
            hidden_layer_sizes=tuple(w.sizes[1:-1]),
            activation="logistic" if w.hidden == "sigmoid" else w.hidden,
            solver="adam" if w.optimizer == "adam" else "sgd",
            momentum=0.9 if w.optimizer != "sgd" else 0.0,
            nesterovs_momentum=w.optimizer == "nesterov", alpha=0.0, batch_size=w.batch,
            learning_rate_init=w.lr, max_iter=epochs, shuffle=True, random_state=self.seed,
            tol=0.0, n_iter_no_change=epochs + 1, early_stopping=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit(self.X_train, self.y_train)
        if self.model.n_iter_ != epochs:
            raise RuntimeError(f"MLPClassifier stopped after {self.model.n_iter_} of "
                               f"{epochs} epochs")

    def score(self):
        proba = self.model.predict_proba(self.X_test)
        p = np.clip(proba[np.arange(len(self.y_test)), self.y_test], 1e-15, 1)
        acc = float(np.mean(self.model.classes_[proba.argmax(1)] == self.y_test))
        return float(-np.mean(np.log(p))), acc
