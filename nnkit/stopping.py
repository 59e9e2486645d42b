"""``fit``'s early stopping: the best monitored loss, the epochs since, and where the best
parameters were (internal)."""
from __future__ import annotations

import math

import numpy as np


# Chunks of up to this many epochs are observed epoch by epoch in Python (faster than
# NumPy's calls for a few values).
_SCALAR_MAX = 64


class EarlyStopping:
    """The bookkeeping of ``fit(patience=, min_delta=, restore_best=)``: an epoch improves
    on the best when its monitored loss (val_loss if any, else loss) is below
    ``best_loss - min_delta``; ``stop`` once ``patience`` epochs in a row have not.

    Epoch by epoch (``improved``), or a chunk of epochs at once (``observe``): chunks are
    cut by ``room`` so that a stop can only fall on a chunk's last epoch, and the best
    epoch's parameters are then found again from its chunk's snapshot (``best_chunk``)."""

    def __init__(self, patience, min_delta):
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.wait = math.inf, None, 0
        self.best_chunk = None  # (Network._run_chunk's tuple, index of the best epoch in it)

    @property
    def stop(self) -> bool:
        """Whether ``patience`` epochs in a row have not improved on the best."""
        return self.patience is not None and self.wait >= self.patience

    def room(self, k: int) -> int:
        """How many of the next k epochs to run in one chunk: all of them, or as many as
        patience allows before its stop (which then can only be the chunk's last epoch)."""
        return k if self.patience is None else min(k, self.patience - self.wait)

    def improved(self, epoch: int, loss: float) -> bool:
        """Record one epoch's monitored loss; whether it is the new best."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = loss, epoch, 0
            return True
        self.wait += 1
        return False

    def observe(self, chunk, start: int) -> None:
        """Record the epochs of ``chunk`` (``Network._run_chunk``'s (snapshot, lrs, orders,
        losses, val_losses)), the first being epoch ``start``: as ``improved`` on each."""
        losses, val_losses = chunk[3], chunk[4]
        monitored = losses if val_losses is None else val_losses
        if self.min_delta == 0.0 and len(monitored) > _SCALAR_MAX:
            # each improvement is a new running minimum: vectorised
            before = np.fmin.accumulate(np.concatenate(([self.best_loss], monitored[:-1])))
            better = np.flatnonzero(monitored < before)
            if not len(better):
                self.wait += len(monitored)
                return
            i = int(better[-1])
            self.best_loss, self.best_epoch = monitored.item(i), start + i
            self.wait = len(monitored) - 1 - i
            self.best_chunk = chunk, i
            return
        for i, loss in enumerate(monitored.tolist()):
            if self.improved(start + i, loss):
                self.best_chunk = chunk, i
