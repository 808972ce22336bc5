"""The plain numba kernels: the readable specification the fast kernels are tested against.

One straightforward loop nest per step of backpropagation, over a gathered
copy of each mini-batch. Production code never runs them: the numba backend
runs :mod:`mbtrain.fast_kernels`, and ``tests/test_kernels.py`` (also under
``NUMBA_DISABLE_JIT=1``, in ``tests/test_nojit.py``) holds those to these.
``benchmarks/kernel_profile.py`` times them as its ``numba_plain`` arm.

Shape legend::

    m      rows in the mini-batch            n_in, n_out  widths of one layer
    X      (n_samples, n_0) data             W            (n_out, n_in), the book's layout
    A      (m, n_l) activations of layer l   D            (m, n_l) errors delta of layer l
    params flat parameter vector, see mbtrain.params.ParameterLayout
    sizes  int64 array of layer widths [n_0, n_1, ..., n_L]

Conventions:

- only ``@njit`` functions over arrays and scalars; outputs first in every
  signature; ``*_forward`` / ``*_backward`` pairs;
- all arithmetic stays in the dtype of the arrays: scalars arrive already cast
  by the Python wrapper, accumulators start from an array element, so float32 is
  never silently widened in the inner loops;
- ``cache=True`` on every kernel (they take only arrays and scalars, and call
  only kernels of this module, whose source file numba checks the cache
  against); ``fastmath`` is restricted to ``reassoc`` and ``contract``, which
  let LLVM vectorize the reductions and fuse multiply-adds but keep NaN and inf
  semantics, so divergence is never hidden.

Cost ids (``Cost.kernel_id``) are those of :mod:`mbtrain._kernel_api`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._kernel_api import CROSS_ENTROPY, SOFTMAX

FASTMATH = {"reassoc", "contract"}


@njit(cache=True)
def sigmoid_scalar(z, one):
    """Logistic function of one value; ``exp`` only of ``-|z|``, so no overflow.

    ``one`` is 1 in the dtype of ``z`` (a literal ``1`` would widen float32 to float64).
    """
    if z >= 0:
        e = np.exp(-z)
        return one / (one + e)
    e = np.exp(z)
    return e / (one + e)


@njit(cache=True)
def sigmoid_inplace(Z):
    """``Z <- sigmoid(Z)`` for a 2-D array."""
    m, n = Z.shape
    slot = np.ones(1, dtype=Z.dtype)
    one = slot[0]
    for i in range(m):
        for j in range(n):
            Z[i, j] = sigmoid_scalar(Z[i, j], one)


@njit(cache=True)
def softmax_inplace(Z):
    """Row-wise ``Z <- softmax(Z)``, shifted by the row maximum."""
    m, n = Z.shape
    for i in range(m):
        top = Z[i, 0]
        for j in range(1, n):
            if Z[i, j] > top:
                top = Z[i, j]
        total = Z[i, 0] - Z[i, 0]
        for j in range(n):
            e = np.exp(Z[i, j] - top)
            Z[i, j] = e
            total += e
        for j in range(n):
            Z[i, j] = Z[i, j] / total


@njit(cache=True, fastmath=FASTMATH)
def dense_forward(Z, A, W, b):
    """``Z = A @ W.T + b``: Z (m, n_out), A (m, n_in), W (n_out, n_in), b (n_out,).

    The inner loop runs over the contiguous n_in of both ``A`` and ``W``.
    """
    m, n_in = A.shape
    n_out = W.shape[0]
    for i in range(m):
        for h in range(n_out):
            s = b[h]
            for j in range(n_in):
                s += A[i, j] * W[h, j]
            Z[i, h] = s


@njit(cache=True)
def output_delta(D, A, Y, cost_id):
    """BP1, fused: ``D = dC/dz`` of the output layer from its activation ``A``.

    quadratic ``(a - y) a (1 - a)``; cross-entropy ``a - y``; softmax
    ``a sum(y) - y`` (``a - y`` for one-hot targets).
    """
    m, k = A.shape
    for i in range(m):
        if cost_id == SOFTMAX:
            total = Y[i, 0] - Y[i, 0]
            for j in range(k):
                total += Y[i, j]
            for j in range(k):
                D[i, j] = A[i, j] * total - Y[i, j]
        elif cost_id == CROSS_ENTROPY:
            for j in range(k):
                D[i, j] = A[i, j] - Y[i, j]
        else:
            for j in range(k):
                a = A[i, j]
                D[i, j] = (a - Y[i, j]) * (a - a * a)


@njit(cache=True, fastmath=FASTMATH)
def hidden_delta_backward(D_prev, D, W, A_prev):
    """BP2, fused: ``D_prev = (D @ W) * A_prev * (1 - A_prev)`` in one pass.

    D_prev, A_prev (m, n_in); D (m, n_out); W (n_out, n_in). The row of
    ``D @ W`` is accumulated as axpys over the contiguous n_in.
    """
    m, n_in = A_prev.shape
    n_out = W.shape[0]
    for i in range(m):
        for j in range(n_in):
            D_prev[i, j] = D[i, 0] * W[0, j]
        for h in range(1, n_out):
            d = D[i, h]
            for j in range(n_in):
                D_prev[i, j] += d * W[h, j]
        for j in range(n_in):
            a = A_prev[i, j]
            D_prev[i, j] *= a - a * a


@njit(cache=True, fastmath=FASTMATH)
def dense_backward(W_out, b_out, W, b, D, A_prev, alpha_w, alpha_b, beta):
    """BP3/BP4 and the update, fused:

    ``W_out = alpha_w * W + beta * D.T @ A_prev``; ``b_out = alpha_b * b + beta * D.sum(0)``.

    With ``W_out is W`` this is the SGD step (``alpha_w = 1 - eta*lmbda/n``,
    ``alpha_b = 1``, ``beta = -eta/m``); with a separate buffer it is the mean
    gradient plus the L2 term (``alpha_w = lmbda/n``, ``alpha_b = 0``, ``beta = 1/m``).
    Returns the sum of ``v - v`` over the written values ``v``: 0 while they are
    all finite, NaN otherwise (a sum of the values could overflow while each is finite).
    """
    m, n_in = A_prev.shape
    n_out = W.shape[0]
    check = b[0] - b[0]
    for h in range(n_out):
        for j in range(n_in):
            W_out[h, j] = alpha_w * W[h, j]
        s = alpha_b * b[h]
        for i in range(m):
            d = beta * D[i, h]
            s += d
            for j in range(n_in):
                W_out[h, j] += d * A_prev[i, j]
        b_out[h] = s
        check += s - s
        for j in range(n_in):
            check += W_out[h, j] - W_out[h, j]
    return check


@njit(cache=True)
def layer_views(flat, sizes, l):
    """``(W_l, b_l)`` views into a flat parameter-shaped vector."""
    offset = 0
    for k in range(l):
        offset += sizes[k + 1] * sizes[k] + sizes[k + 1]
    n_in = sizes[l]
    n_out = sizes[l + 1]
    W = flat[offset:offset + n_out * n_in].reshape((n_out, n_in))
    b = flat[offset + n_out * n_in:offset + n_out * n_in + n_out]
    return W, b


@njit(cache=True)
def batch_view(buf, sizes, l, m):
    """``(m, sizes[l])`` view of layer ``l`` in a per-batch work buffer.

    The buffer holds ``batch_size * sizes[l]`` values for every layer ``l``
    in turn; views of a short last batch use the front of each slot.
    """
    offset = 0
    batch_size = buf.shape[0] // sizes.sum()
    for k in range(l):
        offset += batch_size * sizes[k]
    return buf[offset:offset + m * sizes[l]].reshape((m, sizes[l]))


@njit(cache=True)
def batch_forward(acts, params, sizes, cost_id, m):
    """Forward pass of ``m`` rows already placed in layer 0 of ``acts``."""
    L = sizes.shape[0] - 1
    for l in range(L):
        W, b = layer_views(params, sizes, l)
        A = batch_view(acts, sizes, l, m)
        Z = batch_view(acts, sizes, l + 1, m)
        dense_forward(Z, A, W, b)
        if l == L - 1 and cost_id == SOFTMAX:
            softmax_inplace(Z)
        else:
            sigmoid_inplace(Z)


@njit(cache=True)
def batch_backward(out, acts, deltas, params, sizes, Y_batch, cost_id, m, alpha_w, alpha_b, beta):
    """Backward pass writing ``alpha * params + beta * sum grad`` into ``out``.

    ``out`` may be ``params`` itself (the SGD step). Returns the divergence check
    (finite exactly when every written value is; see :func:`dense_backward`).
    """
    L = sizes.shape[0] - 1
    D = batch_view(deltas, sizes, L, m)
    output_delta(D, batch_view(acts, sizes, L, m), Y_batch, cost_id)
    check = alpha_w - alpha_w
    for l in range(L - 1, -1, -1):
        W, b = layer_views(params, sizes, l)
        W_out, b_out = layer_views(out, sizes, l)
        A_prev = batch_view(acts, sizes, l, m)
        D = batch_view(deltas, sizes, l + 1, m)
        if l > 0:  # needs W before it is overwritten
            hidden_delta_backward(batch_view(deltas, sizes, l, m), D, W, A_prev)
        check += dense_backward(W_out, b_out, W, b, D, A_prev, alpha_w, alpha_b, beta)
    return check


@njit(cache=True)
def gather_rows(out, X, rows):
    """``out[:len(rows)] = X[rows]`` for a 2-D ``X``."""
    n = X.shape[1]
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(n):
            out[i, j] = X[r, j]


@njit(cache=True)
def sgd_epoch(params, sizes, X, Y, order, batch_size, eta, decay, cost_id, acts, deltas):
    """One epoch of mini-batch SGD over ``X[order]``, updating ``params`` in place.

    ``eta`` and ``decay = 1 - eta*lmbda/n`` arrive in the dtype of ``params``.
    Returns the index of the first batch after which a parameter is not
    finite (training stops there), or -1.
    """
    n_rows = order.shape[0]
    # numba types ``1`` as int64 and float32 (op) int64 as float64: cast through a
    # dtype-typed scalar slot so a float32 epoch stays float32
    slot = np.empty(1, dtype=params.dtype)
    slot[0] = 1
    one = slot[0]
    n_batches = (n_rows + batch_size - 1) // batch_size
    Y_buf = np.empty((batch_size, Y.shape[1]), dtype=Y.dtype)
    for k in range(n_batches):
        start = k * batch_size
        stop = min(start + batch_size, n_rows)
        m = stop - start
        rows = order[start:stop]
        gather_rows(batch_view(acts, sizes, 0, m), X, rows)
        Yb = Y_buf[:m]
        gather_rows(Yb, Y, rows)
        batch_forward(acts, params, sizes, cost_id, m)
        slot[0] = m
        beta = -eta / slot[0]
        check = batch_backward(params, acts, deltas, params, sizes, Yb, cost_id, m, decay, one, beta)
        if not np.isfinite(check):
            return k
    return -1


@njit(cache=True)
def loss_gradient(grad, params, sizes, X, Y, cost_id, lmbda_over_n, acts, deltas):
    """``grad = mean gradient of the cost over the rows of X + (lmbda/n) W``."""
    m = X.shape[0]
    A0 = batch_view(acts, sizes, 0, m)
    A0[:, :] = X
    batch_forward(acts, params, sizes, cost_id, m)
    zero = lmbda_over_n - lmbda_over_n
    slot = np.empty(2, dtype=params.dtype)  # dtype-typed 1 and m (see sgd_epoch)
    slot[0] = 1
    slot[1] = m
    batch_backward(grad, acts, deltas, params, sizes, Y, cost_id, m, lmbda_over_n, zero, slot[0] / slot[1])
