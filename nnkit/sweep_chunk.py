"""One chunk of a sweep: a deterministic, picklable unit of work and the function that
trains it (in the driving process or on any worker).

A ``ChunkTask`` names its configurations by their global indices and carries their base
rates and seeds, the epoch range ``[e0, e1)`` to train, and their parameters (None: the
seeds' initial parameters, drawn in the worker). It holds no ``Network`` (not picklable):
the architecture travels as a ``SweepJob``, plain tuples and arrays. ``train_chunk`` runs
the backend's fused ``train_many`` on the path planned for the whole sweep, so a chunk's
numbers do not depend on which chunk it is in, where it runs, or when.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Per train_many call, the (configs, epochs) float64 loss block a worker holds when it keeps
# only some epochs' losses (record_every > 1): longer chunks are trained in epoch blocks.
LOSS_BLOCK_BYTES = 64 * 2 ** 20
ORDER_BLOCK_BYTES = 64 * 2 ** 20  # shuffled mini-batches: sample orders per epoch block


@dataclass(frozen=True)
class SweepJob:
    """What every chunk of one sweep shares (small: no per-configuration arrays).

    layers: ((n_in, n_out, activation), ...); spec: the backends' ``ModelSpec`` (kernel
    activations); factors: (epochs,) float64 schedule factors; batch_size None is full
    batch (already None where >= the rows); path: the planned sweep path, or None to plan
    it on the worker for ``configs`` x ``epochs``; record_every: keep the loss of epochs
    k-1, 2k-1, ... and the last.
    """

    backend: str
    layers: tuple
    spec: object
    loss: str
    dtype: str
    factors: np.ndarray
    epochs: int
    batch_size: int | None
    shuffle: bool
    configs: int
    rows: int
    path: str | None
    record_every: int
    update: object = None  # the backends' UpdateSettings; None: plain sgd

    def recorded_epochs(self, e0=0, e1=None):
        """The recorded epoch indices in [e0, e1) (int64, ascending)."""
        e1 = self.epochs if e1 is None else e1
        k, last = self.record_every, self.epochs - 1
        first = e0 + (-(e0 + 1)) % k  # the first e >= e0 with (e + 1) % k == 0
        epochs = np.arange(first, e1, k, dtype=np.int64)
        if e0 <= last < e1 and (not epochs.size or epochs[-1] != last):
            epochs = np.append(epochs, last)
        return epochs


@dataclass
class ChunkTask:
    """Configurations ``configs`` (global indices, (c,) int64) with base ``rates`` (c,)
    and ``seeds`` (c,), trained over epochs [e0, e1) from ``params`` ([(W (c, i, o),
    b (c, o)), ...] host arrays; None: the seeds' initial parameters). ``rung`` and
    ``index`` name it (checkpoint files, errors); ``checkpoint``: a folder the worker
    writes its result to when it can see it (then it returns only a receipt)."""

    job: SweepJob
    rung: int
    index: int
    configs: np.ndarray
    rates: np.ndarray
    seeds: np.ndarray
    e0: int
    e1: int
    params: list | None = None
    checkpoint: str | None = None
    key: str | None = None

    @property
    def name(self):
        return f"r{self.rung}-c{self.index:05d}"


@dataclass
class ChunkResult:
    """What a chunk gives back (host NumPy arrays, c configurations).

    loss: (c, r) the recorded epochs' losses in [e0, e1); first_loss: (c,) epoch 0's
    loss (NaN unless e0 == 0); last_loss: (c,) epoch e1-1's loss (NaN where diverged
    before); diverged_epoch: (c,) global epoch, -1 if none; params: [(W (c, i, o),
    b (c, o)), ...]; path: the path that ran. ``file``: set (and the arrays None) when the
    worker wrote the result to the checkpoint folder itself.
    """

    rung: int
    index: int
    configs: np.ndarray
    loss: np.ndarray | None = None
    first_loss: np.ndarray | None = None
    last_loss: np.ndarray | None = None
    diverged_epoch: np.ndarray | None = None
    params: list | None = None
    path: str | None = None
    file: str | None = None


def initial_params(layers, seeds, dtype):
    """[(W (c, i, o), b (c, o)), ...] of dtype: each seed's initial parameters, exactly
    as ``Network(layers, seed=s)`` draws them (host generator, float64, then cast)."""
    from .layers import Dense
    dense = [Dense(n_in, n_out, act) for n_in, n_out, act in layers]
    unique, which = np.unique(np.asarray(seeds, dtype=np.int64), return_inverse=True)
    per_seed = []
    for s in unique.tolist():
        rng = np.random.default_rng(s)
        per_seed.append([layer.init_params(rng) for layer in dense])
    out = []
    for i in range(len(dense)):
        W = np.stack([p[i][0] for p in per_seed]).astype(dtype)
        b = np.stack([p[i][1] for p in per_seed]).astype(dtype)
        out.append((W[which], b[which]))
    return out


def sample_orders(seed, e0, e1, n):
    """(e1 - e0, n) int64: the sample orders of epochs [e0, e1) that ``Network.fit``
    with ``shuffle=True`` draws for ``seed`` (the same host stream)."""
    rng = np.random.default_rng([int(seed), 1])
    for _ in range(e0):
        rng.permutation(n)
    return np.stack([rng.permutation(n) for _ in range(e1 - e0)])


def _shared_orders(seeds, e0, e1, n):
    """(c, e1 - e0, n) int64: ``sample_orders`` of each of ``seeds``, each distinct seed's
    drawn once (configurations sharing a seed share their orders)."""
    unique, which = np.unique(np.asarray(seeds, dtype=np.int64), return_inverse=True)
    if len(unique) == len(which):
        return np.stack([sample_orders(s, e0, e1, n) for s in seeds])
    per_seed = np.stack([sample_orders(s, e0, e1, n) for s in unique.tolist()])
    return per_seed[which.reshape(-1)]


# One worker process trains many chunks of the same sweep: its device copy of the data.
_DATA = {}


def _device_data(be, X, Y, dtype):
    """X, Y as arrays of ``be`` (the last pair converted is kept, so a worker converts a
    sweep's data once, not per chunk)."""
    if be.is_own_array(X) and be.is_own_array(Y) and X.dtype == dtype and Y.dtype == dtype:
        return X, Y
    key = (be.name, id(X), id(Y), dtype)
    got = _DATA.get(key)
    if got is None or got[0] is not X or got[1] is not Y:
        _DATA.clear()
        got = _DATA[key] = (X, Y, be.asarray(X, dtype), be.asarray(Y, dtype))
    return got[2], got[3]


def train_chunk(task, X, Y, backend=None):
    """Train ``task`` on (X (n, i), Y (n, o)); returns a ``ChunkResult``. ``backend``: a
    Backend object (in-process); None resolves ``task.job.backend`` by name (workers)."""
    from .config import get_backend
    job = task.job
    be = backend if backend is not None else get_backend(job.backend)
    Xd, Yd = _device_data(be, X, Y, np.dtype(job.dtype))
    n = Xd.shape[0]
    path = job.path or be.plan("sweep", job.spec, n, job.batch_size, job.configs, job.epochs)
    host = task.params if task.params is not None else \
        initial_params(job.layers, task.seeds, job.dtype)
    params = [(be.asarray(W, job.dtype), be.asarray(b, job.dtype)) for W, b in host]
    c = len(task.configs)
    keep = job.recorded_epochs(task.e0, task.e1)
    loss = None  # (c, len(keep)), allocated unless one call gives it whole
    first = np.full(c, np.nan)
    last = np.full(c, np.nan)
    diverged = np.full(c, -1, dtype=np.int64)
    step = task.e1 - task.e0
    # Bounded blocks of epochs (the arithmetic is the same), except with an optimizer,
    # whose state lives for one train_many call: its chunks train all their epochs at once.
    stateful = job.update is not None and job.update.rule != "sgd"
    if job.record_every > 1 and not stateful:  # bounded loss blocks
        step = max(1, min(step, LOSS_BLOCK_BYTES // (8 * c)))
    if job.batch_size is not None and job.shuffle and not stateful:  # bounded sample orders
        step = max(1, min(step, ORDER_BLOCK_BYTES // (8 * c * n)))
    alive = np.arange(c)
    for start in range(task.e0, task.e1, step):
        stop = min(start + step, task.e1)
        part = params if len(alive) == c else \
            [(W[alive], b[alive]) for W, b in params]  # copies; written back below
        orders = None
        if job.batch_size is not None and job.shuffle:
            orders = _shared_orders(task.seeds[alive], start, stop, n)
        with be.use_path(path):
            block, div = be.train_many(part, job.spec.activations, job.loss, Xd, Yd,
                                       task.rates[alive], job.factors[start:stop],
                                       job.batch_size, orders, job.update)
        if part is not params:
            for (W, b), (Wp, bp) in zip(params, part):
                W[alive] = Wp
                b[alive] = bp
        if len(block) == c and len(keep) == stop - start == task.e1 - task.e0:
            loss = block  # every epoch of the whole range recorded: no copy
        else:
            if loss is None:
                loss = np.full((c, len(keep)), np.nan)
            cols = keep[(keep >= start) & (keep < stop)]
            loss[np.ix_(alive, np.searchsorted(keep, cols))] = block[:, cols - start]
        if start == 0:
            first[alive] = block[:, 0]
        if stop == task.e1:
            last[alive] = block[:, -1]
        hit = div >= 0
        if hit.any():
            diverged[alive[hit]] = div[hit] + start
            alive = alive[~hit]
            if not len(alive):
                break
    host = [(np.asarray(be.to_numpy(W)), np.asarray(be.to_numpy(b))) for W, b in params]
    result = ChunkResult(task.rung, task.index, task.configs, loss, first, last, diverged,
                         host, path)
    if task.checkpoint is not None and backend is None:
        from .sweep_checkpoint import write_from_worker
        receipt = write_from_worker(task, result)
        if receipt is not None:
            return receipt
    return result

