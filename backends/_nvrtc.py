"""Compile CUDA C with NVIDIA's NVRTC (through ctypes) and read ptxas's resource report,
without a GPU and without cupy: the helpers behind ``ci/cuda_check.py``.

NVRTC comes from the ``nvidia-cuda-nvrtc-cu12`` wheel (``nvidia/cuda_nvrtc/lib``) or the
system; ``ptxas`` from the ``nvidia-cuda-nvcc-cu12`` wheel (``nvidia/cuda_nvcc/bin``) or
PATH. Nothing in nnkit imports this module: only the CUDA check and its test do.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile


class NVRTCError(RuntimeError):
    """NVRTC missing, or a source that does not compile (the message holds the log)."""


def _wheel_dir(package, sub):
    """``site-packages/nvidia/<package>/<sub>`` of an installed NVIDIA wheel, or None."""
    try:
        spec = importlib.util.find_spec(f"nvidia.{package}")
    except (ImportError, ValueError):
        return None
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = os.path.join(root, sub)
        if os.path.isdir(path):
            return path
    return None


def find_nvrtc():
    """Path of libnvrtc: the pip wheel's first, else the system's; None if neither."""
    lib = _wheel_dir("cuda_nvrtc", "lib")
    if lib:
        # libnvrtc.so.12 (not the .alt variant, nor libnvrtc-builtins).
        hits = sorted(glob.glob(os.path.join(lib, "libnvrtc.so.*")))
        if hits:
            return hits[0]
    return ctypes.util.find_library("nvrtc")


def find_ptxas():
    """Path of ptxas: the ``nvidia-cuda-nvcc-cu12`` wheel's, else PATH's; None if neither."""
    bin_dir = _wheel_dir("cuda_nvcc", "bin")
    if bin_dir and os.access(os.path.join(bin_dir, "ptxas"), os.X_OK):
        return os.path.join(bin_dir, "ptxas")
    return shutil.which("ptxas")


_lib = None


def _nvrtc():
    """The loaded NVRTC library (once per process)."""
    global _lib
    if _lib is None:
        path = find_nvrtc()
        if path is None:
            raise NVRTCError("libnvrtc not found: pip install 'nvidia-cuda-nvrtc-cu12==12.*'")
        lib = ctypes.CDLL(path)
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
        lib.nvrtcCreateProgram.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcCompileProgram.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        for fn in ("nvrtcGetProgramLogSize", "nvrtcGetPTXSize"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        for fn in ("nvrtcGetProgramLog", "nvrtcGetPTX"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        _lib = lib
    return _lib


def _check(status, what):
    if status != 0:
        msg = _nvrtc().nvrtcGetErrorString(status).decode()
        raise NVRTCError(f"{what}: {msg}")


def available():
    """True when libnvrtc can be loaded here."""
    try:
        _nvrtc()
    except (NVRTCError, OSError):
        return False
    return True


def version():
    """NVRTC's version as ``"12.9"``."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(_nvrtc().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return f"{major.value}.{minor.value}"


def compile_ptx(source, arch, name="kernel.cu", options=()):
    """PTX text of ``source`` compiled for ``arch`` (e.g. ``"compute_80"``); raises
    NVRTCError with NVRTC's log when it does not compile."""
    lib = _nvrtc()
    prog = ctypes.c_void_p()
    _check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0,
                                  None, None), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}", *options]
        argv = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        _check(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
        if status != 0:
            err = lib.nvrtcGetErrorString(status).decode()
            raise NVRTCError(f"{name} ({arch}): {err}\n{log.value.decode(errors='replace')}")
        _check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode()
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def ptxas_usage(ptx, sm, ptxas=None):
    """Assemble ``ptx`` for ``sm`` (e.g. ``"sm_80"``) with ``ptxas -v``; returns
    ``{"registers", "stack", "spill_stores", "spill_loads"}`` (bytes per thread) for the
    one entry function in it. Raises NVRTCError when ptxas fails."""
    ptxas = ptxas or find_ptxas()
    if ptxas is None:
        raise NVRTCError("ptxas not found: pip install 'nvidia-cuda-nvcc-cu12==12.*'")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        run = subprocess.run([ptxas, "-v", f"--gpu-name={sm}", "-o", os.path.join(tmp, "k.cubin"),
                              src], capture_output=True, text=True)
    report = run.stdout + run.stderr
    if run.returncode != 0:
        raise NVRTCError(f"ptxas {sm} failed:\n{report}")
    stack, regs = _STACK.search(report), _REGS.search(report)
    if stack is None or regs is None:
        raise NVRTCError(f"cannot parse ptxas -v output:\n{report}")
    return {"registers": int(regs.group(1)), "stack": int(stack.group(1)),
            "spill_stores": int(stack.group(2)), "spill_loads": int(stack.group(3))}


# ----------------------------------------------------------- ElementwiseKernel sources
_CTYPES = {"float32": "float", "float64": "double", "float16": "half", "int8": "signed char",
           "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
           "uint32": "unsigned int", "uint64": "unsigned long long", "bool": "bool"}


def _parse_params(spec):
    """``"T z, int32 act"`` -> ``[("T", "z", False), ("int", "act", True)]``
    (type, name, scalar); a one-letter type is a placeholder, thus an array."""
    out = []
    for p in spec.split(","):
        words = p.split()
        if not words:
            continue
        if len(words) != 2:
            raise ValueError(f"unsupported ElementwiseKernel parameter {p!r} (raw/_non_const?)")
        t, name = words
        if len(t) == 1:
            out.append((t, name, False))
        else:
            out.append((_CTYPES[t], name, True))
    return out


def elementwise_source(name, in_params, out_params, operation, dtype):
    """The CUDA source CuPy would compile for ``ElementwiseKernel(in_params, out_params,
    operation, name)`` called on contiguous ``dtype`` arrays (modelled on cupy's
    ``_get_simple_elementwise_kernel_code``): type placeholders are typedef'd, array
    parameters become pointers bound by reference to element ``i`` (inputs const),
    scalar parameters are passed by value, and a grid-stride loop runs ``operation``."""
    ctype = _CTYPES[dtype]
    ins, outs = _parse_params(in_params), _parse_params(out_params)
    placeholders = sorted({t for t, _, scalar in ins + outs if not scalar})
    args, binds = [], []
    for (t, pname, scalar), is_in in [(p, True) for p in ins] + [(p, False) for p in outs]:
        const = "const " if is_in else ""
        if scalar:
            args.append(f"{const}{t} {pname}")
        else:
            args.append(f"{const}{t}* __restrict__ _raw_{pname}")
            binds.append(f"{const}{t} &{pname} = _raw_{pname}[i];")
    args.append("const long long _n")
    lines = [f"typedef {ctype} {t};" for t in placeholders]
    lines += [f'extern "C" __global__ void {name}({", ".join(args)}) {{',
              "  #pragma unroll 1",
              "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < _n;",
              "       i += (long long)blockDim.x * gridDim.x) {",
              *[f"    {b}" for b in binds],
              f"    {operation};",
              "  }",
              "}"]
    return "\n".join(lines) + "\n"
