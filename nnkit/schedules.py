"""Learning-rate schedules: callables ``epoch -> multiplier`` of the base rate.

The rate of epoch e is ``lr * schedule(e)``; ``fit`` evaluates the schedule
on the host for all epochs up front, so fused backends apply it inside their loops.
"""
from __future__ import annotations

import numbers

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
        out = np.empty(len(e), dtype=np.float64)
        for i, k in enumerate(e):
            value = self.fn(int(k))
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
                raise TypeError(f"lr_schedule: the callable returned {value!r} for epoch "
                                f"{int(k)}; expected a real number (the factor of lr)")
            out[i] = float(value)
        return out


_CONSTANT = Constant()  # (it holds nothing: one serves every fit without a schedule)
SCHEDULES = {"constant": Constant, "step": StepDecay, "exponential": Exponential,
             "inverse_time": InverseTime}


def learning_rates(schedule, lr, epochs, start=0):
    """``schedule``'s rates for ``epochs`` epochs from ``start`` at base rate ``lr``
    (float64), checked: every rate finite and > 0 (ValueError naming lr_schedule)."""
    if type(schedule) is not Constant:
        schedule = get_schedule(schedule)
    if type(schedule) is Constant:  # the common case: nothing to check beyond lr itself
        rates = np.empty(epochs)
        rates.fill(lr)  # (np.full costs twice as much on the short runs of a loop of fits)
        return rates
    # (a C-contiguous float64 array: what the backends' epoch runners take)
    rates = np.ascontiguousarray(schedule.rates(lr, epochs, start), dtype=np.float64)
    if not (np.isfinite(rates).all() and (rates > 0).all()):
        e = int(np.argmax(~(np.isfinite(rates) & (rates > 0))))
        raise ValueError(f"lr_schedule: gives the learning rate {float(rates[e])!r} at epoch "
                         f"{start + e}; every rate must be finite and > 0")
    return rates


def get_schedule(spec):
    """A Schedule from None, a name (``'step'``), a Schedule, or a callable epoch -> factor."""
    if spec is None:
        return _CONSTANT
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        if spec not in SCHEDULES:
            raise ValueError(f"lr_schedule: expected one of {tuple(SCHEDULES)}, got {spec!r}")
        return SCHEDULES[spec]()
    if callable(spec):
        return _Callable(spec)
    raise TypeError(f"lr_schedule: expected a name, a Schedule or a callable, got {spec!r}")
