"""Backend registry: ``get_backend(name)``, ``available_backends()``.

Built-ins are imported lazily (importing nnkit imports neither numba nor cupy);
third-party backends register a ``Backend`` subclass in the entry-point group
``nnkit.backends``.
"""
from __future__ import annotations

import importlib
import threading

from ._math import LAYER_ACTIVATIONS
from .base import ACTIVATIONS, LOSSES, Backend, ModelSpec, TrainState

__all__ = ["Backend", "ModelSpec", "TrainState", "BackendUnavailableError", "get_backend",
           "available_backends", "backend_names", "backend_status", "ACTIVATIONS", "LAYER_ACTIVATIONS", "LOSSES"]


class BackendUnavailableError(RuntimeError):
    """A known backend cannot be used here; the message says why and how to fix it."""


# name -> "module:Class"; each module's ``check()`` says whether it is usable.
_BUILTINS = {
    "numpy": "nnkit.backends.numpy_backend:NumpyBackend",
    "numba": "nnkit.backends.numba_backend:NumbaBackend",
    "cupy": "nnkit.backends.cupy_backend:CupyBackend",
}
_instances: dict[str, Backend] = {}
_lock = threading.Lock()


def _entry_points():
    try:
        from importlib.metadata import entry_points
        return {ep.name: ep for ep in entry_points(group="nnkit.backends")}
    except Exception:  # broken metadata must not break nnkit
        return {}


def backend_names():
    """Every known backend name, usable or not."""
    names = list(_BUILTINS)
    names += [n for n in _entry_points() if n not in names]
    return names


def _load_class(name):
    if name in _BUILTINS:
        module, cls = _BUILTINS[name].split(":")
        return getattr(importlib.import_module(module), cls)
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    raise ValueError(f"backend: unknown name {name!r}; expected one of {backend_names()}")


def get_backend(name):
    """The ``Backend`` instance for ``name`` (one per process).

    Raises ValueError for an unknown name and BackendUnavailableError when the
    backend is known but cannot run here (package missing, no device).
    """
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a backend name (str), got {type(name).__name__}")
    with _lock:
        inst = _instances.get(name)
        if inst is None:
            cls = _load_class(name)
            check = getattr(cls, "check", None)
            if check is not None:
                check()  # raises BackendUnavailableError with the reason
            inst = cls()
            _instances[name] = inst
        return inst


def backend_status(name):
    """(usable, reason) for ``name`` without raising."""
    try:
        get_backend(name)
        return True, ""
    except BackendUnavailableError as exc:
        return False, str(exc)
    except Exception as exc:  # a broken third-party backend
        return False, f"{type(exc).__name__}: {exc}"


def available_backends():
    """Names of the backends usable here, e.g. ``['numpy', 'numba']``."""
    return [n for n in backend_names() if backend_status(n)[0]]
