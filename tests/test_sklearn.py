"""mbtrain.sklearn: the estimator protocol, scikit-learn's own checks, and mbtrain's promises
(partial_fit and warm_start continue exactly where they stopped; one random_state)."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import mbtrain  # noqa: E402
from mbtrain.sklearn import MBClassifier, MBRegressor  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X_train, y_train, X_test, y_test = mbtrain.datasets.load("digits", dtype="float64")
    return X_train, y_train, X_test, y_test


@pytest.fixture(scope="module")
def small_digits(digits):
    X_train, y_train, X_test, y_test = digits
    return X_train[:400], y_train[:400], X_test, y_test


# Small epochs keep scikit-learn's ~55 checks per estimator to about a second; every check
# passes, so none is skipped (no expected_failed_checks). Early stopping adds the validation
# split, which must cope with the checks' tiny data sets.
# Some checks fit raw iris or data near 100: the unscaled-input warning is right there, and noise here.
@pytest.mark.filterwarnings("ignore:X. the inputs span:UserWarning")
@parametrize_with_checks([
    MBClassifier(epochs=10, random_state=0),
    MBRegressor(epochs=10, random_state=0),
    MBClassifier(epochs=5, early_stopping=True, random_state=0),
    MBRegressor(epochs=20, early_stopping=True, dtype="float32", random_state=0),
    MBClassifier(epochs=10, solver="adam", eta=0.02, random_state=0),
    MBRegressor(epochs=10, solver="sgd", momentum=0.9, eta=0.1, learning_rate="adaptive", early_stopping=True,
                random_state=0),
])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_learns_digits(digits):
    X_train, y_train, X_test, y_test = digits
    clf = MBClassifier(hidden_layer_sizes=(30,), epochs=10, batch_size=10, eta=0.5, random_state=0)
    assert clf.fit(X_train, y_train) is clf
    assert clf.score(X_test, y_test) > 0.9
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))
    assert len(clf.loss_curve_) == clf.n_iter_ == 10
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.validation_scores_ is None
    assert clf.network_.sizes == (64, 30, 10)
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))


def test_string_and_noncontiguous_labels(small_digits):
    X, y, X_test, y_test = small_digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    ints = (y + 1) * 7  # 7, 14, ..., 70
    by_name = MBClassifier(epochs=5, random_state=1).fit(X, names[y])
    by_int = MBClassifier(epochs=5, random_state=1).fit(X, ints)
    by_label = MBClassifier(epochs=5, random_state=1).fit(X, y)
    assert list(by_name.classes_) == sorted(names)
    assert list(by_int.classes_) == list(range(7, 71, 7))
    # The same classes in a different order: one sorted label order maps to the other.
    np.testing.assert_array_equal(by_int.predict(X_test), (by_label.predict(X_test) + 1) * 7)
    assert set(by_name.predict(X_test)) <= set(names)
    assert by_name.score(X_test, names[y_test]) > 0.5


def test_one_class_is_a_clear_error():
    X = np.random.default_rng(0).random((10, 3))
    with pytest.raises(ValueError, match="at least 2 classes, got 1 class"):
        MBClassifier(epochs=1).fit(X, np.zeros(10, dtype=int))


def test_random_state_controls_everything(small_digits):
    X, y, X_test, _ = small_digits
    params = dict(epochs=3, early_stopping=True, validation_fraction=0.2, random_state=42)
    a = MBClassifier(**params).fit(X, y)
    b = MBClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(a.network_.params, b.network_.params)
    assert a.validation_scores_ == b.validation_scores_
    c = MBClassifier(**{**params, "random_state": 43}).fit(X, y)
    assert not np.array_equal(a.network_.params, c.network_.params)


def test_partial_fit_equals_fit(small_digits):
    X, y, _, _ = small_digits
    whole = MBClassifier(epochs=3, random_state=0).fit(X, y)
    step = MBClassifier(epochs=3, random_state=0)
    for _ in range(3):
        step.partial_fit(X, y, classes=np.arange(10))
    # Each call is one epoch whose shuffle order continues the network's stream.
    np.testing.assert_array_equal(step.network_.params, whole.network_.params)
    assert step.n_iter_ == 3 and step.loss_curve_ == whole.loss_curve_


def test_partial_fit_needs_classes_first_and_known_labels(small_digits):
    X, y, _, _ = small_digits
    clf = MBClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes: required on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))  # not every class in one batch
    assert list(clf.classes_) == list(range(10))
    with pytest.raises(ValueError, match=r"row 0 has label 12"):
        clf.partial_fit(X[:3], np.array([12, 1, 2]))
    with pytest.raises(ValueError, match="differs from classes_"):
        clf.partial_fit(X, y, classes=np.arange(11))


def test_warm_start_continues_for_epochs(small_digits):
    X, y, _, _ = small_digits
    once = MBClassifier(epochs=5, random_state=0).fit(X, y)
    twice = MBClassifier(epochs=3, warm_start=True, random_state=0).fit(X, y)
    twice.set_params(epochs=2).fit(X, y)
    np.testing.assert_array_equal(twice.network_.params, once.network_.params)
    assert twice.n_iter_ == 5 and len(twice.loss_curve_) == 5
    assert list(twice.history_["epoch"]) == [1, 2, 3, 4, 5]
    # Without warm_start a second fit starts over.
    cold = MBClassifier(epochs=3, random_state=0).fit(X, y)
    cold.set_params(epochs=2).fit(X, y)
    assert cold.n_iter_ == 2


def test_warm_start_needs_same_classes(small_digits):
    X, y, _, _ = small_digits
    clf = MBClassifier(epochs=1, warm_start=True, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="warm_start needs the classes"):
        clf.fit(X[y < 5], y[y < 5])


def test_early_stopping_keeps_best(small_digits):
    X, y, _, _ = small_digits
    clf = MBClassifier(epochs=50, eta=3.0, early_stopping=True, n_iter_no_change=2, random_state=0).fit(X, y)
    assert clf.n_iter_ < 50  # stopped early
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_pipeline_gridsearch_cross_val(small_digits):
    X, y, _, _ = small_digits
    pipe = make_pipeline(MinMaxScaler(), MBClassifier(epochs=3, random_state=0))
    search = GridSearchCV(pipe, {"mbclassifier__eta": [0.05, 1.0],
                                 "mbclassifier__hidden_layer_sizes": [(10,), (20,)]}, cv=2)
    search.fit(X * 16, y)  # raw pixel counts: the scaler makes them [0, 1] again
    assert search.best_params_["mbclassifier__eta"] == 1.0
    assert search.best_score_ > 0.6
    scores = cross_val_score(MBClassifier(epochs=10, random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.75


def test_clone_and_params():
    clf = MBClassifier(hidden_layer_sizes=(5, 4), eta=2.0, dtype="float32")
    assert clone(clf).get_params() == clf.get_params()
    assert clf.get_params()["cost"] is None  # "cross_entropy" when fitted
    X = np.random.default_rng(0).random((20, 3))
    fitted = clf.set_params(epochs=1).fit(X, np.arange(20) % 3)
    assert fitted.network_.sizes == (3, 5, 4, 3) and fitted.network_.cost.name == "cross_entropy"
    assert fitted.network_.dtype == np.float32


@pytest.mark.parametrize("bad, message", [
    ({"hidden_layer_sizes": (10, 0)}, r"hidden_layer_sizes\[1\]"),
    ({"eta": -1.0}, "eta"),
    ({"epochs": 0}, "epochs"),
    ({"early_stopping": True, "validation_fraction": 1.5}, "validation_fraction"),
    ({"cost": "hinge"}, "cost"),
])
def test_bad_hyperparameters_name_themselves(bad, message):
    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match=message):
        MBClassifier(**bad).fit(X, np.arange(20) % 2)


def test_regressor_targets_and_shapes():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(300, 2))
    Y = np.column_stack([10 * X[:, 0] ** 2 - 3, 50 + 20 * X[:, 0] * X[:, 1]])
    reg = make_pipeline(StandardScaler(), MBRegressor(hidden_layer_sizes=(20,), epochs=200, eta=2.0,
                                                      random_state=0))
    reg.fit(X, Y)
    assert reg.predict(X).shape == (300, 2)
    assert reg.score(X, Y) > 0.8
    one = MBRegressor(epochs=2, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (300,)
    assert one.n_outputs_ == 1 and len(one.loss_curve_) == 2
