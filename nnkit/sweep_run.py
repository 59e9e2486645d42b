"""The driver of a sweep: cut the configurations into chunks, run them (``sweep_exec``),
skip the ones a checkpoint folder already holds, merge results by configuration index,
and, for successive halving, pick each rung's survivors and continue them."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .sweep_chunk import ChunkTask


@dataclass
class SweepArrays:
    """The merged outcome: loss (C, r) at the recorded epochs, first_loss (C,),
    diverged_epoch (C,), pruned_epoch (C,) (-1: trained to the end), stacked params,
    the path that ran, and counts (chunks trained and reused, net-epochs trained)."""

    loss: np.ndarray
    first_loss: np.ndarray
    diverged_epoch: np.ndarray
    pruned_epoch: np.ndarray
    stacked: list
    path: str | None
    chunks_run: int
    chunks_reused: int
    net_epochs: int
    single_rung: bool = True


def rung_ends(epochs, halving):
    """The epochs at which each rung ends: min_epochs, min_epochs*eta, ... (each one kept
    while eta times it is still <= epochs, so that no rung is much shorter than the one
    before), then epochs. ``halving`` None or (eta, min_epochs)."""
    if halving is None:
        return [epochs]
    eta, e = halving
    ends = []
    while e < epochs and (not ends or e * eta <= epochs):
        ends.append(e)
        e *= eta
    return ends + [epochs]


def chunk_bounds(n, chunk_size):
    """[(lo, hi), ...] cutting n items into chunks of chunk_size (the last one shorter)."""
    return [(lo, min(lo + chunk_size, n)) for lo in range(0, n, chunk_size)]


def run_sweep(job, runner, X, Y, rates, seeds, configs, chunking, halving=None,
              checkpoint=None, key=None, progress=None):
    """Train every configuration (rates (C,), seeds (C,)); returns ``SweepArrays``.

    chunking: {"chunk_size"}; checkpoint: a folder already opened
    (``sweep_checkpoint.open_folder``) with its ``key``.
    """
    from .sweep_checkpoint import read_chunk, write_chunk
    C = len(rates)
    recorded = job.recorded_epochs()
    out = SweepArrays(None, np.full(C, np.nan),
                      np.full(C, -1, dtype=np.int64), np.full(C, -1, dtype=np.int64),
                      None, None, 0, 0, 0, single_rung=halving is None)
    rung_loss = np.full(C, np.nan)
    paths = set()
    ends = rung_ends(job.epochs, halving)
    alive = np.arange(C)
    bar = _bar(progress, len(chunk_bounds(C, **chunking)))
    e0 = 0
    try:
        for rung, e1 in enumerate(ends):
            tasks = []
            for index, (lo, hi) in enumerate(chunk_bounds(len(alive), **chunking)):
                idx = alive[lo:hi]
                params = None if out.stacked is None else \
                    [(W[idx], b[idx]) for W, b in out.stacked]
                tasks.append(ChunkTask(job, rung, index, idx, rates[idx], seeds[idx], e0, e1,
                                       params, checkpoint, key))
            if rung and bar is not None:
                bar.total += len(tasks)
                bar.refresh()
            todo = []
            for task in tasks:
                saved = None if checkpoint is None else read_chunk(checkpoint, key, task)
                if saved is None:
                    todo.append(task)
                    continue
                _merge(out, recorded, task, saved, rung_loss, paths)
                out.chunks_reused += 1
                if bar is not None:
                    bar.update(1)
            by_name = {t.name: t for t in todo}
            for result in runner.run(todo, X, Y, configs):
                task = by_name[f"r{result.rung}-c{result.index:05d}"]
                if result.file is not None:  # the worker wrote it into the folder
                    result = read_chunk(checkpoint, key, task)
                    if result is None:
                        raise RuntimeError(f"sweep: a worker wrote chunk {task.name} into "
                                           f"{checkpoint!r}, but this process cannot read "
                                           f"it there")
                elif checkpoint is not None:
                    write_chunk(checkpoint, key, result)
                _merge(out, recorded, task, result, rung_loss, paths)
                out.chunks_run += 1
                if bar is not None:
                    bar.update(1)
            out.net_epochs += len(alive) * (e1 - e0)
            if rung + 1 < len(ends):
                alive = _survivors(alive, out, rung_loss, halving[0], e1)
                if not len(alive):
                    break
            e0 = e1
    finally:
        if bar is not None:
            bar.close()
    if len(paths) > 1:
        warnings.warn(f"sweep: chunks ran different paths {sorted(paths)} (workers with other "
                      f"hardware or software); results are not bit-identical across them",
                      RuntimeWarning, stacklevel=3)
    out.path = min(paths) if paths else job.path
    if out.loss is None:
        out.loss = np.full((C, len(recorded)), np.nan)
    return out


def _merge(out, recorded, task, result, rung_loss, paths):
    """Write one chunk's result into the merged arrays, by configuration index."""
    idx = task.configs
    C = len(out.first_loss)
    whole = len(idx) == C and idx[0] == 0 and idx[-1] == C - 1  # sorted, so all of them
    rows = slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == len(idx) else idx
    if out.stacked is None and whole:
        out.stacked = result.params  # one chunk: no copy
    else:
        if out.stacked is None:
            out.stacked = [(np.empty((C,) + W.shape[1:], W.dtype),
                            np.empty((C,) + b.shape[1:], b.dtype)) for W, b in result.params]
        for (W, b), (Wr, br) in zip(out.stacked, result.params):
            W[rows] = Wr
            b[rows] = br
    R = len(recorded)
    lo = int(np.searchsorted(recorded, task.e0))
    hi = lo + result.loss.shape[1]
    if out.loss is None and whole and lo == 0 and hi == R:
        out.loss = result.loss  # one chunk, every column: no copy
    elif hi > lo:
        if out.loss is None:  # every entry is written unless some rows stop early
            out.loss = np.empty((C, R)) if out.single_rung else np.full((C, R), np.nan)
        out.loss[rows, lo:hi] = result.loss
    first = ~np.isnan(result.first_loss)
    out.first_loss[idx[first]] = result.first_loss[first]
    hit = result.diverged_epoch >= 0
    out.diverged_epoch[idx[hit]] = result.diverged_epoch[hit]
    rung_loss[idx] = result.last_loss
    if result.path is not None:
        paths.add(result.path)


def _survivors(alive, out, rung_loss, eta, end):
    """The best 1/eta (at least one) of the configurations still training (not diverged),
    by their loss at epoch ``end - 1``; the others get pruned_epoch = end."""
    training = alive[out.diverged_epoch[alive] < 0]
    if not len(training):
        return training
    score = np.where(np.isfinite(rung_loss[training]), rung_loss[training], np.inf)
    keep = max(1, len(training) // eta)
    best = np.sort(training[np.argsort(score, kind="stable")[:keep]])
    out.pruned_epoch[np.setdiff1d(training, best)] = end
    return best


def _bar(progress, total):
    """A tqdm bar over finished chunks when asked (True), or when None and stdout is a
    terminal and there is more than one chunk."""
    import sys
    if progress is None:
        progress = sys.stdout.isatty() and total > 1
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="chunk", desc="sweep", leave=False)
