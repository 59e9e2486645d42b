"""The NumPy backend: the reference. BLAS matmuls and ``out=`` buffers come from the base
class; sweeps run the stacked engine (``stacked.py``), checked against the base class's
one-configuration-at-a-time ``"reference"`` path."""
from .base import Backend
from .stacked import StackedSweeps


class NumpyBackend(StackedSweeps, Backend):
    name = "numpy"
    paths = {**Backend.paths, **StackedSweeps.sweep_paths}

    def choose_path(self, call, spec, rows, batch_size, configs, epochs):
        return self.sweep_path(batch_size, spec) if call == "sweep" else "reference"
