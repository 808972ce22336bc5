"""Whether the threads of numba's pool have cores of their own: their L1-resident work against one thread's.

Why a probe: the floor on ``n`` threads is the FMA probe's rate on ``n``
threads (:mod:`mbtrain.bench.peak`), which only multiplies and adds in
registers. Two hardware threads of one core (SMT siblings, which a hypervisor
can present as two cores) can each reach that rate when all they do is
multiply and add, but they share the core's loads, stores and L1 cache, which
every real kernel uses: the ratios against such a floor then say as much
about the machine as about the code. Measured on an Intel Xeon under KVM that
reports 2 cores, one thread per core: the FMA probe 143 GFLOP/s on one thread
and 286 on two, numpy's GEMM 91 and 220 (register-blocked), while two
threads did 1.14-1.24x the L1 work of one in this probe (16 KB a thread),
and 0.8x at 40 KB a thread, where two blocks no longer fit in one 48 KB L1.
Threads on cores of their own do about ``n`` times the work of one.

How: each thread owns a block of :data:`BLOCK_BYTES` (a few pages apart from
the others, in its L1 however the caches are shared) and runs
``x = x * a + b`` over it, loading and storing every value, ``passes``
times; ``a = 1 - 2**-10`` and ``b = 2**-10`` keep every value exactly 1, so
a block that is not all ones afterwards was not worked on. The scaling is
``n`` blocks on ``n`` threads against one block on one thread, the same
compiled loop: ``n`` where every thread has a core, about 1 where they share one.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange

from .floor import best_time
from .peak import A_FACTOR, B_TERM  # 1 * A_FACTOR + B_TERM == 1 exactly, as in the FMA probe

#: Bytes of one thread's block: in L1 (32-48 KB on current x86 cores) even when two threads share one.
BLOCK_BYTES = 16 * 1024
#: Bytes between two threads' blocks (their start addresses differ beyond a page).
BLOCK_STRIDE_BYTES = BLOCK_BYTES + 4096 + 64
#: Below this share of ``n`` (the ideal scaling on ``n`` cores), the report says the threads share cores.
SHARED_BELOW = 0.75

_OPTIONS = dict(fastmath={"contract"}, cache=True)


@njit(**_OPTIONS)
def rmw_block(block, a, b, passes):
    """``block <- block * a + b``, ``passes`` times: a load, a multiply-add and a store per value."""
    for _ in range(passes):
        for i in range(block.shape[0]):
            block[i] = block[i] * a + b


@njit(parallel=True, **_OPTIONS)
def _rmw_threads(blocks, a, b, passes):
    """:func:`rmw_block` on row ``p`` of ``blocks`` for every ``p``, one row per thread of the pool."""
    for p in prange(blocks.shape[0]):
        rmw_block(blocks[p], a, b, passes)


def _blocks(n: int) -> np.ndarray:
    """``(n, BLOCK_BYTES / 8)`` float64 ones, rows :data:`BLOCK_STRIDE_BYTES` apart."""
    stride = BLOCK_STRIDE_BYTES // 8
    flat = np.ones(n * stride, dtype=np.float64)
    return np.lib.stride_tricks.as_strided(flat, shape=(n, BLOCK_BYTES // 8), strides=(BLOCK_STRIDE_BYTES, 8))


def compile_probe() -> float:
    """Compile (or load from numba's cache) the probe's loops; returns seconds, reported apart."""
    start = time.perf_counter()
    blocks = _blocks(1)
    rmw_block(blocks[0], A_FACTOR, B_TERM, 1)
    _rmw_threads(blocks, A_FACTOR, B_TERM, 1)
    return time.perf_counter() - start


def measure_core_scaling(passes: int = 2000, repeats: int = 5) -> float:
    """The L1 work of every thread of numba's pool against one thread's: ``n`` on ``n`` own cores, ~1 on one.

    ``n`` is :func:`numba.get_num_threads` (what the benchmark set). Best of
    ``repeats`` runs for each side; call :func:`compile_probe` first to keep
    compiling out of it.
    """
    n = numba.get_num_threads()
    blocks = _blocks(n)
    _rmw_threads(blocks, A_FACTOR, B_TERM, 1)  # start the pool and touch the pages before timing
    one = best_time(lambda: rmw_block(blocks[0], A_FACTOR, B_TERM, passes), repeats)
    every = best_time(lambda: _rmw_threads(blocks, A_FACTOR, B_TERM, passes), repeats)
    if not (blocks == 1.0).all():
        raise RuntimeError("core probe: a block is not all ones after the passes, so it did not do what it counts")
    return n * one / every


def shared_cores_warning(scaling: float, n_threads: int) -> str | None:
    """A warning when ``n_threads`` did less than :data:`SHARED_BELOW` x ``n_threads`` of one thread's L1 work."""
    if n_threads < 2 or not np.isfinite(scaling) or scaling >= SHARED_BELOW * n_threads:
        return None
    return (f"{n_threads} threads did {scaling:.2f}x the L1 work of one (`mbtrain/bench/cores.py`; {n_threads}x "
            "where each has a core of its own): they share a core's loads, stores or caches (SMT siblings, or "
            "virtual CPUs that the host runs on one core). The floor on that many threads takes their FMA probe, "
            "which uses none of these, so kernels that load and store run further from it than on one thread.")
