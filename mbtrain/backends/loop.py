"""The per-example reference: the book's ``update_mini_batch`` calling ``backprop``.

This is ``network2.py`` of *Neural Networks and Deep Learning* with rows as 1-D
vectors instead of ``(n, 1)`` columns. It is deliberately never optimized: it
is the correctness oracle for the matrix backends and the baseline arm of the
benchmarks.
"""
from __future__ import annotations

import numpy as np

from ..activations import output_activation, sigmoid
from ._targets import batch_targets
from .base import FINITE, Backend


def feedforward(weights, biases, cost, x):
    """``(zs, activations)`` of one example ``x`` (n_in,), layer by layer; ``activations[0]`` is ``x``."""
    activation = x
    activations = [x]
    zs = []
    last = len(weights) - 1
    for l, (w, b) in enumerate(zip(weights, biases)):
        z = w @ activation + b
        zs.append(z)
        activation = output_activation(cost, z) if l == last else sigmoid(z)
        activations.append(activation)
    return zs, activations


def backprop(weights, biases, cost, x, y):
    """Gradient of the cost of one example ``x`` (n_in,) with target ``y`` (k,).

    Returns ``(nabla_w, nabla_b)``, lists shaped like ``weights`` and ``biases``.
    """
    zs, activations = feedforward(weights, biases, cost, x)
    nabla_w = [None] * len(weights)
    nabla_b = [None] * len(biases)
    # BP1: output error; BP3/BP4: bias and weight gradients
    delta = cost.delta(zs[-1][None, :], activations[-1][None, :], y[None, :])[0]
    nabla_b[-1] = delta
    nabla_w[-1] = np.outer(delta, activations[-2])
    # BP2: propagate the error back, sigma'(z) = a (1 - a)
    for l in range(2, len(weights) + 1):
        a = activations[-l]
        delta = (weights[-l + 1].T @ delta) * (a * (1 - a))
        nabla_b[-l] = delta
        nabla_w[-l] = np.outer(delta, activations[-l - 1])
    return nabla_w, nabla_b


class LoopBackend(Backend):
    """The reference. Optimizers other than SGD take the default :meth:`Backend.optimizer_epoch`:
    their step is applied to this backend's :meth:`loss_gradient`, the per-example
    backprop gradients summed over the mini-batch, divided by ``m``, plus the L2 term."""

    name = "loop"

    def output(self, net, X):
        weights, biases = net.weights, net.biases
        z = np.empty((X.shape[0], net.sizes[-1]), dtype=net.dtype)
        a = np.empty_like(z)
        for i, x in enumerate(X):
            zs, activations = feedforward(weights, biases, net.cost, x)
            z[i], a[i] = zs[-1], activations[-1]
        return z, a

    def _sum_gradients(self, net, X, Y):
        weights, biases = net.weights, net.biases  # views, fetched once as the book's self.weights
        nabla_w = [np.zeros_like(w) for w in weights]
        nabla_b = [np.zeros_like(b) for b in biases]
        for x, y in zip(X, Y):
            delta_nabla_w, delta_nabla_b = backprop(weights, biases, net.cost, x, y)
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w)]
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b)]
        return nabla_w, nabla_b

    def loss_gradient(self, net, X, Y, lmbda, n):
        m = X.shape[0]
        Y = batch_targets(Y, slice(None), net.sizes[-1], net.dtype)
        nabla_w, nabla_b = self._sum_gradients(net, X, Y)
        return net.layout.mean_gradient(nabla_w, nabla_b, net.weights, m, lmbda, n, net.dtype)

    def update_mini_batch(self, net, X, Y, eta, lmbda, n):
        """The book's update: ``w <- (1 - eta*lmbda/n) w - (eta/m) nabla_w``."""
        m = X.shape[0]
        nabla_w, nabla_b = self._sum_gradients(net, X, Y)
        for w, nw in zip(net.weights, nabla_w):
            w[...] = (1 - eta * (lmbda / n)) * w - (eta / m) * nw
        for b, nb in zip(net.biases, nabla_b):
            b[...] = b - (eta / m) * nb

    @np.errstate(over="ignore", invalid="ignore")  # divergence is detected and reported by the caller
    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        for k, start in enumerate(range(0, len(order), batch_size)):
            rows = order[start:start + batch_size]
            self.update_mini_batch(net, X[rows], batch_targets(Y, rows, net.sizes[-1], net.dtype), eta, lmbda, n)
            if not np.isfinite(net.params).all():
                return k
        return FINITE
