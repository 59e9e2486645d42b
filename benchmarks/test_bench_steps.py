"""pytest-benchmark: one training step per workload x backend x dtype, and the full-batch
multi-epoch fit for tiny workloads. Run with ``bash ci/bench.sh`` (not part of ``pytest``)."""
import pytest

import nnkit
from nnkit.bench import allocated_per_step, first_call_time, step_setup
from workloads import WORKLOADS

BACKENDS = nnkit.available_backends()
DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_step(benchmark, name, backend, dtype):
    w = WORKLOADS[name]
    benchmark.group = f"step {name} {dtype}"
    first = first_call_time(w, backend, dtype)  # compile / cache load, reported apart
    net, X, Y, step = step_setup(w, backend, dtype)
    sync = net.backend.synchronize

    def one():
        step()
        sync()

    for _ in range(3):  # warm-up excluded from the timing
        one()
    benchmark.pedantic(one, rounds=20 if w.batch >= 512 else 200, iterations=1,
                       warmup_rounds=1)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update({
        "first_call_s": first, "samples_per_s": w.batch / t,
        "gflops": w.flops_per_step() / t / 1e9})
    if net.backend.device() == "cpu":
        benchmark.extra_info["alloc_bytes_per_step"] = allocated_per_step(step, 10) / 10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [n for n, w in WORKLOADS.items() if w.tiny])
def test_fit_epochs(benchmark, name, backend):
    w = WORKLOADS[name]
    benchmark.group = f"fit 5000 epochs {name}"
    net = w.network(backend=backend, dtype="float32")
    X, Y = w.data("float32")
    net.fit(X, Y, epochs=10, lr=1.0, progress=False)
    benchmark.pedantic(lambda: net.fit(X, Y, epochs=5000, lr=1.0, progress=False),
                       rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["epoch_s"] = benchmark.stats.stats.median / 5000
