"""``save``/``load``: a versioned ``.npz`` (no pickle), written atomically."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "nnkit-network"
VERSION = 1


def save(net, path):
    """Write ``net`` to ``path`` (.npz): format version, architecture, loss, dtype, params.

    The file is written to a temporary file in the same folder and renamed over
    ``path``, so a crash mid-write leaves any old file intact.
    """
    path = os.fspath(path)
    meta = {"format": FORMAT, "version": VERSION, "loss": net.loss, "dtype": net.dtype,
            "seed": net.seed,
            "layers": [[layer.n_in, layer.n_out, layer.activation] for layer in net.layers]}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for i, (W, b) in enumerate(net.get_params()):
        arrays[f"W{i}"] = W
        arrays[f"b{i}"] = b
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nnkit-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path, backend=None):
    """Read a network written by ``save``, onto ``backend`` (None: the current one).

    Raises ValueError for a truncated, foreign or newer-version file.
    """
    from .layers import Dense
    from .network import Network
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            files = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"path: {path!r} is not a readable nnkit file (truncated or not an "
                         f".npz: {exc})") from exc
    if "meta" not in files:
        raise ValueError(f"path: {path!r} is an .npz but not an nnkit network (no metadata)")
    try:
        meta = json.loads(files["meta"].tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"path: {path!r} has corrupt nnkit metadata") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"path: {path!r} is not an nnkit network file")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise ValueError(f"path: {path!r} has format version {meta.get('version')}; this nnkit "
                         f"reads up to version {VERSION} (upgrade nnkit)")
    layers = [Dense(n_in, n_out, act) for n_in, n_out, act in meta["layers"]]
    net = Network(layers, loss=meta["loss"], dtype=meta["dtype"], seed=meta.get("seed", 0),
                  backend=backend)
    params = []
    for i in range(len(layers)):
        if f"W{i}" not in files or f"b{i}" not in files:
            raise ValueError(f"path: {path!r} is missing the parameters of layer {i}")
        W, b = files[f"W{i}"], files[f"b{i}"]
        if W.dtype != np.dtype(meta["dtype"]) or b.dtype != np.dtype(meta["dtype"]):
            raise ValueError(f"path: {path!r} layer {i} has dtype {W.dtype}, expected "
                             f"{meta['dtype']}")
        params.append((W, b))
    net.set_params(params)  # checks shapes and finiteness
    return net
