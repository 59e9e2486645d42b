"""A sweep's checkpoint folder: one ``.npz`` per finished chunk (no pickle), written
atomically (a temporary file renamed into place), keyed by a hash of the sweep's arguments.

``DIR/sweep.json`` holds the key (sha256 of the architecture, loss, dtype, backend and
path, the data's bytes, every rate and seed, the epochs, the schedule's factors, batch
size, shuffling, recording and halving) and the chunking. ``DIR/r<rung>-c<chunk>.npz``
holds a chunk's losses, divergence epochs and parameters. A chunk file that is missing,
partial or does not match is simply trained again.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .io import write_atomically
from .sweep_chunk import ChunkResult

FORMAT = "nnkit-sweep-checkpoint"
VERSION = 1
KEY_FILE = "sweep.json"


def sweep_key(job, rates, seeds, X, Y, halving):
    """(sha256 hex, readable summary) of everything a chunk's numbers depend on.
    rates, seeds: (C,) per configuration; X, Y: the prepared host arrays."""
    h = hashlib.sha256()
    for arr in (X, Y, rates, seeds, job.factors):
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    summary = {"layers": [list(layer) for layer in job.layers], "loss": job.loss,
               "dtype": job.dtype, "backend": job.backend, "path": job.path,
               "configs": int(len(rates)), "epochs": job.epochs,
               "batch_size": job.batch_size, "shuffle": job.shuffle,
               "record_every": job.record_every,
               "halving": None if halving is None else list(halving),
               "update": None if job.update is None else [
                   job.update.rule, [float(h) for h in job.update.hyper], job.update.l2],
               "data": f"X {tuple(X.shape)}, Y {tuple(Y.shape)}"}
    h.update(json.dumps(summary, sort_keys=True).encode())
    summary["arrays_sha256"] = h.hexdigest()
    return h.hexdigest(), summary


def open_folder(folder, key, summary, chunking):
    """Create or reopen the checkpoint folder for this sweep; returns the chunking it was
    started with (``chunking`` for a new folder). A folder holding another sweep raises
    ValueError naming what differs."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"checkpoint: {folder!r} exists and is not a folder")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, KEY_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
    except FileNotFoundError:
        old = None
    except (ValueError, OSError) as exc:
        raise ValueError(f"checkpoint: {path!r} is not a readable nnkit sweep checkpoint "
                         f"({exc})") from None
    if old is not None:
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise ValueError(f"checkpoint: {folder!r} holds a {KEY_FILE} that is not an "
                             f"nnkit sweep checkpoint")
        if old.get("key") != key:
            before = old.get("arguments", {})
            diff = [f"{k} {before.get(k)!r} -> {v!r}" for k, v in summary.items()
                    if before.get(k) != v and k != "arrays_sha256"]
            what = "; ".join(diff) or ("the data, rates, seeds or schedule factors "
                                       "(same shapes, other values)")
            raise ValueError(f"checkpoint: {folder!r} holds a sweep with other arguments "
                             f"({what}); use another folder, or delete this one to start "
                             f"over")
        return dict(old["chunking"])
    _write_atomic(folder, KEY_FILE, json.dumps(
        {"format": FORMAT, "version": VERSION, "key": key, "arguments": summary,
         "chunking": chunking}, indent=1).encode())
    return dict(chunking)


def chunk_file(folder, rung, index):
    return os.path.join(folder, f"r{rung}-c{index:05d}.npz")


def write_chunk(folder, key, result):
    """Write ``result`` (a ChunkResult with arrays) as ``r<rung>-c<index>.npz``,
    atomically; returns its path."""
    meta = {"format": FORMAT, "version": VERSION, "key": key, "rung": result.rung,
            "index": result.index, "path": result.path}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
              "configs": np.asarray(result.configs, dtype=np.int64),
              "loss": result.loss, "first_loss": result.first_loss,
              "last_loss": result.last_loss, "diverged_epoch": result.diverged_epoch}
    for i, (W, b) in enumerate(result.params):
        arrays[f"W{i}"] = W
        arrays[f"b{i}"] = b
    name = os.path.basename(chunk_file(folder, result.rung, result.index))
    return _write_atomic(folder, name, arrays)


def read_chunk(folder, key, task):
    """The ChunkResult saved for ``task``, or None where there is none that matches
    (missing, unreadable, another sweep's, other configurations or shapes)."""
    path = chunk_file(folder, task.rung, task.index)
    if not os.path.isfile(path):
        return None
    job, c = task.job, len(task.configs)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("key") != key or meta.get("rung") != task.rung or \
                    meta.get("index") != task.index:
                return None
            if not np.array_equal(z["configs"], task.configs):
                return None
            r = len(job.recorded_epochs(task.e0, task.e1))
            want = {"loss": ((c, r), "f8"), "first_loss": ((c,), "f8"),
                    "last_loss": ((c,), "f8"), "diverged_epoch": ((c,), "i8")}
            sizes = job.spec.sizes
            for i in range(len(sizes) - 1):
                want[f"W{i}"] = ((c, sizes[i], sizes[i + 1]), job.dtype)
                want[f"b{i}"] = ((c, sizes[i + 1]), job.dtype)
            got = {}
            for name, (shape, dtype) in want.items():
                arr = z[name]
                if arr.shape != shape or arr.dtype != np.dtype(dtype):
                    return None
                got[name] = arr
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError):
        return None
    params = [(got[f"W{i}"], got[f"b{i}"]) for i in range(len(sizes) - 1)]
    return ChunkResult(task.rung, task.index, task.configs, got["loss"], got["first_loss"],
                       got["last_loss"], got["diverged_epoch"], params, meta.get("path"))


def write_from_worker(task, result):
    """On a worker: write ``result`` into the task's checkpoint folder when this machine
    sees that folder (same key), and return a receipt (no arrays) instead of the
    arrays; None when it cannot, so the arrays go back to the driver."""
    folder = task.checkpoint
    try:
        with open(os.path.join(folder, KEY_FILE), encoding="utf-8") as fh:
            if json.load(fh).get("key") != task.key:
                return None
        path = write_chunk(folder, task.key, result)
    except (OSError, ValueError):
        return None
    return ChunkResult(task.rung, task.index, task.configs, path=result.path, file=path)


def _write_atomic(folder, name, content):
    """``io.write_atomically`` to folder/name; returns the path."""
    return write_atomically(os.path.join(folder, name), content)
