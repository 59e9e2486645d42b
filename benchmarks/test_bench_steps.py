"""pytest-benchmark: one training step per workload x backend x dtype, the full-batch
multi-epoch fit for tiny workloads (and the OR gate with each optimizer), and the whole
shuffled mini-batch training of the classification workloads. Run with
``bash ci/bench.sh`` (not part of ``pytest``)."""
import pytest

import nnkit
from nnkit.bench import allocated_per_step, first_call_time, step_setup
from workloads import WORKLOADS

# Classification workloads train with their own optimizer on mini-batches: they are
# measured by a whole training run (test_fit_classification), not by one SGD step.
STEP_WORKLOADS = [n for n, w in WORKLOADS.items() if not w.classification]
CLASSIFICATION = [n for n, w in WORKLOADS.items() if w.classification]

BACKENDS = nnkit.available_backends()
DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", STEP_WORKLOADS)
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


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_epochs_optimizer(benchmark, backend, optimizer):
    """The OR gate's 5000-epoch full-batch fit with each update rule (issue 14: Adam
    costs at most 1.5x an SGD epoch on numba)."""
    w = WORKLOADS["or-gate"]
    benchmark.group = f"fit 5000 epochs or-gate by optimizer {backend}"
    X, Y = w.data("float32")
    lr = 0.01 if optimizer == "adam" else 0.5
    net = w.network(backend=backend, dtype="float32")
    net.fit(X, Y, epochs=10, lr=lr, optimizer=optimizer, progress=False)
    benchmark.pedantic(lambda: net.fit(X, Y, epochs=5000, lr=lr, optimizer=optimizer,
                                       progress=False),
                       rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["epoch_s"] = benchmark.stats.stats.median / 5000


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_fit_classification(benchmark, name, backend):
    """The whole training run of a classification workload (shuffled mini-batches, its
    optimizer and epochs), then its test accuracy, reported beside the time."""
    w = WORKLOADS[name]
    try:
        X, y, Xt, yt = w.split("float32")
    except ImportError as exc:  # digits without scikit-learn
        pytest.skip(str(exc))
    benchmark.group = f"fit {name} ({w.epochs} epochs)"
    opts = w.fit_options()
    w.network(backend=backend).fit(X, y, epochs=1, **opts)  # compile / warm
    nets = []

    def train():
        net = w.network(backend=backend)
        net.fit(X, y, epochs=w.epochs, **opts)
        net.backend.synchronize()
        nets.append(net)

    benchmark.pedantic(train, rounds=3, iterations=1, warmup_rounds=0)
    scores = nets[-1].evaluate(Xt, yt, metrics=True)
    steps = -(-len(X) // w.batch) * w.epochs
    benchmark.extra_info.update({"accuracy": float(scores["accuracy"]),
                                 "test_loss": float(scores["loss"]),
                                 "step_s": benchmark.stats.stats.median / steps})
