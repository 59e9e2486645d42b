"""nnkit.sklearn: scikit-learn's estimator checks, and the estimators in Pipeline,
GridSearchCV, cross_val_score, clone and pickle."""
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import nnkit  # noqa: E402
from nnkit.sklearn import NNKitClassifier, NNKitRegressor  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_blobs, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

CHECK_BACKENDS = [b for b in ("numpy", "numba") if b in nnkit.available_backends()]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _expected_failures(estimator):
    # None: every scikit-learn check passes, on both backends.
    return {}


# The estimators with their defaults (MLPClassifier's: 100 relu units, Adam, lr 1e-3,
# 200 epochs): the accuracy and R^2 checks train them as they are.
@parametrize_with_checks([cls(backend=b) for cls in (NNKitClassifier, NNKitRegressor)
                          for b in CHECK_BACKENDS],
                         expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in a diverging check
        check(estimator)


# ------------------------------------------------------------------ import guard
def _run_python(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_import_nnkit_does_not_import_sklearn():
    out = _run_python("import sys, nnkit; print('sklearn' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_import_without_sklearn_says_how_to_install():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n"
            "    import nnkit.sklearn\n"
            "except ImportError as exc:\n"
            "    print(exc); print(type(exc.__cause__).__name__)\n")
    out = _run_python(code)
    assert out.returncode == 0, out.stderr
    msg, cause = out.stdout.strip().splitlines()
    assert "pip install scikit-learn" in msg and "nnkit[sklearn]" in msg
    assert cause in ("ImportError", "ModuleNotFoundError")


# ---------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=120, centers=3, n_features=4, random_state=0)
    return StandardScaler().fit_transform(X), y


def _small(cls=NNKitClassifier, **kw):
    params = dict(hidden_layer_sizes=(8,), max_iter=20, lr=0.01, random_state=0,
                  dtype="float64", backend="numpy")
    params.update(kw)
    return cls(**params)


# -------------------------------------------------------------- accuracy
@pytest.mark.parametrize("backend", CHECK_BACKENDS)
def test_digits_accuracy_in_a_pipeline(digits, backend):
    X_tr, X_te, y_tr, y_te = digits
    pipe = make_pipeline(StandardScaler(), NNKitClassifier(
        hidden_layer_sizes=(32,), max_iter=30, batch_size=32, lr=0.003, random_state=0,
        backend=backend))
    pipe.fit(X_tr, y_tr)
    clf = pipe[-1]
    assert clf.network_.backend.name == backend
    assert clf.network_.sizes == [64, 32, 10]
    assert clf.n_iter_ == 30 and len(clf.loss_curve_) == 30
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert pipe.score(X_te, y_te) > 0.95  # MLPClassifier, same settings: 0.97-0.98
    proba = pipe.predict_proba(X_te)
    assert proba.shape == (len(X_te), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


def test_labels_of_any_type(blobs):
    X, y = blobs
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    clf = _small(max_iter=50, lr=0.05).fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.score(X, names) > 0.9
    # two classes: a softmax of two units
    binary = _small(max_iter=50, lr=0.05).fit(X, y == 0)
    assert list(binary.classes_) == [False, True]
    assert binary.predict_proba(X).shape == (len(X), 2)
    assert binary.network_.n_outputs == 2


@pytest.mark.parametrize("backend", CHECK_BACKENDS)
def test_regressor_multi_output(backend):
    X, y = make_regression(n_samples=300, n_features=6, n_targets=3, noise=5.0,
                           random_state=0)
    y = y / y.std(axis=0)
    reg = NNKitRegressor(hidden_layer_sizes=(32,), max_iter=100, lr=0.01, random_state=0,
                         backend=backend).fit(X, y)
    assert reg.predict(X).shape == (300, 3) and reg.n_outputs_ == 3
    assert reg.score(X, y) > 0.95
    single = clone(reg).fit(X, y[:, 0])
    assert single.predict(X).shape == (300,)
    assert single.score(X, y[:, 0]) > 0.95


# --------------------------------------------------- scikit-learn machinery
def test_clone_keeps_params_drops_fit(blobs):
    X, y = blobs
    clf = _small(hidden_layer_sizes=(5, 3), optimizer="momentum").fit(X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "network_") and not hasattr(twin, "classes_")


def test_cross_val_score(blobs):
    X, y = blobs
    scores = cross_val_score(_small(max_iter=40, lr=0.05), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_grid_search_in_two_processes(blobs):
    X, y = blobs
    grid = {"lr": [0.003, 0.05], "hidden_layer_sizes": [(4,), (8,)]}
    est = _small(max_iter=15)
    par = GridSearchCV(est, grid, cv=3, n_jobs=2).fit(X, y)
    seq = GridSearchCV(est, grid, cv=3, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(par.cv_results_["mean_test_score"],
                                  seq.cv_results_["mean_test_score"])
    assert par.best_params_ == seq.best_params_
    assert isinstance(par.best_estimator_, NNKitClassifier)
    assert par.score(X, y) > 0.8


def test_fit_is_a_network_fit(blobs):
    """fit trains exactly Network(seed=random_state).fit(...): what SweepSearchCV relies on."""
    X, y = blobs
    clf = _small(hidden_layer_sizes=(6,), batch_size=16, max_iter=7, optimizer="sgd",
                 lr=0.1).fit(X, y)
    net = nnkit.Network([nnkit.Dense(4, 6, "relu"), nnkit.Dense(6, 3, "softmax")],
                        loss="categorical_crossentropy", dtype="float64", seed=0,
                        backend="numpy")
    hist = net.fit(X, np.eye(3)[y], epochs=7, lr=0.1, batch_size=16, shuffle=True)
    np.testing.assert_array_equal(clf.loss_curve_, hist.loss)
    for (W1, b1), (W2, b2) in zip(clf.network_.get_params(), net.get_params()):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


# ---------------------------------------------------- warm start, partial_fit
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_warm_start_continues_the_same_run(blobs, optimizer):
    X, y = blobs
    once = _small(max_iter=10, optimizer=optimizer).fit(X, y)
    warm = _small(max_iter=5, optimizer=optimizer, warm_start=True).fit(X, y)
    net = warm.network_
    warm.fit(X, y)
    assert warm.network_ is net and warm.n_iter_ == 10
    np.testing.assert_allclose(warm.loss_curve_, once.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(warm.predict_proba(X), once.predict_proba(X), rtol=1e-12)
    # without warm_start a second fit starts again
    cold = _small(max_iter=5, optimizer=optimizer).fit(X, y)
    first = cold.loss_curve_
    cold.fit(X, y)
    assert cold.n_iter_ == 5 and cold.loss_curve_ == first


def test_warm_start_survives_pickle(blobs):
    """Parameters, optimizer state and shuffle order go through pickle."""
    X, y = blobs
    once = _small(max_iter=10, optimizer="adam").fit(X, y)
    warm = _small(max_iter=5, optimizer="adam", warm_start=True).fit(X, y)
    warm = pickle.loads(pickle.dumps(warm))
    warm.fit(X, y)
    np.testing.assert_allclose(warm.loss_curve_, once.loss_curve_, rtol=1e-12)


def test_partial_fit(blobs):
    X, y = blobs
    clf = _small(optimizer="adam")
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    same = _small(optimizer="adam", max_iter=3).fit(X, y)
    np.testing.assert_allclose(clf.loss_curve_, same.loss_curve_, rtol=1e-12)
    # a batch that lacks a class is fine; an unknown class is not
    clf.partial_fit(X[y != 2], y[y != 2])
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)
    reg = _small(NNKitRegressor)
    reg.partial_fit(X, X[:, 0]).partial_fit(X, X[:, 0])
    assert reg.n_iter_ == 2


def test_early_stopping(digits):
    X_tr, _, y_tr, _ = digits
    clf = NNKitClassifier(hidden_layer_sizes=(16,), max_iter=300, lr=0.01, random_state=0,
                          early_stopping=True, n_iter_no_change=3, tol=0.0,
                          backend="numpy").fit(X_tr / 16, y_tr)
    assert clf.n_iter_ < 300
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    assert _small().fit(X_tr / 16, y_tr).validation_loss_curve_ is None


def test_bad_parameters_are_reported_at_fit(blobs):
    X, y = blobs
    for bad in [{"hidden_layer_sizes": (0,)}, {"batch_size": 0}, {"max_iter": 0},
                {"activation": "swish"}, {"backend": "nope"}, {"dtype": "int8"},
                {"lr": -1.0}, {"random_state": -1}]:
        with pytest.raises(ValueError):
            _small(**bad).fit(X, y)


def test_feature_names(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = _small().fit(df, y)
    assert list(clf.feature_names_in_) == ["a", "b", "c", "d"]


# -------------------------------------------------------------------- pickle
@pytest.mark.parametrize("src", CHECK_BACKENDS)
@pytest.mark.parametrize("dst", CHECK_BACKENDS)
def test_pickle_round_trip_onto_another_backend(blobs, src, dst):
    X, y = blobs
    clf = _small(backend=src, optimizer="adam").fit(X, y)
    expected = clf.predict_proba(X)
    data = pickle.dumps(clf)
    assert b"nnkit.network" not in data  # parameters and optimizer state, no Network
    back = pickle.loads(data)
    assert back.network_.backend.name == src
    np.testing.assert_array_equal(back.predict_proba(X), expected)
    back.set_params(backend=dst)
    assert back.network_.backend.name == dst
    np.testing.assert_allclose(back.predict_proba(X), expected, rtol=1e-9)
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    assert back.loss_curve_ == clf.loss_curve_ and back.n_iter_ == clf.n_iter_


def test_unpickle_where_the_backend_cannot_run(blobs, monkeypatch):
    """A pickle whose backend is unusable here keeps its parameters aside until
    set_params(backend=...) names one that is."""
    import nnkit.sklearn as sk
    X, y = blobs
    reg = _small(NNKitRegressor).fit(X, X[:, 0])
    expected = reg.predict(X)
    data = pickle.dumps(reg)

    def unusable(name=None):
        raise nnkit.BackendUnavailableError("not here")
    monkeypatch.setattr(sk, "get_backend", unusable)
    back = pickle.loads(data)
    assert "network_" not in vars(back)
    with pytest.raises(nnkit.BackendUnavailableError, match="set_params"):
        back.predict(X)
    monkeypatch.undo()
    back.set_params(backend="numpy")
    np.testing.assert_array_equal(back.predict(X), expected)
    # and it pickles again while waiting
    assert pickle.loads(pickle.dumps(back)).predict(X).shape == (len(X),)


def test_unfitted_estimator_pickles():
    clf = pickle.loads(pickle.dumps(NNKitClassifier(hidden_layer_sizes=(3,), backend="numpy")))
    assert clf.hidden_layer_sizes == (3,) and not hasattr(clf, "network_")


def test_classifier_score_is_accuracy_score():
    """score's direct path (1-D label arrays) gives accuracy_score's value; other targets
    go through ClassifierMixin.score (scikit-learn's checks and errors)."""
    from sklearn.datasets import load_digits
    from sklearn.metrics import accuracy_score
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    for labels in (y, y.astype(np.int32), np.array(["odd", "even"])[y % 2], y % 2 == 0):
        clf = NNKitClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                              backend="numpy").fit(X, labels)
        assert clf.score(X, labels) == accuracy_score(labels, clf.predict(X))
        weights = np.linspace(0.1, 1, len(labels))
        assert clf.score(X, labels, sample_weight=weights) == pytest.approx(
            accuracy_score(labels, clf.predict(X), sample_weight=weights))
    with pytest.raises(ValueError):
        clf.score(X, np.linspace(0, 1, len(y)))  # continuous targets: scikit-learn's error
