"""mbtrain.optimize: the flat loss-and-gradient for scipy, and full-batch training."""
import numpy as np
import pytest

import mbtrain
from mbtrain.optimize import METHODS, fit_full_batch, loss_and_grad, objective

from conftest import COST_NAMES, max_rel_diff, random_problem


@pytest.fixture(scope="module")
def digits():
    X_train, y_train, X_test, y_test = mbtrain.datasets.load("digits", dtype="float64")
    return X_train[:300], y_train[:300], X_test, y_test


@pytest.mark.parametrize("cost", COST_NAMES)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_loss_and_grad_match_network(rng, cost, backend):
    net, X, y = random_problem(rng, [5, 4, 3, 3], rows=12, cost=cost, seed=2)
    loss, grad = loss_and_grad(net, X, y, lmbda=0.7, backend=backend)
    assert isinstance(loss, float) and grad.dtype == np.float64 and grad.shape == (net.n_params,)
    assert loss == pytest.approx(net.loss(X, y, lmbda=0.7), rel=1e-12)
    # The flat layout interleaves layers (W_0, b_0, W_1, ...): pack, don't concatenate.
    expected = net.layout.pack(*net.gradients(X, y, lmbda=0.7, backend="loop"), np.float64)
    assert max_rel_diff(expected, grad) < 1e-10


@pytest.mark.parametrize("cost", COST_NAMES)
def test_objective_matches_central_differences(rng, cost):
    net, X, y = random_problem(rng, [4, 3, 3], rows=9, cost=cost, seed=3)
    fun = objective(net, X, y, lmbda=0.3)
    theta = net.get_params()
    _, grad = fun(theta)
    eps = 1e-6
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = eps
        numeric[i] = (fun(theta + step)[0] - fun(theta - step)[0]) / (2 * eps)
    assert max_rel_diff(numeric, grad) < 1e-7
    assert fun.n_calls == 1 + 2 * theta.size


def test_objective_checks_data_once_and_theta_every_call(rng):
    net, X, y = random_problem(rng, [4, 3, 2], rows=6, seed=0)
    fun = objective(net, X, y)
    assert fun.X.dtype == net.dtype and fun.Y.shape == (6, 2)
    with pytest.raises(ValueError, match=r"theta: expected a flat vector of 23 parameters"):
        fun(np.zeros(22))


def test_objective_drives_scipy_directly(digits):
    minimize = pytest.importorskip("scipy.optimize").minimize
    X, y, _, _ = digits
    net = mbtrain.Network([64, 20, 10], cost="cross_entropy", init="scaled", dtype="float64", seed=0)
    result = minimize(objective(net, X, y, lmbda=0.5), net.get_params(), jac=True, method="L-BFGS-B",
                      options={"maxiter": 20})
    net.set_params(result.x)
    assert result.fun == pytest.approx(net.loss(X, y, lmbda=0.5))
    assert net.score(X, y) > 0.8


@pytest.mark.parametrize("method", METHODS)
def test_each_method_reduces_the_loss(digits, method):
    pytest.importorskip("scipy")
    X, y, X_test, y_test = digits
    # BFGS keeps a dense inverse Hessian: a small network keeps it fast.
    hidden = 8 if method == "BFGS" else 30
    net = mbtrain.Network([64, hidden, 10], cost="cross_entropy", init="scaled", seed=0)  # float32
    before = net.params.copy()
    # TNC's maxiter caps function evaluations, and it spends several per iteration.
    options = {"maxfun": 60} if method == "TNC" else {}
    history = net.fit_full_batch(X, y, method=method, maxiter=15, lmbda=0.5, validation_data=(X_test, y_test),
                                 **options)
    result = history.attrs["result"]
    assert list(history.columns) == ["iteration", "loss", "train_accuracy", "grad_norm",
                                     "function_evaluations", "seconds", "val_loss", "val_cost", "val_accuracy"]
    assert history["iteration"].tolist() == list(range(len(history)))
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[0]
    assert history["train_accuracy"].iloc[-1] > 0.6
    assert history["function_evaluations"].is_monotonic_increasing
    assert history["function_evaluations"].iloc[-1] == result.nfev
    assert history.attrs["method"] == method
    # The network keeps the optimizer's final parameters, in its own dtype.
    assert net.dtype == np.float32 and not np.array_equal(net.params, before)
    np.testing.assert_allclose(net.params, result.x.astype(np.float32))
    assert net.loss(X, y, lmbda=0.5) == pytest.approx(result.fun, rel=1e-5)


def test_method_names_are_case_insensitive(digits):
    pytest.importorskip("scipy")
    X, y, _, _ = digits
    net = mbtrain.Network([64, 5, 10], cost="softmax", dtype="float64", seed=0)
    history = fit_full_batch(net, X, y, method="l-bfgs-b", maxiter=2, backend="numpy")
    assert history.attrs["method"] == "L-BFGS-B" and history.attrs["backend"] == "numpy"


def test_invalid_method_lists_valid_ones(digits):
    X, y, _, _ = digits
    net = mbtrain.Network([64, 5, 10], seed=0)
    with pytest.raises(ValueError, match=r"method: unknown method 'Newton-CG'; choose one of "
                                         r"\['L-BFGS-B', 'TNC', 'BFGS', 'CG'\]"):
        fit_full_batch(net, X, y, method="Newton-CG")


@pytest.mark.parametrize("X_shape, y_kind, message", [
    ((10, 63), "labels", "X: has 63 columns but the network's input layer has 64"),
    ((10, 64), "short", "y: has 9 labels but X has 10 rows"),
    ((10, 64), "matrix", r"Y: target matrix must have shape \(10, 10\), got \(10, 3\)"),
])
def test_wrong_shapes_are_clear_errors(X_shape, y_kind, message):
    net = mbtrain.Network([64, 5, 10], seed=0)
    X = np.zeros(X_shape)
    y = {"labels": np.zeros(10, dtype=int), "short": np.zeros(9, dtype=int), "matrix": np.zeros((10, 3))}[y_kind]
    with pytest.raises(ValueError, match=message.replace("y:", "Y:") if y_kind != "matrix" else message):
        fit_full_batch(net, X, y, maxiter=1)


def test_bad_maxiter_and_validation_data(digits):
    X, y, _, _ = digits
    net = mbtrain.Network([64, 5, 10], seed=0)
    with pytest.raises(ValueError, match="maxiter: must be >= 1"):
        fit_full_batch(net, X, y, maxiter=0)
    with pytest.raises(TypeError, match="validation_data: expected a pair"):
        fit_full_batch(net, X, y, maxiter=1, validation_data=X)


def test_missing_scipy_names_the_extra(monkeypatch, digits):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name == "scipy" or name.startswith("scipy."):
            raise ImportError("No module named 'scipy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    X, y, _, _ = digits
    with pytest.raises(ImportError, match=r"mbtrain\[scipy\]"):
        fit_full_batch(mbtrain.Network([64, 5, 10], seed=0), X, y)


def test_error_during_optimization_leaves_last_iterate(digits, monkeypatch):
    pytest.importorskip("scipy")
    X, y, _, _ = digits
    net = mbtrain.Network([64, 5, 10], cost="cross_entropy", dtype="float64", seed=0)
    start = net.params.copy()
    calls = {"n": 0}
    from mbtrain.optimize import Objective

    real = Objective.loss_and_grad

    def failing(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Objective, "loss_and_grad", failing)
    with pytest.raises(KeyboardInterrupt, match="after iteration"):
        fit_full_batch(net, X, y, maxiter=50)
    # The network holds an accepted iterate (not the trial point being evaluated): its loss
    # is no higher than the start's.
    assert net.loss(X, y) <= mbtrain.Network([64, 5, 10], cost="cross_entropy", dtype="float64",
                                             seed=0).loss(X, y)
    assert not np.array_equal(net.params, start)
