"""The Numba backend: JIT-compiled loops where Python and BLAS call overheads dominate.

Named paths (``paths``; ``choose_path`` picks one per call by size, thresholds chosen
with ``nnkit bench``; ``Backend.use_path`` forces one):

- ``"generated"``: tiny networks (the OR gate, XOR): kernels generated for the exact
  architecture (``_numba_codegen``), a step, a whole full-batch fit or a whole sweep in
  one compiled call;
- ``"fused"``: small layers (rows x weights <= ``FUSED_MAX_WORK``): the generic fused
  kernels of ``_numba_kernels`` (any depth; mini-batch and SGD epochs in one call);
- ``"blas"``: larger layers: a step, or all the epochs of a fit (full batch or
  mini-batches, shuffled or not), in one compiled call (``blas_train_step``,
  ``blas_train_epochs``) that calls BLAS's gemm from inside the kernel (``np.dot`` with
  ``out``) and fuses the elementwise passes between the gemms;
- ``"stacked"`` / ``"batched"``: the sweep engine of ``stacked.py``, with its
  elementwise steps as serial kernels.

Elementwise loops vectorise thanks to an arithmetic exp, tanh and log1p (this llvmlite
has no SVML, so a loop over ``math.exp`` would call libm element by element). Nothing
compiles at import: each kernel compiles (or loads from numba's disk cache) on first use.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from . import BackendUnavailableError
from ._math import ACTIVATION_CODES, LOSS_CODES, LOSS_MATH, UPDATE_CODES
from .base import CALLS, Backend, ModelSpec, TrainState
from .stacked import StackedSweeps

_ACT = ACTIVATION_CODES
_LOSS = LOSS_CODES

# Above this many (rows x weights) per call the loops lose to BLAS + NumPy ufuncs
# (measured with `nnkit bench`: digits 64-64-10 at batch 256 is 3.6x slower in loops).
LOOP_MAX_WORK = 1 << 16
# A step or epochs call takes the fused loop kernels while rows (the batch) x weights is
# at most this, else the BLAS kernels (with SciPy; without it, the "blas" path is the
# reference composition, and LOOP_MAX_WORK decides). Measured with float32/float64, relu
# CE, tanh MSE, sigmoid squared error, 2-4-1 .. 64-64-10, batches 1-128: loops win
# below ~300 (batch 1 up to ~600: 32-16-4 1.4 vs 1.8 us a step), BLAS from ~700
# (8-8-2 at batch 16: 1.15-1.4x; digits 64-32-10 at batch 64: 5x).
FUSED_MAX_WORK = 1 << 9
# Networks up to this size get kernels generated for their exact shape (full-batch fits
# up to CODEGEN_MAX_ROWS rows, and sweeps), when a call has at least CODEGEN_MIN_WORK
# sample-epochs (a fit: with the epochs its network ran before, ``prepare_epochs``):
# generating one costs about a second once (then it is cached on disk), so short runs on
# a new shape use the generic kernels instead. `nnkit bench --scaling`
# (README "How cost grows with the work", benchmarks/results/scaling-cpu.*) first measured
# the generated step fastest up to rows x weights ~64-82 k (h = 128 at 32 rows, 128 rows
# at 320 weights), past these caps; they stay lower because each new shape costs a
# compile, and the wider the net the longer it takes.
CODEGEN_MAX_ROWS = 64
CODEGEN_MAX_WEIGHTS = 1024
CODEGEN_MIN_WORK = 4096
# ... and a step or full-batch epochs call only while rows x weights is at most this where
# the blas path runs in numba: the scaling run of 2026-11-27 (16-h-4 float32) measured the
# generated step faster at 10,240 (4.4 vs 7.5 us); at 20,480 the generated step 1.16x
# faster at h = 32 and 32 rows, the blas step 1.29x faster at 64 rows and h = 16; the
# blas step faster at 40,960 on both axes (2026-11-26: blas 1.10x and 1.54x at 20,480).
CODEGEN_MAX_WORK = 1 << 14


class NumbaBackend(StackedSweeps, Backend):
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
            from ._numba_codegen import guard_numba_cache
            guard_numba_cache(_numba_kernels)  # a corrupt numba cache entry recompiles
            self._k = _numba_kernels
        return self._k

    def versions(self):
        import numba
        return {"numba": numba.__version__, "numpy": np.__version__}

    def info_lines(self):
        from numba.core.config import CACHE_DIR
        where = CACHE_DIR or os.path.join(os.path.dirname(__file__), "__pycache__")
        ok = os.access(where if os.path.isdir(where) else os.path.dirname(where), os.W_OK)
        from ._numba_codegen import UNCACHED, cache_dir_and_reason
        kernels, why = cache_dir_and_reason()
        return [f"cache dir {where} ({'writable' if ok else 'NOT writable'}; "
                "set NUMBA_CACHE_DIR to change)",
                f"generated kernels in {kernels} " + (f"(a private temp folder: {why})" if why
                                                      else "(set NNKIT_CACHE_DIR to change)")
                ] + [f"numba cache folder {folder} not used: it {reason} (kernels compile "
                     "in every process)" for folder, reason in sorted(UNCACHED.items())]

    def _loops(self, rows, *arrays):
        """True where hand-written loops beat BLAS/ufunc calls for this much work."""
        return rows * sum(a.size for a in arrays) <= LOOP_MAX_WORK and all(
            a.flags.c_contiguous and a.ndim <= 2 for a in arrays)

    @staticmethod
    def _elementwise_loops(*arrays):
        """Elementwise loops (they vectorise: ``_numba_kernels.exp64``, ``tanh64``,
        ``log1p64``) for C-contiguous 2-D arrays."""
        return all(a.flags.c_contiguous and a.ndim == 2 for a in arrays)

    # ------------------------------------------------------------- primitives
    def activation_forward(self, Z, activation, out=None):
        if not self._elementwise_loops(Z):
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
        if X.ndim > W.ndim or not b.flags.c_contiguous:
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
        if not self._elementwise_loops(Yhat, Y):
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

    def apply_update(self, params, grads, opt, lr):
        if isinstance(lr, np.ndarray) or params[0][0].ndim != 2:  # sweeps: stacked arrays
            return super().apply_update(params, grads, opt, lr)
        depth = _padded_depth(len(params))  # (as the fused kernels: one compilation)
        return self.k.optimizer_step(
            *(_padded(arrays, depth) for arrays in (
                [W for W, _ in params], [b for _, b in params], [g for g, _ in grads],
                [g for _, g in grads], *_slot_tuples(opt))),
            UPDATE_CODES[opt.rule], opt.hyper, opt.t, float(lr))

    # ------------------------------------------------------------------ fused
    def _fused_args(self, state, buf):
        """Kernel arguments of a state's arrays, built once per buffer set (the
        arrays are updated in place, so the tuples stay valid)."""
        args = buf.cache.get("numba_args")
        if args is None:
            depth = _padded_depth(len(state.params))
            Ws, bs, S1W, S1b, S2W, S2b, As, Gs, dWs, dbs = (
                _padded(arrays, depth) for arrays in (
                    [W for W, _ in state.params], [b for _, b in state.params],
                    *_slot_tuples(state.opt), buf.A, buf.G,
                    [g for g, _ in buf.grads], [g for _, g in buf.grads]))
            opt = state.opt
            args = buf.cache["numba_args"] = (
                Ws, bs, np.array([_ACT[a] for a in state.activations], dtype=np.int64),
                _LOSS[state.loss], As, Gs, dWs, dbs,
                (UPDATE_CODES[opt.rule], opt.hyper, opt.t, S1W, S1b, S2W, S2b))
        return args

    # ------------------------------------------------------------------ paths
    paths = {"generated": CALLS, "fused": ("step", "epochs"), "blas": ("step", "epochs"),
             "each": ("sweep",), **StackedSweeps.sweep_paths}

    def planning_thresholds(self):
        return {"CODEGEN_MAX_WEIGHTS": CODEGEN_MAX_WEIGHTS, "CODEGEN_MAX_ROWS": CODEGEN_MAX_ROWS,
                "CODEGEN_MAX_WORK": CODEGEN_MAX_WORK, "CODEGEN_MIN_WORK": CODEGEN_MIN_WORK,
                "LOOP_MAX_WORK": LOOP_MAX_WORK,
                "FUSED_MAX_WORK": FUSED_MAX_WORK}

    def supports(self, path, spec):
        """The generated fit kernel (the "step" and "epochs" calls) trains every loss and
        update rule, L2 included; the generated sweep kernels every loss, but plain sgd
        only: ``choose_path`` sends other sweeps elsewhere, and ``_sweep_generated``
        refuses them (a forced path)."""
        return super().supports(path, spec)

    def choose_path(self, call, spec, rows, batch_size, configs, epochs):
        """generated: tiny networks (CODEGEN_*: steps and full-batch epochs also while
        rows x weights <= CODEGEN_MAX_WORK), and only for calls with enough work to
        pay for generating a kernel once; fused: the generic loop kernels while
        rows x weights <= FUSED_MAX_WORK (``_fused_wins``); blas: larger; sweeps
        otherwise the engine's."""
        full = batch_size is None
        few = rows <= CODEGEN_MAX_ROWS and (rows * spec.weights <= CODEGEN_MAX_WORK
                                            or not _blas_in_numba())
        # (the size tests first: fit plans at every call)
        if call == "step":
            if few and self._tiny(spec):
                return "generated"
            return "fused" if _fused_wins(rows, spec.weights) else "blas"
        if call == "epochs":
            if full and few and epochs * rows >= CODEGEN_MIN_WORK and self._tiny(spec):
                return "generated"
            rows = rows if full else batch_size
            return "fused" if _fused_wins(rows, spec.weights) else "blas"
        tiny = self._tiny(spec) and spec.plain  # the generated sweep kernels: plain sgd only
        if (tiny and (not full or rows <= CODEGEN_MAX_ROWS)
                and configs * epochs * rows >= CODEGEN_MIN_WORK):
            return "generated"
        if not full or not spec.plain:  # mini-batches, optimizers: the fit kernels
            return "each"
        return self.sweep_path(batch_size, spec)

    def _tiny(self, spec):
        """A network the generated kernels are made for (``CODEGEN_MAX_WEIGHTS``)."""
        return spec.weights <= CODEGEN_MAX_WEIGHTS and self.supports("generated", spec)

    def prepare_step(self, path, state, n):
        if path != "generated":
            return super().prepare_step(path, state, n)
        kernel = _fit_kernel(state.spec, n)
        (P, arrays), lr_arr, loss_arr = _fit_state(state), np.empty(1), np.full(1, np.nan)

        def step(state, X, Y, lr):  # one epoch of the generated fit kernel
            lr_arr[0] = lr
            kernel(X, Y, P, lr_arr, loss_arr)
            return loss_arr[0]
        step.state_arrays = arrays  # (alive as long as the step that writes them by P)
        return step

    def _step_generated(self, state, X, Y, lr):
        return self.prepare_step("generated", state, X.shape[0])(state, X, Y, lr)

    def _step_fused(self, state, X, Y, lr):
        args = self._fused_args(state, state.buffers(X.shape[0]))
        Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = args
        return np.float64(self.k.train_step(X, Y, X.shape[0], Ws, bs, acts, loss, float(lr),
                                            As, Gs, dWs, dbs, opt))

    def _step_blas(self, state, X, Y, lr):
        """One compiled call (``blas_train_step``): BLAS gemms inside the kernel, the
        elementwise passes and the update between them. numba calls BLAS through SciPy:
        without SciPy, the reference composition (NumPy's BLAS, numba's elementwise
        kernels), the same numbers a little slower."""
        if not _blas_in_numba():
            return self._step_reference(state, X, Y, lr)
        args = self._fused_args(state, state.buffers(X.shape[0]))
        Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = args
        X, Y = _contiguous(X), _contiguous(Y)
        return np.float64(self.k.blas_train_step(X, Y, X.shape[0], Ws, bs, acts, loss,
                                                 float(lr), As, Gs, dWs, dbs, opt))

    def epochs_runner(self, path, state, rows, batch_size):
        """generated, fused, blas: a closure over the kernel and its arguments, built
        once per state and size (the kernels raise no overflow warnings: the losses
        report a divergence)."""
        if path == "generated":
            return self._generated_epochs(state, rows, batch_size)
        if path == "fused":
            return self._epochs_kernel(self.k.train_epochs, state, rows, batch_size)
        if path == "blas":
            if not _blas_in_numba():
                return super().epochs_runner(path, state, rows, batch_size)
            return self._epochs_kernel(self.k.blas_train_epochs, state, rows, batch_size,
                                       contiguous=True)
        return super().epochs_runner(path, state, rows, batch_size)

    def _epochs_generated(self, state, X, Y, lrs, batch_size, orders):
        return state.runner("generated", X.shape[0], batch_size)(X, Y, _float64s(lrs), orders)

    def _epochs_fused(self, state, X, Y, lrs, batch_size, orders):
        return state.runner("fused", X.shape[0], batch_size)(X, Y, _float64s(lrs), orders)

    def _epochs_blas(self, state, X, Y, lrs, batch_size, orders):
        """Every epoch in one compiled call (``blas_train_epochs``), as ``_epochs_fused``
        (without SciPy: a Python loop over ``_step_blas``)."""
        if not _blas_in_numba():
            return self._epochs_by_steps(self._step_blas, state, X, Y, lrs, batch_size,
                                         orders)
        return state.runner("blas", X.shape[0], batch_size)(X, Y, _float64s(lrs), orders)

    def _generated_epochs(self, state, rows, batch_size):
        """``epochs_runner`` of the generated fit kernel (full batches of ``rows``)."""
        if batch_size is not None:
            raise ValueError("the generated epochs path trains full batches only")
        spec = state.spec  # (the kernels below: the update rule the table P is laid out for)
        kernel, (P, arrays) = _fit_kernel(spec, rows), _fit_state(state)
        validated = {}  # validation rows -> the kernel that also computes their loss

        def run(X, Y, lrs, orders=None, val=None):
            losses = _nans(len(lrs))
            if val is None:
                kernel(X, Y, P, lrs, losses)
                return losses
            Xv, Yv = val
            nv = Xv.shape[0]
            both = validated.get(nv)
            if both is None:
                both = validated[nv] = _fit_kernel(spec, rows, nv)
            val_losses = _nans(len(lrs))
            both(X, Y, P, lrs, losses, Xv, Yv, val_losses)
            return losses, val_losses
        run.state_arrays = arrays  # (alive as long as the runner that writes them by P)
        return run

    def _epochs_kernel(self, kernel, state, rows, batch_size, contiguous=False):
        """``epochs_runner`` of ``kernel`` (``train_epochs``' signature), which runs all
        of ``lrs``' epochs in one call; ``contiguous``: X and Y made C-contiguous."""
        bsz = rows if batch_size is None else batch_size
        buf = state.buffers(bsz)
        Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = self._fused_args(state, buf)
        in_order = np.empty((0, 0), dtype=np.int64)

        def run(X, Y, lrs, orders=None):
            use_order = orders is not None and bsz < rows
            orders = np.ascontiguousarray(orders, dtype=np.int64) if use_order else in_order
            if contiguous:
                X, Y = _contiguous(X), _contiguous(Y)
            losses = _nans(len(lrs))
            kernel(X, Y, Ws, bs, acts, loss, lrs, bsz, orders, use_order, buf.Xb,
                   buf.Yb, As, Gs, dWs, dbs, losses, opt)
            return losses
        return self.validating(state, run)

    def all_finite(self, x):
        return bool(self.k.all_finite(x))

    def finite_copy(self, x, out):
        return self.k.finite_copy(x, out)  # (one pass; a bool)

    def all_finite_pair(self, x, y):
        return bool(self.k.all_finite_pair(x, y))  # (one kernel call)

    def gemm(self, a, b, out):
        """The blas path's gemm: np.dot inside a kernel (SciPy's BLAS, which need not be
        NumPy's build); without SciPy, NumPy's matmul, as the blas path then uses."""
        if not _blas_in_numba():
            return super().gemm(a, b, out)
        self.k.gemm_into(a, b, out)
        return out

    def _sweep_generated(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                         orders, update=None):
        """Full batch: blocks of configurations innermost in one generated kernel;
        mini-batch: the generated mini-batch loop per configuration. Either way the threads
        take the next block (configuration) while any is left (``_share_out``).
        Plain sgd only (``update`` None)."""
        if update is not None:
            raise ValueError(
                f"path: the numba backend's 'generated' path cannot train loss {loss!r} "
                f"with update {update.rule!r}" + (" and L2" if update.l2 else "")
                + " in a sweep (its sweep kernels train plain sgd only; the 'batched' "
                "sweep path trains every update)")
        if batch_size is not None:
            return self._train_many_minibatch(params, activations, loss, X, Y, lrs, factors,
                                              batch_size, orders)
        n = X.shape[0]
        sizes = ModelSpec.of(params, activations, loss).sizes
        from ._numba_codegen import from_blocks, kernel as generated, to_blocks
        dtype = params[0][0].dtype
        C, epochs = len(lrs), len(factors)
        block = _many_block(n, sizes, dtype.itemsize)
        train_block = generated("many", sizes, activations, loss, n, dtype.name, block)
        blocked = [a for W, b in params for a in (to_blocks(W, block), to_blocks(b, block))]
        rates = to_blocks(np.asarray(lrs, dtype=np.float64), block)
        nblk = rates.shape[0]
        losses = np.empty((nblk * block, epochs))  # every entry is written by the kernel
        per_block = losses.reshape(nblk, block, epochs)
        diverged = np.full((nblk, block), -1, dtype=np.int64)
        factors = np.ascontiguousarray(factors, dtype=np.float64)
        _share_out(nblk, lambda k: train_block(X, Y, *(a[k] for a in blocked), rates[k],
                                               factors, per_block[k], diverged[k]))
        for (W, b), Wb, bb in zip(params, blocked[::2], blocked[1::2]):
            np.copyto(W, from_blocks(Wb, C))
            np.copyto(b, from_blocks(bb, C))
        return losses[:C], from_blocks(diverged, C)

    def _sweep_each(self, params, activations, loss, X, Y, lrs, factors, batch_size, orders,
                    update=None):
        """Each configuration trained on its own by the compiled fit kernels (the "fused"
        or "blas" epochs path, as ``fit`` would plan it: every update rule, any batch
        size), the configurations spread over the cores by threads (the kernels release
        the GIL). A configuration whose loss turns non-finite is trained again by the
        reference steps, which freeze it before that update."""
        n, C, epochs = X.shape[0], len(lrs), len(factors)
        losses = np.full((C, epochs), np.nan)
        diverged = np.full(C, -1, dtype=np.int64)
        factors = np.asarray(factors, dtype=np.float64)
        X, Y = _contiguous(X), _contiguous(Y)

        def train(c):
            state = TrainState(self, [(W[c], b[c]) for W, b in params], activations, loss)
            if update is not None:
                state.set_optimizer(update.state(self, state.params))
            start = [(W.copy(), b.copy()) for W, b in state.params]
            path = ("fused" if _fused_wins(n if batch_size is None else batch_size,
                                           state.spec.weights) else "blas")
            with np.errstate(over="ignore", invalid="ignore"):
                got = getattr(self, "_epochs_" + path)(
                    state, X, Y, float(lrs[c]) * factors, batch_size,
                    None if orders is None else orders[c])
            if np.isfinite(got).all():
                losses[c] = got
                return
            for (W, b), (W0, b0) in zip(state.params, start):  # diverged: the exact steps
                np.copyto(W, W0)
                np.copyto(b, b0)
            with np.errstate(over="ignore", invalid="ignore"):
                self._train_one_of_many(params, activations, loss, X, Y, lrs, factors,
                                        n if batch_size is None else batch_size, orders, c,
                                        losses, diverged, update)
        _share_out(C, train)
        return losses, diverged

    # The engine's stacked sweeps (stacked.py: first layer one wide GEMM, later layers
    # batched GEMMs) with their elementwise steps as kernels. They are serial: BLAS's threads still
    # spin right after a GEMM, and prange threads next to them halve the speed.
    def stacked_output(self, Z, b, YT, activation, loss, values):
        if LOSS_MATH[loss].rowwise:
            return super().stacked_output(Z, b, YT, activation, loss, values)
        self.k.many_output(Z, b, YT, _act(activation), _loss(loss), values)

    def record_epoch(self, values, epoch, losses, diverged):
        self.k.many_bookkeeping(values, epoch, losses, diverged)

    def step_many(self, pairs, steps, diverged):
        for P, dP in pairs:
            self.k.many_step(P, dP, steps, diverged)

    def _train_many_minibatch(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                              orders):
        """Each configuration runs the generated mini-batch loop; the threads take the next
        configuration while any is left."""
        from ._numba_codegen import kernel as generated
        n = X.shape[0]
        C, epochs = len(lrs), len(factors)
        dtype = params[0][0].dtype
        sizes = ModelSpec.of(params, activations, loss).sizes
        train_one = generated("minibatch", sizes, activations, loss, n, dtype.name, batch_size)
        use_order = orders is not None
        orders = (np.ascontiguousarray(orders, dtype=np.int64) if use_order
                  else np.zeros((C, 1, 1), dtype=np.int64))
        losses = np.full((C, epochs), np.nan)
        diverged = np.full(C, -1, dtype=np.int64)
        arrays = [a for pair in params for a in pair]
        rates = np.ascontiguousarray(lrs, dtype=np.float64)
        factors = np.ascontiguousarray(factors, dtype=np.float64)

        def train(c):
            diverged[c] = train_one(X, Y, *(a[c] for a in arrays), rates[c], factors,
                                    orders[c], use_order, losses[c])
        _share_out(C, train)
        return losses, diverged


def _workers(items):
    """Threads for ``items`` pieces of work: numba's thread count for the calling thread
    (``numba.set_num_threads``), at most one per item."""
    import numba
    return max(1, min(numba.get_num_threads(), items))


def _share_out(count, run):
    """``run(i)`` for every i < count on ``_workers(count)`` threads, each taking the next
    i while any is left (``run`` calls a kernel that releases the GIL), so a thread slowed
    by another process on its core takes fewer items instead of holding the others up.
    Measured (``benchmarks/sweep_load.py``, OR-gate sweep, 1,024 nets, one of the two cores
    kept busy): README "Sweeps under load"."""
    workers = _workers(count)
    if workers == 1:
        for i in range(count):
            run(i)
        return
    list(_pool(workers, os.getpid()).map(run, range(count)))


@functools.lru_cache(maxsize=None)
def _pool(workers, pid):
    """A pool of ``workers`` threads kept for the process ``pid`` (a forked child, whose
    copy of the pool has no threads, gets its own): starting threads for every call
    costs a small sweep (256 OR-gate nets x 500 epochs, ~2.5 ms) about 0.2 ms."""
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(workers, thread_name_prefix="nnkit-sweep")


@functools.lru_cache(maxsize=None)
def _blas_in_numba():
    """True where numba can call BLAS from compiled code (np.dot in njit needs SciPy's
    BLAS bindings; SciPy is not a requirement of nnkit)."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        return False
    return True


def _fused_wins(rows, weights):
    """True where the fused loop kernels beat the "blas" path for batches of ``rows``."""
    return rows * weights <= (FUSED_MAX_WORK if _blas_in_numba() else LOOP_MAX_WORK)


def _contiguous(a):
    """``a`` as a C-contiguous array (itself when it is one): the kernels' np.dot calls
    BLAS without a copy only on contiguous operands."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


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


def _nans(k):
    """A float64 array of k NaNs (half the cost of np.full on tiny ones)."""
    out = np.empty(k)
    out.fill(np.nan)
    return out


def _float64s(x):
    """``x`` as a C-contiguous float64 array (no copy when it is one)."""
    return np.ascontiguousarray(x, dtype=np.float64)


def _fit_kernel(spec, n, val_rows=None):
    """The generated fit kernel of a state's ``spec`` (architecture, loss, update rule,
    L2) for batches of ``n`` rows (``val_rows``: computing the loss on that many validation
    rows after each epoch too). Its address table must come from the same optimizer state
    as ``spec`` (``_fit_state``: a runner takes both at once)."""
    from ._numba_codegen import kernel as generated
    return generated("fit", spec.sizes, spec.activations, spec.loss, n, spec.dtype, val_rows,
                     rule=spec.update, l2=spec.l2)


def _fit_state(state):
    """The generated fit kernel's state argument ``P`` (the addresses of its state
    arrays, ``_numba_codegen.fit_state_pointers``) and those arrays: every (W, b), the
    optimizer's slots its rule keeps (S1 per layer, then S2), hyper and t. They are
    updated in place, so both stay valid until the optimizer changes
    (``TrainState.set_optimizer`` clears the caches holding them); whatever calls the
    kernel with ``P`` must hold the arrays as long (a runner as its ``state_arrays``)."""
    from ._math import UPDATE_MATH
    from ._numba_codegen import fit_state_pointers
    opt, spec = state.opt, state.spec
    # laid out by the spec's rule, as the kernel is (``_fit_kernel``): an optimizer state
    # that is not the spec's raises in fit_state_pointers instead of misreading the table
    slots = (opt.s1, opt.s2)[:UPDATE_MATH[spec.update].slots]
    arrays = (*(a for pair in state.params for a in pair),
              *(a for pairs in slots for pair in pairs for a in pair), opt.hyper, opt.t)
    return fit_state_pointers(arrays, spec.sizes, spec.update, spec.dtype), arrays


def _slot_tuples(opt):
    """(S1W, S1b, S2W, S2b): an optimizer state's slots as tuples over layers."""
    return (tuple(a for a, _ in opt.s1), tuple(a for _, a in opt.s1),
            tuple(a for a, _ in opt.s2), tuple(a for _, a in opt.s2))


# The fused and BLAS kernels take each kind of per-layer array as a tuple, whose length
# is part of the kernel's type: numba compiles them once per length (5-10 s each). Tuples
# are padded with empty arrays to 2 or 4 layers, so that networks of 1 to 4 layers share
# two compilations per dtype (the kernels loop over len(acts) layers); each padding array
# costs ~75 ns a call to pass.
PADDED_DEPTHS = (2, 4)


def _padded_depth(layers):
    """The tuple length the kernels get for ``layers`` layers (``PADDED_DEPTHS``)."""
    return next((d for d in PADDED_DEPTHS if layers <= d), layers)


def _padded(arrays, depth):
    """``arrays`` as a tuple of ``depth`` arrays, the missing ones empty (same dtype and
    number of dimensions)."""
    arrays = tuple(arrays)
    pad = np.empty((0,) * arrays[0].ndim, dtype=arrays[0].dtype)
    return arrays + (pad,) * (depth - len(arrays))


def _many_block(n, sizes, itemsize):
    """Configurations per block: 64, fewer when a block's activations pass ~1 MiB."""
    per_config = 2 * n * sum(sizes[1:]) * itemsize
    block = 64
    while block > 8 and block * per_config > (1 << 20):
        block //= 2
    return block
