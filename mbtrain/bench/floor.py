"""The hardware floor of an epoch: its FLOPs over the GEMM rate, its bytes over the bandwidth.

Counting (``n`` rows, layer widths ``n_0 .. n_L``, one multiply-add = 2 FLOPs)::

    forward          2 n sum_l n_l n_{l+1}       (Z = A @ W.T for every layer)
    weight gradients 2 n sum_l n_l n_{l+1}       (D.T @ A_prev for every layer)
    hidden deltas    2 n sum_{l>=1} n_l n_{l+1}  (D @ W, not needed for the first layer)

For the book's ``[784, 30, 10]`` on 60 000 rows that is about 5.75 GFLOP. The
element-wise work (sigmoid, its derivative, the update) is not counted: it is
small next to the products and not what a GEMM rate measures.

The bytes an epoch must move are the inputs, read once, in the dtype given:
a mini-batch's rows are small enough to stay in cache between the forward
pass and the weight gradient of the first layer (the numba epochs gather them
into an aligned work space and read them from there), and targets,
activations and weights are small and stay in cache for the networks
benchmarked here. (Byte-valued pixels, which the numba epochs read as bytes,
need a quarter of a float32 floor's bytes: for the networks here the compute
floor is the higher one anyway.)

The rates are measured on this machine, in the same run, with the thread
count the benchmark uses: a large matrix product for the GEMM rate, an
FMA-throughput probe compiled by numba for this CPU for its peak
(:mod:`~mbtrain.bench.peak`), and for the bandwidth a reduction over an array
far larger than any cache, on every thread (:mod:`~mbtrain.bench.bandwidth`)
and numpy's one-core ``sum``: the memory floor takes the higher of the two
(numpy's sum is bound by its additions, at half or less of what a core
reads). The compute floor runs the epoch's FLOPs at the
higher of the GEMM and probe rates: a GEMM rate alone is only as honest as the
BLAS kernel numpy runs (an AVX2 kernel on an AVX-512 CPU halves it), and the
probe alone can be the lower one where LLVM's vectors are narrower than
BLAS's. Each floor row says which rate it took (``compute_rate_source``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numba
import numpy as np

from . import bandwidth, peak


def epoch_flops(sizes, n_rows: int) -> float:
    """FLOPs of one epoch of backprop + SGD for layer widths ``sizes`` over ``n_rows`` rows."""
    sizes = [int(s) for s in sizes]
    products = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    forward = 2.0 * n_rows * sum(products)
    weight_gradients = forward
    hidden_deltas = 2.0 * n_rows * sum(products[1:])
    return forward + weight_gradients + hidden_deltas


def epoch_bytes(sizes, n_rows: int, dtype="float32") -> float:
    """Bytes an epoch must read from memory: the inputs ``(n_rows, sizes[0])``, once."""
    return 1.0 * n_rows * int(sizes[0]) * np.dtype(dtype).itemsize


def best_time(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn``, in seconds."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_gemm_rate(dtype="float32", n: int = 1024, repeats: int = 3) -> float:
    """FLOP/s of an ``(n, n) @ (n, n)`` product in ``dtype`` with numpy's BLAS (best of ``repeats``).

    The BLAS thread count in force (see :func:`threadpoolctl.threadpool_limits`) applies.
    """
    rng = np.random.default_rng(0)
    a = rng.random((n, n)).astype(dtype)
    b = rng.random((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    np.matmul(a, b, out=out)  # warm up: thread pool start-up, page faults
    seconds = best_time(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * n ** 3 / seconds


def measure_bandwidth(n_bytes: int = 256 * 2 ** 20, repeats: int = 3) -> float:
    """numpy's read rate in bytes/s: ``sum`` of a float64 array of ``n_bytes`` (best of ``repeats``), on one core.

    A reduction reads each byte once and writes nothing, but numpy's pairwise
    sum is bound by its additions, not by memory: a lower bound of the
    bandwidth. :func:`mbtrain.bench.bandwidth.measure_read_bandwidth` reads at
    the memory's rate on every thread.
    """
    a = np.ones(max(1, n_bytes // 8), dtype=np.float64)
    a.sum()  # touch every page before timing
    seconds = best_time(a.sum, repeats)
    return a.nbytes / seconds


@dataclass
class Floor:
    """Measured rates of this machine and the floor they imply.

    Attributes
    ----------
    gemm_flops_per_second : dict
        ``{"float32": rate, "float64": rate}``, FLOP/s.
    bandwidth_bytes_per_second : float
        The memory floor's read rate: the higher of ``numpy_bandwidth_bytes_per_second``
        and ``probe_bandwidth_bytes_per_second``.
    gemm_size : int
        The ``n`` of the timed ``(n, n) @ (n, n)`` product.
    bandwidth_array_bytes : int
        Size of the array summed to measure the bandwidth.
    probe_flops_per_second : dict
        ``{"float32": rate, ...}``, FLOP/s of the FMA probe (empty: not measured).
    probe_compile_seconds : float
        Compiling (or loading from numba's cache) the probe, apart from its timing.
    threads : int or None
        numba's thread count the probe ran with.
    numpy_bandwidth_bytes_per_second, probe_bandwidth_bytes_per_second : float
        numpy's one-core ``sum`` and the read probe on every thread (NaN: not measured).
    """

    gemm_flops_per_second: dict
    bandwidth_bytes_per_second: float
    gemm_size: int = 1024
    bandwidth_array_bytes: int = 256 * 2 ** 20
    probe_flops_per_second: dict = field(default_factory=dict)
    probe_compile_seconds: float = math.nan
    threads: int | None = None
    numpy_bandwidth_bytes_per_second: float = math.nan
    probe_bandwidth_bytes_per_second: float = math.nan

    @property
    def bandwidth_source(self) -> str:
        """Where :attr:`bandwidth_bytes_per_second` comes from: ``"probe"``, ``"numpy"`` or ``"given"``."""
        if self.bandwidth_bytes_per_second == self.probe_bandwidth_bytes_per_second:
            return "probe"
        return "numpy" if self.bandwidth_bytes_per_second == self.numpy_bandwidth_bytes_per_second else "given"

    def compute_rate(self, dtype) -> tuple:
        """``(FLOP/s, source)`` of the compute floor in ``dtype``: the higher of the ``"probe"`` and ``"gemm"`` rates."""
        dtype = np.dtype(dtype).name
        gemm, probe = self.gemm_flops_per_second[dtype], self.probe_flops_per_second.get(dtype)
        return (probe, "probe") if probe is not None and probe > gemm else (gemm, "gemm")

    def row(self, dtype) -> dict:
        """The rates behind ``dtype``'s floor, as columns of a results.csv ``floor`` row."""
        dtype = np.dtype(dtype).name
        return {"gemm_flops_per_second": self.gemm_flops_per_second[dtype],
                "probe_flops_per_second": self.probe_flops_per_second.get(dtype),
                "compute_rate_source": self.compute_rate(dtype)[1],
                "bandwidth_bytes_per_second": self.bandwidth_bytes_per_second,
                "bandwidth_source": self.bandwidth_source,
                "compile_seconds": self.probe_compile_seconds,
                "note": f"GEMM {self.gemm_size}x{self.gemm_size}; FMA probe {peak.ACCUMULATORS} x "
                        f"{peak.VECTOR_WIDTH_BYTES * 8}-bit accumulators per thread; "
                        f"bandwidth: sum of {self.bandwidth_array_bytes // 2 ** 20} MiB "
                        f"(read probe {_gb(self.probe_bandwidth_bytes_per_second)} GB/s on every thread, "
                        f"numpy {_gb(self.numpy_bandwidth_bytes_per_second)} GB/s on one)"}

    def describe(self) -> dict:
        """machine.json's ``floor``: every rate, where each dtype's compute floor comes from, the probe's shape."""
        return {"gemm_flops_per_second": self.gemm_flops_per_second,
                "probe_flops_per_second": self.probe_flops_per_second,
                "compute_rate_source": {d: self.compute_rate(d)[1] for d in self.gemm_flops_per_second},
                "bandwidth_bytes_per_second": self.bandwidth_bytes_per_second,
                "bandwidth_source": self.bandwidth_source,
                "numpy_bandwidth_bytes_per_second": self.numpy_bandwidth_bytes_per_second,
                "probe_bandwidth_bytes_per_second": self.probe_bandwidth_bytes_per_second,
                "gemm_size": self.gemm_size,
                "probe": {"vector_bits": peak.VECTOR_WIDTH_BYTES * 8, "accumulators": peak.ACCUMULATORS,
                          "threads": self.threads, "compile_seconds": self.probe_compile_seconds}}

    def epoch_floor(self, sizes, n_rows: int, dtype="float32") -> dict:
        """The floor of one epoch: ``seconds``, ``bound`` ("compute" or "memory") and both parts."""
        dtype = np.dtype(dtype).name
        compute = epoch_flops(sizes, n_rows) / self.compute_rate(dtype)[0]
        memory = epoch_bytes(sizes, n_rows, dtype) / self.bandwidth_bytes_per_second
        return {
            "floor_seconds": max(compute, memory),
            "floor_bound": "compute" if compute >= memory else "memory",
            "compute_floor_seconds": compute,
            "memory_floor_seconds": memory,
        }


def measure_floor(dtypes=("float32", "float64"), quick: bool = False, probe: bool = True) -> Floor:
    """Measure the GEMM rate and the FMA probe's (``probe``) for each dtype and the bandwidth, now, on this machine.

    The probes (FMA and read) are compiled first (reported apart) and timed on
    numba's thread count in force; they take under a second for both dtypes
    (about 0.1 s with ``quick``). Without ``probe``, the bandwidth is numpy's alone.
    """
    dtypes = [np.dtype(d).name for d in dtypes]
    n = 512 if quick else 1024
    repeats = 5 if quick else 7
    rates = {d: measure_gemm_rate(d, n=n, repeats=repeats) for d in dtypes}
    n_bytes = (128 if quick else 256) * 2 ** 20
    numpy_bandwidth = measure_bandwidth(n_bytes=n_bytes, repeats=repeats)
    probe_rates, compile_seconds, read_bandwidth = {}, math.nan, math.nan
    if probe:
        compile_seconds = peak.compile_probe(dtypes) + bandwidth.compile_probe()
        read_bandwidth = bandwidth.measure_read_bandwidth(n_bytes=n_bytes, repeats=repeats)
        # best of 15: on a shared machine a neighbour's burst lowered the best of 5 on two threads from 474
        # to 373 GFLOP/s in one of two runs, which loosens every two-thread floor by a quarter
        probe_rates = {d: peak.measure_peak_rate(d, seconds=0.01 if quick else 0.02, repeats=3 if quick else 15)
                       for d in dtypes}
    best_bandwidth = read_bandwidth if read_bandwidth > numpy_bandwidth else numpy_bandwidth  # not measured: numpy's
    return Floor(rates, best_bandwidth, gemm_size=n, bandwidth_array_bytes=n_bytes,
                 probe_flops_per_second=probe_rates, probe_compile_seconds=compile_seconds,
                 threads=numba.get_num_threads(), numpy_bandwidth_bytes_per_second=numpy_bandwidth,
                 probe_bandwidth_bytes_per_second=read_bandwidth)


def _gb(rate) -> str:
    return "-" if math.isnan(rate) else f"{rate / 1e9:.1f}"  # NaN: not measured
