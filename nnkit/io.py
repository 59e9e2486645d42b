"""``save``/``load``: a versioned ``.npz`` (no pickle), written atomically.

The file is a zip (``numpy.savez``) of ``.npy`` members: ``meta.npy`` (the UTF-8 JSON
metadata as a uint8 vector) and ``W0.npy``, ``b0.npy``, ``W1.npy``, ... (the parameters).
Version 2 adds the optimizer state: metadata key ``optimizer`` (its name and settings, the
L2 coefficient and the update count t) and members ``s1_W0.npy``, ``s1_b0.npy``, ...
(``s2_...`` for Adam's second moments), shaped like the parameters. Version 1 files (no
optimizer state) still load.

``load`` does not trust the file. It checks, in this order and before allocating any
parameter array: the metadata schema (format, a known version, loss, dtype, and at most
``MAX_LAYERS`` layers of at most ``MAX_UNITS`` units each, chained consistently); then each
parameter member's ``.npy`` header (dtype and shape as the metadata declares) and zip entry
(its uncompressed size is exactly what that header and shape need; stored or deflated,
not encrypted, inside the file). The members it reads add up to at most
``MAX_INFLATE_RATIO`` times the file's size plus ``INFLATE_SLACK`` bytes, so a small file
cannot make it decompress or allocate much. Other members are never read. Nothing is
unpickled. Every malformed file raises ``ValueError`` naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

FORMAT = "nnkit-network"
VERSION = 2
KNOWN_VERSIONS = (1, 2)      # every format version this nnkit reads
MAX_LAYERS = 1_000           # layers in a loadable network
MAX_UNITS = 1_000_000        # inputs/outputs of one loadable layer
MAX_META_BYTES = 1 << 20     # size of the JSON metadata
MAX_INFLATE_RATIO = 10       # members read <= ratio * file size + slack
INFLATE_SLACK = 16 << 20
_NPY_HEADER_MAX = 10_000     # numpy's own limit on an .npy header
_REQUIRED_KEYS = ("format", "version", "loss", "dtype", "layers")
_OPTIONAL_KEYS = ("seed", "optimizer")   # absent: seed 0, no optimizer state
_OPTIMIZER_KEYS = {"sgd": ("momentum", "nesterov"), "adam": ("beta1", "beta2", "eps")}


class _BadFile(ValueError):
    """What is wrong with the file; ``load`` prefixes the file's name."""


# ------------------------------------------------------------------ save
def save(net, path):
    """Write ``net`` to ``path`` (.npz): format version, architecture, loss, dtype, params.

    The file is written to a temporary file in the same folder and renamed over
    ``path``, so a crash mid-write leaves any old file intact. The new file gets the
    mode the umask gives any newly created file (0644 under umask 022).
    """
    path = os.fspath(path)
    meta = {"format": FORMAT, "version": VERSION, "loss": net.loss, "dtype": net.dtype,
            "seed": net.seed,
            "layers": [[layer.n_in, layer.n_out, layer.activation] for layer in net.layers]}
    optimizer, l2, t, slots = net.get_optimizer_state()
    if optimizer is not None:
        meta["optimizer"] = {"name": "adam" if type(optimizer).__name__ == "Adam" else "sgd",
                             **{k: getattr(optimizer, k) for k in _OPTIMIZER_KEYS[
                                 "adam" if type(optimizer).__name__ == "Adam" else "sgd"]},
                             "l2": l2, "t": t}
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for i, (W, b) in enumerate(net.get_params()):
        arrays[f"W{i}"] = W
        arrays[f"b{i}"] = b
    for (name, _, _), slot in zip(_slot_members(meta), slots):
        arrays[name[:-4]] = slot
    write_atomically(path, arrays)


def write_atomically(path, content):
    """Write ``content`` (bytes, or a dict of arrays saved with ``np.savez``, no pickle)
    to ``path`` through a new temporary file in the same folder that is fsynced and
    renamed over it: a reader sees the old file or the new one, never a part. The file
    gets the mode the umask gives new files. Returns ``path``."""
    fd, tmp = _create_temp_file(os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(content, bytes):
                fh.write(content)
            else:
                np.savez(fh, **content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _create_temp_file(folder):
    """Create a new, uniquely named file in ``folder``; return ``(fd, path)``.

    Unlike ``tempfile.mkstemp`` (always 0600) it asks for mode 0666, so the
    kernel applies the umask exactly as for any new file. ``O_EXCL`` makes sure
    it is a new file, never an existing file or a planted symlink.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".nnkit-{secrets.token_hex(8)}.npz.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"path: could not create a temporary file in {folder!r}")


# ------------------------------------------------------------------ load
def load(path, backend=None):
    """Read a network written by ``save``, onto ``backend`` (None: the current one).

    Raises ValueError naming ``path`` for any file that is not a valid nnkit
    network (not a zip, truncated, foreign, malformed, or a newer format version);
    OSError (e.g. FileNotFoundError) where the file cannot be opened at all.
    """
    from .config import get_backend
    from .network import Network

    path = os.fspath(path)
    backend = get_backend(backend)       # a bad backend is the caller's error, not the file's
    with open(path, "rb") as fh:
        try:
            meta, params, slots = _read_network(fh)
            net = Network(_layers(meta), loss=meta["loss"], dtype=meta["dtype"],
                          seed=meta.get("seed", 0), backend=backend)
            net.set_params(params)           # also refuses NaN/inf parameters
            if "optimizer" in meta:
                opt = meta["optimizer"]
                if not all(np.isfinite(a).all() for a in slots):
                    raise ValueError("optimizer state: contains NaN or infinite values")
                net.set_optimizer_state(_optimizer_of(opt), opt["l2"], opt["t"], slots)
        except _BadFile as exc:
            raise ValueError(f"path: {path!r} {exc}") from None
        except (ValueError, TypeError) as exc:   # Network/set_params on checked input
            raise ValueError(f"path: {path!r} holds an invalid network: {exc}") from None
    return net


def _read_network(fh):
    """Return ``(meta, params)`` from the open file ``fh``; raise _BadFile if malformed."""
    size = os.fstat(fh.fileno()).st_size
    try:
        with _open_zip(fh) as zf:
            budget = _Budget(MAX_INFLATE_RATIO * size + INFLATE_SLACK)
            meta = _read_meta(zf, size, budget)
            _check_meta(meta)
            members = _param_members(meta) + _slot_members(meta)
            # every header and size is checked before any parameter array is read
            headers = [_member_header(zf, name, size, budget, what, shape=shape,
                                      dtype=np.dtype(meta["dtype"]))
                       for name, what, shape in members]
            arrays = [_read_member(zf, name, header)
                      for (name, _, _), header in zip(members, headers)]
    except _BadFile:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            RuntimeError, NotImplementedError, OverflowError, ValueError) as exc:
        # what the zip layer says of a corrupt archive (bad CRC, truncated data, ...)
        raise _BadFile(f"is not a readable nnkit file (truncated or corrupt .npz: "
                       f"{_describe(exc)})") from None
    k = 2 * len(meta["layers"])
    return meta, list(zip(arrays[0:k:2], arrays[1:k:2])), arrays[k:]


def _open_zip(fh):
    """``zipfile.ZipFile(fh)``, telling a .npy file and other non-zip files apart."""
    try:
        return zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        fh.seek(0)
        if fh.read(6) == npy_format.MAGIC_PREFIX:
            raise _BadFile("is a .npy array file, not an nnkit network (.npz)") from None
        raise _BadFile(f"is not a readable nnkit file (truncated or not an .npz: "
                       f"{_describe(exc)})") from None


class _Budget:
    """The bytes ``load`` may still decompress and allocate for members."""

    def __init__(self, limit):
        self.left = limit

    def spend(self, name, nbytes):
        if nbytes > self.left:
            raise _BadFile(f"member {name!r} would take the members read past "
                           f"{MAX_INFLATE_RATIO}x the file's size + {INFLATE_SLACK >> 20} MiB "
                           "(refused: a zip bomb?)")
        self.left -= nbytes


def _read_meta(zf, size, budget):
    """The metadata dict (parsed JSON) of the ``meta.npy`` member."""
    if "meta.npy" not in zf.NameToInfo:
        raise _BadFile("is an .npz but not an nnkit network (no metadata)")
    header = _member_header(zf, "meta.npy", size, budget, "metadata", dtype=np.dtype(np.uint8))
    if len(header.shape) != 1 or header.shape[0] > MAX_META_BYTES:
        raise _BadFile(f"is not an nnkit network (its metadata has shape {header.shape}, "
                       f"expected a vector of at most {MAX_META_BYTES} bytes)")
    raw = _read_member(zf, "meta.npy", header).tobytes()
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _BadFile(f"has corrupt nnkit metadata (not UTF-8 JSON: {_describe(exc)})") \
            from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _BadFile("is not an nnkit network file (its metadata has no "
                       f"'format': {FORMAT!r})")
    return meta


def _check_meta(meta):
    """Validate the metadata's keys, version, loss, dtype and layers; raise _BadFile."""
    from .backends import LAYER_ACTIVATIONS, LOSSES
    from .validation import DTYPES

    version = meta.get("version")
    if _is_int(version) and version > VERSION:
        raise _BadFile(f"has format version {version}; this nnkit reads up to version "
                       f"{VERSION} (upgrade nnkit)")
    if not _is_int(version) or version not in KNOWN_VERSIONS:
        raise _BadFile(f"has an unknown format version {_short(version)} (known: "
                       f"{', '.join(map(str, KNOWN_VERSIONS))})")
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    unknown = sorted(set(meta) - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
    if missing:
        raise _BadFile(f"has invalid nnkit metadata: missing keys {missing}")
    if unknown:
        raise _BadFile(f"has invalid nnkit metadata: unknown keys {_short(unknown)}")
    _check_field("loss", meta["loss"], LOSSES)
    _check_field("dtype", meta["dtype"], DTYPES)
    seed = meta.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise _BadFile(f"has invalid nnkit metadata: seed: expected an integer >= 0, got "
                       f"{_short(seed)}")
    _check_layers(meta["layers"], LAYER_ACTIVATIONS)
    if meta["loss"] == "binary_crossentropy" and meta["layers"][-1][2] != "sigmoid":
        raise _BadFile("has invalid nnkit metadata: loss 'binary_crossentropy' needs a "
                       "'sigmoid' output layer")
    if "optimizer" in meta:
        if version < 2:
            raise _BadFile("has invalid nnkit metadata: optimizer state needs format "
                           "version 2")
        _check_optimizer(meta["optimizer"])


def _check_field(key, value, choices):
    """``value`` must be one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise _BadFile(f"has invalid nnkit metadata: {key}: expected one of "
                       f"{tuple(choices)}, got {_short(value)}")


def _check_layers(layers, activations):
    """``layers``: 1..MAX_LAYERS ``[n_in, n_out, activation]`` entries, chained."""
    def bad(why):
        return _BadFile(f"has invalid nnkit metadata: layers: {why}")

    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise bad(f"expected a list of 1 to {MAX_LAYERS} layers, got {_short(layers)}")
    for i, layer in enumerate(layers):
        if not (isinstance(layer, list) and len(layer) == 3 and _is_int(layer[0])
                and _is_int(layer[1]) and isinstance(layer[2], str)):
            raise bad(f"layer {i}: expected [n_in, n_out, activation], got {_short(layer)}")
        n_in, n_out, act = layer
        if not (1 <= n_in <= MAX_UNITS and 1 <= n_out <= MAX_UNITS):
            raise bad(f"layer {i}: sizes must lie in 1..{MAX_UNITS}, got {n_in}, {n_out}")
        if act not in activations:
            raise bad(f"layer {i}: activation: expected one of {tuple(activations)}, got "
                      f"{_short(act)}")
        if i and n_in != layers[i - 1][1]:
            raise bad(f"layer {i} expects {n_in} inputs but layer {i - 1} gives "
                      f"{layers[i - 1][1]} outputs")


def _describe(exc):
    """A library's error message for ours, without numpy's advice to allow pickles."""
    text = str(exc)
    if "pickle" in text:
        text = text.split(".")[0] + " (refused)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_int(x):
    """A JSON integer (``true``/``false`` are not)."""
    return isinstance(x, int) and not isinstance(x, bool)


def _short(x, limit=60):
    """A metadata value as JSON, cut to ``limit`` characters for an error message."""
    text = json.dumps(x)
    return text if len(text) <= limit else text[:limit] + "..."


def _layers(meta):
    """The ``Dense`` layers described by (checked) metadata."""
    from .layers import Dense
    return [Dense(n_in, n_out, act) for n_in, n_out, act in meta["layers"]]


def _slot_members(meta):
    """The optimizer state's members (none without one): s1_W0, s1_b0, ..., then s2_...
    for Adam; shaped like the parameters."""
    opt = meta.get("optimizer")
    if opt is None:
        return []
    slots = 2 if opt["name"] == "adam" else 1 if opt["momentum"] else 0
    return [(f"s{k}_{name}", f"optimizer state of {what}", shape)
            for k in range(1, slots + 1) for name, what, shape in _param_members(meta)]


def _optimizer_of(opt):
    """The nnkit.SGD / nnkit.Adam that checked metadata ``opt`` describes."""
    from .optim import SGD, Adam
    cls = Adam if opt["name"] == "adam" else SGD
    return cls(**{k: opt[k] for k in _OPTIMIZER_KEYS[opt["name"]]})


def _check_optimizer(opt):
    """The ``optimizer`` metadata: a name, its settings, l2 and t; raise _BadFile."""
    def bad(why):
        return _BadFile(f"has invalid nnkit metadata: optimizer: {why}")
    if not isinstance(opt, dict) or opt.get("name") not in _OPTIMIZER_KEYS:
        raise bad(f"expected {{'name': 'sgd' or 'adam', ...}}, got {_short(opt)}")
    keys = set(_OPTIMIZER_KEYS[opt["name"]]) | {"name", "l2", "t"}
    if set(opt) != keys:
        raise bad(f"expected the keys {sorted(keys)}, got {_short(sorted(opt))}")
    if not _is_int(opt["t"]) or opt["t"] < 0:
        raise bad(f"t: expected an integer >= 0, got {_short(opt['t'])}")
    try:
        _optimizer_of(opt)
        from .optim import check_l2
        check_l2(opt["l2"])
    except (TypeError, ValueError) as exc:
        raise bad(str(exc)) from None


def _param_members(meta):
    """``[(member name, description, shape), ...]``: W0, b0, W1, b1, ... in order."""
    members = []
    for i, (n_in, n_out, _) in enumerate(meta["layers"]):
        members.append((f"W{i}.npy", f"layer {i} weights", (n_in, n_out)))
        members.append((f"b{i}.npy", f"layer {i} biases", (n_out,)))
    return members


class _Header:
    """A checked member: its zip entry, data offset, dtype, shape and memory order."""

    def __init__(self, info, offset, dtype, shape, fortran_order):
        self.info, self.offset = info, offset
        self.dtype, self.shape, self.fortran_order = dtype, shape, fortran_order


def _member_header(zf, name, size, budget, what, dtype, shape=None):
    """Check member ``name``'s zip entry and .npy header; return a ``_Header``.

    ``dtype``/``shape`` are what the metadata declares (shape None: any). Reads
    only the header; refuses an entry whose uncompressed size is not exactly
    header + data, or that exceeds the budget, before decompressing it.
    """
    info = zf.NameToInfo.get(name)
    if info is None:
        raise _BadFile(f"is missing member {name!r} ({what})")
    _check_entry(info, size, what)
    most = MAX_META_BYTES if shape is None else dtype.itemsize * _prod(shape)
    if info.file_size > most + _NPY_HEADER_MAX + 16:
        raise _BadFile(f"member {name!r} ({what}) inflates to {info.file_size} bytes, more "
                       f"than the {most} bytes of data it may hold")
    budget.spend(name, info.file_size)
    with zf.open(info) as fp:
        found_shape, fortran_order, found = _read_npy_header(fp, name, what)
        offset = fp.tell()
    if found.kind != dtype.kind or found.itemsize != dtype.itemsize or found.hasobject:
        raise _BadFile(f"member {name!r} ({what}) has dtype {found}, expected {dtype}")
    found_shape = tuple(found_shape)
    if shape is not None and found_shape != shape:
        raise _BadFile(f"member {name!r} ({what}) has shape {found_shape}, expected shape "
                       f"{shape}")
    if not all(_is_int(n) and n >= 0 for n in found_shape):
        raise _BadFile(f"member {name!r} ({what}) has an invalid shape {found_shape}")
    nbytes = found.itemsize * _prod(found_shape)
    if info.file_size != offset + nbytes:
        raise _BadFile(f"member {name!r} ({what}) is {info.file_size} bytes, but its header "
                       f"and shape {found_shape} need {offset + nbytes}")
    return _Header(info, offset, found, found_shape, fortran_order)


def _read_npy_header(fp, name, what):
    """``(shape, fortran_order, dtype)`` from the .npy header at the start of ``fp``."""
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(fp, max_header_size=_NPY_HEADER_MAX)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(fp, max_header_size=_NPY_HEADER_MAX)
    except (ValueError, TypeError, SyntaxError, RecursionError) as exc:
        raise _BadFile(f"member {name!r} ({what}) has no valid .npy header "
                       f"({_describe(exc)})") from None
    raise _BadFile(f"member {name!r} ({what}) has .npy format version {version}, expected "
                   "1.0 or 2.0")


def _prod(shape):
    """The number of elements of ``shape``, as an exact Python int."""
    n = 1
    for d in shape:
        n *= d
    return n


def _check_entry(info, size, what):
    """Refuse encrypted, exotically compressed, or out-of-file zip entries."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise _BadFile(f"member {name!r} ({what}) is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _BadFile(f"member {name!r} ({what}) uses zip compression method "
                       f"{info.compress_type}; only stored or deflated members are read")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _BadFile(f"member {name!r} ({what}) is stored with inconsistent sizes "
                       f"({info.compress_size} vs {info.file_size} bytes)")
    if info.header_offset < 0 or info.header_offset + info.compress_size > size:
        raise _BadFile(f"member {name!r} ({what}) claims {info.compress_size} bytes at offset "
                       f"{info.header_offset}, past the end of the {size}-byte file "
                       "(truncated?)")


def _read_member(zf, name, header):
    """Read the data of a member checked by ``_member_header`` as a native-order array."""
    nbytes = header.info.file_size - header.offset
    with zf.open(header.info) as fp:
        fp.read(header.offset)
        data = fp.read(nbytes)
        if len(data) != nbytes or fp.read(1):   # the last read also checks the CRC
            raise _BadFile(f"member {name!r} is truncated")
    arr = np.frombuffer(data, dtype=header.dtype)
    if header.fortran_order:
        arr = arr.reshape(header.shape[::-1]).T
    else:
        arr = arr.reshape(header.shape)
    return arr.astype(header.dtype.newbyteorder("="), copy=False)
