"""Trace of the first updates, laid out like the seed tutorial's worked example."""
from __future__ import annotations

import numpy as np


def _fmt(name, a):
    a = np.asarray(a, dtype=np.float64)
    body = np.array2string(a, precision=3, suppress_small=True, separator=", ")
    return f"    {name:<3}= {body}".replace("\n", "\n" + " " * 10)


def run_traced(net, X, Y, lrs, batch_size, n_updates, hist, shuffle=False, out=None,
               val=None):
    """Train update by update, printing Z, A, dA, dZ, dW, db and the new W, b of every
    layer for the first ``n_updates`` updates; returns the number of whole epochs done.
    Shuffled mini-batches draw from the network's generator as ``fit`` does, so a traced
    run equals an untraced one. ``val`` (prepared Xv, Yv): each epoch's validation loss
    is recorded too, as ``fit`` records it."""
    import sys
    out = out or sys.stdout
    be = net.backend
    state = net.train_state
    n = X.shape[0]
    bs = n if batch_size is None else batch_size
    update = 0
    epoch = 0
    while update < n_updates and epoch < len(lrs):
        lr = float(lrs[epoch])
        total = 0.0
        order = None
        if batch_size is not None and shuffle:
            order = be.asarray(net.shuffle_order(n))
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            Xb, Yb = be.gather_batch(state, X, Y, order, start, stop)
            loss = float(be.to_numpy(be.forward_backward(state, Xb, Yb)))
            total += loss * ((stop - start) / n)
            buf = state.buffers(stop - start)
            if update < n_updates:
                print(f"update {update + 1} (epoch {epoch}, lr {lr:g}): cost = {loss:.6g}",
                      file=out)
                inp = Xb
                for i, (W, b) in enumerate(state.params):
                    Z = be.to_numpy(inp) @ be.to_numpy(W) + be.to_numpy(b)
                    print(f"  layer {i + 1} ({state.activations[i]})", file=out)
                    for name, arr in (("Z", Z), ("A", be.to_numpy(buf.A[i])),
                                      ("dA", be.to_numpy(buf.G[i])),
                                      ("dZ", be.to_numpy(buf.dZ[i])),
                                      ("dW", be.to_numpy(buf.grads[i][0])),
                                      ("db", be.to_numpy(buf.grads[i][1]))):
                        print(_fmt(name, arr), file=out)
                    inp = buf.A[i]
            be.sgd_update(state.params, buf.grads, lr)
            if update < n_updates:
                for i, (W, b) in enumerate(state.params):
                    print(_fmt(f"W{i + 1}", be.to_numpy(W)).replace("    W", "  new W", 1),
                          file=out)
                    print(_fmt(f"b{i + 1}", be.to_numpy(b)).replace("    b", "  new b", 1),
                          file=out)
            update += 1
        hist.extend([total], [lr], None if val is None else [net.evaluate_prepared(*val)])
        epoch += 1
    return epoch
