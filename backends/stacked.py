"""The sweep engine: C configurations of one architecture trained side by side.

Two paths, for every backend whose array module has batched ``matmul`` (numpy, numba,
cupy mix in ``StackedSweeps``):

- ``"stacked"`` (full batch): the samples are the fast axis; the first layer's units of
  all configurations are the rows of one matrix, so its forward pass and weight gradient
  are two large GEMMs (its bias folded in as a column of ones); later layers are
  batched GEMMs over (C, o, n) stacks. Its elementwise steps are the hooks
  ``stacked_output``, ``record_epoch`` and ``step_many``, which a backend may replace
  with kernels (numba does);
- ``"batched"`` (any batch size): the layers with a leading configuration axis,
  (C, nb, o) activations, per-configuration sample orders.

The backend's own ``_sweep_reference`` (one configuration after another) is the
obviously correct version both are tested against.
"""
from __future__ import annotations

import numpy



def _group_size(orders, C):
    """m: configurations come in runs of m with the same sample orders (C % m == 0; all
    C without orders; 1 where runs are uneven)."""
    if orders is None:
        return C
    m = 1
    while m < C and numpy.array_equal(orders[m], orders[0]):
        m += 1
    if C % m or any(not numpy.array_equal(orders[c], orders[c - c % m])
                    for c in range(C)):
        return 1
    return m


class StackedSweeps:
    """Mixin giving a ``Backend`` the "stacked" and "batched" sweep paths."""

    sweep_paths = {"stacked": ("sweep",), "batched": ("sweep",), "grouped": ("sweep",)}

    @staticmethod
    def sweep_path(batch_size, spec=None):
        """The engine's path for a sweep: "stacked" for full batches of plain sgd, else
        "batched" (any batch size, update rule and L2). "grouped" is not planned: on CPUs
        it measured no faster than "batched" with one BLAS thread and far slower with
        OpenBLAS's threads on a busy machine (README, issue 15's benchmark); on GPUs it
        is unmeasured."""
        plain = spec is None or spec.plain
        return "stacked" if batch_size is None and plain else "batched"

    def supports(self, path, spec):
        if path == "stacked":
            return spec.plain
        if path == "grouped":
            return spec.plain and len(spec.sizes) > 2
        return True

    def _sweep_batched(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                       orders, update=None):
        """Mini-batch (or full-batch) sweeps with a leading configuration axis."""
        xp = self.xp
        C, epochs = len(lrs), len(factors)
        n = X.shape[0]
        bs = n if batch_size is None else batch_size
        losses = xp.zeros((C, epochs), dtype=numpy.float64)
        diverged = xp.full(C, -1, dtype=numpy.int64)
        lr_dev = self.asarray(lrs, dtype=numpy.float64)
        order_dev = None if orders is None else self.asarray(orders)
        dtype = params[0][0].dtype
        # With an optimizer: its state for all configurations, biases viewed as (C, 1, o)
        # so that per-configuration rates (C, 1, 1) broadcast.
        views = [(W, b[:, None, :]) for W, b in params]
        opt = None if update is None else update.state(self, views)
        # Diverging configurations overflow on the way; they are frozen and reported.
        with numpy.errstate(over="ignore", invalid="ignore"):
            for e in range(epochs):
                for start in range(0, n, bs):
                    stop = min(start + bs, n)
                    if order_dev is None:
                        Xb = xp.broadcast_to(X[start:stop], (C, stop - start, X.shape[1]))
                        Yb = Y[start:stop]
                    else:
                        idx = order_dev[:, e, start:stop]
                        Xb, Yb = X[idx], Y[idx]
                    batch_loss, grads = self.many_forward_backward(params, activations, loss,
                                                                    Xb, Yb)
                    if opt is not None and opt.l2:
                        batch_loss = batch_loss + self.l2_penalty(params, opt.l2)
                    losses[:, e] += batch_loss * ((stop - start) / n)
                    diverged[...] = xp.where((diverged < 0) & ~xp.isfinite(batch_loss), e,
                                             diverged)
                    steps = (lr_dev * float(factors[e])).astype(dtype)
                    if opt is None:
                        self.step_many([p for (W, b), (dW, db) in zip(params, grads)
                                         for p in ((W, dW), (b[:, :, None], db[:, :, None]))],
                                        steps, diverged)
                    else:
                        self._step_many_optimizer(views, grads, opt, steps, diverged)
                losses[:, e] = xp.where(diverged >= 0, xp.where(diverged == e, losses[:, e],
                                                                 numpy.nan), losses[:, e])
        return (numpy.asarray(self.to_numpy(losses), dtype=numpy.float64),
                numpy.asarray(self.to_numpy(diverged)))

    def _step_many_optimizer(self, views, grads, opt, steps, diverged):
        """The optimizer's update of every configuration still training (the others get
        a zero gradient and rate, and keep their parameters exactly); views [(W (C, i, o),
        b (C, 1, o))], grads [(dW, db (C, o))], steps (C,) rates."""
        xp = self.xp
        ok = (diverged < 0)[:, None, None]
        clean = [(xp.where(ok, dW, 0), xp.where(ok, db[:, None, :], 0)) for dW, db in grads]
        before = [(W.copy(), b.copy()) for W, b in views]
        self.apply_update(views, clean, opt, xp.where(ok, steps[:, None, None], 0))
        for (W, b), (W0, b0) in zip(views, before):
            W[...] = xp.where(ok, W, W0)
            b[...] = xp.where(ok, b, b0)

    def many_forward_backward(self, params, activations, loss, X, Y, input_grad=False):
        """Per-configuration losses (C,) and gradients for stacked parameters;
        X (C, nb, i), Y (C, nb, o) or (nb, o). ``input_grad``: also return d loss / d X
        (C, nb, i) as a third value."""
        xp = self.xp
        inputs = [X]
        for (W, b), act in zip(params, activations):
            inputs.append(self.dense_forward(inputs[-1], W, b[:, None, :], act))
        out = inputs[-1]
        nb = out.shape[-2]
        term_and_grad, mean = self.loss_parts(loss)
        terms, G = term_and_grad(out, Y, nb)
        value = mean(xp.sum(terms, axis=(-2, -1)), nb)
        grads = [None] * len(params)
        for i in range(len(params) - 1, -1, -1):
            dZ = self.activation_backward(G, inputs[i + 1], activations[i])
            grads[i] = (xp.matmul(xp.swapaxes(inputs[i], -1, -2), dZ), xp.sum(dZ, axis=-2))
            if i or input_grad:
                G = xp.matmul(dZ, xp.swapaxes(params[i][0], -1, -2))
        return (value, grads, G) if input_grad else (value, grads)

    def _sweep_grouped(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                       orders, update=None):
        """Mini-batch sweeps of plain sgd where configurations share their batches in
        groups (those of one seed: ``nnkit.sweep`` orders configurations seed-major, so a
        group is a run of m configurations): each group's first layer is one wide GEMM per
        batch, its m weight matrices side by side as (i, m * h), forward and for the weight
        gradient; later layers as in "batched". Configurations whose orders differ are
        groups of one. Results equal "batched" up to rounding (GEMM shapes differ)."""
        if update is not None or len(params) < 2:
            raise ValueError("the grouped sweep path trains plain sgd of networks with two "
                             "or more layers")
        xp = self.xp
        C, epochs = len(lrs), len(factors)
        n = X.shape[0]
        bs = n if batch_size is None else batch_size
        m = _group_size(orders, C)
        G = C // m
        (W0, b0), rest = params[0], params[1:]
        i, h = W0.shape[1:]
        dtype = W0.dtype
        W0g = xp.ascontiguousarray(W0.reshape(G, m, i, h).transpose(0, 2, 1, 3))  # (G, i, m, h)
        b0g = xp.ascontiguousarray(b0).reshape(G, m * h)
        group_orders = None if orders is None else self.asarray(orders[::m])      # (G, E, n)
        losses = xp.zeros((C, epochs), dtype=numpy.float64)
        diverged = xp.full(C, -1, dtype=numpy.int64)
        lr_dev = self.asarray(lrs, dtype=numpy.float64)
        with numpy.errstate(over="ignore", invalid="ignore"):
            for e in range(epochs):
                for start in range(0, n, bs):
                    stop = min(start + bs, n)
                    nb = stop - start
                    if group_orders is None:
                        Xg, Yg = X[None, start:stop], Y[None, start:stop]
                    else:
                        idx = group_orders[:, e, start:stop]
                        Xg, Yg = X[idx], Y[idx]                            # (G, nb, .)
                    Z0 = xp.matmul(Xg, W0g.reshape(G, i, m * h))           # (G, nb, m h)
                    flat = Z0.reshape(G * nb, m * h)
                    self.dense_bias_activation(flat, b0g, nb, activations[0])
                    A0 = xp.ascontiguousarray(Z0.reshape(G, nb, m, h).transpose(0, 2, 1, 3)
                                              ).reshape(C, nb, h)
                    Yc = xp.broadcast_to(Yg[:, None], (G, m, nb, Yg.shape[-1])).reshape(
                        C, nb, Yg.shape[-1])
                    batch_loss, grads, dA0 = self.many_forward_backward(
                        rest, activations[1:], loss, A0, Yc, input_grad=True)
                    dZ0 = self.activation_backward(dA0, A0, activations[0], out=dA0)
                    dZ0g = xp.ascontiguousarray(dZ0.reshape(G, m, nb, h).transpose(0, 2, 1, 3)
                                                ).reshape(G, nb, m * h)
                    dW0g = xp.matmul(xp.swapaxes(Xg, 1, 2), dZ0g)             # (G, i, m h)
                    db0g = xp.sum(dZ0g, axis=1)                               # (G, m h)
                    losses[:, e] += batch_loss * (nb / n)
                    diverged[...] = xp.where((diverged < 0) & ~xp.isfinite(batch_loss), e,
                                             diverged)
                    steps = (lr_dev * float(factors[e])).astype(dtype)
                    self.step_many([p for (W, b), (dW, db) in zip(rest, grads)
                                     for p in ((W, dW), (b[:, :, None], db[:, :, None]))],
                                    steps, diverged)
                    ok = (diverged < 0).reshape(G, 1, m, 1)
                    rate = steps.reshape(G, 1, m, 1)
                    W0g -= xp.where(ok, dW0g.reshape(G, i, m, h) * rate, 0)
                    b0v = b0g.reshape(G, 1, m, h)
                    b0v -= xp.where(ok, db0g.reshape(G, 1, m, h) * rate, 0)
                losses[:, e] = xp.where(diverged >= 0, xp.where(diverged == e, losses[:, e],
                                                                 numpy.nan), losses[:, e])
        W0[...] = W0g.transpose(0, 2, 1, 3).reshape(C, i, h)
        b0[...] = b0g.reshape(C, h)
        return (numpy.asarray(self.to_numpy(losses), dtype=numpy.float64),
                numpy.asarray(self.to_numpy(diverged)))

    def dense_bias_activation(self, Z, b, rows, activation):
        """Z (G * rows, k) = act(Z + b[g]) in place for rows g * rows ... of group g;
        b (G, k). (numba: one fused pass.)"""
        G, k = b.shape
        view = Z.reshape(G, rows, k)
        view += b[:, None, :]
        self.activation_forward(Z, activation, out=Z)

    def _sweep_stacked(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                       orders, update=None):
        """Full-batch sweeps as stacked GEMMs (see the module docstring)."""
        if batch_size is not None:
            raise ValueError("the stacked sweep path trains full batches only (batch_size "
                             f"None), got batch_size={batch_size}")
        xp = self.xp
        L = len(params)
        W0, b0 = params[0]
        C, i, h = W0.shape
        n, dtype = X.shape[0], W0.dtype
        Xa = xp.concatenate([X, xp.ones((n, 1), dtype=dtype)], axis=1)  # (n, i+1)
        XaT = xp.ascontiguousarray(Xa.T)
        YT = xp.ascontiguousarray(Y.T)
        WT = [xp.ascontiguousarray(xp.concatenate(
            [xp.swapaxes(W0, 1, 2), b0[:, :, None]], axis=2))]           # (C, h, i+1)
        WT += [xp.ascontiguousarray(xp.swapaxes(W, 1, 2)) for W, _ in params[1:]]
        bs = [None] + [xp.ascontiguousarray(b) for _, b in params[1:]]  # (C, o)
        A = [xp.empty((C, W.shape[2], n), dtype=dtype) for W, _ in params]
        D = [xp.empty_like(a) for a in A[:-1]]                          # dA, then dZ
        dWT = [xp.empty_like(w) for w in WT]
        db = [None] + [xp.empty_like(b) for b in bs[1:]]
        b_out = bs[-1] if L > 1 else xp.zeros((C, h), dtype=dtype)  # 1 layer: folded in
        ones = xp.ones(n, dtype=dtype)
        values = xp.empty(C, dtype=numpy.float64)
        losses = xp.empty((C, len(factors)), dtype=numpy.float64)
        diverged = xp.full(C, -1, dtype=numpy.int64)
        rates = self.asarray(lrs, dtype=numpy.float64)
        pairs = [(WT[0], dWT[0])] + [p for l in range(1, L) for p in (
            (WT[l], dWT[l]), (bs[l][:, :, None], db[l][:, :, None]))]
        # Diverging configurations overflow on the way; they are frozen and reported.
        with numpy.errstate(over="ignore", invalid="ignore"):
            for e, factor in enumerate(numpy.asarray(factors, dtype=numpy.float64)):
                xp.matmul(WT[0].reshape(C * h, i + 1), XaT, out=A[0].reshape(C * h, n))
                for l in range(1, L):
                    if l > 1:
                        A[l - 1] += bs[l - 1][:, :, None]
                    flat = A[l - 1].reshape(-1, n)
                    self.activation_forward(flat, activations[l - 1], out=flat)
                    xp.matmul(WT[l], A[l - 1], out=A[l])
                self.stacked_output(A[-1], b_out, YT, activations[-1], loss, values)
                G = A[-1]
                for l in range(L - 1, 0, -1):
                    xp.matmul(G.reshape(-1, n), ones, out=db[l].reshape(-1))
                    xp.matmul(G, xp.swapaxes(A[l - 1], 1, 2), out=dWT[l])
                    xp.matmul(xp.swapaxes(WT[l], 1, 2), G, out=D[l - 1])  # before the update
                    flat = D[l - 1].reshape(-1, n)
                    self.activation_backward(flat, A[l - 1].reshape(-1, n), activations[l - 1],
                                             out=flat)
                    G = D[l - 1]
                xp.matmul(G.reshape(C * h, n), Xa, out=dWT[0].reshape(C * h, i + 1))
                self.record_epoch(values, e, losses, diverged)
                self.step_many(pairs, (rates * factor).astype(dtype), diverged)
        W0[...] = xp.swapaxes(WT[0][:, :, :i], 1, 2)
        b0[...] = WT[0][:, :, i]
        for (W, b), wt, bl in zip(params[1:], WT[1:], bs[1:]):
            W[...] = xp.swapaxes(wt, 1, 2)
            b[...] = bl
        return (numpy.asarray(self.to_numpy(losses), dtype=numpy.float64),
                numpy.asarray(self.to_numpy(diverged)))

    def stacked_output(self, Z, b, YT, activation, loss, values):
        """Output layers of the stacked sweep: Z (C, o, n) holds W^T A^T and is replaced
        by dZ (the gradient at the pre-activations); b (C, o); YT (o, n) the targets
        transposed; values (C,) float64 receives each configuration's loss."""
        xp = self.xp
        n = Z.shape[2]
        Z += b[:, :, None]
        flat = Z.reshape(-1, n)
        self.activation_forward(flat, activation, out=flat)
        term_and_grad, mean = self.loss_parts(loss, axis=1)
        terms, G = term_and_grad(Z, YT, n)
        values[...] = mean(xp.sum(terms, axis=(1, 2)), n)
        self.activation_backward(G.reshape(-1, n), flat, activation, out=flat)

    def record_epoch(self, values, epoch, losses, diverged):
        """Record the epoch's losses (C,) in losses (C, E) and freeze configurations
        whose loss is not finite: diverged[c] = epoch, their later losses NaN."""
        xp = self.xp
        training = diverged < 0
        losses[:, epoch] = xp.where(training, values, numpy.nan)
        diverged[...] = xp.where(training & ~xp.isfinite(values), epoch, diverged)

    def step_many(self, pairs, steps, diverged):
        """P -= steps[c] * dP for each (P, dP) in pairs, arrays (C, ., .), for every
        configuration still training (diverged[c] < 0); steps (C,) in P's dtype."""
        xp = self.xp
        ok = (diverged < 0)[:, None, None]
        for P, dP in pairs:
            # 0 * NaN is NaN: keep frozen configurations exactly as they were.
            P -= xp.where(ok, dP * steps[:, None, None], 0)
