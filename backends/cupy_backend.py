"""The CuPy backend: the base class's code on ``cupy`` arrays, plus a few fused kernels.

Data and parameters stay on the GPU for the whole ``fit``; losses accumulate on the
device and are read once per block of epochs (base ``train_epochs``), so a step has
no ``.get()``/``float()``. cuBLAS does the matmuls (``xp.matmul(out=)``); the
elementwise work of a step is fused into ``ElementwiseKernel``s built once per
backend instance (path ``"cublas"``): activations, one update kernel per rule of the
math table (sgd, momentum, Nesterov, Adam; L2 fused into the weights' launch; step count
and bias corrections computed on the host), and a one-thread-per-row RawKernel for
softmax cross-entropy's loss and gradient. Tiny networks (path ``"generated"``, those whose
state fits a thread's registers: ``_cuda_limits.raw_kernel_fits``) skip all that: one
generated ``RawKernel`` (``_cuda_codegen``) runs a step, a whole full-batch fit, or a
whole sweep (one thread per configuration) in a single launch; they train plain sgd on
elementwise losses only (``supports``), the rest goes to cuBLAS. Other sweeps run the
engine of ``stacked.py`` (paths ``"stacked"`` and ``"batched"``).

CPU CI runs this code through a cupy stand-in (tests/fake_cupy.py) and compiles every
CUDA source with NVRTC (ci/cuda_check.py); ``ci/gpu.sh`` is the check on a real GPU
(passed on an H200, 2026-11-26).
"""
from __future__ import annotations

import numpy as np

from . import BackendUnavailableError
from ._cuda_limits import raw_kernel_fits
from ._math import ACTIVATION_CODES, LOSS_MATH, UPDATE_MATH
from .base import CALLS, Backend, ModelSpec
from .stacked import StackedSweeps

_INSTALL_HINT = (
    "install the wheel matching your CUDA toolkit: `pip install 'nnkit[gpu]'` "
    "(cupy-cuda12x, CUDA 12.x), or `pip install cupy-cuda11x` (CUDA 11.x) / "
    "`pip install cupy-cuda13x` (CUDA 13.x). Selected by NNKIT_BACKEND=cupy "
    "(or auto) or backend='cupy'.")

_ACT_CODE = ACTIVATION_CODES

SWEEP_THREADS = 128
ROW_THREADS = 128  # threads per block of the rowwise-loss kernel (a row each)


def is_cupy_array(x):
    """True for a cupy.ndarray, without importing cupy."""
    cls = type(x)
    return cls.__name__ == "ndarray" and cls.__module__.split(".")[0] == "cupy"


class CupyBackend(StackedSweeps, Backend):
    name = "cupy"

    @classmethod
    def check(cls):
        try:
            import cupy
        except ImportError as exc:
            raise BackendUnavailableError(f"cupy is not installed ({exc}); " + _INSTALL_HINT) \
                from exc
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise RuntimeError("cudaGetDeviceCount returned 0")
            # A real allocation and kernel launch: importing cupy proves nothing.
            float((cupy.arange(4, dtype=cupy.float32) * 2).sum().get())
        except Exception as exc:
            raise BackendUnavailableError(
                f"cupy {cupy.__version__} is installed but no CUDA device is usable: "
                f"{type(exc).__name__}: {exc}. Selected by NNKIT_BACKEND=cupy or "
                "backend='cupy'.") from exc

    def __init__(self):
        super().__init__()
        import cupy
        self.xp = cupy
        self._kernels = {}

    def versions(self):
        import cupy
        return {"cupy": cupy.__version__,
                "cuda runtime": str(cupy.cuda.runtime.runtimeGetVersion())}

    def device(self):
        import cupy
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        return f"cuda:{dev.id} {name.decode() if isinstance(name, bytes) else name}"

    def is_own_array(self, x):
        return is_cupy_array(x)

    def to_numpy(self, x):
        if is_cupy_array(x):
            return self.xp.asnumpy(x)
        return np.asarray(x)

    def synchronize(self):
        """Wait for the device; benchmarks call this before reading a clock."""
        self.xp.cuda.get_current_stream().synchronize()

    # ------------------------------------------------------- fused kernels
    def _kernel(self, name):
        """The ElementwiseKernel ``name`` (``_cuda_codegen.elementwise_kernels``), built
        once per backend instance."""
        k = self._kernels.get(name)
        if k is None:
            from ._cuda_codegen import elementwise_kernels
            for kname, in_params, out_params, operation in elementwise_kernels():
                if kname == name:
                    k = self.xp.ElementwiseKernel(in_params, out_params, operation, kname)
                    break
            else:
                raise KeyError(name)
            self._kernels[name] = k
        return k

    def dense_forward(self, X, W, b, activation, out=None):
        # The bias in one kernel, the activation in one more (the base class's
        # ufunc formulation of a biased sigmoid would launch four).
        out = self.xp.matmul(X, W, out=out)
        out += b
        return self.activation_forward(out, activation, out=out)

    def activation_forward(self, Z, activation, out=None):
        if activation not in _ACT_CODE:
            return super().activation_forward(Z, activation, out)
        if out is None:
            out = self.xp.empty_like(Z)
        return self._kernel("nnkit_act")(Z, _ACT_CODE[activation], out)

    def activation_backward(self, dA, A, activation, out=None):
        if activation not in _ACT_CODE:
            return super().activation_backward(dA, A, activation, out)
        if out is None:
            out = self.xp.empty_like(A)
        return self._kernel("nnkit_act_backward")(dA, A, _ACT_CODE[activation], out)

    # ------------------------------------------------ rowwise losses (softmax CE)
    def _rowwise(self, Yhat, Y, kind):
        """The rowwise-loss RawKernel for (Yhat, Y), or None where the base class's
        array code runs instead (an elementwise loss, other shapes or layouts)."""
        if (kind not in LOSS_MATH or not LOSS_MATH[kind].rowwise or Yhat.ndim != 2
                or Y.shape != Yhat.shape or Y.dtype != Yhat.dtype
                or not (Yhat.flags.c_contiguous and Y.flags.c_contiguous)):
            return None
        key = ("nnkit_rowwise_loss", kind, Yhat.dtype.name)
        k = self._kernels.get(key)
        if k is None:
            from ._cuda_codegen import rowwise_loss_source
            k = self._kernels[key] = self.xp.RawKernel(
                rowwise_loss_source(kind, Yhat.dtype.name), "nnkit_rowwise_loss")
        return k

    def _launch_rowwise(self, kernel, Yhat, Y, terms, G):
        n, k = Yhat.shape
        null = np.uint64(0)
        kernel((-(-n // ROW_THREADS),), (ROW_THREADS,),
               (Yhat, Y, null if terms is None else terms, null if G is None else G,
                np.int32(n), np.int32(k)))

    def loss(self, Yhat, Y, kind, out=None):
        kernel = self._rowwise(Yhat, Y, kind)
        if kernel is None:
            return super().loss(Yhat, Y, kind, out)
        n = Yhat.shape[0]
        terms = self._scratch((n,), np.float64)
        self._launch_rowwise(kernel, Yhat, Y, terms, None)  # one launch + one reduction
        return self.loss_parts(kind)[1](self.xp.sum(terms), n)  # the table's mean

    def loss_grad(self, Yhat, Y, kind, out=None):
        kernel = self._rowwise(Yhat, Y, kind)
        if kernel is None or (out is not None and not (
                out.flags.c_contiguous and out.shape == Yhat.shape
                and out.dtype == Yhat.dtype)):
            return super().loss_grad(Yhat, Y, kind, out)
        if out is None:
            out = self.xp.empty_like(Yhat)
        self._launch_rowwise(kernel, Yhat, Y, None, out)
        return out

    def sgd_update(self, params, grads, lr):
        sgd = self._kernel("nnkit_sgd")
        for (W, b), (dW, db) in zip(params, grads):
            sgd(dW, float(lr), W)
            sgd(db, float(lr), b)

    def apply_update(self, params, grads, opt, lr):
        """The table's update rule as one ElementwiseKernel per parameter
        (``_cuda_codegen.update_kernel``: L2 fused into the weights' launch, biases with
        l2 = 0), its scalars from the host (t, hyperparameters, Adam's bias corrections:
        no synchronisation); the L2 term is a device reduction. Stacked sweeps (per-
        configuration rates, 3-D parameters) keep the base class's array code."""
        if opt.plain or not np.isscalar(lr) or any(W.ndim != 2 for W, _ in params):
            return super().apply_update(params, grads, opt, lr)
        from ._cuda_codegen import update_scalars
        l2 = opt.l2
        penalty = self.l2_penalty(params, l2)
        values = {"lr": float(lr), **opt.advance()}
        scalars = [values[s] for s in update_scalars(opt.rule)]
        kernel = self._kernel("nnkit_update_" + opt.rule)
        k = UPDATE_MATH[opt.rule].slots  # the kernel's slot outputs
        for (W, b), (dW, db), s1, s2 in zip(params, grads, opt.s1, opt.s2):
            kernel(dW, l2, *scalars, W, *(s1[0], s2[0])[:k])
            kernel(db, 0.0, *scalars, b, *(s1[1], s2[1])[:k])
        return penalty

    def l2_penalty(self, params, l2):
        """(l2/2) sum ||W||^2 on the device: one dot product per weight matrix (the base
        class's code for stacked parameters)."""
        if not l2 or any(W.ndim != 2 for W, _ in params):
            return super().l2_penalty(params, l2)
        xp = self.xp
        total = None
        for W, _ in params:
            sq = xp.vdot(W, W)
            total = sq if total is None else total + sq
        return total * (0.5 * l2)

    # ------------------------------------------------------------------ paths
    paths = {"generated": CALLS, "cublas": ("step", "epochs"), **StackedSweeps.sweep_paths}

    def supports(self, path, spec):
        if path == "generated":  # the generated kernels train plain sgd, elementwise losses
            return spec.plain and not spec.rowwise
        return super().supports(path, spec)

    def choose_path(self, call, spec, rows, batch_size, configs, epochs):
        """generated: networks whose one-thread kernel stays in registers
        (``_cuda_limits.raw_kernel_fits``), full batches (a step is one batch), plain
        sgd and an elementwise loss; else cuBLAS + ElementwiseKernels (any update rule,
        L2, softmax cross-entropy), and the sweep engine's paths."""
        full = batch_size is None or call == "step"
        if (full and self.supports("generated", spec)
                and raw_kernel_fits(spec.sizes, rows, spec.dtype)):
            return "generated"
        return self.sweep_path(batch_size, spec) if call == "sweep" else "cublas"

    _step_cublas = Backend._step_reference
    _epochs_cublas = Backend._epochs_reference

    def _raw(self, name, spec, n):
        """The generated RawKernel ``name`` for this architecture, built once per backend
        (and compiled once per machine: CuPy caches compiled kernels on disk)."""
        key = (name, spec, n)
        k = self._kernels.get(key)
        if k is None:
            from . import _cuda_codegen
            make = {"nnkit_fit": _cuda_codegen.fit_source,
                    "nnkit_sweep": _cuda_codegen.sweep_source}[name]
            source = make(list(spec.sizes), spec.activations, spec.loss, n, spec.dtype)
            k = self._kernels[key] = self.xp.RawKernel(source, name)
        return k

    def _step_generated(self, state, X, Y, lr):
        buf = state.buffers(X.shape[0])
        if "raw_step" not in buf.cache:
            xp = self.xp
            buf.cache["raw_step"] = (self._raw("nnkit_fit", state.spec, X.shape[0]),
                                     xp.zeros(1, dtype=xp.float64), xp.zeros(1, dtype=xp.int32))
        kernel, loss, done = buf.cache["raw_step"]
        flat = [a for pair in state.params for a in pair]
        # A null lrs pointer (8 bytes) makes the kernel use lr_const.
        kernel((1,), (1,), (X, Y, *flat, np.uint64(0), np.float64(lr), np.int32(1), loss, done))
        return loss[0]  # a device scalar: no synchronisation

    def _epochs_generated(self, state, X, Y, lrs, batch_size, orders):
        if batch_size is not None:
            raise ValueError("the generated epochs path trains full batches only")
        xp = self.xp
        losses = xp.full(len(lrs), np.nan, dtype=xp.float64)
        done = xp.zeros(1, dtype=xp.int32)
        flat = [a for pair in state.params for a in pair]
        self._raw("nnkit_fit", state.spec, X.shape[0])((1,), (1,), (
            X, Y, *flat, xp.asarray(lrs, dtype=xp.float64), np.float64(0), np.int32(len(lrs)),
            losses, done))
        return self.to_numpy(losses)

    def _sweep_generated(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                         orders, update=None):
        if batch_size is not None:
            raise ValueError("the generated sweep path trains full batches only")
        xp = self.xp
        C, epochs = len(lrs), len(factors)
        kernel = self._raw("nnkit_sweep", ModelSpec.of(params, activations, loss), X.shape[0])
        losses = xp.full((C, epochs), np.nan, dtype=xp.float64)
        diverged = xp.full(C, -1, dtype=xp.int64)
        flat = [a for pair in params for a in pair]
        blocks = -(-C // SWEEP_THREADS)
        kernel((blocks,), (SWEEP_THREADS,), (
            X, Y, *flat, xp.asarray(lrs, dtype=xp.float64),
            xp.asarray(factors, dtype=xp.float64), np.int32(epochs), losses, diverged,
            np.int32(C)))
        return self.to_numpy(losses), self.to_numpy(diverged)
