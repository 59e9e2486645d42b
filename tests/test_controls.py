"""Training controls: validation data, callbacks, early stopping, restore_best, progress."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nnkit


def data(rng, n=40):
    X = rng.normal(size=(n, 3))
    Y = X @ rng.normal(size=(3, 1)) + 0.1 * rng.normal(size=(n, 1))
    return X, Y


def make(backend, seed=0):
    return nnkit.Network([nnkit.Dense(3, 8, "tanh"), nnkit.Dense(8, 1, "linear")],
                         loss="mse", dtype="float64", seed=seed, backend=backend)


def test_callback_gets_each_epochs_record(backend, rng):
    X, Y = data(rng)
    seen = []
    hist = make(backend).fit(X, Y, epochs=6, lr=0.05,
                             callback=lambda e, rec: seen.append((e, dict(rec))))
    assert [e for e, _ in seen] == list(range(6))
    assert [r["loss"] for _, r in seen] == hist.loss
    assert all(r["lr"] == 0.05 for _, r in seen)


def test_validation_data_loss_is_the_evaluated_loss(backend, rng):
    X, Y = data(rng)
    Xv, Yv = data(rng, 10)
    net = make(backend)
    hist = net.fit(X, Y, epochs=3, lr=0.05, validation_data=(Xv, Yv))
    assert hist.val_loss[-1] == pytest.approx(net.evaluate(Xv, Yv), rel=1e-12)


def test_early_stopping_stops_when_validation_stops_improving(backend, rng):
    X, Y = data(rng, 12)
    Xv, Yv = data(np.random.default_rng(99), 12)  # unrelated targets: overfitting
    net = make(backend)
    hist = net.fit(X, Y, epochs=3000, lr=0.2, validation_data=(Xv, Yv), patience=5)
    assert hist.stopped_epoch is not None and len(hist.loss) == hist.stopped_epoch + 1 < 3000
    best = int(np.argmin(hist.val_loss))
    assert hist.stopped_epoch - best == 5                       # exactly `patience` epochs
    assert all(v >= hist.val_loss[best] for v in hist.val_loss[best + 1:])


def test_restore_best_restores_even_without_stopping(backend, rng):
    X, Y = data(rng, 12)
    Xv, Yv = data(np.random.default_rng(99), 12)
    net = make(backend)
    hist = net.fit(X, Y, epochs=200, lr=0.2, validation_data=(Xv, Yv), restore_best=True)
    assert hist.stopped_epoch is None
    best = int(np.argmin(hist.val_loss))
    assert hist.best_epoch == best
    # The weights are those after epoch `best`: replaying best+1 epochs gives them.
    ref = make(backend)
    ref.fit(X, Y, epochs=best + 1, lr=0.2)
    for (W, b), (rW, rb) in zip(net.get_params(), ref.get_params()):
        np.testing.assert_allclose(W, rW, rtol=1e-12)


def test_min_delta_counts_small_gains_as_no_gain(rng):
    X, Y = data(rng)
    net = make("numpy")
    hist = net.fit(X, Y, epochs=500, lr=0.01, patience=3, min_delta=1e3)
    assert hist.stopped_epoch == 3  # nothing improves by 1000 after the first epoch


def test_progress_bar_when_asked(rng, capsys):
    X, Y = data(rng)
    make("numpy").fit(X, Y, epochs=50, lr=0.01, progress=True)
    err = capsys.readouterr().err
    assert "epoch" in err and "50/50" in err


def test_train_from_csv_with_target_columns(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(30, 2))
    Y = np.c_[X.sum(1) > 1, X[:, 0] > 0.5].astype(float)
    path = tmp_path / "d.csv"
    np.savetxt(path, np.c_[X, Y], delimiter=",")
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    out = subprocess.run([sys.executable, "-m", "nnkit", "train", "--dataset", str(path),
                          "--target-cols", "2", "--layers", "2,6,2", "--epochs", "300",
                          "--quiet", "--validation-split", "0.2"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "final val_loss" in out.stdout and "accuracy" in out.stdout
