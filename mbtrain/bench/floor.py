"""The hardware floor of an epoch: its FLOPs over the GEMM rate, its bytes over the bandwidth.

Counting (``n`` rows, layer widths ``n_0 .. n_L``, one multiply-add = 2 FLOPs)::

    forward          2 n sum_l n_l n_{l+1}       (Z = A @ W.T for every layer)
    weight gradients 2 n sum_l n_l n_{l+1}       (D.T @ A_prev for every layer)
    hidden deltas    2 n sum_{l>=1} n_l n_{l+1}  (D @ W, not needed for the first layer)

For the book's ``[784, 30, 10]`` on 60 000 rows that is about 5.75 GFLOP. The
element-wise work (sigmoid, its derivative, the update) is not counted: it is
small next to the products and not what a GEMM rate measures.

The bytes an epoch must move are the inputs, read twice (forward pass and
weight gradient of the first layer); targets, activations and weights are
small and stay in cache for the networks benchmarked here.

Both rates are measured on this machine, in the same run, with the thread
count the benchmark uses: a large matrix product for the GEMM rate, a
reduction over an array far larger than any cache for the bandwidth.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


def epoch_flops(sizes, n_rows: int) -> float:
    """FLOPs of one epoch of backprop + SGD for layer widths ``sizes`` over ``n_rows`` rows."""
    sizes = [int(s) for s in sizes]
    products = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    forward = 2.0 * n_rows * sum(products)
    weight_gradients = forward
    hidden_deltas = 2.0 * n_rows * sum(products[1:])
    return forward + weight_gradients + hidden_deltas


def epoch_bytes(sizes, n_rows: int, dtype="float32") -> float:
    """Bytes an epoch must read from memory: the inputs ``(n_rows, sizes[0])``, twice."""
    return 2.0 * n_rows * int(sizes[0]) * np.dtype(dtype).itemsize


def _best_time(fn, repeats: int) -> float:
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
    seconds = _best_time(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * n ** 3 / seconds


def measure_bandwidth(n_bytes: int = 256 * 2 ** 20, repeats: int = 3) -> float:
    """Read bandwidth in bytes/s: the sum of a float64 array of ``n_bytes`` (best of ``repeats``).

    A reduction reads each byte once and writes nothing; numpy runs it on one
    core, which is also how the kernels read their inputs.
    """
    a = np.ones(max(1, n_bytes // 8), dtype=np.float64)
    a.sum()  # touch every page before timing
    seconds = _best_time(a.sum, repeats)
    return a.nbytes / seconds


@dataclass
class Floor:
    """Measured rates of this machine and the floor they imply.

    Attributes
    ----------
    gemm_flops_per_second : dict
        ``{"float32": rate, "float64": rate}``, FLOP/s.
    bandwidth_bytes_per_second : float
    gemm_size : int
        The ``n`` of the timed ``(n, n) @ (n, n)`` product.
    bandwidth_array_bytes : int
        Size of the array summed to measure the bandwidth.
    """

    gemm_flops_per_second: dict
    bandwidth_bytes_per_second: float
    gemm_size: int = 1024
    bandwidth_array_bytes: int = 256 * 2 ** 20

    def epoch_floor(self, sizes, n_rows: int, dtype="float32") -> dict:
        """The floor of one epoch: ``seconds``, ``bound`` ("compute" or "memory") and both parts."""
        dtype = np.dtype(dtype).name
        compute = epoch_flops(sizes, n_rows) / self.gemm_flops_per_second[dtype]
        memory = epoch_bytes(sizes, n_rows, dtype) / self.bandwidth_bytes_per_second
        return {
            "floor_seconds": max(compute, memory),
            "floor_bound": "compute" if compute >= memory else "memory",
            "compute_floor_seconds": compute,
            "memory_floor_seconds": memory,
        }


def measure_floor(dtypes=("float32", "float64"), quick: bool = False) -> Floor:
    """Measure the GEMM rate for each dtype and the memory bandwidth, now, on this machine."""
    n = 512 if quick else 1024
    repeats = 5 if quick else 7
    rates = {np.dtype(d).name: measure_gemm_rate(d, n=n, repeats=repeats) for d in dtypes}
    n_bytes = (128 if quick else 256) * 2 ** 20
    bandwidth = measure_bandwidth(n_bytes=n_bytes, repeats=repeats)
    return Floor(rates, bandwidth, gemm_size=n, bandwidth_array_bytes=n_bytes)
