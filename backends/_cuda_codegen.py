"""CUDA C kernels generated per architecture, for tiny networks on the GPU.

For the OR gate a training step is a few hundred flops: about 14 CuPy calls would cost
~15 us of host time each, and CuPy cannot capture cuBLAS in a CUDA graph. So one thread
trains one network for many epochs inside one launch, with the layer sizes, the number of
rows, the activations and the loss written in as constants (parameters and activations
live in registers). ``nnkit_fit`` trains one network (one thread); ``nnkit_sweep`` trains
one configuration per thread. The math and its order are those of the NumPy reference.

The per-element math is rendered from ``_math.py`` (the ``Cuda`` dialect), and so are
the bodies of the cupy backend's ``ElementwiseKernel``s (``elementwise_kernels``: among
them one update kernel per rule of ``UPDATE_MATH``) and its rowwise-loss RawKernel
(``rowwise_loss_source``: softmax cross-entropy, one thread per row).

The source is plain C++ apart from ``__global__``/``blockIdx``; the tests compile it with
the host C++ compiler and a tiny prelude to check it against the NumPy backend on CPU.
"""
from __future__ import annotations

import functools
import re

from ._math import (ACTIVATION_CODES, ACTIVATION_MATH, ACTIVATIONS, LOSS_MATH, UPDATE_MATH,
                    UPDATES, Cuda, Operands, decay, row_lse_parts, sigmoid_lines)

C = Cuda()


def _sigmoid_body():
    e, ratio = sigmoid_lines(C, "s", "e")
    return f"T e = {e}; return {ratio};"


_PRELUDE = ("typedef {ctype} T;\n\n"
            "// the reference sigmoid: exp(min(z, 0)) / (1 + exp(-|z|)), no overflow for any z\n"
            "__device__ inline T sigmoid_(T s) {{ " + _sigmoid_body().replace("{", "{{")
            .replace("}", "}}") + " }}\n")


_act, _deriv, _sgd = C.activation, C.derivative, C.update


def _switch(var, target, cases):
    """``if (var == CODE) { target = case; } else if ...`` over the activation codes."""
    names = list(ACTIVATIONS)
    parts = [f"if ({var} == {ACTIVATION_CODES[a]}) {{ {target} = {cases[a]}; }}  /* {a} */"
             for a in names[:-1]]
    parts.append(f"{{ {target} = {cases[names[-1]]}; }}  /* {names[-1]} */")
    return "\n".join(parts[:1] + ["else " + p for p in parts[1:]])


#: The scalars an update kernel may take after ``l2`` (``Operands`` names), in this order.
UPDATE_SCALARS = ("lr", "h1", "h2", "h3", "c1", "c2")


def update_kernel(rule):
    """``(name, in_params, out_params, operation)`` of update rule ``rule``'s
    ``ElementwiseKernel`` ``nnkit_update_<rule>``, rendered from the table: inputs the
    gradient g, then float64 scalars ``l2`` and those of ``update_scalars(rule)``;
    outputs p and the rule's state slots (``s1``, ``s2``), updated in place. L2 is
    fused in (``decay``: g + l2 p; biases pass l2 = 0, which leaves g unchanged)."""
    scalars = update_scalars(rule)
    slots = ("s1", "s2")[:UPDATE_MATH[rule].slots]
    o = Operands(g="gd")
    lines = [f"const T {s} = (T){s}_;" for s in ("l2",) + scalars]
    lines.append(f"const T gd = {decay(C, 'g', 'p', 'l2')};")
    lines += [f"{t} = {e};" for t, e in C.update_lines(rule, o)]
    return (f"nnkit_update_{rule}",
            ", ".join(["T g"] + [f"float64 {s}_" for s in ("l2",) + scalars]),
            ", ".join(["T p"] + [f"T {s}" for s in slots]),
            " ".join(lines).rstrip(";"))


@functools.lru_cache(maxsize=None)
def update_scalars(rule):
    """The scalars (of ``UPDATE_SCALARS``) that rule ``rule``'s lines read, in order."""
    text = " ".join(e for _, e in C.update_lines(rule, Operands()))
    return tuple(s for s in UPDATE_SCALARS if re.search(rf"\b{s}\b", text))


def elementwise_kernels():
    """The cupy backend's ``ElementwiseKernel``s as ``(name, in_params, out_params,
    operation)``: activation by code, its derivative from the output, the plain sgd
    update, and one kernel per update rule (``update_kernel``)."""
    sigmoid = f"auto sigmoid_ = [](T s) -> T {{ {_sigmoid_body()} }};\n"
    return [
        ("nnkit_act", "T z, int32 act", "T a",
         sigmoid + _switch("act", "a", {a: _act(a, "z") for a in ACTIVATIONS})),
        ("nnkit_act_backward", "T dA, T a, int32 act", "T dZ",
         _switch("act", "dZ", {a: _deriv(a, "dA", "a") for a in ACTIVATIONS})),
        ("nnkit_sgd", "T g, float64 lr", "T p", f"p = {_sgd('p', 'g', '(T)lr')}"),
    ] + [update_kernel(rule) for rule in UPDATES]


def _params(sizes):
    return ", ".join(f"T* __restrict__ W{l}_, T* __restrict__ b{l}_"
                     for l in range(len(sizes) - 1))


def _body(sizes, acts, loss, n, on_bad, lr_expr):
    """Statements training one network whose parameters are in W{l}/b{l} (locals)."""
    L = len(sizes) - 1
    out = []
    w = out.append
    w("    for (int e = 0; e < epochs; ++e) {")
    w(f"        const T lr = {lr_expr};")
    for l in range(L):
        i, o, inp = sizes[l], sizes[l + 1], "X" if l == 0 else f"A{l - 1}"
        w(f"        for (int r = 0; r < {n}; ++r) for (int j = 0; j < {o}; ++j) {{")
        w("            T s = (T)0;")
        w(f"            for (int k = 0; k < {i}; ++k) s += {inp}[r * {i} + k] * W{l}[k * {o} + j];")
        w(f"            s = s + b{l}[j];")
        w(f"            A{l}[r * {o} + j] = {_act(acts[l])};")
        w("        }")
    last, m = f"A{L - 1}", sizes[-1]
    w("        double total = 0.0;")
    w(f"        for (int t = 0; t < {n * m}; ++t) {{")
    w(f"            const T z = {last}[t], y = Y[t];")
    math = LOSS_MATH[loss]
    dr = None
    if math.residual is not None:  # the subexpression term and gradient share
        w(f"            const T dr = {math.residual(C, 'z', 'y')};")
        dr = "dr"
    term, grad = math.term(C, "z", "y", dr), math.grad(C, "z", "y", str(n), dr)
    w(f"            total += {term};")
    w(f"            G{L - 1}[t] = {grad};")
    w("        }")
    w(f"        const double loss = {LOSS_MATH[loss].mean(C, 'total', str(n))};")
    w("        losses[e] = loss;")
    w(f"        if (!isfinite(loss)) {{ {on_bad} }}")
    for l in range(L - 1, -1, -1):
        i, o, inp = sizes[l], sizes[l + 1], "X" if l == 0 else f"A{l - 1}"
        w(f"        for (int t = 0; t < {n * o}; ++t) {{")
        w(f"            const T a = A{l}[t], g = G{l}[t];")
        w(f"            G{l}[t] = {_deriv(acts[l])};")
        w("        }")
        if l > 0:
            w(f"        for (int r = 0; r < {n}; ++r) for (int k = 0; k < {i}; ++k) {{")
            w("            T s = (T)0;")
            w(f"            for (int j = 0; j < {o}; ++j) s += G{l}[r * {o} + j] * W{l}[k * {o} + j];")
            w(f"            G{l - 1}[r * {i} + k] = s;")
            w("        }")
        w(f"        for (int k = 0; k < {i}; ++k) for (int j = 0; j < {o}; ++j) {{")
        w("            T s = (T)0;")
        w(f"            for (int r = 0; r < {n}; ++r) s += {inp}[r * {i} + k] * G{l}[r * {o} + j];")
        w(f"            W{l}[k * {o} + j] = {_sgd(f'W{l}[k * {o} + j]', 's', 'lr')};")
        w("        }")
        w(f"        for (int j = 0; j < {o}; ++j) {{")
        w("            T s = (T)0;")
        w(f"            for (int r = 0; r < {n}; ++r) s += G{l}[r * {o} + j];")
        w(f"            b{l}[j] = {_sgd(f'b{l}[j]', 's', 'lr')};")
        w("        }")
    w("    }")
    return out


def _locals(sizes, n):
    out = []
    for l in range(len(sizes) - 1):
        i, o = sizes[l], sizes[l + 1]
        out.append(f"    T W{l}[{i * o}], b{l}[{o}], A{l}[{n * o}], G{l}[{n * o}];")
    return out


def _copy(sizes, into_locals, offset):
    out = []
    for l in range(len(sizes) - 1):
        i, o = sizes[l], sizes[l + 1]
        for name, size in ((f"W{l}", i * o), (f"b{l}", o)):
            src, dst = (f"{name}_[{offset} * {size} + t]", f"{name}[t]")
            if not into_locals:
                src, dst = dst, src
            out.append(f"    for (int t = 0; t < {size}; ++t) {dst} = {src};")
    return out


def _kernel_source(sizes, acts, loss, n, dtype, head, offset, lr_expr, stopped, finished):
    """A kernel that copies its network's parameters into registers, trains, and copies
    them back, also when it stops early on a non-finite loss."""
    ctype = "float" if dtype == "float32" else "double"
    save = " ".join(_copy(sizes, False, offset))
    lines = [_PRELUDE.format(ctype=ctype)] + head + _locals(sizes, n)
    lines += _copy(sizes, True, offset)
    lines += _body(sizes, acts, loss, n, on_bad=f"{save} {stopped} return;", lr_expr=lr_expr)
    lines += _copy(sizes, False, offset) + [f"    {finished}", "}"]
    return "\n".join(lines) + "\n"


def fit_source(sizes, acts, loss, n, dtype):
    """``nnkit_fit(X, Y, W0, b0, ..., lrs, lr_const, epochs, losses, done)``: one thread
    trains one network for ``epochs`` full-batch epochs at rates ``lrs`` (or ``lr_const``
    when ``lrs`` is null); ``done[0]`` = epochs run (it stops after the first non-finite
    loss, before that epoch's update)."""
    head = [f'extern "C" __global__ void nnkit_fit(const T* __restrict__ X, '
            f"const T* __restrict__ Y, {_params(sizes)}, const double* __restrict__ lrs, "
            "double lr_const, int epochs, double* __restrict__ losses, "
            "int* __restrict__ done) {",
            "    if (blockIdx.x * blockDim.x + threadIdx.x != 0) return;"]
    return _kernel_source(sizes, acts, loss, n, dtype, head, 0,
                          lr_expr="lrs ? (T)lrs[e] : (T)lr_const",
                          stopped="done[0] = e + 1;", finished="done[0] = epochs;")


def sweep_source(sizes, acts, loss, n, dtype):
    """``nnkit_sweep(X, Y, W0, b0, ..., lrs, factors, epochs, losses, diverged, C)``:
    thread c trains configuration c at rate ``lrs[c] * factors[e]``: W{l} (C, i, o),
    losses (C, epochs), diverged (C,) set to the first epoch with a non-finite loss
    (parameters kept from before it)."""
    head = [f'extern "C" __global__ void nnkit_sweep(const T* __restrict__ X, '
            f"const T* __restrict__ Y, {_params(sizes)}, const double* __restrict__ lrs, "
            "const double* __restrict__ factors, int epochs, double* __restrict__ losses_, "
            "long long* __restrict__ diverged, int C) {",
            "    const int c = blockIdx.x * blockDim.x + threadIdx.x;",
            "    if (c >= C) return;",
            "    const double lr_c = lrs[c];",
            "    double* losses = losses_ + (long long)c * epochs;"]
    return _kernel_source(sizes, acts, loss, n, dtype, head, "c",
                          lr_expr="(T)(lr_c * factors[e])",
                          stopped="diverged[c] = e;", finished="diverged[c] = -1;")


def rowwise_loss_source(loss, dtype):
    """``nnkit_rowwise_loss(Z, Y, terms, G, n, k)`` for a rowwise loss (softmax
    cross-entropy), one thread per row of the logits Z (n, k): the row's log-sum-exp
    ``r`` (max subtracted, ``row_lse_parts``), then, where the pointer is not null,
    ``terms[i]`` (float64) = the row's summed loss terms and ``G`` (n, k) = d loss / d Z
    for a batch of n rows; all rendered from the table."""
    math = LOSS_MATH[loss]
    if not math.rowwise:
        raise ValueError(f"loss: {loss!r} is not a rowwise loss")
    ctype = "float" if dtype == "float32" else "double"
    e, lse = row_lse_parts(C, "z", "m", "s")
    return "\n".join([
        f"typedef {ctype} T;",
        'extern "C" __global__ void nnkit_rowwise_loss(const T* __restrict__ Z, '
        "const T* __restrict__ Y, double* __restrict__ terms, T* __restrict__ G, "
        "int n, int k) {",
        "    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;",
        "    if (i >= n) return;",
        "    const T* zr = Z + i * k;",
        "    const T* yr = Y + i * k;",
        "    T m = zr[0];",
        f"    for (int j = 1; j < k; ++j) m = {C.call('max', 'm', 'zr[j]')};",
        "    T s = (T)0;",
        f"    for (int j = 0; j < k; ++j) {{ const T z = zr[j]; s += {e}; }}",
        f"    const T r = {lse};",
        "    if (terms) {",
        "        double total = 0.0;",
        "        for (int j = 0; j < k; ++j) {",
        "            const T z = zr[j], y = yr[j];",
        f"            total += {math.term(C, 'z', 'y', 'r')};",
        "        }",
        "        terms[i] = total;",
        "    }",
        "    if (G) for (int j = 0; j < k; ++j) {",
        "        const T z = zr[j], y = yr[j];",
        f"        G[i * k + j] = {math.grad(C, 'z', 'y', 'n', 'r')};",
        "    }",
        "}"]) + "\n"
