"""Exceptions users can catch."""
from .backends import BackendUnavailableError

__all__ = ["BackendUnavailableError", "TrainingDiverged", "TrainingInterrupted"]


class TrainingDiverged(ArithmeticError):
    """The training loss became NaN or infinite.

    Attributes: ``epoch`` (0-based epoch whose loss was not finite),
    ``last_finite_loss`` (float or None) and ``history`` (the History so far).
    The network keeps its last finite parameters.
    """

    def __init__(self, epoch, last_finite_loss, history):
        self.epoch = epoch
        self.last_finite_loss = last_finite_loss
        self.history = history
        last = "none" if last_finite_loss is None else f"{last_finite_loss:.6g}"
        super().__init__(
            f"training diverged at epoch {epoch}: the loss is not finite "
            f"(last finite loss: {last}); try a smaller learning rate")


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, SIGINT) between epochs.

    Attributes: ``epoch`` (number of whole epochs trained in this ``fit``) and
    ``history`` (the History so far). The network keeps the parameters of its last
    whole epoch. A ``KeyboardInterrupt``, so code that does not know it still stops.
    """

    def __init__(self, epoch, history):
        self.epoch = epoch
        self.history = history
        super().__init__(f"training interrupted after {epoch} whole epochs")
