"""fit under hostile conditions (issue 17): Ctrl-C, divergence, arguments without sense.
Each probe checks the error names the argument and that nothing changed before it."""
import os
import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

import nnkit

from conftest import CPU_BACKENDS


def or_net(backend, dtype="float64", seed=0):
    return nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                         dtype=dtype, seed=seed, backend=backend)


# --- Ctrl-C --------------------------------------------------------------------------
def interrupt_after(seconds):
    """SIGINT to this process after ``seconds``; returns a list that gets the send time."""
    sent = []

    def fire():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Timer(seconds, fire)
    timer.start()
    return sent, timer


def interrupted(fit, after):
    """Run ``fit()``, which must raise TrainingInterrupted, with a SIGINT sent ``after``
    seconds in; returns (that exception, seconds from sending the signal to catching it,
    seconds from the start of ``fit`` to catching it). A compiled slice holds the GIL, so
    the timer's thread may send late: the whole run's time bounds a slice too."""
    began = time.perf_counter()
    sent, timer = interrupt_after(after)
    try:
        with pytest.raises(nnkit.TrainingInterrupted) as info:
            fit()
        caught = time.perf_counter()
    finally:
        timer.cancel()
    return info.value, caught - sent[0], caught - began


SIGINT_USABLE = (os.name != "nt" and hasattr(signal, "SIGINT")
                 and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
needs_sigint = pytest.mark.skipif(
    not SIGINT_USABLE, reason="needs POSIX signals and Python's own SIGINT handler (a run "
    "started with SIGINT ignored, e.g. in the background, would never be interrupted)")


@needs_sigint
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("batch_size", [None, 2])
def test_ctrl_c_stops_within_half_a_second_keeping_whole_epochs(backend, batch_size):
    """A 2-16-16-1 net on 64 rows: one generated numba kernel per call (full batch), the
    fused kernel (mini-batch); without slices the call would run for minutes."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 2)), rng.uniform(size=(64, 1))

    def make():
        return nnkit.Network([nnkit.Dense(2, 16, "tanh"), nnkit.Dense(16, 16, "sigmoid"),
                              nnkit.Dense(16, 1, "sigmoid")], dtype="float64", backend=backend)
    net = make()
    net.fit(X, Y, epochs=300, lr=0.05, batch_size=batch_size)  # compile outside the clock
    start = net.get_params()
    exc, after_signal, _ = interrupted(
        lambda: net.fit(X, Y, epochs=10**7, lr=0.05, batch_size=batch_size, progress=False),
        0.4)
    assert isinstance(exc, KeyboardInterrupt)
    assert after_signal < 0.5
    epochs = exc.epoch
    assert epochs == len(exc.history.loss) > 0  # every whole epoch is kept
    # The parameters are those of exactly `epochs` whole epochs, to the bit.
    again = make()
    again.set_params(start)
    again.fit(X, Y, epochs=epochs, lr=0.05, batch_size=batch_size)
    for (W, b), (W2, b2) in zip(net.get_params(), again.get_params()):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)


@needs_sigint
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_ctrl_c_with_a_large_validation_set_keeps_whole_epochs(backend):
    """The validation loss is computed inside the run: a validation set far larger than
    the training data must still give slices of about 0.2 s (the estimate counts its
    rows) that stop after a whole epoch, keeping every epoch and its val_loss."""
    rng = np.random.default_rng(1)
    X, Y = nnkit.datasets.or_gate()
    val = (rng.uniform(size=(40000, 2)), rng.uniform(size=(40000, 1)))
    net = or_net(backend)
    net.fit(X, Y, epochs=2000, lr=0.5, validation_data=val)  # compile outside the clock
    start = net.get_params()
    exc, after_signal, in_all = interrupted(
        lambda: net.fit(X, Y, epochs=10**7, lr=0.5, validation_data=val, progress=False),
        0.4)
    assert after_signal < 0.5 and in_all < 2.0
    epochs, hist = exc.epoch, exc.history
    assert epochs == len(hist.loss) == len(hist.val_loss) > 0
    again = or_net(backend)
    again.set_params(start)
    again.fit(X, Y, epochs=epochs, lr=0.5)
    for (W, b), (W2, b2) in zip(net.get_params(), again.get_params()):
        np.testing.assert_allclose(W, W2, rtol=1e-10)
        np.testing.assert_allclose(b, b2, rtol=1e-10)
    assert hist.val_loss[-1] == pytest.approx(again.evaluate(*val), rel=1e-10)


# --- divergence ----------------------------------------------------------------------
def exploding(backend, dtype="float64"):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 3, "relu"), nnkit.Dense(3, 1, "linear")],
                        loss="mse", dtype=dtype, seed=1, backend=backend)
    return net, X, Y * 1e3


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("per_epoch", [False, True], ids=["one-call", "callback"])
def test_diverged_network_keeps_the_parameters_of_its_last_finite_loss(backend, per_epoch):
    net, X, Y = exploding(backend)
    callback = (lambda epoch, record: None) if per_epoch else None
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y, epochs=500, lr=2.0, callback=callback)
    exc = info.value
    assert exc.last_finite_loss is not None and exc.epoch == len(exc.history.loss)
    assert np.isfinite(net.predict(X)).all()
    assert net.evaluate(X, Y) == pytest.approx(exc.last_finite_loss, rel=1e-9)
    net.fit(X, Y, epochs=20, lr=1e-7)  # usable: a tiny rate trains on from there


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("epochs", [1, 5])
@pytest.mark.parametrize("per_epoch", [False, True], ids=["one-call", "callback"])
def test_an_update_that_leaves_a_parameter_infinite_is_reported_at_the_next_epoch(
        backend, epochs, per_epoch):
    """Epoch 0's loss is finite (~7e298) and its update overflows a weight to inf: the
    run stops at epoch 1 with the parameters epoch 0 measured its loss at (the initial
    ones), in one call and epoch by epoch alike; a callback is not called for that
    epoch (its parameters are checked first)."""
    net = nnkit.Network([nnkit.Dense(2, 1, "linear")], loss="mse", dtype="float64", seed=0,
                        backend=backend)
    X, Y = np.full((4, 2), 1e150), np.array([[0.0], [1.0], [0.0], [1.0]])
    start, seen = net.get_params(), []
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y, epochs=epochs, lr=1e10,
                callback=(lambda epoch, record: seen.append(epoch)) if per_epoch else None)
    exc = info.value
    W0, b0 = start[0]
    loss0 = float(np.mean((X @ W0 + b0 - Y) ** 2))  # an independent float64 evaluation
    assert exc.epoch == 1 and exc.history.loss == [pytest.approx(loss0, rel=1e-12)]
    assert exc.last_finite_loss == exc.history.loss[0]
    assert seen == []
    for (W, b), (Ws, bs) in zip(net.get_params(), start):
        np.testing.assert_array_equal(W, Ws)
        np.testing.assert_array_equal(b, bs)


def blowing_up(backend):
    """A net whose first update overflows a weight to inf while its loss (~7e298) is
    finite: (net, X, Y, its initial parameters)."""
    net = nnkit.Network([nnkit.Dense(2, 1, "linear")], loss="mse", dtype="float64", seed=0,
                        backend=backend)
    return net, np.full((4, 2), 1e150), np.zeros((4, 1)), net.get_params()


def assert_params_equal(net, params):
    for (W, b), (W0, b0) in zip(net.get_params(), params):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_patience_at_the_blow_up_epoch_is_not_an_early_stop(backend):
    net, X, Y, start = blowing_up(backend)
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y, epochs=3, lr=1e10, validation_data=(X[:2], Y[:2]), patience=1)
    assert info.value.epoch == 1 and info.value.history.stopped_epoch is None
    assert_params_equal(net, start)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_callback_that_sets_the_parameters_is_where_a_divergence_goes_back_to(backend):
    """The callback of epoch 1 sets parameters whose next update overflows: epoch 2's
    loss is measured at them, so that is where the run goes back to (the per-epoch
    loop's snapshot is taken again after a callback that changed the network)."""
    net, X, Y, start = blowing_up(backend)

    def callback(epoch, record):
        if epoch == 1:
            net.set_params(start)
    net.set_params([(np.zeros_like(W), np.zeros_like(b)) for W, b in start])  # (at rest)
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X, Y, epochs=5, lr=1e10, callback=callback)
    assert info.value.epoch == 3 and info.value.history.loss[:2] == [0.0, 0.0]
    assert_params_equal(net, start)
    assert net.evaluate(X, Y) == pytest.approx(info.value.last_finite_loss, rel=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_stop_request_reaches_short_fits_and_the_blow_up_epoch(backend):
    """STOP_REQUESTED (set by a fit's Ctrl-C handler, possibly another thread's) ends a
    fit too short for a handler of its own, and at the epoch whose update blew a
    parameter up it is the divergence that is reported, the parameters restored."""
    from nnkit.backends.base import STOP_REQUESTED
    net, X, Y, start = blowing_up(backend)
    X4, Y4 = nnkit.datasets.or_gate()
    STOP_REQUESTED.set()
    try:
        with pytest.raises(nnkit.TrainingInterrupted):
            or_net(backend).fit(X4, Y4, epochs=5, lr=0.5)
        with pytest.raises(nnkit.TrainingDiverged) as info:
            net.fit(X, Y, epochs=3, lr=1e10, callback=lambda epoch, record: None)
    finally:
        STOP_REQUESTED.clear()
    assert info.value.epoch == 1
    assert_params_equal(net, start)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_diverged_minibatch_network_predicts_finite_values(backend):
    net, X, Y = exploding(backend)
    with pytest.raises(nnkit.TrainingDiverged):
        net.fit(X, Y, epochs=500, lr=2.0, batch_size=2, shuffle=True)
    assert np.isfinite(net.predict(X)).all()
    assert np.isfinite(net.evaluate(X, Y))


def test_divergence_at_the_first_epoch_keeps_the_initial_parameters():
    net, X, Y = exploding("numpy")
    before = net.get_params()
    with pytest.raises(nnkit.TrainingDiverged) as info:
        net.fit(X * 1e200, Y * 1e100, epochs=3, lr=1.0)
    assert info.value.epoch == 0 and info.value.last_finite_loss is None
    for (W, b), (W0, b0) in zip(net.get_params(), before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


# --- arguments -----------------------------------------------------------------------
X4, Y4 = nnkit.datasets.or_gate()
BAD_FIT = [
    (dict(epochs=2**63 - 1), ValueError, "epochs: .*<= 1,000,000,000"),
    (dict(epochs=10**9 + 1), ValueError, "epochs"),
    (dict(min_delta="x", patience=3), TypeError, "min_delta"),
    (dict(min_delta=-1.0, patience=3), ValueError, "min_delta"),
    (dict(lr_schedule=lambda e: "x"), TypeError, "lr_schedule"),
    (dict(lr_schedule=lambda e: float("nan")), ValueError, "lr_schedule"),
    (dict(lr_schedule=lambda e: 0.0), ValueError, "lr_schedule"),
    (dict(lr_schedule=lambda e: -1.0), ValueError, "lr_schedule"),
    (dict(lr_schedule=lambda e: True), TypeError, "lr_schedule"),
    (dict(X=np.full((4, 2), 1e39)), ValueError, "X: .*float32"),
    (dict(Y=np.ma.masked_array(Y4, mask=[[1], [0], [0], [0]])), TypeError, "Y: masked"),
    (dict(X=np.ma.masked_array(X4)), TypeError, "X: masked"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD_FIT)
def test_fit_rejects_before_changing_anything(kwargs, exc, match):
    net = or_net("numpy", dtype="float32")
    before = net.get_params()
    args = dict(X=X4, Y=Y4, epochs=5, lr=0.5)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        net.fit(**args)
    for (W, b), (W0, b0) in zip(net.get_params(), before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("targets", [5.0, -1.0])
def test_binary_crossentropy_targets_must_lie_in_0_1(targets):
    net = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], loss="binary_crossentropy")
    Y = np.full((4, 1), targets)
    for call in (lambda: net.fit(X4, Y, epochs=3), lambda: net.evaluate(X4, Y),
                 lambda: net.gradients(X4, Y)):
        with pytest.raises(ValueError, match=r"Y: binary_crossentropy targets .*\[0, 1\]"):
            call()


def test_exact_fractions_and_numpy_scalars_are_learning_rates():
    a, b, c = or_net("numpy"), or_net("numpy"), or_net("numpy")
    h1 = a.fit(X4, Y4, epochs=20, lr=Fraction(1, 2)).loss
    h2 = b.fit(X4, Y4, epochs=20, lr=np.float32(0.5)).loss
    h3 = c.fit(X4, Y4, epochs=20, lr=0.5).loss
    assert h1 == h3 and h2 == h3


def test_dtype_none_is_not_float64():
    with pytest.raises(ValueError, match="dtype"):
        nnkit.Network([nnkit.Dense(2, 1)], dtype=None)


def test_float64_data_that_fits_float32_is_accepted():
    net = or_net("numpy", dtype="float32")
    net.fit(np.full((4, 2), 3e38), Y4, epochs=1, lr=1e-40)  # large but finite in float32


def test_a_callback_must_be_callable():
    net = or_net("numpy")
    before = net.get_params()
    with pytest.raises(TypeError, match="callback"):
        net.fit(X4, Y4, epochs=3, callback=5)
    np.testing.assert_array_equal(net.get_params()[0][0], before[0][0])


def test_schedules_are_checked_for_every_epoch_before_training():
    """Also past the rates kept up front (2**20 epochs): nothing trains."""
    net = or_net("numpy")
    before = net.get_params()
    bad_late = lambda e: 1.0 if e < 1_100_000 else 0.0  # noqa: E731
    with pytest.raises(ValueError, match="lr_schedule: .* epoch 1100000"):
        net.fit(X4, Y4, epochs=1_200_000, lr=0.5, lr_schedule=bad_late)
    np.testing.assert_array_equal(net.get_params()[0][0], before[0][0])


@needs_sigint
def test_second_ctrl_c_interrupts_at_once_and_handlers_are_restored():
    """The first Ctrl-C asks for a stop after the epoch; the handler is Python's again
    after fit, so a Ctrl-C outside training is an ordinary KeyboardInterrupt."""
    X, Y = nnkit.datasets.or_gate()
    net = or_net("numpy")
    interrupted(lambda: net.fit(X, Y, epochs=10**6, lr=0.5, progress=False), 0.3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
