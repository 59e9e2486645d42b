"""scikit-learn estimators on nnkit networks, and a grid search that trains each fold's
learning rates x seeds in one ``nnkit.sweep`` call.

    from nnkit.sklearn import NNKitClassifier, NNKitRegressor, SweepSearchCV

scikit-learn is an optional dependency (``pip install scikit-learn``, or the ``sklearn``
extra: ``pip install "nnkit[sklearn]"``): ``import nnkit`` never imports it, and importing
this module without it raises ImportError saying so.

The estimators pass scikit-learn's estimator checks and work in ``Pipeline``,
``GridSearchCV`` (any ``n_jobs``), ``cross_val_score``, ``clone`` and ``pickle``.
A fitted estimator pickles its network as parameters plus optimizer state (the bytes
``nnkit.save`` writes), never as backend arrays, so it can be loaded on a machine without
the backend it was trained on: unpickling puts the network on the estimator's ``backend``
(``None``: the backend current at that moment); where that backend is not usable the
estimator keeps the parameters aside until ``est.set_params(backend="numpy")`` (or any
usable backend) puts them there. ``set_params(backend=...)`` on a fitted estimator moves
its network (parameters and optimizer state) to that backend.
"""
from __future__ import annotations

try:
    import sklearn  # noqa: F401
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone, \
        is_classifier
    from sklearn.exceptions import NotFittedError
    from sklearn.model_selection import GridSearchCV, ParameterGrid, check_cv, \
        train_test_split
    from sklearn.utils import _safe_indexing, check_random_state, indexable
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
except ImportError as exc:  # pragma: no cover - exercised where scikit-learn is missing
    raise ImportError(
        "nnkit.sklearn needs scikit-learn, which is not installed: "
        "pip install scikit-learn (or pip install \"nnkit[sklearn]\")") from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _sk_validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

import contextvars
import hashlib
import numbers
import os
import tempfile
import time

import numpy as np

from .backends import BackendUnavailableError
from .config import get_backend
from .errors import TrainingDiverged
from .history import History
from .io import load as _load_network
from .io import save as _save_network
from .layers import Dense
from .network import Network

__all__ = ["NNKitClassifier", "NNKitRegressor", "SweepSearchCV"]

# scikit-learn's names for activations, besides nnkit's own.
_ACTIVATION_ALIASES = {"identity": "linear", "logistic": "sigmoid"}
# The parameters SweepSearchCV trains together in one nnkit.sweep call.
_SWEEP_AXES = ("lr", "random_state")
_SEED_MAX = 2 ** 31 - 1

_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer (as in MLPClassifier); ``()`` for no hidden layer.
    activation : {"relu", "tanh", "sigmoid", "linear", "logistic", "identity"}, default="relu"
        Activation of the hidden layers ("logistic" = "sigmoid", "identity" = "linear").
    optimizer : str or nnkit optimizer, default="adam"
        "sgd", "momentum", "nesterov", "adam", or an object such as
        ``nnkit.SGD(momentum=0.9, nesterov=True)`` / ``nnkit.Adam(...)`` (MLPClassifier's
        ``solver``, ``momentum``, ``beta_1``... in one). Its state persists across
        ``warm_start`` fits and ``partial_fit`` calls.
    lr : float, default=0.001
        Learning rate (MLPClassifier's ``learning_rate_init``).
    lr_schedule : None, str, nnkit.Schedule or callable, default=None
        nnkit's ``fit(lr_schedule=...)``: "constant", "step", "exponential",
        "inverse_time", a Schedule, or a callable epoch -> factor.
    l2 : float, default=0.0
        L2 penalty: adds (l2/2) * sum ||W||^2 over the weight matrices to the loss
        (torch's ``weight_decay``). Unlike MLPClassifier's ``alpha`` it is not divided by
        the number of samples.
    batch_size : int or "auto", default="auto"
        Mini-batch size; "auto" = min(200, n_samples) like MLPClassifier. A size of at
        least n_samples trains full batch.
    max_iter : int, default=200
        Epochs (passes over the data) per ``fit``.
    shuffle : bool, default=True
        Reshuffle the samples every epoch (drawn from ``random_state``).
    random_state : int, RandomState instance or None, default=None
        An int (>= 0) is the nnkit seed: initial weights, shuffle order and the
        early-stopping split; None or a RandomState draws a seed from it at each fit.
    tol : float, default=1e-4
        With ``early_stopping``: the validation loss must improve by more than ``tol``
        to count as an improvement. Unused otherwise (see below).
    early_stopping : bool, default=False
        Set aside ``validation_fraction`` of the training data (stratified for the
        classifier), stop when its loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and keep the weights of the best epoch. Without it,
        every fit trains exactly ``max_iter`` epochs: unlike MLPClassifier there is no
        stopping on the training loss, so an estimator trains exactly what one
        ``nnkit.sweep`` configuration trains (see SweepSearchCV). Ignored by
        ``partial_fit``.
    validation_fraction : float, default=0.1
        Fraction of the training data set aside with ``early_stopping``.
    n_iter_no_change : int, default=10
        Patience (epochs) of ``early_stopping``.
    warm_start : bool, default=False
        Refit from the previous fit's network (and optimizer state) instead of a new one.
    verbose : bool, default=False
        Show a progress bar (tqdm) during training.
    backend : str or None, default=None
        nnkit backend ("numpy", "numba", "cupy"); None = the current one
        (``nnkit.use_backend`` / ``NNKIT_BACKEND``) at fit time. Setting it on a
        fitted estimator moves its network there.
    dtype : {"float32", "float64"} or None, default=None
        Network dtype; None = float32 for float32 input, else float64 (like
        MLPClassifier, which keeps float32 input in float32).
"""


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


class _NNKitEstimator(BaseEstimator):
    """What NNKitClassifier and NNKitRegressor share."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, optimizer="adam",
                 lr=0.001, lr_schedule=None, l2=0.0, batch_size="auto", max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, warm_start=False,
                 verbose=False, backend=None, dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.l2 = l2
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.verbose = verbose
        self.backend = backend
        self.dtype = dtype

    # ------------------------------------------------------------ what subclasses say
    _loss = None
    _out_activation = None

    def _targets(self, y, first, classes=None):
        """(Y for the network, n_outputs); sets the target attributes when ``first``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    def _hidden(self):
        h = self.hidden_layer_sizes
        if isinstance(h, numbers.Integral) and not isinstance(h, bool):
            h = (h,)
        try:
            h = tuple(h)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes: expected an int or a tuple of ints, "
                             f"got {self.hidden_layer_sizes!r}") from None
        for units in h:
            if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
                raise ValueError(f"hidden_layer_sizes: expected positive integers, got "
                                 f"{self.hidden_layer_sizes!r}")
        return tuple(int(u) for u in h)

    def _activation(self):
        if not isinstance(self.activation, str):
            raise ValueError(f"activation: expected a string, got {self.activation!r}")
        return _ACTIVATION_ALIASES.get(self.activation, self.activation)

    def _batch_size(self, n):
        bs = self.batch_size
        if isinstance(bs, str) and bs == "auto":
            return min(200, n)
        if isinstance(bs, bool) or not isinstance(bs, numbers.Integral) or bs < 1:
            raise ValueError(f"batch_size: expected 'auto' or an integer >= 1, got {bs!r}")
        return min(int(bs), n)

    def _max_iter(self):
        m = self.max_iter
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ValueError(f"max_iter: expected an integer >= 1, got {m!r}")
        return int(m)

    def _seed(self):
        """The nnkit seed of a new network: random_state itself when it is an int."""
        rs = self.random_state
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            if not 0 <= rs <= 2 ** 63 - 1:
                raise ValueError(f"random_state: expected an integer >= 0, got {rs!r}")
            return int(rs)
        return int(check_random_state(rs).randint(0, _SEED_MAX))

    def _net_dtype(self, X):
        if self.dtype is None:
            return "float32" if X.dtype == np.float32 else "float64"
        return self.dtype  # Network checks it

    def _fit_kwargs(self, n, epochs):
        kwargs = {"epochs": epochs, "lr": self.lr, "batch_size": self._batch_size(n),
                  "shuffle": _check_bool("shuffle", self.shuffle),
                  "lr_schedule": self.lr_schedule}
        kwargs.update(self._optimizer_kwargs())
        return kwargs

    def _optimizer_kwargs(self):
        # Plain SGD without L2 is what fit and sweep do when these are not given.
        kwargs = {}
        if not (isinstance(self.optimizer, str) and self.optimizer == "sgd"):
            kwargs["optimizer"] = self.optimizer
        if not (isinstance(self.l2, numbers.Real) and self.l2 == 0):
            kwargs["l2"] = self.l2
        return kwargs

    def _new_network(self, n_features, n_outputs, dtype, seed):
        sizes = (n_features,) + self._hidden()
        act = self._activation()
        layers = [Dense(a, b, act) for a, b in zip(sizes[:-1], sizes[1:])]
        layers.append(Dense(sizes[-1], n_outputs, self._out_activation))
        return Network(layers, loss=self._loss, dtype=dtype, seed=seed, backend=self.backend)

    # --------------------------------------------------------------------- fitting
    def _validate_Xy(self, X, y, reset):
        return _sk_validate_data(self, X, y, reset=reset, dtype=(np.float64, np.float32),
                                 **self._y_validation)

    def _fit(self, X, y, incremental=False, classes=None):
        verbose = bool(self.verbose)
        warm = _check_bool("warm_start", self.warm_start)
        first = not ((incremental or warm) and self.__sklearn_is_fitted__())
        if first and not incremental:
            # Inside SweepSearchCV: the very (X, y) a sweep validated and trained on
            # takes its network without validating them again.
            swept = _take_swept_raw(self, X, y)
            if swept is not None:
                net, hist = swept
                return self._set_fitted(net, hist, [], 0, net.n_outputs, None)
        X, y = self._validate_Xy(X, y, reset=first)
        Y, n_outputs = self._targets(y, first, classes)
        if first:
            net, seed, loss_curve, n_iter = None, self._seed(), [], 0
        else:
            net = self._get_network()
            if net.n_outputs != n_outputs:
                raise ValueError(f"y: the network has {net.n_outputs} outputs but y needs "
                                 f"{n_outputs}; refit without warm_start")
            seed, loss_curve, n_iter = net.seed, list(self.loss_curve_), self.n_iter_
        epochs = 1 if incremental else self._max_iter()
        kwargs = self._fit_kwargs(X.shape[0], epochs)
        kwargs["progress"] = verbose
        early = not incremental and _check_bool("early_stopping", self.early_stopping)
        val = None
        if early:
            X, Y, val = self._early_stopping_split(X, Y, y, seed)
            kwargs.update(validation_data=val, patience=self.n_iter_no_change,
                          min_delta=self.tol, restore_best=True)
        swept = _take_swept(self, X, Y) if first and not incremental and not early else None
        if swept is not None:
            net, hist = swept
        else:
            if net is None:
                net = self._new_network(X.shape[1], n_outputs, self._net_dtype(X), seed)
            hist = net.fit(X, Y, **kwargs)
        return self._set_fitted(net, hist, loss_curve, n_iter, n_outputs, val)

    def _set_fitted(self, net, hist, loss_curve, n_iter, n_outputs, val):
        self.network_ = net
        self.__dict__.pop("_network_blob", None)
        self.loss_curve_ = loss_curve + list(hist.loss)
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ = n_iter + len(hist.loss)
        self.n_outputs_ = n_outputs
        self.out_activation_ = self._out_activation
        if val is not None:
            self.validation_loss_curve_ = list(hist.val_loss)
            self.best_validation_loss_ = float(np.min(hist.val_loss))
        else:
            self.validation_loss_curve_ = None
            self.best_validation_loss_ = None
        return self

    def _early_stopping_split(self, X, Y, y, seed):
        frac = self.validation_fraction
        if isinstance(frac, bool) or not isinstance(frac, numbers.Real) or not 0 < frac < 1:
            raise ValueError(f"validation_fraction: expected a number in (0, 1), got {frac!r}")
        stratify = None
        if is_classifier(self):
            _, counts = np.unique(y, return_counts=True)
            stratify = y if counts.min() >= 2 else None
        X_tr, X_val, Y_tr, Y_val = train_test_split(X, Y, test_size=frac, random_state=seed,
                                                    stratify=stratify)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small: increase validation_fraction "
                             "or the size of the data (early_stopping)")
        return X_tr, Y_tr, (X_val, Y_val)

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and y; returns self."""
        return self._fit(X, y)

    # ------------------------------------------------------------------- inference
    def _output(self, X):
        check_is_fitted(self)
        net = self._get_network()
        return net.predict(_validated_input(self, X))

    # ---------------------------------------------------------- network and pickle
    def __sklearn_is_fitted__(self):
        return "network_" in self.__dict__ or "_network_blob" in self.__dict__

    def _get_network(self):
        net = self.__dict__.get("network_")
        if net is not None:
            return net
        if "_network_blob" in self.__dict__:
            self._place_network()  # raises where the backend is still unusable
            return self.network_
        raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet")

    def _place_network(self):
        """Put the network (live, or pickled and kept aside) on ``self.backend``."""
        net = self.__dict__.get("network_")
        if net is not None:
            target = get_backend(self.backend)
            if net.backend is not target:
                self.network_ = _network_from_blob(_network_to_blob(net), target)
            return
        blob = self.__dict__.get("_network_blob")
        if blob is not None:
            try:
                target = get_backend(self.backend)
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(
                    f"{type(self).__name__}: this estimator was unpickled where its backend "
                    f"{self.backend!r} cannot run ({exc}); choose one that can with "
                    f"set_params(backend='numpy') (or 'numba', ...)") from exc
            self.network_ = _network_from_blob(blob, target)
            del self._network_blob

    def set_params(self, **params):
        """Set parameters; on a fitted estimator, a new ``backend`` moves its network
        (parameters and optimizer state) onto that backend."""
        super().set_params(**params)
        if "backend" in params and self.__sklearn_is_fitted__():
            self._place_network()
        return self

    def __getstate__(self):
        state = dict(super().__getstate__())
        net = state.pop("network_", None)
        if net is not None:
            state["_network_blob"] = _network_to_blob(net)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_network_blob" in self.__dict__:
            try:
                self._place_network()
            except (BackendUnavailableError, ValueError):
                pass  # kept aside until set_params(backend=...) names a usable backend


def _network_to_blob(net):
    """A fitted network as picklable host data: the bytes ``nnkit.save`` writes
    (architecture, parameters, optimizer state) and its shuffle generator's state."""
    with tempfile.TemporaryDirectory(prefix="nnkit-sklearn-") as tmp:
        path = os.path.join(tmp, "network.npz")
        _save_network(net, path)
        with open(path, "rb") as fh:
            data = fh.read()
    rng = getattr(net, "_shuffle_rng", None)
    return {"nnkit_save": data,
            "shuffle_rng": None if rng is None else rng.bit_generator.state}


def _network_from_blob(blob, backend):
    with tempfile.TemporaryDirectory(prefix="nnkit-sklearn-") as tmp:
        path = os.path.join(tmp, "network.npz")
        with open(path, "wb") as fh:
            fh.write(blob["nnkit_save"])
        net = _load_network(path, backend=backend)
    rng = getattr(net, "_shuffle_rng", None)
    if rng is not None and blob.get("shuffle_rng") is not None:
        rng.bit_generator.state = blob["shuffle_rng"]
    return net


class NNKitClassifier(ClassifierMixin, _NNKitEstimator):
    __doc__ = """A multi-layer perceptron classifier trained by nnkit.

    Hidden layers of ``activation``, a softmax output of one unit per class (two for a
    binary problem) and categorical cross-entropy. Labels may be of any type
    (``classes_`` holds them sorted, as ``numpy.unique`` sorts them).
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    network_ : nnkit.Network
        The trained network (input -> hidden layers -> softmax).
    loss_curve_ : list of float
        Training loss (mean cross-entropy) of each epoch, over all fits of a warm start.
    loss_ : float
        The last of them.
    n_iter_ : int
        Epochs trained.
    n_features_in_ : int
    feature_names_in_ : ndarray
        Only when X had feature names (a DataFrame).
    n_outputs_ : int
        Output units (n_classes).
    out_activation_ : str
        "softmax".
    validation_loss_curve_, best_validation_loss_ : list of float, float or None
        With early_stopping: the validation loss of each epoch, and its minimum.
    """

    _loss = "categorical_crossentropy"
    _out_activation = "softmax"
    _y_validation = {}

    def _targets(self, y, first, classes=None):
        check_classification_targets(y)
        if first:
            if classes is not None:
                self.classes_ = np.unique(np.asarray(classes))
            else:
                self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes; got 1 "
                                 f"class ({self.classes_[0]!r})")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                        self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call to "
                             f"partial_fit ({self.classes_!r})")
        idx = np.searchsorted(self.classes_, y)
        idx[idx >= len(self.classes_)] = 0
        if not np.array_equal(self.classes_[idx], y):
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if not first and self.warm_start and classes is None:
                raise ValueError(f"warm_start can only be used where y has the same classes "
                                 f"as in the previous fit; got new classes {unknown!r}")
            raise ValueError(f"y has classes not in classes_ {self.classes_!r}: {unknown!r}")
        k = len(self.classes_)
        Y = np.zeros((len(y), k), dtype=np.float64)
        Y[np.arange(len(y)), idx] = 1.0
        return Y, k

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y). ``classes`` (every label y may ever hold) is required on
        the first call and optional afterwards."""
        if not self.__sklearn_is_fitted__() and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of classes_."""
        return self._output(X)

    def predict_log_proba(self, X):
        """Natural log of ``predict_proba`` (n, n_classes)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y`` (``ClassifierMixin.score``'s
        value; for 1-D label arrays computed directly, without scikit-learn's target-type
        checks, which cost more than a small network's prediction in a grid search)."""
        if (sample_weight is None and isinstance(y, np.ndarray) and y.ndim == 1
                and y.dtype.kind in "biuUS"
                and y.dtype.kind == getattr(self, "classes_", y).dtype.kind):
            pred = self.predict(X)
            if pred.shape == y.shape:
                return float(np.mean(pred == y))
        return super().score(X, y, sample_weight=sample_weight)


class NNKitRegressor(RegressorMixin, _NNKitEstimator):
    __doc__ = """A multi-layer perceptron regressor trained by nnkit.

    Hidden layers of ``activation``, a linear output of one unit per target and the
    squared error 1/(2n) sum (y - yhat)^2 (as MLPRegressor). y may be 1-D or
    (n_samples, n_targets).
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    network_ : nnkit.Network
    loss_curve_ : list of float
        Training loss of each epoch, over all fits of a warm start.
    loss_ : float
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray
        Only when X had feature names (a DataFrame).
    n_outputs_ : int
    out_activation_ : str
        "linear".
    validation_loss_curve_, best_validation_loss_ : list of float, float or None
        With early_stopping.
    """

    _loss = "squared_error"
    _out_activation = "linear"
    _y_validation = {"multi_output": True, "y_numeric": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def _targets(self, y, first, classes=None):
        Y = np.asarray(y, dtype=np.float64)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        return Y, Y.shape[1]

    def partial_fit(self, X, y):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predictions (n_samples,) for one target, else (n_samples, n_targets)."""
        out = self._output(X)
        return out.ravel() if out.shape[1] == 1 else out


# --------------------------------------------------------------------- SweepSearchCV
# While SweepSearchCV evaluates its candidates, the networks its sweeps trained; an NNKit
# estimator's fit takes its network from here when the parameters and data match.
_SWEPT = contextvars.ContextVar("nnkit_sklearn_swept", default=None)


# A sweep's data is matched by content: the arrays themselves are kept (compared byte for
# byte) where they take at most this many bytes, else a SHA-256 of them.
_KEEP_BYTES = 64 * 2 ** 20
# The raw (X, y) an estimator's fit is given are matched as they are (no validation) only
# when both are plain ndarrays of these kinds (byte equality is then value equality).
_RAW_KINDS = "biuf", "biufUS"
_MAX_INPUTS = 64  # prediction inputs remembered as validated, per search


class _Contents:
    """The exact contents (dtype, shape, bytes) of some arrays, to tell whether other
    arrays hold the same."""

    def __init__(self, arrays):
        arrays = [np.ascontiguousarray(a) for a in arrays]
        self.meta = tuple((a.dtype.str, a.shape) for a in arrays)
        if sum(a.nbytes for a in arrays) <= _KEEP_BYTES:
            self.arrays, self.digest = arrays, None
        else:
            self.arrays, self.digest = None, _digest(arrays)

    def matches(self, arrays, digests):
        """Whether ``arrays`` hold the same (byte for byte, in C order); ``digests``: a
        dict where their digest is kept once computed (shared by calls for the same
        arrays)."""
        if tuple((a.dtype.str, a.shape) for a in arrays) != self.meta:
            return False
        if self.arrays is not None:
            pairs = sorted(zip(arrays, self.arrays), key=lambda p: p[1].nbytes)
            return all(np.array_equal(_bytes_of(a), _bytes_of(b)) for a, b in pairs)
        if "digest" not in digests:
            digests["digest"] = _digest(arrays)
        return digests["digest"] == self.digest


def _bytes_of(a):
    """a's bytes in C order, as a 1-D uint8 array (a view where a is C-contiguous)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(_bytes_of(a))
    return h.digest()


def _raw_arrays(X, y):
    """(X, y) C-contiguous where both are plain ndarrays matched by their raw contents,
    else None."""
    if type(X) is not np.ndarray or type(y) is not np.ndarray \
            or X.dtype.kind not in _RAW_KINDS[0] or y.dtype.kind not in _RAW_KINDS[1]:
        return None
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def _group_params(params):
    return {k: v for k, v in params.items() if k not in _SWEEP_AXES}


def _params_equal(a, b):
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if x is y:
            continue
        try:
            if type(x) is not type(y) and not (isinstance(x, numbers.Number)
                                               and isinstance(y, numbers.Number)):
                return False
            if not bool(x == y):
                return False
        except Exception:
            return False
    return True


_PARAM_NAMES = {}


def _own_params(est):
    """``est.get_params(deep=False)`` (the parameter names looked up once per class)."""
    cls = type(est)
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = tuple(cls._get_param_names())
    return {name: getattr(est, name) for name in names}


class _SweptEntry:
    """One sweep's result and what its networks were trained from: the estimator class
    and parameters but lr and random_state, the raw (X, y) its fit is given (None: not
    plain ndarrays), the validated (X, Y) it trained on, and the attributes that
    validating the raw data set on the estimator (``n_features_in_``, ``classes_``...)."""

    def __init__(self, cls, group, raw, data, result, fitted):
        self.cls, self.group, self.result, self.fitted = cls, group, result, fitted
        self.raw = None if raw is None else _Contents(raw)
        self.data = _Contents(data)
        self.index = {(float(c["lr"]), int(c["seed"])): i
                      for i, c in enumerate(result.configs)}

    def config(self, params):
        try:
            return self.index.get((float(params["lr"]), int(params["random_state"])))
        except (TypeError, ValueError):
            return None


class _SweptNetworks:
    """Sweep results by (estimator class, parameters but lr and random_state, data)."""

    def __init__(self):
        self.entries = []
        self.inputs = []  # (n_features_in_, _Contents): float arrays validated as they are

    def validated(self, est, X):
        """``_sk_validate_data(est, X, reset=False, ...)``, skipped for a plain float
        ndarray with the contents of one that it returned unchanged (a validation fold:
        every candidate predicts it) for an estimator of as many features and no feature
        names."""
        plain = type(X) is np.ndarray and X.dtype in (np.float32, np.float64) \
            and "feature_names_in_" not in est.__dict__
        n = est.__dict__.get("n_features_in_")
        if plain:
            for n_seen, contents in self.inputs:
                if n_seen == n and contents.matches([X], {}):
                    return X
        Xv = _sk_validate_data(est, X, reset=False, dtype=(np.float64, np.float32))
        if plain and Xv is X and n is not None and len(self.inputs) < _MAX_INPUTS:
            self.inputs.append((n, _Contents([X])))
        return Xv

    def add(self, cls, group, raw, data, result, fitted):
        self.entries.append(_SweptEntry(cls, group, raw, data, result, fitted))

    def _find(self, est, arrays, which):
        params = _own_params(est)
        group = _group_params(params)
        digests = {}
        for entry in self.entries:
            contents = getattr(entry, which)
            if entry.cls is not type(est) or contents is None \
                    or not _params_equal(entry.group, group):
                continue
            i = entry.config(params)
            if i is not None and contents.matches(arrays, digests):
                return entry, i
        return None, None

    def take_raw(self, est, X, y):
        """(network, History) for ``est.fit(X, y)`` where (X, y) are the raw arrays a
        sweep's estimator validated (the attributes that validation sets are set on
        ``est``), or None."""
        raw = _raw_arrays(X, y)
        if raw is None:
            return None
        entry, i = self._find(est, raw, "raw")
        if entry is None:
            return None
        est.__dict__.pop("feature_names_in_", None)  # as validating an ndarray does
        for name, value in entry.fitted.items():
            setattr(est, name, value.copy() if isinstance(value, np.ndarray) else value)
        return _swept_fit(est, entry.result, i)

    def take(self, est, X, Y):
        """(network, History) for validated (X, Y), or None."""
        entry, i = self._find(est, [np.ascontiguousarray(X), np.ascontiguousarray(Y)],
                              "data")
        return None if entry is None else _swept_fit(est, entry.result, i)


def _swept_fit(est, result, i):
    """(network, History) of configuration i, or TrainingDiverged as fit would raise."""
    losses = np.asarray(result.loss[i], dtype=np.float64)
    hist = History()
    if result.diverged[i]:
        e = int(result.diverged_epoch[i])
        hist.extend(losses[:e], np.full(e, np.nan))
        raise TrainingDiverged(e, float(losses[e - 1]) if e > 0 else None, hist)
    hist.extend(losses, np.full(len(losses), float(result.configs[i]["lr"])))
    return result.network(i, backend=est.backend), hist


def _take_swept(est, X, Y):
    swept = _SWEPT.get()
    return None if swept is None else swept.take(est, X, Y)


def _validated_input(est, X):
    """X validated for ``est``'s predictions (fitted: not reset)."""
    swept = _SWEPT.get()
    if swept is None:
        return _sk_validate_data(est, X, reset=False, dtype=(np.float64, np.float32))
    return swept.validated(est, X)


def _take_swept_raw(est, X, y):
    swept = _SWEPT.get()
    return None if swept is None else swept.take_raw(est, X, y)


class SweepSearchCV(GridSearchCV):
    """Exhaustive search over a parameter grid for an NNKitClassifier/NNKitRegressor,
    where each fold's learning rates x seeds are trained together by ``nnkit.sweep``.

    The interface, results and attributes are GridSearchCV's (``cv_results_``,
    ``best_params_``, ``best_estimator_``, ``best_score_``, ``best_index_``,
    ``n_splits_``, ``refit_time_``, ``scorer_``, ``multimetric_``...): the candidates are
    grouped by their parameters other than ``lr`` and ``random_state``; for each group and
    each split one ``nnkit.sweep(lr=[...], seed=[...])`` trains every (lr, random_state)
    of the group on that split's training data, and each candidate is then scored as
    GridSearchCV scores it. A sweep configuration trains exactly what the estimator's
    ``fit`` trains (same seed, same initial weights and shuffle order), so the scores
    equal GridSearchCV's on the same grid, splits and seeds (up to rounding: a sweep may
    take another kernel path than a single fit). A configuration that diverges fails as
    its fit would (``TrainingDiverged``; ``error_score`` applies). ``best_estimator_`` is
    refit with the estimator's own ``fit``.

    The estimator may also be a ``Pipeline`` ending in an NNKit estimator (the grid then
    names ``<step>__lr`` and ``<step>__random_state``): for each group and split the
    pipeline's other steps are fitted on the split's training data, and the sweep trains
    on what they output. (A step whose output changes from one fit to the next, such as
    a transformer with ``random_state=None``, makes the networks' data differ from the
    sweep's: those candidates are then fitted one by one.)

    Groups a sweep cannot train are fitted one candidate at a time, as GridSearchCV does:
    ``early_stopping=True`` (each fit stops at its own epoch), a ``random_state`` that is
    not an int >= 0 (None or a RandomState draws a new seed per fit), an estimator that is
    neither an NNKitClassifier/NNKitRegressor nor a Pipeline ending in one, or parameters
    ``nnkit.sweep`` refuses (the one-by-one fits then fail as GridSearchCV's would).
    ``sweep_groups_`` says what happened to each group.

    The splits are drawn once and used for both the sweeps and the scoring. Candidates
    are evaluated in this process (no ``n_jobs``: the sweeps are where the parallelism
    is). In ``cv_results_``, ``mean_fit_time`` of a swept candidate is its share of its
    split's sweep time (the sweep time divided among the group's candidates) plus the
    time to take its network from the sweep; ``std_fit_time`` covers the latter only.

    Parameters
    ----------
    estimator : NNKitClassifier, NNKitRegressor, or a Pipeline ending in one
    param_grid : dict or list of dicts
        As GridSearchCV's.
    scoring, refit, cv, verbose, error_score, return_train_score
        As GridSearchCV's.

    Attributes
    ----------
    As GridSearchCV, plus ``sweep_groups_``: one dict per group of candidates:
    ``params`` (the group's shared parameters), ``n_candidates``, ``swept`` (bool),
    ``reason`` (why not swept, or None), ``sweep_time`` (seconds of its sweeps).
    """

    # GridSearchCV's parallel evaluation is not used (see above).
    n_jobs = None
    pre_dispatch = "2*n_jobs"

    def __init__(self, estimator, param_grid, *, scoring=None, refit=True, cv=None,
                 verbose=0, error_score=np.nan, return_train_score=False):
        self.estimator = estimator
        self.param_grid = param_grid
        self.scoring = scoring
        self.refit = refit
        self.cv = cv
        self.verbose = verbose
        self.error_score = error_score
        self.return_train_score = return_train_score

    def fit(self, X, y=None, **params):
        """Run the search on X, y (``groups=`` for group splitters); returns self."""
        from joblib import parallel_config
        X, y = indexable(X, y)
        groups = params.get("groups")
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        self._sweep_splits = check_cv(list(cv.split(X, y, groups)))
        self._sweep_data = (X, y)
        try:
            with parallel_config(n_jobs=1):
                super().fit(X, y, **params)
        finally:
            del self._sweep_splits, self._sweep_data
        return self

    def _run_search(self, evaluate_candidates):
        candidates = list(ParameterGrid(self.param_grid))
        X, y = self._sweep_data
        splits = list(self._sweep_splits.split(X, y))
        prefix = _nnkit_prefix(self.estimator)
        axes = () if prefix is None else tuple(prefix + a for a in _SWEEP_AXES)
        groups = []  # [group params, [candidate indices]]
        for ci, cand in enumerate(candidates):
            g = {k: v for k, v in cand.items() if k not in axes}
            for entry in groups:
                if _params_equal(entry[0], g):
                    entry[1].append(ci)
                    break
            else:
                groups.append([g, [ci]])
        swept = _SweptNetworks()
        share = np.zeros((len(candidates), len(splits)))
        self.sweep_groups_ = []
        for g, members in groups:
            report = {"params": g, "n_candidates": len(members), "swept": False,
                      "reason": None, "sweep_time": 0.0}
            self.sweep_groups_.append(report)
            base = clone(self.estimator).set_params(**g)
            reason, configs = _sweep_configs(base, prefix, [candidates[c] for c in members])
            if reason is not None:
                report["reason"] = reason
                continue
            lrs = list(dict.fromkeys(lr for lr, _ in configs))
            seeds = list(dict.fromkeys(seed for _, seed in configs))
            try:
                for s, (train, _) in enumerate(splits):
                    t0 = time.perf_counter()
                    _sweep_split(swept, base, _safe_indexing(X, train),
                                 _safe_indexing(y, train), lrs, seeds)
                    dt = time.perf_counter() - t0
                    report["sweep_time"] += dt
                    share[members, s] = dt / len(members)
                report["swept"] = True
            except Exception as exc:  # fitted one by one: they fail as GridSearchCV's do
                report["reason"] = f"nnkit.sweep refused: {type(exc).__name__}: {exc}"
                share[members, :] = 0.0
        token = _SWEPT.set(swept)
        try:
            results = evaluate_candidates(candidates, cv=self._sweep_splits)
        finally:
            _SWEPT.reset(token)
        results["mean_fit_time"] = results["mean_fit_time"] + share.mean(axis=1)


def _nnkit_prefix(estimator):
    """"" for an NNKit estimator, "name__" for a Pipeline ending in one, else None."""
    if isinstance(estimator, _NNKitEstimator):
        return ""
    steps = getattr(estimator, "steps", None)
    if type(estimator).__name__ == "Pipeline" and steps \
            and isinstance(steps[-1][1], _NNKitEstimator):
        return steps[-1][0] + "__"
    return None


def _final(estimator):
    return estimator if isinstance(estimator, _NNKitEstimator) else estimator.steps[-1][1]


def _sweep_configs(base, prefix, candidates):
    """(None, [(lr, seed) of each candidate]), or (why they cannot be swept, None)."""
    if prefix is None:
        return (f"not an NNKit estimator or a Pipeline ending in one "
                f"({type(base).__name__})"), None
    final = _final(base)
    if not isinstance(final.early_stopping, (bool, np.bool_)) or final.early_stopping:
        return "early_stopping=True: each fit stops at its own epoch", None
    configs = []
    for cand in candidates:
        lr = cand.get(prefix + "lr", final.lr)
        rs = cand.get(prefix + "random_state", final.random_state)
        if isinstance(rs, bool) or not isinstance(rs, numbers.Integral) or rs < 0:
            return f"random_state={rs!r} is not an int >= 0", None
        configs.append((lr, int(rs)))
    return None, configs


def _sweep_split(swept, base, X, y, lrs, seeds):
    """One nnkit.sweep over lrs x seeds of the network ``base`` (an NNKit estimator, or a
    Pipeline ending in one: its other steps are fitted here, as Pipeline.fit fits them)
    on the data its fit would train on; the result goes into ``swept``."""
    from .sweep import sweep
    if not isinstance(base, _NNKitEstimator):
        pre = clone(base[:-1])
        X = pre.fit_transform(X, y)
    est = clone(_final(base)).set_params(lr=lrs[0], random_state=seeds[0])
    raw = _raw_arrays(X, y)
    before = set(est.__dict__)
    Xv, yv = est._validate_Xy(X, y, reset=True)
    Y, n_outputs = est._targets(yv, True)
    fitted = {k: v for k, v in est.__dict__.items() if k not in before}
    template = est._new_network(Xv.shape[1], n_outputs, est._net_dtype(Xv), seeds[0])
    kwargs = est._fit_kwargs(Xv.shape[0], est._max_iter())
    kwargs.pop("lr")
    result = sweep(template, Xv, Y, lr=list(lrs), seed=list(seeds), **kwargs)
    swept.add(type(est), _group_params(_own_params(est)), raw, (Xv, Y), result, fitted)
