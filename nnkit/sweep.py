"""``sweep``: train many configurations (learning rates x seeds) of one architecture
in one call, with a leading configuration axis on the backend."""
from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .config import get_backend
from .schedules import learning_rates
from .validation import check_epochs, check_positive_int

# Configurations are trained in chunks whose arrays fit in about this many bytes.
MEMORY_BUDGET = 512 * 2 ** 20
# A configuration whose final loss exceeds its first loss by more than this is blown_up.
BLOWUP_FACTOR = 10.0


@dataclass
class SweepResult:
    """Outcome of ``sweep``.

    configs: list of ``{"lr": ..., "seed": ...}``; loss: (n_configs, epochs) per-epoch
    training loss (NaN after a configuration diverged); diverged_epoch: (n_configs,)
    epoch of the first non-finite loss, -1 if none; diverged: diverged_epoch >= 0;
    blown_up: (n_configs,) bool, finite throughout but the last loss is more than
    ``BLOWUP_FACTOR`` (10) times the first (never set where diverged is); params[i]:
    configuration i's ``[(W, b), ...]`` as NumPy arrays (diverged ones keep their last
    finite values); stacked: ``[(W (n_configs, n_in, n_out), b (n_configs, n_out)), ...]``.
    """

    template: object
    configs: list
    loss: np.ndarray
    diverged_epoch: np.ndarray
    stacked: list

    @property
    def params(self):
        return _PerConfig(self.stacked)

    @property
    def diverged(self):
        return self.diverged_epoch >= 0

    @property
    def blown_up(self):
        """Finite, but the last loss exceeds ``BLOWUP_FACTOR`` x the first: a rate too large."""
        return ~self.diverged & (self.loss[:, -1] > BLOWUP_FACTOR * self.loss[:, 0])

    @property
    def final_loss(self):
        """Last finite-run loss per configuration (inf for diverged ones)."""
        out = self.loss[:, -1].copy()
        out[self.diverged] = np.inf
        return out

    def best(self, k=None):
        """Index of the configuration with the lowest final loss, or a list of the k best
        (k an integer >= 1; a k larger than the number of configurations gives them all)."""
        if k is not None:
            k = check_positive_int("k", k)
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

    Every argument is checked before any training, as ``fit`` checks it: lr a finite
    real number > 0 (Fraction, Decimal and NumPy scalars too; not bool) or a non-empty
    list of them; seed an int >= 0 or a non-empty list of them; 1 <= epochs <= 10**9;
    every epoch's lr x schedule factor finite and > 0.
    """
    from .network import Network
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a template nnkit.Network, got {type(net).__name__}")
    lrs = _rates(lr)
    seeds = [net.seed] if seed is None else _seeds(seed)
    epochs = check_epochs(epochs)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    factor = _schedule_factors(lr_schedule, epochs)
    _check_rates(lrs, factor)
    be = get_backend(backend if backend is not None else net.backend)
    work = Network(net.layers, loss=net.loss, dtype=net.dtype, seed=net.seed, backend=be)
    Xd, Yd = work.prepare(X, Y)
    n = Xd.shape[0]
    if batch_size is not None and batch_size >= n:
        batch_size = None
    configs = [{"lr": a, "seed": s} for s, a in itertools.product(seeds, lrs.tolist())]
    if chunk_size is None:
        chunk_size = max(1, MEMORY_BUDGET // _bytes_per_config(net, n, batch_size))
    losses, diverged, params = [], [], [[] for _ in net.layers]
    # Initial parameters per seed, stacked (n_seeds, ...), gathered per configuration.
    init = [Network(net.layers, loss=net.loss, dtype=net.dtype, seed=s,
                    backend="numpy").get_params() for s in seeds]
    init = [(np.stack([p[i][0] for p in init]), np.stack([p[i][1] for p in init]))
            for i in range(len(net.layers))]
    seed_of = np.repeat(np.arange(len(seeds)), len(lrs))  # configs: seeds x lrs, lr fastest
    all_rates = np.tile(np.asarray(lrs, dtype=np.float64), len(seeds))
    # One path for every chunk (the one planned for the whole sweep), so the results do
    # not depend on the chunking.
    path = be.plan("sweep", work.spec, n, batch_size, len(configs), epochs)
    lo = 0
    while lo < len(configs):
        size = chunk_size
        part = configs[lo:lo + size]
        which = seed_of[lo:lo + size]
        stacked = [(be.asarray(W[which], net.dtype), be.asarray(b[which], net.dtype))
                   for W, b in init]
        rates = all_rates[lo:lo + size]
        orders = None
        if batch_size is not None and shuffle:
            # The same host stream as Network.fit draws from for that seed.
            orders = np.stack([_orders(c["seed"], epochs, n) for c in part])
        with be.use_path(path):
            loss, div = be.train_many(stacked, work.spec.activations, net.loss, Xd, Yd, rates,
                                      factor, batch_size, orders)
        lo += len(part)
        losses.append(loss)
        diverged.append(div)
        for i, (W, b) in enumerate(stacked):
            params[i].append((np.asarray(be.to_numpy(W)), np.asarray(be.to_numpy(b))))
    stacked = [(np.concatenate([W for W, _ in layer]), np.concatenate([b for _, b in layer]))
               for layer in params]
    losses = losses[0] if len(losses) == 1 else np.concatenate(losses)  # (C, epochs): large
    return SweepResult(net, configs, losses, np.concatenate(diverged), stacked)


class _PerConfig:
    """``params[i]`` views into the stacked arrays, made on demand."""

    def __init__(self, stacked):
        self._stacked = stacked

    def __len__(self):
        return self._stacked[0][0].shape[0]

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"configuration {i} out of range for {len(self)}")
        return [(W[i], b[i]) for W, b in self._stacked]


def _real(value):
    """``float(value)`` for a real number (int, float, Fraction, Decimal, NumPy scalar or
    0-d array; not bool), else None. Too large to convert gives inf."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or \
            not isinstance(value, (numbers.Real, Decimal)):
        return None
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")
    except ValueError:  # Decimal('sNaN')
        return float("nan")


def _items(arg, value, what):
    """``value`` as a non-empty list: a scalar alone, or a flat sequence's items."""
    if isinstance(value, np.ndarray):
        if value.ndim > 1:
            raise ValueError(f"{arg}: expected {what}, got an array of shape {value.shape}")
        items = list(value.reshape(-1))
    elif isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        return [value]
    else:
        items = list(value)
    if not items:
        raise ValueError(f"{arg}: expected {what}, got an empty {type(value).__name__}")
    return items


def _rates(lr):
    """Learning rates as a 1-D float64 array, each finite and > 0 (checked at once)."""
    what = "a number or a 1-D list of numbers"
    if isinstance(lr, np.ndarray) and lr.ndim == 1 and lr.size and lr.dtype.kind in "iuf":
        rates = lr.astype(np.float64)  # the common case, checked at once
        if np.isfinite(rates).all() and (rates > 0).all():
            return rates
    rates = []
    for item in _items("lr", lr, what):
        if isinstance(item, (list, tuple, np.ndarray)):
            raise ValueError(f"lr: expected {what}, got {lr!r}")
        value = _real(item)
        if value is None or not np.isfinite(value) or value <= 0:
            shown = item if value is None else value
            raise ValueError(f"lr: expected finite numbers > 0, got {shown!r}")
        rates.append(value)
    return np.asarray(rates, dtype=np.float64)


def _seeds(seed):
    """Seeds as a non-empty list of ints >= 0."""
    seeds = _items("seed", seed, "an integer >= 0 or a non-empty list of them")
    for s in seeds:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seed: expected integers >= 0, got {s!r}")
    return [int(s) for s in seeds]


def _schedule_factors(lr_schedule, epochs):
    """The schedule's multiplier of every epoch (float64), checked as ``fit`` checks its
    rates: a factor that is not a real number is a TypeError naming lr_schedule."""
    try:
        return learning_rates(lr_schedule, 1.0, epochs)
    except TypeError as exc:
        if str(exc).startswith("lr_schedule"):
            raise
        raise TypeError(f"lr_schedule: expected real-number factors ({exc})") from None


def _check_rates(lrs, factor):
    """Every configuration's rate, lr * factor, finite and > 0 in every epoch (as fit)."""
    with np.errstate(all="ignore"):
        lo, hi = lrs.min() * factor, lrs.max() * factor
    bad = ~(np.isfinite(hi) & (lo > 0))
    if bad.any():
        e = int(np.argmax(bad))
        lr, rate = (float(lrs.min()), lo[e]) if lo[e] <= 0 else (float(lrs.max()), hi[e])
        raise ValueError(f"lr_schedule: gives the learning rate {float(rate)!r} (lr {lr!r} "
                         f"x factor {float(factor[e])!r}) at epoch {e}; every rate must be "
                         f"finite and > 0")


def _orders(seed, epochs, n):
    rng = np.random.default_rng([seed, 1])
    return np.stack([rng.permutation(n) for _ in range(epochs)])


def _bytes_per_config(net, n, batch_size):
    rows = n if batch_size is None else batch_size
    weights = sum(layer.n_in * layer.n_out + layer.n_out for layer in net.layers)
    acts = rows * sum(layer.n_out for layer in net.layers)
    return np.dtype(net.dtype).itemsize * (3 * weights + 4 * acts) + 64
