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
``benchmarks/kernel_profile.py``). Several threads split each batch's rows
for the forward pass and the deltas, and the units for the update; from
``ROW_SPLIT_ROWS_PER_UNIT`` rows a thread per unit of the widest layer, the
rows for the update too, each thread summing its own rows' gradient
(``fast_kernels.sgd_epoch_rows``). One thread takes that epoch too from
``ONE_THREAD_ROW_SPLIT_CHUNKS`` chunks of rows a batch, a chunk at a time.

Rows: ``fit`` asks :meth:`NumbaBackend.epoch_inputs` once for the rows its
epochs read; byte-valued data (pixels / 255) come back as their byte codes,
which the epochs decode per batch, exactly, at a quarter of float32's memory
traffic. Every other method reads ``X`` as given.

Costs: the kernels fuse the ``delta`` of the built-in costs (``kernel_id``). A
cost without a kernel (a user's, see :func:`mbtrain.register_cost`) runs
through the numpy backend's matrix path instead, the same maths at numpy's
speed; a warning says so once per cost.
"""
from __future__ import annotations

import contextlib
import mmap
import sys
import threading
import time
import warnings
from typing import NamedTuple

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from .. import fast_kernels
from .._kernel_api import DIVERGED_AT_UNKNOWN_BATCH, FINITE, Net, Rule, new_work
from ..costs import get_cost, l2_penalty
from ..optim import ADAM_KIND, SGD_KIND, Adam
from ..params import ParameterLayout, empty_aligned
from ._targets import batch_targets
from .numpy_matrix import NumpyBackend

#: Smallest mini-batch run on several threads (below it the per-batch fork/join dominates).
PARALLEL_MIN_BATCH = 64
#: Rows per thread, per unit of the widest layer, from which several threads split each batch by rows for
#: the update too (``fast_kernels.sgd_epoch_rows``, ``optimizer_epoch_rows``: partial gradients summed)
#: instead of by units. Two threads, Zen 4, ``net.fit`` epochs, the two alternating in one process (a
#: noisy host: compare within a line), rows against units: [784,30,10] batch 1000 (16.7 rows a unit)
#: 29.1-29.7 against 34.7-35.0 ms, batch 500 35.0-36.3 against 42.9-44.0, batch 200 (3.3) 35.6-41.4
#: against 45.0-48.1, batch 100 (1.7) 36.3-46.6 against 41.8-45.8; [784,100,10] batch 200 (1) 89.5-98.2
#: against 101.0-101.9, batch 100 (0.5) 102.8-109.2 against 110.3-116.2; [784,400,10] batch 100
#: (0.125) even (345.7 and 342.5 against 347.2 and 339.5). Adam, [784,30,10] batch 1000: 34.8-35.9
#: against 42.8-44.0. Below the lowest ratio measured to gain, the units: the step's extra pass reads
#: every thread's partials, which grows with the parameters, not the rows.
ROW_SPLIT_ROWS_PER_UNIT = 0.5
#: Chunks of ``fast_kernels.CHUNK_ROWS`` rows a batch from which one thread runs the row-split epoch too
#: (its one share in chunks, each gathered, forward, back and added to the gradient while its rows are in
#: L2; then the step), not the serial epoch (every row gathered and forward before any is back: at 1,000
#: rows of 784 float32 inputs, 3 MB, more than L2). [784,30,10] one thread, Intel Xeon (AVX-512, L2 2 MB),
#: the two alternating in one process, best of three epochs: batch 1000 98.3 against 117.0 ms and 85.9
#: against 99.8, batch 500 97.1 against 106.1, batch 200 94.0 against 94.1 (even).
ONE_THREAD_ROW_SPLIT_CHUNKS = 4
#: The scales of byte-valued data the epochs read as bytes (``epoch_inputs``): pixels / 255, the 8x8 digits / 16.
BYTE_SCALES = (255.0, 16.0)


class ByteCodedRows(NamedTuple):
    """Training rows held as bytes: row ``r`` of ``X`` is ``codes[r] / scale`` exactly (``epoch_inputs``)."""

    codes: np.ndarray  # (n, n_0) uint8
    scale: np.floating  # in the network's dtype
    n_features: int


def _memory_mapped(X) -> bool:
    """Whether ``X`` or an array it views is a memory map (a file mbtrain reads, never copies whole)."""
    while X is not None:
        if isinstance(X, (np.memmap, mmap.mmap)):
            return True
        X = getattr(X, "base", None)
    return False


def _epoch_rows(X, dtype):
    """``(X, codes, scale)`` as the epoch kernels take them: a float array, or bytes and their scale."""
    if isinstance(X, ByteCodedRows):
        return np.empty((0, X.n_features), dtype=dtype), X.codes, X.scale
    return np.ascontiguousarray(X), np.empty((0, X.shape[1]), dtype=np.uint8), np.dtype(dtype).type(1)

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


def _plan(net, batch_size: int, gather: bool = True):
    """``(Net, Work)``: the network and a work space of ``batch_size`` rows, as the fast kernels take them.

    The tuples hold only arrays and scalars in the network's dtype (numba would
    type a Python ``1`` as int64 and widen float32 arithmetic). ``gather``: room
    for the batch's input rows (the epochs; not a whole-data gradient).
    """
    kernel_net = Net(params=net.params, sizes=np.asarray(net.sizes, dtype=np.int64),
                     cost_id=int(net.cost.kernel_id), one=net.dtype.type(1))
    return kernel_net, new_work(net.sizes, batch_size, net.dtype, gather)


def _rule(optimizer, eta, dtype) -> Rule:
    """The kernels' :class:`Rule` of ``optimizer`` at learning rate ``eta``, typed in ``dtype``."""
    dt = np.dtype(dtype).type
    mu = getattr(optimizer, "mu", 0.0)
    beta1, beta2, eps = (getattr(optimizer, key, value) for key, value in (("beta1", 0.0), ("beta2", 0.0),
                                                                          ("eps", 1.0)))
    return Rule(kind=int(optimizer.kind_id), eta=dt(eta), mu=dt(mu), beta1=dt(beta1), one_minus_beta1=dt(1.0 - beta1),
                beta2=dt(beta2), one_minus_beta2=dt(1.0 - beta2), eps=dt(eps), eta64=float(eta),
                beta1_64=float(beta1), beta2_64=float(beta2))


def _output_rows(work, sizes, m):
    """The output layer's ``(m, n_L)`` block of a work buffer of ``m`` rows (the last one)."""
    return work[len(work) - m * sizes[-1]:].reshape(m, sizes[-1])


def loss_gradient_and_output(net, X, Y, lmbda, n):
    """``(grad, z, a)``: the exact gradient of the loss and the output layer's ``z`` and activations.

    The cost needs ``z`` to stay exact for saturated outputs (see :mod:`mbtrain.costs`).
    """
    m = X.shape[0]
    kernel_net, work = _plan(net, m, gather=False)
    grad = empty_aligned(net.params.shape, net.dtype)
    z = np.empty((m, net.sizes[-1]), dtype=net.dtype)
    dt = net.dtype.type
    fast_kernels.loss_gradient(grad, z, kernel_net, work, np.ascontiguousarray(X), np.ascontiguousarray(Y),
                               lmbda_over_n=dt(lmbda / n), inv_m=dt(1 / max(m, 1)))
    return grad, z, _output_rows(work.acts, net.sizes, m)


def epoch_parts(batch_size: int) -> int:
    """The threads an epoch of mini-batches of ``batch_size`` rows runs on: numba's, from ``PARALLEL_MIN_BATCH``."""
    n_threads = numba.get_num_threads()
    return n_threads if n_threads > 1 and batch_size >= PARALLEL_MIN_BATCH else 1


def row_split(sizes, batch_size: int, n_parts: int) -> bool:
    """Whether ``n_parts`` threads split a batch by rows for the update too (see :data:`ROW_SPLIT_ROWS_PER_UNIT`);
    one thread, whether it takes its batches in chunks of rows (see :data:`ONE_THREAD_ROW_SPLIT_CHUNKS`)."""
    if n_parts == 1:
        return batch_size >= ONE_THREAD_ROW_SPLIT_CHUNKS * fast_kernels.CHUNK_ROWS
    return batch_size // n_parts >= ROW_SPLIT_ROWS_PER_UNIT * max(sizes[1:])


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
        return loss_gradient_and_output(net, X, Y, lmbda, n)[0]

    def loss_and_gradient(self, net, X, Y, lmbda, n):
        """One fast pass for both: the loss from the output layer's ``z`` the gradient pass leaves.

        The cost needs ``z``, not ``a``, to stay exact for saturated outputs
        (cross-entropy, softmax). Measured on ``[64, 100, 10]`` with 1,497 rows:
        about half the time of a separate forward pass for the loss (3.8 ms
        against 6.7 ms).
        """
        if not _has_kernel(net):
            return super().loss_and_gradient(net, X, Y, lmbda, n)
        grad, z, a = loss_gradient_and_output(net, X, Y, lmbda, n)
        Y = batch_targets(Y, slice(None), net.sizes[-1], net.dtype)
        loss = float(np.mean(net.cost.fn(z, a, Y), dtype=np.float64)) + l2_penalty(net.weights, lmbda, n)
        return loss, grad

    def sgd_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n):
        if not _has_kernel(net):
            return super().sgd_epoch(net, X, Y, order, batch_size, eta, lmbda, n)
        n_rows = len(order)
        if n_rows == 0:
            return FINITE
        batch_size = int(min(batch_size, n_rows))
        dt = net.dtype.type
        kernel_net, work = _plan(net, batch_size)
        X, codes, scale = _epoch_rows(X, net.dtype)
        common = dict(net=kernel_net, work=work, X=X, codes=codes, scale=scale, Y=np.ascontiguousarray(Y),
                      order=np.ascontiguousarray(order, dtype=np.int64), decay=dt(1 - eta * (lmbda / n)))
        n_parts = epoch_parts(batch_size)
        epoch = fast_kernels.sgd_epoch_parallel if n_parts > 1 else fast_kernels.sgd_epoch_serial
        last = n_rows - (n_rows - 1) // batch_size * batch_size  # rows of the last, maybe short, batch
        batched = dict(common, beta_full=dt(-eta / batch_size), beta_last=dt(-eta / last), n_parts=n_parts)
        if row_split(net.sizes, batch_size, n_parts):
            epoch = fast_kernels.sgd_epoch_rows
            batched["partials"] = np.empty((n_parts, net.params.size), dtype=net.dtype)
        start = net.params.copy()  # one copy per epoch: the fast path checks divergence once, at the end
        if batch_size == 1:
            status = fast_kernels.sgd_epoch_online(**common, beta=dt(-eta))
        else:
            status = epoch(**batched, checked=False)
        if status == DIVERGED_AT_UNKNOWN_BATCH:  # rerun from the start, checking every batch, to say where
            net.params[...] = start
            status = epoch(**batched, checked=True)
        return int(status)

    @np.errstate(over="ignore", invalid="ignore")  # divergence is detected and reported by the caller
    def optimizer_epoch(self, net, X, Y, order, batch_size, eta, lmbda, n, optimizer, state):
        """Momentum, Nesterov and Adam as one jitted call per epoch: gradient and step fused per layer.

        SGD is :meth:`sgd_epoch`; a cost without a kernel takes the numpy path.
        The fast pass checks divergence once, at the end; a non-finite end
        reruns the epoch checked, from a copy of the parameters and the state,
        to name the first bad mini-batch.
        """
        if optimizer.kind_id == SGD_KIND or not _has_kernel(net):
            return super().optimizer_epoch(net, X, Y, order, batch_size, eta, lmbda, n, optimizer, state)
        n_rows = len(order)
        if n_rows == 0:
            return FINITE
        batch_size = int(min(batch_size, n_rows))
        dt = net.dtype.type
        kernel_net, work = _plan(net, batch_size)
        first = state.arrays["m" if optimizer.kind_id == ADAM_KIND else "velocity"]
        second = state.arrays["s"] if optimizer.kind_id == ADAM_KIND else np.empty(0, dtype=net.dtype)
        n_parts = epoch_parts(batch_size)
        epoch = fast_kernels.optimizer_epoch_parallel if n_parts > 1 else fast_kernels.optimizer_epoch_serial
        last = n_rows - (n_rows - 1) // batch_size * batch_size  # rows of the last, maybe short, batch
        X, codes, scale = _epoch_rows(X, net.dtype)
        args = dict(net=kernel_net, work=work, X=X, codes=codes, scale=scale, Y=np.ascontiguousarray(Y),
                    order=np.ascontiguousarray(order, dtype=np.int64), grad=empty_aligned(net.params.shape, net.dtype),
                    state=(first, second), rule=_rule(optimizer, eta, net.dtype), step=int(state.step),
                    lmbda_over_n=dt(lmbda / n), inv_full=dt(1 / batch_size), inv_last=dt(1 / last), n_parts=n_parts)
        if row_split(net.sizes, batch_size, n_parts):
            epoch = fast_kernels.optimizer_epoch_rows
            args["partials"] = np.empty((n_parts, net.params.size), dtype=net.dtype)
        start = net.params.copy(), first.copy(), second.copy()
        status = epoch(**args, checked=False)
        if status == DIVERGED_AT_UNKNOWN_BATCH:  # rerun from the start, checking every batch, to say where
            for array, saved in zip((net.params, first, second), start):
                array[...] = saved
            status = epoch(**args, checked=True)
        n_batches = (n_rows + batch_size - 1) // batch_size
        state.step += n_batches if status == FINITE else int(status) + 1
        return int(status)

    def prepare(self, net, batch_size: int, Y=None, X=None, optimizer=None) -> float:
        """Compile (or load from numba's cache) only the epoch kernel ``fit`` will use; returns seconds.

        ``batch_size`` and ``optimizer`` (None: SGD) decide which: for SGD the
        online kernel (1), the serial one, or a parallel one (the row split on
        one thread too from ``ONE_THREAD_ROW_SPLIT_CHUNKS`` chunks; the probe
        network splits by rows or units where ``net`` does); for the others
        (one kernel for all three) the serial or the parallel one. Compiling just that one keeps a first ``fit`` in a
        fresh process with an empty cache short; the gradient and forward
        kernels compile when first called. A cost without a kernel compiles nothing.
        """
        if not _has_kernel(net):
            return 0.0
        start = time.perf_counter()
        n, n_parts = max(2, min(int(batch_size), PARALLEL_MIN_BATCH)), epoch_parts(batch_size)
        rows = row_split(net.sizes, int(batch_size), n_parts)
        if rows and n_parts == 1:  # a batch of as many chunks, so that the probe takes the row-split epoch too
            n = ONE_THREAD_ROW_SPLIT_CHUNKS * fast_kernels.CHUNK_ROWS
        # a hidden layer wide enough that the probe's batch splits by units where the real one does
        tiny = _Probe([2, 2 * (n // n_parts) + 1 if n_parts > 1 and not rows else 2, 2], net.cost, net.dtype)
        # the same array types as the real run (labels or a matrix; X's dtype), so the same signature
        X = np.zeros((n, 2), dtype=net.dtype if X is None else X.dtype)
        Y = (np.zeros((n, 2), dtype=net.dtype) if Y is None or Y.ndim == 2
             else np.zeros(n, dtype=Y.dtype))
        probe_batch = 1 if batch_size == 1 else (n if batch_size >= PARALLEL_MIN_BATCH or rows else 2)
        with compile_notice():
            if X.dtype == net.dtype:  # epoch_inputs reads only rows in the network's dtype as bytes
                fast_kernels.byte_codes(X, X.dtype.type(255), np.empty(X.shape, dtype=np.uint8))
            if optimizer is None or optimizer.kind_id == SGD_KIND:
                self.sgd_epoch(tiny, X, Y, np.arange(n), probe_batch, 0.1, 0.0, n)
            else:
                self.optimizer_epoch(tiny, X, Y, np.arange(n), probe_batch, 0.1, 0.0, n, optimizer,
                                     optimizer.new_state(tiny.layout.size, tiny.dtype))
        return time.perf_counter() - start

    def epoch_inputs(self, net, X):
        """The rows as bytes when every value is ``k / 255`` (or ``k / 16``) for an integer ``0 <= k <= 255``.

        Images scaled from bytes (every data set mbtrain loads, and most users'
        pixels) are then read at one byte a value, not four or eight: the epoch
        decodes each batch's rows into its aligned work space, exactly (the
        same division in the same dtype; checked value by value here, once per
        ``fit``, stopping at the first value that is not). Otherwise, and for
        a memory map, a cost without a kernel, or ``X`` in another dtype than
        the network's: ``X`` itself. Measured on Fashion-MNIST float32, one
        thread, batch 100: reading the batches' rows 12.5 ms an epoch from
        float32 rows, 4.5 ms from bytes (``benchmarks/epoch_pieces.py``).
        """
        if (not _has_kernel(net) or _memory_mapped(X) or X.ndim != 2 or X.dtype != net.dtype
                or not X.flags.c_contiguous or X.shape[0] == 0):
            return X
        first = np.empty((1, X.shape[1]), dtype=np.uint8)
        for scale in BYTE_SCALES:
            scale = net.dtype.type(scale)
            if fast_kernels.byte_codes(X[:1], scale, first):  # the first row decides before any allocation
                codes = np.empty(X.shape, dtype=np.uint8)
                if fast_kernels.byte_codes(X, scale, codes):
                    return ByteCodedRows(codes, scale, X.shape[1])
        return X

    def training_context(self):
        """BLAS on one thread while these kernels train (they use none; monitoring does).

        OpenBLAS's idle workers spin for a while after each call; on a machine with
        as many cores as numba threads they take cores from numba's epoch
        (measured: Fashion-MNIST [784,30,10] batch 100 epochs 0.11-0.16 s with
        2 BLAS threads against 0.042 s). With one BLAS thread the workers are
        never woken. threadpoolctl restores the previous limits on exit.
        """
        return threadpool_limits(limits=1, user_api="blas")

    def compile(self, dtype="float32", cost="quadratic", batch_sizes=None, optimizers=None,
                gradient=None) -> float:
        """Compile (or load from the on-disk cache) the kernels a run in ``dtype`` will use; returns seconds.

        For the benchmark harness and worker processes, which report compile
        time apart from run time. Only what the run needs, so that a first run
        on a cold cache is short: the epoch kernel of each of ``batch_sizes``
        (online for 1, serial, the parallel one only when numba has several
        threads and a batch reaches ``PARALLEL_MIN_BATCH``, and on one thread the
        row split from ``ONE_THREAD_ROW_SPLIT_CHUNKS`` chunks of rows) for each of
        ``optimizers`` (SGD's, and the one kernel all the others share), and the
        gradient when ``gradient`` (monitoring, gradcheck, scipy). With no
        arguments: every kernel a run in ``dtype`` may use.
        """
        start = time.perf_counter()
        probe = _Probe([3, 2, 2], cost, dtype)
        if not _has_kernel(probe):
            return 0.0
        everything = batch_sizes is None and optimizers is None
        chunked = ONE_THREAD_ROW_SPLIT_CHUNKS * fast_kernels.CHUNK_ROWS  # one thread's row split from here
        batch_sizes = (1, 2, PARALLEL_MIN_BATCH, chunked) if batch_sizes is None else batch_sizes
        # SGD has kernels of its own; momentum, Nesterov and Adam share one (Adam stands for all three)
        fused = {o is not None and o.kind_id != SGD_KIND for o in (optimizers or (None,))}
        if everything:
            fused = {False, True}
        parallel = numba.get_num_threads() > 1
        variants = {1 if b == 1 else (PARALLEL_MIN_BATCH if b >= PARALLEL_MIN_BATCH and parallel else
                                      chunked if b >= chunked else 2)
                    for b in batch_sizes}
        with compile_notice():
            for optimizer in (Adam() if f else None for f in sorted(fused)):
                for batch_size in sorted(variants):
                    if optimizer is not None and batch_size == 1:
                        batch_size = 2  # the optimizers' epoch has no online variant
                    self.prepare(probe, batch_size, optimizer=optimizer)
            if gradient or (gradient is None and everything):
                X = np.zeros((2, 3), dtype=probe.dtype)
                Y = np.zeros((2, 2), dtype=probe.dtype)
                self.loss_gradient(probe, X, Y, 0.0, 2)
        return time.perf_counter() - start
