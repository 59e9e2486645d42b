import os
import subprocess
import sys

import numpy as np
import pytest

import nnkit


def run_cli(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("NNKIT_BACKEND", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "nnkit", *args], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_train_or_gate_reaches_low_loss():
    out = run_cli("train", "--dataset", "or", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "backend: numpy" in out.stdout
    loss = float(out.stdout.split("final loss:")[1].split()[0])
    assert loss < 0.01
    assert "accuracy: 1.000" in out.stdout


def test_train_respects_env_backend_and_saves(tmp_path):
    path = tmp_path / "or.npz"
    out = run_cli("train", "--dataset", "xor", "--layers", "2,4,1", "--activation", "tanh",
                  "--loss", "binary_crossentropy", "--lr", "0.5", "--epochs", "2000",
                  "--save", str(path), "--quiet", env={"NNKIT_BACKEND": "numba"})
    assert out.returncode == 0, out.stderr
    assert "backend: numba" in out.stdout
    net = nnkit.load(path)
    X, Y = nnkit.datasets.xor_gate()
    assert np.array_equal(net.predict(X)[:, 0] > 0.5, Y[:, 0] > 0.5)


def test_cli_errors_are_clear():
    out = run_cli("train", "--dataset", "nope")
    assert out.returncode == 2 and "dataset: expected one of" in out.stderr
    out = run_cli("train", "--backend", "bogus")
    assert out.returncode == 2 and "backend: unknown name 'bogus'" in out.stderr


def test_info_and_gradcheck():
    out = run_cli("info")
    assert out.returncode == 0 and "numpy" in out.stdout and "auto ->" in out.stdout
    out = run_cli("gradcheck", "--layers", "2,3,1")
    assert out.returncode == 0 and "max relative error" in out.stdout and "(ok)" in out.stdout


def test_sweep_cli_prints_best(tmp_path):
    out = run_cli("sweep", "--dataset", "or", "--lr", "0.1:10:4", "--seeds", "2",
                  "--epochs", "100", "--json", str(tmp_path / "s.json"))
    assert out.returncode == 0, out.stderr
    assert "8 configurations" in out.stdout and "#1: lr 10" in out.stdout


def test_trace_prints_seed_values():
    out = run_cli("train", "--dataset", "or", "--layers", "2,1", "--epochs", "3", "--trace",
                  "1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "update 1 (epoch 0, lr 1): cost =" in out.stdout
    for name in ("Z", "A", "dA", "dZ", "dW", "db"):
        assert f"    {name:<3}= " in out.stdout


def test_trace_numbers_match_seed_001(capsys):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], dtype="float64")
    net.set_params([(np.array([[0.1], [0.6]]), np.array([0.0]))])
    hist = net.fit(X, Y, epochs=2, lr=1.0, trace=2)
    text = capsys.readouterr().out
    assert "cost = 0.0889" in text and "cost = 0.084" in text
    assert "[-0.044]" in text and "[-0.035]" in text  # dW of the second update
    ref = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], dtype="float64")
    ref.set_params([(np.array([[0.1], [0.6]]), np.array([0.0]))])
    assert hist.loss == ref.fit(X, Y, epochs=2, lr=1.0).loss


@pytest.mark.parametrize("kind", ["cost", "boundary", "sweep"])
def test_plots_are_real_pngs(kind, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image
    plot = nnkit.plot  # an attribute, no import of its own needed
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], dtype="float64")
    hist = net.fit(X, Y, epochs=200, lr=1.0)
    if kind == "cost":
        fig = plot.cost_curve({"lr 1": hist.loss})
    elif kind == "boundary":
        fig = plot.decision_boundary(net, X, Y, resolution=50)
    else:
        fig = plot.lr_comparison(nnkit.sweep(net, X, Y, lr=[0.1, 1, 50], seed=[0, 1],
                                             epochs=50))
    path = tmp_path / "p.png"
    fig.savefig(path)
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # not a blank image


def test_import_nnkit_imports_no_optional_package_and_plot_is_lazy():
    code = ("import sys, nnkit\n"
            "heavy = lambda: [m for m in ('matplotlib', 'numba', 'cupy') if m in sys.modules]\n"
            "assert heavy() == [], heavy()\n"
            "plot = nnkit.plot\n"
            "assert heavy() == [], heavy()\n"
            "import nnkit.plot\n"
            "assert plot is sys.modules['nnkit.plot'] and callable(plot.cost_curve)\n"
            "try:\n    nnkit.no_such_thing\nexcept AttributeError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "module 'nnkit' has no attribute 'no_such_thing'\n"


def test_traced_shuffled_run_equals_untraced(backend, capsys):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(11, 2)), rng.uniform(size=(11, 1))

    def run(trace):
        net = nnkit.Network([nnkit.Dense(2, 3, "tanh"), nnkit.Dense(3, 1, "sigmoid")],
                            dtype="float64", seed=3, backend=backend)
        hist = net.fit(X, Y, epochs=4, lr=0.3, batch_size=4, shuffle=True, trace=trace)
        return hist.loss, net.get_params()

    traced, plain = run(5), run(None)
    assert "update 5 (epoch 1" in capsys.readouterr().out
    np.testing.assert_allclose(traced[0], plain[0], rtol=1e-12)
    np.testing.assert_allclose(traced[1][0][0], plain[1][0][0], rtol=1e-12)


def test_a_traced_run_records_its_validation_losses_too(backend, capsys):
    """The traced epochs record val_loss as the untraced ones do: the two histories stay
    the same length, and equal to the untraced run's."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(8, 2)), rng.uniform(size=(8, 1))
    val = (rng.normal(size=(5, 2)), rng.uniform(size=(5, 1)))

    def run(trace):
        net = nnkit.Network([nnkit.Dense(2, 3, "tanh"), nnkit.Dense(3, 1, "sigmoid")],
                            dtype="float64", seed=3, backend=backend)
        return net.fit(X, Y, epochs=6, lr=0.3, validation_data=val, trace=trace)

    traced, plain = run(3), run(None)
    capsys.readouterr()
    assert len(traced.val_loss) == len(traced.loss) == 6
    np.testing.assert_allclose(traced.val_loss, plain.val_loss, rtol=1e-12)
    np.testing.assert_allclose(traced.loss, plain.loss, rtol=1e-12)
