"""The examples stay working (run quickly, on every backend)."""
import os
import subprocess
import sys

import pytest

from conftest import BACKENDS

HERE = os.path.join(os.path.dirname(__file__), "..", "examples")


def run(script, backend, *args):
    env = dict(os.environ, NNKIT_BACKEND=backend)
    return subprocess.run([sys.executable, os.path.join(HERE, script), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("backend", BACKENDS)
def test_or_gate_example(backend, tmp_path):
    out = run("or_gate.py", backend, "--epochs", "300", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"backend: {backend}" in out.stdout
    assert "cost 0.084" in out.stdout and "[-0.044 -0.035]" in out.stdout
    assert "lr  50.0: diverged" in out.stdout or "lr  50.0: final" in out.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_layer_example(backend):
    out = run("two_layer_regression.py", backend, "--epochs", "200")
    assert out.returncode == 0, out.stderr
    first, last = (float(v) for v in out.stdout.split("cost: ")[1].split()[0::2][:2])
    assert last < first


def test_gradcheck_bug_example():
    out = run("gradcheck_bug.py", "numpy")
    assert out.returncode == 0, out.stderr
    good = float(out.stdout.split("correct backward pass: max relative error ")[1].split()[0])
    bad = float(out.stdout.split("W1^T bug:")[1].split("error ")[1].split()[0])
    assert good < 1e-6 and bad > 1e-2
