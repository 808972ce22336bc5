"""The read bandwidth of this machine at the benchmark's thread count: a reduction that numba compiles here.

Why a probe: the memory floor is an epoch's input bytes over the bandwidth,
and numpy's ``a.sum()`` is no measure of the bandwidth. It runs on one core
and its pairwise summation is bound by its additions, not by memory: on an
AMD EPYC (Zen 5, AVX-512) it read 18 GB/s on one thread and on two, where
this probe read 34 GB/s on one thread and 44 GB/s on two. A floor from
numpy's figure is two to three times too high, and a ratio against it
flatters the kernel by as much (the two-thread floor of ``[784, 30, 10]``
came out memory-bound at 11.6 ms where its FLOPs take 10.4 ms).

How: each thread of numba's pool sums one contiguous share of an array far
larger than the caches (``fastmath`` reassociation lets LLVM vectorize the
sum and keep several partial sums in flight, so the loop waits on memory,
not on its additions). The width is LLVM's choice for loops, which can be
narrower than the registers (256 bits on an Intel Xeon with AVX-512, which
LLVM names rocketlake): for a read that does not matter, the ymm sum read
9-10.7 GB/s on one thread there and a sum in explicit zmm vectors 10.3. The floor
(:func:`mbtrain.bench.floor.measure_floor`) takes the higher of this rate and
numpy's, so a platform where LLVM does not vectorize the loop loses nothing.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange

from ..fast_kernels import share

#: The decorator options of the share sum (reassociation: the sum vectorizes; it is a sum of ones, exact in any order)
READ_OPTIONS = dict(fastmath={"reassoc", "contract"}, cache=True)


@njit(**READ_OPTIONS)
def share_sum(a, lo, hi):
    """``a[lo:hi].sum()`` in any order: a vectorized read of the share."""
    share = a[lo:hi]  # a view from 0: the loop's index needs no wraparound check, which keeps it vectorized
    total = a.dtype.type(0)
    for i in range(share.shape[0]):
        total += share[i]
    return total


@njit(parallel=True, **READ_OPTIONS)
def _read_threads(a, sums):
    """``sums[p]``: the sum of share ``p`` of ``len(sums)`` contiguous shares of ``a``, one share per thread."""
    for p in prange(sums.shape[0]):
        lo, hi = share(a.shape[0], p, sums.shape[0], 1)
        sums[p] = share_sum(a, lo, hi)


def compile_probe() -> float:
    """Compile (or load from numba's cache) the read probe; returns seconds, reported apart."""
    start = time.perf_counter()
    _read_threads(np.ones(64, dtype=np.float64), np.zeros(1, dtype=np.float64))
    return time.perf_counter() - start


def measure_read_bandwidth(n_bytes: int = 256 * 2 ** 20, repeats: int = 3) -> float:
    """Read bandwidth in bytes/s of every thread of numba's pool summing its share of ``n_bytes`` (best of ``repeats``).

    The thread count is :func:`numba.get_num_threads` (what the benchmark
    set). The array is ones, touched once before timing (page faults); every
    timed pass must sum to its length, or the probe did not read what it counts.
    Call :func:`compile_probe` first to keep compiling out of it.
    """
    a = np.ones(max(64, n_bytes // 8), dtype=np.float64)
    sums = np.zeros(numba.get_num_threads(), dtype=np.float64)
    _read_threads(a, sums)  # touch every page (and start the thread pool) before timing
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        _read_threads(a, sums)
        best = min(best, time.perf_counter() - start)
        if sums.sum() != a.shape[0]:
            raise RuntimeError(f"read probe: summed {sums.sum()} over {a.shape[0]} ones, "
                               "so it did not read what it counts")
    return a.nbytes / best
