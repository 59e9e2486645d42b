"""Numba kernels. Imported on first use of the numba backend; compiled on first call
and cached on disk (``cache=True``). No ``fastmath``: it would break NaN checks and parity.

The per-element math (activations, derivatives, loss terms, updates, by integer code:
``_math.ACTIVATION_CODES``/``LOSS_CODES``) is the block rendered from ``_math.py``.
Every kernel works on the first ``nb`` rows of its (n, .) arrays so that one set of
buffers serves a full batch and a smaller last batch.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# --- vectorisable math ---------------------------------------------------------------
# math.exp in a loop compiles to a scalar libm call here (this llvmlite has no SVML),
# and numba's default error model puts a ZeroDivisionError branch in every division;
# both stop vectorisation. These use arithmetic, fused multiply-adds and a bit cast
# only, and every kernel compiles with error_model="numpy" (IEEE division). They live in
# this file so that numba's cache (keyed by this file) is invalidated when they change.


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once (llvm.fma: one instruction with FMA, and it vectorises).
    Numba does not contract a * b + c by itself without fastmath."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def address_as_pointer(typingctx, address):
    """The int64 ``address`` as a void pointer, for ``numba.carray(ptr, shape, dtype)``:
    the generated fit kernels take their state arrays as a table of addresses (see
    ``_numba_codegen.fit_state_pointers``), one argument instead of one per array."""
    if not (isinstance(address, types.Integer) and address.bitwidth == 64):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return types.voidptr(address), codegen


@njit(cache=True, inline="always", error_model="numpy")
def _reduce64(x):
    """(r, 2**k) with x = k ln 2 + r, k = round(x / ln 2), |r| <= 0.347 (float64; for
    -1022 <= k <= 1023): exp's range reduction, shared by exp64 and tanh64's expm1."""
    # k = round(x / ln 2) by adding 1.5 * 2**52: k lands in t's low mantissa bits, so the
    # scale 2**k is a shift of t's bits (no float -> int conversion on the way).
    t = fma(x, 1.4426950408889634, 6755399441055744.0)
    k = t - 6755399441055744.0
    r = fma(k, -6.93147180369123816490e-01, x)
    r = fma(k, -1.90821492927058770002e-10, r)
    return r, np.int64((np.float64(t).view(np.int64) << 52) + (1023 << 52)).view(np.float64)


@njit(cache=True, inline="always", error_model="numpy")
def _reduce32(x):
    """_reduce64 in float32 arithmetic (1.5 * 2**23; for -126 <= k <= 127)."""
    t = fma(x, np.float32(1.442695), np.float32(12582912.0))
    k = t - np.float32(12582912.0)
    r = fma(k, np.float32(-0.693359375), x)
    r = fma(k, np.float32(2.12194440e-4), r)
    return r, np.int32((np.float32(t).view(np.int32) << 23) + (127 << 23)).view(np.float32)


@njit(cache=True, inline="always", error_model="numpy")
def exp64(x):
    """exp(x) for float64 from arithmetic only (vectorises); within 2 ulp of math.exp.
    Below -708 it returns 0 (exp's subnormal range is flushed), above 708 inf; NaN stays NaN."""
    r, scale = _reduce64(x)
    # Taylor series to degree 13 (|r| <= 0.347: truncation < 1e-17), evaluated by
    # Estrin's scheme: a short dependency chain, so neighbouring calls overlap.
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q0 = fma(fma(r, 1.0 / 6.0, 0.5), r2, r + 1.0)
    q1 = fma(fma(r, 1.0 / 5040.0, 1.0 / 720.0), r2, fma(r, 1.0 / 120.0, 1.0 / 24.0))
    q2 = fma(fma(r, 1.0 / 39916800.0, 1.0 / 3628800.0), r2,
             fma(r, 1.0 / 362880.0, 1.0 / 40320.0))
    q3 = fma(r, 1.0 / 6227020800.0, 1.0 / 479001600.0)
    p = fma(fma(q3, r4, q2), r8, fma(q1, r4, q0))
    y = p * scale
    y = y if x >= -708.0 else 0.0
    return y if x <= 708.0 else x + np.inf


@njit(cache=True, inline="always", error_model="numpy")
def _exp32_in_range(x):
    """exp(x) for -87 <= x <= 88 in float32 arithmetic; exp32 without the range checks."""
    r, scale = _reduce32(x)  # then, as exp64, a degree-6 Taylor series
    r2 = r * r
    q0 = fma(fma(r, np.float32(1.0 / 6.0), np.float32(0.5)), r2, r + np.float32(1.0))
    q1 = fma(r2, np.float32(1.0 / 720.0), fma(r, np.float32(1.0 / 120.0),
                                              np.float32(1.0 / 24.0)))
    p = fma(q1, r2 * r2, q0)
    return p * scale


@njit(cache=True, inline="always", error_model="numpy")
def exp32(x):
    """exp(x) in float32 arithmetic (vectorises; within 4 float32 ulp of exp).
    Below -87 it returns 0, above 88 inf; NaN stays NaN."""
    y = _exp32_in_range(x)
    y = y if x >= np.float32(-87.0) else np.float32(0.0)
    return y if x <= np.float32(88.0) else x + np.float32(np.inf)


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid32(z):
    """sigmoid64's formula in float32 arithmetic, for float32 data (twice the lanes)."""
    x = -abs(z)
    # exp32(x) for x <= 0 with one range check fewer (this is the hot path of tiny nets)
    e = _exp32_in_range(x)  # computed unconditionally: a branch here stops vectorisation
    e = e if x >= np.float32(-87.0) else (np.float32(0.0) if x < 0 else x)
    return (np.float32(1.0) if z >= 0 else e) / (np.float32(1.0) + e)


# tanh(z) = -m / (m + 2) with m = expm1(-2|z|), the sign of z put back: math.tanh in a
# loop is a scalar libm call (a 512 x 256 float32 layer: 2.6 ms, this: 65 us). expm1
# comes from exp's range reduction, x = k ln 2 + r: expm1(x) = 2^k expm1(r) + (2^k - 1),
# expm1(r) a polynomial without exp's leading 1, so small |z| keep their precision.
# Within 3 ulp of the correctly rounded tanh (tested against extended precision).
@njit(cache=True, inline="always", error_model="numpy")
def tanh64(z):
    """tanh(z) for float64 from arithmetic only (vectorises); NaN stays NaN, tanh(-0) = -0."""
    x = -2.0 * abs(z)
    r, s = _reduce64(x)
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    # expm1(r) = r + r^2 (1/2! + r/3! + ... + r^13/15!) for |r| <= 0.347 (Estrin's
    # scheme), the leading r added last and exactly (r times a sum that starts at 1 lost
    # up to 2 ulp there, 4.1 ulp in the result near z = 0.125)
    q0 = fma(fma(r, 1.0 / 120.0, 1.0 / 24.0), r2, fma(r, 1.0 / 6.0, 0.5))
    q1 = fma(fma(r, 1.0 / 362880.0, 1.0 / 40320.0), r2, fma(r, 1.0 / 5040.0, 1.0 / 720.0))
    q2 = fma(fma(r, 1.0 / 6227020800.0, 1.0 / 479001600.0), r2,
             fma(r, 1.0 / 39916800.0, 1.0 / 3628800.0))
    q3 = fma(r, 1.0 / 1307674368000.0, 1.0 / 87178291200.0)
    p = fma(r2, fma(fma(q3, r4, q2), r8, fma(q1, r4, q0)), r)
    m = fma(s, p, s - 1.0)
    m = -1.0 if x < -40.0 else m  # (tanh rounds to 1 there; NaN fails the test and stays)
    return math.copysign(-m / (m + 2.0), z)


@njit(cache=True, inline="always", error_model="numpy")
def tanh32(z):
    """tanh64's formula in float32 arithmetic (exp32's reduction, degree-9 expm1)."""
    x = np.float32(-2.0) * abs(z)
    r, s = _reduce32(x)
    r2 = r * r
    q0 = fma(fma(r, np.float32(1.0 / 120.0), np.float32(1.0 / 24.0)), r2,
             fma(r, np.float32(1.0 / 6.0), np.float32(0.5)))
    q1 = fma(fma(r, np.float32(1.0 / 362880.0), np.float32(1.0 / 40320.0)), r2,
             fma(r, np.float32(1.0 / 5040.0), np.float32(1.0 / 720.0)))
    p = fma(r2, fma(q1, r2 * r2, q0), r)
    m = fma(s, p, s - np.float32(1.0))
    m = np.float32(-1.0) if x < np.float32(-18.0) else m
    return math.copysign(-m / (m + np.float32(2.0)), z)


@njit(cache=True, inline="always", error_model="numpy")
def log64(x):
    """log(x) for float64 x > 0 from arithmetic only (vectorises): fdlibm's e_log.c, x =
    2^k (1 + f) with sqrt(1/2) <= 1 + f < sqrt(2), log(1 + f) by its degree-14 polynomial
    in s = f / (2 + f). For positive normal x and inf; log1p64 sees to the rest."""
    bits = np.float64(x).view(np.int64)
    k = (bits >> 52) - 1023
    f = np.int64((bits & 0xFFFFFFFFFFFFF) | (1023 << 52)).view(np.float64)  # in [1, 2)
    high = f > 1.4142135623730951
    f = (f * 0.5 if high else f) - 1.0
    dk = np.float64(k + 1 if high else k)
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * fma(w, fma(w, 1.531383769920937332e-01, 2.222219843214978396e-01),
                 3.999999999940941908e-01)
    t2 = z * fma(w, fma(w, fma(w, 1.479819860511658591e-01, 1.818357216161805012e-01),
                        2.857142874366239149e-01), 6.666666666666735130e-01)
    r = hfsq - (s * (hfsq + t2 + t1) + dk * 1.90821492927058770002e-10)
    return dk * 6.93147180369123816490e-01 - (r - f)


@njit(cache=True, inline="always", error_model="numpy")
def log1p64(u):
    """log(1 + u) for float64 from arithmetic only (vectorises; math.log1p in a loop is a
    scalar libm call): Kahan's log(m) * u / (m - 1) with m = 1 + u, which cancels the
    rounding of 1 + u (u when m == 1). Within 3 ulp (tested); NaN stays NaN, -1 gives
    -inf, below -1 NaN."""
    m = 1.0 + u
    r = log64(m) * (u / (m - 1.0))
    r = u if m == 1.0 else r
    r = u if u == np.inf else r
    r = -np.inf if m == 0.0 else r
    return np.nan if m < 0.0 else r


@njit(cache=True, inline="always", error_model="numpy")
def log1p32(u):
    """log1p64 rounded to float32 (float32 has no cheaper formula of that accuracy here)."""
    return np.float32(log1p64(np.float64(u)))


def _in_precision(name, for32, for64):
    """The function ``name(x)`` kernels call: ``for32(x)`` for float32 x (the data's type:
    twice the lanes of float64), else ``for64(x)``."""
    def function(x):
        return for64(x)
    function.__name__ = function.__qualname__ = name

    @overload(function)
    def _for_type(x):
        if isinstance(x, types.Float) and x.bitwidth == 32:
            return lambda x: for32(x)
        return lambda x: for64(x)
    return function


_tanh = _in_precision("_tanh", tanh32, tanh64)
_exp = _in_precision("_exp", exp32, exp64)
_log1p = _in_precision("_log1p", log1p32, log1p64)


def float_like(x, a):
    """x as a float of the array a's element type: float32 for float32 data, else float64."""
    return np.float64(x)


@overload(float_like)
def _float_like_for_type(x, a):
    dtype = getattr(a, "dtype", a)
    if isinstance(dtype, types.Float) and dtype.bitwidth == 32:
        return lambda x, a: np.float32(x)
    return lambda x, a: np.float64(x)


# --- rendered from _math.py by `python -m nnkit.backends._math`: do not edit ---
LINEAR, SIGMOID, TANH, RELU = 0, 1, 2, 3
SQUARED_ERROR, MSE, BINARY_CROSSENTROPY, CATEGORICAL_CROSSENTROPY = 0, 1, 2, 3
SGD, MOMENTUM, NESTEROV, ADAM = 0, 1, 2, 3


@njit(cache=True, inline="always", error_model="numpy")
def sigmoid64(z):
    """exp(min(z, 0)) / (1 + exp(-|z|)) in float64: the reference formula."""
    e = exp64(-abs(z))
    return (1.0 if z >= 0.0 else e) / (1.0 + e)


@njit(cache=True, inline="always", error_model="numpy")
def activate(z, act):
    """act(z) for one element."""
    if act == LINEAR:
        return z
    if act == SIGMOID:
        return _sigmoid(z)
    if act == TANH:
        return _tanh(z)
    return (z if z > 0.0 else 0.0)  # relu


@njit(cache=True, inline="always", error_model="numpy")
def derivative(g, a, act):
    """dZ from dA (g) and the activation's output (a), for one element."""
    if act == LINEAR:
        return g
    if act == SIGMOID:
        return (a - a * a) * g
    if act == TANH:
        return (1.0 - a * a) * g
    return (g if a > 0.0 else 0.0)  # relu


@njit(cache=True, inline="always", error_model="numpy")
def loss_term(z, y, kind, r):
    """One output's contribution to the summed loss (BCE, CE: z is the logit; r: the row's log-sum-exp for CE)."""
    if kind == SQUARED_ERROR:
        return (z - y) * (z - y)
    if kind == MSE:
        return (z - y) * (z - y)
    if kind == BINARY_CROSSENTROPY:
        return max(z, 0.0) - y * z + _log1p(_exp(-abs(z)))
    return y * (r - z)  # categorical_crossentropy


@njit(cache=True, inline="always", error_model="numpy")
def loss_mean(total, kind, nb):
    """The loss from the summed loss_term of nb rows."""
    if kind == SQUARED_ERROR:
        return total / (2 * nb)
    if kind == MSE:
        return total / nb
    if kind == BINARY_CROSSENTROPY:
        return total / nb
    return total / nb  # categorical_crossentropy


@njit(cache=True, inline="always", error_model="numpy")
def loss_grad_term(z, y, kind, nb, r):
    """d loss / d z for one output of a batch of nb rows."""
    if kind == SQUARED_ERROR:
        return (z - y) / (nb)
    if kind == MSE:
        return (z - y) * (2.0 / nb)
    if kind == BINARY_CROSSENTROPY:
        return (_sigmoid(z) - y) / (nb)
    return (_exp(z - r) - y) / (nb)  # categorical_crossentropy


@njit(cache=True, inline="always", error_model="numpy")
def update_sgd(p, g, lr):
    """One sgd update of one parameter p with gradient g."""
    return p - lr * g


@njit(cache=True, inline="always", error_model="numpy")
def update_param(p, g, s1, s2, rule, lr, h1, h2, h3, c1, c2):
    """One update of parameter p (gradient g, L2 included) by update rule code `rule`;
    returns (p, s1, s2), the new parameter and state slots."""
    if rule == SGD:
        p = p - lr * g
        return p, s1, s2
    if rule == MOMENTUM:
        s1 = h1 * s1 + g
        p = p - lr * s1
        return p, s1, s2
    if rule == NESTEROV:
        s1 = h1 * s1 + g
        p = p - lr * (g + h1 * s1)
        return p, s1, s2
    # adam
    s1 = h1 * s1 + (1.0 - h1) * g
    s2 = h2 * s2 + (1.0 - h2) * g * g
    p = p - (lr / c1) * s1 / (math.sqrt(s2) / c2 + h3)
    return p, s1, s2
# --- end of rendered math ---

_sigmoid = _in_precision("_sigmoid", sigmoid32, sigmoid64)  # (sigmoid64: rendered above)


# The generated kernels' activations, as functions of their own. Those kernels call them
# at every unit of every row; numba's IR inlining (inline="always") would copy the
# callee's IR to each call site, two thirds of a small kernel's compile time (a 2-2-1
# sigmoid fit: 2.35 -> 0.75 s). LLVM still inlines the calls: the same speed, the same
# numbers to the bit.
@njit(cache=True, error_model="numpy")
def sigmoid64_called(z):
    """sigmoid64(z), not inlined by numba."""
    return sigmoid64(z)


@njit(cache=True, error_model="numpy")
def sigmoid32_called(z):
    """sigmoid32(z), not inlined by numba."""
    return sigmoid32(z)


@njit(cache=True, error_model="numpy")
def tanh64_called(z):
    """tanh64(z), not inlined by numba."""
    return tanh64(z)


@njit(cache=True, error_model="numpy")
def tanh32_called(z):
    """tanh32(z), not inlined by numba."""
    return tanh32(z)


@njit(cache=True, error_model="numpy")
def exp64_called(x):
    """exp64(x), not inlined by numba."""
    return exp64(x)


@njit(cache=True, inline="always", error_model="numpy")
def activation_forward(Z, act, out, nb):
    """out[:nb] = act(Z[:nb]); out may be Z."""
    m = Z.shape[1]
    for i in range(nb):
        for j in range(m):
            out[i, j] = activate(Z[i, j], act)


@njit(cache=True, error_model="numpy")
def activation_inplace(Z, act, nb):
    """Z[:nb] = act(Z[:nb]). (activation_forward(Z, act, Z, nb) from Python gets two
    pointers to one array: LLVM's overlap check then picks its scalar loop, 5x slower.)"""
    m = Z.shape[1]
    for i in range(nb):
        for j in range(m):
            Z[i, j] = activate(Z[i, j], act)


@njit(cache=True, error_model="numpy")
def derivative_inplace(G, A, act, nb):
    """G[:nb] = G * act'(A), the derivative from the output A, in place (see
    activation_inplace)."""
    m = A.shape[1]
    for i in range(nb):
        for j in range(m):
            G[i, j] = derivative(G[i, j], A[i, j], act)


@njit(cache=True, error_model="numpy")
def derivative_into_output(dA, A, act, nb):
    """A[:nb] = dA * act'(A), over the activation's output (see activation_inplace)."""
    m = A.shape[1]
    for i in range(nb):
        for j in range(m):
            A[i, j] = derivative(dA[i, j], A[i, j], act)


@njit(cache=True, error_model="numpy")
def bias_activation(Z, b, act, nb):
    """Z[:nb] = act(Z[:nb] + b) in place: the elementwise half of a BLAS dense layer."""
    bias_activation_rows(Z, b, act, 0, nb)


@njit(cache=True, error_model="numpy")
def bias_activation_stacked(Z, B, n, act):
    """Z = act(Z + B[row // n]) in place; Z (C * n, o) rows of C stacked configurations,
    B (C, o) their biases."""
    m = Z.shape[1]
    for i in range(Z.shape[0]):
        c = i // n
        for j in range(m):
            Z[i, j] = activate(Z[i, j] + B[c, j], act)


@njit(cache=True, inline="always", error_model="numpy")
def dense_forward(X, W, b, act, out, nb):
    """out[:nb] = act(X[:nb] @ W + b); X (n, i), W (i, o), b (o,)."""
    n_in, n_out = W.shape
    for i in range(nb):
        for j in range(n_out):
            out[i, j] = 0.0
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                out[i, j] += x * W[k, j]
        for j in range(n_out):
            out[i, j] += b[j]
    activation_forward(out, act, out, nb)


@njit(cache=True, inline="always", error_model="numpy")
def dense_product(X, W, out, nb):
    """out[:nb] = X[:nb] @ W (dense_forward's loops without bias and activation)."""
    n_in, n_out = W.shape
    for i in range(nb):
        for j in range(n_out):
            out[i, j] = 0.0
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                out[i, j] += x * W[k, j]


@njit(cache=True, inline="always", error_model="numpy")
def activation_backward(dA, A, act, out, nb):
    """out[:nb] = dA * act'(A), the derivative from the output A; out may be dA."""
    m = A.shape[1]
    for i in range(nb):
        for j in range(m):
            out[i, j] = derivative(dA[i, j], A[i, j], act)


@njit(cache=True, inline="always", error_model="numpy")
def dense_backward_params(dZ, X, nb, dW, db):
    """dW = X[:nb]^T dZ[:nb], db = column sums of dZ[:nb]."""
    n_in, n_out = dW.shape
    for k in range(n_in):
        for j in range(n_out):
            dW[k, j] = 0.0
    for j in range(n_out):
        db[j] = 0.0
    for i in range(nb):
        for k in range(n_in):
            x = X[i, k]
            for j in range(n_out):
                dW[k, j] += x * dZ[i, j]
        for j in range(n_out):
            db[j] += dZ[i, j]


@njit(cache=True, inline="always", error_model="numpy")
def dense_backward_input(dZ, W, dX, nb):
    """dX[:nb] = dZ[:nb] @ W^T."""
    n_in, n_out = W.shape
    for i in range(nb):
        for k in range(n_in):
            s = 0.0
            for j in range(n_out):
                s += dZ[i, j] * W[k, j]
            dX[i, k] = s


@njit(cache=True, inline="always", error_model="numpy")
def row_statistic(Z, i, kind):
    """What a rowwise loss needs of row i of the logits Z: its log-sum-exp, the max
    subtracted (categorical cross-entropy); 0.0 for the other losses."""
    if kind != CATEGORICAL_CROSSENTROPY:
        return 0.0
    m = Z[i, 0]
    for j in range(1, Z.shape[1]):
        m = max(m, Z[i, j])
    s = 0.0
    for j in range(Z.shape[1]):
        s += _exp(Z[i, j] - m)
    return m + math.log(s)


@njit(cache=True, inline="always", error_model="numpy")
def loss_value(Yhat, Y, kind, nb):
    """Mean over the nb rows of the per-sample loss summed over outputs (float64)."""
    m = Yhat.shape[1]
    total = 0.0
    for i in range(nb):
        r = row_statistic(Yhat, i, kind)
        for j in range(m):
            total += loss_term(Yhat[i, j], Y[i, j], kind, r)
    return loss_mean(total, kind, nb)


@njit(cache=True, inline="always", error_model="numpy")
def loss_grad(Yhat, Y, kind, out, nb):
    """out[:nb] = d loss / d Yhat (for BCE and CE: d loss / d logits)."""
    m = Yhat.shape[1]
    for i in range(nb):
        r = row_statistic(Yhat, i, kind)
        for j in range(m):
            out[i, j] = loss_grad_term(Yhat[i, j], Y[i, j], kind, nb, r)


@njit(cache=True, inline="always", error_model="numpy")
def sgd_update(P, dP, lr):
    """P -= lr * dP for a 2-D P."""
    for k in range(P.shape[0]):
        for j in range(P.shape[1]):
            P[k, j] = update_sgd(P[k, j], dP[k, j], lr)


@njit(cache=True, inline="always", error_model="numpy")
def sgd_update_1d(p, g, lr):
    """p -= lr * g for a 1-D p."""
    for j in range(p.shape[0]):
        p[j] = update_sgd(p[j], g[j], lr)


@njit(cache=True, inline="always", error_model="numpy")
def _update_rows(P, dP, S1, S2, rule, lr, h1, h2, h3, l2, c1, c2):
    """P -= the update of rule ``rule`` with gradient dP + l2 * P, over a 2-D P. Every
    call site passes a constant rule: once inlined, the rule's branches fold away and the
    inner loop vectorises (with the rule a variable, LLVM kept the branches and the
    loop stayed scalar: Adam took ~7 ns per parameter)."""
    for k in range(P.shape[0]):
        for j in range(P.shape[1]):
            p = P[k, j]
            g = dP[k, j] + l2 * p
            if rule == SGD:
                P[k, j] = update_sgd(p, g, lr)
            elif rule == ADAM:
                P[k, j], S1[k, j], S2[k, j] = update_param(p, g, S1[k, j], S2[k, j], rule,
                                                           lr, h1, h2, h3, c1, c2)
            else:
                P[k, j], S1[k, j], _ = update_param(p, g, S1[k, j], 0.0, rule, lr, h1, h2,
                                                    h3, c1, c2)


@njit(cache=True, inline="always", error_model="numpy")
def _update_vector(p, g, S1, S2, rule, lr, h1, h2, h3, c1, c2):
    """p -= the update of rule ``rule`` (a constant, as in ``_update_rows``), 1-D, no L2."""
    for j in range(p.shape[0]):
        if rule == SGD:
            p[j] = update_sgd(p[j], g[j], lr)
        elif rule == ADAM:
            p[j], S1[j], S2[j] = update_param(p[j], g[j], S1[j], S2[j], rule, lr, h1, h2,
                                              h3, c1, c2)
        else:
            p[j], S1[j], _ = update_param(p[j], g[j], S1[j], 0.0, rule, lr, h1, h2, h3, c1,
                                          c2)


@njit(cache=True, inline="always", error_model="numpy")
def sum_squares(P):
    """Sum of P's squared elements (2-D) in float64, four running sums per row (one
    would be a chain of dependent adds)."""
    s0 = s1 = s2 = s3 = 0.0
    for k in range(P.shape[0]):
        n = P.shape[1]
        m = n - n % 4
        for j in range(0, m, 4):
            a, b, c, d = P[k, j], P[k, j + 1], P[k, j + 2], P[k, j + 3]
            s0 += a * a
            s1 += b * b
            s2 += c * c
            s3 += d * d
        for j in range(m, n):
            s0 += P[k, j] * P[k, j]
    return (s0 + s1) + (s2 + s3)


# optimizer_update_2d/_1d are compiled once per dtype rather than inlined into every
# depth's optimizer_update (a cold test run compiled them 8 times: 32 -> 12 s of CPU;
# the Adam epoch unchanged, 10.8-11.7 us either way).
@njit(cache=True, error_model="numpy")
def optimizer_update_2d(P, dP, S1, S2, rule, lr, h1, h2, h3, l2, c1, c2):
    """One update of a 2-D parameter P by rule code ``rule`` with L2 ``l2``; S1/S2 its
    state slots (zero-size where the rule keeps fewer). Returns (l2/2) ||P||^2 before
    (0.0 without L2)."""
    penalty = 0.5 * l2 * sum_squares(P) if l2 != 0.0 else 0.0
    if rule == SGD:
        _update_rows(P, dP, S1, S2, SGD, lr, h1, h2, h3, l2, c1, c2)
    elif rule == ADAM:
        _update_rows(P, dP, S1, S2, ADAM, lr, h1, h2, h3, l2, c1, c2)
    elif rule == MOMENTUM:
        _update_rows(P, dP, S1, S2, MOMENTUM, lr, h1, h2, h3, l2, c1, c2)
    else:
        _update_rows(P, dP, S1, S2, NESTEROV, lr, h1, h2, h3, l2, c1, c2)
    return penalty


@njit(cache=True, error_model="numpy")
def optimizer_update_1d(p, g, S1, S2, rule, lr, h1, h2, h3, c1, c2):
    """One update of a bias vector (no L2) by rule code ``rule``."""
    if rule == SGD:
        _update_vector(p, g, S1, S2, SGD, lr, h1, h2, h3, c1, c2)
    elif rule == ADAM:
        _update_vector(p, g, S1, S2, ADAM, lr, h1, h2, h3, c1, c2)
    elif rule == MOMENTUM:
        _update_vector(p, g, S1, S2, MOMENTUM, lr, h1, h2, h3, c1, c2)
    else:
        _update_vector(p, g, S1, S2, NESTEROV, lr, h1, h2, h3, c1, c2)


@njit(cache=True, error_model="numpy")
def optimizer_update(Ws, bs, dWs, dbs, S1W, S1b, S2W, S2b, rule, hyper, t, lr):
    """One update of every layer by rule code ``rule``: hyper (h1, h2, h3, l2), t (1,)
    the update count (incremented here; Adam's bias corrections come from it).
    Returns the L2 term (l2/2) sum ||W||^2 of the weights before the update. (Padding
    layers, empty arrays, update nothing.)"""
    t[0] += 1
    h1, h2, h3, l2 = hyper[0], hyper[1], hyper[2], hyper[3]
    c1 = 1.0 - h1 ** float(t[0])  # libm's pow, as OptimizerState.advance (numba raises to
    c2 = math.sqrt(1.0 - h2 ** float(t[0]))  # an integer power by repeated squaring)
    penalty = 0.0
    for l in range(len(Ws)):
        penalty += optimizer_update_2d(Ws[l], dWs[l], S1W[l], S2W[l], rule, lr, h1, h2, h3,
                                       l2, c1, c2)
        optimizer_update_1d(bs[l], dbs[l], S1b[l], S2b[l], rule, lr, h1, h2, h3, c1, c2)
    return penalty


@njit(cache=True, error_model="numpy")
def optimizer_step(Ws, bs, dWs, dbs, S1W, S1b, S2W, S2b, rule, hyper, t, lr):
    """``optimizer_update`` as a call of its own (the BLAS path's update pass)."""
    return optimizer_update(Ws, bs, dWs, dbs, S1W, S1b, S2W, S2b, rule, hyper, t, lr)


@njit(cache=True, inline="always", error_model="numpy")
def _softmax_output(Z, Y, act, G, db, nb, W):
    """blas_output's categorical cross-entropy: Z[:nb] the activated logits, W a float64
    scratch of nb * (m + 3). Returns the summed loss.

    Pass by pass over the whole batch, not row by row: a row of ten logits is a chain of
    dependent steps (max, exps, their sum, log, the loss sum) that out-of-order execution
    cannot overlap across rows, and a reduction in a loop keeps the loop scalar (4.5x
    slower for digits' 64 x 10). The row reductions run down the columns (j outer, the
    rows' independent sums inner; each row summed in its own order as before), the exps
    in one flat loop (it vectorises), and the softmax is exp(z - max) / sum, multiplied by
    reciprocals: the table's exp(z - lse) and / nb to rounding (a division is 4x an
    exp's throughput here)."""
    m = Z.shape[1]
    S = W[:nb * m].reshape(nb, m)
    R = W[nb * m:nb * m + nb]
    SE = W[nb * m + nb:nb * m + 2 * nb]
    T = W[nb * m + 2 * nb:nb * m + 3 * nb]
    for i in range(nb):  # row maxima (float64, as row_statistic)
        R[i] = Z[i, 0]
    for j in range(1, m):
        for i in range(nb):
            R[i] = max(R[i], Z[i, j])
    for i in range(nb):
        zm = R[i]
        for j in range(m):
            S[i, j] = Z[i, j] - zm
    flat = W[:nb * m]
    for t in range(nb * m):
        flat[t] = exp64(flat[t])
    for i in range(nb):
        SE[i] = 0.0
        T[i] = 0.0
    for j in range(m):
        for i in range(nb):
            SE[i] += S[i, j]
    for i in range(nb):  # R: the rows' log-sum-exp
        R[i] = R[i] + math.log(SE[i])
    for j in range(m):
        for i in range(nb):
            T[i] += loss_term(Z[i, j], Y[i, j], CATEGORICAL_CROSSENTROPY, R[i])
    total = 0.0
    for i in range(nb):
        total += T[i]
    inv_nb = 1.0 / nb
    for i in range(nb):
        inv = 1.0 / SE[i]
        for j in range(m):
            g = derivative((S[i, j] * inv - Y[i, j]) * inv_nb, Z[i, j], act)
            G[i, j] = g
            db[j] += g
    return total


# Rows of the output layer's elementwise work done together (blas_output): the block's
# three passes then run in the first-level cache, and each pass is its own compiled
# function with one switch (the activation or the loss), which LLVM hoists out of the
# loop so that it vectorises (with both switches in one loop it stays scalar: 1024 x 1024
# sigmoid squared error 14 ms, against ~1.3 ms this way).
OUTPUT_BLOCK = 2048


@njit(cache=True, error_model="numpy")
def bias_activation_rows(Z, b, act, i0, i1):
    """Z[i0:i1] = act(Z[i0:i1] + b) in place."""
    m = Z.shape[1]
    for i in range(i0, i1):
        for j in range(m):
            Z[i, j] = activate(Z[i, j] + b[j], act)


@njit(cache=True, error_model="numpy")
def loss_rows(Z, Y, kind, G, T, nb, i0, i1):
    """For rows i0:i1 of the (activated) outputs Z of a batch of nb rows: T[j] += the
    loss terms of column j (T float64), G = d loss / d Z (a loss without a row statistic)."""
    m = Z.shape[1]
    # the batch size as a float of the data's type: float32 data then divides in float32
    # (twice the lanes of a float64 division, and the same correctly rounded quotient)
    n = float_like(nb, Z)
    for i in range(i0, i1):
        for j in range(m):
            z = Z[i, j]
            y = Y[i, j]
            T[j] += loss_term(z, y, kind, 0.0)
            G[i, j] = loss_grad_term(z, y, kind, n, 0.0)


@njit(cache=True, error_model="numpy")
def derivative_colsum_rows(G, A, act, db, i0, i1):
    """G[i0:i1] = G * act'(A) in place (dA -> dZ, the derivative from the output A) and
    db += its column sums over those rows, in one pass."""
    m = A.shape[1]
    for i in range(i0, i1):
        for j in range(m):
            g = derivative(G[i, j], A[i, j], act)
            G[i, j] = g
            db[j] += g


@njit(cache=True, error_model="numpy")
def blas_output(Z, b, Y, act, kind, G, db, nb):
    """The output layer after its gemm Z[:nb] = inp @ W: Z = act(Z + b) in place,
    G[:nb] = dZ (the loss's gradient through the activation), db = column sums of dZ.
    Returns the mean loss over the nb rows.

    Losses without a row statistic go block by block of rows (``OUTPUT_BLOCK``
    elements), row-major: activation, loss terms and gradient, derivative and column
    sums; the loss summed per column in float64, then the columns. (Summing each row
    down the columns instead strides through memory: 8.5 ms for a 1024 x 1024 output.)"""
    m = Z.shape[1]
    for j in range(m):
        db[j] = 0.0
    if kind == CATEGORICAL_CROSSENTROPY:
        bias_activation_rows(Z, b, act, 0, nb)
        total = _softmax_output(Z, Y, act, G, db, nb, np.empty(nb * (m + 3)))
        return loss_mean(total, kind, nb)
    T = np.zeros(m)
    rows = max(1, OUTPUT_BLOCK // m)
    for i0 in range(0, nb, rows):
        i1 = min(nb, i0 + rows)
        bias_activation_rows(Z, b, act, i0, i1)
        loss_rows(Z, Y, kind, G, T, nb, i0, i1)
        derivative_colsum_rows(G, Z, act, db, i0, i1)
    total = 0.0
    for j in range(m):
        total += T[j]
    return loss_mean(total, kind, nb)


@njit(cache=True, inline="always", error_model="numpy")
def train_step(X, Y, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs, opt):
    """One fused step on rows :nb of (X, Y): forward, loss, backward, update.

    Ws/bs/As/Gs/dWs/dbs are tuples over layers, of len(acts) layers or more (the
    numba backend pads them with empty arrays: ``_padded``); Gs holds dA then dZ in
    place. opt: (rule code, hyper, t, S1W, S1b, S2W, S2b) of ``optimizer_update``.
    Returns the loss before the update (with the L2 term).
    """
    L = acts.shape[0]
    for l in range(L - 1):
        inp = X if l == 0 else As[l - 1]
        dense_forward(inp, Ws[l], bs[l], acts[l], As[l], nb)
    # the output layer: its product, then blas_output's pass (bias, activation, loss,
    # dZ; the pass-by-pass loss math, 2-5x faster than per-row loss_value + loss_grad)
    dense_product(X if L == 1 else As[L - 2], Ws[L - 1], As[L - 1], nb)
    loss = blas_output(As[L - 1], bs[L - 1], Y, acts[L - 1], loss_kind, Gs[L - 1],
                       dbs[L - 1], nb)
    for l in range(L - 1, -1, -1):
        if l < L - 1:
            activation_backward(Gs[l], As[l], acts[l], Gs[l], nb)
        inp = X if l == 0 else As[l - 1]
        dense_backward_params(Gs[l], inp, nb, dWs[l], dbs[l])
        if l > 0:
            dense_backward_input(Gs[l], Ws[l], Gs[l - 1], nb)
    rule, hyper, t, S1W, S1b, S2W, S2b = opt
    if rule == SGD and hyper[3] == 0.0:
        t[0] += 1
        for l in range(L):
            sgd_update(Ws[l], dWs[l], lr)
            sgd_update_1d(bs[l], dbs[l], lr)
        return loss
    return loss + optimizer_update(Ws, bs, dWs, dbs, S1W, S1b, S2W, S2b, rule, hyper, t, lr)


@njit(cache=True, error_model="numpy", nogil=True)
def train_epochs(X, Y, Ws, bs, acts, loss_kind, lrs, batch_size, orders, use_order,
                 Xb, Yb, As, Gs, dWs, dbs, losses, opt):
    """Run len(lrs) epochs in one call; losses[e] = epoch e's mean loss.

    Stops after the first epoch whose loss is not finite; returns epochs run.
    """
    n = X.shape[0]
    full = batch_size >= n and not use_order
    for e in range(lrs.shape[0]):
        lr = lrs[e]
        total = 0.0
        start = 0
        while start < n:  # one train_step call site: it is inlined (a third of the compile)
            stop = n if full else min(start + batch_size, n)
            nb = stop - start
            if use_order:
                gather_rows(X, Y, orders[e], start, nb, Xb, Yb)
                Xs, Ys = Xb, Yb
            else:
                Xs, Ys = X[start:stop], Y[start:stop]
            loss = train_step(Xs, Ys, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs, opt)
            if full:
                total = loss
            else:
                total += loss * (nb / n)
            start = stop
        losses[e] = total
        if not np.isfinite(total):
            return e + 1
    return lrs.shape[0]


# --- the BLAS path: whole steps and epochs in one call, matmuls by BLAS ------------------
# np.dot(a, b, out) inside a kernel calls the BLAS gemm (scipy's, through numba) with no
# allocation when every operand is C- or F-contiguous: row slices A[:nb] of C arrays stay
# C, their transposes are F (gemm's transpose flags), out is C. The elementwise work sits
# between the gemms in few passes: bias + activation; the output layer's bias,
# activation, loss, gradient, derivative and bias gradient (blas_output, above: the fused
# train_step shares it); derivative + bias gradient; then one update pass over all
# parameters, except under plain SGD, whose weight update is the weight-gradient gemm
# itself (gemm_update: W -= lr * A^T dZ by gemm's alpha and beta). Measured on the
# 1024-1024-1024 float32 step (batch 1024, 2 cores): the separate update pass cost ~2 ms
# in the step (0.6 ms alone: after the gemms the arrays sit in both cores' caches), about
# a third of the time outside the gemms. The passes run on one core: spreading them
# over both with prange (numba's OpenMP threads) made the step 1.4x (large) to 15x
# (784-256-10) slower, OpenMP's and OpenBLAS's threads spinning against each other.
# Shuffled mini-batches are gathered element by element (gather_rows).


@njit(cache=True, nogil=True)
def gemm_into(a, b, out):
    """out = a @ b by the gemm the blas path calls (for timing it alone)."""
    np.dot(a, b, out)


@intrinsic
def gemm_update(typingctx, x, y, out, alpha, beta):
    """out = alpha * (x @ y) + beta * out by BLAS gemm, the one np.dot calls inside a
    kernel (SciPy's, through numba's ``numba_xxgemm``), with its alpha and beta: x (m, k)
    and y (k, n) C- or F-contiguous, out (m, n) C-contiguous, one float dtype. With
    alpha = -lr and beta = 1 it is plain SGD's update W -= lr * (A^T dZ) inside the
    weight-gradient gemm: no gradient array written, then read and written again."""
    arrays = (x, y, out)
    if not (all(isinstance(a, types.Array) and a.ndim == 2 and a.dtype == out.dtype
                for a in arrays) and isinstance(out.dtype, types.Float)
            and out.layout == "C" and x.layout in "CF" and y.layout in "CF"):
        return None
    from numba.np.linalg import ensure_blas
    ensure_blas()

    def codegen(context, builder, signature, args):
        from numba.core import cgutils
        from numba.np.linalg import check_blas_return, get_blas_kind
        char, void_p, intp = ir.IntType(8), ir.IntType(8).as_pointer(), cgutils.intp_t
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, void_p,
                                                void_p, intp, void_p, intp, void_p, void_p,
                                                intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        dtype = out.dtype
        slots = []
        for value, ty in zip(args[3:], signature.args[3:]):
            slots.append(cgutils.alloca_once_value(builder, context.cast(builder, value, ty,
                                                                         dtype)))
        parts = []
        for ty, value in zip(arrays, args[:3]):
            arr = context.make_array(ty)(context, builder, value)
            shape = cgutils.unpack_tuple(builder, arr.shape, 2)
            parts.append((ty, shape, builder.bitcast(arr.data, void_p)))
        (xt, (m, k), xd), (yt, (_, n), yd), (_, (_, ldc), od) = parts

        def operand(ty, shape, data):  # as numba's np.dot: column-major out^T = y^T x^T
            return (ir.Constant(char, ord("n" if ty.layout == "C" else "t")),
                    shape[1] if ty.layout == "C" else shape[0], data)
        transa, lda, a = operand(yt, (k, n), yd)
        transb, ldb, b = operand(xt, (m, k), xd)
        res = builder.call(fn, (ir.Constant(char, ord(get_blas_kind(dtype))), transa, transb,
                                n, m, k, builder.bitcast(slots[0], void_p), a, lda, b, ldb,
                                builder.bitcast(slots[1], void_p), od, ldc))
        check_blas_return(context, builder, res)
        return context.get_dummy_value()

    return types.void(x, y, out, alpha, beta), codegen


@njit(cache=True, inline="always", error_model="numpy")
def weight_gradient(inp, G, W, dW, lr, plain):
    """dW = inp^T G; or, for plain SGD (``plain``), W -= lr * inp^T G in the gemm itself
    (``gemm_update``; dW is not written)."""
    if plain:
        gemm_update(inp.T, G, W, -lr, 1.0)
    else:
        np.dot(inp.T, G, dW)


@njit(cache=True, error_model="numpy")
def blas_train_step(X, Y, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs, opt):
    """``train_step`` with BLAS matmuls: rows :nb of (X, Y) (C-contiguous), the same
    arguments and result (the loss before the update, L2 term included)."""
    L = acts.shape[0]
    for l in range(L):  # forward: gemm, then bias + activation (the output's: below)
        Z = As[l][:nb]
        if l == 0:
            np.dot(X[:nb], Ws[0], Z)
        else:
            np.dot(As[l - 1][:nb], Ws[l], Z)
        if l < L - 1:
            bias_activation_rows(Z, bs[l], acts[l], 0, nb)
    loss = blas_output(As[L - 1], bs[L - 1], Y, acts[L - 1], loss_kind, Gs[L - 1],
                       dbs[L - 1], nb)
    rule, hyper, t, S1W, S1b, S2W, S2b = opt
    plain = rule == SGD and hyper[3] == 0.0  # plain SGD: W -= lr * dW inside the gemm
    for l in range(L - 1, -1, -1):  # backward: Gs[l] holds dZ of layer l
        G = Gs[l][:nb]
        if l > 0:  # dA of the layer below, from W before its update
            np.dot(G, Ws[l].T, Gs[l - 1][:nb])
        if l == 0:
            weight_gradient(X[:nb], G, Ws[0], dWs[0], lr, plain)
        else:
            weight_gradient(As[l - 1][:nb], G, Ws[l], dWs[l], lr, plain)
            db = dbs[l - 1]
            for j in range(db.shape[0]):
                db[j] = 0.0
            derivative_colsum_rows(Gs[l - 1], As[l - 1], acts[l - 1], db, 0, nb)
    if plain:
        t[0] += 1
        for l in range(L):
            sgd_update_1d(bs[l], dbs[l], lr)
        return loss
    return loss + optimizer_update(Ws, bs, dWs, dbs, S1W, S1b, S2W, S2b, rule, hyper, t, lr)


@njit(cache=True, inline="always", error_model="numpy")
def gather_rows(X, Y, order, start, nb, Xb, Yb):
    """Xb[r], Yb[r] = X[order[start + r]], Y[order[start + r]] for r < nb, element by
    element (a row slice assignment costs ~50 ns a row: 3.3 us of a 20 us step on
    digits, 0.5 us this way)."""
    d, o = X.shape[1], Y.shape[1]
    for r in range(nb):
        src = order[start + r]
        for k in range(d):
            Xb[r, k] = X[src, k]
        for k in range(o):
            Yb[r, k] = Y[src, k]


@njit(cache=True, error_model="numpy", nogil=True)
def blas_train_epochs(X, Y, Ws, bs, acts, loss_kind, lrs, batch_size, orders, use_order,
                      Xb, Yb, As, Gs, dWs, dbs, losses, opt):
    """``train_epochs`` with ``blas_train_step``: len(lrs) epochs in one call, full
    batch or mini-batches (in order: row slices of X, Y, no copy; shuffled: rows
    gathered into Xb, Yb). losses[e] = epoch e's mean loss; stops after the first
    epoch whose loss is not finite; returns the epochs run."""
    n = X.shape[0]
    for e in range(lrs.shape[0]):
        lr = lrs[e]
        total = 0.0
        if batch_size >= n and not use_order:
            total = blas_train_step(X, Y, n, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs,
                                    opt)
        else:
            start = 0
            while start < n:
                stop = min(start + batch_size, n)
                nb = stop - start
                if use_order:
                    gather_rows(X, Y, orders[e], start, nb, Xb, Yb)
                    loss = blas_train_step(Xb, Yb, nb, Ws, bs, acts, loss_kind, lr, As, Gs,
                                           dWs, dbs, opt)
                else:
                    loss = blas_train_step(X[start:stop], Y[start:stop], nb, Ws, bs, acts,
                                           loss_kind, lr, As, Gs, dWs, dbs, opt)
                total += loss * (nb / n)
                start = stop
        losses[e] = total
        if not np.isfinite(total):
            return e + 1
    return lrs.shape[0]


# --- full-batch sweeps -----------------------------------------------------------------
# The elementwise steps of Backend._train_many_stacked: C configurations side by side,
# layer outputs (C, o, n) with the samples as the fast axis.


@njit(cache=True, error_model="numpy")
def rows_activation(Z, b, act):
    """Z (C, o, n) = act(Z + b[c, j]) in place: layer outputs, samples last; b (C, o)."""
    C, o, n = Z.shape
    for c in range(C):
        for j in range(o):
            z = Z[c, j]
            for r in range(n):
                z[r] = activate(z[r] + b[c, j], act)


@njit(cache=True, error_model="numpy")
def many_output(Z, b, Y, act, kind, values):
    """Z (C, o, n): the output layers' W^T A^T, replaced by dZ^T, the gradient at their
    pre-activations; b (C, o), Y (o, n) the targets transposed. values[c] = the loss.
    Three passes, each its own function with one switch (act or kind): LLVM then hoists
    the switch and vectorises; in one function it gives up (2.5x slower)."""
    rows_activation(Z, b, act)
    _output_loss(Z, Y, kind, values)
    _output_gradient(Z, Y, act, kind)


@njit(cache=True, error_model="numpy")
def _output_loss(A, Y, kind, values):
    C, o, n = A.shape
    part = np.empty(4)  # four running sums: one would be a chain of dependent adds
    for c in range(C):
        part[:] = 0.0
        for j in range(o):
            a = A[c, j]
            y = Y[j]
            for r in range(0, n - n % 4, 4):
                for q in range(4):
                    part[q] += loss_term(a[r + q], y[r + q], kind, 0.0)
            for r in range(n - n % 4, n):
                part[0] += loss_term(a[r], y[r], kind, 0.0)
        values[c] = loss_mean((part[0] + part[1]) + (part[2] + part[3]), kind, n)


@njit(cache=True, error_model="numpy")
def _output_gradient(A, Y, act, kind):
    C, o, n = A.shape
    g = np.empty(n, A.dtype)
    for c in range(C):
        for j in range(o):
            a = A[c, j]
            y = Y[j]
            for r in range(n):
                g[r] = loss_grad_term(a[r], y[r], kind, n, 0.0)
            for r in range(n):
                a[r] = derivative(g[r], a[r], act)


@njit(cache=True, error_model="numpy")
def many_bookkeeping(values, epoch, losses, diverged):
    """Record epoch's loss of each configuration (losses (C, E)); one whose loss is not
    finite is frozen from this epoch on (diverged[c] = epoch), later losses NaN."""
    for c in range(values.shape[0]):
        training = diverged[c] < 0
        if training and not np.isfinite(values[c]):
            diverged[c] = epoch
        losses[c, epoch] = values[c] if (training or diverged[c] == epoch) else np.nan


@njit(cache=True, error_model="numpy")
def many_step(P, dP, steps, diverged):
    """P[c] -= steps[c] * dP[c] for the configurations still training; P (C, a, b)."""
    for c in range(P.shape[0]):
        if diverged[c] < 0:
            step = steps[c]
            for k in range(P.shape[1]):
                for j in range(P.shape[2]):
                    P[c, k, j] = update_sgd(P[c, k, j], dP[c, k, j], step)


@njit(cache=True)
def all_finite(a):
    """Whether every element of ``a`` (any shape and layout) is finite."""
    for x in a.flat:
        if not np.isfinite(x):
            return False
    return True


@njit(cache=True)
def finite_copy(a, out):
    """Copy ``a`` into ``out`` (same shape; in ``out``'s dtype); whether every element of
    ``a`` is finite."""
    if a.shape != out.shape:
        raise ValueError("finite_copy: x and out differ in shape")
    finite = True
    if a.ndim == 1:  # (the flat parameters: no flat iterators)
        for i in range(a.shape[0]):
            x = a[i]
            out[i] = x
            finite &= np.isfinite(x)
        return finite
    flat = out.flat
    for i, x in enumerate(a.flat):
        flat[i] = x
        finite &= np.isfinite(x)
    return finite


@njit(cache=True)
def all_finite_pair(a, b):
    """``all_finite(a) and all_finite(b)`` in one call."""
    return all_finite(a) and all_finite(b)
