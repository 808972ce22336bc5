"""Online SGD's fused first-layer pass leaves a row alone when its coefficient is subnormal and cannot move
any weight (``fast_layers.leaves_row``): the same weights, bit for bit, as computing the row, and the same
forward; a row it could move (a zero weight, an inf or NaN input) is computed."""
from __future__ import annotations

import numpy as np
import pytest

import mbtrain
from mbtrain import fast_layers as fl
from mbtrain.backends import get_backend

DTYPES = [np.float32, np.float64]


def pass_inputs(dtype, n_out=5, n_in=40, seed=0):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((n_out, n_in)) * 0.05).astype(dtype)
    W[np.abs(W) < 1e-3] = dtype(0.01)  # every weight normal and not tiny
    b = rng.standard_normal(n_out).astype(dtype)
    x, x_next = rng.random(n_in).astype(dtype), rng.random(n_in).astype(dtype)
    tiny = np.finfo(dtype).tiny
    c = np.array([1e-3, tiny / 4, -tiny / 1000, 0.0, tiny * 0.9], dtype=dtype)[:n_out]  # normal, subnormal, zero
    return W, b, x, x_next, c


def reference(W, b, x, x_next, c):
    """The pass in float64 then rounded (exact here: the subnormal products are far under half an ulp)."""
    W2 = (W.astype(np.float64) + np.outer(c.astype(np.float64), x.astype(np.float64))).astype(W.dtype)
    b2 = (b.astype(np.float64) + c).astype(b.dtype)
    return W2, b2, W2.astype(np.float64) @ x_next + b2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fuse", [True, False])
def test_subnormal_rows_are_left_as_the_arithmetic_leaves_them(dtype, fuse):
    W, b, x, x_next, c = pass_inputs(dtype)
    expected_W, expected_b, expected_z = reference(W, b, x, x_next, c)
    z = np.full(W.shape[0], np.nan, dtype=dtype)
    start = W.copy()
    fl.first_layer_update_forward(W, b, x, c, dtype(1), z, x_next, fuse)
    np.testing.assert_array_equal(W[1:], expected_W[1:])  # bit for bit: the subnormal and zero coefficients
    np.testing.assert_array_equal(W[1:], start[1:])  # move nothing
    # the normal row, computed (fused multiply-adds: to rounding)
    np.testing.assert_allclose(W[0], expected_W[0], rtol=2e-7 if dtype == np.float32 else 1e-15)
    assert not np.array_equal(W[0], start[0])
    np.testing.assert_array_equal(b, expected_b)
    if fuse:
        np.testing.assert_allclose(z, expected_z, rtol=1e-5 if dtype == np.float32 else 1e-12)
    else:
        assert np.isnan(z).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["zero weight", "subnormal weight", "inf input", "NaN input"])
def test_a_row_the_coefficient_could_move_is_computed(dtype, case):
    W, b, x, x_next, c = pass_inputs(dtype)
    tiny = np.finfo(dtype).tiny
    if case == "zero weight":
        W[1, 3] = 0  # 0 + c x is c x, a subnormal: not the weight it was
    elif case == "subnormal weight":
        W[1, 3] = tiny / 2
    else:
        x[3] = np.inf if case == "inf input" else np.nan
    assert not fl.leaves_row(W[1], x, c[1])
    expected = W[1].astype(np.float64) + np.float64(c[1]) * x.astype(np.float64)
    z = np.empty(W.shape[0], dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        fl.first_layer_update_forward(W, b, x, c, dtype(1), z, x_next, True)
    np.testing.assert_array_equal(W[1], expected.astype(dtype))
    if case == "zero weight":
        assert 0 < abs(W[1, 3]) < tiny


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaves_row_says_yes_only_for_subnormal_coefficients_too_small_to_move(dtype):
    w = np.full(8, 0.5, dtype=dtype)
    x = np.linspace(0, 1, 8).astype(dtype)
    tiny = np.finfo(dtype).tiny
    assert fl.leaves_row(w, x, dtype(tiny / 3))
    assert fl.leaves_row(w, x, dtype(-tiny / 3))
    assert not fl.leaves_row(w, x, dtype(0)) and not fl.leaves_row(w, x, dtype(tiny))  # zero, normal
    big_input = x.copy()
    big_input[2] = np.finfo(dtype).max  # its product with the coefficient is no longer small
    assert not fl.leaves_row(w, big_input, dtype(tiny / 3))
    limits = fl.subnormal_limits_like(dtype(1))
    assert limits[0] == tiny and limits[1] == 2.0 ** (np.finfo(dtype).nmant + 2)


def test_a_saturated_online_epoch_equals_the_numpy_backend():
    """eta 3 on weights 200x their size saturates the hidden units: subnormal coefficients (1% of them at the
    start), left alone, and the epoch still is numpy's, rounding apart. In float64: float32's rounding, in
    an epoch this saturated, already takes the two apart by 1e-3 without the skipping."""
    dtype = "float64"
    rng = np.random.default_rng(5)
    X = rng.random((300, 20)).astype(dtype)
    X[X < 0.4] = 0
    y = rng.integers(0, 3, 300)
    Y = np.eye(3, dtype=dtype)[y]
    net = mbtrain.Network([20, 12, 3], dtype=dtype, seed=0)
    for w in net.weights:
        w *= 200  # z of thousands: sigma' underflows for many units
    (W0, W1), (b0, b1) = net.weights, net.biases
    with np.errstate(all="ignore"):
        a1 = 1 / (1 + np.exp(-(X @ W0.T + b0)))
        a2 = 1 / (1 + np.exp(-(a1 @ W1.T + b1)))
        d1 = (((a2 - Y) * a2 * (1 - a2)) @ W1) * a1 * (1 - a1)
    assert np.mean((np.abs(3 * d1) < np.finfo(dtype).tiny) & (d1 != 0)) > 0.005  # the path is taken
    nets = {name: net.copy() for name in ("numba", "numpy")}
    order = rng.permutation(300)
    with mbtrain.threads.limit(1):
        for name, copy in nets.items():
            assert get_backend(name).sgd_epoch(copy, X, Y, order, 1, 3.0, 0.0, 300) == -1
    scale = np.max(np.abs(nets["numpy"].params))
    assert np.max(np.abs(nets["numba"].params - nets["numpy"].params)) / scale < 1e-9
