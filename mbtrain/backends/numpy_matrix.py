"""Matrix-based backprop over a whole mini-batch in plain numpy.

The book's "fully matrix-based approach" with rows as examples: the forward
pass of a batch ``A`` (m, n_in) through a layer is ``A @ W.T + b``; backward,
``grad_W = delta.T @ A_prev``, ``grad_b = delta.sum(0)`` and the hidden error
``delta_prev = (delta @ W) * a_prev * (1 - a_prev)``.
"""
from __future__ import annotations

import numpy as np

from ..activations import output_activation, sigmoid
from ._targets import batch_targets
from .base import FINITE, Backend


def forward(weights, biases, cost, X):
    """Return ``(zs, activations)`` per layer for the batch ``X`` (m, n_in); ``activations[0]`` is ``X``."""
    activations = [X]
    zs = []
    last = len(weights) - 1
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = activations[-1] @ w.T + b
        zs.append(z)
        activations.append(output_activation(cost, z) if l == last else sigmoid(z))
    return zs, activations


def backward(weights, cost, zs, activations, Y):
    """Return ``(sum_grad_w, sum_grad_b)``: the per-example gradients summed over the batch."""
    L = len(weights)
    grad_w = [None] * L
    grad_b = [None] * L
    delta = cost.delta(zs[-1], activations[-1], Y)
    for l in range(L - 1, -1, -1):
        grad_w[l] = delta.T @ activations[l]
        grad_b[l] = delta.sum(axis=0)
        if l > 0:
            a = activations[l]
            delta = (delta @ weights[l]) * (a * (1 - a))
    return grad_w, grad_b


class NumpyBackend(Backend):
    name = "numpy"

    def output(self, net, X):
        zs, activations = forward(net.weights, net.biases, net.cost, X)
        return zs[-1], activations[-1]

    def loss_gradient(self, net, X, Y, lmbda, n):
        m = X.shape[0]
        zs, activations = forward(net.weights, net.biases, net.cost, X)
        Y = batch_targets(Y, slice(None), net.sizes[-1], net.dtype)
        sum_w, sum_b = backward(net.weights, net.cost, zs, activations, Y)
        return net.layout.mean_gradient(sum_w, sum_b, net.weights, m, lmbda, n, net.dtype)

    @np.errstate(over="ignore", invalid="ignore")  # divergence is detected and reported by the caller
    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        decay = 1 - eta * (lmbda / n)
        for k, start in enumerate(range(0, len(order), batch_size)):
            rows = order[start:start + batch_size]
            m = len(rows)
            zs, activations = forward(net.weights, net.biases, net.cost, X[rows])
            sum_w, sum_b = backward(net.weights, net.cost, zs, activations,
                                    batch_targets(Y, rows, net.sizes[-1], net.dtype))
            for w, s in zip(net.weights, sum_w):
                w *= decay
                w -= (eta / m) * s
            for b, s in zip(net.biases, sum_b):
                b -= (eta / m) * s
            if not np.isfinite(net.params).all():
                return k
        return FINITE
