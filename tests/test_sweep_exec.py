"""Sweeps on executors, with checkpoints, recording fewer losses and successive halving
(no Dask needed here: see test_sweep_dask.py)."""
import multiprocessing
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import nnkit
from nnkit.sweep_exec import RETRIES, SweepChunkError

LRS = np.geomspace(0.05, 80, 13)


def template(backend="numpy", dtype="float32"):
    return nnkit.Network([nnkit.Dense(2, 3, "tanh"), nnkit.Dense(3, 1, "sigmoid")],
                         dtype=dtype, seed=0, backend=backend)


def same(a, b):
    """Bit-identical results: losses (NaN where NaN), divergence, pruning, parameters."""
    assert a.loss.shape == b.loss.shape
    assert np.array_equal(a.loss, b.loss, equal_nan=True)
    assert np.array_equal(a.diverged_epoch, b.diverged_epoch)
    assert np.array_equal(a.pruned_epoch, b.pruned_epoch)
    for (W, bb), (W2, b2) in zip(a.stacked, b.stacked):
        assert np.array_equal(W, W2) and np.array_equal(bb, b2)


@pytest.fixture(scope="module")
def pool():
    """Two spawned worker processes (fork would abort numba's OpenMP layer)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


def test_import_nnkit_does_not_import_dask():
    code = ("import sys, nnkit; X, Y = nnkit.datasets.or_gate(); "
            "nnkit.sweep(nnkit.Network([nnkit.Dense(2, 1)]), X, Y, lr=[0.5, 1.0], epochs=3, "
            "record_every='final'); "
            "assert not {'dask', 'distributed'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("backend,kw", [("numba", {}), ("numpy", {}),
                                        ("numba", {"batch_size": 3, "shuffle": True})],
                         ids=["numba", "numpy", "numba-minibatch"])
def test_process_pool_is_bit_identical_to_in_process(pool, backend, kw):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1, 2], epochs=120, chunk_size=7, **kw)
    here = nnkit.sweep(template(backend), X, Y, **args)
    there = nnkit.sweep(template(backend), X, Y, executor=pool, **args)
    same(here, there)
    assert there.chunks_run == 6 and there.path == here.path


def test_threads_and_chunkings_agree_on_a_chunk_invariant_path():
    X, Y = nnkit.datasets.xor_gate()
    whole = nnkit.sweep(template("numba"), X, Y, lr=LRS, seed=[0, 1, 2], epochs=80)
    with ThreadPoolExecutor(3) as ex:
        for size in (1, 5, 16):
            same(whole, nnkit.sweep(template("numba"), X, Y, lr=LRS, seed=[0, 1, 2],
                                    epochs=80, chunk_size=size, executor=ex))


@pytest.mark.parametrize("every", [1, 7, 50, "final"])
def test_record_every_keeps_those_columns(every):
    X, Y = nnkit.datasets.xor_gate()
    full = nnkit.sweep(template("numba"), X, Y, lr=LRS, seed=[0, 1], epochs=100)
    few = nnkit.sweep(template("numba"), X, Y, lr=LRS, seed=[0, 1], epochs=100,
                      record_every=every, chunk_size=4)
    k = 100 if every == "final" else every
    want = sorted(set(range(k - 1, 100, k)) | {99})
    assert few.loss_epochs.tolist() == want
    assert np.array_equal(few.loss, full.loss[:, want], equal_nan=True)
    assert np.array_equal(few.final_loss, full.final_loss)
    assert np.array_equal(few.first_loss, full.loss[:, 0])
    assert np.array_equal(few.blown_up, full.blown_up) and few.best() == full.best()


def test_record_every_trains_long_chunks_in_epoch_blocks(monkeypatch):
    import nnkit.sweep_chunk as sc
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 4, "relu"), nnkit.Dense(4, 1, "linear")],
                        dtype="float64", seed=0, backend="numba")
    full = nnkit.sweep(net, X, Y * 1e3, lr=[1e-4, 0.01, 50.0], seed=[0, 1], epochs=300)
    assert full.diverged.any()
    monkeypatch.setattr(sc, "LOSS_BLOCK_BYTES", 8 * 6 * 7)  # 7 epochs per call
    few = nnkit.sweep(net, X, Y * 1e3, lr=[1e-4, 0.01, 50.0], seed=[0, 1], epochs=300,
                      record_every=3)
    assert np.array_equal(few.loss, full.loss[:, few.loss_epochs], equal_nan=True)
    assert np.array_equal(few.diverged_epoch, full.diverged_epoch)
    for (W, b), (W2, b2) in zip(few.stacked, full.stacked):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)


@pytest.mark.parametrize("backend,path", [("numba", "generated"), ("numpy", "batched"),
                                          ("numpy", "reference")])
def test_halving_survivors_equal_their_full_sweep_rows(backend, path):
    X, Y = nnkit.datasets.xor_gate()
    be = nnkit.get_backend(backend)
    args = dict(lr=np.geomspace(0.05, 20, 20), seed=[0, 1, 2], epochs=180, chunk_size=8)
    with be.use_path(path):
        full = nnkit.sweep(template(backend, "float64"), X, Y, **args)
        half = nnkit.sweep(template(backend, "float64"), X, Y, halving=3, min_epochs=20,
                           **args)
    assert half.path == full.path == path
    done = ~half.pruned
    assert done.sum() == 6 and np.array_equal(half.loss[done], full.loss[done])
    for i in np.flatnonzero(half.pruned):
        e = half.pruned_epoch[i]
        assert e in (20, 60) and np.array_equal(half.loss[i, :e], full.loss[i, :e])
        assert np.isnan(half.loss[i, e:]).all()
    assert half.net_epochs == 60 * 20 + 20 * 40 + 6 * 120 < 0.4 * full.net_epochs
    assert half.best() == full.best() and np.isinf(half.final_loss[half.pruned]).all()
    with be.use_path(path):
        few = nnkit.sweep(template(backend, "float64"), X, Y, halving=3, min_epochs=20,
                          record_every=7, **args)
    assert np.array_equal(few.loss, half.loss[:, few.loss_epochs], equal_nan=True)
    assert np.array_equal(few.pruned_epoch, half.pruned_epoch)


def test_halving_on_a_pool_equals_halving_here(pool):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1, 2], epochs=90, chunk_size=5, halving=2, min_epochs=10,
                record_every=4)
    same(nnkit.sweep(template("numba"), X, Y, **args),
         nnkit.sweep(template("numba"), X, Y, executor=pool, **args))


def test_checkpoint_rerun_reuses_every_chunk(tmp_path):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1], epochs=60, chunk_size=4, checkpoint=tmp_path / "ck")
    first = nnkit.sweep(template(), X, Y, **args)
    assert (first.chunks_run, first.chunks_reused) == (7, 0)
    again = nnkit.sweep(template(), X, Y, **args)
    assert (again.chunks_run, again.chunks_reused) == (0, 7)
    same(first, again)
    # a damaged chunk file is trained again; stray temporary files are ignored
    (tmp_path / "ck" / "r0-c00002.npz").write_bytes(b"not a zip")
    (tmp_path / "ck" / ".nnkit-0123.npz.tmp").write_bytes(b"half a file")
    third = nnkit.sweep(template(), X, Y, **args)
    assert (third.chunks_run, third.chunks_reused) == (1, 6)
    same(first, third)


@pytest.mark.parametrize("change,what", [
    ({"epochs": 61}, "epochs 60 -> 61"),
    ({"lr": LRS * 2}, "other values"),
    ({"seed": [0, 2]}, "other values"),
    ({"record_every": 5}, "record_every 1 -> 5"),
    ({"halving": 2}, "halving None -> [2, 15]"),
    ({"batch_size": 2}, "batch_size None -> 2"),
    ({"lr_schedule": nnkit.InverseTime(0.1)}, "other values"),
])
def test_checkpoint_refuses_other_arguments(tmp_path, change, what):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1], epochs=60, chunk_size=4, checkpoint=tmp_path)
    nnkit.sweep(template(), X, Y, **args)
    with pytest.raises(ValueError, match=r"checkpoint: .* holds a sweep with other "
                                         r"arguments \(.*" + __import__("re").escape(what)):
        nnkit.sweep(template(), X, Y, **{**args, **change})
    with pytest.raises(ValueError, match="dtype 'float32' -> 'float64'"):
        nnkit.sweep(template(dtype="float64"), X, Y, **args)
    with pytest.raises(ValueError, match="other values"):
        nnkit.sweep(template(), X, 1 - Y, **args)


_DRIVER = textwrap.dedent("""
    import sys, numpy as np, nnkit
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        dtype="float64", seed=0, backend="numpy")
    with nnkit.get_backend("numpy").use_path("reference"):  # slow enough to stop midway
        nnkit.sweep(net, X, Y, lr=np.geomspace(0.1, 10, 10), seed=[0, 1], epochs=1000,
                    chunk_size=2, checkpoint=sys.argv[1])
""")


def _driver_sweep(folder):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        dtype="float64", seed=0, backend="numpy")
    with nnkit.get_backend("numpy").use_path("reference"):
        return nnkit.sweep(net, X, Y, lr=np.geomspace(0.1, 10, 10), seed=[0, 1],
                           epochs=1000, chunk_size=2, checkpoint=folder)


def test_a_killed_driver_resumes_from_its_checkpoint(tmp_path):
    folder = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(folder)])
    try:
        deadline = time.monotonic() + 60
        while len(list(folder.glob("r0-c*.npz"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = len(list(folder.glob("r0-c*.npz")))
    assert 3 <= done < 10, "the driver finished before it was killed"
    resumed = _driver_sweep(folder)
    assert (resumed.chunks_reused, resumed.chunks_run) == (done, 10 - done)
    same(resumed, _driver_sweep(None))


class Flaky:
    """train_many that fails for configurations with lr > 50 (always, or once)."""

    def __init__(self, be, once):
        self.train_many, self.once, self.calls = be.train_many, once, 0

    def __call__(self, params, acts, loss, X, Y, lrs, *rest):
        if np.max(lrs) > 50 and (not self.once or self.calls == 0):
            self.calls += 1
            raise FloatingPointError("injected")
        return self.train_many(params, acts, loss, X, Y, lrs, *rest)


def test_a_chunk_that_keeps_failing_names_its_configurations(monkeypatch):
    X, Y = nnkit.datasets.xor_gate()
    be = nnkit.get_backend("numpy")
    ref = nnkit.sweep(template(), X, Y, lr=LRS, seed=[0], epochs=20, chunk_size=4)
    flaky = Flaky(be, once=True)
    monkeypatch.setattr(be, "train_many", flaky)
    with ThreadPoolExecutor(2) as ex:
        same(ref, nnkit.sweep(template(), X, Y, lr=LRS, seed=[0], epochs=20, chunk_size=4,
                              executor=ex))
        assert flaky.calls == 1
        monkeypatch.setattr(be, "train_many", Flaky(be, once=False))
        with pytest.raises(SweepChunkError, match=r"chunk r0-c00003 \(configuration 12 "
                           r"\(lr 80 .. 80, seed 0\), epochs 0..19\) failed after "
                           rf"{RETRIES + 1} attempts: FloatingPointError: injected") as info:
            nnkit.sweep(template(), X, Y, lr=LRS, seed=[0], epochs=20, chunk_size=4,
                        executor=ex)
    assert info.value.configs == [{"lr": LRS[12], "seed": 0}]


@pytest.mark.parametrize("kw,error,match", [
    ({"executor": "dask"}, TypeError, "executor: expected None, a concurrent.futures"),
    ({"checkpoint": 3}, TypeError, "checkpoint: expected a folder path"),
    ({"halving": 1}, ValueError, "halving: expected an integer >= 2"),
    ({"halving": 2.5}, ValueError, "halving: expected an integer >= 2"),
    ({"min_epochs": 3}, ValueError, "min_epochs: applies to successive halving only"),
    ({"halving": 3, "min_epochs": 11}, ValueError, "min_epochs: expected an integer >= 1"),
    ({"record_every": 0}, ValueError, "record_every: expected an integer >= 1"),
    ({"record_every": "last"}, ValueError, "record_every: expected an integer >= 1 or"),
])
def test_bad_distribution_arguments(kw, error, match, tmp_path):
    X, Y = nnkit.datasets.or_gate()
    with pytest.raises(error, match=match):
        nnkit.sweep(template(), X, Y, lr=0.5, epochs=10, **kw)


def test_checkpoint_must_be_a_folder(tmp_path):
    X, Y = nnkit.datasets.or_gate()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="checkpoint: .* exists and is not a folder"):
        nnkit.sweep(template(), X, Y, lr=0.5, epochs=10, checkpoint=tmp_path / "file")


def _cli(capsys, *argv):
    from nnkit.cli import main
    rc = main(["sweep", "--lr", "0.1,1,5", "--seeds", "2", "--epochs", "60", "--quiet",
               *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_checkpoint_and_halving(tmp_path, capsys):
    args = ("--checkpoint", str(tmp_path), "--halving", "2", "--min-epochs", "15",
            "--json", str(tmp_path / "res.json"))
    rc, first, _ = _cli(capsys, *args)
    assert rc == 0 and "successive halving (eta 2): 1 trained to the end" in first
    assert "0 chunk(s) reused, 3 trained" in first
    rc, again, _ = _cli(capsys, *args)
    assert rc == 0 and "3 chunk(s) reused, 0 trained" in again
    assert first.splitlines()[-5:] == again.splitlines()[-5:]  # the same best ones
    import json
    assert sorted(json.loads((tmp_path / "res.json").read_text())["pruned_epoch"]) == \
        [-1, 15, 15, 15, 30, 30]
    rc, _, err = _cli(capsys, "--checkpoint", str(tmp_path))
    assert rc == 2 and "holds a sweep with other arguments" in err


@pytest.mark.parametrize("argv,match", [
    (("--workers", "2", "--scheduler", "tcp://127.0.0.1:1"), "--workers, --scheduler: give one"),
    (("--min-epochs", "5"), "--min-epochs: applies to successive halving only"),
    (("--halving", "1"), "--halving: expected an integer >= 2"),
])
def test_cli_rejects_bad_distribution_options(capsys, argv, match):
    rc, _, err = _cli(capsys, *argv)
    assert rc == 2 and match in err and "Traceback" not in err
