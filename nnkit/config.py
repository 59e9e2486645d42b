"""Which backend runs: one place, one precedence.

explicit ``backend=`` argument > ``with use_backend(name):`` (a contextvar, so
threads and asyncio tasks do not leak into each other) > ``NNKIT_BACKEND`` >
``"numpy"``. ``NNKIT_BACKEND=auto`` picks cupy where a GPU is usable, else
numba, else numpy.
"""
from __future__ import annotations

import contextlib
import contextvars
import os

from .backends import Backend, backend_status, get_backend as _registry_get

ENV_VAR = "NNKIT_BACKEND"
DEFAULT = "numpy"
AUTO_ORDER = ("cupy", "numba", "numpy")

_current = contextvars.ContextVar("nnkit_backend", default=None)


def resolve_auto():
    """(name, reason) that ``auto`` picks here."""
    skipped = []
    for name in AUTO_ORDER:
        ok, why = backend_status(name)
        if ok:
            reason = "first usable of " + ", ".join(AUTO_ORDER)
            if skipped:
                reason += " (" + "; ".join(skipped) + ")"
            return name, reason
        skipped.append(f"{name}: {why.split(';')[0] if why else 'unusable'}")
    raise AssertionError("the numpy backend is always usable")


def backend_name(name=None):
    """The backend name that applies, following the precedence above."""
    if name is None:
        name = _current.get()
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or DEFAULT
    if name == "auto":
        name = resolve_auto()[0]
    return name


def get_backend(name=None):
    """The ``Backend`` object for ``name`` (a name, a Backend, or None: the current one)."""
    if isinstance(name, Backend):
        return name
    return _registry_get(backend_name(name))


@contextlib.contextmanager
def use_backend(name):
    """Use ``name`` as the default backend inside the ``with`` block (this context only)."""
    backend = get_backend(name)  # fail early on unknown/unusable names
    token = _current.set(backend.name)
    try:
        yield backend
    finally:
        _current.reset(token)
