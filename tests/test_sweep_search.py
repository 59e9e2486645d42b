"""nnkit.sklearn.SweepSearchCV: GridSearchCV's results, each fold's lr x seed trained by
one nnkit.sweep."""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import nnkit  # noqa: E402
import nnkit.network  # noqa: E402
from nnkit.sklearn import NNKitClassifier, NNKitRegressor, SweepSearchCV  # noqa: E402
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402

CHECK_BACKENDS = [b for b in ("numpy", "numba") if b in nnkit.available_backends()]
TIME_KEYS = ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    rows = np.random.default_rng(0).permutation(len(X))[:300]
    return X[rows] / 16.0, y[rows]


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, noise=3.0,
                           random_state=0)
    return X, y / y.std(axis=0)


def _assert_same_results(ours, theirs):
    a, b = ours.cv_results_, theirs.cv_results_
    assert sorted(a) == sorted(b)
    assert a["params"] == b["params"]
    for key in b:
        if key in TIME_KEYS or key == "params":
            continue
        if key.startswith("param_"):
            assert list(a[key]) == list(b[key]), key
            continue
        np.testing.assert_allclose(np.asarray(a[key], dtype=float),
                                   np.asarray(b[key], dtype=float),
                                   rtol=1e-9, atol=1e-9, err_msg=key)
    assert ours.n_splits_ == theirs.n_splits_
    if theirs.refit:
        assert ours.best_index_ == theirs.best_index_
        assert ours.best_params_ == theirs.best_params_
        assert ours.best_score_ == pytest.approx(theirs.best_score_, rel=1e-9, abs=1e-9)
        assert type(ours.best_estimator_) is type(theirs.best_estimator_)


class _CountFits:
    """Counts Network.fit calls (the one-by-one trainings a sweep replaces)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = nnkit.network.Network.fit

        def fit(net, *args, **kwargs):
            self.calls += 1
            return real(net, *args, **kwargs)
        monkeypatch.setattr(nnkit.network.Network, "fit", fit)


@pytest.mark.parametrize("backend", CHECK_BACKENDS)
def test_classifier_grid_matches_grid_search(digits, backend, monkeypatch):
    X, y = digits
    est = NNKitClassifier(hidden_layer_sizes=(16,), optimizer="sgd", batch_size=32,
                          max_iter=8, dtype="float64", backend=backend)
    grid = {"lr": [0.02, 0.1, 0.4], "random_state": [0, 3],
            "hidden_layer_sizes": [(16,), (8, 8)]}
    expected = GridSearchCV(est, grid, cv=3).fit(X, y)
    counter = _CountFits(monkeypatch)
    ours = SweepSearchCV(est, grid, cv=3).fit(X, y)
    assert counter.calls == 1  # the refit; every candidate came from a sweep
    assert [g["swept"] for g in ours.sweep_groups_] == [True, True]
    assert [g["n_candidates"] for g in ours.sweep_groups_] == [6, 6]
    _assert_same_results(ours, expected)
    np.testing.assert_array_equal(ours.predict(X), expected.predict(X))
    assert ours.best_estimator_.network_.backend.name == backend


def test_regressor_scores_and_divergence_match(regression, monkeypatch):
    """R^2 is continuous, so this checks the swept networks to ~1e-9; a rate that
    diverges fails in both searches (error_score nan), as its fit does."""
    X, y = regression
    est = NNKitRegressor(hidden_layer_sizes=(12,), optimizer="sgd", batch_size=16,
                         max_iter=10, dtype="float64", backend="numpy", shuffle=True)
    grid = [{"lr": [0.003, 0.03, 50.0], "random_state": [1, 2]},
            {"lr": [0.01], "random_state": [5], "activation": ["tanh"]}]
    cv = KFold(3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitFailedWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", "One or more of the", UserWarning)
        expected = GridSearchCV(est, grid, cv=cv, return_train_score=True).fit(X, y)
        ours = SweepSearchCV(est, grid, cv=cv, return_train_score=True).fit(X, y)
    scores = ours.cv_results_["mean_test_score"]
    assert list(np.isnan(scores)) == [False] * 4 + [True] * 2 + [False]  # lr 50 diverges
    _assert_same_results(ours, expected)


def test_multi_metric_and_refit_by_name(digits):
    X, y = digits
    est = NNKitClassifier(hidden_layer_sizes=(8,), optimizer="sgd", batch_size=64,
                          max_iter=5, dtype="float64", backend="numpy")
    grid = {"lr": [0.05, 0.3], "random_state": [0, 1]}
    scoring = {"acc": "accuracy", "nll": "neg_log_loss"}
    expected = GridSearchCV(est, grid, cv=2, scoring=scoring, refit="nll").fit(X, y)
    ours = SweepSearchCV(est, grid, cv=2, scoring=scoring, refit="nll").fit(X, y)
    _assert_same_results(ours, expected)


def test_unsweepable_groups_fall_back_to_one_by_one_fits(digits, monkeypatch):
    X, y = digits
    est = NNKitClassifier(hidden_layer_sizes=(8,), optimizer="sgd", batch_size=64,
                          max_iter=6, dtype="float64", backend="numpy")
    grid = [{"lr": [0.05, 0.2], "random_state": [0], "early_stopping": [True],
             "n_iter_no_change": [2]},
            {"lr": [0.05, 0.2], "random_state": [0]}]
    expected = GridSearchCV(est, grid, cv=2, refit=False).fit(X, y)
    counter = _CountFits(monkeypatch)
    ours = SweepSearchCV(est, grid, cv=2, refit=False).fit(X, y)
    assert counter.calls == 2 * 2  # the early-stopping group: 2 candidates x 2 splits
    swept = [g["swept"] for g in ours.sweep_groups_]
    assert swept == [False, True]
    assert "early_stopping" in ours.sweep_groups_[0]["reason"]
    _assert_same_results(ours, expected)


def test_sweep_search_params_are_gridsearch_like():
    s = SweepSearchCV(NNKitClassifier(), {"lr": [0.1]}, cv=3, scoring="accuracy")
    params = s.get_params(deep=False)
    assert set(params) == {"estimator", "param_grid", "scoring", "refit", "cv", "verbose",
                           "error_score", "return_train_score"}


def test_optimizers_and_l2_as_grid_axes(digits):
    """Each (optimizer, l2) group is one sweep per split, trained with that optimizer."""
    X, y = digits
    est = NNKitClassifier(hidden_layer_sizes=(8,), batch_size=50, max_iter=4,
                          dtype="float64", backend="numpy")
    grid = {"lr": [0.003, 0.03], "random_state": [0, 1], "optimizer": ["adam", "momentum"],
            "l2": [0.0, 0.01]}
    expected = GridSearchCV(est, grid, cv=2, scoring="neg_log_loss").fit(X, y)
    ours = SweepSearchCV(est, grid, cv=2, scoring="neg_log_loss").fit(X, y)
    assert [g["swept"] for g in ours.sweep_groups_] == [True] * 4
    _assert_same_results(ours, expected)


def test_pipeline_ending_in_an_nnkit_estimator(digits, monkeypatch):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = digits
    pipe = make_pipeline(StandardScaler(), NNKitClassifier(
        hidden_layer_sizes=(8,), optimizer="sgd", batch_size=50, max_iter=4,
        dtype="float64", backend="numpy"))
    grid = {"nnkitclassifier__lr": [0.01, 0.1], "nnkitclassifier__random_state": [0, 1],
            "standardscaler__with_mean": [True, False]}
    expected = GridSearchCV(pipe, grid, cv=2, scoring="neg_log_loss").fit(X, y)
    counter = _CountFits(monkeypatch)
    ours = SweepSearchCV(pipe, grid, cv=2, scoring="neg_log_loss").fit(X, y)
    assert counter.calls == 1
    assert [g["swept"] for g in ours.sweep_groups_] == [True, True]
    _assert_same_results(ours, expected)


@pytest.mark.parametrize("how", ["ndarray", "digest", "lists", "object_labels"])
def test_swept_candidates_match_by_content(digits, monkeypatch, how):
    """A candidate takes its network from the sweep whether its (X, y) are matched as
    given (plain ndarrays), by a digest (large data), or after validation (lists, object
    labels); its fitted attributes are those of a plain fit."""
    import nnkit.sklearn as nsk
    X, y = digits
    if how == "digest":
        monkeypatch.setattr(nsk, "_KEEP_BYTES", 0)
    elif how == "lists":
        X, y = X.tolist(), y.tolist()
    elif how == "object_labels":
        y = np.array([f"c{v}" for v in y], dtype=object)
    est = NNKitClassifier(hidden_layer_sizes=(8,), optimizer="sgd", batch_size=50,
                          max_iter=3, dtype="float64", backend="numpy")
    grid = {"lr": [0.05, 0.2], "random_state": [0, 2]}
    expected = GridSearchCV(est, grid, cv=2).fit(X, y)
    counter = _CountFits(monkeypatch)
    validated = []
    real_validate = nsk._sk_validate_data

    def validate(*args, **kwargs):
        validated.append(1)
        return real_validate(*args, **kwargs)
    monkeypatch.setattr(nsk, "_sk_validate_data", validate)
    ours = SweepSearchCV(est, grid, cv=2).fit(X, y)
    assert counter.calls == 1  # the refit
    # 2 sweeps + the refit + the first prediction of each fold; + each candidate's fit
    # where (X, y) are matched once validated, + each prediction on lists
    assert len(validated) == 5 + 8 * (how in ("lists", "object_labels")) \
        + 6 * (how == "lists")
    _assert_same_results(ours, expected)
    # one candidate's fit inside the search context equals a plain fit
    Xa, ya = np.asarray(X), np.asarray(y)
    train = np.arange(0, len(ya), 2)
    swept = nsk._SweptNetworks()
    nsk._sweep_split(swept, est, Xa[train], ya[train], [0.05], [2])
    token = nsk._SWEPT.set(swept)
    try:
        got = NNKitClassifier(**{**est.get_params(), "lr": 0.05, "random_state": 2}).fit(
            Xa[train], ya[train])
    finally:
        nsk._SWEPT.reset(token)
    assert counter.calls == 1
    plain = NNKitClassifier(**{**est.get_params(), "lr": 0.05, "random_state": 2}).fit(
        Xa[train], ya[train])
    assert sorted(got.__dict__) == sorted(plain.__dict__)
    assert got.n_features_in_ == plain.n_features_in_
    np.testing.assert_array_equal(got.classes_, plain.classes_)
    np.testing.assert_allclose(got.loss_curve_, plain.loss_curve_, rtol=1e-9)
    for (W, b), (W0, b0) in zip(got.network_.get_params(), plain.network_.get_params()):
        np.testing.assert_allclose(W, W0, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b0, rtol=1e-9, atol=1e-12)
    assert got.network_.seed == plain.network_.seed == 2
