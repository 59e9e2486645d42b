"""What ``fit`` records."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class History:
    """Per-epoch records of one ``fit``.

    ``loss[e]``: mean training loss over the forward passes of epoch e (full
    batch: the cost before that epoch's update); ``lr[e]``: the rate used;
    ``val_loss[e]`` when validation data was given.
    """

    loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    stopped_epoch: int | None = None
    best_epoch: int | None = None

    def extend(self, losses, lrs):
        """Append the records of several epochs (array-likes of equal length)."""
        self.loss.extend(np.asarray(losses, dtype=np.float64).tolist())
        self.lr.extend(np.asarray(lrs, dtype=np.float64).tolist())

    def as_arrays(self):
        """``{"loss", "lr", "val_loss"}`` as NumPy arrays."""
        return {k: np.asarray(getattr(self, k)) for k in ("loss", "lr", "val_loss")}

    def __len__(self):
        return len(self.loss)
