"""The CLI never shows a traceback for a documented error: one line
``nnkit <command>: error: ...`` on stderr, exit 2 (usage, input, backend) or 1 (diverged),
130 when interrupted; output paths and matplotlib are checked before training.
Everything runs in-process through ``nnkit.cli.main`` with tiny epochs."""
import inspect
import os
import sys

import numpy as np
import pytest

import nnkit
from nnkit import cli, datasets
from nnkit.backends import backend_status
from nnkit.errors import TrainingInterrupted

GATE_CSV = "x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,1\n"


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.delenv("NNKIT_BACKEND", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if anything trains: the checks must come first."""
    def fail(*args, **kwargs):
        pytest.fail("training started before the arguments were checked")
    monkeypatch.setattr(nnkit.Network, "fit", fail)
    monkeypatch.setattr(sys.modules["nnkit.sweep"], "sweep", fail)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, *argv, code=2):
    """Run the CLI, check it failed with one error line and ``code``; return the line."""
    got, _, err = run(capsys, *argv)
    lines = err.splitlines()
    assert got == code, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nnkit {argv[0]}: error: "), err
    return lines[0]


# ------------------------------------------------------------------ data sets
def test_missing_csv(capsys, no_training):
    line = error_line(capsys, "train", "--dataset", "missing.csv")
    assert "--dataset: cannot read 'missing.csv': No such file" in line


def test_directory_as_dataset(capsys, tmp_path, no_training):
    (tmp_path / "data").mkdir()
    line = error_line(capsys, "train", "--dataset", "data/")
    assert "is a directory" in line


def test_binary_file_as_dataset(capsys, tmp_path, no_training):
    (tmp_path / "b.csv").write_bytes(bytes(range(256)))
    assert "not a text CSV file" in error_line(capsys, "train", "--dataset", "b.csv")


@pytest.mark.parametrize("text, expected", [
    ("x1,x2,y\n0,0,0\n0,z,1\n", "b.csv: line 3, column 2: 'z' is not a number"),
    ("0,0,0\n0,1\n", "b.csv: line 2: expected 3 columns like the first data line, got 2"),
    ("", "b.csv: no data rows"),
    ("x1,x2,y\n\n", "b.csv: no data rows"),
])
def test_bad_csv_names_file_and_line(capsys, tmp_path, no_training, text, expected):
    (tmp_path / "b.csv").write_text(text)
    assert expected in error_line(capsys, "train", "--dataset", "b.csv")


def test_csv_with_header_trains(capsys, tmp_path):
    (tmp_path / "gate.csv").write_text(GATE_CSV)
    code, out, err = run(capsys, "train", "--dataset", "gate.csv", "--epochs", "200",
                         "--quiet")
    assert code == 0, err
    assert "trained 200 epochs" in out and "accuracy: 1.000" in out


def test_load_csv_header_comments_bom_and_targets(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("0,0,0\n0,1,1\n1,0,1\n1,1,1\n")
    fancy = tmp_path / "fancy.csv"
    fancy.write_text("\ufeff# the OR gate\n" + GATE_CSV.replace("\n0,1,1", "\n\n0,1,1  # one"))
    X, Y = datasets.load_csv(plain)
    X2, Y2 = datasets.load_dataset(str(fancy))
    gX, gY = datasets.or_gate()
    for a, b in ((X, gX), (Y, gY), (X2, gX), (Y2, gY)):
        np.testing.assert_array_equal(a, b)
    X, Y = datasets.load_csv(plain, target_cols=2)
    assert X.shape == (4, 1) and Y.shape == (4, 2)


def test_target_cols_out_of_range(capsys, tmp_path, no_training):
    (tmp_path / "gate.csv").write_text(GATE_CSV)
    line = error_line(capsys, "train", "--dataset", "gate.csv", "--target-cols", "3")
    assert "--target-cols: expected 1..2" in line
    assert "expected an integer >= 1" in error_line(capsys, "train", "--target-cols", "0")


def test_layers_must_fit_the_data(capsys, tmp_path, no_training):
    (tmp_path / "gate.csv").write_text(GATE_CSV)
    line = error_line(capsys, "train", "--dataset", "gate.csv", "--layers", "3,1")
    assert "--layers 3,1: the data set has 2 input column(s)" in line


def test_unknown_dataset_name(capsys, no_training):
    assert "--dataset: expected one of" in error_line(capsys, "gradcheck", "--dataset", "nope")


# --------------------------------------------------------------- output paths
@pytest.mark.parametrize("argv, option", [
    (["train", "--save", "no/such/dir/net.npz"], "--save"),
    (["train", "--plot", "no/such/dir/p.png"], "--plot"),
    (["sweep", "--json", "no/such/dir/s.json"], "--json"),
    (["bench", "--json", "no/such/dir/b.json"], "--json"),
])
def test_output_folder_missing_fails_before_training(capsys, no_training, argv, option):
    line = error_line(capsys, *argv)
    assert f"{option}: cannot write 'no/such/dir/" in line and "dir' does not exist" in line


@pytest.mark.parametrize("argv", [["train", "--save", "."], ["train", "--plot", "."],
                                  ["sweep", "--json", "."]])
def test_output_path_is_a_folder(capsys, no_training, argv):
    assert "is a folder; expected a file path" in error_line(capsys, *argv)


def test_output_folder_is_a_file(capsys, tmp_path, no_training):
    (tmp_path / "f").write_text("")
    assert "f' is not a folder" in error_line(capsys, "train", "--save", "f/net.npz")


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_output_folder_not_writable_even_for_root(capsys, no_training):
    line = error_line(capsys, "train", "--save", "/proc/nnkit-net.npz")
    assert "--save: cannot write in the folder '/proc'" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_output_folder_and_file_not_writable(capsys, tmp_path, no_training):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert "cannot write in the folder" in error_line(capsys, "train", "--save",
                                                          ro / "n.npz")
    finally:
        ro.chmod(0o755)
    (tmp_path / "s.json").write_text("{}")
    (tmp_path / "s.json").chmod(0o444)
    assert "exists and is not writable" in error_line(capsys, "sweep", "--json", "s.json")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch, no_training,
                                                      command):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    line = error_line(capsys, command, "--plot", "p.png")
    assert "--plot: nnkit.plot needs matplotlib: pip install 'nnkit[plot]'" in line


def test_save_and_plot_after_training_still_work(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, err = run(capsys, "train", "--epochs", "5", "--quiet", "--save", "n.npz",
                         "--plot", "p.png")
    assert code == 0, err
    assert (tmp_path / "p.png").stat().st_size > 0
    assert nnkit.load(tmp_path / "n.npz").dtype == "float32"


# ------------------------------------------------------------------- arguments
@pytest.mark.parametrize("option, value", [
    ("--activation", "foo"), ("--output-activation", "foo"), ("--loss", "foo"),
    ("--dtype", "float16"), ("--schedule", "foo")])
def test_unknown_names_rejected_even_when_unused(capsys, no_training, option, value):
    # default --layers 2,1: no hidden layer would use --activation
    line = error_line(capsys, "train", option, value)
    assert f"argument {option}: invalid choice: '{value}'" in line


@pytest.mark.parametrize("value", ["99999999999999999999", "1000000001", "0", "-3", "1e3"])
def test_epochs_bound(capsys, no_training, value):
    line = error_line(capsys, "train", "--epochs", value)
    assert "argument --epochs: expected a number of epochs" in line
    assert "1,000,000,000" in line or "got '1e3'" in line


def test_epochs_bound_is_the_documented_one():
    assert cli._epochs(str(10**9)) == 10**9 == nnkit.validation.MAX_EPOCHS
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as fh:
        assert "`--epochs` takes 1 to 10⁹" in fh.read()


@pytest.mark.parametrize("argv", [
    ["sweep", "--seeds", "0"], ["sweep", "--top", "0"], ["sweep", "--lr", "0.1:1:0"],
    ["sweep", "--lr", "x"], ["sweep", "--batch-size", "0"], ["train", "--trace", "0"],
    ["train", "--seed", "-1"], ["train", "--layers", "2"], ["train", "--lr", "fast"],
    ["bench", "--dtype", "float16"]])
def test_bad_option_values(capsys, no_training, argv):
    assert f"error: argument {argv[1]}: " in error_line(capsys, *argv)


def test_stray_arguments_are_the_commands_error(capsys, no_training):
    line = error_line(capsys, "train", "--bogus-option", "x")
    assert line == "nnkit train: error: unrecognized arguments: --bogus-option x"


def test_no_command(capsys):
    code, _, err = run(capsys)
    assert code == 2 and err.splitlines() == [
        "nnkit: error: the following arguments are required: command"]


def test_version(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and out == f"nnkit {nnkit.__version__}\n" and not err


def test_cli_and_api_share_the_float32_default(capsys):
    api = inspect.signature(nnkit.Network).parameters["dtype"].default
    assert api == cli.DEFAULT_DTYPE == "float32"
    code, out, err = run(capsys, "train", "--epochs", "2", "--quiet")
    assert code == 0, err
    assert "dtype: float32" in out


# -------------------------------------------------------------------- backends
def test_unknown_backend_option_and_env(capsys, monkeypatch, no_training):
    assert "--backend: unknown name 'bogus'" in error_line(capsys, "train", "--backend",
                                                           "bogus")
    monkeypatch.setenv("NNKIT_BACKEND", "bogus")
    assert "NNKIT_BACKEND=bogus: unknown name 'bogus'" in error_line(capsys, "sweep")


def test_info_warns_about_unknown_env_backend(capsys, monkeypatch):
    monkeypatch.setenv("NNKIT_BACKEND", "bogus")
    code, out, err = run(capsys, "info")
    assert code == 0
    [line] = err.splitlines()
    assert line.startswith("nnkit info: warning: NNKIT_BACKEND='bogus' is not a known backend")
    assert "NNKIT_BACKEND='bogus' -> nothing usable" in out


def test_info_quiet_for_good_env_backend(capsys, monkeypatch):
    monkeypatch.setenv("NNKIT_BACKEND", "numpy")
    code, out, err = run(capsys, "info")
    assert code == 0 and not err and "NNKIT_BACKEND='numpy' -> numpy" in out


@pytest.mark.skipif(backend_status("cupy")[0], reason="cupy is usable here")
def test_unusable_backend_message_names_what_chose_it(capsys, monkeypatch, no_training):
    line = error_line(capsys, "train", "--backend", "cupy")
    assert line.startswith("nnkit train: error: --backend: ") and "Selected by" not in line
    monkeypatch.setenv("NNKIT_BACKEND", "cupy")
    line = error_line(capsys, "gradcheck")
    assert "error: NNKIT_BACKEND=cupy: " in line and "Selected by" not in line
    code, _, err = run(capsys, "info")
    assert code == 0 and "names a backend that is unusable here" in err
    assert "--backends: " in error_line(capsys, "bench", "--backends", "numpy,cupy")


# ------------------------------------------------------ training failures, ^C
def test_diverged_training_exits_1(capsys):
    line = error_line(capsys, "train", "--output-activation", "linear", "--loss", "mse",
                      "--lr", "100", "--epochs", "50", "--quiet", code=1)
    assert "training diverged at epoch" in line


def _interrupting_fit(epochs_done):
    real_fit = nnkit.Network.fit

    def fit(self, X, Y, epochs, lr, **kwargs):
        if epochs == 1:  # the CLI's warm-up epoch (on a copy), before the timed run
            return real_fit(self, X, Y, epochs=epochs, lr=lr, **kwargs)
        hist = real_fit(self, X, Y, epochs=epochs_done, lr=lr) if epochs_done \
            else nnkit.History()
        raise TrainingInterrupted(epochs_done, hist)
    return fit


def test_interrupt_saves_the_model_reached(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(nnkit.Network, "fit", _interrupting_fit(3))
    code, out, err = run(capsys, "train", "--epochs", "1000", "--quiet", "--save", "n.npz")
    assert code == 130 and not out
    assert err.splitlines() == [
        "nnkit train: interrupted at epoch 3",
        "nnkit train: saved the model reached (epoch 3) to n.npz"]
    monkeypatch.undo()
    ref = nnkit.Network([nnkit.Dense(2, 1, "sigmoid")], seed=0)
    X, Y = datasets.or_gate()
    ref.fit(X, Y, epochs=3, lr=1.0)
    saved = nnkit.load(tmp_path / "n.npz")
    for (W, b), (rW, rb) in zip(saved.get_params(), ref.get_params()):
        np.testing.assert_array_equal(W, rW)
        np.testing.assert_array_equal(b, rb)


def test_interrupt_without_save(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(nnkit.Network, "fit", _interrupting_fit(0))
    code, out, err = run(capsys, "train", "--quiet")
    assert code == 130 and err.splitlines() == ["nnkit train: interrupted at epoch 0"]
    assert not list(tmp_path.iterdir())


def test_plain_keyboard_interrupt_elsewhere(capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(sys.modules["nnkit.gradcheck"], "gradcheck", interrupt)
    code, out, err = run(capsys, "gradcheck")
    assert code == 130 and err.splitlines() == ["nnkit gradcheck: interrupted"]


def test_unexpected_bugs_keep_their_traceback(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(nnkit.Network, "fit", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["train", "--quiet"])


def test_empty_history_does_not_divide_by_zero(capsys, monkeypatch):
    monkeypatch.setattr(nnkit.Network, "fit", lambda self, *a, **k: nnkit.History())
    code, out, err = run(capsys, "train", "--quiet")
    assert code == 0 and "trained 0 epochs" in out


@pytest.mark.parametrize("value", ["inf", "nan", "1.5", "0", "x"])
def test_validation_split_must_be_a_fraction(capsys, value):
    line = error_line(capsys, "train", "--validation-split", value, "--quiet")
    assert "--validation-split" in line and "(0, 1)" in line


def test_api_argument_errors_name_the_option(capsys):
    line = error_line(capsys, "train", "--lr", "nan", "--quiet")
    assert line.startswith("nnkit train: error: --lr: ")
