"""What ``fit`` records."""
from __future__ import annotations

from collections import deque

import numpy as np

_FLOAT64 = np.dtype(np.float64)


class History:
    """Per-epoch records of one ``fit``.

    ``loss[e]``: mean training loss over the forward passes of epoch e (full batch:
    the cost before that epoch's update); ``lr[e]``: the rate used; ``val_loss[e]``
    when validation data was given. All three are lists of floats.
    ``stopped_epoch``/``best_epoch``: set by early stopping / ``restore_best``.
    """

    def __init__(self):
        self._loss, self._lr = [], []
        self._pending = deque()  # (losses, lrs) arrays not yet turned into floats
        self.val_loss = []
        self.stopped_epoch = None
        self.best_epoch = None

    def extend(self, losses, lrs, val_losses=None):
        """Append the records of several epochs (array-likes of equal length; the
        validation losses too, when given)."""
        if not (type(losses) is np.ndarray and losses.dtype is _FLOAT64):
            losses = np.asarray(losses, dtype=np.float64)
        if not (type(lrs) is np.ndarray and lrs.dtype is _FLOAT64):
            lrs = np.asarray(lrs, dtype=np.float64)
        self._pending.append((losses, lrs))
        if val_losses is not None:
            self.val_loss.extend(np.asarray(val_losses, dtype=np.float64).tolist())

    def _flush(self):
        # Converting thousands of epochs to floats is done once, when they are read. It
        # can take a while, and a second Ctrl-C may land in it: each entry is converted
        # before anything changes and leaves the queue when it is added, so an interrupt
        # neither repeats epochs nor makes loss and lr differ in length.
        pending = self._pending
        while pending:
            entry = pending[0]
            losses, lrs = entry[0].tolist(), entry[1].tolist()
            n = len(self._loss)
            try:
                self._loss.extend(losses)
                self._lr.extend(lrs)
                pending.popleft()
            except BaseException:  # interrupted between those: undone, the entry queued
                if pending and pending[0] is entry:
                    del self._loss[n:], self._lr[n:]
                raise

    @property
    def loss(self):
        self._flush()
        return self._loss

    @property
    def lr(self):
        self._flush()
        return self._lr

    def as_arrays(self):
        """``{"loss", "lr", "val_loss"}`` as NumPy arrays."""
        return {k: np.asarray(getattr(self, k)) for k in ("loss", "lr", "val_loss")}

    def __len__(self):
        return len(self.loss)

    def __repr__(self):
        return (f"History(epochs={len(self)}, last loss="
                f"{self.loss[-1] if self.loss else None!r})")
