"""Where a sweep's chunks run: in this process, on a ``concurrent.futures.Executor``
(``ProcessPoolExecutor``, a Dask ``Client.get_executor()``, ...), or on a Dask
``distributed.Client`` (data scattered once, chunks submitted with retries, results
gathered as they finish). Dask is imported only when a Dask client is given.

Each runner's ``run(tasks, X, Y)`` yields ``ChunkResult``s in the order they finish; the
caller merges them by configuration index, so the order does not matter.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import secrets

from .sweep_chunk import train_chunk

# Attempts per chunk on an executor (Dask retries a lost or failed task itself).
RETRIES = 2


class SweepChunkError(RuntimeError):
    """A chunk failed on every attempt. ``configs``: its configurations (``{"lr", "seed"}``
    dicts); ``chunk``: ``"r<rung>-c<index>"``; the worker's exception is ``__cause__``."""

    def __init__(self, message, configs=(), chunk=None):
        super().__init__(message)
        self.configs = list(configs)
        self.chunk = chunk


def is_dask_client(obj):
    """True for a ``distributed.Client`` (checked without importing dask)."""
    return type(obj).__module__.startswith("distributed") and \
        all(hasattr(obj, a) for a in ("scatter", "submit", "gather", "scheduler_info"))


def make_runner(executor, backend):
    """The runner for ``sweep(executor=...)``: None runs in this process on ``backend``
    (a Backend object)."""
    if executor is None:
        return InProcess(backend)
    if is_dask_client(executor):
        return DaskClient(executor)
    if isinstance(executor, cf.Executor):
        return OnExecutor(executor)
    raise TypeError(f"executor: expected None, a concurrent.futures.Executor or a "
                    f"dask.distributed.Client, got {type(executor).__name__}")


def warm_task(task):
    """A one-configuration, one-epoch copy of ``task``: compiles (or loads) the sweep's
    kernels on a worker before the real chunks arrive, so that workers do not compile
    the same new kernel at once into one cache."""
    params = None if task.params is None else [(W[:1], b[:1]) for W, b in task.params]
    return dataclasses.replace(task, rung=-1, index=0, configs=task.configs[:1],
                               rates=task.rates[:1], seeds=task.seeds[:1], e0=0, e1=1,
                               params=params, checkpoint=None)


def _describe(task, configs):
    """'configurations 3..9 (lr 0.1 .. 5, seeds 0, 1)' for an error message."""
    idx = [int(i) for i in task.configs]
    lrs = sorted({configs[i]["lr"] for i in idx})
    seeds = sorted({configs[i]["seed"] for i in idx})
    span = f"{idx[0]}..{idx[-1]}" if len(idx) > 1 else f"{idx[0]}"
    shown_seeds = ", ".join(map(str, seeds[:8])) + (", ..." if len(seeds) > 8 else "")
    return (f"configuration{'s' if len(idx) > 1 else ''} {span} (lr {lrs[0]:.4g} .. "
            f"{lrs[-1]:.4g}, seed{'s' if len(seeds) > 1 else ''} {shown_seeds})")


def chunk_error(task, configs, attempts, exc):
    named = [configs[int(i)] for i in task.configs]
    return SweepChunkError(
        f"sweep: chunk {task.name} ({_describe(task, configs)}, epochs {task.e0}.."
        f"{task.e1 - 1}) failed after {attempts} attempt{'s' * (attempts > 1)}: "
        f"{type(exc).__name__}: {exc}", named, task.name)


class InProcess:
    """Chunks one after another in this process, on the driver's backend object."""

    def __init__(self, backend):
        self.backend = backend

    def run(self, tasks, X, Y, configs):
        for task in tasks:
            yield train_chunk(task, X, Y, backend=self.backend)


class OnExecutor:
    """Any ``concurrent.futures.Executor``: every chunk submitted, failures resubmitted
    up to ``RETRIES`` times (a broken process pool cannot be: its error is raised)."""

    def __init__(self, executor):
        self.executor = executor
        self._warm = set()

    def run(self, tasks, X, Y, configs):
        tasks = list(tasks)
        if not tasks:
            return
        key = (id(tasks[0].job), id(X))
        if key not in self._warm:  # one chunk first: the kernels compile once
            try:
                self.executor.submit(train_chunk, warm_task(tasks[0]), X, Y).result()
            except Exception as exc:
                raise chunk_error(tasks[0], configs, 1, exc) from exc
            self._warm.add(key)
        attempts = {}
        pending = {}
        try:
            for t in tasks:
                pending[self.executor.submit(train_chunk, t, X, Y)] = t
                attempts[t.name] = 1
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    t = pending.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        yield fut.result()
                        continue
                    broken = type(exc).__name__ == "BrokenProcessPool"
                    if attempts[t.name] > RETRIES or broken:
                        raise chunk_error(t, configs, attempts[t.name], exc) from exc
                    attempts[t.name] += 1
                    pending[self.executor.submit(train_chunk, t, X, Y)] = t
        finally:
            for fut in pending:
                fut.cancel()


class DaskClient:
    """A ``dask.distributed.Client``: X and Y scattered once (``hash=False``), one task per
    chunk (Dask retries it ``RETRIES`` times and re-runs the tasks of a worker that dies),
    results gathered as they finish, straight from the workers where they share this
    machine."""

    def __init__(self, client):
        self.client = client
        self._data = None
        self._warm = set()

    def _scattered(self, X, Y, again=False):
        """X and Y on every worker (so a worker that dies does not take the only copy)."""
        lost = again and any(f.status != "finished" for f in self._data[2])
        if lost or self._data is None or self._data[0] is not X or self._data[1] is not Y:
            futures = self.client.scatter([X, Y], hash=False, broadcast=True)
            self._data = (X, Y, futures)
        return self._data[2]

    def _direct(self):
        """Gather straight from the workers when they all run on this machine."""
        import socket
        local = {"127.0.0.1", "localhost", "::1", socket.gethostname()}
        try:
            local.add(socket.gethostbyname(socket.gethostname()))
        except OSError:
            pass
        hosts = {info.get("host") for info in
                 self.client.scheduler_info().get("workers", {}).values()}
        return bool(hosts) and hosts <= local

    def _warm_up(self, task, X, Y, configs):
        """The warm-up chunk once on one worker per machine, all machines at once."""
        per_host = {}
        for addr, info in self.client.scheduler_info().get("workers", {}).items():
            per_host.setdefault(info.get("host"), addr)
        warm = warm_task(task)
        futures = [self.client.submit(train_chunk, warm, X, Y, workers=[addr], pure=False,
                                      allow_other_workers=True)
                   for addr in per_host.values()]
        for fut in futures:
            try:
                fut.result()
            except Exception as exc:
                raise chunk_error(task, configs, 1, exc) from exc

    def run(self, tasks, X, Y, configs):
        from distributed import as_completed
        tasks = list(tasks)
        if not tasks:
            return
        Xf, Yf = self._scattered(X, Y)
        key = (id(tasks[0].job), id(X))
        if key not in self._warm:
            self._warm_up(tasks[0], Xf, Yf, configs)
            self._warm.add(key)
        token = secrets.token_hex(4)
        by_key, tries = {}, {}

        def submit(t, data):
            tries[t.name] = tries.get(t.name, 0) + 1
            fut = self.client.submit(train_chunk, t, *data, pure=False, retries=RETRIES,
                                     key=f"nnkit-sweep-{token}-{t.name}-{tries[t.name]}")
            by_key[fut.key] = t
            return fut

        futures = [submit(t, (Xf, Yf)) for t in tasks]
        stream = as_completed(futures)
        direct = self._direct()
        try:
            for fut in stream:
                t = by_key[fut.key]
                if fut.status == "finished":
                    yield self.client.gather(fut, direct=direct)
                    fut.release()
                    continue
                if fut.status == "error" or tries[t.name] > RETRIES:
                    exc = fut.exception() if fut.status == "error" else \
                        RuntimeError(f"the Dask task was {fut.status}")
                    raise chunk_error(t, configs, tries[t.name] * (RETRIES + 1), exc) \
                        from exc
                # cancelled or lost (its data went with a worker): scatter again, resubmit
                again = submit(t, self._scattered(X, Y, again=True))
                futures.append(again)
                stream.add(again)
        finally:
            self.client.cancel([f for f in futures if not f.done()])
