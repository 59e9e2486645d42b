"""Compile every CUDA source the cupy backend can emit with NVIDIA's NVRTC, without a GPU.

Sources: the generated RawKernels (``_cuda_codegen.fit_source``/``sweep_source``) for a
representative set of architectures, activations, losses, dtypes and row counts
(including sizes on both sides of ``_cuda_limits.raw_kernel_fits``), and every
ElementwiseKernel wrapped as CuPy wraps it (one update kernel per rule of the math
table among them), and the rowwise-loss RawKernel of every rowwise loss (softmax
cross-entropy), counted with the ElementwiseKernels. Each is compiled to PTX for
compute_80 and compute_90, and where ptxas is found (the nvidia-cuda-nvcc-cu12 wheel)
assembled for sm_80/sm_90 with ``-v`` to read registers, stack frame and spills.

Fails (exit 1) on any compile error, and on any spill in an ElementwiseKernel or in a
RawKernel that ``raw_kernel_fits`` admits (the only ones the backend launches).
Run after ``pip install -e .`` (``ci/cuda_check.sh`` installs the NVIDIA wheels).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from nnkit.backends import _cuda_codegen, _cuda_limits, _math, _nvrtc

SMS = ("80", "90")
ACTS = ("sigmoid", "tanh", "relu", "linear")
LOSSES = ("squared_error", "mse", "binary_crossentropy")  # the generated kernels' losses
ROWWISE_LOSSES = tuple(k for k, v in _math.LOSS_MATH.items() if v.rowwise)
DTYPES = ("float32", "float64")
KINDS = ("fit", "sweep")

# Every activation x loss x dtype x kind, on a one-hidden-layer and a deeper multi-output net.
MATH_ARCHS = (([2, 2, 1], 4), ([2, 3, 3, 2], 2))
# Capacity: each at the most rows raw_kernel_fits admits and at more rows than that.
CAPACITY_ARCHS = ([2, 1], [2, 2, 1], [2, 4, 1], [2, 8, 1], [2, 16, 1], [4, 8, 8, 1],
                  [8, 4, 4, 2], [2, 16, 16, 1], [64, 8, 10])
# Known to spill (measured): never launched, compiled to keep them compiling.
KNOWN_SPILLS = (("fit", [2, 8, 8, 1], 4, "float64"), ("fit", [2, 16, 16, 1], 64, "float32"))

def kernel_acts(sizes, hidden, loss, k=0):
    """Kernel activations for ``sizes``: hidden layers cycle from ``hidden``; the output
    is linear for binary cross-entropy (the kernel applies the sigmoid in the loss)."""
    L = len(sizes) - 1
    start = ACTS.index(hidden)
    acts = [ACTS[(start + l + k) % len(ACTS)] for l in range(L - 1)]
    return tuple(acts + ["linear" if loss == "binary_crossentropy" else hidden])


def max_fitting_rows(sizes, dtype, limit=64):
    """The most rows (up to ``limit``) ``raw_kernel_fits`` admits, 0 if none."""
    n = 0
    while n < limit and _cuda_limits.raw_kernel_fits(sizes, n + 1, dtype):
        n += 1
    return n


def raw_specs():
    """(kind, sizes, acts, loss, n, dtype) of every generated RawKernel to compile."""
    specs = []
    for sizes, n in MATH_ARCHS:
        for hidden in ACTS:
            for loss in LOSSES:
                for dtype in DTYPES:
                    for kind in KINDS:
                        specs.append((kind, sizes, kernel_acts(sizes, hidden, loss), loss, n,
                                      dtype))
    # Heavy math (tanh, sigmoid, the cross-entropy's log1p/exp) where registers are tight.
    combos = [("tanh", "binary_crossentropy"), ("sigmoid", "squared_error"),
              ("relu", "mse"), ("tanh", "squared_error")]
    for a, sizes in enumerate(CAPACITY_ARCHS):
        for d, dtype in enumerate(DTYPES):
            n_max = max_fitting_rows(sizes, dtype)
            for r, n in enumerate(sorted({n_max, 2 * n_max + 1, 1} - {0})):
                for k, kind in enumerate(KINDS):
                    hidden, loss = combos[(a + d + r + k) % len(combos)]
                    specs.append((kind, sizes, kernel_acts(sizes, hidden, loss, k), loss, n,
                                  dtype))
    for kind, sizes, n, dtype in KNOWN_SPILLS:
        specs.append((kind, sizes, kernel_acts(sizes, "sigmoid", "squared_error"),
                      "squared_error", n, dtype))
    return specs


def jobs():
    """Unique sources to compile: dicts with the source, a label and, for RawKernels,
    the footprint and whether ``raw_kernel_fits`` admits it."""
    out, seen = [], set()
    for kind, sizes, acts, loss, n, dtype in raw_specs():
        make = _cuda_codegen.fit_source if kind == "fit" else _cuda_codegen.sweep_source
        source = make(list(sizes), acts, loss, n, dtype)
        if source in seen:
            continue
        seen.add(source)
        out.append({"kind": kind, "source": source, "sizes": list(sizes), "n": n,
                    "dtype": dtype, "label": f"{kind} {'-'.join(map(str, sizes))} n={n} "
                    f"{dtype} {'/'.join(acts)} {loss}",
                    "fits": _cuda_limits.raw_kernel_fits(sizes, n, dtype),
                    "footprint": _cuda_limits.raw_kernel_footprint(sizes, n, dtype)})
    for name, in_params, out_params, operation in _cuda_codegen.elementwise_kernels():
        for dtype in DTYPES:
            source = _nvrtc.elementwise_source(name, in_params, out_params, operation, dtype)
            out.append({"kind": "elementwise", "source": source, "dtype": dtype,
                        "label": f"elementwise {name} {dtype}", "fits": True, "footprint": 0})
    # The cublas path's fused kernels that are RawKernels: a rowwise loss per dtype.
    for loss in ROWWISE_LOSSES:
        for dtype in DTYPES:
            out.append({"kind": "elementwise", "source": _cuda_codegen.rowwise_loss_source(
                loss, dtype), "dtype": dtype, "label": f"rowwise nnkit_rowwise_loss[{loss}] "
                f"{dtype}", "fits": True, "footprint": 0})
    return out


def compile_one(job, ptxas):
    """Compile ``job`` for every SM; returns {sm: usage dict or None} or {"error": text}."""
    out = {}
    for sm in SMS:
        try:
            ptx = _nvrtc.compile_ptx(job["source"], f"compute_{sm}", name=job["label"])
            out[sm] = _nvrtc.ptxas_usage(ptx, f"sm_{sm}", ptxas) if ptxas else None
        except _nvrtc.NVRTCError as exc:
            return {"error": f"sm_{sm}: {exc}"}
    return out


def ptxas_version(ptxas):
    """``"12.9"`` from ``ptxas --version`` ("... release 12.9, V12.9.86")."""
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"release (\d+\.\d+)", out)
    return found.group(1) if found else "?"


def spilled(u):
    return u["spill_stores"] + u["spill_loads"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per source")
    args = parser.parse_args(argv)
    if not _nvrtc.available():
        print("cuda_check: NVRTC not found: pip install 'nvidia-cuda-nvrtc-cu12==12.*'",
              file=sys.stderr)
        return 1
    ptxas = _nvrtc.find_ptxas()
    todo = jobs()
    # Biggest first, so the pool's two workers finish together.
    todo.sort(key=lambda j: -len(j["source"]) * (1 + j.get("n", 1)))
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(compile_one, todo, [ptxas] * len(todo)))
    seconds = time.perf_counter() - t0

    failures = []
    raw = [(j, r) for j, r in zip(todo, results) if j["kind"] != "elementwise"]
    ew = [(j, r) for j, r in zip(todo, results) if j["kind"] == "elementwise"]
    for j, r in raw + ew:
        if "error" in r:
            failures.append(f"compile error: {j['label']}: {r['error']}")
        elif ptxas and j["fits"] and any(spilled(r[sm]) for sm in SMS):
            use = ", ".join(f"sm_{sm}: {r[sm]}" for sm in SMS)
            failures.append(f"spills although launched: {j['label']} "
                            f"({j['footprint']} B footprint): {use}")
        if args.verbose and "error" not in r:
            use = "; ".join(f"sm_{sm} {r[sm]['registers']} regs, stack {r[sm]['stack']}, "
                            f"spill {spilled(r[sm])}" for sm in SMS) if ptxas else ""
            print(f"  {j['label']}: {'in' if j['fits'] else 'OUT'} {j['footprint']} B; {use}")

    sms = ", ".join(f"sm_{sm}" for sm in SMS)
    head = (f"cuda_check: compiled {len(todo)} sources ({len(raw)} generated RawKernels, "
            f"{len(ew)} ElementwiseKernels and rowwise-loss kernels) for {sms} "
            f"with NVRTC {_nvrtc.version()}")
    ok = [(j, r) for j, r in raw + ew if "error" not in r]
    if not ptxas:
        print(head + "; ptxas not found, registers and spills not checked")
    else:
        inside = [(j, r[sm], sm) for j, r in ok if j["kind"] != "elementwise" and j["fits"]
                  for sm in SMS]
        outside = [(j, r) for j, r in ok if not j["fits"]]
        elem = [(j, r[sm], sm) for j, r in ok if j["kind"] == "elementwise" for sm in SMS]
        in_spill = sum(spilled(u) for _, u, _ in inside + elem)
        max_in = max(inside, key=lambda x: x[1]["registers"]) if inside else None
        max_ew = max((u["registers"] for _, u, _ in elem), default=0)
        print(f"{head}; ptxas {ptxas_version(ptxas)}: max registers "
              f"{max_in[1]['registers'] if max_in else 0} (RawKernels within raw_kernel_fits), "
              f"{max_ew} (ElementwiseKernels), "
              + ("0 spills" if in_spill == 0 else f"{in_spill} B spilled"))
        if max_in:
            j, u, sm = max_in
            print(f"  most registers within the bound: {j['label']} on sm_{sm}: {u}")
        biggest = max((x for x in inside), key=lambda x: x[0]["footprint"], default=None)
        if biggest:
            j, u, sm = biggest
            print(f"  largest footprint within the bound: {j['footprint']} B of "
                  f"{_cuda_limits.RAW_KERNEL_BYTES} B ({j['label']}), {u['registers']} registers")
        local = [(j, u, sm) for j, u, sm in inside if u["stack"] and not spilled(u)]
        line = (f"  {len({x[0]['label'] for x in local})} RawKernels within the bound keep "
                "arrays in local memory (a stack frame, no spills)")
        if local:
            j, u, sm = max(local, key=lambda x: x[1]["stack"])
            line += f", up to {u['stack']} B ({j['label']}, sm_{sm})"
        print(line)
        spilling = [(j, r) for j, r in outside if any(spilled(r[sm]) for sm in SMS)]
        line = (f"  {len(outside)} of {len(raw)} RawKernels fall outside raw_kernel_fits "
                f"(never launched); {len(spilling)} of them spill")
        if spilling:
            j, r = min(spilling, key=lambda x: x[0]["footprint"])
            worst = max(spilled(r[sm]) for sm in SMS)
            line += f", the smallest at {j['footprint']} B ({j['label']}: {worst} B)"
            most = max(spilling, key=lambda x: max(x[1][sm]["stack"] for sm in SMS))
            line += (f"; largest stack frame {max(most[1][sm]['stack'] for sm in SMS)} B "
                     f"({most[0]['label']})")
        print(line)
        print(f"  ElementwiseKernels, rowwise-loss kernels (sm_{SMS[0]}): " + ", ".join(
            f"{j['label'].split()[1]} {j['dtype']} {u['registers']} regs"
            for j, u, sm in elem if sm == SMS[0]))
    print(f"  took {seconds:.1f} s with {args.jobs} processes")
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
