"""Issue 14's data, CLI and benchmark side: ``nnkit.datasets.digits`` (scikit-learn's
bundled digits, an optional dependency), ``nnkit train --dataset digits --optimizer adam
--l2 ...`` printing a test accuracy, and the classification workloads of ``nnkit bench``."""
import json
import subprocess
import sys
import types

import numpy as np
import pytest

import nnkit
from nnkit import cli, datasets
from nnkit.bench import WORKLOADS, QUICK, peers
from nnkit.bench.workloads import blobs

from test_cli_errors import _clean, error_line, run  # noqa: F401 (_clean: autouse)

CLF = ("digits-adam", "mnist-adam")


@pytest.fixture
def no_sklearn(monkeypatch):
    """``import sklearn`` (and any submodule) fails, as where it is not installed."""
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)


@pytest.fixture
def fake_digits(monkeypatch):
    """scikit-learn's load_digits replaced by 200 samples whose first pixel is their index
    (times 16, undone by the /16 scaling) and whose label is index % 10 (20 per class)."""
    pytest.importorskip("sklearn")
    import sklearn.datasets
    n = 200
    data = np.zeros((n, 64))
    data[:, 0] = np.arange(n) * 16
    bunch = types.SimpleNamespace(data=data, target=np.arange(n) % 10)
    monkeypatch.setattr(sklearn.datasets, "load_digits", lambda: bunch)
    return n


def _value(out, label):
    """The number after ``label`` in the CLI's output."""
    line = next(line for line in out.splitlines() if label in line)
    return float(line.split(label, 1)[1].split()[0])


# ---------------------------------------------------------------- the data set
def test_digits_shapes_scaling_and_labels():
    pytest.importorskip("sklearn")
    X, y, Xt, yt = datasets.digits()
    assert X.shape == (1347, 64) and y.shape == (1347,)
    assert Xt.shape == (450, 64) and yt.shape == (450,)
    assert X.dtype == Xt.dtype == np.float64
    assert np.issubdtype(y.dtype, np.integer) and np.issubdtype(yt.dtype, np.integer)
    for A in (X, Xt):
        assert A.min() == 0.0 and A.max() == 1.0
        np.testing.assert_array_equal(A * 16, np.round(A * 16))  # pixel / 16
    assert set(np.unique(y)) == set(np.unique(yt)) == set(range(10))


def test_digits_is_deterministic_and_seeded():
    pytest.importorskip("sklearn")
    a, b = datasets.digits(), datasets.digits(seed=0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = datasets.digits(seed=1)
    assert not np.array_equal(a[1], c[1])
    assert len(c[1]) == len(a[1])  # the same sizes, another split
    X, y, Xt, yt = datasets.digits(test_size=0.5)
    assert abs(len(yt) - len(y)) <= 10


def test_digits_split_is_disjoint_complete_and_stratified(fake_digits):
    n = fake_digits
    X, y, Xt, yt = datasets.digits(test_size=0.25, seed=3)
    train, test = (np.round(A[:, 0]).astype(int) for A in (X, Xt))  # 16 i / 16
    assert not set(train) & set(test)
    assert sorted(np.concatenate([train, test])) == list(range(n))
    np.testing.assert_array_equal(y, train % 10)  # each label stays with its sample
    np.testing.assert_array_equal(yt, test % 10)
    assert np.bincount(yt, minlength=10).tolist() == [5] * 10  # round(0.25 * 20) per class
    assert not np.array_equal(train, np.sort(train))  # shuffled, not in index order


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.2"])
def test_digits_test_size_checked(bad):
    with pytest.raises(ValueError, match="test_size"):
        datasets.digits(test_size=bad)


def test_digits_without_sklearn_says_what_to_install(no_sklearn):
    with pytest.raises(ImportError) as info:
        datasets.digits()
    msg = str(info.value)
    assert "pip install scikit-learn" in msg and "nnkit[sklearn]" in msg


def test_import_nnkit_does_not_import_sklearn():
    code = "import sys, nnkit, nnkit.bench; assert 'sklearn' not in sys.modules, 'imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr


def test_load_dataset_digits_one_hot_and_split():
    pytest.importorskip("sklearn")
    X, Y, Xt, Yt = datasets.load_dataset("digits", split=True)
    _, y, _, yt = datasets.digits()
    assert Y.shape == (1347, 10) and Yt.shape == (450, 10)
    np.testing.assert_array_equal(Y.argmax(1), y)
    np.testing.assert_array_equal(Yt.argmax(1), yt)
    np.testing.assert_array_equal(Y.sum(1), 1.0)
    X2, Y2 = datasets.load_dataset("digits", seed=5)  # the test set never moves
    np.testing.assert_array_equal(X2, X)
    assert datasets.load_dataset("or", split=True)[2:] == (None, None)


def test_one_hot_checks_labels():
    np.testing.assert_array_equal(datasets.one_hot(np.array([2, 0]), 3),
                                  [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="labels"):
        datasets.one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="labels"):
        datasets.one_hot(np.array([0.5]))


# ------------------------------------------------------------------------ CLI
def test_cli_digits_adam_prints_test_accuracy(capsys):
    pytest.importorskip("sklearn")
    code, out, err = run(capsys, "train", "--dataset", "digits", "--layers", "64,32,10",
                         "--activation", "relu", "--loss", "categorical_crossentropy",
                         "--optimizer", "adam", "--lr", "0.01", "--l2", "1e-4",
                         "--batch-size", "64", "--epochs", "8", "--quiet")
    assert code == 0, err
    assert "optimizer: adam, lr: 0.01, l2: 0.0001" in out
    acc = _value(out, "test accuracy:")
    assert 0.85 < acc <= 1.0, out
    assert _value(out, "test loss:") < 0.6, out
    assert "(450 held-out samples)" in out


def test_cli_explicit_softmax_numba(capsys):
    pytest.importorskip("sklearn")
    if "numba" not in nnkit.available_backends():
        pytest.skip("numba unusable")
    code, out, err = run(capsys, "train", "--dataset", "digits", "--layers", "64,10",
                         "--output-activation", "softmax", "--loss",
                         "categorical_crossentropy", "--optimizer", "adam", "--lr", "0.05",
                         "--batch-size", "128", "--epochs", "5", "--backend", "numba",
                         "--quiet")
    assert code == 0, err
    assert _value(out, "test accuracy:") > 0.8, out


def test_cli_passes_optimizer_l2_and_default_rates(capsys, monkeypatch):
    """The plumbing alone: what ``fit`` receives (both the warm-up and the real run)."""
    calls = []

    def fake_fit(self, X, Y, **kwargs):
        calls.append(kwargs)
        raise ValueError("stop here")
    monkeypatch.setattr(nnkit.Network, "fit", fake_fit)
    error_line(capsys, "train", "--optimizer", "adam", "--l2", "0.5", "--epochs", "3")
    assert calls and all(c["optimizer"] == "adam" and c["l2"] == 0.5 and c["lr"] == 1e-3
                         for c in calls)
    calls.clear()
    error_line(capsys, "train", "--optimizer", "nesterov", "--epochs", "3")
    assert calls[-1]["optimizer"] == "nesterov" and calls[-1]["lr"] == 1.0
    assert "l2" not in calls[-1]
    calls.clear()
    error_line(capsys, "train", "--epochs", "3", "--lr", "0.3")  # plain SGD: as before
    assert "optimizer" not in calls[-1] and "l2" not in calls[-1] and calls[-1]["lr"] == 0.3


def test_cli_output_activation_defaults_to_softmax_for_cross_entropy():
    # (the digits run above relies on it too: it gives no --output-activation)
    parse = cli._parser().parse_args
    assert cli._output_activation(parse(["train", "--loss", "categorical_crossentropy"])) \
        == "softmax"
    assert cli._output_activation(parse(["train"])) == "sigmoid"
    assert cli._output_activation(parse(["train", "--loss", "categorical_crossentropy",
                                         "--output-activation", "linear"])) == "linear"


@pytest.mark.parametrize("argv, expected", [
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--l2", "-1"], "argument --l2: expected a finite number >= 0, got '-1'"),
    (["--l2", "nan"], "argument --l2: expected a finite number >= 0"),
    (["--output-activation", "softmaxx"], "invalid choice: 'softmaxx'"),
])
def test_cli_bad_options_one_line(capsys, argv, expected):
    assert expected in error_line(capsys, "train", *argv)


def test_cli_digits_layers_must_fit(capsys):
    pytest.importorskip("sklearn")
    line = error_line(capsys, "train", "--dataset", "digits", "--layers", "64,8,3")
    assert "the first size must be 64 and the last 10" in line


def test_cli_digits_without_sklearn_one_line(capsys, no_sklearn):
    line = error_line(capsys, "train", "--dataset", "digits", "--layers", "64,10")
    assert "--dataset digits: " in line and "pip install scikit-learn" in line


def test_cli_softmax_output_is_accepted_by_argparse():
    args = cli._parser().parse_args(["train", "--output-activation", "softmax"])
    assert args.output_activation == "softmax" and args.optimizer == "sgd" and args.l2 == 0


def test_cli_sweep_takes_optimizer_and_l2(capsys, monkeypatch):
    code, out, err = run(capsys, "sweep", "--dataset", "xor", "--layers", "2,4,1",
                         "--activation", "tanh", "--loss", "binary_crossentropy",
                         "--optimizer", "adam", "--l2", "1e-4", "--lr", "0.01,0.1",
                         "--seeds", "1", "--epochs", "200", "--quiet", "--top", "1")
    assert code == 0, err
    assert "2 configurations x 200 epochs" in out and "#1: lr 0.1" in out
    sweep_module = sys.modules["nnkit.sweep"]  # (nnkit.sweep is the function)
    seen = {}

    def fake_sweep(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop")
    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    error_line(capsys, "sweep", "--optimizer", "momentum", "--l2", "0.25")
    assert seen["optimizer"] == "momentum" and seen["l2"] == 0.25


# -------------------------------------------------------------------- nnkit bench
def test_classification_workloads_registered_out_of_quick():
    for name, sizes in zip(CLF, ((64, 64, 10), (784, 256, 10))):
        w = WORKLOADS[name]
        assert w.classification and w.sizes == sizes and name not in QUICK
        assert (w.hidden, w.output, w.loss, w.optimizer) == (
            "relu", "softmax", "categorical_crossentropy", "adam")
    assert not any(WORKLOADS[n].classification for n in QUICK)
    assert WORKLOADS["digits-adam"].fit_options() == {
        "lr": 1e-3, "batch_size": 64, "shuffle": True, "optimizer": "adam",
        "progress": False}


def test_blobs_is_mnist_sized_seeded_and_learnable_data():
    X, y, Xt, yt = blobs(n_train=300, n_test=100)
    assert X.shape == (300, 784) and Xt.shape == (100, 784) and y.shape == (300,)
    assert 0 <= X.min() and X.max() <= 1 and set(np.unique(y)) == set(range(10))
    np.testing.assert_array_equal(blobs(n_train=300, n_test=100)[0], X)
    X[:] = -1  # a copy: the cached arrays are not changed
    assert blobs(n_train=300, n_test=100)[0].min() >= 0
    # nearest class mean beats chance by far: the classes are separable, not noise
    X, y, Xt, yt = blobs(n_train=2000, n_test=500)
    means = np.stack([X[y == c].mean(0) for c in range(10)])
    pred = ((Xt[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert 0.5 < np.mean(pred == yt) < 1.0


def test_workload_data_is_one_hot_rows_of_the_training_set():
    w = WORKLOADS["mnist-adam"]
    X, Y = w.data("float32")
    Xs, ys, _, _ = w.split("float32")
    assert X.shape == (128, 784) and Y.shape == (128, 10) and X.dtype == np.float32
    np.testing.assert_array_equal(Y.argmax(1), ys[:128])
    np.testing.assert_array_equal(X, Xs[:128])


def test_bench_selects_classification_workload_and_reports_accuracy(capsys, tmp_path):
    pytest.importorskip("sklearn")
    path = tmp_path / "b.json"
    code, out, err = run(capsys, "bench", "--quick", "--workloads", "digits-adam",
                         "--backends", "numpy", "--peers", "sklearn", "--json", path)
    assert code == 0, err
    head = next(line for line in out.splitlines() if line.startswith("workload"))
    assert head.rstrip().endswith("accuracy")
    assert "classification workloads (digits-adam: 64-64-10 relu->softmax" in out
    rows = json.loads(path.read_text())["rows"]
    ours = next(r for r in rows if r["backend"] == "numpy")
    assert ours["workload"] == "digits-adam" and ours["epochs"] == 10
    assert 0.8 < ours["accuracy"] <= 1.0 and ours["test_loss"] > 0
    assert ours["step_s"] > 0 and ours["epoch_s"] >= ours["step_s"] * 21
    assert ours["parity"] == 0.0  # numpy against itself
    sk = next(r for r in rows if r["backend"] == "sklearn")
    assert 0.8 < sk["accuracy"] <= 1.0 and sk["epochs"] == 10


def test_bench_without_sklearn_skips_digits_with_a_note(capsys, no_sklearn, tmp_path):
    path = tmp_path / "b.json"
    code, out, err = run(capsys, "bench", "--quick", "--workloads", "digits-adam",
                         "--backends", "numpy", "--json", path)
    assert code == 0, err
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) == 1 and "pip install scikit-learn" in rows[0]["note"]
    assert "skipped: nnkit.datasets.digits needs scikit-learn" in out


def test_bench_rejects_unknown_peer(capsys):
    assert "--peers: expected names from torch, jax, sklearn" in error_line(
        capsys, "bench", "--peers", "keras")


def test_sklearn_peer_runs_every_epoch():
    pytest.importorskip("sklearn")
    p = peers.SklearnClassifier(WORKLOADS["digits-adam"], "float32")
    p.fit(3)
    assert p.model.n_iter_ == 3
    loss, acc = p.score()
    assert 0.5 < acc <= 1 and loss > 0


def test_torch_peer_starts_from_nnkits_weights():
    torch = pytest.importorskip("torch")
    w = WORKLOADS["digits-adam"]
    p = peers.TorchClassifier(w, "float32")
    W0, b0 = w.network(backend="numpy").get_params()[0]
    np.testing.assert_array_equal(p.model[0].weight.detach().numpy(), W0.T)
    loss0, _ = p.score()
    p.fit(2)
    loss, acc = p.score()
    assert loss < loss0 and 0.5 < acc <= 1
    assert isinstance(p.model[1], torch.nn.ReLU)
