"""The numba backend: thin Python wrappers around :mod:`mbtrain.fast_kernels`.

The wrappers unpack the network into arrays and scalars of the network's
dtype and make one jitted call per epoch; the Python driver in
:mod:`mbtrain.training` only handles progress and history. The plain kernels
of :mod:`mbtrain.kernels` stay as the oracle the fast ones are tested against.

Serial or parallel: an epoch whose mini-batches have at least
``PARALLEL_MIN_BATCH`` rows runs the ``parallel=True`` variant on
``numba.get_num_threads()`` threads (so ``numba.set_num_threads`` is
respected); smaller batches run serially, because starting a parallel region
per mini-batch costs more than it saves (measured in
``benchmarks/kernel_profile.py``).
"""
from __future__ import annotations

import time

import numba
import numpy as np

from .. import fast_kernels
from .._kernel_api import DIVERGED_AT_UNKNOWN_BATCH, FINITE, Net, new_work

#: Smallest mini-batch run on several threads (below it the per-batch fork/join dominates).
PARALLEL_MIN_BATCH = 64


def _kernel_cost_id(net) -> int:
    if net.cost.kernel_id is None:
        raise ValueError(
            f"backend: the numba backend has no kernel for cost {net.cost.name!r}; "
            "use backend='numpy' or 'loop', or give the cost a kernel_id the kernels know"
        )
    return int(net.cost.kernel_id)


def _plan(net, batch_size: int):
    """``(Net, Work)``: the network and a work space of ``batch_size`` rows, as the fast kernels take them.

    The tuples hold only arrays and scalars in the network's dtype (numba would
    type a Python ``1`` as int64 and widen float32 arithmetic).
    """
    kernel_net = Net(params=net.params, sizes=np.asarray(net.sizes, dtype=np.int64),
                     cost_id=_kernel_cost_id(net), one=net.dtype.type(1))
    return kernel_net, new_work(net.sizes, batch_size, net.dtype)


def _output_rows(work, sizes, m):
    """The output layer's ``(m, n_L)`` block of a work buffer of ``m`` rows (the last one)."""
    return work[len(work) - m * sizes[-1]:].reshape(m, sizes[-1])


def loss_gradient_and_output(net, X, Y, lmbda, n):
    """``(grad, z, a)``: the exact gradient of the loss and the output layer's ``z`` and activations.

    The cost needs ``z`` to stay exact for saturated outputs (see :mod:`mbtrain.costs`).
    """
    m = X.shape[0]
    kernel_net, work = _plan(net, m)
    grad = np.empty_like(net.params)
    z = np.empty((m, net.sizes[-1]), dtype=net.dtype)
    dt = net.dtype.type
    fast_kernels.loss_gradient(grad, z, kernel_net, work, np.ascontiguousarray(X), np.ascontiguousarray(Y),
                               lmbda_over_n=dt(lmbda / n), inv_m=dt(1 / max(m, 1)))
    return grad, z, _output_rows(work.acts, net.sizes, m)


class NumbaBackend:
    name = "numba"

    def loss_gradient(self, net, X, Y, lmbda, n):
        return loss_gradient_and_output(net, X, Y, lmbda, n)[0]

    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        n_rows = len(order)
        if n_rows == 0:
            return FINITE
        batch_size = int(min(batch_size, n_rows))
        dt = net.dtype.type
        kernel_net, work = _plan(net, batch_size)
        common = dict(net=kernel_net, work=work, X=np.ascontiguousarray(X), Y=np.ascontiguousarray(Y),
                      order=np.ascontiguousarray(order, dtype=np.int64), decay=dt(1 - eta * (lmbda / n)))
        n_threads = numba.get_num_threads()
        n_parts = n_threads if n_threads > 1 and batch_size >= PARALLEL_MIN_BATCH else 1
        epoch = fast_kernels.sgd_epoch_parallel if n_parts > 1 else fast_kernels.sgd_epoch_serial
        last = n_rows - (n_rows - 1) // batch_size * batch_size  # rows of the last, maybe short, batch
        batched = dict(common, beta_full=dt(-eta / batch_size), beta_last=dt(-eta / last), n_parts=n_parts)
        start = net.params.copy()  # one copy per epoch: the fast path checks divergence once, at the end
        if batch_size == 1:
            status = fast_kernels.sgd_epoch_online(**common, beta=dt(-eta))
        else:
            status = epoch(**batched, checked=False)
        if status == DIVERGED_AT_UNKNOWN_BATCH:  # rerun from the start, checking every batch, to say where
            net.params[...] = start
            status = epoch(**batched, checked=True)
        return int(status)

    def prepare(self, net, batch_size: int, Y=None, X=None) -> float:
        """Compile (or load from numba's cache) only the epoch kernel ``fit`` will use; returns seconds.

        ``batch_size`` decides which: the online kernel (1), the serial one, or
        the parallel one. Compiling just that one keeps a first ``fit`` in a
        fresh process with an empty cache short; the gradient and forward
        kernels compile when first called.
        """
        start = time.perf_counter()
        n = max(2, min(int(batch_size), PARALLEL_MIN_BATCH))
        tiny = type(net)([2, 2, 2], cost=net.cost, dtype=net.dtype, seed=0)
        # the same array types as the real run (labels or a matrix; X's dtype), so the same signature
        X = np.zeros((n, 2), dtype=net.dtype if X is None else X.dtype)
        Y = (np.zeros((n, 2), dtype=net.dtype) if Y is None or Y.ndim == 2
             else np.zeros(n, dtype=Y.dtype))
        self.sgd_epoch(tiny, X, Y, np.arange(n), 1 if batch_size == 1 else
                       (n if batch_size >= PARALLEL_MIN_BATCH else 2), 0.1, 0.0, n)
        return time.perf_counter() - start

    def training_context(self):
        """BLAS on one thread while these kernels train (they use none; monitoring does).

        OpenBLAS's idle workers spin for a while after each call; on a machine with
        as many cores as numba threads they take cores from numba's epoch
        (measured: Fashion-MNIST [784,30,10] batch 100 epochs 0.11-0.16 s with
        2 BLAS threads against 0.042 s). With one BLAS thread the workers are
        never woken. threadpoolctl restores the previous limits on exit.
        """
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")

    def forward(self, net, X, batch_size: int = 256):
        out = np.empty((X.shape[0], net.sizes[-1]), dtype=net.dtype)
        kernel_net, work = _plan(net, max(1, min(batch_size, X.shape[0])))
        fast_kernels.forward(out, out[:0], kernel_net, work, np.ascontiguousarray(X))
        return out


def compile_kernels(dtype="float32", cost="quadratic") -> float:
    """Compile (or load from the on-disk cache) the kernels for ``dtype``; returns seconds.

    Used by the benchmark harness to report compile time apart from run time:
    every epoch kernel ``fit`` may pick (online, serial, and the parallel one
    when numba has several threads), the gradient and the forward pass.
    """
    from ..network import Network

    start = time.perf_counter()
    net = Network([3, 2, 2], cost=cost, dtype=dtype, seed=0)
    backend = NumbaBackend()
    for batch_size in (1, 2, PARALLEL_MIN_BATCH):
        backend.prepare(net, batch_size)
    X = np.zeros((2, 3), dtype=net.dtype)
    Y = np.zeros((2, 2), dtype=net.dtype)
    backend.loss_gradient(net, X, Y, 0.0, 2)
    backend.forward(net, X)
    return time.perf_counter() - start
