"""Early stopping without a callback trains chunks of epochs, one backend call each
(``nnkit.stopping.EarlyStopping`` cuts them so that a stop can only fall on a chunk's last
epoch; ``restore_best`` runs the best epoch's chunk again from its snapshot). The
reference is the same fit one epoch at a time, which a callback forces: the same
history, stopping and best epochs, parameters, optimizer state and shuffling draws, to
the bit, diverging runs included."""
import numpy as np
import pytest

import nnkit
from nnkit.stopping import EarlyStopping


def data(rng, n=12):
    X = rng.normal(size=(n, 3))
    Y = X @ rng.normal(size=(3, 1)) + 0.1 * rng.normal(size=(n, 1))
    return X, Y


def make(backend):
    return nnkit.Network([nnkit.Dense(3, 8, "tanh"), nnkit.Dense(8, 1, "linear")],
                         loss="mse", dtype="float64", seed=0, backend=backend)


def outcome(backend, callback, fit_args):
    """Everything a fit leaves behind, as plain data."""
    rng = np.random.default_rng(3)
    X, Y = data(rng)
    Xv, Yv = data(np.random.default_rng(99))  # unrelated targets: the net overfits them
    net = make(backend)
    err = None
    try:
        hist = net.fit(X, Y, validation_data=(Xv, Yv), callback=callback, **fit_args)
    except nnkit.TrainingDiverged as exc:
        hist, err = exc.history, (exc.epoch, exc.last_finite_loss)
    opt, l2, t, slots = net.get_optimizer_state()
    return {"loss": hist.loss, "lr": hist.lr, "val_loss": hist.val_loss,
            "stopped": hist.stopped_epoch, "best": hist.best_epoch, "error": err,
            "params": [(W.tobytes(), b.tobytes()) for W, b in net.get_params()],
            "optimizer": (t, [a.tobytes() for a in slots]),
            "next_shuffle": net.shuffle_order(12).tolist()}


SCENARIOS = {
    "patience": dict(epochs=400, lr=0.2, patience=5),
    "patience-1": dict(epochs=400, lr=0.2, patience=1),
    "patience-long": dict(epochs=400, lr=0.05, patience=60),
    "patience-restore-best": dict(epochs=400, lr=0.2, patience=7, restore_best=True),
    "restore-best-only": dict(epochs=300, lr=0.2, restore_best=True),
    "min-delta": dict(epochs=400, lr=0.05, patience=4, min_delta=1e-3, restore_best=True),
    "adam-step-schedule": dict(epochs=300, lr=0.05, patience=6, restore_best=True,
                               optimizer="adam", lr_schedule="step"),
    "shuffled-mini-batches": dict(epochs=300, lr=0.1, patience=5, restore_best=True,
                                  batch_size=5, shuffle=True),
    "diverges": dict(epochs=200, lr=2.0, patience=150, restore_best=True),
    "stops-before-it-would-diverge": dict(epochs=200, lr=2.0, patience=3, restore_best=True),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_chunked_early_stopping_is_epoch_by_epoch_to_the_bit(backend, name):
    args = SCENARIOS[name]
    chunked = outcome(backend, None, args)
    reference = outcome(backend, lambda epoch, record: None, args)
    assert chunked == reference
    if name == "diverges":
        assert chunked["error"] is not None
    elif "patience" in args:
        assert chunked["stopped"] is not None and chunked["stopped"] < args["epochs"] - 1
    if args.get("restore_best") and name != "diverges":
        assert chunked["best"] == int(np.argmin(chunked["val_loss"]))


def test_early_stopping_runs_chunks_not_epochs(rng):
    X, Y = data(rng)
    net = make("numpy")
    calls = []
    run = net.backend.prepare_epochs

    def counting(*args, **kwargs):
        epochs = run(*args, **kwargs)
        return lambda *a, **k: calls.append(len(a[2])) or epochs(*a, **k)
    net.backend.prepare_epochs = counting
    try:
        hist = net.fit(X, Y, epochs=500, lr=0.01, patience=100, restore_best=True)
    finally:
        del net.backend.prepare_epochs
    assert sum(calls) >= len(hist.loss) and len(calls) <= len(hist.loss) // 50


@pytest.mark.parametrize("min_delta", [0.0, 0.5])
def test_observing_a_chunk_is_observing_its_epochs_one_by_one(min_delta):
    rng = np.random.default_rng(0)
    for trial in range(200):
        k = int(rng.integers(1, 12)) if trial % 2 else int(rng.integers(60, 200))
        losses = rng.choice([np.nan, np.inf, 0.0, 1.0, 1.5, 2.0, 3.0], size=(3, k))
        one, chunks = EarlyStopping(None, min_delta), EarlyStopping(None, min_delta)
        start = 0
        for row in losses:
            chunk = (None, None, None, row.copy(), None)
            chunks.observe(chunk, start)
            for i, v in enumerate(row.tolist()):
                if one.improved(start + i, v):
                    best_chunk = (chunk, i)
            start += k
        assert (chunks.best_loss, chunks.best_epoch, chunks.wait) == (
            one.best_loss, one.best_epoch, one.wait), losses
        if one.best_epoch is not None:
            assert chunks.best_chunk[0] is best_chunk[0]
            assert chunks.best_chunk[1] == best_chunk[1]


@pytest.mark.parametrize("patience, wait, k, room", [(5, 0, 100, 5), (5, 3, 100, 2),
                                                     (5, 0, 3, 3), (None, 9, 100, 100)])
def test_room_keeps_a_stop_on_a_chunks_last_epoch(patience, wait, k, room):
    watch = EarlyStopping(patience, 0.0)
    watch.wait = wait
    assert watch.room(k) == room


def corner(backend, case, callback, fit_args):
    """A diverging corner case, fitted; its outcome as plain data."""
    if case == "saturated":  # weights overflow to inf while the sigmoids keep the loss finite
        X = np.array([[0.5, 1.0], [1.0, 0.3], [0.2, 0.9], [1.0, 1.0]])
        Y = np.array([[0.], [1.], [1.], [1.]])
        net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                            loss="mse", dtype="float64", seed=1, backend=backend)
        kwargs = dict(epochs=40, lr=1.7e308, optimizer="momentum")
    elif case == "last-batch-overflows":  # epoch 0's loss finite, its last update not
        X = np.random.default_rng(0).normal(size=(8, 3))
        Y = np.zeros((8, 1))
        Y[0] = 1e153
        net = nnkit.Network([nnkit.Dense(3, 6, "tanh"), nnkit.Dense(6, 1, "linear")],
                            loss="mse", dtype="float64", seed=4, backend=backend)
        net.set_params([(np.zeros((3, 6)), np.zeros(6)), (np.zeros((6, 1)), np.zeros(1))])
        kwargs = dict(epochs=20, lr=1e157, batch_size=3, shuffle=True)
    else:
        X = np.random.default_rng(7).normal(size=(20, 3))
        Y = X @ np.array([[1.], [-2.], [.5]])
        act = "relu" if case == "nan-start" else "tanh"
        net = nnkit.Network([nnkit.Dense(3, 6, act), nnkit.Dense(6, 1, "linear")],
                            loss="mse", dtype="float64", seed=0, backend=backend)
        kwargs = dict(epochs=50, lr=0.01 if case == "nan-start" else 5.0, batch_size=5,
                      shuffle=True)
        if case == "nan-start":
            net.train_state.params[0][0][0, 0] = np.nan  # (set_params refuses NaN)
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y, callback=callback, **kwargs, **fit_args)
    exc = info.value
    return {"epoch": exc.epoch, "last": exc.last_finite_loss, "loss": exc.history.loss,
            "params": [(W.tobytes(), b.tobytes()) for W, b in net.get_params()],
            "next_shuffle": net.shuffle_order(20).tolist()}


@pytest.mark.parametrize("case", ["saturated", "nan-start", "shuffled",
                                  "last-batch-overflows"])
@pytest.mark.parametrize("fit_args", [dict(patience=300), dict(restore_best=True), {}],
                         ids=["patience", "restore-best", "plain"])
def test_a_diverging_chunk_ends_as_epoch_by_epoch(backend, case, fit_args):
    """The parameters may turn non-finite an epoch or more before a loss does (saturated
    sigmoids; numba's relu maps NaN to 0): the epoch that did it is found. The shuffle
    generator keeps only the orders of the epochs begun. Plain fits (chunks by time) too."""
    chunked = corner(backend, case, None, fit_args)
    reference = corner(backend, case, lambda epoch, record: None, {})
    assert chunked == reference
    if case != "nan-start":  # it keeps the last finite parameters (and the orders drawn)
        assert all(np.isfinite(np.frombuffer(W)).all() and np.isfinite(np.frombuffer(b)).all()
                   for W, b in chunked["params"])


def test_a_ctrl_c_during_restore_best_does_not_cut_its_rerun_short(monkeypatch):
    """restore_best runs the best epoch's chunk again at the end; a first Ctrl-C then
    (numpy's epoch loop ends early on it) must not leave the parameters part-way."""
    from nnkit.backends.base import STOP_REQUESTED
    rerun = nnkit.Network._rerun

    def ctrl_c_first(self, *args, **kwargs):
        STOP_REQUESTED.set()
        return rerun(self, *args, **kwargs)
    args = dict(epochs=300, lr=0.2, restore_best=True)
    reference = outcome("numpy", lambda epoch, record: None, args)
    monkeypatch.setattr(nnkit.Network, "_rerun", ctrl_c_first)
    try:
        chunked = outcome("numpy", None, args)
    finally:
        STOP_REQUESTED.clear()
    assert chunked["best"] < 299 and chunked == reference


def test_a_ctrl_c_while_a_diverged_chunk_is_run_again_keeps_the_chunks_start(monkeypatch):
    """Finding where a chunk diverged runs parts of it again; a (second) Ctrl-C then
    leaves the parameters the history ends with, the chunk's start, not a re-run's."""
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(nnkit.Network, "_first_nonfinite", interrupted)
    X = np.array([[0.5, 1.0], [1.0, 0.3], [0.2, 0.9], [1.0, 1.0]])
    Y = np.array([[0.], [1.], [1.], [1.]])
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        loss="mse", dtype="float64", seed=1, backend="numpy")
    start = [(W.copy(), b.copy()) for W, b in net.get_params()]
    with pytest.raises(nnkit.TrainingInterrupted) as info:
        net.fit(X, Y, epochs=40, lr=1.7e308, optimizer="momentum", patience=300)
    assert info.value.epoch == 0 and info.value.history.loss == []
    for (W, b), (W0, b0) in zip(net.get_params(), start):
        assert W.tobytes() == W0.tobytes() and b.tobytes() == b0.tobytes()
