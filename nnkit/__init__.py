"""nnkit: fully connected networks trained by gradient descent on NumPy, Numba or CuPy.

Importing nnkit imports neither numba nor cupy and compiles nothing.
"""
from . import datasets
from .backends import BackendUnavailableError, available_backends
from .config import get_backend, use_backend
from .errors import TrainingDiverged, TrainingInterrupted
from .gradcheck import gradcheck
from .history import History
from .io import load, save
from .layers import Dense
from .network import Network
from .optim import Adam, SGD
from .schedules import Constant, Exponential, InverseTime, Schedule, StepDecay
from .sweep import SweepResult, sweep

__version__ = "0.1.0"


def predict_classes(net, X):
    """``net.predict_classes(X)``: class labels (n,) of a classification network."""
    return net.predict_classes(X)


def __getattr__(name):
    """``nnkit.plot`` on first use: importing nnkit does not import matplotlib."""
    if name == "plot":
        import importlib
        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Network", "Dense", "History", "gradcheck", "use_backend", "get_backend",
           "available_backends", "BackendUnavailableError", "TrainingDiverged",
           "TrainingInterrupted", "save", "load",
           "sweep", "SweepResult",
           "datasets", "SGD", "Adam", "predict_classes", "Schedule", "Constant", "StepDecay",
           "Exponential", "InverseTime", "__version__"]
