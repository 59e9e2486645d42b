"""Issue 17 probes on ``sweep``: every argument checked before training, best(k), blown_up."""
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import nnkit
from nnkit.sweep import BLOWUP_FACTOR
from nnkit.validation import MAX_EPOCHS


def template(backend="numpy"):
    return nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                         loss="squared_error", dtype="float64", seed=0, backend=backend)


@pytest.fixture
def no_training(monkeypatch):
    """A numpy backend whose train_many fails: an argument error must come first."""
    be = nnkit.get_backend("numpy")

    def train_many(*args, **kwargs):
        raise AssertionError("sweep trained before rejecting its arguments")

    monkeypatch.setattr(be, "train_many", train_many)
    return be


def nan_late(e):
    return float("nan") if e == 7 else 1.0


@pytest.mark.parametrize("kw,error,match", [
    ({"epochs": 2 ** 63 - 1}, ValueError, "epochs: expected an integer .*<= 1,000,000,000"),
    ({"epochs": MAX_EPOCHS + 1}, ValueError, "epochs: expected an integer .*<= "),
    ({"epochs": 0}, ValueError, "epochs: expected an integer >= 1"),
    ({"epochs": 3.0}, ValueError, "epochs:"),
    ({"epochs": True}, ValueError, "epochs:"),
    ({"seed": []}, ValueError, "seed: expected an integer >= 0 or a non-empty list"),
    ({"seed": np.array([], dtype=int)}, ValueError, "seed: .*non-empty"),
    ({"seed": [0, True]}, ValueError, "seed: expected integers >= 0, got True"),
    ({"seed": 1.5}, ValueError, "seed: expected integers >= 0, got 1.5"),
    ({"lr": []}, ValueError, "lr: expected a number or a 1-D list"),
    ({"lr": True}, ValueError, "lr: expected finite numbers > 0, got True"),
    ({"lr": Fraction(-1, 10)}, ValueError, "lr: expected finite numbers > 0, got -0.1"),
    ({"lr": Decimal("NaN")}, ValueError, "lr: expected finite numbers > 0, got nan"),
    ({"lr": 10 ** 400}, ValueError, "lr: expected finite numbers > 0, got inf"),
    ({"lr": None}, ValueError, "lr: expected finite numbers > 0"),
    ({"batch_size": 0}, ValueError, "batch_size: expected an integer >= 1"),
    ({"batch_size": 2.0}, ValueError, "batch_size:"),
    ({"chunk_size": 0}, ValueError, "chunk_size: expected an integer >= 1"),
    ({"lr_schedule": lambda e: float("nan")}, ValueError, r"lr_schedule: .*nan\)? at epoch 0"),
    ({"lr_schedule": nan_late}, ValueError, r"lr_schedule: .*nan\)? at epoch 7"),
    ({"lr_schedule": lambda e: 0}, ValueError, r"lr_schedule: .*0\.0\)? at epoch 0"),
    ({"lr_schedule": lambda e: -1.0}, ValueError, r"lr_schedule: .*-1\.0\)? at epoch 0"),
    ({"lr_schedule": lambda e: 1e10, "lr": [0.1, 1e300]}, ValueError,
     r"lr_schedule: gives the learning rate inf \(lr 1e\+300 x factor 10000000000.0\)"),
    ({"lr_schedule": lambda e: 1e-300, "lr": [1e-300, 0.1]}, ValueError,
     r"lr_schedule: gives the learning rate 0.0 \(lr 1e-300 x factor 1e-300\)"),
    ({"lr_schedule": lambda e: "x"}, TypeError, "lr_schedule: .*'x'"),
    ({"lr_schedule": lambda e: "0.5"}, TypeError, "lr_schedule: .*'0.5'"),
    ({"lr_schedule": lambda e: True}, TypeError, "lr_schedule: .*True"),
    ({"lr_schedule": lambda e: 1j}, TypeError, "lr_schedule: .*1j"),
    ({"lr_schedule": 5}, TypeError, "lr_schedule: expected a name"),
])
def test_bad_arguments_rejected_before_training(no_training, kw, error, match):
    X, Y = nnkit.datasets.or_gate()
    args = {"lr": 0.5, "epochs": 10, **kw}
    with pytest.raises(error, match=match):
        nnkit.sweep(template(), X, Y, **args)


class Negative(nnkit.Schedule):
    def factor(self, e):
        return -np.ones_like(e)


class Words(nnkit.Schedule):
    def factor(self, e):
        return np.array(["x"] * len(e))


def test_schedule_objects_are_checked_like_callables(no_training):
    X, Y = nnkit.datasets.or_gate()
    with pytest.raises(ValueError, match=r"lr_schedule: .*-1\.0\)? at epoch 0"):
        nnkit.sweep(template(), X, Y, lr=0.5, epochs=10, lr_schedule=Negative())
    with pytest.raises(TypeError, match="lr_schedule: expected real-number factors"):
        nnkit.sweep(template(), X, Y, lr=0.5, epochs=10, lr_schedule=Words())


def test_real_numbers_of_any_type_are_rates(backend):
    X, Y = nnkit.datasets.or_gate()
    ref = nnkit.sweep(template(backend), X, Y, lr=[0.1, 0.5, 2.0], seed=[0, 3], epochs=20)
    res = nnkit.sweep(template(backend), X, Y,
                      lr=[Fraction(1, 10), Decimal("0.5"), np.int64(2)],
                      seed=np.array([0, 3]), epochs=np.int64(20))
    assert [c["lr"] for c in res.configs] == [c["lr"] for c in ref.configs]
    assert all(type(c["lr"]) is float and type(c["seed"]) is int for c in res.configs)
    np.testing.assert_array_equal(res.loss, ref.loss)
    one = nnkit.sweep(template(backend), X, Y, lr=Fraction(1, 10), seed=3, epochs=20)
    np.testing.assert_array_equal(one.loss[0], ref.loss[3])


def test_a_fractional_schedule_equals_its_float(backend):
    X, Y = nnkit.datasets.or_gate()
    a = nnkit.sweep(template(backend), X, Y, lr=0.5, epochs=20,
                    lr_schedule=lambda e: Fraction(1, e + 1))
    b = nnkit.sweep(template(backend), X, Y, lr=0.5, epochs=20,
                    lr_schedule=lambda e: 1 / (e + 1))
    np.testing.assert_array_equal(a.loss, b.loss)


@pytest.mark.parametrize("k", [-1, 0, True, 1.5, "2"])
def test_best_k_must_be_a_positive_integer(k):
    X, Y = nnkit.datasets.or_gate()
    res = nnkit.sweep(template(), X, Y, lr=[0.1, 1.0], seed=[0, 1], epochs=5)
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        res.best(k)


def test_best_k_larger_than_the_sweep_gives_every_configuration():
    X, Y = nnkit.datasets.or_gate()
    res = nnkit.sweep(template(), X, Y, lr=[0.1, 1.0], seed=[0, 1], epochs=5)
    order = res.best(4)
    assert sorted(order) == [0, 1, 2, 3] and order[0] == res.best()
    assert res.best(100) == order and res.best(np.int64(2)) == order[:2]


def test_blown_up_but_finite_configurations_are_flagged(backend):
    """The probe: a loss 30x its start, finite throughout, reported as '0 diverged'."""
    X, Y = nnkit.datasets.xor_gate()
    net = nnkit.Network([nnkit.Dense(2, 4, "tanh"), nnkit.Dense(4, 1, "sigmoid")],
                        loss="binary_crossentropy", dtype="float64", seed=0, backend=backend)
    res = nnkit.sweep(net, X, Y, lr=[0.5, 50.0], seed=[0], epochs=200)
    assert np.isfinite(res.loss).all() and not res.diverged.any()
    assert res.loss[1, -1] > 30 * res.loss[1, 0]
    assert res.blown_up.tolist() == [False, True]
    assert res.blown_up.dtype == bool and BLOWUP_FACTOR == 10


def test_diverged_configurations_are_not_also_blown_up(backend):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 4, "relu"), nnkit.Dense(4, 1, "linear")],
                        dtype="float64", seed=0, backend=backend)
    res = nnkit.sweep(net, X, Y * 1e3, lr=[1e-4, 50.0], seed=[0], epochs=300)
    assert res.diverged.tolist() == [False, True]
    assert res.blown_up.tolist() == [False, False]
