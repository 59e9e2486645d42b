"""Shuffled mini-batch sweeps train in epoch blocks bounded by the memory of their sample
orders; the blocks change nothing."""
import importlib

import numpy as np

import nnkit

sweep_chunk = importlib.import_module("nnkit.sweep_chunk")


def test_epoch_blocks_of_sample_orders_give_identical_results(monkeypatch):
    X, Y = nnkit.datasets.load_dataset("moons", seed=0)
    net = nnkit.Network([nnkit.Dense(2, 4, "tanh"), nnkit.Dense(4, 1, "sigmoid")],
                        dtype="float64", backend="numpy")
    kwargs = dict(lr=[0.05, 0.5], seed=[0, 1], epochs=12, batch_size=64, shuffle=True)
    whole = nnkit.sweep(net, X, Y, **kwargs)
    # Orders of 4 configurations x 5 epochs x n rows per block: three blocks.
    monkeypatch.setattr(sweep_chunk, "ORDER_BLOCK_BYTES", 8 * 4 * 5 * len(X))
    blocks = nnkit.sweep(net, X, Y, **kwargs)
    np.testing.assert_array_equal(blocks.loss, whole.loss)
    for i in range(4):
        for (W, b), (W2, b2) in zip(blocks.params[i], whole.params[i]):
            np.testing.assert_array_equal(W, W2)
            np.testing.assert_array_equal(b, b2)
