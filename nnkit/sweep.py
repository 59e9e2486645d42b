"""``sweep``: train many configurations (learning rates x seeds) of one architecture
in one call, with a leading configuration axis on the backend."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .config import get_backend
from .schedules import get_schedule
from .validation import check_positive_float, check_positive_int

# Configurations are trained in chunks whose arrays fit in about this many bytes.
MEMORY_BUDGET = 512 * 2 ** 20


@dataclass
class SweepResult:
    """Outcome of ``sweep``.

    configs: list of ``{"lr": ..., "seed": ...}``; loss: (n_configs, epochs) per-epoch
    training loss (NaN after a configuration diverged); diverged_epoch: (n_configs,)
    epoch of the first non-finite loss, -1 if none; params: per configuration
    ``[(W, b), ...]`` NumPy arrays (diverged ones keep their last finite values).
    """

    template: object
    configs: list
    loss: np.ndarray
    diverged_epoch: np.ndarray
    params: list

    @property
    def diverged(self):
        return self.diverged_epoch >= 0

    @property
    def final_loss(self):
        """Last finite-run loss per configuration (inf for diverged ones)."""
        out = self.loss[:, -1].copy()
        out[self.diverged] = np.inf
        return out

    def best(self, k=None):
        """Index of the configuration with the lowest final loss (or the k best, sorted)."""
        order = np.argsort(self.final_loss, kind="stable")
        return int(order[0]) if k is None else [int(i) for i in order[:k]]

    def network(self, i, backend=None):
        """A trained ``Network`` for configuration i."""
        from .network import Network
        t = self.template
        net = Network(t.layers, loss=t.loss, dtype=t.dtype, seed=self.configs[i]["seed"],
                      backend=backend or t.backend)
        net.set_params(self.params[i])
        return net


def sweep(net, X, Y, lr, seed=None, epochs=100, batch_size=None, shuffle=False,
          lr_schedule=None, backend=None, chunk_size=None):
    """Train every (lr, seed) in the Cartesian product of ``lr`` and ``seed`` together.

    ``net`` is a template Network (architecture, loss, dtype; its seed is used when
    ``seed`` is None). Each configuration equals a separate ``Network(..., seed=s)``
    ``.fit(X, Y, epochs, lr, batch_size, shuffle, lr_schedule)`` — NaN/inf stops only
    that configuration. Configurations are processed in chunks of ``chunk_size``
    (default: what fits in about 512 MiB); results do not depend on the chunking.
    """
    from .network import Network
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a template nnkit.Network, got {type(net).__name__}")
    lrs = [check_positive_float("lr", v) for v in np.atleast_1d(lr).tolist()]
    seeds = [net.seed] if seed is None else list(np.atleast_1d(seed).tolist())
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seed: expected integers >= 0, got {s!r}")
    epochs = check_positive_int("epochs", epochs)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    schedule = get_schedule(lr_schedule)
    be = get_backend(backend if backend is not None else net.backend)
    work = Network(net.layers, loss=net.loss, dtype=net.dtype, seed=net.seed, backend=be)
    Xd, Yd = work._data(X, Y)
    n = Xd.shape[0]
    if batch_size is not None and batch_size >= n:
        batch_size = None
    configs = [{"lr": a, "seed": s} for s, a in itertools.product(seeds, lrs)]
    factor = schedule.rates(1.0, epochs)
    if chunk_size is None:
        chunk_size = max(1, MEMORY_BUDGET // _bytes_per_config(net, n, batch_size))
    chunk_size = check_positive_int("chunk_size", chunk_size)
    losses, diverged, params = [], [], []
    init = {s: Network(net.layers, loss=net.loss, dtype=net.dtype, seed=s,
                       backend="numpy").get_params() for s in seeds}
    for lo in range(0, len(configs), chunk_size):
        part = configs[lo:lo + chunk_size]
        stacked = [(be.asarray(np.stack([init[c["seed"]][i][0] for c in part]), net.dtype),
                    be.asarray(np.stack([init[c["seed"]][i][1] for c in part]), net.dtype))
                   for i in range(len(net.layers))]
        rates = np.array([c["lr"] for c in part], dtype=np.float64)
        orders = None
        if batch_size is not None and shuffle:
            # The same host stream as Network.fit draws from for that seed.
            orders = np.stack([_orders(c["seed"], epochs, n) for c in part])
        loss, div = be.train_many(stacked, work._state.activations, net.loss, Xd, Yd, rates,
                                  factor, batch_size, orders)
        losses.append(loss)
        diverged.append(div)
        host = [(be.to_numpy(W), be.to_numpy(b)) for W, b in stacked]
        params += [[(np.array(W[k]), np.array(b[k])) for W, b in host]
                   for k in range(len(part))]
    return SweepResult(net, configs, np.concatenate(losses), np.concatenate(diverged), params)


def _orders(seed, epochs, n):
    rng = np.random.default_rng([seed, 1])
    return np.stack([rng.permutation(n) for _ in range(epochs)])


def _bytes_per_config(net, n, batch_size):
    rows = n if batch_size is None else batch_size
    weights = sum(layer.n_in * layer.n_out + layer.n_out for layer in net.layers)
    acts = rows * sum(layer.n_out for layer in net.layers)
    return np.dtype(net.dtype).itemsize * (3 * weights + 4 * acts) + 64
