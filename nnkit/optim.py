"""Optimizers: ``SGD`` (plain, momentum, Nesterov) and ``Adam``, as settings.

They hold no arrays: the state (velocities, moments, step count) lives on the network
being trained (``Network.fit`` keeps it between calls while the optimizer stays equal;
``Network.reset_optimizer`` clears it). The update rules are those of ``torch.optim.SGD``
(dampening 0) and ``torch.optim.Adam`` (bias-corrected, eps outside the square root),
written once in the kernels' math table (``nnkit.backends._math.UPDATE_MATH``).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .backends.base import UpdateSettings


def _real(name, value, lo, hi, lo_open=False, hi_open=True):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value)):
        raise ValueError(f"optimizer: {name} must be a finite real number, got {value!r}")
    value = float(value)
    if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"optimizer: {name} must be in {interval}, got {value!r}")
    return value


@dataclass(frozen=True)
class SGD:
    """Gradient descent, optionally with momentum ``mu`` (``v = mu v + g; p -= lr v``)
    or Nesterov momentum (``p -= lr (g + mu v)``), as ``torch.optim.SGD`` with
    dampening 0. ``SGD()`` is plain gradient descent (the default of ``fit``)."""

    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self):
        object.__setattr__(self, "momentum", _real("momentum", self.momentum, 0.0, 1.0))
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"optimizer: nesterov must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("optimizer: nesterov=True needs momentum > 0")

    def settings(self, l2=0.0) -> UpdateSettings:
        """The backend's description of this update rule with L2 coefficient ``l2``."""
        rule = "sgd" if self.momentum == 0.0 else "nesterov" if self.nesterov else "momentum"
        return UpdateSettings(rule, (self.momentum, 0.0, 0.0), float(l2))


@dataclass(frozen=True)
class Adam:
    """Adam (``torch.optim.Adam``): ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``, t counting updates."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        object.__setattr__(self, "beta1", _real("beta1", self.beta1, 0.0, 1.0))
        object.__setattr__(self, "beta2", _real("beta2", self.beta2, 0.0, 1.0))
        object.__setattr__(self, "eps", _real("eps", self.eps, 0.0, math.inf, lo_open=True))

    def settings(self, l2=0.0) -> UpdateSettings:
        """The backend's description of this update rule with L2 coefficient ``l2``."""
        return UpdateSettings("adam", (self.beta1, self.beta2, self.eps), float(l2))


#: The optimizers ``fit(optimizer=...)`` accepts by name.
OPTIMIZERS = {"sgd": SGD(), "momentum": SGD(momentum=0.9),
              "nesterov": SGD(momentum=0.9, nesterov=True), "adam": Adam()}


def get_optimizer(optimizer):
    """``optimizer`` (a name of ``OPTIMIZERS``, an ``SGD`` or an ``Adam``) as an object."""
    if type(optimizer) is str and optimizer in OPTIMIZERS:
        return OPTIMIZERS[optimizer]  # (the common case first)
    if isinstance(optimizer, (SGD, Adam)):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return OPTIMIZERS[optimizer]
        except KeyError:
            raise ValueError(f"optimizer: expected one of {tuple(OPTIMIZERS)}, nnkit.SGD(...) "
                             f"or nnkit.Adam(...), got {optimizer!r}") from None
    raise TypeError(f"optimizer: expected a name {tuple(OPTIMIZERS)}, nnkit.SGD(...) or "
                    f"nnkit.Adam(...), got {type(optimizer).__name__}")


def check_l2(l2):
    """``l2`` as a float >= 0 (ValueError naming l2 otherwise)."""
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not math.isfinite(l2) \
            or l2 < 0:
        raise ValueError(f"l2: expected a finite real number >= 0, got {l2!r}")
    return float(l2)
