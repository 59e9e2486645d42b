"""Finite-difference gradient check (central differences, float64)."""
from __future__ import annotations

import numpy as np


class GradcheckResult(float):
    """The max relative error (a plain float in every comparison and format), with details.

    per_layer: ``[(err_W, err_b), ...]``, what ``gradcheck(..., per_layer=True)`` returns.
    at_kink: ``[(n_W, n_b), ...]`` entries whose +-eps step crosses a relu kink for some
    samples; they are checked on the other samples. skipped: ``[(n_W, n_b), ...]`` those
    among them that cross it for every sample, left out. n_at_kink, n_skipped, n_entries:
    totals. kink_error: the max relative error of the at-kink entries measured on all
    samples, the mismatch the kink causes (0.0 when there are none).
    """

    def __new__(cls, per_layer, at_kink, skipped, kink_error):
        self = super().__new__(cls, max(max(e) for e in per_layer))
        self.per_layer = per_layer
        self.at_kink = at_kink
        self.skipped = skipped
        self.n_at_kink = sum(map(sum, at_kink))
        self.n_skipped = sum(map(sum, skipped))
        self.kink_error = kink_error
        return self

    def summary(self):
        """One line: the error, and what was done at relu kinks if anything."""
        text = f"max relative error {float(self):.3e}"
        if self.n_at_kink:
            text += (f" ({self.n_at_kink} entries whose step crosses a relu kink checked on "
                     f"the samples away from it, {self.n_skipped} skipped with none left; "
                     f"on all samples their error is {self.kink_error:.3e})")
        return text


def gradcheck(net, X, Y, eps=1e-6, grad_fn=None, per_layer=False, skip_kinks=True, l2=0.0):
    """Max relative error between analytic and central-difference gradients.

    The check runs on a float64 copy of ``net`` on the same backend. For each
    parameter array the error is ``|g - g_fd| / max(|g| + |g_fd|, 1e-12)`` in
    the 2-norm. ``grad_fn(net64, X, Y)`` replaces ``net.gradients`` (to check a
    hand-written backward pass).

    relu kinks: where an entry's +-eps step switches a relu unit on or off for a sample
    (its pre-activation lies within the step of 0), the one-sided derivatives differ and
    no central difference matches the analytic gradient (relu'(0) = 0). With
    ``skip_kinks=True`` (the default) such an entry is checked on the other samples
    only (both gradients recomputed on them), and skipped if none is left; ``False``
    checks every entry on all samples. Returns a ``GradcheckResult``: a float, the max
    error, carrying ``per_layer``, ``at_kink``, ``skipped``, ``kink_error`` and
    ``summary()``. ``per_layer=True`` returns its list of ``(err_W, err_b)`` instead.
    ``l2``: check the gradient of the loss plus (l2/2) sum ||W||^2 (what ``fit(l2=)``
    trains); ``grad_fn``'s gradients then get ``l2 W`` added to each dW.
    """
    from .network import Network
    from .optim import check_l2
    l2 = check_l2(l2)
    net64 = Network(net.layers, loss=net.loss, dtype="float64", seed=net.seed,
                    backend=net.backend)
    net64.set_params(net.get_params())
    X, Y = net64.prepare(X, Y)
    gradients = _with_l2(grad_fn or Network.gradients, l2)
    analytic = gradients(net64, X, Y)
    params = net64.get_params()
    watch = skip_kinks and any(layer.activation == "relu" for layer in net.layers)
    centre = _relu_masks(net64, X) if watch else None
    subsets = _Subsets(net64, gradients, X, Y)
    errors, at_kink, skipped, kink_errors = [], [], [], [0.0]
    for i, (W, b) in enumerate(params):
        err, n_kink, n_skip = [], [], []
        for j, p in enumerate((W, b)):
            numeric, switched = _central_differences(net64, params, p, np.arange(p.size),
                                                     X, Y, eps, centre, l2)
            g = np.array(analytic[i][j], dtype=np.float64).reshape(-1)
            kinked = np.flatnonzero(switched.any(axis=1))
            if kinked.size:
                kink_errors.append(_relative_error(g[kinked], numeric[kinked]))
            checked = np.ones(p.size, dtype=bool)
            # Recheck each kinked entry on the samples its step leaves on one side.
            for rows, ks in _group_by_rows(kinked, ~switched[kinked]):
                if not rows.any():
                    checked[ks] = False
                    continue
                Xs, Ys = subsets.data(rows)
                numeric[ks], _ = _central_differences(net64, params, p, ks, Xs, Ys, eps, None,
                                                      l2)
                g[ks] = subsets.gradient(rows)[i][j].reshape(-1)[ks]
            err.append(_relative_error(g[checked], numeric[checked]))
            n_kink.append(int(kinked.size))
            n_skip.append(int(p.size - checked.sum()))
        errors.append(tuple(err))
        at_kink.append(tuple(n_kink))
        skipped.append(tuple(n_skip))
    net64.set_params(params)
    if per_layer:
        return errors
    return GradcheckResult(errors, at_kink, skipped, max(kink_errors))


def _with_l2(gradients, l2):
    """``gradients(net, X, Y)`` with ``l2 W`` added to each dW."""
    if not l2:
        return gradients

    def with_l2(net, X, Y):
        grads = gradients(net, X, Y)
        return [(np.asarray(dW) + l2 * W, db)
                for (dW, db), (W, _) in zip(grads, net.get_params())]
    return with_l2


def _central_differences(net64, params, p, entries, X, Y, eps, centre, l2=0.0):
    """d loss / d p[entries] by central differences (p is one of ``params``, perturbed in
    place and restored), and, if ``centre`` holds the unperturbed relu masks, which
    samples each step switches: a (len(entries), n_samples) bool array."""
    flat = p.reshape(-1)
    numeric = np.zeros(len(entries))
    switched = np.zeros((len(entries), X.shape[0] if centre is not None else 0), dtype=bool)
    for e, k in enumerate(entries):
        orig = flat[k]
        values = []
        for step in (eps, -eps):
            flat[k] = orig + step
            net64.set_params(params)
            values.append(net64.evaluate_prepared(X, Y)
                          + 0.5 * l2 * sum(float(np.sum(W * W)) for W, _ in params))
            if centre is not None:
                switched[e] |= _switched_rows(centre, _relu_masks(net64, X))
        flat[k] = orig
        numeric[e] = (values[0] - values[1]) / (2 * eps)
    net64.set_params(params)
    return numeric, switched


def _relative_error(g, numeric):
    if g.size == 0:
        return 0.0
    denom = max(np.linalg.norm(g) + np.linalg.norm(numeric), 1e-12)
    return float(np.linalg.norm(g - numeric) / denom)


def _relu_masks(net64, X):
    """``Z > 0`` of every relu layer (NumPy bool arrays), from the backend's own forward
    pass, so the signs are those the evaluated loss saw."""
    be = net64.backend
    state = net64.train_state
    masks, out = [], X
    for (W, b), act in zip(state.params, state.activations):
        Z = be.dense_forward(out, W, b, "linear")
        if act == "relu":
            masks.append(np.asarray(be.to_numpy(Z > 0)))
        out = be.activation_forward(Z, act)
    return masks


def _switched_rows(centre, masks):
    """Per sample: is any relu unit on at one point and off at the other?"""
    rows = np.zeros(centre[0].shape[0], dtype=bool)
    for a, b in zip(centre, masks):
        rows |= (a != b).any(axis=1)
    return rows


def _group_by_rows(entries, keep):
    """Yield (rows to keep, entries) for the entries that share the same rows."""
    groups = {}
    for k, rows in zip(entries, keep):
        groups.setdefault(rows.tobytes(), (rows, []))[1].append(k)
    for rows, ks in groups.values():
        yield rows, np.asarray(ks)


class _Subsets:
    """Data and analytic gradients on subsets of the samples, made once per subset."""

    def __init__(self, net64, gradients, X, Y):
        self.net64, self.gradients = net64, gradients
        be = net64.backend
        self.X, self.Y = np.asarray(be.to_numpy(X)), np.asarray(be.to_numpy(Y))
        self._cache = {}

    def data(self, rows):
        return self.net64.prepare(self.X[rows], self.Y[rows])

    def gradient(self, rows):
        key = rows.tobytes()
        if key not in self._cache:
            self._cache[key] = self.gradients(self.net64, *self.data(rows))
        return self._cache[key]
