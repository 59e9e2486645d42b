"""The Numba backend: JIT-compiled loops where Python and BLAS call overheads dominate.

Three regimes, switched by size (thresholds chosen with ``nnkit bench``):

- tiny full-batch problems and sweeps (the OR gate, XOR): kernels generated for the exact
  architecture (``_numba_codegen``), a whole fit or sweep in one compiled call;
- small layers (rows x weights <= ``LOOP_MAX_WORK``): the generic fused kernels of
  ``_numba_kernels`` (any depth; mini-batch and SGD epochs in one call);
- larger layers: BLAS matmuls (the inherited NumPy path) plus one fused, vectorised
  bias + activation pass (``bias_activation``), and single-pass backward kernels.

Elementwise loops vectorise thanks to an arithmetic exp (this llvmlite has no SVML);
loops over libm calls (tanh, log1p) are used only up to ``LOOP_MAX_ELEMENTS``. Nothing
compiles at import: each kernel compiles (or loads from numba's disk cache) on first use.
"""
from __future__ import annotations

import os

import numpy as np

from . import BackendUnavailableError
from ._math import ACTIVATION_CODES, LOSS_CODES
from .base import Backend

_ACT = ACTIVATION_CODES
_LOSS = LOSS_CODES

# Above this many (rows x weights) per call the loops lose to BLAS + NumPy ufuncs
# (measured with `nnkit bench`: digits 64-64-10 at batch 256 is 3.6x slower in loops).
LOOP_MAX_WORK = 1 << 16
LOOP_MAX_ELEMENTS = 1 << 10  # for loops over libm calls (tanh, log1p)
# Networks up to this size get kernels generated for their exact shape (full-batch fits
# up to CODEGEN_MAX_ROWS rows, and sweeps), when a call has at least CODEGEN_MIN_WORK
# sample-epochs: generating one costs about a second once (then it is cached on disk), so
# short runs on a new shape use the generic kernels instead.
CODEGEN_MAX_ROWS = 64
CODEGEN_MAX_WEIGHTS = 1024
CODEGEN_MIN_WORK = 4096


class NumbaBackend(Backend):
    name = "numba"

    @classmethod
    def check(cls):
        try:
            import numba  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the numba backend needs the 'numba' package ({exc}); install it with "
                "`pip install numba` (nnkit requires it, so `pip install nnkit` brings it). "
                "Selected by NNKIT_BACKEND=numba or backend='numba'.") from exc

    def __init__(self):
        super().__init__()
        self._k = None

    @property
    def k(self):
        """The kernels module, imported on first use (defines, does not compile)."""
        if self._k is None:
            from . import _numba_kernels
            self._k = _numba_kernels
        return self._k

    def versions(self):
        import numba
        return {"numba": numba.__version__, "numpy": np.__version__}

    def info_lines(self):
        from numba.core.config import CACHE_DIR
        where = CACHE_DIR or os.path.join(os.path.dirname(__file__), "__pycache__")
        ok = os.access(where if os.path.isdir(where) else os.path.dirname(where), os.W_OK)
        from ._numba_codegen import _cache_dir
        return [f"cache dir {where} ({'writable' if ok else 'NOT writable'}; "
                "set NUMBA_CACHE_DIR to change)",
                f"generated kernels in {_cache_dir()} (set NNKIT_CACHE_DIR to change)"]

    @staticmethod
    def _loops(rows, *arrays):
        """True where hand-written loops beat BLAS/ufunc calls for this much work."""
        return rows * sum(a.size for a in arrays) <= LOOP_MAX_WORK and all(
            a.flags.c_contiguous and a.ndim <= 2 for a in arrays)

    @staticmethod
    def _elementwise_loops(*arrays, scalar_math=False):
        """Elementwise loops vectorise (``_numba_kernels.exp64``) except over libm calls
        (tanh, log1p), where NumPy's SIMD ufuncs win on all but small arrays."""
        return all(a.flags.c_contiguous and a.ndim == 2 for a in arrays) and (
            not scalar_math or sum(a.size for a in arrays) <= LOOP_MAX_ELEMENTS)

    # ------------------------------------------------------------- primitives
    def activation_forward(self, Z, activation, out=None):
        if not self._elementwise_loops(Z, scalar_math=activation == "tanh"):
            return super().activation_forward(Z, activation, out)
        if out is Z:
            self.k.activation_inplace(Z, _act(activation), Z.shape[0])
            return Z
        if out is None:
            out = np.empty_like(Z)
        self.k.activation_forward(Z, _act(activation), out, Z.shape[0])
        return out

    def dense_forward(self, X, W, b, activation, out=None):
        if self._loops(X.shape[0], W, X):
            if out is None:
                out = np.empty((X.shape[0], W.shape[1]), dtype=W.dtype)
            self.k.dense_forward(X, W, b, _act(activation), out, X.shape[0])
            return out
        if activation == "tanh" or X.ndim > W.ndim or not b.flags.c_contiguous:
            return super().dense_forward(X, W, b, activation, out)
        out = np.matmul(X, W, out=out)  # BLAS, then bias + activation in one pass
        if W.ndim == 2:
            self.k.bias_activation(out, b, _act(activation), out.shape[0])
        else:  # stacked configurations (sweeps): W (C, i, o), b (C, 1, o), out (C, n, o)
            C, n, o = out.shape
            self.k.bias_activation_stacked(out.reshape(C * n, o), b.reshape(C, o), n,
                                           _act(activation))
        return out

    def activation_backward(self, dA, A, activation, out=None):
        if out is None:
            out = np.empty_like(A)
        flat = [a.reshape(-1, a.shape[-1]) if a.ndim == 3 and a.flags.c_contiguous else a
                for a in (dA, A, out)]  # stacked sweeps: one 2-D pass
        if not self._elementwise_loops(*flat):
            return super().activation_backward(dA, A, activation, out)
        if out is dA:
            self.k.derivative_inplace(flat[0], flat[1], _act(activation), flat[1].shape[0])
        elif out is A:
            self.k.derivative_into_output(flat[0], flat[1], _act(activation), flat[1].shape[0])
        else:
            self.k.activation_backward(flat[0], flat[1], _act(activation), flat[2],
                                       flat[1].shape[0])
        return out

    def dense_backward(self, dZ, X, W, need_dX=True, dW=None, db=None, dX=None):
        if not self._loops(X.shape[0], W, X, dZ):
            return super().dense_backward(dZ, X, W, need_dX, dW, db, dX)
        dW = np.empty_like(W) if dW is None else dW
        db = np.empty(W.shape[1], dtype=W.dtype) if db is None else db
        self.k.dense_backward_params(dZ, X, X.shape[0], dW, db)
        if need_dX:
            dX = np.empty_like(X) if dX is None else dX
            self.k.dense_backward_input(dZ, W, dX, X.shape[0])
        else:
            dX = None
        return dW, db, dX

    def loss(self, Yhat, Y, kind, out=None):
        if not self._elementwise_loops(Yhat, Y, scalar_math=kind == "binary_crossentropy"):
            return super().loss(Yhat, Y, kind, out)
        return np.float64(self.k.loss_value(Yhat, Y, _loss(kind), Yhat.shape[0]))

    def loss_grad(self, Yhat, Y, kind, out=None):
        if not self._elementwise_loops(Yhat, Y):
            return super().loss_grad(Yhat, Y, kind, out)
        if out is None:
            out = np.empty_like(Yhat)
        self.k.loss_grad(Yhat, Y, _loss(kind), out, Yhat.shape[0])
        return out

    def sgd_update(self, params, grads, lr):
        if not self._elementwise_loops(*(W for W, _ in params)):  # e.g. stacked sweeps
            return super().sgd_update(params, grads, lr)
        for (W, b), (dW, db) in zip(params, grads):
            self.k.sgd_update(W, dW, lr)
            self.k.sgd_update_1d(b, db, lr)

    # ------------------------------------------------------------------ fused
    def _fused_args(self, state, buf):
        """Kernel arguments of a state's arrays, built once per buffer set (the
        arrays are updated in place, so the tuples stay valid)."""
        args = buf.cache.get("numba_args")
        if args is None:
            args = buf.cache["numba_args"] = (
                tuple(W for W, _ in state.params), tuple(b for _, b in state.params),
                np.array([_ACT[a] for a in state.activations], dtype=np.int64),
                _LOSS[state.loss], tuple(buf.A), tuple(buf.G),
                tuple(g for g, _ in buf.grads), tuple(g for _, g in buf.grads))
        return args

    def _fused_ok(self, state, X, rows):
        return X.flags.c_contiguous and self._loops(rows, *(W for W, _ in state.params))

    def train_step(self, state, X, Y, lr):
        n = X.shape[0]
        buf = state.buffers(n)
        step = buf.cache.get("codegen_step")
        if step is None:  # decided once per buffer set: (kernel, params, lr, loss) or False
            step = buf.cache["codegen_step"] = self._codegen_step(state, n)
        if step and X.flags.c_contiguous:
            kernel, flat, lr_arr, loss_arr = step
            lr_arr[0] = lr
            kernel(X, Y, *flat, lr_arr, loss_arr)
            return loss_arr[0]
        if not self._fused_ok(state, X, X.shape[0]):
            return super().train_step(state, X, Y, lr)
        Ws, bs, acts, loss, As, Gs, dWs, dbs = self._fused_args(state, buf)
        return np.float64(self.k.train_step(X, Y, X.shape[0], Ws, bs, acts, loss, float(lr),
                                            As, Gs, dWs, dbs))

    @staticmethod
    def _codegen_ok(sizes, rows=None):
        """True for networks small enough for generated kernels (and `rows` rows, if given)."""
        weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
        return weights <= CODEGEN_MAX_WEIGHTS and (rows is None or rows <= CODEGEN_MAX_ROWS)

    @staticmethod
    def _sizes(params):
        return [params[0][0].shape[-2]] + [W.shape[-1] for W, _ in params]

    def _codegen_step(self, state, n):
        sizes = self._sizes(state.params)
        if not self._codegen_ok(sizes, n):
            return False
        from ._numba_codegen import kernel as generated
        kernel = generated("fit", sizes, state.activations, state.loss, n, state.dtype.name)
        return (kernel, tuple(a for p in state.params for a in p), np.empty(1),
                np.full(1, np.nan))

    def train_epochs(self, state, X, Y, lrs, batch_size=None, orders=None):
        n = X.shape[0]
        sizes = self._sizes(state.params)
        if ((batch_size is None or batch_size >= n) and self._codegen_ok(sizes, n)
                and X.flags.c_contiguous and len(lrs) * n >= CODEGEN_MIN_WORK):
            from ._numba_codegen import kernel as generated
            kernel = generated("fit", sizes, state.activations, state.loss, n, state.dtype.name)
            losses = np.full(len(lrs), np.nan)
            kernel(X, Y, *(a for pair in state.params for a in pair),
                   np.ascontiguousarray(lrs, dtype=np.float64), losses)
            return losses
        bsz = n if batch_size is None or batch_size >= n else int(batch_size)
        if not self._fused_ok(state, X, bsz):
            return super().train_epochs(state, X, Y, lrs, batch_size, orders)
        buf = state.buffers(bsz)
        Ws, bs, acts, loss, As, Gs, dWs, dbs = self._fused_args(state, buf)
        use_order = orders is not None and bsz < n
        orders = (np.ascontiguousarray(orders, dtype=np.int64) if use_order
                  else np.empty((0, 0), dtype=np.int64))
        lrs = np.ascontiguousarray(lrs, dtype=np.float64)
        losses = np.full(len(lrs), np.nan)
        self.k.train_epochs(X, Y, Ws, bs, acts, loss, lrs, bsz, orders, use_order,
                            buf.Xb, buf.Yb, As, Gs, dWs, dbs, losses)
        return losses

    def train_many(self, params, activations, loss, X, Y, lrs, factors, batch_size=None,
                   orders=None):
        n = X.shape[0]
        sizes = self._sizes(params)
        full = batch_size is None or batch_size >= n
        if (len(lrs) * len(factors) * n < CODEGEN_MIN_WORK or not X.flags.c_contiguous
                or not self._codegen_ok(sizes, n if full else None)):
            return super().train_many(params, activations, loss, X, Y, lrs, factors,
                                      batch_size, orders)
        if not full:
            return self._train_many_minibatch(params, activations, loss, X, Y, lrs, factors,
                                              batch_size, orders)
        from ._numba_codegen import from_blocks, kernel as generated, to_blocks
        dtype = params[0][0].dtype
        C, epochs = len(lrs), len(factors)
        block = _many_block(n, sizes, dtype.itemsize)
        kernel = generated("many", sizes, activations, loss, n, dtype.name, block)
        blocked = [(to_blocks(W, block), to_blocks(b, block)) for W, b in params]
        rates = to_blocks(np.asarray(lrs, dtype=np.float64), block)
        nblk = rates.shape[0]
        losses = np.empty((nblk * block, epochs))  # every entry is written by the kernel
        diverged = np.full((nblk, block), -1, dtype=np.int64)
        kernel(X, Y, *(a for pair in blocked for a in pair), rates,
               np.ascontiguousarray(factors, dtype=np.float64),
               losses.reshape(nblk, block, epochs), diverged)
        for (W, b), (Wb, bb) in zip(params, blocked):
            np.copyto(W, from_blocks(Wb, C))
            np.copyto(b, from_blocks(bb, C))
        return losses[:C], from_blocks(diverged, C)

    # The base class's sweeps (full batch: first layer one wide GEMM, later layers batched
    # GEMMs) with their elementwise steps as kernels. They are serial: BLAS's threads still
    # spin right after a GEMM, and prange threads next to them halve the speed.
    def _stacked_output(self, Z, b, YT, activation, loss, values):
        self.k.many_output(Z, b, YT, _act(activation), _loss(loss), values)

    def _record_epoch(self, values, epoch, losses, diverged):
        self.k.many_bookkeeping(values, epoch, losses, diverged)

    def _step_many(self, pairs, steps, diverged):
        for P, dP in pairs:
            self.k.many_step(P, dP, steps, diverged)

    def _train_many_minibatch(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                              orders):
        """Each configuration runs the generated mini-batch loop; prange over them."""
        from ._numba_codegen import kernel as generated
        n = X.shape[0]
        C, epochs = len(lrs), len(factors)
        dtype = params[0][0].dtype
        kernel = generated("minibatch", self._sizes(params), activations, loss, n, dtype.name,
                           batch_size)
        use_order = orders is not None
        orders = (np.ascontiguousarray(orders, dtype=np.int64) if use_order
                  else np.zeros((C, 1, 1), dtype=np.int64))
        losses = np.full((C, epochs), np.nan)
        diverged = np.full(C, -1, dtype=np.int64)
        kernel(X, Y, *(a for pair in params for a in pair),
               np.ascontiguousarray(lrs, dtype=np.float64),
               np.ascontiguousarray(factors, dtype=np.float64), orders, use_order, losses,
               diverged)
        return losses, diverged


def _act(name):
    try:
        return _ACT[name]
    except KeyError:
        raise ValueError(f"activation: expected one of {tuple(_ACT)}, got {name!r}") from None


def _loss(name):
    try:
        return _LOSS[name]
    except KeyError:
        raise ValueError(f"loss: expected one of {tuple(_LOSS)}, got {name!r}") from None


def _many_block(n, sizes, itemsize):
    """Configurations per block: 64, fewer when a block's activations pass ~1 MiB."""
    per_config = 2 * n * sum(sizes[1:]) * itemsize
    block = 64
    while block > 8 and block * per_config > (1 << 20):
        block //= 2
    return block
