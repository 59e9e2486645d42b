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
