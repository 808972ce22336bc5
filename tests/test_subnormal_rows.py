"""Online SGD's fused first-layer pass (``fast_layers.first_layer_update_forward``).

A row whose coefficient is subnormal and cannot move any weight (``fast_layers.quiet_row``) is only scaled
(L2) and its forward computed: the same weights, bit for bit, as the arithmetic leaves them; a row it could
move (a zero weight, an inf or NaN input) is computed. The other rows go two at a time through the vector
kernel (``fast_tiles.tiled_update_forward_rows``), which rounds a row the same way alone or in a pair.
"""
from __future__ import annotations

import numpy as np
import pytest

import mbtrain
from mbtrain import fast_layers as fl, fast_tiles as ft
from mbtrain.backends import get_backend
from mbtrain.params import empty_aligned

DTYPES = [np.float32, np.float64]


def pass_inputs(dtype, n_in=40, seed=0):
    rng = np.random.default_rng(seed)
    tiny = np.finfo(dtype).tiny
    # normal, subnormal, subnormal, zero, subnormal, then a pair of normal ones (the two-row kernel)
    c = np.array([1e-3, tiny / 4, -tiny / 1000, 0.0, tiny * 0.9, 2e-3, -1e-3], dtype=dtype)
    W = (rng.standard_normal((len(c), n_in)) * 0.05).astype(dtype)
    W[np.abs(W) < 1e-3] = dtype(0.01)  # every weight normal and not tiny
    b = rng.standard_normal(len(c)).astype(dtype)
    x, x_next = rng.random(n_in).astype(dtype), rng.random(n_in).astype(dtype)
    return W, b, x, x_next, c


def reference(W, b, x, x_next, c, alpha):
    """The pass in float64 then rounded (exact for the rows that do not move: their products are far under
    half an ulp)."""
    scaled = (alpha * W).astype(W.dtype)  # alpha W rounded first, as the kernels do
    W2 = (scaled.astype(np.float64) + np.outer(c.astype(np.float64), x.astype(np.float64))).astype(W.dtype)
    b2 = (b.astype(np.float64) + c).astype(b.dtype)
    return scaled, W2, b2, W2.astype(np.float64) @ x_next + b2


QUIET = [1, 2, 3, 4]  # the subnormal and zero coefficients
MOVED = [0, 5, 6]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("alpha", [1.0, 0.999])
@pytest.mark.parametrize("n_in", [40, 64])  # float32: 40 is not a whole number of vectors (the loops), 64 is
def test_subnormal_rows_are_left_as_the_arithmetic_leaves_them(dtype, fuse, alpha, n_in):
    W, b, x, x_next, c = pass_inputs(dtype, n_in)
    alpha = dtype(alpha)
    scaled, expected_W, expected_b, expected_z = reference(W, b, x, x_next, c, alpha)
    z = np.full(W.shape[0], np.nan, dtype=dtype)
    fl.first_layer_update_forward(W, b, x, c, alpha, z, x_next, fuse)
    np.testing.assert_array_equal(W[QUIET], expected_W[QUIET])  # bit for bit
    np.testing.assert_array_equal(W[QUIET], scaled[QUIET])  # scaled, and moved by nothing
    np.testing.assert_allclose(W[MOVED], expected_W[MOVED], rtol=2e-7 if dtype == np.float32 else 1e-15)
    assert not np.array_equal(W[MOVED], scaled[MOVED])
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
    assert not fl.quiet_row(W[1].copy(), x, c[1], dtype(1))
    expected = W[1].astype(np.float64) + np.float64(c[1]) * x.astype(np.float64)
    z = np.empty(W.shape[0], dtype=dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        fl.first_layer_update_forward(W, b, x, c, dtype(1), z, x_next, True)
    np.testing.assert_array_equal(W[1], expected.astype(dtype))
    if case == "zero weight":
        assert 0 < abs(W[1, 3]) < tiny


@pytest.mark.parametrize("dtype", DTYPES)
def test_quiet_row_says_yes_only_for_coefficients_too_small_to_move_any_weight(dtype):
    w = np.full(8, 0.5, dtype=dtype)
    x = np.linspace(0, 1, 8).astype(dtype)
    tiny, one = np.finfo(dtype).tiny, dtype(1)
    for c in (tiny / 3, -tiny / 3, 0.0, tiny, 2.0 ** -60):  # each far under half an ulp of 0.5 for x <= 1
        assert fl.quiet_row(w, x, dtype(c), one)
    assert not fl.quiet_row(w, x, dtype(1e-3), one) and not fl.quiet_row(w, x, dtype(2.0 ** -20), one)
    big_input = x.copy()
    big_input[2] = np.finfo(dtype).max  # its product with the coefficient is no longer small
    assert not fl.quiet_row(w, big_input, dtype(tiny / 3), one)
    limits = fl.subnormal_limits_like(dtype(1))
    assert limits[0] == tiny and limits[1] == 2.0 ** (np.finfo(dtype).nmant + 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quiet_row_scales_the_row_first(dtype):
    w = np.linspace(0.25, 1.0, 16).astype(dtype)
    x = np.ones(16, dtype=dtype)
    alpha = dtype(0.999)
    expected = alpha * w
    assert fl.quiet_row(w, x, dtype(np.finfo(dtype).tiny / 5), alpha)
    np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_in", [784, 48, 64])  # float32: 49, 3 and 4 vectors (a last odd vector, or none)
@pytest.mark.parametrize("alpha", [1.0, 0.99995])
def test_the_two_row_kernel_rounds_each_row_as_the_one_row_kernel_does(dtype, n_in, alpha):
    lanes = 64 // np.dtype(dtype).itemsize
    if n_in % lanes:
        pytest.skip("the vector kernels take whole vectors")
    rng = np.random.default_rng(3)
    W = empty_aligned(3 * n_in, dtype)
    W[...] = rng.standard_normal(3 * n_in) * 0.05
    start = W.copy()
    x, x_next = rng.random(n_in).astype(dtype), rng.random(n_in).astype(dtype)
    c0, c1, alpha = dtype(0.01), dtype(-0.02), dtype(alpha)
    dots = ft.tiled_update_forward_rows(W, n_in, 2 * n_in, n_in, x, c0, c1, alpha, x_next)  # rows 1 and 2
    alone = start.copy()
    dot1 = ft.tiled_update_forward_row(alone, n_in, n_in, x, c0, alpha, x_next)
    dot2 = ft.tiled_update_forward_row(alone, 2 * n_in, n_in, x, c1, alpha, x_next)
    np.testing.assert_array_equal(W, alone)  # bit for bit, row 0 untouched in both
    np.testing.assert_array_equal(W[:n_in], start[:n_in])
    assert dots == (dot1, dot2)
    rows = start.reshape(3, n_in)
    for r, c, dot in ((1, c0, dot1), (2, c1, dot2)):
        expected = (alpha * rows[r]).astype(np.float64) + np.float64(c) * x  # alpha w rounded first
        eps = np.finfo(dtype).eps  # one rounding: half an ulp of the result, or of the terms where they cancel
        np.testing.assert_allclose(W.reshape(3, n_in)[r], expected, rtol=eps, atol=eps * np.abs(expected).max())
        np.testing.assert_allclose(dot, W.reshape(3, n_in)[r].astype(np.float64) @ x_next,
                                   rtol=1e-5 if dtype == np.float32 else 1e-13)


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
