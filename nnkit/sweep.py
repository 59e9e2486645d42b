"""``sweep``: train many configurations (learning rates x seeds) of one architecture
in one call, with a leading configuration axis on the backend."""
from __future__ import annotations

import itertools
import numbers
import os
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .backends.base import UpdateSettings
from .config import get_backend
from .optim import check_l2, get_optimizer
from .schedules import learning_rates
from .validation import check_epochs, check_positive_int

# Configurations are trained in chunks whose arrays fit in about this many bytes.
MEMORY_BUDGET = 512 * 2 ** 20
# Default chunking: CHUNKS chunks, of at least CHUNK_MIN configurations.
CHUNKS = 16
CHUNK_MIN = 8192
# A configuration whose final loss exceeds its first loss by more than this is blown_up.
BLOWUP_FACTOR = 10.0


@dataclass
class SweepResult:
    """Outcome of ``sweep``.

    configs: list of ``{"lr": ..., "seed": ...}``; loss: (n_configs, len(loss_epochs))
    training loss at the recorded epochs ``loss_epochs`` (every epoch by default; NaN
    after a configuration diverged or was pruned); diverged_epoch: (n_configs,) epoch of
    the first non-finite loss, -1 if none; diverged: diverged_epoch >= 0; pruned_epoch:
    (n_configs,) the first epoch a successive-halving sweep did not train a configuration
    for, -1 if it trained to the end; first_loss: (n_configs,) epoch 0's loss; blown_up:
    (n_configs,) bool, finite throughout but the last loss is more than ``BLOWUP_FACTOR``
    (10) times the first (never set where diverged is); params[i]: configuration i's
    ``[(W, b), ...]`` as NumPy arrays (diverged ones keep their last finite values, pruned
    ones those of their last epoch); stacked: ``[(W (n_configs, n_in, n_out),
    b (n_configs, n_out)), ...]``; path: the backend path that trained them; net_epochs:
    configurations x epochs trained; chunks_run, chunks_reused: chunks trained now and
    taken from a checkpoint folder.
    """

    template: object
    configs: list
    loss: np.ndarray
    diverged_epoch: np.ndarray
    stacked: list
    loss_epochs: np.ndarray = None
    first_loss: np.ndarray = None
    pruned_epoch: np.ndarray = None
    path: str = None
    net_epochs: int = None
    chunks_run: int = None
    chunks_reused: int = None

    def __post_init__(self):
        C, R = self.loss.shape
        if self.loss_epochs is None:
            self.loss_epochs = np.arange(R)
        if self.first_loss is None:
            self.first_loss = self.loss[:, 0].copy() if R else np.full(C, np.nan)
        if self.pruned_epoch is None:
            self.pruned_epoch = np.full(C, -1, dtype=np.int64)

    @property
    def params(self):
        return _PerConfig(self.stacked)

    @property
    def diverged(self):
        return self.diverged_epoch >= 0

    @property
    def pruned(self):
        return self.pruned_epoch >= 0

    @property
    def blown_up(self):
        """Finite, but the last loss exceeds ``BLOWUP_FACTOR`` x the first: a rate too large."""
        with np.errstate(invalid="ignore"):
            return ~self.diverged & (self.loss[:, -1] > BLOWUP_FACTOR * self.first_loss)

    @property
    def final_loss(self):
        """Last-epoch loss per configuration (inf for diverged and pruned ones)."""
        out = self.loss[:, -1].copy()
        out[self.diverged | self.pruned] = np.inf
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
        return Network._like(self.template, self.configs[i]["seed"], self.params[i],
                             backend=backend or None)


def sweep(net, X, Y, lr, seed=None, epochs=100, batch_size=None, shuffle=False,
          lr_schedule=None, backend=None, chunk_size=None, executor=None, checkpoint=None,
          halving=None, min_epochs=None, record_every=None, progress=False, optimizer="sgd",
          l2=0.0):
    """Train every (lr, seed) in the Cartesian product of ``lr`` and ``seed`` together.

    ``net`` is a template Network (architecture, loss, dtype; its seed is used when
    ``seed`` is None). Each configuration equals a separate ``Network(..., seed=s)``
    ``.fit(X, Y, epochs, lr, batch_size, shuffle, lr_schedule)`` — NaN/inf stops only
    that configuration. Configurations are processed in chunks of ``chunk_size``
    (default: 1/16 of them but at least 8,192, at most what fits in about 512 MiB; the same
    whatever the executor).

    executor: None (this process), a ``concurrent.futures.Executor`` (e.g. a
    ``ProcessPoolExecutor`` with the "spawn" context, or a Dask ``Client.get_executor()``)
    or a ``dask.distributed.Client``: chunks run there, on the backend of that name, and
    the result is bit-identical to the in-process one with the same chunks (whatever the
    worker count or order of completion). A chunk that fails on every try
    raises ``nnkit.sweep_exec.SweepChunkError`` naming its configurations.
    checkpoint: a folder; each finished chunk is saved there (atomically, no pickle) and a
    rerun with the same arguments trains only the missing chunks (other arguments into
    the same folder: ValueError). halving: successive halving with ratio eta (int >= 2):
    all configurations train ``min_epochs`` (default epochs // eta**2), the best 1/eta
    by loss continue to min_epochs*eta, ..., up to ``epochs``; a survivor's row equals
    its row in the full sweep (on the paths whose numbers do not depend on the chunking:
    generated, batched, reference; on stacked up to rounding), the others get
    ``pruned_epoch``. record_every: k keeps the
    loss of epochs k-1, 2k-1, ... and the last (``loss_epochs``), "final" the last only.
    progress: a bar over finished chunks (None: when stdout is a terminal).
    optimizer, l2: as ``fit``'s; every configuration starts with fresh optimizer state
    (an optimizer other than plain sgd: chunks train all their epochs in one call, and
    no halving).

    Every argument is checked before any training, as ``fit`` checks it: lr a finite
    real number > 0 (Fraction, Decimal and NumPy scalars too; not bool) or a non-empty
    list of them; seed an int >= 0 or a non-empty list of them; 1 <= epochs <= 10**9;
    every epoch's lr x schedule factor finite and > 0.
    """
    from .network import Network
    from .sweep_chunk import SweepJob
    from .sweep_exec import make_runner
    from .sweep_run import run_sweep
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
    every = _record_every(record_every, epochs)
    rungs = _halving(halving, min_epochs, epochs)
    update = get_optimizer(optimizer).settings(check_l2(l2))
    if rungs is not None and update.rule != "sgd":
        raise ValueError(f"halving: not available with optimizer {optimizer!r} yet (its "
                         "state would restart at every rung); use plain sgd or no halving")
    if checkpoint is not None and not isinstance(checkpoint, (str, bytes, os.PathLike)):
        raise TypeError(f"checkpoint: expected a folder path, got {type(checkpoint).__name__}")
    if executor is None:
        be = get_backend(backend if backend is not None else net.backend)
        name = be.name
    else:
        be, name = _remote_backend(backend if backend is not None else net.backend)
    runner = make_runner(executor, be)
    work = Network(net.layers, loss=net.loss, dtype=net.dtype, seed=net.seed,
                   backend=be if executor is None else "numpy")
    work._use_optimizer(optimizer, update.l2)  # plans with the update rule and L2
    Xd, Yd = work.prepare(X, Y)
    n = Xd.shape[0]
    if batch_size is not None and batch_size >= n:
        batch_size = None
    configs = [{"lr": a, "seed": s} for s, a in itertools.product(seeds, lrs.tolist())]
    C = len(configs)
    seed_of = np.repeat(np.asarray(seeds, dtype=np.int64), len(lrs))  # seeds x lrs
    all_rates = np.tile(np.asarray(lrs, dtype=np.float64), len(seeds))
    # One path for every chunk (the one planned for the whole sweep), so the results do
    # not depend on the chunking; None: the workers plan it (the backend is not usable
    # here), for the whole sweep too.
    path = None if be is None else be.plan("sweep", work.spec, n, batch_size, C, epochs)
    job = SweepJob(name, tuple((d.n_in, d.n_out, d.activation) for d in net.layers),
                   work.spec, net.loss, net.dtype, factor, epochs, batch_size, bool(shuffle),
                   C, n, path, every, None if update == UpdateSettings() else update)
    chunking = {"chunk_size": chunk_size or _default_chunk(net, n, batch_size, C)}
    key = None
    if checkpoint is not None:
        from .sweep_checkpoint import open_folder, sweep_key
        host = (np.asarray(be.to_numpy(Xd)), np.asarray(be.to_numpy(Yd))) \
            if be is not None else (Xd, Yd)
        key, summary = sweep_key(job, all_rates, seed_of, *host, rungs)
        checkpoint = os.path.abspath(os.fsdecode(checkpoint))
        chunking = open_folder(checkpoint, key, summary, chunking)
    got = run_sweep(job, runner, Xd, Yd, all_rates, seed_of, configs, chunking, rungs,
                    checkpoint, key, progress)
    return SweepResult(net, configs, got.loss, got.diverged_epoch, got.stacked,
                       job.recorded_epochs(), got.first_loss, got.pruned_epoch, got.path,
                       got.net_epochs, got.chunks_run, got.chunks_reused)


def _remote_backend(backend):
    """(Backend or None, name) for chunks that run elsewhere: the backend is used here
    only to plan the path, and may be unusable here (GPU workers, CPU driver)."""
    from .backends import Backend, BackendUnavailableError
    if isinstance(backend, Backend):
        return backend, backend.name
    try:
        be = get_backend(backend)
    except BackendUnavailableError:
        return None, backend
    return be, be.name


def _record_every(value, epochs):
    """record_every as k >= 1 (None: every epoch; "final": the last only)."""
    if value is None:
        return 1
    if value == "final":
        return epochs
    if isinstance(value, str):
        raise ValueError(f"record_every: expected an integer >= 1 or 'final', got {value!r}")
    return check_positive_int("record_every", value)


def _halving(halving, min_epochs, epochs):
    """None, or (eta, min_epochs) for successive halving."""
    if halving is None:
        if min_epochs is not None:
            raise ValueError("min_epochs: applies to successive halving only; pass halving=ETA "
                             "too")
        return None
    eta = check_positive_int("halving", halving, minimum=2)
    if min_epochs is None:
        min_epochs = max(1, epochs // eta ** 2)
    return eta, check_positive_int("min_epochs", min_epochs, maximum=epochs)


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


def _default_chunk(net, n, batch_size, configs):
    """Configurations per chunk: at least ``CHUNK_MIN``, else enough for ``CHUNKS``
    chunks (work for several workers), at most what fits in ``MEMORY_BUDGET``. It depends
    on the sweep alone, never on the executor: the stacked path's BLAS GEMMs may round a
    configuration differently in chunks of other sizes, so the same chunks everywhere is
    what makes every executor's result bit-identical to the in-process one."""
    fits = max(1, MEMORY_BUDGET // _bytes_per_config(net, n, batch_size))
    return min(fits, max(CHUNK_MIN, -(-configs // CHUNKS)))


def _bytes_per_config(net, n, batch_size):
    rows = n if batch_size is None else batch_size
    weights = sum(layer.n_in * layer.n_out + layer.n_out for layer in net.layers)
    acts = rows * sum(layer.n_out for layer in net.layers)
    return np.dtype(net.dtype).itemsize * (3 * weights + 4 * acts) + 64
