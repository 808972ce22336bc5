"""Activations and costs: no overflow, no warnings, consistent derivatives."""
import warnings

import numpy as np
import pytest

import mbtrain
from mbtrain import kernels
from mbtrain.activations import log_softmax, sigmoid, softmax
from mbtrain.costs import COSTS, get_cost


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_never_overflows(dtype):
    z = np.array([-1000, -100, -1, 0, 1, 100, 1000], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(z)
    assert s.dtype == dtype
    assert s[0] == 0 and s[-1] == 1 and s[3] == 0.5
    assert np.all(np.diff(s) >= 0)
    for value in z:  # the scalar kernel too
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            k = kernels.sigmoid_scalar(value, value.dtype.type(1))
        assert np.isfinite(k)
        assert abs(k - float(sigmoid(np.array([value]))[0])) < 1e-7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_network_with_huge_weighted_inputs_stays_finite(dtype):
    net = mbtrain.Network([3, 2, 2], cost="cross_entropy", dtype=dtype, seed=0)
    net.params[:] = 1000
    X = np.ones((4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(net.forward(X)).all()
        assert np.isfinite(net.loss(X, [0, 1, 0, 1]))
        gw, gb = net.gradients(X, [0, 1, 0, 1])
    assert all(np.isfinite(g).all() for g in gw + gb)


def test_softmax_rows_sum_to_one_and_log_is_stable():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0)
    assert np.isfinite(log_softmax(z)).all()


@pytest.mark.parametrize("name", sorted(COSTS))
def test_cost_delta_is_the_derivative_of_fn(rng, name):
    """delta = dC/dz, checked by central differences on z."""
    cost = get_cost(name)
    z = rng.standard_normal((4, 3))
    y = np.eye(3)[rng.integers(0, 3, size=4)]

    def value(z):
        a = softmax(z) if cost.output_activation == "softmax" else sigmoid(z)
        return cost.fn(z, a, y).sum()

    a = softmax(z) if cost.output_activation == "softmax" else sigmoid(z)
    delta = cost.delta(z, a, y)
    eps = 1e-6
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        numeric[idx] = (value(zp) - value(zm)) / (2 * eps)
    np.testing.assert_allclose(delta, numeric, rtol=1e-6, atol=1e-9)


def test_a_new_cost_is_one_small_class(rng):
    """Register a cost; every backend uses it, numba through the numpy path (with a warning)."""

    @mbtrain.register_cost
    class HalfQuadratic(mbtrain.Cost):
        name = "half_quadratic"

        def fn(self, z, a, y):
            return 0.25 * np.square(a - y).sum(axis=-1)

        def delta(self, z, a, y):
            return 0.5 * (a - y) * a * (1 - a)

    try:
        net = mbtrain.Network([4, 3, 2], cost="half_quadratic", dtype="float64", seed=0)
        X = rng.random((5, 4))
        y = rng.integers(0, 2, size=5)
        assert mbtrain.gradcheck(net, X, y, backend="numpy").ok
        with pytest.warns(UserWarning, match="no fused kernel for cost 'half_quadratic'"):
            via_numba = net.gradients(X, y, backend="numba")
        np.testing.assert_allclose(via_numba[0][0], net.gradients(X, y, backend="numpy")[0][0], rtol=1e-12)
    finally:
        del COSTS["half_quadratic"]
