"""The fast numba kernels of one dense layer: register-blocked forward, update and deltas.

The plain kernels in :mod:`mbtrain.kernels` are the specification; these compute
the same maths (tested against them in ``tests/test_kernels.py``) for the batch
passes and epochs of :mod:`mbtrain.fast_kernels`. Only ``@njit`` functions over
arrays and scalars, calling nothing outside this module (``softmax_rows`` and
``hidden_delta_rows`` are copies of their plain counterparts: see the cache
note in :mod:`mbtrain.fast_kernels`).

Shape legend::

    m      rows in the mini-batch            n_in, n_out  widths of one layer
    A      (any, n_in) input rows            W            (n_out, n_in), the book's layout
    rows   (m,) int64 row indices into A     b            (n_out,)
    Z, D   (m, n_out) weighted inputs (then activations), errors delta

What makes them fast (measured with ``benchmarks/kernel_profile.py``):

- no gather copy: a kernel reads the batch rows ``A[rows[i]]`` in place
  (shuffle indices, not data);
- forward ``Z = A W^T + b``: on AVX-512, whole tiles of 6 rows x 4 units of
  explicit vectors (:mod:`mbtrain.fast_tiles`); the rest, and everything
  elsewhere, in register tiles of ``FORWARD_ROWS x FORWARD_UNITS`` (4 x 4): 16
  scalar accumulators, tuples that LLVM keeps in registers and turns into 16
  vector accumulators over the contiguous ``n_in``; every W load serves 4 rows
  and every row load 4 units;
- weight update ``W <- s W + beta D^T A``: on AVX-512, register tiles of
  explicit vectors (:mod:`mbtrain.fast_tiles`) that read and write each tile
  of W once per batch; elsewhere in blocks of up to ``UPDATE_ROWS`` (8) rows
  as the *outer* loop (8 rows stay in L1 while W streams from L2 once per
  block) and a single written row per inner loop (several written rows exceed
  LLVM's budget of runtime alias checks and the loop is not vectorized);
- sigmoid as ``1 / (1 + exp(-z))`` over the layer's rows as one flat loop,
  with an ``exp`` written in arithmetic (:func:`vector_exp`), so it vectorizes
  whatever the width; IEEE arithmetic gives exactly 0 for ``exp`` overflow
  and keeps NaN.

Every scalar arrives typed (``one``, ``beta``...): numba types ``1`` as int64
and ``float32 + int64`` as float64, which would silently widen float32 kernels.
A divergence check is a sum of ``v - v`` over the values (0, or NaN once one is
inf or NaN), as "not finite" in the other backends: a sum of the values
themselves overflows for large but finite weights.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload
from numba.np.numpy_support import as_dtype

from ._kernel_api import ADAM_KIND, CROSS_ENTROPY, NESTEROV_KIND, QUADRATIC, SOFTMAX
from .fast_tiles import (NARROW_ROWS, WIDE_VECTORS, tiled_bias_units, tiled_forward_rows,
                         tiled_hidden_delta_rows, tiled_narrow_forward_rows, tiled_update_forward_row,
                         tiled_update_forward_rows, tiled_update_units)

#: SHA-256 of fast_tiles.py, whose intrinsics these kernels compile in (the cache note of
#: :mod:`mbtrain.fast_kernels`, one file further down).
FAST_TILES_SHA256 = "4473309f967fc0b1e0a461ed20ade46e92975a0751af640df009a5672ba25d61"
#: ``reassoc`` and ``contract`` only: vectorized reductions and fused multiply-adds, inf and NaN kept.
FASTMATH = {"reassoc", "contract"}
#: Rows and units of a forward register tile (the tile loops below are written out for 4 x 4).
FORWARD_ROWS = 4
FORWARD_UNITS = 4
#: Rows per pass over W in the update; the rest of a batch runs in blocks of 4, 2 and 1.
UPDATE_ROWS = 8
#: Fewest rows the vector tiles take a forward for: one or two rows ran faster row-wise ([784,30,10],
#: 2.0 and 2.3 us against 2.8 and 2.9 a call; 3 rows 4.2 against 3.0).
TILED_FORWARD_ROWS = 3


# -- activations -------------------------------------------------------------------------------------
@intrinsic
def bits_to_float(typingctx, bits):
    """The float whose IEEE-754 bits are ``bits``: int32 to float32, int64 to float64 (a bitcast)."""
    if bits == types.int32:
        signature, target = types.float32(types.int32), ir.FloatType()
    elif bits == types.int64:
        signature, target = types.float64(types.int64), ir.DoubleType()
    else:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], target)
    return signature, codegen


def vector_exp(x):
    """``exp(x)`` of a float32 or float64 scalar, in arithmetic LLVM vectorizes (the jitted versions below).

    numba's ``np.exp`` calls libm once per value, 16 scalar calls per vector:
    the sigmoid of a [784,100,10] epoch took 9% of it. These are Cephes'
    ``expf`` and ``exp`` (Cody-Waite reduction, then a polynomial or Pade
    approximant times ``2^n``), at most 2 ulp from numpy's ``exp`` over the
    normal range (``tests/test_kernels.py``); inf, 0 and NaN where ``exp``
    gives them, subnormal results included. ``2^n`` is two factors
    ``2^(n//2) 2^(n - n//2)``, each a normal number built from its bits.
    Callers compile without ``reassoc``, which would undo the reduction.
    """
    return np.exp(x)


def exp32(x):
    """:func:`vector_exp` of a float32 (plain Python: ``@overload`` compiles it into its caller)."""
    x = np.float32(-104.0) if x < np.float32(-104.0) else x  # exp is 0 below, inf above (NaN passes both)
    x = np.float32(89.0) if x > np.float32(89.0) else x
    n = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - n * np.float32(0.693359375)
    r = r - n * np.float32(-2.12194440e-4)
    p = (((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r + np.float32(8.3334519073e-3)) * r
           + np.float32(4.1665795894e-2)) * r + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1))
    e = p * (r * r) + r + np.float32(1.0)
    k = np.int64(n if n == n else np.float32(0.0))  # NaN keeps r NaN; its own conversion would be undefined
    half = k >> np.int64(1)
    return e * bits_to_float(np.int32((half + 127) << 23)) * bits_to_float(np.int32((k - half + 127) << 23))


def exp64(x):
    """:func:`vector_exp` of a float64."""
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    n = np.floor(x * 1.4426950408889634074 + 0.5)
    r = x - n * 6.93145751953125e-1
    r = r - n * 1.42860682030941723212e-6
    rr = r * r
    p = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1)
    q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr + 2.0
    e = 1.0 + 2.0 * (p / (q - p))
    k = np.int64(n if n == n else 0.0)
    half = k >> np.int64(1)
    return e * bits_to_float((half + 1023) << 52) * bits_to_float((k - half + 1023) << 52)


@overload(vector_exp, inline="always")
def _vector_exp(x):
    if x == types.float32:
        return exp32
    if x == types.float64:
        return exp64
    return None


# error_model="numpy": Python's check for division by zero keeps the loops scalar; no reassoc (see vector_exp)
@njit(cache=True, error_model="numpy", fastmath={"contract"})
def sigmoid_rows(Z, one):
    """``Z <- 1 / (1 + exp(-Z))`` in place, branch-free, one loop over the contiguous rows so it vectorizes.

    IEEE arithmetic gives exactly 0 where ``exp`` overflows, and keeps NaN.
    """
    flat = Z.reshape(Z.size)
    for i in range(flat.shape[0]):
        flat[i] = one / (one + vector_exp(-flat[i]))


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def softmax_rows(Z):
    """Row-wise ``Z <- softmax(Z)``, shifted by the row maximum; the exponentials in one vectorized loop."""
    m, n = Z.shape
    for i in range(m):
        top = Z[i, 0]
        for j in range(1, n):
            top = max(top, Z[i, j])
        for j in range(n):
            Z[i, j] = Z[i, j] - top
    flat = Z.reshape(Z.size)
    for i in range(flat.shape[0]):
        flat[i] = vector_exp(flat[i])
    for i in range(m):
        total = Z[i, 0] - Z[i, 0]
        for j in range(n):
            total += Z[i, j]
        for j in range(n):
            Z[i, j] = Z[i, j] / total


# -- register tiles: tuples of scalars ---------------------------------------------------------------
@njit(inline="always")
def take4(v, i):
    """``(v[i], ..., v[i + 3])``; for a 2-D ``v``, four row views."""
    return v[i], v[i + 1], v[i + 2], v[i + 3]


@njit(inline="always")
def gather4(A, rows, i):
    """Row views ``A[rows[i]], ..., A[rows[i + 3]]``: four batch rows, not copied."""
    return A[rows[i]], A[rows[i + 1]], A[rows[i + 2]], A[rows[i + 3]]


@njit(inline="always", fastmath=FASTMATH)
def axpy4(acc, a, vs, j):
    """``acc[u] + a * vs[u][j]`` for ``u < 4``: a scalar times element ``j`` of four rows.

    Each load sits next to its multiply-add: loading the four elements first
    raises LLVM's register estimate, and it interleaves the vectorized loop less.
    """
    return acc[0] + a * vs[0][j], acc[1] + a * vs[1][j], acc[2] + a * vs[2][j], acc[3] + a * vs[3][j]


@njit(inline="always")
def store_tile(Z, i, h, b, tile):
    """``Z[i + r, h + u] = tile[r][u] + b[h + u]``."""
    for r in range(len(tile)):
        for u in range(len(tile[0])):
            Z[i + r, h + u] = tile[r][u] + b[h + u]


@njit(inline="always")
def scaled4(beta, D, i, h):
    """``beta * D[i:i + 4, h]`` as a tuple: the coefficients of four batch rows for unit ``h``."""
    return beta * D[i, h], beta * D[i + 1, h], beta * D[i + 2, h], beta * D[i + 3, h]


@njit(inline="always", fastmath=FASTMATH)
def weighted4(cs, xs, j):
    """``sum_r cs[r] * xs[r][j]`` over four rows."""
    return cs[0] * xs[0][j] + cs[1] * xs[1][j] + cs[2] * xs[2][j] + cs[3] * xs[3][j]


# -- dense layer kernels -------------------------------------------------------------------------------
@njit(cache=True, fastmath=FASTMATH)
def dense_forward_rows(Z, A, rows, W, b, h_lo, h_hi, tiles=True):
    """``Z[i, h] = A[rows[i]] . W[h] + b[h]`` for ``h_lo <= h < h_hi``.

    On AVX-512 (and ``tiles``), with ``n_in`` a whole number of vectors, at
    least :data:`TILED_FORWARD_ROWS` rows go to
    :func:`mbtrain.fast_tiles.tiled_forward_rows`; a layer of at most one
    vector of units (on 8 rows or more) to
    :func:`mbtrain.fast_tiles.tiled_narrow_forward_rows`; otherwise all of it
    to :func:`rowwise_forward_rows` (see :data:`mbtrain.fast_kernels` on ``tiles``).
    The last ``m % 6`` rows went row-wise until the tiles took them:
    [784,30,10], 100 rows 56.8 -> 48.7 us a call, 10 rows 7.2 -> 5.6.
    """
    m, n_in = rows.shape[0], W.shape[1]
    if WIDE_VECTORS and tiles and h_hi - h_lo <= 64 // W.itemsize and m >= NARROW_ROWS:
        tiled_narrow_forward_rows(Z, A, rows, W, b, h_lo, h_hi)
    elif WIDE_VECTORS and tiles and n_in % (64 // W.itemsize) == 0 and m >= TILED_FORWARD_ROWS and h_hi - h_lo >= 4:
        tiled_forward_rows(Z, A, rows, W, b, h_lo, h_hi)
    else:
        rowwise_forward_rows(Z, A, rows, W, b, h_lo, h_hi)


@njit(cache=True, fastmath=FASTMATH)
def rowwise_forward_rows(Z, A, rows, W, b, h_lo, h_hi):
    """:func:`dense_forward_rows` in tuple tiles (vectorized by LLVM along ``n_in``).

    Z (m, n_out); A (any, n_in); rows (m,); W (n_out, n_in); b (n_out,).
    Tiles of rows x units: 4 x 4, and 4 x 1 for the last units; 2 x 4 and
    2 x 1 for two last rows (batch 10 = 4 + 4 + 2); 1 x 8 and 1 x 1 for one.
    """
    m, n_in = rows.shape[0], W.shape[1]
    zero = b[0] - b[0]
    z4 = (zero, zero, zero, zero)
    i = 0
    while i + FORWARD_ROWS <= m:
        xs = gather4(A, rows, i)
        h = h_lo
        while h + FORWARD_UNITS <= h_hi:
            ws, s0, s1, s2, s3 = take4(W, h), z4, z4, z4, z4
            for j in range(n_in):
                s0, s1 = axpy4(s0, xs[0][j], ws, j), axpy4(s1, xs[1][j], ws, j)
                s2, s3 = axpy4(s2, xs[2][j], ws, j), axpy4(s3, xs[3][j], ws, j)
            store_tile(Z, i, h, b, (s0, s1, s2, s3))
            h += FORWARD_UNITS
        for h in range(h, h_hi):
            w, s = W[h], z4
            for j in range(n_in):
                s = axpy4(s, w[j], xs, j)
            store_tile(Z, i, h, b, ((s[0],), (s[1],), (s[2],), (s[3],)))
        i += FORWARD_ROWS
    if i + 2 <= m:
        x0, x1 = A[rows[i]], A[rows[i + 1]]
        h = h_lo
        while h + FORWARD_UNITS <= h_hi:
            ws, s0, s1 = take4(W, h), z4, z4
            for j in range(n_in):
                s0, s1 = axpy4(s0, x0[j], ws, j), axpy4(s1, x1[j], ws, j)
            store_tile(Z, i, h, b, (s0, s1))
            h += FORWARD_UNITS
        for h in range(h, h_hi):
            w, t0, t1 = W[h], zero, zero
            for j in range(n_in):
                t0, t1 = t0 + x0[j] * w[j], t1 + x1[j] * w[j]
            Z[i, h], Z[i + 1, h] = t0 + b[h], t1 + b[h]
        i += 2
    if i < m:
        x = A[rows[i]]
        h = h_lo
        while h + 2 * FORWARD_UNITS <= h_hi:
            lo, hi, w_lo, w_hi = z4, z4, take4(W, h), take4(W, h + 4)
            for j in range(n_in):
                lo, hi = axpy4(lo, x[j], w_lo, j), axpy4(hi, x[j], w_hi, j)
            store_tile(Z, i, h, b, (lo + hi,))
            h += 2 * FORWARD_UNITS
        for h in range(h, h_hi):
            w, t = W[h], b[h]
            for j in range(n_in):
                t += x[j] * w[j]
            Z[i, h] = t


@njit(cache=True, fastmath=FASTMATH)
def dense_update_rows(W, b, A, rows, D, alpha_w, alpha_b, beta, one, h_lo, h_hi, checked=True, tiles=True):
    """BP3/BP4 and the update, in place, for units ``h_lo <= h < h_hi``:

    ``W[h] <- alpha_w W[h] + beta sum_i D[i, h] A[rows[i]]``;
    ``b[h] <- alpha_b b[h] + beta sum_i D[i, h]``.

    ``alpha_w == 0`` (a gradient from zero): ``W`` is written, never read. The
    weights go through the vector tiles of :mod:`mbtrain.fast_tiles` on AVX-512
    (and ``tiles``) and through :func:`rowwise_update_units` otherwise. Returns whether every
    written value is finite; with ``checked=False`` only the biases are looked
    at, saving a pass over ``W``.
    """
    m, n_in = rows.shape[0], W.shape[1]
    if WIDE_VECTORS and tiles:
        tiled_update_units(W, A, rows, D, alpha_w, beta, h_lo, h_hi)
    else:
        rowwise_update_units(W, A, rows, D, alpha_w, beta, one, h_lo, h_hi)
    if WIDE_VECTORS and tiles:
        tiled_bias_units(b, D, alpha_b, beta, h_lo, h_hi)
    else:
        for h in range(h_lo, h_hi):
            t = alpha_b * b[h] if alpha_b != one - one else one - one  # alpha_b 0: b is never read
            for i in range(m):
                t += beta * D[i, h]
            b[h] = t
    nan_if_bad = one - one  # a sum of v - v: 0 while every v is finite, NaN after an inf or NaN
    for h in range(h_lo, h_hi):
        nan_if_bad += b[h] - b[h]
        if checked:
            w = W[h]
            for j in range(n_in):
                nan_if_bad += w[j] - w[j]
    return nan_if_bad == one - one


@njit(cache=True, fastmath=FASTMATH)
def rowwise_update_units(W, A, rows, D, alpha_w, beta, one, h_lo, h_hi):
    """The weights of :func:`dense_update_rows` without vector tiles: one written row per inner loop.

    In place on purpose: reading one array and writing another that is the same
    memory makes LLVM's runtime alias check fail and the loop run unvectorized
    (8x slower).
    """
    m, n_in = rows.shape[0], W.shape[1]
    if m == 0:
        for h in range(h_lo, h_hi):
            for j in range(n_in):
                W[h, j] = alpha_w * W[h, j]
    s = alpha_w  # the first row block scales W, the others accumulate
    if alpha_w == one - one and m < UPDATE_ROWS:  # W from zero, never read (it may hold anything)
        for h in range(h_lo, h_hi):
            for j in range(n_in):
                W[h, j] = one - one
        s = one
    i = 0
    while i < m:
        if m - i >= UPDATE_ROWS:
            x_lo, x_hi = gather4(A, rows, i), gather4(A, rows, i + 4)
            for h in range(h_lo, h_hi):
                w, c_lo, c_hi = W[h], scaled4(beta, D, i, h), scaled4(beta, D, i + 4, h)
                if s == one - one:  # the first block of a gradient from zero: W is written, not read
                    for j in range(n_in):
                        w[j] = weighted4(c_lo, x_lo, j) + weighted4(c_hi, x_hi, j)
                else:
                    for j in range(n_in):
                        w[j] = s * w[j] + weighted4(c_lo, x_lo, j) + weighted4(c_hi, x_hi, j)
            i += UPDATE_ROWS
        elif m - i >= 4:
            xs = gather4(A, rows, i)
            for h in range(h_lo, h_hi):
                w, cs = W[h], scaled4(beta, D, i, h)
                for j in range(n_in):
                    w[j] = s * w[j] + weighted4(cs, xs, j)
            i += 4
        elif m - i >= 2:
            x0, x1 = A[rows[i]], A[rows[i + 1]]
            for h in range(h_lo, h_hi):
                w, c0, c1 = W[h], beta * D[i, h], beta * D[i + 1, h]
                for j in range(n_in):
                    w[j] = s * w[j] + (c0 * x0[j] + c1 * x1[j])
            i += 2
        else:
            x0 = A[rows[i]]
            for h in range(h_lo, h_hi):
                w, c0 = W[h], beta * D[i, h]
                for j in range(n_in):
                    w[j] = s * w[j] + c0 * x0[j]
            i += 1
        s = one


@njit(cache=True, fastmath=FASTMATH)
def hidden_delta_rows(D_prev, D, W, A_prev, tiles=True):
    """BP2, fused: ``D_prev = (D @ W) * A_prev * (1 - A_prev)``, a row of ``D @ W`` as axpys over n_in.

    On AVX-512 (and ``tiles``) the row is built in vector registers
    (:func:`mbtrain.fast_tiles.tiled_hidden_delta_rows`).
    """
    if WIDE_VECTORS and tiles:
        tiled_hidden_delta_rows(D_prev, D, W, A_prev)
    else:
        rowwise_hidden_delta_rows(D_prev, D, W, A_prev)


@njit(cache=True, fastmath=FASTMATH)
def rowwise_hidden_delta_rows(D_prev, D, W, A_prev):
    """:func:`hidden_delta_rows` in loops that LLVM vectorizes along ``n_in``."""
    m, n_in = A_prev.shape
    for i in range(m):
        for j in range(n_in):
            D_prev[i, j] = D[i, 0] * W[0, j]
        for h in range(1, W.shape[0]):
            d = D[i, h]
            for j in range(n_in):
                D_prev[i, j] += d * W[h, j]
        for j in range(n_in):
            a = A_prev[i, j]
            D_prev[i, j] *= a - a * a


@njit(cache=True)
def output_delta_rows(D, A, Y, rows, cost_id, one):
    """BP1 for the batch rows: ``D[i] = dC/dz`` from ``A[i]`` and the targets of ``rows[i]``.

    ``Y`` is a target matrix ``(n, k)`` or integer labels ``(n,)`` (never
    expanded to a matrix: the one-hot target is 0 but at the label); the
    formulas of :func:`mbtrain.kernels.output_delta`. The labels loop holds no
    call per value: through a function for the target, not inlined, this took
    2.2 ms of a [784,30,10] epoch (``benchmarks/epoch_pieces.py``).
    """
    m, k = D.shape
    if Y.ndim == 1:  # labels (numba prunes the branch on the type of Y)
        for i in range(m):
            y = Y[rows[i]]
            if cost_id == QUADRATIC:  # (a - t) sigma'(z), t = 0 but at y
                for j in range(k):
                    a = A[i, j]
                    D[i, j] = a * (a - a * a)
                a = A[i, y]
                D[i, y] = (a - one) * (a - a * a)
            else:  # cross-entropy, and softmax's A * sum(targets) - t: the sum of a one-hot is exactly 1
                for j in range(k):
                    D[i, j] = A[i, j]
                D[i, y] -= one
        return
    for i in range(m):
        t = Y[rows[i]]
        if cost_id == SOFTMAX:
            total = one - one
            for j in range(k):
                total += t[j]
            for j in range(k):
                D[i, j] = A[i, j] * total - t[j]
        elif cost_id == CROSS_ENTROPY:
            for j in range(k):
                D[i, j] = A[i, j] - t[j]
        else:
            for j in range(k):
                a = A[i, j]
                D[i, j] = (a - t[j]) * (a - a * a)


# -- online SGD: the first layer's update fused with the next forward ----------------------------
def subnormal_limits_like(x):
    """``(smallest normal, 2 ** (mantissa bits + 2))`` of the float type of scalar ``x``: see :func:`leaves_row`."""
    info = np.finfo(type(x))
    return info.tiny, type(x)(2.0 ** (info.nmant + 2))


@overload(subnormal_limits_like, inline="always")
def _ol_subnormal_limits_like(x):
    info = np.finfo(as_dtype(x))
    tiny, scale = info.tiny, info.dtype.type(2.0 ** (info.nmant + 2))
    return lambda x: (tiny, scale)


@njit(inline="always")
def quiet_row(w, x, ch, alpha_w):
    """``w <- alpha_w w`` (when ``alpha_w`` is not 1), and whether ``w[j] + ch x[j]`` is then ``w[j]`` for every ``j``.

    Asked for a subnormal ``ch`` (the answer holds for any): a product with a subnormal factor or result
    is a microcode assist on x86 (about 100 cycles a vector): one [784,30,10]
    unit with a subnormal coefficient took a fused pass from 6.2 to 13.3 us,
    all 30 to 174 (Intel Xeon), and saturated units give them (eta 3, batch 1:
    2% of the hidden deltas). Half an ulp of a normal ``w[j]`` is more than
    ``|w[j]| 2^-(mantissa bits + 2)``: so when every (scaled) ``w[j]`` is
    normal, finite and at least ``|ch| |x[j]| 2^(mantissa bits + 3)`` (a
    factor 2 to spare; ``|ch| 2^(mantissa bits + 2)`` is normal, a
    power-of-two scaling, exact), ``|ch x[j]|`` is under half an ulp and the
    multiply-add rounds to ``w[j]``. A zero, subnormal, inf or NaN weight, or
    an inf or NaN input, says no.
    """
    tiny, scale = subnormal_limits_like(ch)
    bound = abs(ch) * scale
    bound = bound + bound
    ok = True
    if alpha_w != 1:
        for j in range(w.shape[0]):
            t = alpha_w * w[j]
            w[j] = t
            a = abs(t)
            ok &= (a >= tiny) & (a < np.inf) & (a >= bound * abs(x[j]))
    else:
        for j in range(w.shape[0]):
            a = abs(w[j])
            ok &= (a >= tiny) & (a < np.inf) & (a >= bound * abs(x[j]))
    return ok


@njit(cache=True, fastmath=FASTMATH)
def first_layer_update_forward(W, b, x, c, alpha_w, z_next, x_next, fuse):
    """Online SGD's first-layer step fused with the next example's first-layer forward.

    ``W[h] <- alpha_w W[h] + c[h] x``, ``b[h] <- b[h] + c[h]`` and, when ``fuse``,
    ``z_next[h] = W_new[h] . x_next + b_new[h]`` in the same pass: the updated
    row is still in registers, so ``W`` (larger than L1 for image inputs)
    streams from L2 twice per example instead of three times. On AVX-512 the
    rows go two at a time through :func:`mbtrain.fast_tiles.tiled_update_forward_rows`
    (``alpha_w W[h]`` rounded, then one multiply-add per weight). A row whose
    coefficient is subnormal and cannot move any of its (scaled) weights
    (:func:`quiet_row`) is not stepped: only scaled, and its forward computed.
    """
    n_out, n_in = W.shape
    tiny, _ = subnormal_limits_like(alpha_w)
    zero, one = alpha_w - alpha_w, alpha_w / alpha_w
    vectors = WIDE_VECTORS and fuse and n_in % (64 // W.itemsize) == 0
    flat = W.reshape(W.size)  # the vector kernels take offsets into one array, not a view per row
    h = 0
    while h < n_out:
        # two rows at a time through the vector kernel, unless one has a subnormal coefficient
        two = vectors and h + 1 < n_out and not (is_subnormal(c[h], tiny) or is_subnormal(c[h + 1], tiny))
        if two:
            b[h] += c[h]
            b[h + 1] += c[h + 1]
            z0, z1 = tiled_update_forward_rows(flat, h * n_in, (h + 1) * n_in, n_in, x, c[h], c[h + 1], alpha_w,
                                               x_next)
            z_next[h], z_next[h + 1] = z0 + b[h], z1 + b[h + 1]
            h += 2
            continue
        w, ch = W[h], c[h]
        bh = b[h] + ch
        b[h] = bh
        alpha = alpha_w
        if is_subnormal(ch, tiny):
            quiet = quiet_row(w, x, ch, alpha_w)  # w is alpha_w w from here
            alpha = one
            if quiet:
                ch = zero  # w + 0 x is w: no zero, non-finite weight or non-finite input (quiet_row)
        if vectors:
            z_next[h] = tiled_update_forward_row(flat, h * n_in, n_in, x, ch, alpha, x_next) + bh
        elif fuse:
            acc = bh - bh
            for j in range(n_in):
                v = alpha * w[j]
                v += ch * x[j]
                w[j] = v
                acc += v * x_next[j]
            z_next[h] = acc + bh
        else:
            for j in range(n_in):
                v = alpha * w[j]
                w[j] = v + ch * x[j]
        h += 1


@njit(inline="always")
def is_subnormal(v, tiny):
    """``0 < |v| < tiny`` (``tiny`` the smallest normal number of ``v``'s type)."""
    return v != 0 and abs(v) < tiny


# -- optimizer steps: one elementwise pass over a range of the flat parameters -----------------------
# no fastmath: the order of operations is optim.apply_step's (Adam's sqrt(s) / bias2 as a multiply by its
# reciprocal: one division per value fewer, the rest rounding for rounding); error_model="numpy":
# Python's check for division by zero keeps Adam's loop scalar (measured 126 us against 6 us a step, 23,860 values)
@njit(cache=True, error_model="numpy")
def optimizer_step(params, grad, first, second, rule, step_size, bias2, decay):
    """One step of ``rule`` (an ``mbtrain._kernel_api.Rule``) on equal-length slices, in place.

    ``first`` is the velocity (momentum, Nesterov) or Adam's ``m``, ``second``
    Adam's ``s``; ``step_size = eta / (1 - beta1^t)`` and ``bias2 = sqrt(1 -
    beta2^t)`` are this step's corrections (Adam only), typed like ``params``.
    The gradient is ``grad + decay * params``: the batch's mean gradient of the
    cost, and the L2 term (``decay`` is ``lmbda/n`` for weights, 0 for biases),
    added here so that ``grad`` needs no copy of the parameters first.
    One loop per rule over four separate arrays: LLVM vectorizes each.
    """
    n = params.shape[0]
    if rule.kind == ADAM_KIND:
        b1, c1, b2, c2, eps = rule.beta1, rule.one_minus_beta1, rule.beta2, rule.one_minus_beta2, rule.eps
        inv_bias2 = (bias2 / bias2) / bias2  # in the dtype of bias2 (> 0); one division per call, not per value
        for i in range(n):
            g = grad[i] + decay * params[i]
            m = b1 * first[i] + c1 * g
            s = b2 * second[i] + c2 * (g * g)
            first[i], second[i] = m, s
            params[i] -= step_size * (m / (np.sqrt(s) * inv_bias2 + eps))
    elif rule.kind == NESTEROV_KIND:
        mu, eta = rule.mu, rule.eta
        for i in range(n):
            g = grad[i] + decay * params[i]
            v = mu * first[i] + g
            first[i] = v
            params[i] -= eta * (g + mu * v)
    else:
        mu, eta = rule.mu, rule.eta
        for i in range(n):
            v = mu * first[i] + (grad[i] + decay * params[i])
            first[i] = v
            params[i] -= eta * v


@njit(cache=True, fastmath=FASTMATH)
def add_partials(out, partials, n, lo, hi, s, checked):
    """``out[q] <- s out[q] + partials[0, q] + ... + partials[n - 1, q]`` for ``lo <= q < hi``; ``s == 0``: from zero.

    The steps of the row-split epochs (:func:`mbtrain.fast_kernels.reduce_partials`,
    and the gradient of :func:`mbtrain.fast_kernels.step_partials`): each of
    ``n`` threads left ``beta sum grad`` over its rows of the batch in a row
    of ``partials``. Returns whether the values written are finite
    (``checked``; otherwise True, unlooked).
    """
    # views from lo: indices from 0 let LLVM load whole vectors (from lo it gathered and scattered lanes)
    o, first, zero_start = out[lo:hi], partials[0, lo:hi], s == s - s  # a sum from zero: out's values unused
    if n == 2:  # two threads: one pass over out
        second = partials[1, lo:hi]
        for q in range(o.shape[0]):
            o[q] = (first[q] if zero_start else s * o[q] + first[q]) + second[q]
    else:
        for q in range(o.shape[0]):
            o[q] = first[q] if zero_start else s * o[q] + first[q]
        for k in range(1, n):
            row = partials[k, lo:hi]
            for q in range(o.shape[0]):
                o[q] += row[q]
    nan_if_bad = s - s
    if checked:
        for q in range(o.shape[0]):
            nan_if_bad += o[q] - o[q]
    return nan_if_bad == s - s


@njit(cache=True)
def range_finite(v, one):
    """Whether every value of ``v`` is finite (a sum of ``x - x``, as the update kernels check)."""
    nan_if_bad = one - one
    for i in range(v.shape[0]):
        nan_if_bad += v[i] - v[i]
    return nan_if_bad == one - one
