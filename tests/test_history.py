"""History records epochs once each, even when reading them is interrupted (a second
Ctrl-C can land while a long run's losses are turned into Python floats)."""
import numpy as np
import pytest

from nnkit.history import History


class _Interrupting(np.ndarray):
    """An array whose conversion to a list is interrupted the first time."""

    def tolist(self):
        if not getattr(self, "_done", False):
            self._done = True
            raise KeyboardInterrupt
        return super().tolist()


class _InterruptedList(list):
    """A list whose first extend is interrupted after it has added the values."""

    interrupted = False

    def extend(self, values):
        super().extend(values)
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt


def _history(n_entries=3, size=4):
    hist = History()
    for i in range(n_entries):
        hist.extend(np.arange(size, dtype=np.float64) + 10 * i, np.full(size, 0.1 * (i + 1)))
    return hist


def _expected(n_entries=3, size=4):
    loss = [float(v) for i in range(n_entries) for v in np.arange(size) + 10 * i]
    lr = [0.1 * (i + 1) for i in range(n_entries) for _ in range(size)]
    return loss, lr


def test_an_interrupted_conversion_repeats_and_loses_nothing():
    hist = _history()
    losses, lrs = hist._pending[1]
    hist._pending[1] = (losses.view(_Interrupting), lrs)
    with pytest.raises(KeyboardInterrupt):
        hist.loss
    assert len(hist._loss) == len(hist._lr) == 4  # the first entry only
    loss, lr = _expected()
    assert hist.loss == loss and hist.lr == lr  # read again: every epoch once


def test_an_interrupt_between_the_two_lists_is_undone():
    hist = _history()
    hist._lr = _InterruptedList()
    with pytest.raises(KeyboardInterrupt):
        hist.lr
    assert hist._loss == [] and list(hist._lr) == [] and len(hist._pending) == 3
    loss, lr = _expected()
    assert hist.loss == loss and hist.lr == lr
    assert len(hist) == 12
