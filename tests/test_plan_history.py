"""The numba planner pays a generated kernel's compile over a network's calls: a loop of
short fits moves to the generated fit kernel once the network has run as many sample-
epochs as one fit that would have taken it (``Backend.prepare_epochs``,
``TrainState.epochs_prepared``), and the numbers carry on across the move."""
import math

import numpy as np
import pytest

import nnkit
from nnkit.backends import backend_status

pytestmark = pytest.mark.skipif(not backend_status("numba")[0], reason="numba not usable")

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([[0.0], [1.0], [1.0], [1.0]])
SHORT = 10  # epochs per call: 40 sample-epochs, far below CODEGEN_MIN_WORK


def or_gate(backend="numba"):
    return nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                         loss="squared_error", dtype="float64", seed=0, backend=backend)


def paths_built(net):
    """The fit paths whose runners the network's state holds (one per path and size)."""
    return {path for path, _, _ in net.train_state.runs}


def test_a_loop_of_short_fits_moves_to_the_generated_kernel_when_it_has_paid():
    from nnkit.backends.numba_backend import CODEGEN_MIN_WORK
    calls = math.ceil(CODEGEN_MIN_WORK / (len(X) * SHORT))  # the call that reaches it
    net = or_gate()
    losses = []
    for i in range(calls - 1):
        losses += net.fit(X, Y, epochs=SHORT, lr=0.5).loss
    assert paths_built(net) == {"fused"}
    losses += net.fit(X, Y, epochs=SHORT, lr=0.5).loss
    assert paths_built(net) == {"fused", "generated"}
    # the same epochs as one long run (generated) and on the numpy reference, continued
    # across the move from one kernel to the other
    once = or_gate().fit(X, Y, epochs=calls * SHORT, lr=0.5).loss
    reference = or_gate("numpy").fit(X, Y, epochs=calls * SHORT, lr=0.5).loss
    np.testing.assert_allclose(losses, reference, rtol=1e-12)
    np.testing.assert_allclose(once, reference, rtol=1e-12)


def test_a_new_optimizer_starts_the_count_again():
    from nnkit.backends.numba_backend import CODEGEN_MIN_WORK
    net = or_gate()
    net.fit(X, Y, epochs=math.ceil(CODEGEN_MIN_WORK / len(X)), lr=0.5)
    assert paths_built(net) == {"generated"}
    net.reset_optimizer()
    assert net.train_state.epochs_prepared == 0
    net.fit(X, Y, epochs=SHORT, lr=0.5)
    assert paths_built(net) == {"fused"}  # the runners went with the old optimizer state


def _count_plans(net, monkeypatch):
    """A list that gets one entry per ``choose_path`` call of the net's backend for a run
    shorter than ``MAX_PLANNED_EPOCHS`` (the plans a fit pays for)."""
    from nnkit.backends.base import MAX_PLANNED_EPOCHS
    be, plans = net.backend, []
    choose = be.choose_path

    def counted(call, spec, rows, batch_size, configs, epochs):
        if epochs < MAX_PLANNED_EPOCHS:
            plans.append(epochs)
        return choose(call, spec, rows, batch_size, configs, epochs)
    monkeypatch.setattr(be, "choose_path", counted)
    return plans


def test_a_plan_that_more_epochs_cannot_change_is_kept(monkeypatch):
    from nnkit.backends.numba_backend import CODEGEN_MIN_WORK
    net = or_gate()
    plans = _count_plans(net, monkeypatch)
    # below the generated kernel's threshold the plan can still change: planned each time
    for _ in range(3):
        net.fit(X, Y, epochs=SHORT, lr=0.5)
    assert len(plans) == 3 and paths_built(net) == {"fused"}
    long = math.ceil(CODEGEN_MIN_WORK / len(X))
    net.fit(X, Y, epochs=long, lr=0.5)
    assert len(plans) == 4 and paths_built(net) == {"fused", "generated"}
    losses = [net.fit(X, Y, epochs=1, lr=0.5).loss[0] for _ in range(5)]
    assert len(plans) == 4  # generated is what any longer run takes: kept, not planned
    with net.backend.use_path("fused") as record:  # a forced path still wins
        forced = net.fit(X, Y, epochs=1, lr=0.5).loss[0]
    assert record.paths("epochs") == {"fused"} and len(plans) == 4
    with net.backend.use_path("generated") as record:  # and is recorded
        net.fit(X, Y, epochs=1, lr=0.5)
    assert record.paths("epochs") == {"generated"}
    # the same numbers as the reference over the same epochs
    ref = or_gate("numpy")
    for _ in range(3):
        ref.fit(X, Y, epochs=SHORT, lr=0.5)
    ref.fit(X, Y, epochs=long, lr=0.5)
    expected = [ref.fit(X, Y, epochs=1, lr=0.5).loss[0] for _ in range(6)]
    np.testing.assert_allclose(losses + [forced], expected, rtol=1e-12)
    net.reset_optimizer()  # a new optimizer plans again
    net.fit(X, Y, epochs=1, lr=0.5)
    assert len(plans) == 5
