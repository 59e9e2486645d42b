"""Checks at the public boundary: once per call, never per step."""
from __future__ import annotations

import decimal
import math
import numbers

import numpy as np

DTYPES = ("float32", "float64")
MAX_EPOCHS = 10**9  # documented upper bound of ``epochs`` (fit, sweep, the CLI)


def check_dtype(dtype):
    """Normalise ``dtype`` to 'float32' or 'float64' (None is not a dtype here, although
    NumPy reads it as float64)."""
    try:
        name = None if dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    return name


def check_choice(arg, value, choices):
    if value not in choices:
        raise ValueError(f"{arg}: expected one of {tuple(choices)}, got {value!r}")
    return value


def check_positive_int(arg, value, minimum=1, maximum=None):
    """``value`` as an int in [minimum, maximum]; ValueError naming ``arg`` otherwise."""
    if type(value) is int and value >= minimum and (maximum is None or value <= maximum):
        return value  # the common case, without the checks below
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum \
            or (maximum is not None and value > maximum):
        bound = f">= {minimum}" + ("" if maximum is None else f" and <= {maximum:,}")
        raise ValueError(f"{arg}: expected an integer {bound}, got {value!r}")
    return int(value)


def check_epochs(value, arg="epochs"):
    """An epoch count: an int in [1, MAX_EPOCHS]."""
    if type(value) is int and 0 < value <= MAX_EPOCHS:
        return value  # (fit checks it at every call)
    return check_positive_int(arg, value, maximum=MAX_EPOCHS)


def _is_real(value):
    """Real numbers: int, float, Fraction, Decimal, NumPy scalars; not bool, str, complex."""
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (numbers.Real, decimal.Decimal))


def _as_float(value):
    try:
        return float(value)
    except OverflowError:  # e.g. 10**400
        return float("inf") if value > 0 else float("-inf")


def check_real(arg, value, minimum=None):
    """``value`` as a finite float (Fraction, Decimal and NumPy scalars are numbers too;
    bool and str are not); >= minimum if given."""
    if type(value) is float and math.isfinite(value) and (minimum is None or value >= minimum):
        return value  # the common case, without the checks below
    if not _is_real(value):
        raise TypeError(f"{arg}: expected a real number, got {type(value).__name__} {value!r}")
    x = _as_float(value)
    if not np.isfinite(x) or (minimum is not None and x < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{arg}: expected a finite number{bound}, got {value!r}")
    return x


def check_positive_float(arg, value):
    """``value`` as a finite float > 0 (ValueError naming ``arg`` otherwise)."""
    if type(value) is float and 0.0 < value < math.inf:
        return value  # the common case, without the checks below
    if not _is_real(value):
        raise ValueError(f"{arg}: expected a finite number > 0, got {value!r}")
    x = _as_float(value)
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{arg}: expected a finite number > 0, got {value!r}")
    return x


def as_host_2d(arg, x, n_cols, backend, dtype, allow_1d_column=False):
    """Validate a data array and return it as a backend array of ``dtype``.

    ``x`` may be a NumPy array (or nested list), or an array of ``backend``
    (used without a host copy). Checks: numeric, 2-D (n, n_cols), not empty, finite.
    """
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[1] == n_cols and x.shape[0] \
            and x.dtype == dtype and backend.xp is np and backend.is_own_array(x) \
            and x.flags.writeable:
        # The common case (a host array of the backend, already in ``dtype``): the checks
        # below reduce to the finiteness one, and the conversion cannot overflow. (A
        # read-only array takes the general path: see ``_writable``.)
        if x.dtype.kind == "f" and backend.all_finite(x):
            return x if x.flags.c_contiguous else _writable(x)
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{arg}: masked arrays are not supported (their masked entries would "
                        "be used as numbers); fill them (x.filled(value)) or drop those rows")
    if not backend.is_own_array(x) and not isinstance(x, (np.ndarray, list, tuple)) \
            and not np.isscalar(x):
        if hasattr(x, "__array__") or hasattr(x, "__cuda_array_interface__"):
            raise TypeError(
                f"{arg}: got a {type(x).__module__}.{type(x).__name__}, which the "
                f"{backend.name!r} backend does not use directly; convert it first "
                f"(e.g. numpy.asarray(x), or x.get() for a CuPy array)")
        raise TypeError(f"{arg}: expected an array of numbers, got {type(x).__name__}")
    xp = backend.xp if backend.is_own_array(x) else np
    if not backend.is_own_array(x):
        try:
            x = np.asarray(x)
        except ValueError as exc:  # ragged lists
            raise ValueError(f"{arg}: expected a rectangular array of numbers ({exc})") from None
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{arg}: expected numbers, got an array of dtype {x.dtype}")
    if x.ndim == 1 and allow_1d_column:
        x = x.reshape(-1, 1)
    expected = f"(n_samples, {n_cols})"
    if x.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D array of shape {expected}, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{arg}: expected at least one sample, got shape {x.shape}")
    if x.shape[1] != n_cols:
        raise ValueError(f"{arg}: expected shape {expected}, got {x.shape}")
    if x.dtype.kind == "f" and not bool(xp.isfinite(x).all()):
        raise ValueError(f"{arg}: contains NaN or infinite values")
    with np.errstate(over="ignore"):
        out = backend.asarray(x, dtype=dtype)
    if out.dtype != x.dtype and not bool(backend.xp.isfinite(out).all()):
        raise ValueError(f"{arg}: values up to {float(abs(x).max()):.3g} do not fit the "
                         f"network's dtype {np.dtype(dtype).name} (they become infinite); "
                         "scale the data or use dtype='float64'")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        out = _writable(out)
    return out


def ready_pair(X, Y, n_in, n_out, backend, dtype):
    """True when the data X (n, n_in) and targets Y (n, n_out) pass every check of
    ``as_host_2d`` and ``check_same_rows`` as they are: host arrays of the backend in
    ``dtype`` (a ``numpy.dtype``), C-contiguous, writable, finite (one finite check for
    both). False sends them to those checks, which then name what is wrong."""
    if not (type(X) is np.ndarray and type(Y) is np.ndarray and X.dtype is dtype
            and Y.dtype is dtype):
        return False
    xs, ys = X.shape, Y.shape
    return (len(xs) == 2 and len(ys) == 2 and xs[1] == n_in and ys[1] == n_out
            and 0 < xs[0] == ys[0] and X.flags.carray and Y.flags.carray  # (C order, writable)
            and backend.xp is np and backend.is_own_array(X) and backend.all_finite_pair(X, Y))


def _writable(x):
    """A writable C-contiguous copy of the host array ``x``. Data enters the kernels in
    this one form: numba compiles a kernel once per argument type, and a read-only array
    (a memory map, a broadcast, what scikit-learn's estimator checks pass) or a strided
    one is a type of its own, so each would compile every kernel it reaches again
    (seconds apiece) for no faster run than one copy of the data."""
    return np.array(x, order="C", copy=True)


def check_unit_interval(arg, Y, backend, why):
    """Every value of the backend array Y in [0, 1] (e.g. binary cross-entropy targets)."""
    lo, hi = float(backend.to_numpy(Y.min())), float(backend.to_numpy(Y.max()))
    if lo < 0 or hi > 1:
        raise ValueError(f"{arg}: {why} need values in [0, 1], got values in [{lo:.6g}, "
                         f"{hi:.6g}]")


def check_same_rows(X, Y):
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"Y: expected {X.shape[0]} samples to match X, got {Y.shape[0]}")


def class_targets(arg, y, k, backend, dtype):
    """Targets of a k-class softmax network as a backend array (n, k) of ``dtype``:
    integer labels (n,) in [0, k) become one-hot rows; a 2-D (n, k) array must hold
    probability rows (entries in [0, 1] summing to 1, e.g. one-hot)."""
    if backend.is_own_array(y):
        y = backend.to_numpy(y)
    if isinstance(y, (list, tuple)) or (isinstance(y, np.ndarray) and y.ndim == 1):
        labels = np.asarray(y)
        if labels.ndim == 1:
            if labels.size == 0:
                raise ValueError(f"{arg}: expected at least one sample, got shape {labels.shape}")
            if labels.dtype.kind not in "biuf":
                raise TypeError(f"{arg}: expected integer class labels in [0, {k}) or "
                                f"one-hot rows (n, {k}), got an array of dtype {labels.dtype}")
            whole = labels.dtype.kind != "f" or bool(
                np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)))
            if not whole or labels.min() < 0 or labels.max() >= k:
                raise ValueError(f"{arg}: expected integer class labels in [0, {k}) or "
                                 f"one-hot rows (n, {k}); got labels from {labels.min()!r} to "
                                 f"{labels.max()!r}" + ("" if whole else " (not integers)"))
            onehot = np.zeros((labels.size, k))
            onehot[np.arange(labels.size), labels.astype(np.int64)] = 1.0
            return backend.asarray(onehot, dtype)
    Y = as_host_2d(arg, y, k, backend, dtype)
    host = np.asarray(backend.to_numpy(Y), dtype=np.float64)
    if host.min() < 0 or host.max() > 1 or not np.allclose(host.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError(f"{arg}: expected integer class labels in [0, {k}) or one-hot "
                         f"(probability) rows of shape (n, {k}) summing to 1")
    return Y
