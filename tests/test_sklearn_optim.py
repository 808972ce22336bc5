"""scikit-learn's optimizer names in mbtrain.sklearn: solver, momentum, nesterovs_momentum, beta_1, beta_2,
epsilon, learning_rate, with scikit-learn's meanings; the default still trains plain SGD."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402

import mbtrain  # noqa: E402
from mbtrain.sklearn import MBClassifier, MBRegressor  # noqa: E402


@pytest.fixture(scope="module")
def small_digits():
    X_train, y_train, X_test, y_test = mbtrain.datasets.load("digits", dtype="float64")
    return X_train[:400], y_train[:400], X_test, y_test


def test_the_default_is_plain_sgd_as_before(small_digits):
    X, y, _, _ = small_digits
    default = MBClassifier(epochs=2, random_state=0).fit(X, y)
    assert default.network_.optimizer_state is None
    assert default.get_params()["solver"] == "sgd" and default.get_params()["momentum"] == 0.0
    by_hand = mbtrain.Network(default.network_.sizes, cost="cross_entropy", init="scaled", dtype="float64",
                              seed=int(np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=2)[0]))
    by_hand.fit(X, y, epochs=2, batch_size=10, eta=0.5, monitor=False)
    np.testing.assert_array_equal(default.network_.params, by_hand.params)


@pytest.mark.parametrize("params, description", [
    ({"solver": "sgd", "momentum": 0.0}, None),
    ({"solver": "sgd", "momentum": 0.9}, {"name": "nesterov", "mu": 0.9}),
    ({"solver": "sgd", "momentum": 0.8, "nesterovs_momentum": False}, {"name": "momentum", "mu": 0.8}),
    ({"solver": "adam"}, {"name": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
    ({"solver": "adam", "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-6, "momentum": 0.9},
     {"name": "adam", "beta1": 0.5, "beta2": 0.9, "eps": 1e-6}),
])
def test_solver_names_map_to_mbtrains_optimizers(small_digits, params, description):
    X, y, _, _ = small_digits
    clf = MBClassifier(epochs=1, eta=0.01, random_state=0, **params).fit(X, y)
    state = clf.network_.optimizer_state
    assert (state is None and description is None) or state.optimizer == description
    assert clone(clf).get_params() == clf.get_params()


def test_adam_learns_and_matches_the_network_it_wraps(small_digits):
    X, y, X_test, y_test = small_digits
    clf = MBClassifier(epochs=5, solver="adam", learning_rate_init=0.01, random_state=0).fit(X, y)
    assert clf.score(X_test, y_test) > 0.75  # chance is 0.1
    by_hand = mbtrain.Network(clf.network_.sizes, cost="cross_entropy", init="scaled", dtype="float64",
                              seed=int(np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=2)[0]))
    by_hand.fit(X, y, epochs=5, batch_size=10, eta=0.01, monitor=False, optimizer=mbtrain.optim.Adam())
    np.testing.assert_array_equal(clf.network_.params, by_hand.params)


def test_the_optimizer_state_continues_in_warm_start_and_partial_fit(small_digits):
    X, y, _, _ = small_digits
    once = MBClassifier(epochs=4, solver="sgd", momentum=0.9, eta=0.05, random_state=0).fit(X, y)
    warm = MBClassifier(epochs=2, solver="sgd", momentum=0.9, eta=0.05, warm_start=True, random_state=0)
    warm.fit(X, y).fit(X, y)
    np.testing.assert_array_equal(warm.network_.params, once.network_.params)
    steps = MBClassifier(solver="adam", eta=0.01, random_state=0)
    for _ in range(3):
        steps.partial_fit(X, y, classes=np.arange(10))
    whole = MBClassifier(epochs=3, solver="adam", eta=0.01, random_state=0).fit(X, y)
    np.testing.assert_array_equal(steps.network_.params, whole.network_.params)
    assert steps.network_.optimizer_state.step == 3 * 40


def test_adaptive_halves_eta_on_the_validation_score_and_stops():
    rng = np.random.default_rng(0)
    X, y = rng.random((120, 4)), rng.integers(0, 3, size=120)  # random labels: the score stalls
    clf = MBClassifier(epochs=300, eta=0.5, learning_rate="adaptive", early_stopping=True, n_iter_no_change=2,
                       random_state=0).fit(X, y)
    eta = clf.history_["eta"]
    assert clf.n_iter_ < 300  # stopped by the schedule, when eta fell below 0.5 / 128
    assert eta.iloc[0] == 0.5 and eta.min() == 0.5 / 128 and (np.diff(eta) <= 0).all()
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # without it, early stopping stops after n_iter_no_change epochs at a constant eta
    plain = MBClassifier(epochs=300, eta=0.5, early_stopping=True, n_iter_no_change=2, random_state=0).fit(X, y)
    assert plain.n_iter_ < clf.n_iter_ and set(plain.history_["eta"]) == {0.5}


def test_adaptive_without_early_stopping_watches_the_training_loss():
    rng = np.random.default_rng(1)
    X, y = rng.random((80, 3)), rng.integers(0, 3, size=80)
    clf = MBClassifier(epochs=300, eta=20.0, learning_rate="adaptive", n_iter_no_change=3, random_state=0).fit(X, y)
    eta = clf.history_["eta"].to_numpy()
    assert clf.n_iter_ < 300 and eta.min() == 20.0 / 128
    halved = int(np.argmax(eta < 20.0))  # the first epoch at a halved eta
    losses = clf.loss_curve_[:halved]
    assert min(losses[-3:]) >= min(losses[:-3])  # it came after three epochs without a lower training loss
    assert all(min(losses[i - 3:i]) < min(losses[:i - 3]) for i in range(4, halved - 2))  # and not earlier


@pytest.mark.parametrize("bad, error, message", [
    ({"solver": "lbfgs"}, ValueError, "solver: mbtrain's estimators train by mini-batches.*fit_full_batch"),
    ({"solver": "adamw"}, ValueError, r"solver: expected one of \['sgd', 'adam'\], got 'adamw'"),
    ({"momentum": 1.0}, ValueError, r"momentum: must be in \[0, 1\), got 1.0"),
    ({"momentum": -0.5}, ValueError, r"momentum: must be in \[0, 1\)"),
    ({"nesterovs_momentum": "yes"}, ValueError, "nesterovs_momentum: must be True or False"),
    ({"solver": "adam", "beta_1": 1.0}, ValueError, r"beta_1: must be in \[0, 1\)"),
    ({"beta_2": 2.0}, ValueError, r"beta_2: must be in \[0, 1\)"),
    ({"epsilon": 0.0}, ValueError, "epsilon: must be a finite number > 0"),
    ({"learning_rate": "invscaling"}, ValueError, "learning_rate: .*mbtrain has no 'invscaling'"),
    ({"learning_rate": "adaptive", "n_iter_no_change": 0}, ValueError, "n_iter_no_change: must be an integer"),
])
def test_bad_optimizer_settings_name_themselves_and_change_nothing(bad, error, message):
    X = np.random.default_rng(0).random((20, 3))
    y = np.arange(20) % 2
    clf = MBClassifier(epochs=1, random_state=0).fit(X, y)
    params = clf.network_.params.copy()
    with pytest.raises(error, match=message):
        clf.set_params(**bad).fit(X, y)
    np.testing.assert_array_equal(clf.network_.params, params)
    with pytest.raises(error, match=message):
        MBRegressor(**bad).fit(X, y.astype(float))
