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

Costs: the kernels fuse the ``delta`` of the built-in costs (``kernel_id``). A
cost without a kernel (a user's, see :func:`mbtrain.register_cost`) runs
through the numpy backend's matrix path instead, the same maths at numpy's
speed; a warning says so once per cost.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
import warnings

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from .. import fast_kernels
from ..activations import output_activation
from ..costs import get_cost, l2_penalty
from ..params import ParameterLayout
from ._targets import batch_targets
from .base import FINITE
from .numpy_matrix import NumpyBackend

#: Smallest mini-batch run on several threads (below it the per-batch fork/join dominates).
PARALLEL_MIN_BATCH = 64


def _sizes_array(net) -> np.ndarray:
    return np.asarray(net.sizes, dtype=np.int64)


def _work_buffers(net, batch_size: int):
    """Per-batch activations and deltas of layers 1..L, in the network's dtype."""
    total = batch_size * sum(net.sizes[1:])
    return np.empty(total, dtype=net.dtype), np.empty(total, dtype=net.dtype)


_warned_costs: set[str] = set()


def _has_kernel(net) -> bool:
    """True when the kernels fuse ``net``'s cost; otherwise warn (once per cost) of the numpy path."""
    if net.cost.kernel_id is not None:
        return True
    if net.cost.name not in _warned_costs:
        _warned_costs.add(net.cost.name)
        warnings.warn(
            f"backend 'numba': no fused kernel for cost {net.cost.name!r}; it runs through the numpy "
            "backend's matrix path (the same maths, at numpy's speed)", stacklevel=3)
    return False


#: Seconds of compiling after which a first run says what it is doing (a warm cache loads in well under it).
NOTICE_AFTER_SECONDS = 1.0


_notice_state = threading.local()


@contextlib.contextmanager
def compile_notice(stream=None, after: float = NOTICE_AFTER_SECONDS):
    """Say on ``stream`` (stderr) that numba is compiling, if it takes longer than ``after`` seconds.

    A first run on a cold cache compiles for tens of seconds; without a word
    it looks hung. Loading from numba's on-disk cache takes well under a
    second and stays silent. The notice is printed by a timer thread, so the
    compiling itself is not slowed, and closed with the seconds it took.
    """
    if getattr(_notice_state, "active", False):  # compile() runs prepare(): one notice for both
        yield
        return
    stream = sys.stderr if stream is None else stream
    said = threading.Event()

    def notice():
        said.set()
        print("mbtrain: compiling the numba kernels for this run (first run only; cached on disk "
              "afterwards) ...", file=stream, flush=True)

    timer = threading.Timer(after, notice)
    timer.daemon = True
    start = time.perf_counter()
    timer.start()
    _notice_state.active = True
    try:
        yield
    finally:
        _notice_state.active = False
        timer.cancel()
        if said.is_set():
            print(f"mbtrain: compiled in {time.perf_counter() - start:.1f} s", file=stream, flush=True)


class _Probe:
    """The least a backend reads of a network: enough to compile kernels without building one."""

    def __init__(self, sizes, cost, dtype):
        self.sizes = tuple(sizes)
        self.cost = get_cost(cost)
        self.dtype = np.dtype(dtype)
        self.layout = ParameterLayout(self.sizes)
        self.params = np.zeros(self.layout.size, dtype=self.dtype)


class NumbaBackend(NumpyBackend):
    """The fast backend: one jitted call per epoch, and per gradient.

    It is the numpy backend with the epoch and the gradient replaced by
    :mod:`mbtrain.fast_kernels`. The forward pass over a whole set
    (:meth:`output`: prediction, scores, monitoring) stays numpy's: one GEMM per
    layer over thousands of rows is BLAS's job, and these kernels are built
    for mini-batches. A cost without a fused kernel runs every method on the
    numpy path (a warning says so once per cost).
    """

    name = "numba"

    def loss_gradient(self, net, X, Y, lmbda, n):
        if not _has_kernel(net):
            return super().loss_gradient(net, X, Y, lmbda, n)
        return self._loss_gradient(net, X, Y, lmbda, n)[0]

    def _loss_gradient(self, net, X, Y, lmbda, n):
        """``(grad, acts)``: the gradient, and the work buffer holding every layer's activations."""
        dt = net.dtype.type
        grad = np.empty_like(net.params)
        m = X.shape[0]
        acts, deltas = _work_buffers(net, m)
        fast_kernels.loss_gradient(
            grad, net.params, _sizes_array(net), np.ascontiguousarray(X), np.ascontiguousarray(Y),
            int(net.cost.kernel_id), dt(lmbda / n), dt(1 / max(m, 1)), dt(1), acts, deltas,
        )
        return grad, acts

    def loss_and_gradient(self, net, X, Y, lmbda, n):
        """One forward pass for both: the loss reuses the gradient pass's hidden activations.

        Only the output layer's ``z`` is recomputed (the cross-entropy and
        softmax costs need ``z``, not ``a``, to stay exact for saturated
        outputs). Measured on ``[64, 100, 10]`` with 1,497 rows: about half the
        time of a separate forward pass for the loss (3.8 ms against 6.7 ms).
        """
        if not _has_kernel(net):
            return super().loss_and_gradient(net, X, Y, lmbda, n)
        grad, acts = self._loss_gradient(net, X, Y, lmbda, n)
        m, sizes = X.shape[0], net.sizes
        if len(sizes) > 2:  # the last hidden layer's activations, left in the work buffer
            start = m * sum(sizes[1:-2])
            hidden = acts[start:start + m * sizes[-2]].reshape(m, sizes[-2])
        else:
            hidden = X
        z = hidden @ net.weights[-1].T + net.biases[-1]
        a = output_activation(net.cost, z)
        Y = batch_targets(Y, slice(None), sizes[-1], net.dtype)
        loss = float(np.mean(net.cost.fn(z, a, Y), dtype=np.float64)) + l2_penalty(net.weights, lmbda, n)
        return loss, grad

    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        if not _has_kernel(net):
            return super().sgd_epoch(net, X, Y, order, batch_size, eta, lmbda, n)
        dt = net.dtype.type
        n_rows = len(order)
        if n_rows == 0:
            return FINITE
        batch_size = int(min(batch_size, n_rows))
        last = n_rows - (n_rows - 1) // batch_size * batch_size
        acts, deltas = _work_buffers(net, batch_size)
        n_threads = numba.get_num_threads()
        parallel = n_threads > 1 and batch_size >= PARALLEL_MIN_BATCH
        epoch = fast_kernels.sgd_epoch_parallel if parallel else fast_kernels.sgd_epoch_serial
        args = (net.params, _sizes_array(net), np.ascontiguousarray(X), np.ascontiguousarray(Y),
                np.ascontiguousarray(order, dtype=np.int64), batch_size, dt(-eta / batch_size), dt(-eta / last),
                dt(1 - eta * (lmbda / n)), dt(1), int(net.cost.kernel_id), acts, deltas,
                n_threads if parallel else 1)
        start = net.params.copy()  # one copy per epoch: the fast path checks divergence once, at the end
        if batch_size == 1:
            bad = int(fast_kernels.sgd_epoch_online(*args[:5], dt(-eta), args[8], args[9], args[10], acts, deltas))
        else:
            bad = int(epoch(*args, False))
        n_batches = -(-n_rows // batch_size)
        if bad == n_batches:  # diverged somewhere: rerun from the start, checking every batch, to say where
            net.params[...] = start
            bad = int(epoch(*args, True))
        return bad

    def prepare(self, net, batch_size: int, Y=None, X=None) -> float:
        """Compile (or load from numba's cache) only the epoch kernel ``fit`` will use; returns seconds.

        ``batch_size`` decides which: the online kernel (1), the serial one, or
        the parallel one. Compiling just that one keeps a first ``fit`` in a
        fresh process with an empty cache short; the gradient and forward
        kernels compile when first called. A cost without a kernel compiles nothing.
        """
        if not _has_kernel(net):
            return 0.0
        start = time.perf_counter()
        n = max(2, min(int(batch_size), PARALLEL_MIN_BATCH))
        tiny = _Probe([2, 2, 2], net.cost, net.dtype)
        # the same array types as the real run (labels or a matrix; X's dtype), so the same signature
        X = np.zeros((n, 2), dtype=net.dtype if X is None else X.dtype)
        Y = (np.zeros((n, 2), dtype=net.dtype) if Y is None or Y.ndim == 2
             else np.zeros(n, dtype=Y.dtype))
        with compile_notice():
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
        return threadpool_limits(limits=1, user_api="blas")

    def compile(self, dtype="float32", cost="quadratic") -> float:
        """Compile (or load from the on-disk cache) every kernel a run in ``dtype`` may use; returns seconds.

        For the benchmark harness and worker processes, which report compile
        time apart from run time: every epoch kernel ``fit`` may pick (online,
        serial, and the parallel one when numba has several threads) and the
        gradient.
        """
        start = time.perf_counter()
        probe = _Probe([3, 2, 2], cost, dtype)
        if not _has_kernel(probe):
            return 0.0
        with compile_notice():
            for batch_size in (1, 2, PARALLEL_MIN_BATCH):
                self.prepare(probe, batch_size)
            X = np.zeros((2, 3), dtype=probe.dtype)
            Y = np.zeros((2, 2), dtype=probe.dtype)
            self.loss_gradient(probe, X, Y, 0.0, 2)
        return time.perf_counter() - start
