"""The latency floor of a full-batch OR-gate epoch on this CPU.

An epoch's forward pass runs two sigmoid layers one after the other, and the next epoch
needs this epoch's updated weights, so epochs cannot overlap. This times only the two
chained sigmoids of an epoch (with the multiply-add between them), nothing else, with
nnkit's numba sigmoids and with libm's exp: whatever a whole epoch costs is above this.
Run: ``python benchmarks/latency_floor.py`` (not part of pytest).
"""
import math
import time

import numpy as np
from numba import njit

from nnkit.backends._numba_kernels import sigmoid32, sigmoid64


@njit(error_model="numpy")
def two_sigmoids32(z, epochs):
    w, b = np.float32(0.37), np.float32(0.11)
    for _ in range(epochs):
        z = sigmoid32(sigmoid32(z * w + b) * w + b)
    return z


@njit(error_model="numpy")
def two_sigmoids64(z, epochs):
    for _ in range(epochs):
        z = sigmoid64(sigmoid64(z * 0.37 + 0.11) * 0.37 + 0.11)
    return z


@njit(error_model="numpy")
def two_sigmoids_libm(z, epochs):
    for _ in range(epochs):
        h = 1.0 / (1.0 + math.exp(-(z * 0.37 + 0.11)))
        z = 1.0 / (1.0 + math.exp(-(h * 0.37 + 0.11)))
    return z


def main(epochs=5000, repeats=50):
    for fn, z in ((two_sigmoids32, np.float32(0.5)), (two_sigmoids64, 0.5),
                  (two_sigmoids_libm, 0.5)):
        fn(z, 10)  # compile
        best = min(_timed(fn, z, epochs) for _ in range(repeats))
        print(f"{fn.__name__:18s} {best / epochs * 1e9:6.1f} ns per epoch (two sigmoids only)")


def _timed(fn, z, epochs):
    t = time.perf_counter()
    fn(z, epochs)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
