"""Fast numba kernels for the numba backend: register- and cache-blocked, fused per epoch.

The plain kernels in :mod:`mbtrain.kernels` stay the oracle; this module computes
the same maths (tested against them in ``tests/test_kernels.py``) in the same
flat parameter layout, so ``net.params`` always holds the book's weights.

Shape legend::

    m      rows in the mini-batch            n_in, n_out  widths of one layer
    X      (n_samples, n_0) data             W            (n_out, n_in), the book's layout
    rows   (m,) int64 row indices into X     A            (m, n_l) activations of layer l >= 1
    D      (m, n_l) errors delta of layer l
    params flat parameter vector (mbtrain.params.ParameterLayout)
    sizes  int64 array of layer widths [n_0, ..., n_L]
    work   flat buffer: batch_size * sizes[l] values per layer l = 1..L

What makes them fast (figures in ``benchmarks/kernel_profile.py`` notes):

- no gather copy: the first layer reads ``X[rows[i]]`` in place (shuffle
  indices, not data);
- forward ``Z = A W^T + b`` as 4 rows x 4 units register blocks: 16 scalar
  accumulators that LLVM turns into 16 vector accumulators over the contiguous
  ``n_in``; every W load serves 4 rows and every row load 4 units;
- weight update ``W <- s W + beta D^T A`` with blocks of up to 8 rows as the
  *outer* loop (8 rows stay in L1 while W streams from L2 once per block; the
  other order streams the batch from memory once per unit) and a single
  written row per inner loop (several written rows exceed LLVM's budget of
  runtime alias checks and the loop is not vectorized);
- sigmoid as ``1 / (1 + exp(-z))``: branch-free, so it vectorizes; IEEE
  arithmetic gives exactly 0 for ``exp`` overflow and keeps NaN;
- a parallel variant (``parallel=True``, compiled from the same plain
  function) for large batches: rows split across threads for the forward pass
  and the deltas, weight rows split across threads for the update, so no two
  threads ever write the same value and there is no reduction buffer.

Every scalar arrives typed (``one``, ``eta``...) from the Python wrapper:
numba types ``1`` as int64 and ``float32 + int64`` as float64, which would
silently widen float32 kernels.
"""
from __future__ import annotations

import types

import numpy as np
from numba import njit, prange
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from .kernels import CROSS_ENTROPY, FASTMATH, SOFTMAX, hidden_delta_backward, layer_views, softmax_inplace

#: Row blocks of the update; also the smallest batch worth splitting across threads.
UPDATE_ROWS = 8


@njit(cache=True, fastmath=FASTMATH)
def sigmoid_rows(Z, one):
    """``Z <- 1 / (1 + exp(-Z))`` in place, branch-free so it vectorizes."""
    m, n = Z.shape
    for i in range(m):
        for j in range(n):
            Z[i, j] = one / (one + np.exp(-Z[i, j]))


@njit(cache=True, fastmath=FASTMATH)
def dense_forward_rows(Z, A, rows, W, b, h_lo, h_hi):
    """``Z[i, h] = A[rows[i]] . W[h] + b[h]`` for ``h_lo <= h < h_hi``.

    Z (m, n_out); A (any, n_in); rows (m,); W (n_out, n_in); b (n_out,).
    4 x 4 register blocks, then 4 x 1, 1 x 8 and 1 x 1 for the edges.
    """
    m = rows.shape[0]
    n_in = W.shape[1]
    zero = b[0] - b[0]
    i = 0
    while i + 4 <= m:
        x0 = A[rows[i]]
        x1 = A[rows[i + 1]]
        x2 = A[rows[i + 2]]
        x3 = A[rows[i + 3]]
        h = h_lo
        while h + 4 <= h_hi:
            w0 = W[h]
            w1 = W[h + 1]
            w2 = W[h + 2]
            w3 = W[h + 3]
            s00 = zero; s01 = zero; s02 = zero; s03 = zero  # noqa: E702
            s10 = zero; s11 = zero; s12 = zero; s13 = zero  # noqa: E702
            s20 = zero; s21 = zero; s22 = zero; s23 = zero  # noqa: E702
            s30 = zero; s31 = zero; s32 = zero; s33 = zero  # noqa: E702
            for j in range(n_in):
                a0 = x0[j]; a1 = x1[j]; a2 = x2[j]; a3 = x3[j]  # noqa: E702
                c0 = w0[j]; c1 = w1[j]; c2 = w2[j]; c3 = w3[j]  # noqa: E702
                s00 += a0 * c0; s01 += a0 * c1; s02 += a0 * c2; s03 += a0 * c3  # noqa: E702
                s10 += a1 * c0; s11 += a1 * c1; s12 += a1 * c2; s13 += a1 * c3  # noqa: E702
                s20 += a2 * c0; s21 += a2 * c1; s22 += a2 * c2; s23 += a2 * c3  # noqa: E702
                s30 += a3 * c0; s31 += a3 * c1; s32 += a3 * c2; s33 += a3 * c3  # noqa: E702
            b0 = b[h]; b1 = b[h + 1]; b2 = b[h + 2]; b3 = b[h + 3]  # noqa: E702
            Z[i, h] = s00 + b0; Z[i, h + 1] = s01 + b1; Z[i, h + 2] = s02 + b2; Z[i, h + 3] = s03 + b3  # noqa: E702,E501
            Z[i + 1, h] = s10 + b0; Z[i + 1, h + 1] = s11 + b1; Z[i + 1, h + 2] = s12 + b2; Z[i + 1, h + 3] = s13 + b3  # noqa: E702,E501
            Z[i + 2, h] = s20 + b0; Z[i + 2, h + 1] = s21 + b1; Z[i + 2, h + 2] = s22 + b2; Z[i + 2, h + 3] = s23 + b3  # noqa: E702,E501
            Z[i + 3, h] = s30 + b0; Z[i + 3, h + 1] = s31 + b1; Z[i + 3, h + 2] = s32 + b2; Z[i + 3, h + 3] = s33 + b3  # noqa: E702,E501
            h += 4
        while h < h_hi:
            w0 = W[h]
            s0 = zero; s1 = zero; s2 = zero; s3 = zero  # noqa: E702
            for j in range(n_in):
                c = w0[j]
                s0 += x0[j] * c; s1 += x1[j] * c; s2 += x2[j] * c; s3 += x3[j] * c  # noqa: E702
            Z[i, h] = s0 + b[h]; Z[i + 1, h] = s1 + b[h]; Z[i + 2, h] = s2 + b[h]; Z[i + 3, h] = s3 + b[h]  # noqa: E702,E501
            h += 1
        i += 4
    while i + 2 <= m:  # two leftover rows share each pass over W (batch 10 = 4 + 4 + 2)
        x0 = A[rows[i]]
        x1 = A[rows[i + 1]]
        h = h_lo
        while h + 4 <= h_hi:
            w0 = W[h]; w1 = W[h + 1]; w2 = W[h + 2]; w3 = W[h + 3]  # noqa: E702
            s00 = zero; s01 = zero; s02 = zero; s03 = zero  # noqa: E702
            s10 = zero; s11 = zero; s12 = zero; s13 = zero  # noqa: E702
            for j in range(n_in):
                a0 = x0[j]; a1 = x1[j]  # noqa: E702
                c0 = w0[j]; c1 = w1[j]; c2 = w2[j]; c3 = w3[j]  # noqa: E702
                s00 += a0 * c0; s01 += a0 * c1; s02 += a0 * c2; s03 += a0 * c3  # noqa: E702
                s10 += a1 * c0; s11 += a1 * c1; s12 += a1 * c2; s13 += a1 * c3  # noqa: E702
            Z[i, h] = s00 + b[h]; Z[i, h + 1] = s01 + b[h + 1]; Z[i, h + 2] = s02 + b[h + 2]; Z[i, h + 3] = s03 + b[h + 3]  # noqa: E702,E501
            Z[i + 1, h] = s10 + b[h]; Z[i + 1, h + 1] = s11 + b[h + 1]; Z[i + 1, h + 2] = s12 + b[h + 2]; Z[i + 1, h + 3] = s13 + b[h + 3]  # noqa: E702,E501
            h += 4
        while h < h_hi:
            w0 = W[h]
            s0 = zero; s1 = zero  # noqa: E702
            for j in range(n_in):
                c = w0[j]
                s0 += x0[j] * c; s1 += x1[j] * c  # noqa: E702
            Z[i, h] = s0 + b[h]; Z[i + 1, h] = s1 + b[h]  # noqa: E702
            h += 1
        i += 2
    while i < m:
        x0 = A[rows[i]]
        h = h_lo
        while h + 8 <= h_hi:
            w0 = W[h]; w1 = W[h + 1]; w2 = W[h + 2]; w3 = W[h + 3]  # noqa: E702
            w4 = W[h + 4]; w5 = W[h + 5]; w6 = W[h + 6]; w7 = W[h + 7]  # noqa: E702
            s0 = zero; s1 = zero; s2 = zero; s3 = zero; s4 = zero; s5 = zero; s6 = zero; s7 = zero  # noqa: E702
            for j in range(n_in):
                a = x0[j]
                s0 += a * w0[j]; s1 += a * w1[j]; s2 += a * w2[j]; s3 += a * w3[j]  # noqa: E702
                s4 += a * w4[j]; s5 += a * w5[j]; s6 += a * w6[j]; s7 += a * w7[j]  # noqa: E702
            Z[i, h] = s0 + b[h]; Z[i, h + 1] = s1 + b[h + 1]; Z[i, h + 2] = s2 + b[h + 2]; Z[i, h + 3] = s3 + b[h + 3]  # noqa: E702,E501
            Z[i, h + 4] = s4 + b[h + 4]; Z[i, h + 5] = s5 + b[h + 5]; Z[i, h + 6] = s6 + b[h + 6]; Z[i, h + 7] = s7 + b[h + 7]  # noqa: E702,E501
            h += 8
        while h < h_hi:
            w0 = W[h]
            s = b[h]
            for j in range(n_in):
                s += x0[j] * w0[j]
            Z[i, h] = s
            h += 1
        i += 1


@njit(cache=True, fastmath=FASTMATH)
def dense_update_rows(W, b, A, rows, D, alpha_w, alpha_b, beta, one, h_lo, h_hi, checked=True):
    """BP3/BP4 and the update, in place, for units ``h_lo <= h < h_hi``:

    ``W[h] <- alpha_w W[h] + beta sum_i D[i, h] A[rows[i]]``;
    ``b[h] <- alpha_b b[h] + beta sum_i D[i, h]``.

    In place on purpose: reading one array and writing another that is the same
    memory makes LLVM's runtime alias check fail and the loop run unvectorized
    (8x slower). ``one`` is 1 in the dtype of ``W``. Returns the sum of the
    written values (finite exactly when they all are: the divergence check);
    with ``checked=False`` only the biases are summed, saving a pass over ``W``
    (the epoch then checks every parameter once, at its end).
    """
    m = rows.shape[0]
    n_in = W.shape[1]
    check = b[0] - b[0]
    if m == 0:
        for h in range(h_lo, h_hi):
            for j in range(n_in):
                W[h, j] = alpha_w * W[h, j]
    s = alpha_w  # the first row block scales W, the others accumulate
    i = 0
    while i < m:
        k = m - i
        if k >= 8:
            k = 8
            x0 = A[rows[i]]; x1 = A[rows[i + 1]]; x2 = A[rows[i + 2]]; x3 = A[rows[i + 3]]  # noqa: E702
            x4 = A[rows[i + 4]]; x5 = A[rows[i + 5]]; x6 = A[rows[i + 6]]; x7 = A[rows[i + 7]]  # noqa: E702
            for h in range(h_lo, h_hi):
                w = W[h]
                c0 = beta * D[i, h]; c1 = beta * D[i + 1, h]; c2 = beta * D[i + 2, h]; c3 = beta * D[i + 3, h]  # noqa: E702,E501
                c4 = beta * D[i + 4, h]; c5 = beta * D[i + 5, h]; c6 = beta * D[i + 6, h]; c7 = beta * D[i + 7, h]  # noqa: E702,E501
                for j in range(n_in):
                    w[j] = (s * w[j] + (c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j])
                            + (c4 * x4[j] + c5 * x5[j] + c6 * x6[j] + c7 * x7[j]))
        elif k >= 4:
            k = 4
            x0 = A[rows[i]]; x1 = A[rows[i + 1]]; x2 = A[rows[i + 2]]; x3 = A[rows[i + 3]]  # noqa: E702
            for h in range(h_lo, h_hi):
                w = W[h]
                c0 = beta * D[i, h]; c1 = beta * D[i + 1, h]; c2 = beta * D[i + 2, h]; c3 = beta * D[i + 3, h]  # noqa: E702,E501
                for j in range(n_in):
                    w[j] = s * w[j] + (c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j])
        elif k >= 2:
            k = 2
            x0 = A[rows[i]]; x1 = A[rows[i + 1]]  # noqa: E702
            for h in range(h_lo, h_hi):
                w = W[h]
                c0 = beta * D[i, h]; c1 = beta * D[i + 1, h]  # noqa: E702
                for j in range(n_in):
                    w[j] = s * w[j] + (c0 * x0[j] + c1 * x1[j])
        else:
            k = 1
            x0 = A[rows[i]]
            for h in range(h_lo, h_hi):
                w = W[h]
                c0 = beta * D[i, h]
                for j in range(n_in):
                    w[j] = s * w[j] + c0 * x0[j]
        s = one
        i += k
    for h in range(h_lo, h_hi):
        t = alpha_b * b[h]
        for i in range(m):
            t += beta * D[i, h]
        b[h] = t
        check += t
        if checked:
            w = W[h]
            for j in range(n_in):
                check += w[j]
    return check


@njit(cache=True)
def work_view(work, sizes, batch_size, l, m):
    """``(m, sizes[l])`` view of layer ``l >= 1`` in a work buffer of ``batch_size`` rows."""
    offset = 0
    for k in range(1, l):
        offset += batch_size * sizes[k]
    return work[offset:offset + m * sizes[l]].reshape((m, sizes[l]))


def target_of(Y, r, j, A):
    """Target ``j`` of row ``r`` in the dtype of ``A``: ``Y[r, j]`` of a target matrix, or
    the one-hot of integer labels ``Y[r]`` (so labels are never expanded to a matrix)."""
    if Y.ndim == 1:
        return A.dtype.type(1) if Y[r] == j else A.dtype.type(0)
    return Y[r, j]


@overload(target_of, jit_options={"cache": True})
def _target_of_jit(Y, r, j, A):
    # resolved at compile time from Y's type; the constants carry A's dtype
    one = as_dtype(A.dtype).type(1)
    zero = as_dtype(A.dtype).type(0)
    if Y.ndim == 1:
        return lambda Y, r, j, A: one if Y[r] == j else zero
    return lambda Y, r, j, A: Y[r, j]


@njit(cache=True)
def output_delta_rows(D, A, Y, rows, cost_id):
    """BP1 for the batch rows: ``D[i] = dC/dz`` from ``A[i]`` and the targets of ``rows[i]``.

    ``Y`` is a target matrix ``(n, k)`` or integer labels ``(n,)`` (see
    :func:`target_of`). Same formulas as :func:`mbtrain.kernels.output_delta`.
    """
    m, k = D.shape
    for i in range(m):
        r = rows[i]
        if cost_id == SOFTMAX:
            total = A[i, 0] - A[i, 0]
            for j in range(k):
                total += target_of(Y, r, j, A)
            for j in range(k):
                D[i, j] = A[i, j] * total - target_of(Y, r, j, A)
        elif cost_id == CROSS_ENTROPY:
            for j in range(k):
                D[i, j] = A[i, j] - target_of(Y, r, j, A)
        else:
            for j in range(k):
                a = A[i, j]
                D[i, j] = (a - target_of(Y, r, j, A)) * (a - a * a)


@njit(cache=True)
def activate(Z, l, L, cost_id, one):
    """``Z <- activation(Z)`` for layer ``l`` of ``L``: softmax on the output of the softmax cost, else sigmoid."""
    if l == L - 1 and cost_id == SOFTMAX:
        softmax_inplace(Z)
    else:
        sigmoid_rows(Z, one)


@njit(cache=True)
def forward_rows(acts, params, sizes, X, rows, ident, batch_size, m, r_lo, r_hi, cost_id, one, first_layer=0):
    """Forward pass of batch rows ``r_lo <= i < r_hi`` (``X[rows[i]]``) into ``acts``.

    Layers below ``first_layer`` are taken as already computed (the online epoch
    computes the first one in its fused update pass).
    """
    L = sizes.shape[0] - 1
    for l in range(first_layer, L):
        W, b = layer_views(params, sizes, l)
        Z = work_view(acts, sizes, batch_size, l + 1, m)[r_lo:r_hi]
        if l == 0:
            dense_forward_rows(Z, X, rows[r_lo:r_hi], W, b, 0, W.shape[0])
        else:
            dense_forward_rows(Z, work_view(acts, sizes, batch_size, l, m), ident[r_lo:r_hi], W, b,
                               0, W.shape[0])
        activate(Z, l, L, cost_id, one)


@njit(cache=True)
def deltas_rows(deltas, acts, params, sizes, Y, rows, batch_size, m, r_lo, r_hi, cost_id):
    """BP1 and BP2 for batch rows ``r_lo <= i < r_hi``: every layer's delta, from the old weights."""
    L = sizes.shape[0] - 1
    output_delta_rows(work_view(deltas, sizes, batch_size, L, m)[r_lo:r_hi],
                      work_view(acts, sizes, batch_size, L, m)[r_lo:r_hi], Y, rows[r_lo:r_hi], cost_id)
    for l in range(L - 1, 0, -1):
        W, _ = layer_views(params, sizes, l)
        hidden_delta_backward(work_view(deltas, sizes, batch_size, l, m)[r_lo:r_hi],
                              work_view(deltas, sizes, batch_size, l + 1, m)[r_lo:r_hi], W,
                              work_view(acts, sizes, batch_size, l, m)[r_lo:r_hi])


@njit(cache=True)
def update_units(params, sizes, X, rows, ident, acts, deltas, batch_size, m, part, n_parts,
                 alpha_w, alpha_b, beta, one, checked=True, first_layer=0):
    """Update share ``part`` of ``n_parts`` of the units (weight rows) of layers ``first_layer``.. in place.

    Returns the check sum of the written values.
    """
    L = sizes.shape[0] - 1
    check = alpha_w - alpha_w
    for l in range(first_layer, L):
        W, b = layer_views(params, sizes, l)
        n_out = W.shape[0]
        # shares aligned to 4 units, the forward's register block
        step = (n_out + n_parts - 1) // n_parts
        step = (step + 3) // 4 * 4
        h_lo = min(part * step, n_out)
        h_hi = min(h_lo + step, n_out)
        if h_lo >= h_hi:
            continue
        D = work_view(deltas, sizes, batch_size, l + 1, m)
        if l == 0:
            check += dense_update_rows(W, b, X, rows, D, alpha_w, alpha_b, beta, one, h_lo, h_hi, checked)
        else:
            check += dense_update_rows(W, b, work_view(acts, sizes, batch_size, l, m),
                                       ident[:m], D, alpha_w, alpha_b, beta, one, h_lo, h_hi, checked)
    return check


@njit(cache=True)
def all_finite(params, one):
    """Whether every parameter is finite, from one summing pass (inf and NaN absorb in a sum).

    A finite sum that overflows reads as not finite too: a run that large has diverged.
    """
    total = one - one
    for i in range(params.shape[0]):
        total += params[i]
    return np.isfinite(total)


def _sgd_epoch(params, sizes, X, Y, order, batch_size, beta_full, beta_last, decay, one, cost_id, acts, deltas,
               n_parts, checked):
    """One epoch of mini-batch SGD over ``X[order]``, updating ``params`` in place.

    Compiled twice from this one function: serially (``n_parts == 1``) and
    with ``parallel=True``, where the batch rows are split in ``n_parts``
    shares for the forward pass and deltas and each layer's units in
    ``n_parts`` shares for the update (disjoint writes, no reduction buffer).
    ``beta_full = -eta / batch_size`` and ``beta_last = -eta / (rows of the
    last batch)`` arrive in the dtype of ``params`` (see the module notes).
    Returns the index of the first batch after which a parameter is not finite, or -1.

    Divergence check: with ``checked`` every batch sums every written value (a
    pass over the weights per batch). Without it only the biases are summed per
    batch and every parameter once at the end of the epoch, and a non-finite
    result returns ``n_batches``: "diverged, batch unknown". That is exact,
    because a non-finite parameter stays non-finite through every later update
    (inf and NaN absorb), so the caller restores the epoch's starting point and
    reruns it ``checked`` to name the batch (:class:`NumbaBackend` does).
    """
    n_rows = order.shape[0]
    n_batches = (n_rows + batch_size - 1) // batch_size
    ident = np.arange(batch_size)
    checks = np.empty(n_parts, dtype=params.dtype)
    for k in range(n_batches):
        start = k * batch_size
        stop = min(start + batch_size, n_rows)
        m = stop - start
        rows = order[start:stop]
        share = (m + n_parts - 1) // n_parts
        share = (share + 3) // 4 * 4
        for p in prange(n_parts):
            r_lo = min(p * share, m)
            r_hi = min(r_lo + share, m)
            if r_lo < r_hi:
                forward_rows(acts, params, sizes, X, rows, ident, batch_size, m, r_lo, r_hi, cost_id, one)
                deltas_rows(deltas, acts, params, sizes, Y, rows, batch_size, m, r_lo, r_hi, cost_id)
        beta = beta_full if m == batch_size else beta_last
        for p in prange(n_parts):
            checks[p] = update_units(params, sizes, X, rows, ident, acts, deltas, batch_size, m,
                                     p, n_parts, decay, one, beta, one, checked)
        check = checks[0]
        for p in range(1, n_parts):
            check += checks[p]
        if not np.isfinite(check):
            return k if checked else n_batches
    if not checked and not all_finite(params, one):
        return n_batches
    return -1


@njit(cache=True, fastmath=FASTMATH)
def first_layer_update_forward(W, b, x, c, alpha_w, z_next, x_next, fuse):
    """Online SGD's first-layer step fused with the next example's first-layer forward.

    ``W[h] <- alpha_w W[h] + c[h] x``, ``b[h] <- b[h] + c[h]`` and, when ``fuse``,
    ``z_next[h] = W_new[h] . x_next + b_new[h]`` in the same pass: the updated
    row is still in registers, so ``W`` (larger than L1 for image inputs)
    streams from L2 twice per example instead of three times.
    """
    n_out, n_in = W.shape
    for h in range(n_out):
        w = W[h]
        ch = c[h]
        bh = b[h] + ch
        b[h] = bh
        if fuse and alpha_w == 1:  # no L2: one multiply-add per weight fewer
            acc = bh - bh
            for j in range(n_in):
                v = w[j] + ch * x[j]
                w[j] = v
                acc += v * x_next[j]
            z_next[h] = acc + bh
        elif fuse:
            acc = bh - bh
            for j in range(n_in):
                v = alpha_w * w[j] + ch * x[j]
                w[j] = v
                acc += v * x_next[j]
            z_next[h] = acc + bh
        else:
            for j in range(n_in):
                w[j] = alpha_w * w[j] + ch * x[j]


@njit(cache=True)
def sgd_epoch_online(params, sizes, X, Y, order, beta, decay, one, cost_id, acts, deltas):
    """Batch size 1 (pure SGD): one example per step, first-layer update fused with the next forward.

    Same arithmetic as :func:`_sgd_epoch` with ``batch_size == 1`` up to the
    order of the first layer's dot products. Divergence is checked once at the
    end (as ``_sgd_epoch`` unchecked): returns ``order.shape[0]`` if a
    parameter is not finite, else -1.
    """
    n_rows = order.shape[0]
    L = sizes.shape[0] - 1
    ident = np.arange(1)
    W0, b0 = layer_views(params, sizes, 0)
    Z1 = work_view(acts, sizes, 1, 1, 1)
    D1 = work_view(deltas, sizes, 1, 1, 1)
    coef = np.empty(sizes[1], dtype=params.dtype)
    dense_forward_rows(Z1, X, order[0:1], W0, b0, 0, W0.shape[0])
    for k in range(n_rows):
        rows = order[k:k + 1]
        # first layer's z is in Z1 (computed by the previous step's fused pass)
        activate(Z1, 0, L, cost_id, one)
        forward_rows(acts, params, sizes, X, rows, ident, 1, 1, 0, 1, cost_id, one, 1)
        deltas_rows(deltas, acts, params, sizes, Y, rows, 1, 1, 0, 1, cost_id)
        update_units(params, sizes, X, rows, ident, acts, deltas, 1, 1, 0, 1, decay, one, beta, one, False, 1)
        for h in range(coef.shape[0]):
            coef[h] = beta * D1[0, h]
        fuse = k + 1 < n_rows
        nxt = order[k + 1] if fuse else order[k]
        first_layer_update_forward(W0, b0, X[order[k]], coef, decay, Z1[0], X[nxt], fuse)
    if not all_finite(params, one):
        return n_rows
    return -1


def _variant(function, name):
    """A copy of ``function`` under another name, so each compiled variant has its own cache file.

    numba names a function's on-disk cache after its qualified name and source
    line, and its cache key does not include ``parallel``: two dispatchers over
    one function would share one cache file, and whichever variant compiled
    first would be loaded for both (it was: the parallel epoch silently ran the
    serial code). ``tests/test_kernels.py`` checks the names differ.
    """
    clone = types.FunctionType(function.__code__, function.__globals__, name, function.__defaults__,
                               function.__closure__)
    clone.__qualname__ = name
    clone.__doc__ = function.__doc__
    return clone


sgd_epoch_serial = njit(cache=True)(_variant(_sgd_epoch, "sgd_epoch_serial"))
sgd_epoch_parallel = njit(cache=True, parallel=True)(_variant(_sgd_epoch, "sgd_epoch_parallel"))


@njit(cache=True)
def loss_gradient(grad, params, sizes, X, Y, cost_id, lmbda_over_n, inv_m, one, acts, deltas):
    """``grad = mean gradient of the cost over the rows of X + (lmbda/n) W`` (biases unregularized)."""
    m = X.shape[0]
    rows = np.arange(m)
    forward_rows(acts, params, sizes, X, rows, rows, m, m, 0, m, cost_id, one)
    deltas_rows(deltas, acts, params, sizes, Y, rows, m, m, 0, m, cost_id)
    zero = one - one
    grad[:] = params  # the update runs in place (see dense_update_rows)
    update_units(grad, sizes, X, rows, rows, acts, deltas, m, m, 0, 1, lmbda_over_n, zero, inv_m, one)


@njit(cache=True)
def forward(out, params, sizes, X, cost_id, one, acts):
    """Output activations of the rows of ``X`` in batches of the work buffer's size."""
    n_rows = X.shape[0]
    batch_size = acts.shape[0] // sizes[1:].sum()
    L = sizes.shape[0] - 1
    rows = np.arange(n_rows)
    for start in range(0, n_rows, batch_size):
        stop = min(start + batch_size, n_rows)
        m = stop - start
        forward_rows(acts, params, sizes, X, rows[start:stop], rows, batch_size, m, 0, m, cost_id, one)
        out[start:stop] = work_view(acts, sizes, batch_size, L, m)
