"""``Network``: layers + loss + dtype + seed on one backend, and the one training loop."""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time

import numpy as np

from .backends import LOSSES, TrainState
from .backends.base import STOP_REQUESTED
from .config import get_backend
from .errors import TrainingDiverged, TrainingInterrupted
from .history import History
from .layers import Dense
from .optim import check_l2, get_optimizer
from .schedules import get_schedule, learning_rates
from .stopping import EarlyStopping
from .validation import (as_host_2d, check_choice, class_targets, check_dtype, check_epochs,
                         check_positive_float, check_positive_int, check_real, check_same_rows,
                         check_unit_interval, ready_pair)

# Mini-batch sample orders are passed to the backend in blocks of at most this many ints.
_MAX_ORDER_INTS = 1 << 22
_RATES_UP_FRONT = 1 << 20
_SLICE_S = 0.2  # seconds of a slice of epochs (see Network._train)
_HANDLER_S = 0.05  # estimated seconds (_epoch_seconds) of a fit worth a SIGINT handler
# A patience up to this runs epoch by epoch (chunks of one or two epochs cost more: the OR
# gate with patience=1, 4.6 vs 2.9 us an epoch); larger ones in chunks (see _train).
_EPOCHWISE_PATIENCE = 2


class Network:
    """A fully connected network trained by gradient descent.

    >>> net = Network([Dense(2, 2, "sigmoid"), Dense(2, 1, "linear")],
    ...               loss="squared_error", dtype="float64", seed=0)

    ``backend`` is a name, a Backend, or None for the current one (see
    ``nnkit.use_backend`` and ``NNKIT_BACKEND``). Initial weights are drawn on
    the host from ``numpy.random.default_rng(seed)``, so a seed gives the same
    network on every backend.
    """

    # Bumped by whatever changes the parameters from outside a training loop (set_params,
    # _restore, a fit): a per-epoch loop takes its snapshot again after a callback that
    # did (``_train_epochwise``).
    _edits = 0

    def __init__(self, layers, loss="squared_error", dtype="float32", seed=0, backend=None):
        layers = list(layers) if isinstance(layers, (list, tuple)) else None
        if not layers or not all(isinstance(layer, Dense) for layer in layers):
            raise TypeError("layers: expected a non-empty list of nnkit.Dense")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise ValueError(
                    f"layers: layer {i} expects {layers[i].n_in} inputs but layer {i - 1} "
                    f"gives {layers[i - 1].n_out} outputs")
        self.layers = layers
        self.loss = check_choice("loss", loss, LOSSES)
        if loss == "binary_crossentropy" and layers[-1].activation != "sigmoid":
            raise ValueError("loss: 'binary_crossentropy' needs a 'sigmoid' output layer, got "
                             f"{layers[-1].activation!r}")
        for i, layer in enumerate(layers[:-1]):
            if layer.activation == "softmax":
                raise ValueError(f"layers: softmax is for the output layer only, got it on "
                                 f"layer {i} of {len(layers)}")
        if (loss == "categorical_crossentropy") != (layers[-1].activation == "softmax"):
            raise ValueError("loss: 'categorical_crossentropy' and a 'softmax' output layer go "
                             f"together, got loss={loss!r} with a "
                             f"{layers[-1].activation!r} output layer")
        self.dtype = check_dtype(dtype)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.backend = get_backend(backend)
        rng = np.random.default_rng(self.seed)
        host = [layer.init_params(rng) for layer in layers]
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        acts = [layer.activation for layer in layers]
        # binary_crossentropy and categorical_crossentropy work on logits: the kernels see
        # a linear output layer and predict applies the sigmoid or softmax.
        self._output = {"binary_crossentropy": "sigmoid",
                        "categorical_crossentropy": "softmax"}.get(self.loss)
        if self._output:
            acts[-1] = "linear"
        self._flat, params = _flat_params(self.backend, self.dtype, host)
        self._state = TrainState(self.backend, params, acts, self.loss)
        self._optimizer = None  # the optimizer whose state _state.opt holds (None: plain)

    @classmethod
    def _like(cls, template, seed, params, backend=None):
        """A fresh network of ``template``'s layers, loss and dtype with seed ``seed`` (its
        shuffle generator) and parameters ``params`` [(W, b), ...] (host arrays of the
        layers' shapes, trusted: not checked), copied onto ``backend`` (None: the
        template's); what ``Network(...)`` then ``set_params(params)`` gives, without
        drawing initial weights or checking the arrays."""
        net = cls.__new__(cls)
        net.layers = list(template.layers)
        net.loss = template.loss
        net.dtype = template.dtype
        net.seed = int(seed)
        net.backend = template.backend if backend is None else get_backend(backend)
        net._shuffle_rng = np.random.default_rng([net.seed, 1])
        net._output = template._output
        net._flat, own = _flat_params(net.backend, net.dtype, params)
        net._state = TrainState(net.backend, own, template._state.activations, net.loss)
        net._optimizer = None
        return net

    # ------------------------------------------------------------- optimizer
    @property
    def optimizer(self):
        """The optimizer (``nnkit.SGD`` / ``nnkit.Adam``) whose state the network holds
        from its last ``fit``, or None (fresh, or after ``reset_optimizer``)."""
        return self._optimizer

    @property
    def l2(self):
        """The L2 coefficient of the last ``fit`` (0.0 before any)."""
        return self._state.opt.l2

    def reset_optimizer(self):
        """Forget the optimizer state (velocities, moments, step count): the next ``fit``
        starts it afresh."""
        self._optimizer = None
        self._state.set_optimizer(self._plain_state())

    def _plain_state(self):
        from .backends.base import OptimizerState
        return OptimizerState(self.backend, self._state.params)

    def _use_optimizer(self, optimizer, l2):
        """Train with ``optimizer`` and ``l2`` from now on, keeping the state when the
        optimizer (name or settings) is the one the state belongs to."""
        if optimizer is self._optimizer and l2 == self._state.opt.l2:
            return  # (fit's common case: nothing changes)
        opt = get_optimizer(optimizer)
        if opt is not self._optimizer and opt != self._optimizer:
            self._optimizer = opt
            self._state.set_optimizer(opt.settings(l2).state(self.backend, self._state.params))
        elif l2 != self._state.opt.l2:
            self._state.opt.hyper[3] = l2
            self._state.set_optimizer(self._state.opt)

    # ------------------------------------------------------------- properties
    @property
    def n_inputs(self):
        return self.layers[0].n_in

    @property
    def n_outputs(self):
        return self.layers[-1].n_out

    @property
    def sizes(self):
        return [self.n_inputs] + [layer.n_out for layer in self.layers]

    @property
    def spec(self):
        """The ``nnkit.backends.ModelSpec`` of this network: sizes (n_in, ..., n_out),
        the kernel activations (for binary_crossentropy the last is "linear"), loss, dtype."""
        return self._state.spec

    @property
    def train_state(self):
        """The backend ``TrainState`` this network trains: ``params`` [(W (n_in, n_out),
        b (n_out,)), ...] as backend arrays, updated in place, and reusable per-batch-size
        buffers. It is the object the backend's kernel interface works on
        (``backend.train_step(net.train_state, X, Y, lr)`` with X, Y from ``prepare``)."""
        return self._state

    def __repr__(self):
        return (f"Network({self.layers}, loss={self.loss!r}, dtype={self.dtype!r}, "
                f"seed={self.seed}, backend={self.backend.name!r})")

    # ------------------------------------------------------------- parameters
    def get_params(self):
        """``[(W, b), ...]`` as NumPy copies; W (n_in, n_out), b (n_out,)."""
        return [(np.array(self.backend.to_numpy(W)), np.array(self.backend.to_numpy(b)))
                for W, b in self._state.params]

    def set_params(self, params):
        """Copy ``[(W, b), ...]`` (same structure as ``get_params``) onto the backend."""
        if not isinstance(params, (list, tuple)) or len(params) != len(self.layers):
            raise ValueError(f"params: expected a list of {len(self.layers)} (W, b) pairs")
        new = []
        for i, (pair, layer) in enumerate(zip(params, self.layers)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"params[{i}]: expected a (W, b) pair")
            W = self._param_array(f"params[{i}][0] (W)", pair[0], (layer.n_in, layer.n_out))
            b = self._param_array(f"params[{i}][1] (b)", pair[1], (layer.n_out,))
            new.append((W, b))
        xp = self.backend.xp
        self._edits += 1
        for (W, b), (W_new, b_new) in zip(self._state.params, new):
            xp.copyto(W, W_new)
            xp.copyto(b, b_new)

    def _param_array(self, arg, x, shape):
        if not self.backend.is_own_array(x) and not isinstance(x, (np.ndarray, list, tuple)):
            raise TypeError(f"{arg}: expected a NumPy array, got {type(x).__module__}."
                            f"{type(x).__name__} (convert it with numpy.asarray first)")
        host = x if self.backend.is_own_array(x) else np.asarray(x)
        if host.dtype.kind not in "fiu":
            raise TypeError(f"{arg}: expected a real floating-point array, got dtype {host.dtype}")
        if tuple(host.shape) != shape:
            raise ValueError(f"{arg}: expected shape {shape}, got {tuple(host.shape)}")
        arr = self.backend.asarray(host, self.dtype)
        if not self.backend.all_finite(arr):
            raise ValueError(f"{arg}: contains NaN or infinite values")
        return arr

    def _snapshot(self, flat_copy=None):
        """Copies of the parameters (``flat_copy``: theirs, made already) and of the
        optimizer state (its arrays and step count)."""
        opt = self._state.opt
        slots = opt.arrays()
        return (self._flat.copy() if flat_copy is None else flat_copy,
                [a.copy() for a in slots] if slots else slots, opt.t.item(0))

    def _restore(self, snapshot):
        self._edits += 1
        xp = self.backend.xp
        flat, slots, t = snapshot
        xp.copyto(self._flat, flat)
        opt = self._state.opt
        for a, a0 in zip(opt.arrays(), slots):
            xp.copyto(a, a0)
        opt.t[...] = t

    def _params_finite(self):
        return self.backend.all_finite(self._flat)

    def to(self, backend):
        """A copy of this network (same parameters) on another backend."""
        other = Network(self.layers, loss=self.loss, dtype=self.dtype, seed=self.seed,
                        backend=backend)
        other.set_params(self.get_params())
        other.set_optimizer_state(*self.get_optimizer_state())
        return other

    def get_optimizer_state(self):
        """``(optimizer or None, l2, t, [slot arrays as NumPy])``: what ``save`` keeps."""
        opt = self._state.opt
        return (self._optimizer, opt.l2, int(opt.t[0]),
                [np.array(self.backend.to_numpy(a)) for a in opt.arrays()])

    def set_optimizer_state(self, optimizer, l2, t, arrays):
        """Restore what ``get_optimizer_state`` returned (shapes are checked)."""
        if optimizer is None:
            self.reset_optimizer()
            return
        self._optimizer = None
        self._use_optimizer(optimizer, check_l2(l2))
        opt = self._state.opt
        mine = opt.arrays()
        if len(arrays) != len(mine) or any(tuple(np.shape(a)) != tuple(m.shape)
                                           for a, m in zip(arrays, mine)):
            raise ValueError("optimizer state: the arrays do not match this network's "
                             "parameters and optimizer")
        for m, a in zip(mine, arrays):
            self.backend.xp.copyto(m, self.backend.asarray(a, self.dtype))
        opt.t[0] = int(t)

    # ------------------------------------------------------------------- data
    def prepare(self, X, Y=None):
        """X (n, n_inputs) and Y (n, n_outputs; 1-D accepted for one output) checked
        (numeric, finite, matching rows) and converted to backend arrays of the
        network's dtype; returns X, or (X, Y) when Y is given. Arrays already on the
        backend in that dtype are used without a copy."""
        if Y is not None and self.loss != "categorical_crossentropy" and ready_pair(
                X, Y, self.layers[0].n_in, self.layers[-1].n_out, self.backend,
                self._state.dtype):
            if self.loss == "binary_crossentropy":
                check_unit_interval("Y", Y, self.backend, "binary_crossentropy targets")
            return X, Y
        X = as_host_2d("X", X, self.n_inputs, self.backend, self.dtype)
        if Y is None:
            return X
        if self.loss == "categorical_crossentropy":
            Y = class_targets("Y", Y, self.n_outputs, self.backend, self.dtype)
        else:
            Y = as_host_2d("Y", Y, self.n_outputs, self.backend, self.dtype,
                           allow_1d_column=self.n_outputs == 1)
        check_same_rows(X, Y)
        if self.loss == "binary_crossentropy":
            check_unit_interval("Y", Y, self.backend, "binary_crossentropy targets")
        return X, Y

    # ------------------------------------------------------------- inference
    def predict(self, X, as_numpy=True):
        """Network output for X (n, n_inputs): shape (n, n_outputs), NumPy by default."""
        X = self.prepare(X)
        out = self._forward(X)
        return self.backend.to_numpy(out) if as_numpy else out

    def shuffle_order(self, n):
        """The next sample order (a permutation of range(n), NumPy int64) from the
        network's shuffle generator, seeded by its seed: ``fit(shuffle=True)`` draws one
        per epoch, so code that draws its own orders here stays in step with ``fit``."""
        return self._shuffle_rng.permutation(n)

    def _forward(self, X):
        out = self.backend.network_output(self._state, X)
        if self._output == "sigmoid":
            self.backend.activation_forward(out, "sigmoid", out=out)
        elif self._output == "softmax":
            self.backend.softmax(out, out=out)
        return out

    def predict_classes(self, X):
        """Class labels (n,) int64: the most probable class (softmax outputs), or
        ``output >= 0.5`` for a network with one output (a sigmoid)."""
        out = self.predict(X)
        if out.shape[1] == 1:
            return (out[:, 0] >= 0.5).astype(np.int64)
        return np.argmax(out, axis=1).astype(np.int64)

    def accuracy(self, X, Y):
        """Fraction of samples whose ``predict_classes`` matches Y (labels (n,), one-hot
        (n, k), or 0/1 targets of a one-output network)."""
        X, Yp = self.prepare(X, Y)
        return self._accuracy(X, Yp)

    def _accuracy(self, X, Y):
        be = self.backend
        out = be.to_numpy(self._forward(X))
        Y = be.to_numpy(Y)
        if out.shape[1] == 1:
            hits = (out[:, 0] >= 0.5) == (Y[:, 0] >= 0.5)
        else:
            hits = np.argmax(out, axis=1) == np.argmax(Y, axis=1)
        return float(np.mean(hits))

    def evaluate(self, X, Y, metrics=False):
        """Mean loss on (X, Y) as a Python float (without any L2 term). ``metrics=True``:
        a dict ``{"loss": ..., "accuracy": ...}`` (accuracy for the classification losses,
        binary and categorical cross-entropy; the loss alone otherwise)."""
        X, Y = self.prepare(X, Y)
        loss = self.evaluate_prepared(X, Y)
        if not metrics:
            return loss
        out = {"loss": loss}
        if self._output is not None:
            out["accuracy"] = self._accuracy(X, Y)
        return out

    def evaluate_prepared(self, X, Y):
        """Mean loss as a Python float on backend arrays X, Y returned by ``prepare``
        (no checks, no conversion: for callers that evaluate the same data many times)."""
        be = self.backend
        return float(be.to_numpy(be.evaluate_loss(self._state, X, Y)))

    def gradients(self, X, Y, l2=0.0):
        """``[(dW, db), ...]`` of the mean loss over (X, Y) plus (l2/2) sum ||W||^2, as
        NumPy arrays (``l2 W`` added to each dW; biases carry no L2)."""
        l2 = check_l2(l2)
        X, Y = self.prepare(X, Y)
        self.backend.forward_backward(self._state, X, Y)
        grads = self._state.buffers(X.shape[0]).grads
        out = [(np.array(self.backend.to_numpy(dW)), np.array(self.backend.to_numpy(db)))
               for dW, db in grads]
        if l2:
            for (dW, _), (W, _) in zip(out, self.get_params()):
                dW += l2 * W
        return out

    # --------------------------------------------------------------- training
    def fit(self, X, Y, epochs=100, lr=0.1, batch_size=None, shuffle=False, lr_schedule=None,
            progress=None, validation_data=None, validation_split=None, callback=None,
            patience=None, min_delta=0.0, restore_best=False, trace=None, optimizer="sgd",
            l2=0.0):
        """Train by gradient descent; returns a ``History``.

        batch_size: None = full batch, 1 = SGD, k = mini-batches of k (the last one
        may be smaller; a batch_size larger than the data is clamped to full batch).
        shuffle: reshuffle the samples every epoch (mini-batches only), drawn on
        the host from the network's seed. lr_schedule: None, 'constant', 'step',
        'exponential', 'inverse_time', a Schedule, or a callable epoch -> factor.
        validation_data=(Xv, Yv) or validation_split=fraction adds val_loss.
        callback(epoch, record) is called after each epoch with a dict of that
        epoch's loss, lr (and val_loss). patience/min_delta stop early when the
        monitored loss (val_loss if any, else loss) stops improving;
        restore_best restores the best weights at the end either way.
        trace=N prints every layer's values for the first N updates.
        Raises TrainingDiverged: the network keeps the parameters at which the last
        finite epoch loss was measured (full batch: ``evaluate`` then gives
        ``last_finite_loss``). Raises TrainingInterrupted (a KeyboardInterrupt) on Ctrl-C:
        the network keeps the parameters of the last epoch in the history; compiled runs
        are cut into slices of about 0.2 s so an interrupt is honoured within 0.5 s.
        ``epochs`` is at most 10**9.
        optimizer: "sgd" (default), "momentum" (SGD(momentum=0.9)), "nesterov", "adam",
        or an ``nnkit.SGD`` / ``nnkit.Adam``; its state (velocities, moments, step count)
        stays on the network for the next fit while the optimizer stays equal (a
        different one starts afresh; see ``reset_optimizer``). ``lr`` is its rate,
        scaled per epoch by ``lr_schedule``. l2: adds (l2/2) sum ||W||^2 over the weight
        matrices (not biases) to the loss, l2 W to their gradients (torch's
        ``weight_decay``); the reported losses include it.
        """
        # (the common values pass the first test of each line: fit runs them at every call)
        epochs = check_epochs(epochs)
        lr = lr if type(lr) is float and 0.0 < lr < math.inf else check_positive_float("lr", lr)
        l2 = l2 if type(l2) is float and 0.0 <= l2 < math.inf else check_l2(l2)
        optimizer = get_optimizer(optimizer)  # checked before anything changes
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        schedule = get_schedule(lr_schedule)
        if patience is not None:
            patience = check_positive_int("patience", patience)
        if not (type(min_delta) is float and 0.0 <= min_delta < math.inf):
            min_delta = check_real("min_delta", min_delta, minimum=0.0)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable (epoch, record), got "
                            f"{type(callback).__name__}")
        X, Y = self.prepare(X, Y)
        self._use_optimizer(optimizer, l2)
        val = None
        if validation_split is not None:
            if validation_data is not None:
                raise ValueError("validation_split: give validation_data or validation_split, "
                                 "not both")
            X, Y, val = _split(X, Y, validation_split)
        elif validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) != 2:
                raise ValueError("validation_data: expected a pair (X_val, Y_val)")
            val = self.prepare(*validation_data)
        n = X.shape[0]
        if batch_size is not None and batch_size >= n:
            batch_size = None
        # Every epoch's rate is checked up front; the first _RATES_UP_FRONT are kept (all of
        # them in any but enormous runs), later ones are computed again slice by slice.
        head = learning_rates(schedule, lr, min(epochs, _RATES_UP_FRONT))
        if epochs > _RATES_UP_FRONT:
            for start in range(_RATES_UP_FRONT, epochs, _RATES_UP_FRONT):
                learning_rates(schedule, lr, min(_RATES_UP_FRONT, epochs - start), start)
        hist = History()
        done = 0
        if trace:
            from .trace import run_traced
            done = run_traced(self, X, Y, head, batch_size, check_positive_int("trace", trace),
                              hist, shuffle=shuffle, val=val)
        # One path for the whole run (slices of other lengths would plan other kernels).
        run = self.backend.prepare_epochs(self._state, n, batch_size, epochs)
        self._edits += 1
        watching = patience is not None or restore_best  # early stopping's bookkeeping
        bar = _progress_bar(progress, epochs, initial=done)
        epoch_s = _epoch_seconds(self._state.spec, n, 0 if val is None else val[0].shape[0])
        if done < epochs:
            # A run too short to be worth a SIGINT handler does not enter _stop_on_ctrl_c;
            # without one, and without per-epoch controls, it is one chunk (see _train).
            short = epochs * epoch_s <= _HANDLER_S
            with (_NO_HANDLER if short else _stop_on_ctrl_c()):
                try:
                    if (short and callback is None and not watching and bar is None and done == 0
                            and len(head) == epochs):
                        self._run_chunk(run, X, Y, val, head, batch_size, shuffle, hist, 0,
                                        None)  # (the common short fit: no loop to go round)
                        if STOP_REQUESTED.is_set():  # (another fit's Ctrl-C handler: _train)
                            raise TrainingInterrupted(len(hist.loss), hist)
                    elif callback is not None or (patience is not None
                                                  and patience <= _EPOCHWISE_PATIENCE):
                        self._train_epochwise(run, X, Y, val, _Rates(head, schedule, lr),
                                              epochs, done, batch_size, shuffle, hist, bar,
                                              callback, EarlyStopping(patience, min_delta),
                                              restore_best)
                    else:
                        watch = EarlyStopping(patience, min_delta) if watching else None
                        self._train(run, X, Y, val, _Rates(head, schedule, lr), epochs, done,
                                    batch_size, shuffle, hist, epoch_s, bar, watch)
                        if restore_best:
                            self._restore_best(run, X, Y, watch, hist)
                except KeyboardInterrupt as exc:  # between slices (inside one: _run_chunk)
                    if isinstance(exc, TrainingInterrupted):
                        raise
                    raise TrainingInterrupted(len(hist.loss), hist) from None
                finally:
                    if bar is not None:
                        bar.close()
        elif bar is not None:
            bar.close()
        return hist

    def _train(self, run, X, Y, val, rates, epochs, done, batch_size, shuffle, hist, epoch_s,
               bar, watch=None):
        """``fit``'s loop over slices of epochs from epoch ``done``, without a callback. A
        compiled backend runs a whole call without returning to Python, where Ctrl-C is
        handled, so long runs are cut into slices of about ``_SLICE_S`` seconds: the first
        sized by ``epoch_s``, a deliberately slow estimate of an epoch
        (``_epoch_seconds``), the next ones by the measured time (growing at most 8x per
        slice); with a progress bar, a slice is at most 1 % of the run. ``watch``: an
        ``EarlyStopping`` for patience / restore_best, which also bounds the slices (a
        stop falls on a slice's last epoch, as one epoch at a time would have it)."""
        cap = epochs if bar is None else max(1, epochs // 100)
        if batch_size is not None:  # bounds the host memory of the sample orders
            cap = min(cap, max(1, _MAX_ORDER_INTS // X.shape[0]))
        previous = None  # the last chunk run (see _run_chunk)
        while done < epochs:
            k = epochs - done
            if k > cap or k * epoch_s > _SLICE_S:  # (else the whole rest: the common case)
                k = max(1, min(k, cap, int(_SLICE_S / epoch_s)))
            if watch is not None:
                k = watch.room(k)
            lrs = rates(done, k)
            more = done + k < epochs
            t0 = time.perf_counter() if more else 0.0
            previous = self._run_chunk(run, X, Y, val, lrs, batch_size, shuffle, hist, done,
                                       previous)
            if STOP_REQUESTED.is_set():
                raise TrainingInterrupted(len(hist.loss), hist)
            if more:
                seconds = time.perf_counter() - t0
                if seconds > 0:
                    epoch_s = max(seconds / k, epoch_s / 8)
            if watch is not None:
                watch.observe(previous, done)
            done += k
            if bar is not None:
                bar.update(k)
                bar.set_postfix(loss=f"{previous[3][-1]:.4g}", lr=f"{float(lrs[-1]):.3g}")
            if watch is not None and watch.stop:
                hist.stopped_epoch = done - 1
                return

    def _restore_best(self, run, X, Y, watch, hist):
        """After ``_train`` with ``watch``: the parameters (and optimizer state) of the best
        epoch, run again from its chunk's snapshot on the same path unless it was the
        last epoch run (so they are those that epoch left, to the bit)."""
        if watch.best_chunk is None:
            return
        chunk, i = watch.best_chunk
        if watch.best_epoch != len(hist.loss) - 1:
            last = self._snapshot()
            try:
                self._rerun(run, chunk[0], X, Y, chunk[1], i + 1, chunk[2])
            except KeyboardInterrupt:  # a second Ctrl-C: the last epoch's, as the history's
                self._restore(last)
                raise
        hist.best_epoch = watch.best_epoch

    def _train_epochwise(self, run, X, Y, val, rates, epochs, done, batch_size, shuffle, hist,
                         bar, callback, watch, restore_best):
        """``fit``'s loop with a callback (or a small patience): one epoch per call of
        ``run`` from epoch ``done``, each followed by the callback and ``watch`` (an
        ``EarlyStopping``). After each epoch one backend call (``finite_copy``) checks the
        parameters and copies them: the snapshot the next epoch goes back to (taken again
        after a callback that changed the network: ``_edits``). The best epoch's
        parameters are copied when it ends (a callback may change the network, so they
        are not found again by re-running, as ``_restore_best`` does)."""
        best_params = None
        previous = None  # the last epoch run (see _run_chunk)
        stop_requested = STOP_REQUESTED.is_set
        finite_copy, flat = self.backend.finite_copy, self._flat
        spares = (flat.copy(), flat.copy())  # the epochs' snapshot buffers, in turn
        if not finite_copy(flat, spares[done & 1]):
            self._parameters_diverged(None, hist, done)
        head = rates.head
        while done < epochs:
            lrs = head[done:done + 1] if done < len(head) else rates(done, 1)
            snapshot, orders = self._snapshot(spares[done & 1]), None
            if batch_size is not None and shuffle:
                orders = self._orders(X.shape[0], 1)
            val_losses = None
            try:  # _run_chunk's work for one epoch, the common outcome inline
                if val is None:
                    losses = run(X, Y, lrs, orders)
                else:
                    losses, val_losses = run(X, Y, lrs, orders, val)
                loss = losses.item(0)
                finite = math.isfinite(loss)
                if finite:
                    hist.extend(losses, lrs, val_losses)
                elif stop_requested() and self._params_finite():
                    finite = True  # Ctrl-C: no epoch run (see _run_chunk)
                    losses, lrs, orders, val_losses = self._record_stopped(
                        hist, lrs, orders, losses, val_losses)
            except KeyboardInterrupt:
                self._chunk_interrupted(hist, done, snapshot)
            if not finite:
                self._keep_last_finite(run, X, Y, lrs, orders, losses, val_losses, snapshot,
                                       previous, hist, done)
            previous = snapshot, lrs, orders, losses, val_losses
            following = spares[(done + 1) & 1]  # (not this epoch's: it may go back to that)
            if not finite_copy(flat, following):  # the update left a parameter non-finite
                self._parameters_diverged(previous, hist, done + 1)
            if stop_requested():
                raise TrainingInterrupted(len(hist.loss), hist)
            epoch, done = done, done + 1
            lr = lrs.item(0)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}")
            if val is None:
                monitored = loss
                record = {"epoch": epoch, "loss": loss, "lr": lr}
            else:
                monitored = previous[4].item(0)
                record = {"epoch": epoch, "loss": loss, "lr": lr, "val_loss": monitored}
            if callback is not None:
                edits = self._edits
                callback(epoch, record)
                if self._edits != edits and not finite_copy(flat, following):
                    self._parameters_diverged(previous, hist, done)  # (the callback's doing)
            if watch.improved(epoch, monitored):
                if restore_best:
                    best_params = self._snapshot()
            elif watch.stop:
                hist.stopped_epoch = epoch
                break
        if best_params is not None:
            self._restore(best_params)
            hist.best_epoch = watch.best_epoch

    def _run_chunk(self, run, X, Y, val, lrs, batch_size, shuffle, hist, start_epoch,
                   previous):
        """Run len(lrs) epochs by ``run`` (``Backend.prepare_epochs``; validation losses
        on ``val`` too when given) and record them in ``hist``; returns (start snapshot,
        lrs, orders, losses, validation losses or None) of the epochs run (float64
        arrays). On divergence see ``_keep_last_finite``; on Ctrl-C the parameters go
        back to the chunk's start. (``_train_epochwise`` does the same for one epoch.)"""
        orders = drawn_from = None
        if batch_size is not None and shuffle:
            drawn_from = self._shuffle_rng.bit_generator.state
            orders = self._orders(X.shape[0], len(lrs))
        snapshot = self._snapshot()
        val_losses = None
        try:
            # A diverging run overflows on the way (``run`` keeps NumPy quiet about it);
            # it is reported as TrainingDiverged.
            if val is None:
                losses = run(X, Y, lrs, orders)
            else:
                losses, val_losses = run(X, Y, lrs, orders, val)
            # (the check of a one-epoch chunk, fit(epochs=1)'s, is one float's)
            all_finite = (math.isfinite(losses.item(0)) if len(losses) == 1
                          else bool(np.isfinite(losses).all()))
            if all_finite and self._params_finite():
                hist.extend(losses, lrs, val_losses)
                return snapshot, lrs, orders, losses, val_losses
            if not all_finite and STOP_REQUESTED.is_set() and self._params_finite():
                return (snapshot, *self._record_stopped(hist, lrs, orders, losses, val_losses))
        except KeyboardInterrupt:
            self._chunk_interrupted(hist, start_epoch, snapshot)
        self._keep_last_finite(run, X, Y, lrs, orders, losses, val_losses, snapshot, previous,
                               hist, start_epoch, drawn_from)

    def _orders(self, n, epochs):
        """``epochs`` shuffled sample orders of ``n`` samples (epochs, n), on the backend."""
        return self.backend.asarray(np.stack([self.shuffle_order(n) for _ in range(epochs)]))

    @staticmethod
    def _record_stopped(hist, lrs, orders, losses, val_losses):
        """A chunk whose loop a Ctrl-C stopped (NaN losses after the last epoch run, the
        parameters finite): its epochs run recorded in ``hist``; returns their (lrs,
        orders, losses, val_losses)."""
        k = int(np.argmin(np.isfinite(losses)))
        val_losses = None if val_losses is None else val_losses[:k]
        hist.extend(losses[:k], lrs[:k], val_losses)
        return lrs[:k], None if orders is None else orders[:k], losses[:k], val_losses

    def _chunk_interrupted(self, hist, start_epoch, snapshot):
        """Ctrl-C inside a chunk that started at ``start_epoch`` from ``snapshot``: back to
        its start unless the history has it; raise TrainingInterrupted."""
        if len(hist.loss) == start_epoch:  # this chunk is not in the history
            self._restore(snapshot)
        raise TrainingInterrupted(len(hist.loss), hist) from None

    def _parameters_diverged(self, previous, hist, epoch):
        """The parameters are not all finite after the epoch before ``epoch`` (recorded in
        ``hist``): back to those it started from (``previous``, ``_run_chunk``'s; None:
        the fit started from them) and raise TrainingDiverged, as ``_keep_last_finite``
        does for a chunk whose parameters blew up after its last loss."""
        if previous is not None:
            self._restore(previous[0])
        raise TrainingDiverged(epoch, hist.loss[-1] if hist.loss else None, hist)

    def _keep_last_finite(self, run, X, Y, lrs, orders, losses, val_losses, snapshot,
                          previous, hist, start_epoch, drawn_from=None):
        """After a diverged chunk: go back to the parameters at which the last finite
        epoch loss was measured (the start of that epoch), by re-running the chunk (or
        the previous one) from its snapshot on the same path; raise TrainingDiverged.
        The outcome is the one epoch at a time would give (``_train_epochwise``): where
        the parameters turned non-finite before a loss did (a sigmoid saturating on an
        infinite weight keeps the loss finite), the epoch that did it is found and counts
        as the diverged one's; the shuffle generator (its state before the chunk's orders
        were drawn: ``drawn_from``) is left as if only the epochs begun had drawn theirs."""
        finite = np.isfinite(losses)
        bad = int(np.argmin(finite)) if not finite.all() else len(lrs)  # len: params blew up
        begun = bad + 1 if bad < len(lrs) else bad  # epochs whose orders were drawn
        keep = bad - 1  # the chunk's last epoch with a finite loss
        try:  # (a second Ctrl-C in the re-runs: back to the chunk's start, as _run_chunk)
            if keep >= 0:
                self._rerun(run, snapshot, X, Y, lrs, keep, orders)
                if not self._params_finite():  # non-finite before the epoch whose loss was
                    bad = begun = self._first_nonfinite(run, snapshot, X, Y, lrs, keep,
                                                        orders)
                    keep = bad - 1  # -1: the chunk started from them (then previous is None)
                    self._rerun(run, snapshot, X, Y, lrs, max(keep, 0), orders)
                elif bad < len(lrs) and drawn_from is not None:
                    # epoch keep may have left them non-finite: then one at a time stops
                    # after it, before drawing epoch bad's order
                    at_keep = self._snapshot()
                    self._rerun(run, at_keep, X, Y, lrs[keep:], 1, orders[keep:])
                    if not self._params_finite():
                        begun = bad
                    self._restore(at_keep)
        except KeyboardInterrupt:
            self._restore(snapshot)
            raise
        if keep >= 0:
            hist.extend(losses[:keep + 1], lrs[:keep + 1],
                        None if val_losses is None else val_losses[:keep + 1])
        elif previous is not None:  # the chunk's first epoch: the previous chunk's last
            p_snapshot, p_lrs, p_orders = previous[:3]
            try:
                self._rerun(run, p_snapshot, X, Y, p_lrs, len(p_lrs) - 1, p_orders)
            except KeyboardInterrupt:
                self._restore(snapshot)
                raise
        else:
            self._restore(snapshot)  # epoch 0: the initial parameters
            if not self._params_finite():  # (one at a time checks them before epoch 0)
                begun = 0
        if drawn_from is not None:
            self._shuffle_rng.bit_generator.state = drawn_from
            for _ in range(begun):
                self.shuffle_order(X.shape[0])
        last = hist.loss[-1] if hist.loss else None
        raise TrainingDiverged(start_epoch + bad, last, hist)

    def _first_nonfinite(self, run, snapshot, X, Y, lrs, k, orders):
        """The fewest epochs m <= k from ``snapshot`` after which the parameters are not
        all finite, given that they are not after k (a bisection over re-runs: once
        non-finite, a parameter stays so)."""
        lo, hi = 0, k
        while lo < hi:
            mid = (lo + hi) // 2
            self._rerun(run, snapshot, X, Y, lrs, mid, orders)
            if self._params_finite():
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _rerun(self, run, snapshot, X, Y, lrs, k, orders):
        """Restore ``snapshot`` and re-run the first k of ``lrs``'s epochs by ``run``, the
        path the whole run took (so the parameters are those it passed through, to the
        bit). Every one of them: runners that end early on a first Ctrl-C
        (``STOP_REQUESTED``, after at least one whole epoch) are called again for the rest."""
        self._restore(snapshot)
        done = 0
        while done < k:
            losses = run(X, Y, lrs[done:k], None if orders is None else orders[done:k])
            finite = np.isfinite(losses)  # (these epochs ran before with finite losses)
            ran = len(finite) if finite.all() else int(np.argmin(finite))
            if not ran:
                raise RuntimeError("nnkit: re-running epochs did not reproduce their finite "
                                   "losses (a nondeterministic backend?)")
            done += ran


_NO_HANDLER = contextlib.nullcontext()


def _flat_params(backend, dtype, host):
    """``host`` [(W, b), ...] (NumPy arrays) copied into one backend array; returns it and
    the (W, b) views of it that training updates in place, so that a snapshot of every
    parameter is one copy and their finite check one pass. Each view starts at a
    multiple of 64 bytes (as an array of its own would); the gaps are zeros."""
    align = max(1, 64 // np.dtype(dtype).itemsize)
    spans, total = [], 0
    for W, b in host:
        for a in (W, b):
            spans.append((total, np.shape(a)))
            total += -(-int(np.size(a)) // align) * align
    flat = backend.zeros((total,), dtype)
    views = []
    for (start, shape), a in zip(spans, (a for pair in host for a in pair)):
        view = flat[start:start + int(np.prod(shape))].reshape(shape)
        backend.xp.copyto(view, backend.asarray(np.asarray(a, dtype=dtype)))
        views.append(view)
    return flat, list(zip(views[::2], views[1::2]))


class _Rates:
    """``rates(start, k)``: the learning rates of epochs start .. start+k-1 of a fit, from
    ``head`` (its first epochs' rates, checked) or computed again past it."""

    __slots__ = ("head", "schedule", "lr")

    def __init__(self, head, schedule, lr):
        self.head, self.schedule, self.lr = head, schedule, lr

    def __call__(self, start, k):
        head = self.head
        if start + k <= len(head):
            return head if k == len(head) else head[start:start + k]
        return learning_rates(self.schedule, self.lr, k, start)


def _split(X, Y, fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        raise ValueError(f"validation_split: expected a fraction in (0, 1), got {fraction!r}")
    n = X.shape[0]
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split: {fraction} of {n} samples leaves no training "
                         "or no validation data")
    # The last n_val samples, like Keras: deterministic and backend-independent.
    return X[:n - n_val], Y[:n - n_val], (X[n - n_val:], Y[n - n_val:])


@contextlib.contextmanager
def _stop_on_ctrl_c(wanted=True):
    """In the main thread, with Python's default SIGINT handler: the first Ctrl-C asks the
    training to stop after the current epoch (``STOP_REQUESTED``), keeping every whole
    epoch; a second one interrupts at once. Elsewhere, and for runs too short to be worth
    the ~10 µs of installing a handler (``wanted`` False), Ctrl-C is an ordinary
    KeyboardInterrupt: fit then goes back to the start of the slice it interrupted."""
    if not wanted or (threading.current_thread() is not threading.main_thread()
                      or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return

    STOP_REQUESTED.clear()

    def request_stop(signum, frame):
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next one is final
        STOP_REQUESTED.set()
    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        STOP_REQUESTED.clear()


def _epoch_seconds(spec, n, val_rows=0):
    """A deliberately slow estimate of the seconds an epoch of a network of ``spec`` on
    ``n`` training rows (and the loss on ``val_rows`` validation rows after it) takes:
    0.5 GFLOP/s, slower than any compiled path here."""
    weights, units = spec.weights, spec.units
    return (n * (6 * weights + 50 * units) + val_rows * (2 * weights + 25 * units)) / 0.5e9


def _progress_bar(progress, total, initial=0):
    """A tqdm bar when asked (True), or when None and stdout is a terminal."""
    if progress is None:
        progress = total >= 1000 and sys.stdout.isatty()
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="epoch", leave=False)
