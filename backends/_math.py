"""The per-element math of every kernel, in one table.

Each activation has a forward expression ``act(z)`` and a derivative taken from its
output, ``dZ = dA * act'(a)``; each loss a per-element term (summed over outputs and
rows, then divided by ``mean``), its gradient with respect to the output (for
``binary_crossentropy``: the logit); each update rule the new value of a parameter.

The entries are functions of a ``Dialect`` and operand strings, and return source text,
in the spirit of tinygrad's ``code_for_op``: the numba kernels (``_numba_kernels.py``,
the generated kernels of ``_numba_codegen``), the CUDA sources and CuPy
``ElementwiseKernel`` bodies (``_cuda_codegen``) are all rendered from it. The NumPy
reference (``base.py``) is written with in-place ufuncs for speed and is checked
against the table's NumPy rendering by ``tests/test_math.py``.

Adding an activation: one entry here, its ufunc formula in ``Backend.activation_forward``
/ ``activation_backward``, then ``python -m nnkit.backends._math`` to re-render the
numba kernels' math (numba's disk cache is keyed by the source file, so that rendering
lives in ``_numba_kernels.py`` itself; a test fails while it is stale).
"""
from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass

import numpy
from typing import Callable


class Dialect:
    """How one target language writes the primitives the formulas use.

    The base spelling is Python's (used by the numba kernels, whose types come from the
    arrays at compile time); subclasses override prefixes and casts only.
    """

    functions = {"exp": "_exp", "log1p": "_log1p", "tanh": "_tanh",
                 "abs": "abs", "max": "max", "sigmoid": "_sigmoid", "log": "math.log",
                 "sqrt": "math.sqrt"}

    def num(self, value: float) -> str:
        """A constant in the data type."""
        return repr(float(value))

    def cast(self, expr: str) -> str:
        """A host-precision expression converted to the data type."""
        return f"({expr})"

    def wide(self, expr: str) -> str:
        """An expression promoted to the float64 accumulator of a loss."""
        return expr

    def call(self, fn: str, *args: str) -> str:
        return f"{self.functions[fn]}({', '.join(args)})"

    def where(self, cond: str, a: str, b: str) -> str:
        return f"({a} if {cond} else {b})"

    # The table's entries in this dialect (the lookups every renderer makes).
    def activation(self, act: str, z: str = "s") -> str:
        return ACTIVATION_MATH[act].forward(self, z)

    def derivative(self, act: str, g: str = "g", a: str = "a") -> str:
        return ACTIVATION_MATH[act].derivative(self, g, a)

    def update(self, p: str, g: str, lr: str, rule: str = "sgd") -> str:
        """The plain update (a rule without state, i.e. sgd) as one expression."""
        (target, expr), = UPDATE_MATH[rule].assigns(self, Operands(p=p, g=g, lr=lr))
        return expr

    def update_lines(self, rule: str, o: "Operands") -> list:
        """``[(target, expr), ...]`` of update rule ``rule``, to run in order (a slot
        assigned first is read at its new value by the later lines)."""
        return [(getattr(o, t), e) for t, e in UPDATE_MATH[rule].assigns(self, o)]


class NumbaGenerated(Dialect):
    """Numba kernels generated for one dtype: ``DT`` is the data type's constructor."""

    # libm's log1p: these kernels' loss loops run over a handful of rows, where its
    # latency beats log1p64's two divisions (a 2-3-1 BCE fit of 8 rows, 2,000 epochs:
    # 413 vs 495 us); log1p64 pays off in the hand-written kernels' long, vectorised loops.
    functions = dict(Dialect.functions, exp="_exp", log1p="math.log1p")

    def num(self, value):
        return f"DT({float(value)!r})"

    def cast(self, expr):
        return f"DT({expr})"

    def wide(self, expr):
        return f"np.float64({expr})"

    def call(self, fn, *args):
        text = super().call(fn, *args)
        return f"DT({text})" if fn in ("sigmoid", "tanh", "sqrt") else text


class Cuda(Dialect):
    """CUDA C with ``T`` the data type (a typedef)."""

    functions = {"exp": "exp", "log1p": "log1p", "tanh": "tanh", "abs": "fabs",
                 "max": "fmax", "sigmoid": "sigmoid_", "log": "log", "sqrt": "sqrt"}

    def num(self, value):
        return f"(T){float(value)!r}"

    def cast(self, expr):
        return f"(T)({expr})"

    def wide(self, expr):
        return f"(double)({expr})"

    def where(self, cond, a, b):
        return f"({cond} ? {a} : {b})"


class Numpy(Dialect):
    """Array expressions over ``np`` (for checking the reference against the table)."""

    functions = {"exp": "np.exp", "log1p": "np.log1p", "tanh": "np.tanh", "abs": "np.abs",
                 "max": "np.maximum", "sigmoid": "sigmoid", "log": "np.log", "sqrt": "np.sqrt"}

    def where(self, cond, a, b):
        return f"np.where({cond}, {a}, {b})"


Expr = Callable[..., str]


@dataclass(frozen=True)
class Activation:
    forward: Expr      # (d, z) -> act(z)
    derivative: Expr   # (d, g, a) -> g * act'(z), from the output a = act(z)


@dataclass(frozen=True)
class Loss:
    """A loss by its per-element term and gradient. A ``rowwise`` loss (softmax
    cross-entropy) also needs one statistic per row: ``r`` is then the row's
    log-sum-exp of the logits, ``max_j z_j + log(sum_j exp(z_j - max_j z_j))``, which
    every renderer computes in a pass before the terms (``ROW_LSE``)."""

    term_of: Expr      # (d, z, y, r) -> one output's contribution to the summed loss
    grad_of: Expr      # (d, z, y, r, n) -> d loss / d z for a batch of n rows
    mean: Expr         # (d, total, n) -> the loss from the summed terms of n rows
    residual: Expr | None = None  # (d, z, y) -> a subexpression r both may share
    rowwise: bool = False

    def term(self, d, z, y, r=None):
        """The term, with the residual inline unless ``r`` names it."""
        return self.term_of(d, z, y, r or self.inline_residual(d, z, y))

    def grad(self, d, z, y, n, r=None):
        return self.grad_of(d, z, y, r or self.inline_residual(d, z, y), n)

    def inline_residual(self, d, z, y):
        if self.rowwise:  # a statistic of the whole row: the renderer names it r
            return "r"
        return None if self.residual is None else f"({self.residual(d, z, y)})"


@dataclass(frozen=True)
class Operands:
    """The names an update rule's lines use: parameter ``p``, gradient ``g`` (L2 already
    added), state slots ``s1``/``s2``, rate ``lr``; hyperparameters ``h1`` (momentum or
    beta1), ``h2`` (beta2), ``h3`` (eps); Adam's bias corrections at step t,
    ``c1 = 1 - beta1**t`` and ``c2 = sqrt(1 - beta2**t)``."""

    p: str = "p"
    g: str = "g"
    s1: str = "s1"
    s2: str = "s2"
    lr: str = "lr"
    h1: str = "h1"
    h2: str = "h2"
    h3: str = "h3"
    c1: str = "c1"
    c2: str = "c2"


@dataclass(frozen=True)
class Update:
    slots: int         # state arrays per parameter (velocity; Adam's two moments)
    assigns: Expr      # (d, o: Operands) -> [(target "p"/"s1"/"s2", expr), ...] in order


def _sigmoid_exp(d, z):
    return d.call("exp", f"-{d.call('abs', z)}")


def _sigmoid_ratio(d, z, e):
    # exp(min(z, 0)) / (1 + exp(-|z|)): never overflows, accurate in both tails
    return f"{d.where(f'{z} >= {d.num(0)}', d.num(1), e)} / ({d.num(1)} + {e})"


def sigmoid_lines(d, z="z", e="e"):
    """The sigmoid as two statements' right-hand sides: ``e = ...; return ...``."""
    return _sigmoid_exp(d, z), _sigmoid_ratio(d, z, e)


def _bce_term(d, z, y):
    # softplus(z) - y z as (max(z, 0) - y z) + log1p(exp(-|z|)): no overflow, and no
    # cancellation between large sums; the log1p part in the float64 accumulator
    linear_part = d.wide(f"{d.call('max', z, d.num(0))} - {y} * {z}")
    soft_part = d.call("log1p", d.call("exp", "-" + d.call("abs", d.wide(z))))
    return f"{linear_part} + {soft_part}"


ACTIVATION_MATH = {
    "linear": Activation(lambda d, z: z, lambda d, g, a: g),
    "sigmoid": Activation(lambda d, z: d.call("sigmoid", z),
                          lambda d, g, a: f"({a} - {a} * {a}) * {g}"),
    "tanh": Activation(lambda d, z: d.call("tanh", z),
                       lambda d, g, a: f"({d.num(1)} - {a} * {a}) * {g}"),
    "relu": Activation(lambda d, z: d.where(f"{z} > {d.num(0)}", z, d.num(0)),
                       lambda d, g, a: d.where(f"{a} > {d.num(0)}", g, d.num(0))),
}

LOSS_MATH = {
    "squared_error": Loss(lambda d, z, y, r: f"{r} * {r}",
                          lambda d, z, y, r, n: f"{r} / {d.cast(n)}",
                          lambda d, total, n: f"{total} / (2 * {n})",
                          residual=lambda d, z, y: f"{z} - {y}"),
    "mse": Loss(lambda d, z, y, r: f"{r} * {r}",
                lambda d, z, y, r, n: f"{r} * {d.cast(f'2.0 / {n}')}",
                lambda d, total, n: f"{total} / {n}",
                residual=lambda d, z, y: f"{z} - {y}"),
    # On logits; the gradient with respect to the logit is sigmoid(z) - y.
    "binary_crossentropy": Loss(
        lambda d, z, y, r: _bce_term(d, z, y),
        lambda d, z, y, r, n: f"({d.call('sigmoid', z)} - {y}) / {d.cast(n)}",
        lambda d, total, n: f"{total} / {n}"),
    # On logits, r the row's log-sum-exp: -y log softmax(z) = y (lse - z); the gradient
    # with respect to the logit is softmax(z) - y = exp(z - lse) - y.
    "categorical_crossentropy": Loss(
        lambda d, z, y, r: d.wide(f"{y} * ({r} - {z})"),
        lambda d, z, y, r, n: f"({d.call('exp', f'{z} - {r}')} - {y}) / {d.cast(n)}",
        lambda d, total, n: f"{total} / {n}", rowwise=True),
}

# torch.optim.SGD (dampening 0; the velocity starts at 0, so the first step is g) and
# torch.optim.Adam (bias-corrected, eps outside the square root), from their formulas.
UPDATE_MATH = {
    "sgd": Update(0, lambda d, o: [("p", f"{o.p} - {o.lr} * {o.g}")]),
    "momentum": Update(1, lambda d, o: [("s1", f"{o.h1} * {o.s1} + {o.g}"),
                                        ("p", f"{o.p} - {o.lr} * {o.s1}")]),
    "nesterov": Update(1, lambda d, o: [
        ("s1", f"{o.h1} * {o.s1} + {o.g}"),
        ("p", f"{o.p} - {o.lr} * ({o.g} + {o.h1} * {o.s1})")]),
    "adam": Update(2, lambda d, o: [
        ("s1", f"{o.h1} * {o.s1} + ({d.num(1)} - {o.h1}) * {o.g}"),
        ("s2", f"{o.h2} * {o.s2} + ({d.num(1)} - {o.h2}) * {o.g} * {o.g}"),
        ("p", f"{o.p} - ({o.lr} / {o.c1}) * {o.s1} / "
              f"({d.call('sqrt', o.s2)} / {o.c2} + {o.h3})")]),
}


def decay(d, g, p, l2):
    """The gradient with L2 (torch's coupled weight_decay): weights only, never biases."""
    return f"{g} + {l2} * {p}"


def row_lse_parts(d, z, m, s):
    """The pieces of a row's log-sum-exp: the term summed, ``exp(z - max)``, and the
    statistic from the max ``m`` and that sum ``s``."""
    return d.call("exp", f"{z} - {m}"), f"{m} + {d.call('log', s)}"

ACTIVATIONS = tuple(ACTIVATION_MATH)
#: What a layer may ask for: the kernels' activations, and softmax, which exists only as
#: the output of categorical_crossentropy (the kernels see logits, "linear").
LAYER_ACTIVATIONS = ACTIVATIONS + ("softmax",)
LOSSES = tuple(LOSS_MATH)
UPDATES = tuple(UPDATE_MATH)
# Integer codes that compiled kernels use for the names above (their position).
ACTIVATION_CODES = {name: i for i, name in enumerate(ACTIVATIONS)}
LOSS_CODES = {name: i for i, name in enumerate(LOSSES)}
UPDATE_CODES = {name: i for i, name in enumerate(UPDATES)}


def array_function(expr, *args, xp, sigmoid):
    """The table entry ``expr`` as a Python function of arrays ``args`` on array module
    ``xp`` (NumPy or CuPy); ``sigmoid`` is the backend's array sigmoid."""
    source = f"lambda {', '.join(args)}: {expr(Numpy(), *args)}"
    return eval(source, {"np": xp, "sigmoid": sigmoid})  # noqa: S307 - our own table


def row_lse_array(z, xp, axis=-1):
    """The log-sum-exp of ``z`` along ``axis`` (kept as a length-1 axis), from the
    table's pieces: max subtracted, finite for any finite z."""
    exp_shifted, lse = _row_lse_functions(xp)
    m = xp.max(z, axis=axis, keepdims=True)
    s = xp.sum(exp_shifted(z, m), axis=axis, keepdims=True)
    # in float64 (one value per row): m + log(s) rounded to float32 at |z| ~ 500 would
    # cost 1e-5 of every z - lse, which the kernels (float64 row statistics) do not lose
    return lse(m.astype(numpy.float64), s.astype(numpy.float64))


@functools.lru_cache(maxsize=None)
def _row_lse_functions(xp):
    """``(exp(z - m), lse(m, s))`` of ``row_lse_parts`` as array functions of ``xp``,
    compiled once per array module."""
    e, lse = row_lse_parts(Numpy(), "z", "m", "s")
    namespace = {"np": xp}
    return (eval(f"lambda z, m: {e}", namespace),  # noqa: S307 - our own table
            eval(f"lambda m, s: {lse}", namespace))  # noqa: S307


def loss_array_functions(kind, xp, sigmoid, axis=-1):
    """``(term_and_grad(z, y, n) -> (terms, grad), mean(total, n))`` of loss ``kind`` on
    arrays, the shared residual computed once; a rowwise loss's rows run along
    ``axis`` (the outputs' axis)."""
    loss, d = LOSS_MATH[kind], Numpy()
    r = "r" if loss.residual is not None or loss.rowwise else None
    body = f"({loss.term(d, 'z', 'y', r)}, {loss.grad(d, 'z', 'y', 'n', r)})"
    if loss.rowwise:
        body = f"(lambda r: {body})(lse(z))"
    elif r is not None:
        body = f"(lambda r: {body})({loss.residual(d, 'z', 'y')})"
    namespace = {"np": xp, "sigmoid": sigmoid,
                 "lse": lambda z: row_lse_array(z, xp, axis)}
    return (eval(f"lambda z, y, n: {body}", namespace),  # noqa: S307 - our own table
            eval(f"lambda total, n: {loss.mean(d, 'total', 'n')}", namespace))  # noqa: S307


def update_array_function(rule, xp):
    """Update rule ``rule`` as ``f(p, g, s1, s2, lr, h1, h2, h3, c1, c2)`` on arrays of
    array module ``xp``, updating p and the slots in place (NumPy, CuPy)."""
    lines = [f"    {t}[...] = {e}" for t, e in Numpy().update_lines(rule, Operands())]
    source = "def update(p, g, s1, s2, lr, h1, h2, h3, c1, c2):\n" + "\n".join(lines)
    namespace = {"np": xp}
    exec(source, namespace)  # noqa: S102 - our own table
    return namespace["update"]


def code_name(name):
    """The constant a kernel uses for a code: ``binary_crossentropy`` -> BINARY_CROSSENTROPY."""
    return name.upper()


def switch(codes, var, cases, indent="    ", fallthrough="return"):
    """Python lines choosing ``cases[name]`` by ``var == CODE``; the last case is the
    fall-through, so every path returns (numba needs one return type)."""
    names = list(codes)
    lines = []
    for name in names[:-1]:
        lines.append(f"{indent}if {var} == {code_name(name)}:")
        lines.append(f"{indent}    {fallthrough} {cases[name]}")
    lines.append(f"{indent}{fallthrough} {cases[names[-1]]}  # {names[-1]}")
    return lines


# --- the numba kernels' math, rendered into _numba_kernels.py -------------------------
_BEGIN = "# --- rendered from _math.py by `python -m nnkit.backends._math`: do not edit ---"
_END = "# --- end of rendered math ---"
_DECORATOR = '@njit(cache=True, inline="always", error_model="numpy")'


def numba_math_source():
    """The rendered block of ``_numba_kernels.py``: codes, sigmoid64, and per-element
    activate/derivative/loss_term/loss_mean/loss_grad_term/update_sgd by runtime code."""
    d = Dialect()
    out = [_BEGIN]
    out.append(", ".join(code_name(a) for a in ACTIVATIONS) + " = "
               + ", ".join(str(ACTIVATION_CODES[a]) for a in ACTIVATIONS))
    out.append(", ".join(code_name(x) for x in LOSSES) + " = "
               + ", ".join(str(LOSS_CODES[x]) for x in LOSSES))
    out.append(", ".join(code_name(x) for x in UPDATES) + " = "
               + ", ".join(str(UPDATE_CODES[x]) for x in UPDATES))
    e, ratio = sigmoid_lines(_Exp64Dialect())
    out += ["", "", _DECORATOR, "def sigmoid64(z):",
            '    """exp(min(z, 0)) / (1 + exp(-|z|)) in float64: the reference formula."""',
            f"    e = {e}", f"    return {ratio}"]

    def function(signature, doc, codes, var, cases):
        return ["", "", _DECORATOR, f"def {signature}:", f'    """{doc}"""',
                *switch(codes, var, cases)]

    out += function("activate(z, act)", "act(z) for one element.", ACTIVATIONS, "act",
                    {a: ACTIVATION_MATH[a].forward(d, "z") for a in ACTIVATIONS})
    out += function("derivative(g, a, act)",
                    "dZ from dA (g) and the activation's output (a), for one element.",
                    ACTIVATIONS, "act",
                    {a: ACTIVATION_MATH[a].derivative(d, "g", "a") for a in ACTIVATIONS})
    def r_of(x):  # a rowwise loss reads its row statistic from the argument r
        return "r" if LOSS_MATH[x].rowwise else None
    out += function("loss_term(z, y, kind, r)",
                    "One output's contribution to the summed loss (BCE, CE: z is the logit; "
                    "r: the row's log-sum-exp for CE).",
                    LOSSES, "kind", {x: LOSS_MATH[x].term(d, "z", "y", r_of(x)) for x in LOSSES})
    out += function("loss_mean(total, kind, nb)",
                    "The loss from the summed loss_term of nb rows.", LOSSES, "kind",
                    {x: LOSS_MATH[x].mean(d, "total", "nb") for x in LOSSES})
    out += function("loss_grad_term(z, y, kind, nb, r)",
                    "d loss / d z for one output of a batch of nb rows.", LOSSES, "kind",
                    {x: LOSS_MATH[x].grad(d, "z", "y", "nb", r_of(x)) for x in LOSSES})
    out += ["", "", _DECORATOR, "def update_sgd(p, g, lr):",
            '    """One sgd update of one parameter p with gradient g."""',
            f"    return {d.update('p', 'g', 'lr')}"]
    out += ["", "", _DECORATOR,
            "def update_param(p, g, s1, s2, rule, lr, h1, h2, h3, c1, c2):",
            '    """One update of parameter p (gradient g, L2 included) by update rule code '
            '`rule`;\n    returns (p, s1, s2), the new parameter and state slots."""']
    for i, rule in enumerate(UPDATES):
        body = [f"{t} = {e}" for t, e in d.update_lines(rule, Operands())]
        guard = (f"    if rule == {code_name(rule)}:" if i < len(UPDATES) - 1
                 else f"    # {rule}")
        indent = "        " if i < len(UPDATES) - 1 else "    "
        out += [guard] + [indent + line for line in body] + [indent + "return p, s1, s2"]
    out.append(_END)
    return "\n".join(out) + "\n"


class _Exp64Dialect(Dialect):
    functions = dict(Dialect.functions, exp="exp64")


def _kernels_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_kernels.py")


def rendered_block(text):
    """The rendered block inside ``_numba_kernels.py``'s text (markers included)."""
    m = re.search(re.escape(_BEGIN) + r".*?" + re.escape(_END) + r"\n", text, re.S)
    if m is None:
        raise ValueError("_numba_kernels.py has no rendered-math block")
    return m.group(0)


def render_numba_kernels(write=False):
    """True when ``_numba_kernels.py`` holds the current rendering; with ``write``,
    rewrite its block (then True)."""
    path = _kernels_path()
    with open(path) as fh:
        text = fh.read()
    current, wanted = rendered_block(text), numba_math_source()
    if current == wanted:
        return True
    if write:
        with open(path, "w") as fh:
            fh.write(text.replace(current, wanted))
        return True
    return False


if __name__ == "__main__":
    changed = not render_numba_kernels()
    render_numba_kernels(write=True)
    print("_numba_kernels.py: " + ("re-rendered" if changed else "already up to date"),
          file=sys.stderr)
