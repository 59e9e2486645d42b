"""Small datasets: logic gates and seeded 2-D two-class problems. All return (X, Y), float64."""
from __future__ import annotations

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


def load_dataset(name, seed=0):
    """(X, Y) for a dataset name in DATASETS."""
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {tuple(DATASETS)} or a .csv path, got {name!r}")
    fn = DATASETS[name]
    return fn(seed=seed) if name in ("moons", "spirals") else fn()
