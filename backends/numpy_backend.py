"""The NumPy backend: the reference. BLAS matmuls and ``out=`` buffers come from the base class."""
from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
