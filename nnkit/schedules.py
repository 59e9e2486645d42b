"""Learning-rate schedules: callables ``epoch -> multiplier`` of the base rate.

The rate of epoch e is ``lr * schedule(e)``; ``fit`` evaluates the schedule
on the host for all epochs up front, so fused backends apply it inside their loops.
"""
from __future__ import annotations

import numpy as np

from .validation import check_positive_float, check_positive_int


class Schedule:
    """Base class; subclasses implement ``factor(epochs) -> array``."""

    def factor(self, epochs):
        """Multipliers of the base rate for an array of (float) epoch numbers."""
        raise NotImplementedError

    def rates(self, lr, epochs, start=0):
        """Learning rates of epochs ``start .. start+epochs-1``, float64 array."""
        return lr * self.factor(np.arange(start, start + epochs, dtype=np.float64))

    def __call__(self, epoch):
        return float(self.factor(np.asarray([epoch], dtype=np.float64))[0])


class Constant(Schedule):
    """The base rate every epoch."""

    def factor(self, e):
        return np.ones_like(e)

    def __repr__(self):
        return "Constant()"


class StepDecay(Schedule):
    """Multiply the rate by ``drop`` every ``every`` epochs."""

    def __init__(self, drop=0.5, every=1000):
        self.drop = check_positive_float("drop", drop)
        self.every = check_positive_int("every", every)

    def factor(self, e):
        return self.drop ** np.floor(e / self.every)

    def __repr__(self):
        return f"StepDecay(drop={self.drop}, every={self.every})"


class Exponential(Schedule):
    """``exp(-decay * epoch)``."""

    def __init__(self, decay=1e-3):
        self.decay = check_positive_float("decay", decay)

    def factor(self, e):
        return np.exp(-self.decay * e)

    def __repr__(self):
        return f"Exponential(decay={self.decay})"


class InverseTime(Schedule):
    """``1 / (1 + decay * epoch)``: the annealing of the seeds' tutorial."""

    def __init__(self, decay=1e-3):
        self.decay = check_positive_float("decay", decay)

    def factor(self, e):
        return 1.0 / (1.0 + self.decay * e)

    def __repr__(self):
        return f"InverseTime(decay={self.decay})"


class _Callable(Schedule):
    def __init__(self, fn):
        self.fn = fn

    def factor(self, e):
        return np.asarray([float(self.fn(int(k))) for k in e], dtype=np.float64)


SCHEDULES = {"constant": Constant, "step": StepDecay, "exponential": Exponential,
             "inverse_time": InverseTime}


def get_schedule(spec):
    """A Schedule from None, a name (``'step'``), a Schedule, or a callable epoch -> factor."""
    if spec is None:
        return Constant()
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        if spec not in SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {tuple(SCHEDULES)}, got {spec!r}")
        return SCHEDULES[spec]()
    if callable(spec):
        return _Callable(spec)
    raise TypeError(f"lr_schedule: expected a name, a Schedule or a callable, got {spec!r}")
