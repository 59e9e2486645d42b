"""The CuPy backend: the base class's code on ``cupy`` arrays, plus a few fused kernels.

Data and parameters stay on the GPU for the whole ``fit``; losses accumulate on the
device and are read once per block of epochs (base ``train_epochs``), so a step has
no ``.get()``/``float()``. cuBLAS does the matmuls (``xp.matmul(out=)``); the
elementwise work of a step is fused into ``ElementwiseKernel``s built once per
backend instance. Tiny networks (``TINY_ROWS``/``TINY_WEIGHTS``) skip all that: one
generated ``RawKernel`` (``_cuda_codegen``) runs a step, a whole full-batch fit, or a
whole sweep (one thread per configuration) in a single launch.

Status: the shared code is exercised by CPU CI through the NumPy backend, and the
generated kernels are compiled and checked as C++ on CPU; nothing here has yet run on a
GPU (``ci/gpu.sh`` is the prepared check).
"""
from __future__ import annotations

import numpy as np

from . import BackendUnavailableError
from ._math import ACTIVATION_CODES
from .base import Backend

_INSTALL_HINT = (
    "install the wheel matching your CUDA toolkit: `pip install 'nnkit[gpu]'` "
    "(cupy-cuda12x, CUDA 12.x), or `pip install cupy-cuda11x` (CUDA 11.x) / "
    "`pip install cupy-cuda13x` (CUDA 13.x). Selected by NNKIT_BACKEND=cupy "
    "(or auto) or backend='cupy'.")

_ACT_CODE = ACTIVATION_CODES

# Full-batch problems up to this size train inside one generated kernel per launch.
TINY_ROWS = 64
TINY_WEIGHTS = 1024
SWEEP_THREADS = 128


def is_cupy_array(x):
    """True for a cupy.ndarray, without importing cupy."""
    cls = type(x)
    return cls.__name__ == "ndarray" and cls.__module__.split(".")[0] == "cupy"


class CupyBackend(Backend):
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

    def sgd_update(self, params, grads, lr):
        sgd = self._kernel("nnkit_sgd")
        for (W, b), (dW, db) in zip(params, grads):
            sgd(dW, float(lr), W)
            sgd(db, float(lr), b)

    # ------------------------------------------------ tiny networks: one launch
    @staticmethod
    def _sizes(params):
        return [params[0][0].shape[-2]] + [W.shape[-1] for W, _ in params]

    def _tiny(self, sizes, n):
        return n <= TINY_ROWS and sum(a * b for a, b in zip(sizes, sizes[1:])) <= TINY_WEIGHTS

    def _raw(self, name, sizes, activations, loss, n, dtype):
        """The generated RawKernel ``name`` for this architecture, built once per backend
        (and compiled once per machine: CuPy caches compiled kernels on disk)."""
        key = (name, tuple(sizes), tuple(activations), loss, n, str(dtype))
        k = self._kernels.get(key)
        if k is None:
            from . import _cuda_codegen
            make = {"nnkit_fit": _cuda_codegen.fit_source,
                    "nnkit_sweep": _cuda_codegen.sweep_source}[name]
            source = make(list(sizes), tuple(activations), loss, n, str(dtype))
            k = self._kernels[key] = self.xp.RawKernel(source, name)
        return k

    def _fit_kernel(self, state, n):
        return self._raw("nnkit_fit", self._sizes(state.params), state.activations, state.loss,
                         n, state.dtype)

    def train_step(self, state, X, Y, lr):
        n = X.shape[0]
        if not (self._tiny(self._sizes(state.params), n) and X.flags.c_contiguous):
            return super().train_step(state, X, Y, lr)
        buf = state.buffers(n)
        if "raw_step" not in buf.cache:
            xp = self.xp
            buf.cache["raw_step"] = (self._fit_kernel(state, n), xp.zeros(1, dtype=xp.float64),
                            xp.zeros(1, dtype=xp.int32))
        kernel, loss, done = buf.cache["raw_step"]
        flat = [a for pair in state.params for a in pair]
        # A null lrs pointer (8 bytes) makes the kernel use lr_const.
        kernel((1,), (1,), (X, Y, *flat, np.uint64(0), np.float64(lr), np.int32(1), loss, done))
        return loss[0]  # a device scalar: no synchronisation

    def train_epochs(self, state, X, Y, lrs, batch_size=None, orders=None):
        n = X.shape[0]
        full = batch_size is None or batch_size >= n
        if not (full and self._tiny(self._sizes(state.params), n) and X.flags.c_contiguous):
            return super().train_epochs(state, X, Y, lrs, batch_size, orders)
        xp = self.xp
        losses = xp.full(len(lrs), np.nan, dtype=xp.float64)
        done = xp.zeros(1, dtype=xp.int32)
        flat = [a for pair in state.params for a in pair]
        self._fit_kernel(state, n)((1,), (1,), (
            X, Y, *flat, xp.asarray(lrs, dtype=xp.float64), np.float64(0), np.int32(len(lrs)),
            losses, done))
        return self.to_numpy(losses)

    def train_many(self, params, activations, loss, X, Y, lrs, factors, batch_size=None,
                   orders=None):
        n = X.shape[0]
        sizes = self._sizes(params)
        full = batch_size is None or batch_size >= n
        if not (full and self._tiny(sizes, n) and X.flags.c_contiguous):
            return super().train_many(params, activations, loss, X, Y, lrs, factors,
                                      batch_size, orders)
        xp = self.xp
        C, epochs = len(lrs), len(factors)
        kernel = self._raw("nnkit_sweep", sizes, activations, loss, n, params[0][0].dtype)
        losses = xp.full((C, epochs), np.nan, dtype=xp.float64)
        diverged = xp.full(C, -1, dtype=xp.int64)
        flat = [a for pair in params for a in pair]
        blocks = -(-C // SWEEP_THREADS)
        kernel((blocks,), (SWEEP_THREADS,), (
            X, Y, *flat, xp.asarray(lrs, dtype=xp.float64),
            xp.asarray(factors, dtype=xp.float64), np.int32(epochs), losses, diverged,
            np.int32(C)))
        return self.to_numpy(losses), self.to_numpy(diverged)
