"""Sweeps on Dask: a Client, its executor, worker processes, a worker killed mid-sweep."""
import contextvars
import os
import signal
import threading
import time

import numpy as np
import pytest

import nnkit

distributed = pytest.importorskip("distributed")

from test_sweep_exec import LRS, same, template  # noqa: E402


def _local_client(processes):
    """A client of a local cluster of two one-thread workers (processes or threads)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def inproc_client():
    """Two worker threads in this process: the fast cases."""
    yield from _local_client(processes=False)


@pytest.fixture(scope="module")
def process_client():
    """Two worker processes, one thread each (numba's threads inside), with nannies."""
    yield from _local_client(processes=True)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_client_executor_and_processes_are_bit_identical(inproc_client, process_client,
                                                         backend):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1, 2], epochs=100, chunk_size=6)
    here = nnkit.sweep(template(backend), X, Y, **args)
    for executor in (inproc_client, inproc_client.get_executor(), process_client):
        got = nnkit.sweep(template(backend), X, Y, executor=executor, **args)
        same(here, got)
        assert got.chunks_run == 7


def test_halving_and_record_every_on_dask(inproc_client):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1, 2], epochs=90, chunk_size=5, halving=3, min_epochs=10,
                record_every=4)
    same(nnkit.sweep(template("numba"), X, Y, **args),
         nnkit.sweep(template("numba"), X, Y, executor=inproc_client, **args))


def test_workers_write_the_checkpoint_themselves(process_client, tmp_path):
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1], epochs=50, chunk_size=5, checkpoint=tmp_path)
    got = nnkit.sweep(template("numba"), X, Y, executor=process_client, **args)
    assert len(list(tmp_path.glob("r0-c*.npz"))) == 6 and got.chunks_run == 6
    again = nnkit.sweep(template("numba"), X, Y, **args)
    assert again.chunks_reused == 6
    same(got, again)


def test_a_killed_worker_does_not_change_the_result(process_client):
    X, Y = nnkit.datasets.or_gate()
    net = nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                        dtype="float64", seed=0, backend="numpy")
    args = dict(lr=np.geomspace(0.1, 10, 12), seed=[0, 1], epochs=600, chunk_size=2)
    be = nnkit.get_backend("numpy")
    with be.use_path("reference"):  # ~50 ms a chunk: the kill lands mid-sweep
        here = nnkit.sweep(net, X, Y, **args)
        pids = process_client.run(os.getpid)
        victim = sorted(pids.values())[0]
        out = {}
        ctx = contextvars.copy_context()  # the forced path, in the driving thread too
        runner = threading.Thread(target=lambda: out.setdefault("res", ctx.run(
            nnkit.sweep, net, X, Y, executor=process_client, **args)))
        runner.start()
        deadline = time.monotonic() + 30
        while not any(process_client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        assert runner.is_alive(), "the sweep finished before the kill"
        runner.join(120)
    assert "res" in out, "the sweep did not finish"
    same(here, out["res"])
    process_client.wait_for_workers(2, timeout=60)
    assert victim not in process_client.run(os.getpid).values()


@pytest.mark.gpu
def test_gpu_workers_run_the_cupy_backend():
    """One worker per GPU (CUDA_VISIBLE_DEVICES pinned by dask-cuda where installed, else
    a plain process cluster on the first GPU), each running the cupy backend."""
    X, Y = nnkit.datasets.xor_gate()
    args = dict(lr=LRS, seed=[0, 1, 2], epochs=100, chunk_size=10, backend="cupy")
    here = nnkit.sweep(template("numpy"), X, Y, **args)
    try:
        from dask_cuda import LocalCUDACluster
        cluster = LocalCUDACluster(threads_per_worker=1, dashboard_address=":0")
    except ImportError:
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1,
                                           dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        got = nnkit.sweep(template("numpy"), X, Y, executor=client, **args)
    same(here, got)
    assert got.path == here.path


def test_cli_workers_start_a_local_cluster(capsys):
    from nnkit.cli import main
    argv = ["sweep", "--lr", "0.1,1,5", "--seeds", "2", "--epochs", "40", "--quiet",
            "--chunk-size", "2"]
    assert main(argv) == 0
    here = capsys.readouterr().out
    assert main(argv + ["--workers", "2"]) == 0
    there = capsys.readouterr().out
    assert "local Dask cluster of 2 worker(s)" in there
    assert here.splitlines()[1:] == there.splitlines()[1:]
