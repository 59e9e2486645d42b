"""The kernel interface: one small class that is also the working NumPy reference.

Every method works on the backend's own arrays (``self.xp``). A backend subclass
overrides only what it speeds up; everything else runs this code with its ``xp``.

Conventions (shapes): ``X`` (n, n_in), ``W`` (n_in, n_out), ``b`` (n_out,),
``A``/``Z``/``dZ`` (n, n_out). Losses are means over samples of the per-sample
loss summed over outputs. For ``binary_crossentropy`` the kernels work on
*logits*: ``Yhat`` is the output layer's pre-activation Z and the sigmoid is
applied only for prediction, which keeps the loss finite for any z.
"""
from __future__ import annotations

import contextlib
import functools
import contextvars
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy

from ._math import (ACTIVATIONS, LOSS_MATH, LOSSES, UPDATE_MATH, UPDATES,
                    loss_array_functions, row_lse_array, update_array_function)


@dataclass(frozen=True)
class ModelSpec:
    """What the kernels need to know of a network: ``sizes`` (n_in, h1, ..., n_out),
    the kernel ``activations`` per layer (for ``binary_crossentropy`` the last is
    ``"linear"``: the loss takes logits), the ``loss`` and the ``dtype`` name."""

    sizes: tuple
    activations: tuple
    loss: str
    dtype: str
    update: str = "sgd"  # the update rule (UPDATE_MATH) a training call applies
    l2: bool = False     # whether it adds L2

    @property
    def plain(self) -> bool:
        """sgd without L2: what every path trains."""
        return self.update == "sgd" and not self.l2

    @property
    def rowwise(self) -> bool:
        """A loss with a per-row statistic (softmax cross-entropy)."""
        return LOSS_MATH[self.loss].rowwise

    @functools.cached_property
    def weights(self) -> int:
        """Number of weights (not biases) of one network."""
        return sum(a * b for a, b in zip(self.sizes, self.sizes[1:]))

    @functools.cached_property
    def units(self) -> int:
        """Number of units (outputs of every layer) of one network."""
        return sum(self.sizes[1:])

    @classmethod
    def of(cls, params, activations, loss, update="sgd", l2=False):
        """The spec of ``[(W, b), ...]`` (W (i, o) or stacked (C, i, o))."""
        sizes = (params[0][0].shape[-2],) + tuple(W.shape[-1] for W, _ in params)
        return cls(sizes, tuple(activations), loss, numpy.dtype(params[0][0].dtype).name,
                   update, bool(l2))


@dataclass(frozen=True)
class UpdateSettings:
    """An update rule with its hyperparameters (h1, h2, h3: momentum or beta1, beta2,
    eps) and L2 coefficient: what ``nnkit.SGD`` / ``nnkit.Adam`` and ``fit(l2=)`` mean
    to a backend."""

    rule: str = "sgd"
    hyper: tuple = (0.0, 0.0, 0.0)
    l2: float = 0.0

    def state(self, backend, params) -> "OptimizerState":
        """Fresh state (zero slots, t = 0) for ``params`` on ``backend``."""
        return OptimizerState(backend, params, self.rule, self.hyper, self.l2)


class OptimizerState:
    """An update rule, its settings and its state for one set of parameters.

    ``rule``: a name of ``UPDATES``; ``hyper`` float64 (h1, h2, h3, l2): momentum or
    beta1, beta2, eps, and the L2 coefficient; ``t`` int64 (1,): updates made so far
    (kernels increment it); ``s1``/``s2``: ``[(SW, Sb), ...]`` state slots shaped like
    the parameters (velocity; Adam's first and second moments), zero-size arrays of the
    same ndim where the rule keeps fewer slots (so kernels get uniform arguments).
    """

    def __init__(self, backend, params, rule="sgd", hyper=(0.0, 0.0, 0.0), l2=0.0):
        if rule not in UPDATE_MATH:
            raise ValueError(f"optimizer: expected one of {UPDATES}, got {rule!r}")
        self.rule = rule
        self.hyper = numpy.array([*hyper, l2], dtype=numpy.float64)
        self.t = numpy.zeros(1, dtype=numpy.int64)
        k = UPDATE_MATH[rule].slots

        def slot(i, a):
            return backend.zeros(a.shape if i < k else (0,) * a.ndim, a.dtype)
        self.s1 = [(slot(0, W), slot(0, b)) for W, b in params]
        self.s2 = [(slot(1, W), slot(1, b)) for W, b in params]
        # the slots the rule keeps, made once (they are updated in place, never replaced)
        self._arrays = [a for pairs in (self.s1, self.s2)[:k] for pair in pairs for a in pair]

    @property
    def l2(self) -> float:
        return self.hyper.item(3)  # (a Python float; fit reads it at every call)

    @property
    def plain(self) -> bool:
        """True for sgd without L2: the update is ``p -= lr * g``, nothing more."""
        return self.rule == "sgd" and self.hyper[3] == 0.0

    def arrays(self) -> list:
        """Every state array the rule keeps (not the zero-size placeholders), in a fixed
        order: s1's (W, b) per layer, then s2's."""
        return self._arrays

    def advance(self) -> dict:
        """Count one update (``t += 1``) and return the scalars the rule reads at it:
        h1, h2, h3, and Adam's bias corrections c1 = 1 - beta1**t, c2 = sqrt(1 - beta2**t)
        (host floats: array code and kernel launches take them without a sync)."""
        self.t[0] += 1
        t = int(self.t[0])
        h1, h2, h3 = (float(h) for h in self.hyper[:3])
        return {"h1": h1, "h2": h2, "h3": h3, "c1": 1.0 - h1 ** t,
                "c2": math.sqrt(1.0 - h2 ** t)}  # (the compiled kernels' sqrt, to the bit)


Array = Any  # the backend's own array type (numpy.ndarray, cupy.ndarray, ...)

#: Set (by ``Network.fit``'s Ctrl-C handler) to ask epoch loops run from Python to stop
#: at the end of the current epoch; compiled multi-epoch calls finish their slice.
STOP_REQUESTED = threading.Event()
CALLS = ("step", "epochs", "sweep")  # the training calls a backend plans a path for
MAX_PLANNED_EPOCHS = 2**62  # more epochs than any run plans for (see choose_path)

# {backend name: path} forced by Backend.use_path, and the records of the open blocks.
_NOTHING_FORCED = {}
_FORCED = contextvars.ContextVar("nnkit_forced_paths", default=_NOTHING_FORCED)
_RECORDS = contextvars.ContextVar("nnkit_path_records", default=())


@dataclass
class PathRecord:
    """The (call, path) pairs that ran inside a ``Backend.use_path`` block."""

    ran: list = field(default_factory=list)

    def paths(self, call=None):
        """The set of paths that ran (for ``call`` only, if given)."""
        return {p for c, p in self.ran if call is None or c == call}


def batch_or_full(batch_size, rows):
    """``batch_size`` as the paths take it: None (full batch) where it is None or at least
    ``rows``, else an int."""
    return None if batch_size is None or batch_size >= rows else int(batch_size)


class TrainState:
    """Parameters and reusable buffers of one network on one backend.

    ``params`` is a list of ``(W, b)`` backend arrays, updated in place.
    ``activations`` are the kernel activations per layer (for
    ``binary_crossentropy`` the last one is ``"linear"``: the loss takes logits).
    """

    def __init__(self, backend, params, activations, loss):
        self.backend = backend
        self.params = list(params)
        self.activations = tuple(activations)
        self.loss = loss
        self.dtype = params[0][0].dtype
        self.spec = ModelSpec.of(self.params, self.activations, loss)
        self.steps = {}  # batch rows -> the backend's prepared step (Backend.train_step)
        self.runs = {}  # (path, rows, batch_size) -> prepared epochs (Backend.prepare_epochs)
        self.settled = {}  # (rows, batch_size) -> a run whose plan no longer changes
        self.epochs_prepared = 0  # epochs prepare_epochs planned since the optimizer was set
        self._buffers = {}
        self.opt = OptimizerState(backend, self.params)

    def set_optimizer(self, opt):
        """Train with ``opt`` (an ``OptimizerState`` of these parameters) from now on."""
        self.opt = opt
        self.spec = ModelSpec.of(self.params, self.activations, self.loss, opt.rule,
                                 opt.l2 != 0.0)
        self.steps = {}
        self.runs = {}
        self.settled = {}
        self.epochs_prepared = 0
        for buf in self._buffers.values():
            buf.cache.clear()

    def runner(self, path, rows, batch_size):
        """The backend's ``epochs_runner`` for ``path`` on ``rows`` samples in batches of
        ``batch_size`` (None, or at least ``rows``: full batch), made once per optimizer
        (see ``Backend.prepare_epochs``)."""
        batch_size = batch_or_full(batch_size, rows)
        key = (path, rows, batch_size)
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = self.backend.epochs_runner(path, self, rows, batch_size)
        return run

    def buffers(self, n):
        """Buffers for a batch of ``n`` rows, allocated once per batch size."""
        buf = self._buffers.get(n)
        if buf is None:
            buf = _Buffers(self.backend, self.params, n, self.dtype)
            self._buffers[n] = buf
        return buf


class _Buffers:
    """Per-layer activations A, upstream gradients G (dA), dZ and parameter grads."""

    def __init__(self, backend, params, n, dtype):
        self.A = [backend.empty((n, W.shape[1]), dtype) for W, _ in params]
        self.G = [backend.empty((n, W.shape[1]), dtype) for W, _ in params]
        self.dZ = [backend.empty((n, W.shape[1]), dtype) for W, _ in params]
        self.grads = [(backend.empty(W.shape, dtype), backend.empty(b.shape, dtype))
                      for W, b in params]
        self.scratch = backend.empty((n, params[-1][0].shape[1]), dtype)
        in_dim = params[0][0].shape[0]
        self.Xb = backend.empty((n, in_dim), dtype)
        self.Yb = backend.empty((n, params[-1][0].shape[1]), dtype)
        # What a backend derives from these buffers once (kernel argument tuples and the
        # like), by a key of its choosing.
        self.cache = {}


class Backend:
    """NumPy reference implementation of the whole kernel interface."""

    name = "numpy"
    #: This backend's named execution paths and the calls (``CALLS``) each can run.
    #: ``plan`` picks one per call; ``use_path`` forces one (tests, benchmarks).
    paths = {"reference": CALLS}

    def __init__(self):
        self.xp = numpy
        self._local = threading.local()

    def _scratch(self, shape, dtype):
        """A reusable temporary array, one per thread, shape and dtype."""
        cache = getattr(self._local, "scratch", None)
        if cache is None or len(cache) > 32:
            cache = self._local.scratch = {}
        key = (tuple(shape), dtype)  # (str(dtype) costs microseconds)
        buf = cache.get(key)
        if buf is None:
            buf = cache[key] = self.xp.empty(shape, dtype=dtype)
        return buf

    def _ones(self, n, dtype):
        """A vector of n ones (for column sums by matmul; never written), kept per
        thread (as ``_scratch``: a thread's device), n and dtype."""
        cache = getattr(self._local, "ones", None)
        if cache is None or len(cache) > 8:
            cache = self._local.ones = {}
        key = (n, dtype)
        ones = cache.get(key)
        if ones is None:
            ones = cache[key] = self.xp.ones(n, dtype=dtype)
        return ones

    # ------------------------------------------------------------------- paths
    def choose_path(self, call: str, spec: ModelSpec, rows: int, batch_size: int | None,
                    configs: int, epochs: int) -> str:
        """This backend's planning function: the path for ``call`` by size (overridden
        by backends with more than one path). For "epochs" the choice may change with
        ``epochs`` only once as they grow: a choice that equals the one for
        ``MAX_PLANNED_EPOCHS`` holds for every longer run (``prepare_epochs`` keeps it)."""
        return "reference"

    def supports(self, path: str, spec: ModelSpec) -> bool:
        """Whether ``path`` can train a network of ``spec`` (its loss, update rule and
        L2); ``choose_path`` only picks such paths. By default every path can."""
        return True

    def planning_thresholds(self) -> dict:
        """The size limits ``choose_path`` compares against, by name (for reports such as
        ``nnkit bench --scaling``); empty for a backend with one path per call."""
        return {}

    def plan(self, call: str, spec: ModelSpec, rows: int, batch_size: int | None = None,
             configs: int = 1, epochs: int = 1) -> str:
        """The named path ``call`` ("step", "epochs" or "sweep") takes for a network of
        ``spec`` on ``rows`` samples: the one forced by ``use_path`` where it can run
        ``call``, else ``choose_path``'s. ``batch_size`` None is full batch."""
        if call not in CALLS:
            raise ValueError(f"call: expected one of {CALLS}, got {call!r}")
        forced = _FORCED.get().get(self.name)
        if forced is not None and call in self.paths[forced]:
            if not self.supports(forced, spec):
                raise ValueError(
                    f"path: the {self.name} backend's {forced!r} path cannot train loss "
                    f"{spec.loss!r} with update {spec.update!r}"
                    + (" and L2" if spec.l2 else ""))
            return forced
        return self.choose_path(call, spec, rows, batch_size, configs, epochs)

    def _dispatch(self, call, spec, rows, batch_size=None, configs=1, epochs=1):
        """``plan`` for a call about to run; records it for open ``use_path`` blocks."""
        path = self.plan(call, spec, rows, batch_size, configs, epochs)
        records = _RECORDS.get()
        if records:
            for name, record in records:
                if name == self.name:
                    record.ran.append((call, path))
        return path

    @contextlib.contextmanager
    def use_path(self, path: str, record: bool = True):
        """Within the block, every call that ``path`` can run takes it (other calls are
        planned as usual); yields a ``PathRecord`` of the (call, path) pairs this backend
        ran (``record=False``: none kept, for long runs). The setting is a contextvar: it
        holds in this thread (and asyncio task) only; a thread started inside the block
        plans as usual. A forced path that cannot run a particular call (say full-batch
        only, on mini-batches) raises ValueError when that call is made."""
        if path not in self.paths:
            raise ValueError(f"path: the {self.name} backend's paths are "
                             f"{tuple(self.paths)}, got {path!r}")
        ran = PathRecord()
        forced = _FORCED.set({**_FORCED.get(), self.name: path})
        records = _RECORDS.set(_RECORDS.get() + ((self.name, ran),)) if record else None
        try:
            yield ran
        finally:
            if records is not None:
                _RECORDS.reset(records)
            _FORCED.reset(forced)

    # ----------------------------------------------------------------- arrays
    def asarray(self, x, dtype=None) -> Array:
        """Copy/convert ``x`` (NumPy or own array) to a C-contiguous backend array."""
        return self.xp.ascontiguousarray(self.xp.asarray(x, dtype=dtype))

    def to_numpy(self, x: Array) -> numpy.ndarray:
        """Return ``x`` as a NumPy array (no copy when it already is one)."""
        return numpy.asarray(x)

    def empty(self, shape: tuple, dtype) -> Array:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple, dtype) -> Array:
        return self.xp.zeros(shape, dtype=dtype)

    def is_own_array(self, x) -> bool:
        """True when ``x`` is an array this backend computes on without conversion."""
        return isinstance(x, numpy.ndarray)

    def device(self) -> str:
        """A short description of where this backend computes."""
        return "cpu"

    def synchronize(self) -> None:
        """Wait until queued device work is done (a no-op on CPU backends).
        Benchmarks call it before reading a clock."""

    def gemm(self, a: Array, b: Array, out: Array) -> Array:
        """out = a @ b (2-D) by the BLAS this backend's training kernels call, so that
        benchmarks can time a step's matmuls alone with the library the step uses."""
        return self.xp.matmul(a, b, out=out)

    def versions(self) -> dict:
        """Package versions this backend runs on, for ``nnkit info``."""
        return {"numpy": numpy.__version__}

    def info_lines(self) -> list:
        """Extra facts for ``nnkit info`` (cache directories and the like)."""
        return []

    # ------------------------------------------------------------ activations
    def activation_forward(self, Z: Array, activation: str, out: Array | None = None) -> Array:
        """``act(Z)``, elementwise; ``out`` may be ``Z`` itself."""
        xp = self.xp
        if out is None:
            out = xp.empty_like(Z)
        if activation == "sigmoid":
            xp.negative(Z, out=out)
            self._sigmoid_of_negated(out)
        elif activation == "tanh":
            xp.tanh(Z, out=out)
        elif activation == "relu":
            xp.maximum(Z, 0, out=out)
        elif activation == "linear":
            if out is not Z:
                xp.copyto(out, Z)
        else:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        return out

    def dense_forward(self, X: Array, W: Array, b: Array, activation: str,
                      out: Array | None = None) -> Array:
        """Fused ``act(X @ W + b)``: X (n, i), W (i, o), b (o,) -> (n, o)."""
        xp = self.xp
        out = xp.matmul(X, W, out=out)
        if activation == "sigmoid":  # -(XW + b) made by the pass that adds the bias
            negated_b = self._scratch(b.shape, b.dtype)
            xp.negative(b, out=negated_b)
            xp.subtract(negated_b, out, out=out)
            return self._sigmoid_of_negated(out)
        out += b
        return self.activation_forward(out, activation, out=out)

    def _sigmoid_of_negated(self, T: Array) -> Array:
        """``T = 1 / (1 + exp(T))`` in place: the sigmoid of ``-T``.

        Accurate to a few ulp in both tails; where exp overflows (sigmoid's argument
        below about -88.7 in float32, -709 in float64) the sigmoid is under the smallest
        normal number and this gives 0. The kernels' table formula (``_math``: one exp
        of -|z|, never overflows) agrees to a few ulp; this one takes NumPy 4 passes
        instead of 8 (the 784-256-10 step, batch 512, float32: 2.55 -> 2.25 ms here)."""
        xp = self.xp
        with numpy.errstate(over="ignore"):
            xp.exp(T, out=T)
        T += 1
        return xp.reciprocal(T, out=T)

    def activation_backward(self, dA: Array, A: Array, activation: str,
                            out: Array | None = None) -> Array:
        """``dZ = dA * act'(A)``, the derivative taken from the output A.

        sigmoid: a(1-a); tanh: 1-a^2; relu: 1 where a > 0 else 0 (so 0 at z = 0);
        linear: 1. ``out`` may be ``dA`` or ``A`` itself.
        """
        xp = self.xp
        if out is None:
            out = xp.empty_like(A)
        if out is dA or out is A:  # computed in a scratch buffer, then copied
            result = self.activation_backward(dA, A, activation,
                                              out=self._scratch(A.shape, A.dtype))
            xp.copyto(out, result)
            return out
        if activation == "sigmoid":
            xp.multiply(A, A, out=out)
            xp.subtract(A, out, out=out)
            out *= dA
        elif activation == "tanh":
            xp.multiply(A, A, out=out)
            xp.subtract(1, out, out=out)
            out *= dA
        elif activation == "relu":
            xp.greater(A, 0, out=out)
            out *= dA
        elif activation == "linear":
            xp.copyto(out, dA)
        else:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        return out

    def dense_backward(self, dZ: Array, X: Array, W: Array, need_dX: bool = True,
                       dW: Array | None = None, db: Array | None = None,
                       dX: Array | None = None) -> tuple:
        """``dW = X^T dZ`` (i, o), ``db = sum_rows dZ`` (o,), ``dX = dZ W^T`` (n, i) or None."""
        xp = self.xp
        dW = xp.matmul(X.T, dZ, out=dW)
        # 1^T dZ by BLAS's gemv rather than sum(axis=0): the 784-256-10 step (batch 512,
        # float32) took 0.03-0.15 ms less here (the two sums alone: 70 vs 11 us).
        db = xp.matmul(self._ones(dZ.shape[0], dZ.dtype), dZ, out=db)
        if need_dX:
            dX = xp.matmul(dZ, W.T, out=dX)
        else:
            dX = None
        return dW, db, dX

    # ------------------------------------------------------------------ losses
    def loss(self, Yhat: Array, Y: Array, kind: str, out: Array | None = None) -> Array:
        """Mean over samples of the summed per-sample loss, as a 0-d backend value.

        ``out`` is an optional scratch array of Yhat's shape (avoids allocation).
        """
        xp = self.xp
        n = Yhat.shape[0]
        if out is None:
            out = xp.empty_like(Yhat)
        if kind in ("squared_error", "mse"):
            xp.subtract(Yhat, Y, out=out)
            total = xp.vdot(out, out)
            return total / (2 * n) if kind == "squared_error" else total / n
        if kind == "binary_crossentropy":
            # (max(z, 0) - y z) + log1p(exp(-|z|)) per element: softplus(z) - y z without
            # overflow, and without cancellation between large sums.
            t = self._scratch(Yhat.shape, Yhat.dtype)
            xp.multiply(Y, Yhat, out=t)
            xp.maximum(Yhat, 0, out=out)
            out -= t
            xp.abs(Yhat, out=t)
            xp.negative(t, out=t)
            xp.exp(t, out=t)
            xp.log1p(t, out=t)
            out += t
            total = xp.sum(out)
            return total / n
        if kind == "categorical_crossentropy":
            # y (lse - z) per element, lse the row's log-sum-exp with the max subtracted
            lse = row_lse_array(Yhat, xp)
            xp.subtract(lse, Yhat, out=out)
            out *= Y
            return xp.sum(out) / n
        raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")

    def loss_grad(self, Yhat: Array, Y: Array, kind: str, out: Array | None = None) -> Array:
        """d loss / d Yhat, shape (n, o); for binary_crossentropy d loss / d logits."""
        xp = self.xp
        n = Yhat.shape[0]
        if kind == "squared_error":
            out = xp.subtract(Yhat, Y, out=out)
            out /= n
        elif kind == "mse":
            out = xp.subtract(Yhat, Y, out=out)
            out *= 2.0 / n
        elif kind == "binary_crossentropy":
            out = self.activation_forward(Yhat, "sigmoid", out=out)
            out -= Y
            out /= n
        elif kind == "categorical_crossentropy":
            out = self.xp.subtract(Yhat, row_lse_array(Yhat, xp), out=out)
            xp.exp(out, out=out)
            out -= Y
            out /= n
        else:
            raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")
        return out

    def softmax(self, Z: Array, out: Array | None = None) -> Array:
        """Row-wise ``softmax(Z)`` (n, k), the max subtracted: the output of a softmax
        layer, whose kernels see logits (``out`` may be Z)."""
        xp = self.xp
        out = xp.subtract(Z, xp.max(Z, axis=-1, keepdims=True), out=out)
        xp.exp(out, out=out)  # exp(z - max), the table's exp_shifted, then normalised:
        out /= xp.sum(out, axis=-1, keepdims=True)  # rows sum to 1 within a few ulp
        return out

    def loss_parts(self, kind: str, axis: int = -1) -> tuple:
        """``(term_and_grad, mean)`` of loss ``kind`` as array functions rendered from the
        table: ``term_and_grad(z, y, n)`` gives the per-element terms and d loss / d z
        for n rows, ``mean(total, n)`` the loss; for the stacked sweeps, whose arrays are
        laid out differently from ``loss``'s."""
        cache = self.__dict__.setdefault("_loss_parts", {})
        parts = cache.get((kind, axis))
        if parts is None:
            if kind not in LOSS_MATH:
                raise ValueError(f"loss: expected one of {LOSSES}, got {kind!r}")
            parts = cache[kind, axis] = loss_array_functions(
                kind, self.xp, lambda Z: self.activation_forward(Z, "sigmoid"), axis)
        return parts

    def sgd_update(self, params: list, grads: list, lr: float) -> None:
        """``p -= lr * g`` in place for every (W, b); scales ``grads`` in place (unless
        ``lr`` is 1)."""
        unit = isinstance(lr, float) and lr == 1.0  # (lr may be an array: sweeps)
        for (W, b), (dW, db) in zip(params, grads):
            if not unit:
                dW *= lr
                db *= lr
            W -= dW
            b -= db

    def apply_update(self, params: list, grads: list, opt: OptimizerState, lr):
        """One update of every (W, b) by ``opt``'s rule (gradients ``grads``, which may be
        overwritten), L2 added to the weights' gradients; increments ``opt.t``. Returns
        the L2 term (l2/2) sum ||W||^2 of the weights before the update (0.0 without
        L2), as a 0-d backend value: the step adds it to the loss it reports. ``lr`` may
        be an array broadcasting against the parameters (sweeps: (C, 1, 1))."""
        scalars = opt.advance()
        if opt.plain:
            self.sgd_update(params, grads, lr)
            return 0.0
        l2 = opt.l2
        penalty = self.l2_penalty(params, l2)
        if l2:
            for (W, _), (dW, _) in zip(params, grads):
                dW += l2 * W
        update = self._update_function(opt.rule)
        for (W, b), (dW, db), (s1W, s1b), (s2W, s2b) in zip(params, grads, opt.s1, opt.s2):
            update(W, dW, s1W, s2W, lr, **scalars)
            update(b, db, s1b, s2b, lr, **scalars)
        return penalty

    def l2_penalty(self, params: list, l2: float):
        """(l2/2) sum over the weight matrices of ||W||^2: a 0-d backend value, or per
        configuration (C,) for stacked W (C, i, o); 0.0 when l2 is 0."""
        if not l2:
            return 0.0
        xp = self.xp
        return 0.5 * l2 * sum(xp.sum(W * W, axis=(-2, -1)) for W, _ in params)

    def _update_function(self, rule):
        """``f(p, g, s1, s2, lr, h1, h2, h3, c1, c2)`` updating p and the slots in place,
        rendered from the table for this backend's array module."""
        cache = self.__dict__.setdefault("_update_functions", {})
        fn = cache.get(rule)
        if fn is None:
            fn = cache[rule] = update_array_function(rule, self.xp)
        return fn

    # ------------------------------------------------------------ composition
    def forward(self, state: TrainState, X: Array, buffers=None) -> Array:
        """Forward pass; returns the last layer's kernel output (n, o)."""
        buf = buffers if buffers is not None else state.buffers(X.shape[0])
        inp = X
        for (W, b), act, A in zip(state.params, state.activations, buf.A):
            inp = self.dense_forward(inp, W, b, act, out=A)
        return inp

    def forward_backward(self, state: TrainState, X: Array, Y: Array,
                         scale: float = 1.0) -> Array:
        """Loss of (X, Y) and its gradients, left in ``state.buffers(n).grads``; with
        ``scale`` the gradients of ``scale`` times the loss (the loss returned as is)."""
        buf = state.buffers(X.shape[0])
        out = self.forward(state, X, buf)
        loss = self.loss(out, Y, state.loss, out=buf.scratch)
        last = len(state.params) - 1
        self.loss_grad(out, Y, state.loss, out=buf.G[last])
        for i in range(last, -1, -1):
            W = state.params[i][0]
            dZ = self.activation_backward(buf.G[i], buf.A[i], state.activations[i], out=buf.dZ[i])
            inp = X if i == 0 else buf.A[i - 1]
            dW, db = buf.grads[i]
            if scale != 1.0:
                # The layer below gets dZ W^T from dZ unscaled (scaled, it could overflow
                # where the unscaled step does not); dW and db come from scale x dZ.
                if i > 0:
                    self.gemm(dZ, W.T, buf.G[i - 1])
                dZ *= scale
                self.dense_backward(dZ, inp, W, need_dX=False, dW=dW, db=db)
            else:
                self.dense_backward(dZ, inp, W, need_dX=i > 0, dW=dW, db=db,
                                    dX=buf.G[i - 1] if i > 0 else None)
        return loss

    def train_step(self, state: TrainState, X: Array, Y: Array, lr: float) -> Array:
        """One gradient-descent step on the batch X (n, i), Y (n, o); returns the batch
        loss taken before the update, as a 0-d backend value (no host sync)."""
        n = X.shape[0]
        if _FORCED.get() is _NOTHING_FORCED:  # the planned step, prepared once per size
            step = state.steps.get(n)
            if step is None:
                step = state.steps[n] = self.prepare_step(
                    self._dispatch("step", state.spec, n, n), state, n)
        else:
            step = self.prepare_step(self._dispatch("step", state.spec, n, n), state, n)
        return step(state, X, Y, lr)

    def prepare_step(self, path: str, state: TrainState, n: int):
        """A callable ``step(state, X, Y, lr)`` running ``path``'s step on batches of ``n``
        rows of ``state``; by default the method ``_step_<path>``. A backend may return
        a closure over prepared kernel arguments (called once per state and size)."""
        return getattr(self, "_step_" + path)

    def train_epochs(self, state: TrainState, X: Array, Y: Array, lrs,
                     batch_size: int | None = None, orders=None) -> numpy.ndarray:
        """Train ``len(lrs)`` epochs; epoch e uses learning rate ``lrs[e]``.

        ``batch_size`` None (or >= n) is full batch. ``orders`` (epochs, n) int
        gives each epoch's sample order for mini-batches (None: in order).
        Returns per-epoch mean losses, shape (epochs,), as a NumPy float64 array.
        Stops after the first epoch whose loss is not finite; later entries are NaN.
        """
        lrs = numpy.ascontiguousarray(self.to_numpy(lrs), dtype=numpy.float64)
        return self.prepare_epochs(state, X.shape[0], batch_size, len(lrs))(X, Y, lrs, orders)

    def prepare_epochs(self, state: TrainState, rows: int, batch_size: int | None = None,
                       epochs: int = 1):
        """``train_epochs`` planned once: a callable ``run(X, Y, lrs, orders=None,
        val=None) -> losses`` (``lrs`` a C-contiguous float64 NumPy array, as
        ``train_epochs`` makes them) for ``rows`` samples of ``state`` in batches of
        ``batch_size``, kept on the state, so a loop of calls (``fit``'s slices) plans,
        checks and builds kernel arguments once. The path is planned (and recorded for
        ``use_path``) for ``epochs`` epochs plus the state's ``epochs_prepared`` (the
        epochs over which a kernel's compile is paid), at every call until it is the
        path any longer run would take: then, outside ``use_path`` blocks, kept. With
        ``val=(Xv, Yv)`` (backend arrays) ``run`` returns ``(losses, val_losses)``: the
        mean loss on (Xv, Yv) after each epoch's update (no L2 term, as
        ``evaluate_loss``), NaN for epochs not run."""
        batch_size = batch_or_full(batch_size, rows)
        state.epochs_prepared += epochs
        key, forced = (rows, batch_size), _FORCED.get()
        if not forced and not _RECORDS.get():
            run = state.settled.get(key)
            if run is not None:  # planned before, as it would be for any longer run
                return run
        # Planned for the epochs the state ran before too (``TrainState.epochs_prepared``):
        # a kernel worth compiling for a long run is worth it for a loop of short ones.
        path = self._dispatch("epochs", state.spec, rows, batch_size, 1,
                              state.epochs_prepared)
        run = state.runner(path, rows, batch_size)
        if not forced and path == self.choose_path(
                "epochs", state.spec, rows, batch_size, 1, MAX_PLANNED_EPOCHS):
            state.settled[key] = run  # (more epochs cannot change it: ``choose_path``)
        return run

    def epochs_runner(self, path: str, state: TrainState, rows: int, batch_size):
        """``prepare_epochs``' callable for ``path`` (called once per state, path and
        size): by default the method ``_epochs_<path>``, run with NumPy's overflow
        warnings off (a diverging run is reported by its losses). A backend may return
        a closure over prepared kernel arguments instead. ``batch_size`` is None for
        full batches (``batch_or_full``)."""
        method = getattr(self, "_epochs_" + path)

        def epochs(X, Y, lrs, orders=None):
            with numpy.errstate(over="ignore", invalid="ignore"):
                return method(state, X, Y, lrs, batch_size, orders)
        return self.validating(state, epochs)

    def validating(self, state: TrainState, epochs):
        """The runner of ``prepare_epochs`` made of ``epochs(X, Y, lrs, orders) ->
        losses``: with ``val``, the epochs run one call each, each followed by
        ``evaluate_loss`` on ``val`` (the values read from the device once per call);
        it stops after a whole epoch when ``STOP_REQUESTED`` is set (NaN after)."""
        def run(X, Y, lrs, orders=None, val=None):
            if val is None:
                return epochs(X, Y, lrs, orders)
            k = len(lrs)
            losses, val_losses, got = numpy.full(k, numpy.nan), numpy.full(k, numpy.nan), []
            for e in range(k):
                losses[e] = epochs(X, Y, lrs[e:e + 1], None if orders is None
                                   else orders[e:e + 1])[0]
                if not numpy.isfinite(losses[e]):
                    break
                with numpy.errstate(over="ignore", invalid="ignore"):
                    got.append(self.evaluate_loss(state, *val))
                if STOP_REQUESTED.is_set():  # Ctrl-C: end after this whole epoch
                    break
            if got:
                val_losses[:len(got)] = self.to_numpy(self.xp.stack(got))
            return losses, val_losses
        return run

    def network_output(self, state: TrainState, X: Array) -> Array:
        """The last layer's kernel output (n, n_out) of ``state``'s network on X (n, n_in),
        a new array: for binary_crossentropy the logits (no output sigmoid or softmax)."""
        out = X
        for (W, b), act in zip(state.params, state.activations):
            out = self.dense_forward(out, W, b, act)
        return out

    def evaluate_loss(self, state: TrainState, X: Array, Y: Array) -> Array:
        """Mean loss (no L2 term) of ``state``'s network on X (n, n_in), Y (n, n_out),
        as a 0-d backend value (read without a host synchronisation here)."""
        return self.loss(self.network_output(state, X), Y, state.loss)

    def all_finite(self, x: Array) -> bool:
        """Whether every element of the backend array ``x`` is finite (no NaN, no inf)."""
        return bool(self.xp.isfinite(x).all())

    def finite_copy(self, x: Array, out: Array) -> bool:
        """Copy ``x`` into ``out`` (same shape and dtype) and return whether every element
        is finite: a training loop's check of the parameters and its snapshot of them in
        one call (a backend may do it in one pass)."""
        self.xp.copyto(out, x)
        return self.all_finite(out)

    def all_finite_pair(self, x: Array, y: Array) -> bool:
        """``all_finite(x) and all_finite(y)``: fit's data and targets, checked together
        (a backend may do it in one call)."""
        return self.all_finite(x) and self.all_finite(y)

    def train_many(self, params: list, activations, loss: str, X: Array, Y: Array, lrs,
                   factors, batch_size: int | None = None, orders=None,
                   update: "UpdateSettings | None" = None) -> tuple:
        """Train C independent networks of one architecture together.

        params: list of (W (C, i, o), b (C, o)) backend arrays, updated in place.
        lrs: (C,) host base rates; factors: (epochs,) host schedule factors; configuration
        c trains epoch e at ``lrs[c] * factors[e]`` (float64, as ``fit`` computes it).
        orders: None or (C, epochs, n) host sample orders. update: the update rule and
        L2 (None: plain sgd); every configuration starts with fresh optimizer state.
        A configuration whose batch loss is not finite is frozen before that update.
        Returns (losses (C, epochs) NumPy float64, NaN after divergence;
        diverged_epoch (C,) NumPy int, -1 where it never diverged).
        """
        n = X.shape[0]
        batch_size = batch_or_full(batch_size, n)
        update = update or UpdateSettings()
        spec = ModelSpec.of(params, activations, loss, update.rule, update.l2 != 0.0)
        path = self._dispatch("sweep", spec, n, batch_size, len(lrs), len(factors))
        return getattr(self, "_sweep_" + path)(params, tuple(activations), loss, X, Y, lrs,
                                               factors, batch_size, orders,
                                               None if spec.plain else update)

    # ------------------------------------------------------ the reference paths
    def _step_reference(self, state, X, Y, lr):
        loss = self._reference_gradients(state, X, Y, lr)
        penalty = self._reference_update(state, X.shape[0], lr)
        return loss + penalty if state.opt.l2 else loss

    def _reference_gradients(self, state, X, Y, lr):
        """The reference step's ``forward_backward``: under plain SGD the gradients of
        lr x the loss, so that its update is one subtraction a parameter rather than a
        scaling pass over each gradient (written by BLAS's threads) first: the
        784-256-10 step, batch 512, float32, 0.15 ms less here."""
        return self.forward_backward(state, X, Y, scale=lr if state.opt.plain else 1.0)

    def _reference_update(self, state, n, lr):
        """The reference step's update after ``_reference_gradients`` on n rows; returns
        the L2 term, as ``apply_update``."""
        grads = state.buffers(n).grads
        if state.opt.plain:
            state.opt.advance()
            self.sgd_update(state.params, grads, 1.0)
            return 0.0
        return self.apply_update(state.params, grads, state.opt, lr)

    def _epochs_reference(self, state, X, Y, lrs, batch_size, orders):
        return self._epochs_by_steps(self._step_reference, state, X, Y, lrs, batch_size,
                                     orders)

    def _epochs_by_steps(self, step, state, X, Y, lrs, batch_size, orders):
        """Epochs as a Python loop over ``step(state, Xb, Yb, lr)``; losses stay on the
        device and are read once per block of 64 epochs. Stops after a whole epoch when
        ``STOP_REQUESTED`` is set (the epochs not run keep NaN losses)."""
        xp = self.xp
        n = X.shape[0]
        epochs = len(lrs)
        losses = numpy.full(epochs, numpy.nan)
        chunk = xp.zeros(epochs, dtype=numpy.float64)
        done = 0
        block = 64
        for e in range(epochs):
            lr = float(lrs[e])
            if batch_size is None:
                chunk[e] = step(state, X, Y, lr)
            else:
                order = None if orders is None else orders[e]
                for start in range(0, n, batch_size):
                    stop = min(start + batch_size, n)
                    Xb, Yb = self.gather_batch(state, X, Y, order, start, stop)
                    chunk[e] += step(state, Xb, Yb, lr) * ((stop - start) / n)
            stop = STOP_REQUESTED.is_set()  # Ctrl-C: end after this whole epoch
            if stop or (e + 1) % block == 0 or e + 1 == epochs:
                got = numpy.asarray(self.to_numpy(chunk[done:e + 1]), dtype=numpy.float64)
                bad = ~numpy.isfinite(got)
                if bad.any():
                    k = int(numpy.argmax(bad))
                    losses[done:done + k + 1] = got[:k + 1]
                    return losses
                losses[done:e + 1] = got
                done = e + 1
                if stop:
                    return losses
        return losses

    def gather_batch(self, state: TrainState, X: Array, Y: Array, order, start: int,
                     stop: int) -> tuple:
        """Rows ``order[start:stop]`` of X (n, i) and Y (n, o) (rows start:stop when
        ``order`` is None), gathered into the state's reusable buffers (no copy for
        in-order rows). Returns (Xb, Yb) of stop - start rows."""
        if order is None:
            return X[start:stop], Y[start:stop]
        buf = state.buffers(stop - start)
        idx = order[start:stop]
        self.xp.take(X, idx, axis=0, out=buf.Xb)
        self.xp.take(Y, idx, axis=0, out=buf.Yb)
        return buf.Xb, buf.Yb

    def _sweep_reference(self, params, activations, loss, X, Y, lrs, factors, batch_size,
                         orders, update=None):
        """One configuration after another, each trained by the reference step on views
        of its parameters; a non-finite batch loss freezes it before that update."""
        n, C, epochs = X.shape[0], len(lrs), len(factors)
        bs = n if batch_size is None else batch_size
        losses = numpy.full((C, epochs), numpy.nan)
        diverged = numpy.full(C, -1, dtype=numpy.int64)
        with numpy.errstate(over="ignore", invalid="ignore"):  # diverging ones overflow
            for c in range(C):
                self._train_one_of_many(params, activations, loss, X, Y, lrs, factors, bs,
                                        orders, c, losses, diverged, update)
        return losses, diverged

    def _train_one_of_many(self, params, activations, loss, X, Y, lrs, factors, bs, orders,
                           c, losses, diverged, update=None):
        """Configuration c of a reference sweep: losses[c] and diverged[c] filled in."""
        n = X.shape[0]
        state = TrainState(self, [(W[c], b[c]) for W, b in params], activations, loss)
        if update is not None:
            state.set_optimizer(update.state(self, state.params))
        for e in range(len(factors)):
            lr = float(lrs[c]) * float(factors[e])
            order = None if orders is None else self.asarray(orders[c, e])
            total = 0.0
            for start in range(0, n, bs):
                stop = min(start + bs, n)
                Xb, Yb = self.gather_batch(state, X, Y, order, start, stop)
                value = float(self._reference_gradients(state, Xb, Yb, lr))
                value += float(self.l2_penalty(state.params, state.opt.l2))
                total += value * ((stop - start) / n)
                if not numpy.isfinite(value):  # frozen before this update
                    diverged[c] = e
                    break
                self._reference_update(state, stop - start, lr)
            losses[c, e] = total
            if diverged[c] >= 0:
                return
