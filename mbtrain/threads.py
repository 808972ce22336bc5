"""Thread counts of numba's pool and the BLAS library, set together.

mbtrain's arithmetic runs in two native thread pools: numba's (the ``numba``
backend's kernels, and any ``parallel=True`` kernel) and the BLAS library's
(numpy's ``@``, used by the ``numpy`` backend, ``Network.forward``, monitoring
and scikit-learn). This module sets both from one number and puts them back::

    mbtrain.set_num_threads(1)              # both pools, until changed again
    with mbtrain.threads.limit(2):          # both pools, restored on exit
        net.fit(X, y, epochs=1, batch_size=10, eta=3.0)
    mbtrain.get_num_threads()               # ThreadCounts(numba=..., blas=...)

Defaults
--------
Nothing is changed at import. Until you call :func:`set_num_threads` or
:func:`limit`, numba uses ``numba.config.NUMBA_NUM_THREADS`` threads (the
number of cores, or the ``NUMBA_NUM_THREADS`` environment variable) and the
BLAS library its own default (the number of cores, or ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OMP_NUM_THREADS``).

Policy: no oversubscription
---------------------------
Both pools get the same count ``n``, at most the size of numba's pool (the
number of cores by default). That is safe because mbtrain never runs
them at the same time: a numba kernel returns before the next numpy call, and
no mbtrain kernel calls BLAS inside a numba parallel region (the kernels are
plain loops). So at most ``n`` threads compute at any moment. Code of your own
that calls BLAS from inside a numba ``prange`` loop would run ``n x n``
threads; pass ``blas=1`` for it (``limit(n, blas=1)``).

Only BLAS pools are limited (threadpoolctl ``user_api="blas"``), not OpenMP
pools, which belong to other libraries (or to numba's own ``omp`` threading
layer, which :func:`numba.set_num_threads` already governs). numba's count is
local to the calling Python thread, as in numba; BLAS counts are process-wide.
"""
from __future__ import annotations

import numbers
from contextlib import contextmanager
from typing import NamedTuple

import numba
import numpy  # noqa: F401  (loads the BLAS so threadpoolctl can see it)
from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["ThreadCounts", "get_num_threads", "limit", "set_num_threads"]


class ThreadCounts(NamedTuple):
    """Thread counts in force: ``numba`` and ``blas`` (the largest over the loaded
    BLAS libraries; None when no BLAS library is loaded)."""

    numba: int
    blas: int | None


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: must be an integer number of threads, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}")
    return int(value)


def _blas_pools() -> list[dict]:
    return [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]


def get_num_threads() -> ThreadCounts:
    """The thread counts in force for numba (this Python thread) and BLAS."""
    counts = [pool["num_threads"] for pool in _blas_pools()]
    return ThreadCounts(numba=int(numba.get_num_threads()), blas=max(counts) if counts else None)


def _max_threads() -> int:
    """The size of the pool numba starts: the number of cores, or ``NUMBA_NUM_THREADS``."""
    return int(numba.config.NUMBA_NUM_THREADS)


def _counts(n, blas) -> tuple[int, int]:
    """``(numba, blas)`` counts to set: checked, ``blas`` defaulting to ``n``, both clipped.

    numba refuses more than the pool it launched; BLAS accepts anything, but
    more threads than that pool (than cores, by default) only oversubscribe
    the machine, so both are clipped to it rather than failing; the counts in
    force are what :func:`get_num_threads` reports.
    """
    n = _check_count(n, "n")
    blas = n if blas is None else _check_count(blas, "blas")
    most = _max_threads()
    return min(n, most), min(blas, most)


def set_num_threads(n, *, blas=None) -> ThreadCounts:
    """Set numba's and the BLAS library's thread counts; returns the previous counts.

    Parameters
    ----------
    n : int >= 1
        Threads for numba, clipped to ``numba.config.NUMBA_NUM_THREADS`` (the
        size of the pool numba starts, the number of cores by default).
    blas : int >= 1 or None
        Threads for BLAS; None means ``n`` (see the module's policy). Clipped
        like ``n``: ``set_num_threads(10**6)`` on a 2-core machine sets 2 and 2.

    Returns
    -------
    ThreadCounts
        The counts before the call, to restore later by hand; :func:`limit`
        does that for you.
    """
    n, blas = _counts(n, blas)
    previous = get_num_threads()
    numba.set_num_threads(n)
    threadpool_limits(limits=blas, user_api="blas")
    return previous


@contextmanager
def limit(n, *, blas=None):
    """Context manager: :func:`set_num_threads` on entry, the previous counts on exit.

    Restores in a ``finally``, so an exception (or Ctrl-C) inside the block
    leaves the counts as they were. Yields the :class:`ThreadCounts` in force.

    Examples
    --------
    >>> with mbtrain.threads.limit(1) as counts:   # doctest: +SKIP
    ...     net.fit(X, y, epochs=1, batch_size=10, eta=3.0)
    """
    n, blas = _counts(n, blas)
    previous_numba = numba.get_num_threads()
    # threadpoolctl records each library's own count and restores exactly that.
    blas_limiter = threadpool_limits(limits=blas, user_api="blas")
    try:
        numba.set_num_threads(n)
        yield get_num_threads()
    finally:
        numba.set_num_threads(previous_numba)
        blas_limiter.restore_original_limits()


num_threads = limit  # the spelling of numba and threadpoolctl users
