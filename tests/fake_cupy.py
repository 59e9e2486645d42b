"""A stand-in for cupy on CPU, to run the cupy backend's Python code and its kernel
sources in CPU CI. Arrays are NumPy arrays of a subclass named ``cupy.ndarray``;
``ElementwiseKernel`` bodies and ``RawKernel`` sources are compiled as C++ with the host
compiler and run element by element / thread by thread. It checks logic and math, not
GPU behaviour (no streams, no synchronisation detection)."""
import ctypes
import hashlib
import os
import subprocess
import tempfile
import types

import numpy as np

CXX_PRELUDE = """#include <cmath>
#include <cstddef>
using std::exp; using std::fabs; using std::tanh; using std::log1p; using std::fmax;
using std::isfinite; using std::sqrt; using std::log;
#define __global__
#define __device__
struct nnkit_dim3 { unsigned x; };
static nnkit_dim3 blockIdx, threadIdx, blockDim;
extern "C" void nnkit_set_index(unsigned b, unsigned t, unsigned bd) {
    blockIdx.x = b; threadIdx.x = t; blockDim.x = bd;
}
"""
_BUILD = tempfile.mkdtemp(prefix="fake-cupy-")
_LIBS = {}


def _compile(source):
    key = hashlib.sha1(source.encode()).hexdigest()[:16]
    lib = _LIBS.get(key)
    if lib is None:
        src = os.path.join(_BUILD, f"{key}.cpp")
        out = os.path.join(_BUILD, f"{key}.so")
        with open(src, "w") as fh:
            fh.write(source)
        subprocess.run(["g++", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", out, src],
                       check=True, capture_output=True)
        lib = _LIBS[key] = ctypes.CDLL(out)
    return lib


class ndarray(np.ndarray):
    """cupy.ndarray stand-in: a NumPy array whose type says 'cupy'."""

    def get(self):
        return np.array(self).view(np.ndarray)


ndarray.__module__ = "cupy"


def _wrap(x):
    if isinstance(x, np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    return x


def asnumpy(x):
    return np.array(x).view(np.ndarray)


def _param_list(text):
    return [tuple(p.split()) for p in text.split(",")]


class ElementwiseKernel:
    """Runs the kernel body in C++ over flattened contiguous copies of the arguments."""

    def __init__(self, in_params, out_params, operation, name):
        self.ins, self.outs, self.op, self.name = (_param_list(in_params),
                                                   _param_list(out_params), operation, name)

    def _lib(self, ctype):
        sig, body = [], []
        for kind, name in self.ins:
            if kind == "T":
                sig.append(f"const T* {name}_p")
                body.append(f"const T {name} = {name}_p[i];")
            else:
                ct = {"int32": "int", "float64": "double"}[kind]
                sig.append(f"{ct} {name}")
        for kind, name in self.outs:
            sig.append(f"T* {name}_p")
            body.append(f"T& {name} = {name}_p[i];")
        src = (CXX_PRELUDE + f"typedef {ctype} T;\n"
               f'extern "C" void run(size_t n, {", ".join(sig)}) {{\n'
               f"  for (size_t i = 0; i < n; ++i) {{ {' '.join(body)} {self.op}; }}\n}}\n")
        return _compile(src).run

    def __call__(self, *args):
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        dtype = arrays[0].dtype
        run = self._lib("float" if dtype == np.float32 else "double")
        cargs, outs = [], []
        params = self.ins + self.outs
        for (kind, _), a in zip(params, args):
            if kind == "T":
                buf = np.ascontiguousarray(a, dtype=dtype)
                cargs.append(ctypes.c_void_p(buf.ctypes.data))
                outs.append((a, buf))
            elif kind == "int32":
                cargs.append(ctypes.c_int(int(a)))
            else:
                cargs.append(ctypes.c_double(float(a)))
        run(ctypes.c_size_t(arrays[0].size), *cargs)
        results = []
        for a, buf in outs[-len(self.outs):]:
            if buf is not a:
                a[...] = buf.reshape(a.shape)
            results.append(a)
        return results[0] if len(results) == 1 else tuple(results)


class RawKernel:
    """Compiles the CUDA source as C++ and runs every (block, thread) in turn."""

    def __init__(self, source, name):
        self.lib = _compile(CXX_PRELUDE + source)
        self.fn = getattr(self.lib, name)

    def __call__(self, grid, block, args):
        cargs = []
        for a in args:
            if isinstance(a, np.ndarray) and a.ndim > 0:
                assert a.flags.c_contiguous, "RawKernel arguments must be contiguous"
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.floating):
                cargs.append(ctypes.c_double(float(a)))
            elif isinstance(a, np.uint64):
                cargs.append(ctypes.c_void_p(int(a) or None))
            elif isinstance(a, np.integer):
                cargs.append(ctypes.c_int(int(a)))
            else:
                raise TypeError(f"unsupported kernel argument {type(a).__name__}")
        for b in range(grid[0]):
            for t in range(block[0]):
                self.lib.nnkit_set_index(b, t, block[0])
                self.fn(*cargs)


def _numpy_function(name):
    f = getattr(np, name)
    if isinstance(f, type) or not callable(f):
        return f
    return lambda *a, **k: _wrap(f(*a, **k))


def make_module():
    """A module object that can stand in for ``cupy`` in ``sys.modules``."""
    mod = types.ModuleType("cupy")
    mod.__version__ = "0.0-fake"
    mod.ndarray = ndarray
    mod.asnumpy = asnumpy
    mod.ElementwiseKernel = ElementwiseKernel
    mod.RawKernel = RawKernel
    mod.asarray = lambda a, dtype=None: _wrap(np.asarray(a, dtype=dtype)).copy() \
        if not isinstance(a, ndarray) else _wrap(np.asarray(a, dtype=dtype))
    mod.__getattr__ = _numpy_function  # everything else: NumPy's, returning fake arrays
    stream = types.SimpleNamespace(synchronize=lambda: None)
    device = types.SimpleNamespace(id=0)
    mod.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1,
                                      getDeviceProperties=lambda i: {"name": b"fake GPU"},
                                      runtimeGetVersion=lambda: 0),
        Device=lambda *a: device, get_current_stream=lambda: stream)
    return mod


def compiler_available():
    from shutil import which
    return which("g++") is not None
