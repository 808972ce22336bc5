"""The simple gradient noise scale ``B_simple = tr(Sigma) / |G|^2`` (McCandlish et al. 2018).

``G`` is the full-batch gradient and ``Sigma`` the covariance of the
per-example gradients ``g_i``. From ``B`` per-example gradients, with
``gbar`` their mean, the unbiased estimates are::

    tr(Sigma) ~ S   = (sum_i |g_i|^2 - B |gbar|^2) / (B - 1)
    |G|^2     ~ G2  = |gbar|^2 - S / B          (E|gbar|^2 = |G|^2 + tr(Sigma)/B)

and ``B_simple = S / G2`` (each part unbiased; the ratio is not, and is
reported as ``inf`` when noise swamps the signal, ``G2 <= 0``).

For a dense layer the per-example weight gradient is the outer product
``d_i a_i^T``, whose squared norm is ``|d_i|^2 |a_i|^2``: the sums above need
only the per-layer errors and activations, never a per-example gradient
matrix, so the estimate over thousands of rows costs about one backprop.
McCandlish et al. suggest the batch size giving the best trade-off between
steps and examples is of the order of ``B_simple``.
"""
from __future__ import annotations

import numpy as np

from ..backends.numpy_matrix import forward


def noise_scale_from_moments(sum_grad, sum_sq_norm: float, count: int) -> dict:
    """``B_simple`` from ``sum_i g_i`` (flat), ``sum_i |g_i|^2`` and the number of examples.

    Returns ``{"noise_scale", "trace_sigma", "grad_norm_sq", "noise_rows"}``.
    """
    if count < 2:
        raise ValueError(f"count: need at least 2 per-example gradients, got {count}")
    mean = np.asarray(sum_grad, dtype=np.float64) / count
    mean_sq = float(mean @ mean)
    trace_sigma = (float(sum_sq_norm) - count * mean_sq) / (count - 1)
    grad_norm_sq = mean_sq - trace_sigma / count
    noise_scale = trace_sigma / grad_norm_sq if grad_norm_sq > 0 else float("inf")
    return {"noise_scale": noise_scale, "trace_sigma": trace_sigma, "grad_norm_sq": grad_norm_sq,
            "noise_rows": int(count)}


def noise_scale_from_samples(grads) -> dict:
    """``B_simple`` from per-example gradients, one per row of ``grads`` ``(B, n_params)``."""
    grads = np.asarray(grads, dtype=np.float64)
    if grads.ndim != 2:
        raise ValueError(f"grads: expected a 2-D array (examples, parameters), got shape {grads.shape}")
    return noise_scale_from_moments(grads.sum(axis=0), float(np.einsum("ij,ij->", grads, grads)), grads.shape[0])


def per_example_moments(net, X, Y, lmbda=0.0, n=None, chunk=2048):
    """``(sum_i g_i, sum_i |g_i|^2, B)`` of the per-example gradients of ``net.loss`` at its parameters.

    ``g_i`` is the gradient of example ``i``'s cost plus the L2 term
    ``(lmbda / n) W`` (the same for every example, so it moves ``G``, not
    ``Sigma``). Computed in float64, ``chunk`` rows at a time.

    Parameters
    ----------
    net : Network
    X : array (B, sizes[0]); Y : target matrix (B, sizes[-1])
    n : int or None
        Training-set size of the L2 term; defaults to ``B``.
    """
    net64 = net.astype("float64")
    weights, biases = net64.weights, net64.biases
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    count = X.shape[0]
    n = count if n is None else n
    total = np.zeros(net64.n_params)
    sum_w, sum_b = net64.layout.views(total)
    sum_sq = 0.0
    for start in range(0, count, chunk):
        zs, acts = forward(weights, biases, net64.cost, X[start:start + chunk])
        delta = net64.cost.delta(zs[-1], acts[-1], Y[start:start + chunk])
        per_example_sq = np.zeros(delta.shape[0])
        for l in range(len(weights) - 1, -1, -1):
            d_sq = np.einsum("ij,ij->i", delta, delta)
            per_example_sq += d_sq * (np.einsum("ij,ij->i", acts[l], acts[l]) + 1.0)
            sum_w[l] += delta.T @ acts[l]
            sum_b[l] += delta.sum(axis=0)
            if l > 0:
                delta = (delta @ weights[l]) * (acts[l] * (1 - acts[l]))
        sum_sq += float(per_example_sq.sum())
    if lmbda:
        # g_i + c with c = (lmbda/n) W: |g_i + c|^2 = |g_i|^2 + 2 g_i.c + |c|^2
        shift = np.zeros_like(total)
        for s, w in zip(net64.layout.views(shift)[0], weights):
            s[...] = (lmbda / n) * w
        sum_sq += 2 * float(total @ shift) + count * float(shift @ shift)
        total += count * shift
    return total, sum_sq, count


def gradient_noise_scale(net, X, Y, lmbda=0.0, n=None) -> dict:
    """``B_simple`` of ``net`` at its current parameters over the rows ``X`` with targets ``Y``.

    Returns ``{"noise_scale", "trace_sigma", "grad_norm_sq", "noise_rows"}``; see the module docstring.
    """
    return noise_scale_from_moments(*per_example_moments(net, X, Y, lmbda=lmbda, n=n))
