"""The vector-tile weight update (mbtrain.fast_tiles) and the row-wise one, against numpy's product.

Both compute ``W[h] <- s W[h] + beta sum_i D[i, h] A[rows[i]]`` for a range of
units. The shapes reach every tile of both kernels: 6, 4, 2 and 1 units; 4
vectors, one vector and a masked partial vector of columns; batches of 0, 1,
odd and many rows in shuffled order. Sentinel columns past ``n_in`` and units
outside the range must come back untouched (a masked store that wrote a whole
vector would overwrite them). Then the forward tiles (whole tiles, and the
narrow output layer's vector of units per row) and BP2, against numpy too.
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
    (10, 30, 100, 0, 10),       # [784,30,10]'s output layer: 6 + 4 units over one vector and a masked one
    (11, 20, 9, 0, 11),         # 6 + 4 + 1 units
    (5, 3, 3, 0, 5),            # fewer columns than one vector: masked only
    (8, 64, 0, 0, 8),           # an empty batch: W <- s W
    (30, 784, 1, 0, 30),        # one example (online SGD's output layer, or a last batch of one row)
    (10, 30, 1, 3, 10),         # one example over a masked second vector
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


@pytest.mark.parametrize("codes_dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_codes_load_as_float_lanes_exactly(codes_dtype, dtype):
    """``vload_as`` of byte codes: a vector's worth of them (16 for float32, 8 for float64) from any offset,
    converted as ``astype`` would (unsigned bytes above 127 stay positive, signed ones negative)."""
    from numba import njit

    @njit
    def lanes_of(a, i, out):  # a vector does not leave compiled code: stored back through vstore
        ft.vstore(out, 0, ft.vload_as(a, i, out[0]))

    codes = (np.arange(300) * 37 % 256).astype(np.uint8).view(codes_dtype)
    lanes = 64 // np.dtype(dtype).itemsize
    for i in (0, 1, 100, len(codes) - lanes):
        out = np.full(lanes, np.nan, dtype=dtype)
        lanes_of(codes, i, out)
        np.testing.assert_array_equal(out, codes[i:i + lanes].astype(dtype))


# -- the forward pass --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out, n_in, m, h_lo, h_hi", [
    (100, 784, 100, 0, 100),   # 16 x 6 rows in tiles, 4 rows in a last tile, no units left over
    (30, 784, 10, 0, 30),      # 6 + 4 rows in 4-unit tiles and 2 units one by one
    (10, 32, 7, 2, 10),        # a unit range: 8 units in tiles; 1 row left over (a last tile of 4 repeating it)
    (9, 48, 13, 0, 9),         # 12 rows x 8 units in tiles, 1 row and 1 unit left over
    (10, 48, 17, 1, 10),       # 5 rows left over: a last tile of 4 and one of 1
    (7, 32, 3, 0, 7),          # 3 rows: one last tile of 4, its last row repeated
    (10, 30, 12, 0, 10),       # n_in not a whole number of vectors: all row-wise
    (10, 64, 2, 0, 10),        # fewer rows than the tiles take: row-wise
])
def test_forward_matches_numpy_with_the_tiles_and_without(dtype, n_out, n_in, m, h_lo, h_hi):
    rng = np.random.default_rng(5)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    A = rng.random((m + 3, n_in)).astype(dtype)
    rows = rng.permutation(m + 3)[:m].astype(np.int64)
    expected = A[rows].astype(np.float64) @ W[h_lo:h_hi].T.astype(np.float64) + b[h_lo:h_hi]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for forward in (fl.dense_forward_rows, fl.rowwise_forward_rows):
        Z = np.full((m, n_out), SENTINEL, dtype=dtype)
        forward(Z, A, rows, W, b, h_lo, h_hi)
        np.testing.assert_allclose(Z[:, h_lo:h_hi], expected, rtol=tol, atol=tol * n_in)
        assert (Z[:, :h_lo] == SENTINEL).all() and (Z[:, h_hi:] == SENTINEL).all()


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 10, 15])  # no tile of 6, or the last 1-5 rows in tiles of 4
@pytest.mark.parametrize("h_lo, h_hi", [(4, 12), (3, 12), (1, 4), (2, 13)])  # 4-unit tiles, then units one by one
def test_tiled_forward_writes_every_row_and_only_the_units_given(m, h_lo, h_hi):
    """Rows past the end of a short last tile are computed, never stored: the rows below the batch stay as they were."""
    rng = np.random.default_rng(6)
    W, b = rng.standard_normal((13, 64)).astype(np.float32), rng.standard_normal(13).astype(np.float32)
    A, rows = rng.random((m + 3, 64)).astype(np.float32), rng.permutation(m + 3)[:m]
    Z = np.full((m + 3, 14), SENTINEL, dtype=np.float32)
    ft.tiled_forward_rows(Z, A, rows, W, b, h_lo, h_hi)
    np.testing.assert_allclose(Z[:m, h_lo:h_hi], A[rows] @ W[h_lo:h_hi].T + b[h_lo:h_hi], rtol=1e-5, atol=1e-5)
    assert (Z[m:] == SENTINEL).all() and (Z[:, :h_lo] == SENTINEL).all() and (Z[:, h_hi:] == SENTINEL).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_rows_forward_is_the_same_in_every_tile(dtype):
    """A row gets the same values bit for bit in a tile of 6 and in a last tile of 4, at any place in the batch."""
    rng = np.random.default_rng(8)
    W, b = rng.standard_normal((30, 784)).astype(dtype), rng.standard_normal(30).astype(dtype)
    A = rng.random((20, 784)).astype(dtype)
    Z_all = np.zeros((20, 30), dtype)
    ft.tiled_forward_rows(Z_all, A, np.arange(20), W, b, 0, 30)  # rows 0-17 in tiles of 6, 18-19 in a tile of 4
    for m in (1, 3, 4, 5, 10):
        rows = np.arange(20 - m, 20)[::-1].copy()  # the rows of the tiles of 6 now in the last tiles, reversed
        Z = np.zeros((m, 30), dtype)
        ft.tiled_forward_rows(Z, A, rows, W, b, 0, 30)
        np.testing.assert_array_equal(Z, Z_all[rows])


def test_float32_rows_of_a_float64_forward_are_widened_exactly():
    rng = np.random.default_rng(7)
    W, b = rng.standard_normal((8, 32)), rng.standard_normal(8)
    A, rows = rng.random((12, 32)).astype(np.float32), np.arange(12)
    Z, Z_cast = np.zeros((12, 8)), np.zeros((12, 8))
    fl.dense_forward_rows(Z, A, rows, W, b, 0, 8)
    fl.dense_forward_rows(Z_cast, A.astype(np.float64), rows, W, b, 0, 8)
    np.testing.assert_array_equal(Z, Z_cast)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out, n_in, m, h_lo, h_hi", [
    (10, 30, 100, 0, 10),      # [784,30,10]'s output layer: 12 tiles of 8 rows and 4 rows one by one
    (10, 100, 17, 2, 10),      # a unit range: 8 units (one whole float64 vector) at an offset
    (16, 3, 8, 0, 16),         # one whole float32 vector of units (two ranges of float64, below)
    (1, 1, 9, 0, 1),           # one unit, one input
    (5, 20, 7, 1, 4),          # fewer rows than a tile: one by one
    (4, 12, 0, 0, 4),          # an empty batch writes nothing
])
def test_narrow_forward_matches_numpy(dtype, n_out, n_in, m, h_lo, h_hi):
    """The output layer's forward, a vector of units per row; the units outside the range stay as they were."""
    lanes = 64 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(9)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    A = rng.random((m + 3, n_in)).astype(dtype)
    rows = rng.permutation(m + 3)[:m].astype(np.int64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for lo in range(h_lo, h_hi, lanes):  # at most one vector of units per call
        hi = min(lo + lanes, h_hi)
        Z = np.full((m, n_out + 5), SENTINEL, dtype=dtype)
        ft.tiled_narrow_forward_rows(Z, A, rows, W, b, lo, hi)
        expected = A[rows].astype(np.float64) @ W[lo:hi].T.astype(np.float64) + b[lo:hi]
        np.testing.assert_allclose(Z[:, lo:hi], expected, rtol=tol, atol=tol * n_in)
        assert (Z[:, :lo] == SENTINEL).all() and (Z[:, hi:] == SENTINEL).all()


def test_the_layer_forward_takes_the_narrow_tiles_for_an_output_layer():
    """dense_forward_rows gives at most a vector of units, on 8 rows or more, to the narrow kernel: bit for bit."""
    rng = np.random.default_rng(10)
    W, b = rng.standard_normal((10, 30)).astype(np.float32), rng.standard_normal(10).astype(np.float32)
    A, rows = rng.random((40, 30)).astype(np.float32), rng.permutation(40)
    Z, Z_narrow, Z_rowwise = (np.zeros((40, 10), np.float32) for _ in range(3))
    fl.dense_forward_rows(Z, A, rows, W, b, 0, 10)
    ft.tiled_narrow_forward_rows(Z_narrow, A, rows, W, b, 0, 10)
    fl.rowwise_forward_rows(Z_rowwise, A, rows, W, b, 0, 10)
    np.testing.assert_array_equal(Z, Z_narrow if ft.WIDE_VECTORS else Z_rowwise)


def test_float32_rows_of_a_float64_narrow_forward_are_widened_exactly():
    rng = np.random.default_rng(11)
    W, b = rng.standard_normal((6, 30)), rng.standard_normal(6)
    A, rows = rng.random((12, 30)).astype(np.float32), np.arange(12)
    Z, Z_cast = np.zeros((12, 6)), np.zeros((12, 6))
    ft.tiled_narrow_forward_rows(Z, A, rows, W, b, 0, 6)
    ft.tiled_narrow_forward_rows(Z_cast, A.astype(np.float64), rows, W, b, 0, 6)
    np.testing.assert_array_equal(Z, Z_cast)


# -- BP2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out, n_in, m", [(10, 100, 100), (10, 30, 10), (1, 1, 3), (3, 15, 2), (7, 64, 5),
                                            (2, 130, 4), (10, 17, 1), (10, 30, 103)])
def test_hidden_delta_matches_numpy_with_and_without_tiles(dtype, n_out, n_in, m):
    """Whole 4-vector blocks, single and masked vectors of the layer below (4 rows at a time, then the
    rows left over); sentinels past n_in stay."""
    rng = np.random.default_rng(8)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    D = rng.standard_normal((m, n_out)).astype(dtype)
    A_prev = rng.random((m, n_in)).astype(dtype)
    expected = (D.astype(np.float64) @ W.astype(np.float64)) * A_prev * (1 - A_prev)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for delta in (ft.tiled_hidden_delta_rows, fl.rowwise_hidden_delta_rows, fl.hidden_delta_rows):
        wide = np.full((m, n_in + 17), SENTINEL, dtype=dtype)
        delta(wide[:, :n_in], D, W, A_prev)
        np.testing.assert_allclose(wide[:, :n_in], expected, rtol=tol, atol=tol)
        assert (wide[:, n_in:] == SENTINEL).all()
