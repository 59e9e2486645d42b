"""Small datasets: logic gates, seeded 2-D two-class problems and CSV files.
All return (X, Y), float64."""
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


DATASETS = {"or": or_gate, "and": and_gate, "xor": xor_gate, "moons": moons, "spirals": spirals}


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


def load_dataset(name, seed=0, target_cols=1):
    """(X, Y) for a dataset name in DATASETS, or for a CSV file (see ``load_csv``): a name
    that is not in DATASETS and ends in .csv, contains a path separator or exists."""
    if name in DATASETS:
        fn = DATASETS[name]
        return fn(seed=seed) if name in ("moons", "spirals") else fn()
    if isinstance(name, os.PathLike) or (isinstance(name, str) and (
            name.endswith(".csv") or os.path.sep in name or os.path.exists(name))):
        return load_csv(name, target_cols=target_cols)
    raise ValueError(f"dataset: expected one of {tuple(DATASETS)} or a .csv path, got {name!r}")
