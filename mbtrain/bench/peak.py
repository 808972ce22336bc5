"""The peak FLOP rate of this CPU: an FMA-throughput probe that numba compiles for the machine it runs on.

Why a probe: a floor taken from numpy's GEMM rate is only as fast as the BLAS
kernel numpy happens to run. OpenBLAS running its Haswell (AVX2) kernel on an
AVX-512 CPU (``OPENBLAS_CORETYPE=Haswell``, or an old OpenBLAS) halves the
GEMM rate and doubles the "floor", which flatters every ratio against it. The
probe measures what the vector FMA units deliver to code LLVM compiles here,
at the benchmark's thread count; the floor takes the larger of the two rates
(:class:`mbtrain.bench.floor.Floor`).

How it reaches the peak. Each thread owns one block of :data:`ACCUMULATORS`
vector registers' worth of numbers and runs ``acc = acc * a + b`` over it
``iterations`` times (one multiply-add, 2 FLOPs, per number per iteration):

- the block's length, :data:`BLOCK_BYTES` over the item size, is a constant
  when numba compiles the loop (:func:`block_numbers`), so LLVM unrolls the
  loop over the block completely, vectorises it and keeps the whole block in
  registers across the iterations: the hot loop is :data:`ACCUMULATORS`
  ``vfmadd`` instructions and no load or store. With AVX-512 the block is
  written in explicit 512-bit vectors instead (``zmm``: 16 float32 or 8
  float64 per instruction; see below);
- ``fastmath={"contract"}`` lets LLVM fuse the multiply and the add into one
  FMA (it keeps them apart otherwise); nothing else of fastmath is needed;
- the accumulators are independent chains: an FMA waits 4-5 cycles for its
  input on current x86 and ARM cores with 2 FMA units, so 8-10 chains in
  flight keep the units busy; 16 (12 where there are only 16 vector
  registers) leave room to spare;
- ``a = 1 - 2**-10`` and ``b = 2**-10`` keep every number at exactly 1: no
  denormal slows a lane down, and no number grows to infinity.

``BLOCK_BYTES`` is a module constant frozen into the compiled code; it is
chosen from the features numba compiles for (see
:func:`mbtrain.bench.machine.numba_target`), which are also part of the key
of numba's on-disk cache, so a cached probe was always compiled with the block
this import computes.

The width is the register's, not what LLVM's loop vectorizer prefers. On
Intel cores LLVM tunes for 256-bit vectors when it vectorizes a loop
(``prefer-vector-width=256``: Skylake-X, Ice Lake, Rocket Lake, Sapphire
Rapids), so a probe written as a loop ran at half the width of the registers;
mbtrain's tiles (:mod:`mbtrain.fast_tiles`) are written in explicit 512-bit
vectors, which LLVM keeps whole. Where numba compiles for AVX-512 the block is
therefore :data:`ACCUMULATORS` explicit 512-bit vectors (:func:`_fma_vectors`),
elsewhere the loop above. Measured on an Intel Xeon (LLVM: ``rocketlake``, 2
cores, AVX-512), one thread, float32: the loop 75 GFLOP/s (``ymm``), the
explicit vectors 135 (``zmm``), numpy's GEMM 84: a floor from the loop and
GEMM was 1.6x too low.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from numba import njit, prange
from numba.extending import overload

from ..fast_tiles import WIDE_VECTORS, vfma, vload, vsplat, vstore
from .machine import VECTOR_BYTES, numba_target

_TARGET = numba_target()
VECTOR_WIDTH_BYTES = VECTOR_BYTES.get(_TARGET["isa"], 16)  #: bytes of the widest vector register numba compiles for
# x86-64 has 16 vector registers before AVX-512 and 32 with it; AArch64 has 32.
ACCUMULATORS = 12 if _TARGET["isa"] in ("SSE", "AVX", "AVX2") else 16  #: vector registers each thread keeps busy
BLOCK_BYTES = VECTOR_WIDTH_BYTES * ACCUMULATORS  #: bytes of one thread's accumulator block (a multiple of 64)

#: The decorator options of the probe (a test recompiles :func:`fma_block` with them, uncached, to read its code).
PROBE_OPTIONS = dict(fastmath={"contract"}, cache=True)

A_FACTOR = 1.0 - 2.0 ** -10
B_TERM = 2.0 ** -10  # 1 * A_FACTOR + B_TERM == 1 exactly: the accumulators never change


def block_numbers(acc) -> int:
    """Numbers of ``acc``'s dtype in one accumulator block; a constant of the compiled code under numba."""
    return BLOCK_BYTES // acc.itemsize


@overload(block_numbers)
def _block_numbers_constant(acc):
    # acc.itemsize is a field read at run time in numba; the type's width makes the trip count a constant
    numbers = BLOCK_BYTES // (acc.dtype.bitwidth // 8)
    return lambda acc: numbers


def _fma_block(acc, a, b, iterations):
    """``acc = acc * a + b``, ``iterations`` times, over the first block of ``acc`` (1-D, contiguous)."""
    for _ in range(iterations):
        for j in range(block_numbers(acc)):  # a constant trip count: unrolled, the block kept in registers
            acc[j] = acc[j] * a + b


def vector_lanes(acc) -> int:
    """Numbers of ``acc``'s dtype in one 512-bit vector; a constant of the compiled code under numba."""
    return 64 // acc.itemsize


@overload(vector_lanes)
def _vector_lanes_constant(acc):
    lanes = 512 // acc.dtype.bitwidth
    return lambda acc: lanes


def _fma_vectors(acc, a, b, iterations):
    """:func:`_fma_block` with the block as 16 explicit 512-bit vectors (``acc`` holds 16 of them)."""
    n = vector_lanes(acc)
    av, bv = vsplat(a), vsplat(b)
    v0, v1, v2, v3 = vload(acc, 0), vload(acc, n), vload(acc, 2 * n), vload(acc, 3 * n)
    v4, v5, v6, v7 = vload(acc, 4 * n), vload(acc, 5 * n), vload(acc, 6 * n), vload(acc, 7 * n)
    v8, v9, v10, v11 = vload(acc, 8 * n), vload(acc, 9 * n), vload(acc, 10 * n), vload(acc, 11 * n)
    v12, v13, v14, v15 = vload(acc, 12 * n), vload(acc, 13 * n), vload(acc, 14 * n), vload(acc, 15 * n)
    for _ in range(iterations):
        v0, v1, v2, v3 = vfma(v0, av, bv), vfma(v1, av, bv), vfma(v2, av, bv), vfma(v3, av, bv)
        v4, v5, v6, v7 = vfma(v4, av, bv), vfma(v5, av, bv), vfma(v6, av, bv), vfma(v7, av, bv)
        v8, v9, v10, v11 = vfma(v8, av, bv), vfma(v9, av, bv), vfma(v10, av, bv), vfma(v11, av, bv)
        v12, v13, v14, v15 = vfma(v12, av, bv), vfma(v13, av, bv), vfma(v14, av, bv), vfma(v15, av, bv)
    for k, v in enumerate((v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15)):
        vstore(acc, k * n, v)


#: The block the probe runs: explicit 512-bit vectors where numba compiles for AVX-512, else the loop.
PROBE_BLOCK = _fma_vectors if _TARGET["isa"] == "AVX-512" and WIDE_VECTORS else _fma_block
fma_block = njit(**PROBE_OPTIONS)(PROBE_BLOCK)


@njit(parallel=True, **PROBE_OPTIONS)
def _fma_threads(acc, a, b, iterations):
    """:func:`fma_block` on each row of ``acc`` ``(n_threads, block)``, one row per thread of numba's pool."""
    for t in prange(acc.shape[0]):
        fma_block(acc[t], a, b, iterations)


def block_length(dtype) -> int:
    """Numbers in one thread's accumulator block for ``dtype``."""
    return BLOCK_BYTES // np.dtype(dtype).itemsize


def _accumulators(dtype, n_threads):
    return np.ones((n_threads, block_length(dtype)), dtype=dtype)


def _run(acc, iterations) -> float:
    a, b = acc.dtype.type(A_FACTOR), acc.dtype.type(B_TERM)
    start = time.perf_counter()
    _fma_threads(acc, a, b, iterations)
    return time.perf_counter() - start


def compile_probe(dtypes=("float32", "float64")) -> float:
    """Compile (or load from numba's cache) the probe for ``dtypes``; returns seconds, reported apart."""
    start = time.perf_counter()
    for dtype in dtypes:
        _run(_accumulators(dtype, 1), 1)
    return time.perf_counter() - start


def measure_peak_rate(dtype="float32", seconds=0.02, repeats=5) -> float:
    """FLOP/s of the FMA probe in ``dtype`` on every thread of numba's pool now (best of ``repeats``).

    The thread count is :func:`numba.get_num_threads` (what the benchmark
    set); each thread runs its own block. The iteration count is calibrated
    so that one timed call takes about ``seconds``; the whole measurement
    takes about ``(repeats + 1) * seconds`` once compiled (call
    :func:`compile_probe` first to keep compiling out of it).
    """
    acc = _accumulators(dtype, numba.get_num_threads())
    iterations = 256
    elapsed = _run(acc, iterations)
    while elapsed < seconds / 8 and iterations < 2 ** 40:  # short calls are all call overhead: grow first
        iterations *= 8
        elapsed = _run(acc, iterations)
    iterations = max(1, int(iterations * seconds / max(elapsed, 1e-9)))
    best = min(_run(acc, iterations) for _ in range(repeats))
    if not np.all(acc == 1):
        raise RuntimeError("peak probe: an accumulator moved off 1, so the probe did not run the arithmetic it counts")
    return 2.0 * acc.size * iterations / best
