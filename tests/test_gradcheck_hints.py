"""gradcheck's hints: each classic bug, planted in a correct backprop, gets its own hint; a right one none."""
import numpy as np
import pytest

import mbtrain
from mbtrain.activations import sigmoid


def backprop(net, X, Y, lmbda=0.0, n=None, bug=None):
    """A learner's matrix backprop (sigmoid output), the gradient of net.loss; ``bug`` plants one mistake."""
    n = X.shape[0] if n is None else n
    m = X.shape[0]
    acts, zs = [X], []
    for w, b in zip(net.weights, net.biases):
        zs.append(acts[-1] @ w.T + b)
        acts.append(sigmoid(zs[-1]))
    a = acts[-1]
    if net.cost.name == "quadratic" and bug != "cross_entropy_delta":
        delta = (a - Y) * a * (1 - a)
    else:
        delta = a - Y
    L = len(net.weights)
    grad_w, grad_b = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        below = zs[l - 1] if bug == "z_for_a" and l == L - 1 else acts[l]
        grad_w[l] = delta.T @ below / m
        grad_b[l] = delta.mean(axis=0)
        if l > 0:
            s = acts[l] * (1 - acts[l])
            delta = delta @ net.weights[l] if bug == "no_sigmoid_prime" else (delta @ net.weights[l]) * s
    l2 = {"l2_missing": 0.0, "l2_over_m": lmbda / m}.get(bug, lmbda / n)
    grad_w = [g + l2 * w for g, w in zip(grad_w, net.weights)]
    if bug == "bias_regularized":
        grad_b = [g + lmbda / n * b for g, b in zip(grad_b, net.biases)]
    return grad_w, grad_b


def scaled(factor):
    def gradients(net, X, Y):
        grad_w, grad_b = backprop(net, X, Y)
        return [factor * g for g in grad_w], [factor * g for g in grad_b]
    return gradients


@pytest.fixture
def data(rng):
    return rng.random((6, 5)), rng.integers(0, 3, size=6)


def all_groups(result):
    return {(l, g) for l in range(1, len(result.table) // 2 + 1) for g in ("weights", "biases")}


def hinted(result, text):
    """The (layer, group) rows whose hint contains ``text``; and the text is in the sentences and str()."""
    rows = {(r.layer, r.group) for r in result.table.itertuples() if text in r.hint}
    assert any(text in h for h in result.hints), result.hints
    assert text in str(result)
    return rows


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy"])
@pytest.mark.parametrize("lmbda, n", [(0.0, None), (0.7, 50)])
def test_a_correct_gradient_gets_no_hint(data, cost, lmbda, n):
    X, y = data
    net = mbtrain.Network([5, 4, 4, 3], cost=cost, seed=1)
    result = mbtrain.gradcheck(net, X, y, lmbda=lmbda, n=n,
                               gradients=lambda net, X, Y: backprop(net, X, Y, lmbda, n))
    assert result.ok, str(result)
    assert result.hints == [] and (result.table["hint"] == "").all()
    assert "hint" not in str(result)
    # nor a backend's own gradient
    assert mbtrain.gradcheck(net, X, y, lmbda=lmbda, n=n).hints == []


@pytest.mark.parametrize("factor, text", [
    (6, "m = 6 times the numerical one: summed over the rows, not divided by the batch size"),
    (1 / 6, "1/m = 1/6 of the numerical one: divided by the batch size twice"),
    (-1, "wrong sign"),
    (2, "twice the numerical one"),
    (0.5, "half the numerical one"),
    (3.7, "3.7 times the numerical one: the right direction, the wrong scale"),
])
def test_a_constant_factor_is_named_on_every_group(data, factor, text):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=scaled(factor))
    assert not result.ok
    assert hinted(result, text) == all_groups(result)
    assert len(result.hints) == 1  # said once, naming every group
    assert result.hints[0].startswith("layer 1 weights, layer 1 biases, layer 2 weights, layer 2 biases: ")


def test_with_two_rows_a_factor_m_is_also_a_factor_two(data):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X[:2], y[:2], gradients=scaled(2))
    assert hinted(result, "not divided by the batch size m (or a stray factor of 2)") == all_groups(result)


def test_the_hint_survives_sampled_entries(data):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=scaled(6), max_checks=3)
    assert hinted(result, "not divided by the batch size") == all_groups(result)


def test_a_transposed_square_weight_gradient(data):
    X, y = data
    net = mbtrain.Network([5, 4, 4, 3], cost="quadratic", seed=1)

    def transposed(net, X, Y):
        grad_w, grad_b = backprop(net, X, Y)
        grad_w[1] = grad_w[1].T  # layer 2 is (4, 4): the shape cannot give it away
        return grad_w, grad_b

    result = mbtrain.gradcheck(net, X, y, gradients=transposed)
    assert hinted(result, "transposed") == {(2, "weights")}
    assert set(zip(result.failures["layer"], result.failures["group"])) == {(2, "weights")}


def test_a_transposed_rectangular_weight_gradient_is_a_shape_error_that_says_so(data):
    X, y = data
    net = mbtrain.Network([5, 4, 3], seed=1)

    def transposed(net, X, Y):
        grad_w, grad_b = backprop(net, X, Y)
        return [grad_w[0].T, grad_w[1]], grad_b

    with pytest.raises(ValueError, match=r"grad_weights\[0\] \(layer 1\) has shape \(5, 4\), expected "
                                         r"\(4, 5\) — transposed\?"):
        mbtrain.gradcheck(net, X, y, gradients=transposed)


def test_a_zero_bias_gradient(data):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)

    def dropped(net, X, Y):
        grad_w, grad_b = backprop(net, X, Y)
        return grad_w, [np.zeros_like(grad_b[0]), grad_b[1]]

    result = mbtrain.gradcheck(net, X, y, gradients=dropped)
    assert hinted(result, "all zeros: dropped or never assigned? (BP3") == {(1, "biases")}


@pytest.mark.parametrize("bug, text, groups", [
    ("bias_regularized", "an L2 term (lmbda/n) b: biases are not regularized", "biases"),
    ("l2_missing", "misses the L2 term (lmbda/n) W (lmbda = 2, n = 50)", "weights"),
    ("l2_over_m", "the L2 term uses lmbda/m (m = 6 rows) for lmbda/n (n = 50 training rows)", "weights"),
])
def test_l2_mistakes(data, bug, text, groups):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X, y, lmbda=2.0, n=50,
                               gradients=lambda net, X, Y: backprop(net, X, Y, 2.0, 50, bug=bug))
    assert hinted(result, text) == {(1, groups), (2, groups)}
    assert set(zip(result.failures["layer"], result.failures["group"])) == {(1, groups), (2, groups)}


def test_the_output_delta_of_another_cost(data):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="quadratic", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=lambda net, X, Y: backprop(net, X, Y, bug="cross_entropy_delta"))
    assert result.hints == ["the output delta (BP1) is the one of cost 'cross_entropy' (the output biases' "
                            "gradient is its mean over the rows), but the network's cost is 'quadratic'"]
    assert {(r.layer, r.group) for r in result.table.itertuples()
            if r.hint == "the output delta of cost 'cross_entropy'"} == {(2, "weights"), (2, "biases")}


def test_the_layer_where_a_hidden_delta_bug_enters(data):
    X, y = data
    net = mbtrain.Network([5, 4, 4, 3], cost="quadratic", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=lambda net, X, Y: backprop(net, X, Y, bug="no_sigmoid_prime"))
    assert len(result.hints) == 1
    assert result.hints[0].startswith("layer 3 is right and layers 1, 2 are wrong: the error enters at layer 2, in BP2")


def test_right_biases_and_wrong_weights_point_to_bp4(data):
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)
    result = mbtrain.gradcheck(net, X, y, gradients=lambda net, X, Y: backprop(net, X, Y, bug="z_for_a"))
    assert set(zip(result.failures["layer"], result.failures["group"])) == {(2, "weights")}
    assert result.hints == ["layer 2: biases right, weights wrong, so delta_2 is right: check BP4, "
                            "dC/dW2 = delta_2.T @ a_1, the activations of layer 1, divided by m"]


def test_layers_are_numbered_from_one(data):
    """Layer 1 is net.weights[0] (W1 in notebook 1): a bug planted there fails layer 1 only."""
    X, y = data
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", seed=1)

    def first_layer_summed(net, X, Y):
        grad_w, grad_b = backprop(net, X, Y)
        return [grad_w[0] * len(X), grad_w[1]], grad_b

    result = mbtrain.gradcheck(net, X, y, gradients=first_layer_summed)
    assert list(result.table["layer"]) == [1, 1, 2, 2]
    assert set(zip(result.failures["layer"], result.failures["group"])) == {(1, "weights")}
    assert "gradcheck FAILED: layer 1 weights (tolerance" in str(result)
    assert hinted(result, "not divided by the batch size") == {(1, "weights")}


def test_one_wrong_entry_is_not_called_a_wrong_scale(data):
    """A single entry always fits 'c times the numerical one': no hint unless c is a recognised factor."""
    X, y = data
    net = mbtrain.Network([5, 4, 1], cost="cross_entropy", seed=1)
    y = (y > 0).astype(float)[:, None]

    def off_by_a_bit(net, X, Y):
        grad_w, grad_b = backprop(net, X, Y)
        return grad_w, [grad_b[0], grad_b[1] + 0.3]

    result = mbtrain.gradcheck(net, X, y, gradients=off_by_a_bit)
    assert set(zip(result.failures["layer"], result.failures["group"])) == {(2, "biases")}
    assert not any("times the numerical one" in h for h in result.hints)
    assert result.hints == ["layer 2: weights right, biases wrong: check BP3, dC/db2 = the mean of delta_2 "
                            "over the rows"]
