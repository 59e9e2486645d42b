"""Small datasets: logic gates, seeded 2-D two-class problems, CSV files and
scikit-learn's 8x8 handwritten digits. All return float64 inputs; the gates, ``moons``,
``spirals`` and ``load_csv`` return (X, Y), ``digits`` a train/test split with integer
labels."""
from __future__ import annotations

import os

import numpy as np

_GATE_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)


def or_gate():
    """OR gate: X (4, 2), Y (4, 1) — the seed tutorial's data."""
    return _GATE_X.copy(), np.array([[0], [1], [1], [1]], dtype=np.float64)


def and_gate():
    """AND gate: X (4, 2), Y (4, 1)."""
    return _GATE_X.copy(), np.array([[0], [0], [0], [1]], dtype=np.float64)


def xor_gate():
    """XOR gate: X (4, 2), Y (4, 1); needs a hidden layer."""
    return _GATE_X.copy(), np.array([[0], [1], [1], [0]], dtype=np.float64)


def moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles: X (n, 2), Y (n, 1) in {0, 1}."""
    rng = np.random.default_rng(seed)
    n1 = n // 2
    n2 = n - n1
    t1 = np.linspace(0, np.pi, n1)
    t2 = np.linspace(0, np.pi, n2)
    X = np.concatenate([np.c_[np.cos(t1), np.sin(t1)],
                        np.c_[1 - np.cos(t2), 0.5 - np.sin(t2)]])
    X += rng.normal(0, noise, X.shape)
    Y = np.concatenate([np.zeros(n1), np.ones(n2)])[:, None]
    perm = rng.permutation(n)
    return X[perm], Y[perm]


def spirals(n=200, noise=0.1, turns=1.5, seed=0):
    """Two interleaved spirals: X (n, 2), Y (n, 1) in {0, 1}."""
    rng = np.random.default_rng(seed)
    n1 = n // 2
    out = []
    for cls, m in ((0, n1), (1, n - n1)):
        t = np.linspace(0.25, 1, m) * turns * 2 * np.pi
        r = t / (turns * 2 * np.pi)
        ang = t + cls * np.pi
        out.append(np.c_[r * np.cos(ang), r * np.sin(ang)] + rng.normal(0, noise * 0.2, (m, 2)))
    X = np.concatenate(out)
    Y = np.concatenate([np.zeros(n1), np.ones(n - n1)])[:, None]
    perm = rng.permutation(n)
    return X[perm], Y[perm]


DIGITS_CLASSES = 10


def digits(test_size=0.25, seed=0):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images of 0..9, no download),
    split into a training and a test set.

    Returns ``(X_train, y_train, X_test, y_test)``: X float64 of shape (n, 64), each row an
    8x8 image flattened row by row, pixel values 0..16 divided by 16 so they lie in [0, 1];
    y int64 labels 0..9 of shape (n,). With the defaults: X_train (1347, 64), y_train
    (1347,), X_test (450, 64), y_test (450,).

    The split is deterministic and stratified: for each class ``c`` (in order 0..9), a
    ``numpy.random.default_rng(seed)`` permutation of its samples puts its first
    ``round(test_size * n_c)`` samples in the test set and the rest in the training set;
    then each set's order is shuffled with the same generator. The same ``test_size`` and
    ``seed`` give the same arrays on every machine and NumPy version with that generator.

    Needs scikit-learn (an optional dependency: ``pip install scikit-learn`` or
    ``pip install 'nnkit[sklearn]'``); it is imported here, never by ``import nnkit``.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.floating)) \
            or not 0 < test_size < 1:
        raise ValueError(f"test_size: expected a fraction in (0, 1), got {test_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("nnkit.datasets.digits needs scikit-learn, which ships the digits "
                          "data: pip install scikit-learn (or pip install 'nnkit[sklearn]')") \
            from None
    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(DIGITS_CLASSES):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_size * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"test_size: {test_size!r} leaves an empty training or test set")
    return X[train], y[train], X[test], y[test]


def one_hot(labels, k=None):
    """Integer labels (n,) as a float64 one-hot array (n, k); k defaults to max + 1."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected a 1-D integer array, got {labels.dtype} "
                         f"of shape {labels.shape}")
    k = int(labels.max()) + 1 if k is None else k
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels: expected values in 0..{k - 1}")
    out = np.zeros((len(labels), k))
    out[np.arange(len(labels)), labels] = 1.0
    return out


DATASETS = {"or": or_gate, "and": and_gate, "xor": xor_gate, "moons": moons, "spirals": spirals,
            "digits": digits}
# Data sets that come with a held-out test set: load_dataset(..., split=True) returns it.
SPLIT_DATASETS = ("digits",)


def load_csv(path, target_cols=1):
    """(X, Y) from a CSV file of numbers: one sample per line, comma-separated, the last
    ``target_cols`` columns are Y. A first line that is not all numbers is a header and is
    skipped; blank lines and ``#`` comments are ignored. Raises OSError for a file that
    cannot be read and ValueError (naming the file and line) for one that is not numbers."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory, expected a CSV file", path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text CSV file ({exc.reason} at byte {exc.start})") \
            from None
    rows = [(i, _content(line)) for i, line in enumerate(lines)]
    rows = [(i, text) for i, text in rows if text]
    if rows and not _numeric(rows[0][1]):
        rows = rows[1:]  # a header
    if not rows:
        raise ValueError(f"{path}: no data rows (expected lines of comma-separated numbers)")
    try:
        data = np.loadtxt([text for _, text in rows], delimiter=",", ndmin=2,
                          dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: {_first_bad_row(rows) or exc}") from None
    k = target_cols
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
            or not 1 <= k < data.shape[1]:
        raise ValueError(f"target_cols: expected 1..{data.shape[1] - 1} for {path}, which has "
                         f"{data.shape[1]} columns, got {k!r}")
    return data[:, :-k], data[:, -k:]


def _content(line):
    """A CSV line without its comment and surrounding blanks."""
    return line.split("#", 1)[0].strip()


def _numeric(text):
    try:
        [float(v) for v in text.split(",")]
    except ValueError:
        return False
    return True


def _first_bad_row(rows):
    """'line N: what is wrong' for the first row that is not numbers like the first one."""
    width = len(rows[0][1].split(","))
    for i, text in rows:
        fields = text.split(",")
        if len(fields) != width:
            return f"line {i + 1}: expected {width} columns like the first data line, " \
                   f"got {len(fields)}"
        for j, field in enumerate(fields):
            try:
                float(field)
            except ValueError:
                return f"line {i + 1}, column {j + 1}: {field.strip()!r} is not a number"
    return None


def load_dataset(name, seed=0, target_cols=1, split=False):
    """(X, Y) for a dataset name in DATASETS, or for a CSV file (see ``load_csv``): a name
    that is not in DATASETS and ends in .csv, contains a path separator or exists.

    ``seed`` seeds the generated sets (moons, spirals). ``digits`` gives its training set,
    Y one-hot float64 (n, 10), from the fixed split ``digits(test_size=0.25, seed=0)``
    whatever ``seed`` is, so that runs with different seeds are scored on the same test
    set. With ``split=True`` the result is ``(X, Y, X_test, Y_test)``: the test set of a
    name in SPLIT_DATASETS (Y_test one-hot too), None and None for the others."""
    if name in DATASETS:
        if name == "digits":
            X, y, X_test, y_test = digits()
            Y = one_hot(y, DIGITS_CLASSES)
            return (X, Y, X_test, one_hot(y_test, DIGITS_CLASSES)) if split else (X, Y)
        fn = DATASETS[name]
        X, Y = fn(seed=seed) if name in ("moons", "spirals") else fn()
        return (X, Y, None, None) if split else (X, Y)
    if isinstance(name, os.PathLike) or (isinstance(name, str) and (
            name.endswith(".csv") or os.path.sep in name or os.path.exists(name))):
        X, Y = load_csv(name, target_cols=target_cols)
        return (X, Y, None, None) if split else (X, Y)
    raise ValueError(f"dataset: expected one of {tuple(DATASETS)} or a .csv path, got {name!r}")
