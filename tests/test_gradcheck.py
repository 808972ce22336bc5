"""gradcheck finds the classic backprop bugs, on the right layer and group."""
import numpy as np
import pandas as pd
import pytest

import mbtrain
from mbtrain.activations import sigmoid


def user_backprop(bug=None):
    """A learner's matrix backprop for a sigmoid net, optionally with one classic bug.

    Returns the gradient of net.loss: mean over rows, no L2 term.
    """

    def gradients(net, X, Y):
        activations, zs = [X], []
        for w, b in zip(net.weights, net.biases):
            zs.append(activations[-1] @ w.T + b)
            activations.append(sigmoid(zs[-1]))
        a = activations[-1]
        if net.cost.name == "quadratic":
            delta = (a - Y) * a * (1 - a)
            if bug == "cross_entropy_delta_for_quadratic":
                delta = a - Y
        else:
            delta = a - Y
            if bug == "quadratic_delta_for_cross_entropy":
                delta = (a - Y) * a * (1 - a)
        m = X.shape[0]
        grad_w, grad_b = [None] * len(net.weights), [None] * len(net.weights)
        for l in range(len(net.weights) - 1, -1, -1):
            grad_w[l] = delta.T @ activations[l] / m
            grad_b[l] = delta.sum(axis=0) / m
            if bug == "no_batch_mean":
                grad_w[l] = grad_w[l] * m
                grad_b[l] = grad_b[l] * m
            if l > 0:
                a_prev = activations[l]
                delta = delta @ net.weights[l]
                if bug == "sigmoid_prime_twice":
                    s = a_prev * (1 - a_prev)
                    delta = delta * s * (1 - s)
                elif bug != "hidden_delta_without_sigmoid_prime":
                    delta = delta * a_prev * (1 - a_prev)
        if bug == "missing_bias_gradient":
            grad_b[0] = np.zeros_like(grad_b[0])
        return grad_w, grad_b

    return gradients


@pytest.fixture
def problem(rng):
    X = rng.random((6, 5))
    y = rng.integers(0, 3, size=6)
    return X, y


def failing(result):
    return set(zip(result.failures["layer"], result.failures["group"]))


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
def test_correct_user_backprop_passes(problem, cost):
    X, y = problem
    net = mbtrain.Network([5, 4, 4, 3], cost=cost, seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=user_backprop())
    assert result.ok, str(result)


def test_hidden_delta_without_sigmoid_prime_fails_hidden_layers_only(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 4, 3], cost="quadratic", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=user_backprop("hidden_delta_without_sigmoid_prime"))
    assert not result.ok
    # the output layer (3) is right; every layer the bad delta reaches is wrong
    assert failing(result) == {(1, "weights"), (1, "biases"), (2, "weights"), (2, "biases")}


def test_sigmoid_prime_applied_twice_fails(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], cost="quadratic", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=user_backprop("sigmoid_prime_twice"))
    assert failing(result) == {(1, "weights"), (1, "biases")}


@pytest.mark.parametrize("cost, bug", [
    ("cross_entropy", "quadratic_delta_for_cross_entropy"),
    ("quadratic", "cross_entropy_delta_for_quadratic"),
])
def test_output_delta_of_the_wrong_cost_fails_every_layer(problem, cost, bug):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], cost=cost, seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=user_backprop(bug))
    assert (2, "weights") in failing(result) and (2, "biases") in failing(result)
    assert not result.ok


def test_missing_bias_gradient_is_reported_on_that_group(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=user_backprop("missing_bias_gradient"))
    assert failing(result) == {(1, "biases")}


def test_gradient_not_divided_by_batch_size_fails(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=user_backprop("no_batch_mean"))
    assert len(result.failures) == 4


def test_regularized_bias_is_caught(problem):
    """L2 applied to biases too: only the bias groups fail."""
    X, y = problem
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    lmbda, n = 2.0, 6
    correct = user_backprop()

    def regularizes_bias(net, X, Y):
        grad_w, grad_b = correct(net, X, Y)
        return ([g + lmbda / n * w for g, w in zip(grad_w, net.weights)],
                [g + lmbda / n * b for g, b in zip(grad_b, net.biases)])

    result = mbtrain.gradcheck(net, X, y, lmbda=lmbda, gradients=regularizes_bias)
    assert failing(result) == {(1, "biases"), (2, "biases")}


def test_table_layout(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], seed=0)
    result = mbtrain.gradcheck(net, X, y)
    assert isinstance(result.table, pd.DataFrame)
    assert list(result.table[["layer", "group"]].itertuples(index=False, name=None)) == [
        (1, "weights"), (1, "biases"), (2, "weights"), (2, "biases")]
    assert {"max_rel_error", "ok"} <= set(result.table.columns)
    assert "gradcheck OK" in str(result)


def test_book_style_bias_columns_are_accepted(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], seed=0)
    correct = user_backprop()

    def column_biases(net, X, Y):
        grad_w, grad_b = correct(net, X, Y)
        return grad_w, [g[:, None] for g in grad_b]

    assert mbtrain.gradcheck(net, X, y, gradients=column_biases).ok


def test_max_checks_samples_entries(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], seed=0)
    result = mbtrain.gradcheck(net, X, y, max_checks=3)
    assert result.ok
    assert result.table["checked"].max() == 3


def test_does_not_modify_the_network(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], dtype="float32", seed=0)
    before = net.params.copy()
    mbtrain.gradcheck(net, X, y)
    np.testing.assert_array_equal(net.params, before)


def test_bad_user_gradients_shapes_are_named(problem):
    X, y = problem
    net = mbtrain.Network([5, 4, 3], seed=0)
    with pytest.raises(ValueError, match=r"grad_weights\[1\]"):
        mbtrain.gradcheck(net, X, y, gradients=lambda net, X, Y: (
            [np.zeros((4, 5)), np.zeros((5, 3))], [np.zeros(4), np.zeros(3)]))
    with pytest.raises(TypeError, match="gradients"):
        mbtrain.gradcheck(net, X, y, gradients=lambda net, X, Y: None)
