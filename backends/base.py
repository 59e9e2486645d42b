"""The kernel interface: one small class that is also the working NumPy reference.

Every method works on the backend's own arrays (``self.xp``). A backend subclass
overrides only what it speeds up; everything else runs this code with its ``xp``.

Conventions (shapes): ``X`` (n, n_in), ``W`` (n_in, n_out), ``b`` (n_out,),
``A``/``Z``/``dZ`` (n, n_out). Losses are means over samples of the per-sample
loss summed over outputs. For ``binary_crossentropy`` the kernels work on
*logits*: ``Yhat`` is the output layer's pre-activation Z and the sigmoid is
applied only for prediction, which keeps the loss finite for any z.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy

from ._math import (ACTIVATIONS, LOSS_MATH, LOSSES, array_function)


@dataclass(frozen=True)
class ModelSpec:
    """What the kernels need to know of a network: ``sizes`` (n_in, h1, ..., n_out),
    the kernel ``activations`` per layer (for ``binary_crossentropy`` the last is
    ``"linear"``: the loss takes logits), the ``loss`` and the ``dtype`` name."""

    sizes: tuple
    activations: tuple
    loss: str
    dtype: str

    @property
    def weights(self) -> int:
        """Number of weights (not biases) of one network."""
        return sum(a * b for a, b in zip(self.sizes, self.sizes[1:]))

    @classmethod
    def of(cls, params, activations, loss):
        """The spec of ``[(W, b), ...]`` (W (i, o) or stacked (C, i, o))."""
        sizes = (params[0][0].shape[-2],) + tuple(W.shape[-1] for W, _ in params)
        return cls(sizes, tuple(activations), loss, numpy.dtype(params[0][0].dtype).name)


class TrainState:
    """Parameters and reusable buffers of one network on one backend.

    ``params`` is a list of ``(W, b)`` backend arrays, updated in place.
    ``activations`` are the kernel activations per layer (for
    ``binary_crossentropy`` the last one is ``"linear"``: the loss takes logits).
    """

    def __init__(self, backend, params, activations, loss):
        self.backend = backend
        self.params = list(params)
        self.activations = tuple(activations)
        self.loss = loss
        self.dtype = params[0][0].dtype
        self.spec = ModelSpec.of(self.params, self.activations, loss)
        self._buffers = {}

    def buffers(self, n):
        """Buffers for a batch of ``n`` rows, allocated once per batch size."""
        buf = self._buffers.get(n)
        if buf is None:
            buf = _Buffers(self.backend, self.params, n, self.dtype)
            self._buffers[n] = buf
        return buf


class _Buffers:
    """Per-layer activations A, upstream gradients G (dA), dZ and parameter grads."""

    def __init__(self, backend, params, n, dtype):
        self.A = [backend.empty((n, W.shape[1]), dtype) for W, _ in params]
        self.G = [backend.empty((n, W.shape[1]), dtype) for W, _ in params]
        self.dZ = [backend.empty((n, W.shape[1]), dtype) for W, _ in params]
        self.grads = [(backend.empty(W.shape, dtype), backend.empty(b.shape, dtype))
                      for W, b in params]
        self.scratch = backend.empty((n, params[-1][0].shape[1]), dtype)
        in_dim = params[0][0].shape[0]
        self.Xb = backend.empty((n, in_dim), dtype)
        self.Yb = backend.empty((n, params[-1][0].shape[1]), dtype)
        # What a backend derives from these buffers once (kernel argument tuples and the
        # like), by a key of its choosing.
        self.cache = {}


class Backend:
    """NumPy reference implementation of the whole kernel interface."""

    name = "numpy"

    def __init__(self):
        self.xp = numpy
        self._local = threading.local()

    def _scratch(self, shape, dtype):
        """A reusable temporary array, one per thread, shape and dtype."""
        cache = getattr(self._local, "scratch", None)
        if cache is None or len(cache) > 32:
            cache = self._local.scratch = {}
        key = (tuple(shape), str(dtype))
        buf = cache.get(key)
        if buf is None:
            buf = cache[key] = self.xp.empty(shape, dtype=dtype)
        return buf

    # ----------------------------------------------------------------- arrays
    def asarray(self, x, dtype=None):
        """Copy/convert ``x`` (NumPy or own array) to a C-contiguous backend array."""
        return self.xp.ascontiguousarray(self.xp.asarray(x, dtype=dtype))

    def to_numpy(self, x):
        """Return ``x`` as a NumPy array (no copy when it already is one)."""
        return numpy.asarray(x)

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self.xp.zeros(shape, dtype=dtype)

    def is_own_array(self, x):
        """True when ``x`` is an array this backend computes on without conversion."""
        return isinstance(x, numpy.ndarray)

    def device(self):
        """A short description of where this backend computes."""
        return "cpu"

    def synchronize(self):
        """Wait until queued device work is done (a no-op on CPU backends).
        Benchmarks call it before reading a clock."""

    def versions(self):
        """Package versions this backend runs on, for ``nnkit info``."""
        return {"numpy": numpy.__version__}

    def info_lines(self):
        """Extra facts for ``nnkit info`` (cache directories and the like)."""
        return []

    # ------------------------------------------------------------ activations
    def activation_forward(self, Z, activation, out=None):
        """``act(Z)``, elementwise; ``out`` may be ``Z`` itself."""
        xp = self.xp
        if out is None:
            out = xp.empty_like(Z)
        if activation == "sigmoid":
            # exp(min(z, 0)) / (1 + exp(-|z|)): never overflows, accurate in both tails.
            num = self._scratch(Z.shape, Z.dtype)
            xp.minimum(Z, 0, out=num)
            xp.exp(num, out=num)
            xp.abs(Z, out=out)
            xp.negative(out, out=out)
            xp.exp(out, out=out)
            out += 1
            xp.divide(num, out, out=out)
        elif activation == "tanh":
            xp.tanh(Z, out=out)
        elif activation == "relu":
            xp.maximum(Z, 0, out=out)
        elif activation == "linear":
            if out is not Z:
                xp.copyto(out, Z)
        else:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        return out

    def dense_forward(self, X, W, b, activation, out=None):
        """Fused ``act(X @ W + b)``: X (n, i), W (i, o), b (o,) -> (n, o)."""
        out = self.xp.matmul(X, W, out=out)
        out += b
        return self.activation_forward(out, activation, out=out)

    def activation_backward(self, dA, A, activation, out=None):
        """``dZ = dA * act'(A)``, the derivative taken from the output A.

        sigmoid: a(1-a); tanh: 1-a^2; relu: 1 where a > 0 else 0 (so 0 at z = 0);
        linear: 1. ``out`` may be ``dA`` or ``A`` itself.
        """
        xp = self.xp
        if out is None:
            out = xp.empty_like(A)
        if out is dA or out is A:  # computed in a scratch buffer, then copied
            result = self.activation_backward(dA, A, activation,
                                              out=self._scratch(A.shape, A.dtype))
            xp.copyto(out, result)
            return out
        if activation == "sigmoid":
            xp.multiply(A, A, out=out)
            xp.subtract(A, out, out=out)
            out *= dA
        elif activation == "tanh":
            xp.multiply(A, A, out=out)
            xp.subtract(1, out, out=out)
            out *= dA
        elif activation == "relu":
            xp.greater(A, 0, out=out)
            out *= dA
        elif activation == "linear":
            xp.copyto(out, dA)
        else:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        return out

    def dense_backward(self, dZ, X, W, need_dX=True, dW=None, db=None, dX=None):
        """``dW = X^T dZ`` (i, o), ``db = sum_rows dZ`` (o,), ``dX = dZ W^T`` (n, i) or None."""
        xp = self.xp
        dW = xp.matmul(X.T, dZ, out=dW)
        db = xp.sum(dZ, axis=0, out=db)
        if need_dX:
            dX = xp.matmul(dZ, W.T, out=dX)
        else:
            dX = None
        return dW, db, dX

    # ------------------------------------------------------------------ losses
    def loss(self, Yhat, Y, kind, out=None):
        """Mean over samples of the summed per-sample loss, as a 0-d backend value.

        ``out`` is an optional scratch array of Yhat's shape (avoids allocation).
        """
        xp = self.xp
        n = Yhat.shape[0]
        if out is None:
            out = xp.empty_like(Yhat)
        if kind in ("squared_error", "mse"):
            xp.subtract(Yhat, Y, out=out)
            total = xp.vdot(out, out)
            return total / (2 * n) if kind == "squared_error" else total / n
        if kind == "binary_crossentropy":
            # (max(z, 0) - y z) + log1p(exp(-|z|)) per element: softplus(z) - y z without
            # overflow, and without cancellation between large sums.
            t = self._scratch(Yhat.shape, Yhat.dtype)
            xp.multiply(Y, Yhat, out=t)
            xp.maximum(Yhat, 0, out=out)
            out -= t
            xp.abs(Yhat, out=t)
            xp.negative(t, out=t)
            xp.exp(t, out=t)
            xp.log1p(t, out=t)
            out += t
            total = xp.sum(out)
            return total / n
        raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")

    def loss_grad(self, Yhat, Y, kind, out=None):
        """d loss / d Yhat, shape (n, o); for binary_crossentropy d loss / d logits."""
        xp = self.xp
        n = Yhat.shape[0]
        if kind == "squared_error":
            out = xp.subtract(Yhat, Y, out=out)
            out /= n
        elif kind == "mse":
            out = xp.subtract(Yhat, Y, out=out)
            out *= 2.0 / n
        elif kind == "binary_crossentropy":
            out = self.activation_forward(Yhat, "sigmoid", out=out)
            out -= Y
            out /= n
        else:
            raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")
        return out

    def loss_parts(self, kind):
        """(term, grad, mean) of loss ``kind`` as array functions rendered from the table:
        ``term(z, y)`` per element, ``grad(z, y, n)``, ``mean(total, n)``; for the
        stacked sweeps, whose arrays are laid out differently from ``loss``'s."""
        cache = self.__dict__.setdefault("_loss_parts", {})
        parts = cache.get(kind)
        if parts is None:
            if kind not in LOSS_MATH:
                raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")
            math = LOSS_MATH[kind]
            sig = lambda Z: self.activation_forward(Z, "sigmoid")  # noqa: E731
            parts = cache[kind] = (
                array_function(math.term, "z", "y", xp=self.xp, sigmoid=sig),
                array_function(math.grad, "z", "y", "n", xp=self.xp, sigmoid=sig),
                array_function(math.mean, "total", "n", xp=self.xp, sigmoid=sig))
        return parts

    def sgd_update(self, params, grads, lr):
        """``p -= lr * g`` in place for every (W, b); scales ``grads`` in place."""
        for (W, b), (dW, db) in zip(params, grads):
            dW *= lr
            W -= dW
            db *= lr
            b -= db

    # ------------------------------------------------------------ composition
    def forward(self, state, X, buffers=None):
        """Forward pass; returns the last layer's kernel output (n, o)."""
        buf = buffers if buffers is not None else state.buffers(X.shape[0])
        inp = X
        for (W, b), act, A in zip(state.params, state.activations, buf.A):
            inp = self.dense_forward(inp, W, b, act, out=A)
        return inp

    def forward_backward(self, state, X, Y):
        """Loss of (X, Y) and its gradients, left in ``state.buffers(n).grads``."""
        buf = state.buffers(X.shape[0])
        out = self.forward(state, X, buf)
        loss = self.loss(out, Y, state.loss, out=buf.scratch)
        last = len(state.params) - 1
        self.loss_grad(out, Y, state.loss, out=buf.G[last])
        for i in range(last, -1, -1):
            W = state.params[i][0]
            dZ = self.activation_backward(buf.G[i], buf.A[i], state.activations[i], out=buf.dZ[i])
            inp = X if i == 0 else buf.A[i - 1]
            dW, db = buf.grads[i]
            self.dense_backward(dZ, inp, W, need_dX=i > 0, dW=dW, db=db,
                                dX=buf.G[i - 1] if i > 0 else None)
        return loss

    def train_step(self, state, X, Y, lr):
        """One gradient-descent step on the batch (X, Y); returns the batch loss
        taken before the update, as a 0-d backend value (no host sync)."""
        loss = self.forward_backward(state, X, Y)
        self.sgd_update(state.params, state.buffers(X.shape[0]).grads, lr)
        return loss

    def train_epochs(self, state, X, Y, lrs, batch_size=None, orders=None):
        """Train ``len(lrs)`` epochs; epoch e uses learning rate ``lrs[e]``.

        ``batch_size`` None (or >= n) is full batch. ``orders`` (epochs, n) int
        gives each epoch's sample order for mini-batches (None: in order).
        Returns per-epoch mean losses, shape (epochs,), as a NumPy float64 array.
        Stops after the first epoch whose loss is not finite; later entries are NaN.
        """
        xp = self.xp
        n = X.shape[0]
        epochs = len(lrs)
        losses = numpy.full(epochs, numpy.nan)
        full = batch_size is None or batch_size >= n
        chunk = xp.zeros(epochs, dtype=numpy.float64)
        done = 0
        # Losses stay on the device and are read once per block of epochs.
        block = 64
        for e in range(epochs):
            lr = float(lrs[e])
            if full:
                chunk[e] = self.train_step(state, X, Y, lr)
            else:
                order = None if orders is None else orders[e]
                for start in range(0, n, batch_size):
                    stop = min(start + batch_size, n)
                    Xb, Yb = self.gather_batch(state, X, Y, order, start, stop)
                    loss = self.train_step(state, Xb, Yb, lr)
                    chunk[e] += loss * ((stop - start) / n)
            if (e + 1) % block == 0 or e + 1 == epochs:
                got = numpy.asarray(self.to_numpy(chunk[done:e + 1]), dtype=numpy.float64)
                bad = ~numpy.isfinite(got)
                if bad.any():
                    k = int(numpy.argmax(bad))
                    losses[done:done + k + 1] = got[:k + 1]
                    return losses
                losses[done:e + 1] = got
                done = e + 1
        return losses

    def gather_batch(self, state, X, Y, order, start, stop):
        """Rows ``order[start:stop]`` of X (n, i) and Y (n, o) (rows start:stop when
        ``order`` is None), gathered into the state's reusable buffers (no copy for
        in-order rows). Returns (Xb, Yb) of stop - start rows."""
        if order is None:
            return X[start:stop], Y[start:stop]
        buf = state.buffers(stop - start)
        idx = order[start:stop]
        self.xp.take(X, idx, axis=0, out=buf.Xb)
        self.xp.take(Y, idx, axis=0, out=buf.Yb)
        return buf.Xb, buf.Yb

    # ------------------------------------------------------------------ sweeps
    def train_many(self, params, activations, loss, X, Y, lrs, factors, batch_size=None,
                   orders=None):
        """Train C independent networks of one architecture together.

        params: list of (W (C, i, o), b (C, o)) backend arrays, updated in place.
        lrs: (C,) host base rates; factors: (epochs,) host schedule factors; configuration
        c trains epoch e at ``lrs[c] * factors[e]`` (float64, as ``fit`` computes it).
        orders: None or (C, epochs, n) host sample orders.
        A configuration whose batch loss is not finite is frozen before that update.
        Returns (losses (C, epochs) NumPy float64, NaN after divergence;
        diverged_epoch (C,) NumPy int, -1 where it never diverged).
        """
        if batch_size is None or batch_size >= X.shape[0]:
            return self._train_many_stacked(params, activations, loss, X, Y, lrs, factors)
        xp = self.xp
        C, epochs = len(lrs), len(factors)
        n = X.shape[0]
        bs = batch_size
        losses = xp.zeros((C, epochs), dtype=numpy.float64)
        diverged = xp.full(C, -1, dtype=numpy.int64)
        lr_dev = self.asarray(lrs, dtype=numpy.float64)
        order_dev = None if orders is None else self.asarray(orders)
        dtype = params[0][0].dtype
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
                    batch_loss, grads = self._many_forward_backward(params, activations, loss,
                                                                    Xb, Yb)
                    losses[:, e] += batch_loss * ((stop - start) / n)
                    diverged[...] = xp.where((diverged < 0) & ~xp.isfinite(batch_loss), e,
                                             diverged)
                    self._step_many([p for (W, b), (dW, db) in zip(params, grads)
                                     for p in ((W, dW), (b[:, :, None], db[:, :, None]))],
                                    (lr_dev * float(factors[e])).astype(dtype), diverged)
                losses[:, e] = xp.where(diverged >= 0, xp.where(diverged == e, losses[:, e],
                                                                 numpy.nan), losses[:, e])
        return (numpy.asarray(self.to_numpy(losses), dtype=numpy.float64),
                numpy.asarray(self.to_numpy(diverged)))

    def _many_forward_backward(self, params, activations, loss, X, Y):
        """Per-configuration losses (C,) and gradients for stacked parameters;
        X (C, nb, i), Y (C, nb, o) or (nb, o)."""
        xp = self.xp
        inputs = [X]
        for (W, b), act in zip(params, activations):
            inputs.append(self.dense_forward(inputs[-1], W, b[:, None, :], act))
        out = inputs[-1]
        nb = out.shape[-2]
        term, grad, mean = self.loss_parts(loss)
        value = mean(xp.sum(term(out, Y), axis=(-2, -1)), nb)
        G = grad(out, Y, nb)
        grads = [None] * len(params)
        for i in range(len(params) - 1, -1, -1):
            dZ = self.activation_backward(G, inputs[i + 1], activations[i])
            grads[i] = (xp.matmul(xp.swapaxes(inputs[i], -1, -2), dZ), xp.sum(dZ, axis=-2))
            if i:
                G = xp.matmul(dZ, xp.swapaxes(params[i][0], -1, -2))
        return value, grads

    # The full-batch sweep: C configurations side by side with the samples as the fast
    # axis. The first layer's units of all configurations are the rows of one matrix, so
    # its forward pass and weight gradient are two large GEMMs (its bias folded in as a
    # column of ones); later layers are batched GEMMs over (C, o, n) stacks.
    def _train_many_stacked(self, params, activations, loss, X, Y, lrs, factors):
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
                self._stacked_output(A[-1], b_out, YT, activations[-1], loss, values)
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
                self._record_epoch(values, e, losses, diverged)
                self._step_many(pairs, (rates * factor).astype(dtype), diverged)
        W0[...] = xp.swapaxes(WT[0][:, :, :i], 1, 2)
        b0[...] = WT[0][:, :, i]
        for (W, b), wt, bl in zip(params[1:], WT[1:], bs[1:]):
            W[...] = xp.swapaxes(wt, 1, 2)
            b[...] = bl
        return (numpy.asarray(self.to_numpy(losses), dtype=numpy.float64),
                numpy.asarray(self.to_numpy(diverged)))

    def _stacked_output(self, Z, b, YT, activation, loss, values):
        """Output layers of the stacked sweep: Z (C, o, n) holds W^T A^T and is replaced
        by dZ (the gradient at the pre-activations); b (C, o); YT (o, n) the targets
        transposed; values (C,) float64 receives each configuration's loss."""
        xp = self.xp
        n = Z.shape[2]
        Z += b[:, :, None]
        flat = Z.reshape(-1, n)
        self.activation_forward(flat, activation, out=flat)
        term, grad, mean = self.loss_parts(loss)
        values[...] = mean(xp.sum(term(Z, YT), axis=(1, 2)), n)
        G = grad(Z, YT, n)
        self.activation_backward(G.reshape(-1, n), flat, activation, out=flat)

    def _record_epoch(self, values, epoch, losses, diverged):
        """Record the epoch's losses (C,) in losses (C, E) and freeze configurations
        whose loss is not finite: diverged[c] = epoch, their later losses NaN."""
        xp = self.xp
        training = diverged < 0
        losses[:, epoch] = xp.where(training, values, numpy.nan)
        diverged[...] = xp.where(training & ~xp.isfinite(values), epoch, diverged)

    def _step_many(self, pairs, steps, diverged):
        """P -= steps[c] * dP for each (P, dP) in pairs, arrays (C, ., .), for every
        configuration still training (diverged[c] < 0); steps (C,) in P's dtype."""
        xp = self.xp
        ok = (diverged < 0)[:, None, None]
        for P, dP in pairs:
            # 0 * NaN is NaN: keep frozen configurations exactly as they were.
            P -= xp.where(ok, dP * steps[:, None, None], 0)
