"""The vector-tile weight update (mbtrain.fast_tiles) and the row-wise one, against numpy's product.

Both compute ``W[h] <- s W[h] + beta sum_i D[i, h] A[rows[i]]`` for a range of
units. The shapes reach every tile of both kernels: 6, 2 and 1 units; 4
vectors, one vector and a masked partial vector of columns; batches of 0, 1,
odd and many rows in shuffled order. Sentinel columns past ``n_in`` and units
outside the range must come back untouched (a masked store that wrote a whole
vector would overwrite them).
"""
from __future__ import annotations

import numpy as np
import pytest

from mbtrain import fast_layers as fl, fast_tiles as ft

SENTINEL = 12345.0


def rowwise(W, A, rows, D, s, beta, h_lo, h_hi):
    fl.rowwise_update_units(W, A, rows, D, s, beta, s.dtype.type(1), h_lo, h_hi)


def tiled(W, A, rows, D, s, beta, h_lo, h_hi):
    ft.tiled_update_units(W, A, rows, D, s, beta, h_lo, h_hi)


def case(n_out, n_in, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    wide = np.full((n_out, n_in + 19), SENTINEL, dtype=dtype)  # rows contiguous, sentinels after n_in
    W = wide[:, :n_in]
    W[...] = rng.standard_normal((n_out, n_in))
    A = rng.random((m + 5, n_in)).astype(dtype)
    rows = rng.permutation(m + 5)[:m].astype(np.int64)
    D = rng.standard_normal((m, n_out)).astype(dtype)
    return wide, W, A, rows, D


@pytest.mark.parametrize("kernel", [tiled, rowwise])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out, n_in, m, h_lo, h_hi", [
    (100, 784, 100, 0, 100),    # [784,100,10]'s first layer: 16 x 6 units + 2 x 2, 12 x 4 vectors + 1
    (30, 784, 10, 0, 30),       # 5 x 6 units
    (13, 65, 7, 0, 13),         # 6 + 6 + 1 units; 4 vectors and one element (float32) or more
    (9, 17, 1, 2, 9),           # a unit range inside the layer: 6 + 1 units; one vector and one element
    (10, 30, 37, 4, 8),         # 2 x 2 units over a masked second vector
    (5, 3, 3, 0, 5),            # fewer columns than one vector: masked only
    (8, 64, 0, 0, 8),           # an empty batch: W <- s W
])
@pytest.mark.parametrize("s", [1.0, 0.99])
def test_update_matches_numpy(kernel, dtype, n_out, n_in, m, h_lo, h_hi, s):
    wide, W, A, rows, D = case(n_out, n_in, m, dtype)
    before = wide.copy()
    s, beta = dtype(s), dtype(-0.125)
    expected = s * W[h_lo:h_hi] + beta * (D[:, h_lo:h_hi].T.astype(np.float64) @ A[rows].astype(np.float64))
    kernel(W, A, rows, D, s, beta, h_lo, h_hi)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(W[h_lo:h_hi], expected, rtol=tol, atol=tol * max(1, m))
    untouched = np.ones(n_out, dtype=bool)
    untouched[h_lo:h_hi] = False
    np.testing.assert_array_equal(wide[untouched], before[untouched])
    np.testing.assert_array_equal(wide[:, n_in:], before[:, n_in:])


@pytest.mark.parametrize("kernel", [tiled, rowwise])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out, n_in, m", [(100, 784, 100), (13, 65, 7), (9, 17, 1), (5, 3, 3), (7, 20, 0)])
def test_a_gradient_from_zero_never_reads_w(kernel, dtype, n_out, n_in, m):
    """``s == 0``: W may hold anything (NaN here) and comes back as ``beta D^T A`` exactly as numpy rounds it."""
    wide, W, A, rows, D = case(n_out, n_in, m, dtype, seed=1)
    W[...] = np.nan
    beta = dtype(0.5)
    kernel(W, A, rows, D, dtype(0), beta, 0, n_out)
    expected = beta * (D.T.astype(np.float64) @ A[rows].astype(np.float64))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(W, expected, rtol=tol, atol=tol * max(1, m))
    assert (wide[:, n_in:] == SENTINEL).all()


def test_both_kernels_agree_to_rounding_on_a_fashion_sized_batch():
    """The tiles sum over the batch in another order than the row blocks: the two differ by rounding only."""
    _, W1, A, rows, D = case(100, 784, 100, np.float32, seed=2)
    W2 = W1.copy()
    s, beta = np.float32(0.999), np.float32(-0.03)
    tiled(W1, A, rows, D, s, beta, 0, 100)
    rowwise(W2, A, rows, D, s, beta, 0, 100)
    np.testing.assert_allclose(W1, W2, rtol=2e-6, atol=2e-6)


def test_wide_vectors_follows_numbas_target(monkeypatch):
    """NUMBA_CPU_FEATURES, when set, decides; otherwise the host's AVX-512F flag."""
    import llvmlite.binding as llvm
    from numba.core import config

    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma,-avx512f")
    assert ft._wide_vectors() is False
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+avx512f")
    assert ft._wide_vectors() is True
    monkeypatch.setattr(config, "CPU_FEATURES", "")
    assert ft._wide_vectors() == bool(llvm.get_host_cpu_features().get("avx512f", False))


def test_the_layer_update_uses_the_tiles_where_the_cpu_has_wide_vectors():
    """dense_update_rows gives the tiled kernel's weights, bit for bit, on AVX-512 (the row-wise ones elsewhere)."""
    _, W, A, rows, D = case(30, 784, 50, np.float32, seed=3)
    b = np.zeros(30, np.float32)
    expected = W.copy()
    s, beta, one = np.float32(1), np.float32(-0.1), np.float32(1)
    (tiled if ft.WIDE_VECTORS else rowwise)(expected, A, rows, D, s, beta, 0, 30)
    assert fl.dense_update_rows(W, b, A, rows, D, s, one, beta, one, 0, 30, True)
    np.testing.assert_array_equal(W, expected)
    np.testing.assert_allclose(b, beta * D.sum(axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", [tiled, rowwise])
def test_float32_rows_of_a_float64_layer_are_widened_as_astype_would(kernel):
    """A float64 layer reads float32 rows in place (widening is exact): the same weights as casting first.

    (The other way round never reaches these kernels: a float32 net's epochs gather rows into float32.)
    """
    w_dtype, a_dtype = np.float64, np.float32
    _, W, A, rows, D = case(13, 70, 9, w_dtype, seed=4)
    A = A.astype(a_dtype)
    W_cast = W.copy()
    s, beta = w_dtype(0.9), w_dtype(-0.25)
    kernel(W, A, rows, D, s, beta, 0, 13)
    kernel(W_cast, A.astype(w_dtype), rows, D, s, beta, 0, 13)
    np.testing.assert_array_equal(W, W_cast)
