"""The numba backend: thin Python wrappers around :mod:`mbtrain.kernels`.

The wrappers unpack the network into arrays and scalars of the network's
dtype and make one jitted call per epoch (``kernels.sgd_epoch``); the Python
driver in :mod:`mbtrain.training` only handles progress and history.
"""
from __future__ import annotations

import time

import numpy as np

from .. import kernels


def _sizes_array(net) -> np.ndarray:
    return np.asarray(net.sizes, dtype=np.int64)


def _work_buffers(net, batch_size: int):
    """Per-batch activations and deltas for every layer, in the network's dtype."""
    total = batch_size * sum(net.sizes)
    return np.empty(total, dtype=net.dtype), np.empty(total, dtype=net.dtype)


def _kernel_cost_id(net) -> int:
    if net.cost.kernel_id is None:
        raise ValueError(
            f"backend: the numba backend has no kernel for cost {net.cost.name!r}; "
            "use backend='numpy' or 'loop', or give the cost a kernel_id the kernels know"
        )
    return int(net.cost.kernel_id)


class NumbaBackend:
    name = "numba"

    def loss_gradient(self, net, X, Y, lmbda, n):
        dt = net.dtype.type
        grad = np.empty_like(net.params)
        acts, deltas = _work_buffers(net, X.shape[0])
        kernels.loss_gradient(
            grad, net.params, _sizes_array(net), np.ascontiguousarray(X), np.ascontiguousarray(Y),
            _kernel_cost_id(net), dt(lmbda / n), acts, deltas,
        )
        return grad

    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        dt = net.dtype.type
        acts, deltas = _work_buffers(net, min(batch_size, len(order)))
        return int(kernels.sgd_epoch(
            net.params, _sizes_array(net), X, Y, np.ascontiguousarray(order, dtype=np.int64),
            int(min(batch_size, len(order))), dt(eta), dt(1 - eta * (lmbda / n)),
            _kernel_cost_id(net), acts, deltas,
        ))

    def forward(self, net, X, batch_size: int = 256):
        out = np.empty((X.shape[0], net.sizes[-1]), dtype=net.dtype)
        acts, _ = _work_buffers(net, min(batch_size, X.shape[0]))
        kernels.forward(out, net.params, _sizes_array(net), np.ascontiguousarray(X), _kernel_cost_id(net), acts)
        return out


def compile_kernels(dtype="float32", cost="quadratic") -> float:
    """Compile (or load from the on-disk cache) the kernels for ``dtype``; returns seconds.

    Used by the benchmark harness to report compile time apart from run time.
    """
    from ..network import Network

    start = time.perf_counter()
    net = Network([3, 2, 2], cost=cost, dtype=dtype, seed=0)
    X = np.zeros((2, 3), dtype=net.dtype)
    Y = np.zeros((2, 2), dtype=net.dtype)
    backend = NumbaBackend()
    backend.sgd_epoch(net, X, Y, np.arange(2), 1, 0.1, 0.0, 2)
    backend.loss_gradient(net, X, Y, 0.0, 2)
    return time.perf_counter() - start
