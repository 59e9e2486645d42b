"""Which tiny networks the generated one-thread-per-network CUDA kernels
(``_cuda_codegen``) may train without spilling registers.

Such a kernel keeps one network's whole state in per-thread arrays that the compiler
fully unrolls into registers: per layer W (i*o), b (o), A and G (n*o each). X and Y are
read-only (``const __restrict__``) and the compiler may keep them in registers across
epochs too, so their n*(inputs + outputs) elements count: with them the footprint
separates spilling kernels from the rest far better than without. A thread has at most
255 32-bit registers (1020 bytes), part of which hold addresses, counters, temporaries.

Measured (ci/cuda_check.py's helpers, PTX for compute_80/90 assembled by ptxas for
sm_80/sm_90; fit and sweep kernels, both dtypes, 1-64 rows, 1-3 hidden layers of 1-16
units, inputs/outputs 1-16, every activation and loss): with NVRTC + ptxas 12.9, of 1010
kernels the smallest footprint that spilled was 936 B (a float32 2-8-8-2 sweep at 3 rows,
8 B on sm_90); none of the 730 below it spilled (236 of them at <= 640 B, up to 254
registers). Beyond ~1 KB most spill: 2-8-8-1 float64 at 4 rows (2024 B) spills 1.1-1.8 KB,
2-16-16-1 float32 at 64 rows (19 KB) has an 18.7 KB stack frame. NVRTC + ptxas 12.0 agree
(first spill at 976 B of 300 kernels between 600 and 1000 B). The bound is 640 B, about
two thirds of the first spill and 160 of the 255 registers.

Independently of this bound, some loops are not fully unrolled (the binary cross-entropy
loss loop once n*outputs >= 16; long loops at 16+ rows), so their arrays live in local
memory (a stack frame of a few hundred bytes, no spills). That costs speed, not
correctness, and is not what this module decides.
"""
from __future__ import annotations

# Per-thread bytes of arrays (see the module docstring) a generated kernel may hold.
RAW_KERNEL_BYTES = 640

_ITEMSIZE = {"float32": 4, "float64": 8}


def raw_kernel_footprint(sizes, n, dtype):
    """Bytes of per-thread state of a generated kernel for layer ``sizes`` and ``n`` rows:
    sum over layers of (i*o + o + 2*n*o) elements, plus n*(inputs + outputs) for X and
    Y, times the item size."""
    sizes = [int(s) for s in sizes]
    n = int(n)
    elems = sum(i * o + o + 2 * n * o for i, o in zip(sizes, sizes[1:]))
    elems += n * (sizes[0] + sizes[-1])
    return elems * _ITEMSIZE[str(dtype)]


def raw_kernel_fits(sizes, n, dtype):
    """True when a one-thread-per-network generated kernel (``fit_source`` or
    ``sweep_source``) for ``sizes`` and ``n`` rows of ``dtype`` stays within the
    registers on sm_80 and sm_90, with a margin (see ``RAW_KERNEL_BYTES``)."""
    if n < 1 or len(sizes) < 2 or min(sizes) < 1:
        return False
    return raw_kernel_footprint(sizes, n, dtype) <= RAW_KERNEL_BYTES
