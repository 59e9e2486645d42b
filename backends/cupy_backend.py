"""The CuPy backend: the base class's code on ``cupy`` arrays, plus a few fused kernels.

Data and parameters stay on the GPU for the whole ``fit``; losses accumulate on the
device and are read once per block of epochs (base ``train_epochs``), so a step has
no ``.get()``/``float()``. cuBLAS does the matmuls (``xp.matmul(out=)``); the
elementwise work of a step is fused into ``ElementwiseKernel``s built once per
backend instance. Status: written for and parity-tested on CPU through the shared
base class only; GPU runs are done by ``ci/gpu.sh`` where a GPU is lent.
"""
from __future__ import annotations

import numpy as np

from . import BackendUnavailableError
from .base import Backend

_INSTALL_HINT = (
    "install the wheel matching your CUDA toolkit: `pip install 'nnkit[gpu]'` "
    "(cupy-cuda12x, CUDA 12.x), or `pip install cupy-cuda11x` (CUDA 11.x) / "
    "`pip install cupy-cuda13x` (CUDA 13.x). Selected by NNKIT_BACKEND=cupy "
    "(or auto) or backend='cupy'.")

_ACT_CODE = {"linear": 0, "sigmoid": 1, "tanh": 2, "relu": 3}


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
        """ElementwiseKernels, each built once and cached on the instance."""
        k = self._kernels.get(name)
        if k is not None:
            return k
        ew = self.xp.ElementwiseKernel
        if name == "act":
            k = ew("T z, int32 act", "T a", """
                if (act == 1) {  // sigmoid, branch so exp never overflows
                    if (z >= 0) { a = 1 / (1 + exp(-z)); } else { T e = exp(z); a = e / (1 + e); }
                } else if (act == 2) { a = tanh(z); }
                else if (act == 3) { a = z > 0 ? z : (T)0; }
                else { a = z; }""", "nnkit_act")
        elif name == "act_backward":
            k = ew("T dA, T a, int32 act", "T dZ", """
                if (act == 1) { dZ = (a - a * a) * dA; }
                else if (act == 2) { dZ = (1 - a * a) * dA; }
                else if (act == 3) { dZ = a > 0 ? dA : (T)0; }
                else { dZ = dA; }""", "nnkit_act_backward")
        elif name == "sgd":
            k = ew("T g, float64 lr", "T p", "p -= (T)lr * g", "nnkit_sgd")
        else:
            raise KeyError(name)
        self._kernels[name] = k
        return k

    def activation_forward(self, Z, activation, out=None):
        if activation not in _ACT_CODE:
            return super().activation_forward(Z, activation, out)
        if out is None:
            out = self.xp.empty_like(Z)
        return self._kernel("act")(Z, _ACT_CODE[activation], out)

    def activation_backward(self, dA, A, activation, out=None):
        if activation not in _ACT_CODE:
            return super().activation_backward(dA, A, activation, out)
        if out is None:
            out = self.xp.empty_like(A)
        return self._kernel("act_backward")(dA, A, _ACT_CODE[activation], out)

    def sgd_update(self, params, grads, lr):
        sgd = self._kernel("sgd")
        for (W, b), (dW, db) in zip(params, grads):
            sgd(dW, float(lr), W)
            sgd(db, float(lr), b)
