"""Register tiles of explicit 512-bit vectors: the dense layer's update and forward on AVX-512.

LLVM vectorizes only innermost loops, so the tuple tiles of :mod:`mbtrain.fast_layers`
hold their accumulators along the loop they vectorize, and their weight update
can keep only one written row per inner loop (more exceed LLVM's budget of
runtime alias checks). Here a numba type, :class:`Vec`, is an LLVM vector of
512 bits (16 float32 or 8 float64 lanes), and a handful of intrinsics load,
store, splat and fuse-multiply-add them; a loop-carried tuple of ``Vec`` is a
tuple of vector registers, so a tile is written as what it is:

- the update ``W[h] <- s W[h] + beta sum_i D[i, h] A[rows[i]]`` in tiles of
  ``TILE_UNITS`` (6) units x ``TILE_VECTORS`` (4) vectors of ``W``: 24
  accumulators, with the batch's rows as the inner loop. Each tile of ``W`` is
  read and written once per batch (the row-wise kernel streams ``W`` from L2
  once per 8 rows), the four vectors of an input row serve 6 units and each
  splat of ``D[i, h]`` 4 vectors. A partial last vector is read and written
  through a lane mask, so any ``n_in`` works;
- the forward ``Z[i, h] = A[rows[i]] . W[h] + b[h]`` in tiles of
  ``TILE_ROWS`` (6) rows x 4 units: 24 accumulators along ``n_in``, summed
  across the lanes at the end, and the rows left over in tiles of
  ``LAST_ROWS`` (4);
- the forward of a narrow layer (the output layer: at most one vector of
  units) as a vector of units per row, in tiles of 8 rows, from a transposed
  copy of ``W``; and BP2, whose last vectors run for 4 rows at a time.

Measured alone (one thread, Zen 5, 500 batches of 100 rows; the epoch's share
is in ``benchmarks/epoch_pieces.py``): the first layer's update of
``[784,100,10]`` at 150-156 -> 186-210 GFLOP/s and of ``[784,30,10]`` at
143-145 -> 197-207; the forward of ``[784,100,10]`` at 191-203 -> 208 and of
``[784,30,10]`` unchanged (182-188: its last 2 units run row-wise); the FMA peak
is 243. Later (probe 231-239), for ``[784,30,10]``: the output layer's
forward 1.5 -> 0.7 ms an epoch, BP2 0.86 -> 0.62 ms and the output layer's
update 1.43 -> 1.24 ms (old and new kernels alternating in one process).
Without AVX-512 (:data:`WIDE_VECTORS` false) 24 accumulators would not fit
the 16 registers, and :mod:`mbtrain.fast_layers` runs its own kernels.

Every operation has a plain-Python twin over numpy arrays, which is what
``NUMBA_DISABLE_JIT`` runs; compiled code calls the intrinsic itself.
The intrinsics are inlined into their callers, whose cache this file's SHA-256
in :mod:`mbtrain.fast_layers` keeps honest (see :mod:`mbtrain.fast_kernels`).
"""
from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.np.numpy_support import as_dtype
from numba.extending import intrinsic, models, overload, register_model

#: Units x vectors of an update tile; rows of a forward tile (of 4 units). Written out below.
TILE_UNITS = 6
TILE_VECTORS = 4
TILE_ROWS = 6
#: Rows of the forward tiles that take the ``m % 6`` rows left over.
LAST_ROWS = 4


def _wide_vectors() -> bool:
    """Whether numba compiles for a CPU with AVX-512F (its own ``NUMBA_CPU_FEATURES`` first)."""
    if config.CPU_FEATURES:
        return "+avx512f" in config.CPU_FEATURES.split(",")
    features = llvm.get_host_cpu_features()
    return bool(features.get("avx512f", False))


#: True where the tiled kernels run (512-bit vectors, 32 registers).
WIDE_VECTORS = _wide_vectors()


class Vec(types.Type):
    """A 512-bit vector of ``dtype`` (float32 or float64) lanes, held in a register."""

    def __init__(self, dtype):
        self.dtype, self.lanes = dtype, 512 // dtype.bitwidth
        super().__init__(name=f"Vec({dtype}x{self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        lane = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(lane, fe_type.lanes))


def _address(context, builder, array_type, array, i):
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.gep(data, [i])


def _splat(builder, value, vector_type):
    """Scalar ``value`` (of ``vector_type``'s lane type) in every lane of a ``vector_type``."""
    lanes = vector_type.count
    v = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _tail_mask(builder, lanes, n):
    """Lanes ``< n`` as an ``<lanes x i1>`` mask."""
    index = ir.Constant(ir.VectorType(ir.IntType(64), lanes), list(range(lanes)))
    return builder.icmp_unsigned("<", index, _splat(builder, n, index.type))


def _vector_name(vector_type):
    return f"v{vector_type.count}f{64 if isinstance(vector_type.element, ir.DoubleType) else 32}"


def _load(context, builder, array_type, array, i, lanes, n=None):
    """``lanes`` values of ``array`` from ``i``, in its dtype; given ``n``, a masked load: ``n`` values, then zeros."""
    vector_type = ir.VectorType(context.get_value_type(array_type.dtype), lanes)
    pointer = builder.bitcast(_address(context, builder, array_type, array, i), vector_type.as_pointer())
    align = array_type.dtype.bitwidth // 8
    if n is None:
        return builder.load(pointer, align=align)
    load = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vector_type, [vector_type.as_pointer(), ir.IntType(32),
                                      ir.VectorType(ir.IntType(1), lanes), vector_type]),
        f"llvm.masked.load.{_vector_name(vector_type)}.p0")
    return builder.call(load, [pointer, ir.Constant(ir.IntType(32), align), _tail_mask(builder, lanes, n),
                               ir.Constant(vector_type, None)])


def _convert(builder, value, to_type, signed=False):
    """``value`` (a vector or a scalar) as ``to_type``: widened or narrowed as numpy's astype does.

    Integers (byte codes: unsigned unless ``signed``) convert exactly to the float lanes.
    """
    if value.type == to_type:
        return value
    element = value.type.element if isinstance(value.type, ir.VectorType) else value.type
    if isinstance(element, ir.IntType):
        return builder.sitofp(value, to_type) if signed else builder.uitofp(value, to_type)
    lane = to_type.element if isinstance(to_type, ir.VectorType) else to_type
    if isinstance(lane, ir.DoubleType):
        return builder.fpext(value, to_type)
    return builder.fptrunc(value, to_type)


@intrinsic
def _vload(typingctx, a, i):
    """``a[i:i + lanes]`` of a contiguous 1-D array as a :class:`Vec` (no bounds check)."""
    vec = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], args[0], args[1], vec.lanes)
    return vec(a, types.intp), codegen


@intrinsic
def _vload_first(typingctx, a, i, n):
    """``a[i:i + n]`` and zeros in the lanes from ``n`` on: a masked load that reads only ``n`` values."""
    vec = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], args[0], args[1], vec.lanes, args[2])
    return vec(a, types.intp, types.intp), codegen


@intrinsic
def _vload_as(typingctx, a, i, like):
    """``a[i:i + lanes]`` in the dtype of scalar ``like`` (its lanes): float32 rows for a float64 layer, or
    16 (8) byte codes as float32 (float64) lanes."""
    vec = Vec(like)

    def codegen(context, builder, sig, args):
        value = _load(context, builder, sig.args[0], args[0], args[1], vec.lanes)
        source = sig.args[0].dtype
        signed = isinstance(source, types.Integer) and source.signed
        return _convert(builder, value, context.get_value_type(vec), signed)
    return vec(a, types.intp, like), codegen


@intrinsic
def _vload_first_as(typingctx, a, i, n, like):
    """:func:`vload_first` in the dtype of scalar ``like``."""
    vec = Vec(like)

    def codegen(context, builder, sig, args):
        value = _load(context, builder, sig.args[0], args[0], args[1], vec.lanes, args[2])
        return _convert(builder, value, context.get_value_type(vec))
    return vec(a, types.intp, types.intp, like), codegen


@intrinsic
def _vstore(typingctx, a, i, v):
    """``a[i:i + lanes] = v``."""
    def codegen(context, builder, sig, args):
        address = _address(context, builder, sig.args[0], args[0], args[1])
        pointer = builder.bitcast(address, args[2].type.as_pointer())
        builder.store(args[2], pointer, align=a.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(a, types.intp, v), codegen


@intrinsic
def _vstore_first(typingctx, a, i, v, n):
    """``a[i:i + n] = v[:n]``: a masked store that writes only ``n`` values."""
    def codegen(context, builder, sig, args):
        vector_type = args[2].type
        address = _address(context, builder, sig.args[0], args[0], args[1])
        pointer = builder.bitcast(address, vector_type.as_pointer())
        store = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [vector_type, vector_type.as_pointer(), ir.IntType(32),
                                            ir.VectorType(ir.IntType(1), vector_type.count)]),
            f"llvm.masked.store.{_vector_name(vector_type)}.p0")
        mask = _tail_mask(builder, vector_type.count, args[3])
        builder.call(store, [args[2], pointer, ir.Constant(ir.IntType(32), a.dtype.bitwidth // 8), mask])
        return context.get_dummy_value()
    return types.none(a, types.intp, v, types.intp), codegen


@intrinsic
def _vsplat(typingctx, x):
    """``x`` in every lane."""
    vec = Vec(x)

    def codegen(context, builder, sig, args):
        return _splat(builder, args[0], context.get_value_type(vec))
    return vec(x), codegen


@intrinsic
def _vsplat_as(typingctx, x, like):
    """``x`` in every lane, in the dtype of scalar ``like`` (a float32 input under a float64 layer)."""
    vec = Vec(like)

    def codegen(context, builder, sig, args):
        return _splat(builder, _convert(builder, args[0], context.get_value_type(like)), context.get_value_type(vec))
    return vec(x, like), codegen


@intrinsic
def _vzero(typingctx, x):
    """Zeros, as a vector of the type of scalar ``x``."""
    vec = Vec(x)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vec), None)
    return vec(x), codegen


@intrinsic
def _vfma(typingctx, a, b, c):
    """``a * b + c`` in each lane, rounded once."""
    def codegen(context, builder, sig, args):
        vector_type = args[0].type
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [vector_type] * 3), f"llvm.fma.{_vector_name(vector_type)}")
        return builder.call(fma, args)
    return c(a, b, c), codegen


@intrinsic
def _vmul(typingctx, a, b):
    """``a * b`` in each lane."""
    def codegen(context, builder, sig, args):
        return builder.fmul(*args)
    return a(a, b), codegen


@intrinsic
def _vsum(typingctx, v):
    def codegen(context, builder, sig, args):
        vector_type = args[0].type
        lane = vector_type.element
        reduce = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(lane, [lane, vector_type]),
            f"llvm.vector.reduce.fadd.{_vector_name(vector_type)}")
        return builder.call(reduce, [ir.Constant(lane, 0.0), args[0]], fastmath=("reassoc",))
    return v.dtype(v), codegen


def _shuffle(builder, a, b, lanes):
    i32 = ir.IntType(32)
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, len(lanes)), list(lanes)))


@intrinsic
def _vsum4(typingctx, a, b, c, d):
    """The lane sums of four vectors, as a tuple, in one tree: halves of pairs added, then quarters of
    the four, then within each quarter (13 shuffles and adds for 16 lanes, not 4 x 8)."""
    def codegen(context, builder, sig, args):
        a, b, c, d = args
        n = a.type.count
        h, q = n // 2, n // 4

        def halves(x, y):  # x's lanes folded to h, then y's: [x + x', y + y']
            return builder.fadd(_shuffle(builder, x, y, [*range(h), *range(n, n + h)]),
                                _shuffle(builder, x, y, [*range(h, n), *range(n + h, 2 * n)]))
        ab, cd = halves(a, b), halves(c, d)
        low = [*range(q), *range(h, h + q), *range(n, n + q), *range(n + h, n + h + q)]
        quarters = builder.fadd(_shuffle(builder, ab, cd, low), _shuffle(builder, ab, cd, [i + q for i in low]))
        g = q  # four groups of q lanes: a's, b's, c's, d's partial sums; fold each group to its lane 0
        while g > 1:
            g //= 2
            quarters = builder.fadd(quarters, _shuffle(builder, quarters, quarters, [i ^ g for i in range(n)]))
        i32 = ir.IntType(32)
        sums = [builder.extract_element(quarters, i32(k * q)) for k in range(4)]
        return context.make_tuple(builder, sig.return_type, sums)
    return types.UniTuple(a.dtype, 4)(a, b, c, d), codegen


@intrinsic
def _rolled(typingctx, i):
    """``i`` through an empty inline-asm call that LLVM may not duplicate: the loop holding it stays rolled.

    A tile's row loop unrolled twice holds two rows' input vectors beside its
    24 accumulators: more than the 32 registers. Whether LLVM unrolls it
    depended on the module the kernel was optimized in (numba links and
    re-optimizes a kernel into each caller), and a caller resolves the kernel
    to whichever copy was loaded first: a 6 x 4 tile loop with 26 spills and 50
    reloads ran the [784,30,10] epoch 1.7x slower after the online epoch had
    been loaded (its copy) than before.
    """
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        value_type = args[0].type
        identity = ir.InlineAsm(ir.FunctionType(value_type, [value_type]), "", "=r,0", side_effect=False)
        call = builder.call(identity, [args[0]])
        set.add(call.attributes, "noduplicate")  # a call-site attribute llvmlite does not list (LLVM knows it)
        return call
    return i(i), codegen


# -- the same operations in plain Python (numpy arrays as vectors), for NUMBA_DISABLE_JIT --------------
def _lanes(dtype):
    return 64 // np.dtype(dtype).itemsize


def vload(a, i):
    """``a[i:i + lanes]`` of a contiguous 1-D array as a vector (no bounds check when compiled)."""
    return a[i:i + _lanes(a.dtype)].copy()


def vload_first(a, i, n):
    """``a[i:i + n]``, then zeros: a masked load that reads only ``n`` values."""
    v = np.zeros(_lanes(a.dtype), a.dtype)
    v[:n] = a[i:i + n]
    return v


def vload_as(a, i, like):
    """``a[i:i + lanes]`` in the dtype of scalar ``like``, with its lanes (float32 rows of a float64 layer)."""
    return a[i:i + _lanes(type(like))].astype(type(like))


def vload_first_as(a, i, n, like):
    """:func:`vload_first` in the dtype of scalar ``like``."""
    v = np.zeros(_lanes(type(like)), type(like))
    v[:n] = a[i:i + n]
    return v


def vstore(a, i, v):
    """``a[i:i + lanes] = v``."""
    a[i:i + v.shape[0]] = v


def vstore_first(a, i, v, n):
    """``a[i:i + n] = v[:n]``: a masked store that writes only ``n`` values."""
    a[i:i + n] = v[:n]


def vsplat(x):
    """``x`` in every lane."""
    return np.full(_lanes(type(x)), x)


def vsplat_as(x, like):
    """``x`` in every lane, in the dtype of scalar ``like``."""
    return np.full(_lanes(type(like)), type(like)(x))


def vzero(x):
    """Zeros, as a vector of the type of scalar ``x``."""
    return np.zeros(_lanes(type(x)), type(x))


def vfma(a, b, c):
    """``a * b + c`` in each lane (rounded once when compiled; twice here)."""
    return a * b + c


def vmul(a, b):
    """``a * b`` in each lane."""
    return a * b


def vsum(v):
    """The sum of the lanes, in a tree (not left to right)."""
    return v.sum()


def vsum4(a, b, c, d):
    """The sums of the lanes of four vectors, as a tuple."""
    return a.sum(), b.sum(), c.sum(), d.sum()


def rolled(i):
    """``i``; compiled, a loop whose body holds it is never unrolled (see :func:`_rolled`)."""
    return i


# Compiled code calls the intrinsics themselves (these names are rebound to them); the plain functions
# above are what NUMBA_DISABLE_JIT runs. Through ``@overload`` wrappers, inlined at each of the hundreds
# of call sites, numba's type inference of tiled_update_units took 3.7 s instead of 0.3 (its whole
# compilation 5.7 s instead of 3.8).
if not config.DISABLE_JIT:
    vload, vload_first, vload_as, vload_first_as = _vload, _vload_first, _vload_as, _vload_first_as
    vstore, vstore_first, vsplat, vsplat_as, vzero = _vstore, _vstore_first, _vsplat, _vsplat_as, _vzero
    vfma, vmul, vsum, vsum4, rolled = _vfma, _vmul, _vsum, _vsum4, _rolled


# -- the update: W <- s W + beta D^T A, in tiles of 6 units x 4 vectors ------------------------------
@njit(inline="always")
def _fma4(a, vs, q):
    """``a * vs[v] + q[v]`` for the 4 vectors of a tile row: a splat times 4 loads, or a load times 4."""
    return vfma(a, vs[0], q[0]), vfma(a, vs[1], q[1]), vfma(a, vs[2], q[2]), vfma(a, vs[3], q[3])


#: How an update starts from ``W`` (the tiles of :func:`tiled_update_units`, :func:`tiled_bias_units` and the
#: online pass, :func:`tiled_update_forward_rows`): unread (``s == 0``, a gradient written from zero), as it is
#: (``s == 1``: no weight decay, so no multiply by one per value), or scaled by ``s``.
FROM_ZERO, FROM_W, FROM_SCALED_W = 0, 1, 2


@njit(inline="always")
def _start(s):
    """The start (:data:`FROM_ZERO`, :data:`FROM_W` or :data:`FROM_SCALED_W`) of an update scaling ``W`` by ``s``."""
    return FROM_ZERO if s == 0 else FROM_W if s == 1 else FROM_SCALED_W


@njit(inline="always")
def _started(w, s, start):
    """``s w`` (a vector), or ``w`` itself where ``s`` is one: the same value, without the multiply."""
    return w if start == FROM_W else vmul(s, w)


@njit(inline="always")
def _put(w, j, s, beta, acc, start):
    """``w[j:j + lanes] = s w[j:j + lanes] + beta acc``, as :func:`_started` starts from ``w``."""
    vstore(w, j, vfma(beta, acc, _started(vload(w, j), s, start)) if start != FROM_ZERO else vmul(beta, acc))


@njit(inline="always")
def _put4(w, j, lanes, s, beta, q, start):
    """:func:`_put` for the 4 vectors of one unit."""
    _put(w, j, s, beta, q[0], start)
    _put(w, j + lanes, s, beta, q[1], start)
    _put(w, j + 2 * lanes, s, beta, q[2], start)
    _put(w, j + 3 * lanes, s, beta, q[3], start)


@njit(inline="always")
def _put1(w, j, n, s, beta, q, start):
    """The same for one vector of ``n`` lanes."""
    new = vfma(beta, q, _started(vload_first(w, j, n), s, start)) if start != FROM_ZERO else vmul(beta, q)
    vstore_first(w, j, new, n)


@njit(inline="always")
def _tile6x4(W, A, rows, D, h, j, lanes, s, sv, bv, zv, start):
    q0 = q1 = q2 = q3 = q4 = q5 = (zv, zv, zv, zv)
    for i in range(rows.shape[0]):
        i = rolled(i)
        x, d = A[rows[i]], D[i]
        xs = vload_as(x, j, s), vload_as(x, j + lanes, s), vload_as(x, j + 2 * lanes, s), vload_as(x, j + 3 * lanes, s)
        q0, q1 = _fma4(vsplat(d[h]), xs, q0), _fma4(vsplat(d[h + 1]), xs, q1)
        q2, q3 = _fma4(vsplat(d[h + 2]), xs, q2), _fma4(vsplat(d[h + 3]), xs, q3)
        q4, q5 = _fma4(vsplat(d[h + 4]), xs, q4), _fma4(vsplat(d[h + 5]), xs, q5)
    _put4(W[h], j, lanes, sv, bv, q0, start)
    _put4(W[h + 1], j, lanes, sv, bv, q1, start)
    _put4(W[h + 2], j, lanes, sv, bv, q2, start)
    _put4(W[h + 3], j, lanes, sv, bv, q3, start)
    _put4(W[h + 4], j, lanes, sv, bv, q4, start)
    _put4(W[h + 5], j, lanes, sv, bv, q5, start)


@njit(inline="always")
def _tile2x4(W, A, rows, D, h, j, lanes, s, sv, bv, zv, start):
    q0 = q1 = (zv, zv, zv, zv)
    for i in range(rows.shape[0]):
        i = rolled(i)
        x, d = A[rows[i]], D[i]
        xs = vload_as(x, j, s), vload_as(x, j + lanes, s), vload_as(x, j + 2 * lanes, s), vload_as(x, j + 3 * lanes, s)
        q0, q1 = _fma4(vsplat(d[h]), xs, q0), _fma4(vsplat(d[h + 1]), xs, q1)
    _put4(W[h], j, lanes, sv, bv, q0, start)
    _put4(W[h + 1], j, lanes, sv, bv, q1, start)


@njit(inline="always")
def _tile1x4(W, A, rows, D, h, j, lanes, s, sv, bv, zv, start):
    q0 = (zv, zv, zv, zv)
    for i in range(rows.shape[0]):
        i = rolled(i)
        x = A[rows[i]]
        xs = vload_as(x, j, s), vload_as(x, j + lanes, s), vload_as(x, j + 2 * lanes, s), vload_as(x, j + 3 * lanes, s)
        q0 = _fma4(vsplat(D[i, h]), xs, q0)
    _put4(W[h], j, lanes, sv, bv, q0, start)


@njit(inline="always")
def _tile6x1(W, A, rows, D, h, j, n, s, sv, bv, zv, start):
    """Six units x one vector of ``n`` lanes (a masked load when ``n`` is short)."""
    r0 = r1 = r2 = r3 = r4 = r5 = zv
    for i in range(rows.shape[0]):
        i = rolled(i)
        x, d = vload_first_as(A[rows[i]], j, n, s), D[i]
        r0, r1, r2 = vfma(vsplat(d[h]), x, r0), vfma(vsplat(d[h + 1]), x, r1), vfma(vsplat(d[h + 2]), x, r2)
        r3, r4, r5 = vfma(vsplat(d[h + 3]), x, r3), vfma(vsplat(d[h + 4]), x, r4), vfma(vsplat(d[h + 5]), x, r5)
    _put1(W[h], j, n, sv, bv, r0, start)
    _put1(W[h + 1], j, n, sv, bv, r1, start)
    _put1(W[h + 2], j, n, sv, bv, r2, start)
    _put1(W[h + 3], j, n, sv, bv, r3, start)
    _put1(W[h + 4], j, n, sv, bv, r4, start)
    _put1(W[h + 5], j, n, sv, bv, r5, start)


@njit(inline="always")
def _tile4x1(W, A, rows, D, h, j, n, s, sv, bv, zv, start):
    """Four units x one vector: 4 chains in flight where 1 x 1 tiles wait on one (the output layer's 10 = 6 + 4)."""
    r0 = r1 = r2 = r3 = zv
    for i in range(rows.shape[0]):
        x, d = vload_first_as(A[rows[i]], j, n, s), D[i]
        r0, r1 = vfma(vsplat(d[h]), x, r0), vfma(vsplat(d[h + 1]), x, r1)
        r2, r3 = vfma(vsplat(d[h + 2]), x, r2), vfma(vsplat(d[h + 3]), x, r3)
    _put1(W[h], j, n, sv, bv, r0, start)
    _put1(W[h + 1], j, n, sv, bv, r1, start)
    _put1(W[h + 2], j, n, sv, bv, r2, start)
    _put1(W[h + 3], j, n, sv, bv, r3, start)


@njit(inline="always")
def _tile1x1(W, A, rows, D, h, j, n, s, sv, bv, zv, start):
    r0 = zv
    for i in range(rows.shape[0]):
        r0 = vfma(vsplat(D[i, h]), vload_first_as(A[rows[i]], j, n, s), r0)
    _put1(W[h], j, n, sv, bv, r0, start)


@njit(inline="always")
def _update_one_row(W, x, D, s, sv, beta, h_lo, h_hi, lanes, start):
    """One example: ``W[h] <- s W[h] + (beta D[0, h]) x``, the coefficient first, as the row-wise kernel does.

    A multiply-add of the coefficient and ``x`` rounds once, so no product
    ``D[0, h] x[j]`` is rounded on its own: batch 1 makes them subnormal
    (a saturated unit's tiny activation times a delta), and a vector with a
    subnormal result is a microcode assist on x86. Measured on the Intel Xeon
    (Emerald Rapids), [784,30,10] eta 3 batch 1: the output layer's update 64
    -> 11 ms of a 270 ms epoch.
    """
    n_in = W.shape[1]
    j = 0
    while j < n_in:  # a vector of x (loaded once) across the units
        n = min(lanes, n_in - j)
        xv = vload_first_as(x, j, n, s)
        for h in range(h_lo, h_hi):
            cv = vsplat(beta * D[0, h])
            if start == FROM_ZERO:
                vstore_first(W[h], j, vmul(cv, xv), n)
            else:
                vstore_first(W[h], j, vfma(cv, xv, _started(vload_first(W[h], j, n), sv, start)), n)
        j += lanes


@njit(cache=True)
def tiled_update_units(W, A, rows, D, s, beta, h_lo, h_hi):
    """``W[h] <- s W[h] + beta sum_i D[i, h] A[rows[i]]`` for ``h_lo <= h < h_hi``; ``s == 0``: W unread.

    Tiles of 6 units x 4 vectors, then 2 x 4 and 1 x 4 for the last units; the
    last columns in tiles of 6 x 1, 4 x 1 and 1 x 1 vectors (masked at the end). A
    last tile of 6 units that repeats a unit (computed, not stored) compiles
    faster but ran 25% slower ([784,30,10], 202-207 against 150-163 GFLOP/s).
    """
    n_in = W.shape[1]
    lanes = 64 // W.itemsize
    sv, bv, zv, start = vsplat(s), vsplat(beta), vzero(s), _start(s)
    if rows.shape[0] == 1:
        _update_one_row(W, A[rows[0]], D, s, sv, beta, h_lo, h_hi, lanes, start)
        return
    j = 0
    while j + 4 * lanes <= n_in:
        h = h_lo
        while h + TILE_UNITS <= h_hi:
            _tile6x4(W, A, rows, D, h, j, lanes, s, sv, bv, zv, start)
            h += TILE_UNITS
        while h + 2 <= h_hi:
            _tile2x4(W, A, rows, D, h, j, lanes, s, sv, bv, zv, start)
            h += 2
        if h < h_hi:
            _tile1x4(W, A, rows, D, h, j, lanes, s, sv, bv, zv, start)
        j += 4 * lanes
    while j < n_in:
        n = min(lanes, n_in - j)
        h = h_lo
        while h + TILE_UNITS <= h_hi:
            _tile6x1(W, A, rows, D, h, j, n, s, sv, bv, zv, start)
            h += TILE_UNITS
        if h + 4 <= h_hi:
            _tile4x1(W, A, rows, D, h, j, n, s, sv, bv, zv, start)
            h += 4
        for h in range(h, h_hi):
            _tile1x1(W, A, rows, D, h, j, n, s, sv, bv, zv, start)
        j += lanes


# -- online SGD: first-layer rows updated, and their dot products with the next input ------------------
@njit(inline="always")
def _stepped(w, o, xv, cv, av, start):
    """``c x + (alpha w[o:o + lanes])``: one multiply-add onto ``alpha w`` rounded first (:func:`_started`)."""
    return vfma(cv, xv, _started(vload(w, o), av, start))


@njit(inline="always")
def _step_two(w, o0, o1, x, x_next, j, c0v, c1v, av, start, q0, q1):
    """The vectors of both rows (at ``o0 + j`` and ``o1 + j`` in ``w``) stepped and stored, and added into
    their dot products ``q0``, ``q1`` with ``x_next[j:j + lanes]``. Both rows are loaded before either is
    stored, so ``o0 == o1`` steps one row (:func:`tiled_update_forward_row`)."""
    xv, nv = vload(x, j), vload(x_next, j)
    v0, v1 = _stepped(w, o0 + j, xv, c0v, av, start), _stepped(w, o1 + j, xv, c1v, av, start)
    vstore(w, o0 + j, v0)
    vstore(w, o1 + j, v1)
    return vfma(v0, nv, q0), vfma(v1, nv, q1)


@njit(inline="always")
def tiled_update_forward_rows(w, o0, o1, n_in, x, c0, c1, alpha_w, x_next):
    """``w_r <- alpha_w w_r + c_r x`` in place, and the new ``w_r . x_next``, for the rows ``w[o0:o0 + n_in]`` and
    ``w[o1:o1 + n_in]`` of a flat (contiguous) weight matrix.

    Online SGD's fused first-layer step (see
    :func:`mbtrain.fast_layers.first_layer_update_forward`). Each weight is
    one multiply-add of ``c x[j]`` onto ``alpha_w w[j]`` (rounded first;
    exact when ``alpha_w`` is 1), so no product ``c x[j]`` is rounded on its
    own: left to LLVM, ``alpha_w w + c x`` kept that product apart, a
    subnormal result for a tiny ``c`` and a microcode assist for each vector
    (Intel Xeon, Emerald Rapids: [784,100] rows with ``c`` 1e-37, 3 us each
    instead of 0.07). Two rows share each load of ``x`` and ``x_next``: the
    pass streams ``W`` from L2, and the rows' loads and stores were the limit
    (same machine, 64-byte aligned rows, the whole
    :func:`mbtrain.fast_layers.first_layer_update_forward`: [784,100] 9.0 ->
    6.6-6.7 us a pass, 7.6-8.0 while the last odd vector was an ``if``, not a
    loop; four rows at a time no faster). Each row's dot
    product is in two accumulators (even and odd vectors), summed the same
    way for one row (:func:`tiled_update_forward_row`) as for two. ``n_in``
    is a whole number of vectors (the caller checks it). Offsets into one
    flat array, not row views: a view per row cost reference counting calls.
    Returns ``(dot0, dot1)``.
    """
    c0v, c1v, av, zv = vsplat(c0), vsplat(c1), vsplat(alpha_w), vzero(c0)
    if alpha_w != 1:  # two loops, each with its constant: inlined, LLVM kept the test in the loop
        p0, q0, p1, q1 = _rows_loop(w, o0, o1, n_in, x, x_next, c0v, c1v, av, zv, FROM_SCALED_W)
    else:
        p0, q0, p1, q1 = _rows_loop(w, o0, o1, n_in, x, x_next, c0v, c1v, av, zv, FROM_W)
    s0, t0, s1, t1 = vsum4(p0, q0, p1, q1)
    return s0 + t0, s1 + t1


@njit(inline="always")
def _rows_loop(w, o0, o1, n_in, x, x_next, c0v, c1v, av, zv, start):
    """The loop of :func:`tiled_update_forward_rows`; the four accumulators (row 0 even and odd vectors, row 1)."""
    lanes = 64 // w.itemsize
    p0 = q0 = p1 = q1 = zv
    j = 0
    while j + 2 * lanes <= n_in:
        p0, p1 = _step_two(w, o0, o1, x, x_next, j, c0v, c1v, av, start, p0, p1)
        q0, q1 = _step_two(w, o0, o1, x, x_next, j + lanes, c0v, c1v, av, start, q0, q1)
        j += 2 * lanes
    while j < n_in:  # the last odd vector; as an if, the whole pass ran 15-20% slower (it compiles otherwise)
        p0, p1 = _step_two(w, o0, o1, x, x_next, j, c0v, c1v, av, start, p0, p1)
        j += lanes
    return p0, q0, p1, q1


@njit(inline="always")
def tiled_update_forward_row(w, o, n_in, x, c, alpha_w, x_next):
    """:func:`tiled_update_forward_rows` for one row: the pair kernel given the row twice.

    Both vectors of a step are loaded before either is stored, so the row is
    stepped once (the same value stored twice) and rounded as in a pair; it
    runs for a last odd row or a subnormal coefficient's, where doing its
    arithmetic twice costs nothing that matters.
    """
    return tiled_update_forward_rows(w, o, o, n_in, x, c, c, alpha_w, x_next)[0]


# -- the biases: b <- s b + beta sum_i D[i] --------------------------------------------------------------
@njit(cache=True)
def tiled_bias_units(b, D, s, beta, h_lo, h_hi):
    """``b[h] <- s b[h] + beta sum_i D[i, h]`` for ``h_lo <= h < h_hi`` (``s == 0``: ``b`` unread).

    Two vectors of units at a time, summed along the rows in registers, in the
    order of a scalar loop over the rows (so the same values). A loop over the
    rows with the units innermost read and wrote ``b`` in memory once a row
    (``b`` may alias ``D`` for LLVM): 2-3 us a batch of 10 rows.
    """
    m, lanes = D.shape[0], 64 // b.itemsize
    sv, bv, start = vsplat(s), vsplat(beta), _start(s)
    h = h_lo
    while h < h_hi:
        n0 = min(lanes, h_hi - h)
        n1 = min(lanes, max(0, h_hi - h - lanes))
        q0 = vzero(s) if start == FROM_ZERO else _started(vload_first(b, h, n0), sv, start)
        q1 = vzero(s) if start == FROM_ZERO else _started(vload_first(b, h + lanes, n1), sv, start)
        for i in range(m):
            d = D[i]
            q0, q1 = vfma(bv, vload_first(d, h, n0), q0), vfma(bv, vload_first(d, h + lanes, n1), q1)
        vstore_first(b, h, q0, n0)
        vstore_first(b, h + lanes, q1, n1)
        h += 2 * lanes


# -- the forward pass: Z = A W^T + b, in tiles of 6 rows x 4 units --------------------------------------
@njit(inline="always")
def _store_sums4(Z, i, h, b, q):
    s0, s1, s2, s3 = vsum4(q[0], q[1], q[2], q[3])
    Z[i, h], Z[i, h + 1], Z[i, h + 2], Z[i, h + 3] = s0 + b[h], s1 + b[h + 1], s2 + b[h + 2], s3 + b[h + 3]


@njit(cache=True)
def tiled_forward_rows(Z, A, rows, W, b, h_lo, h_hi):
    """``Z[i, h] = A[rows[i]] . W[h] + b[h]`` for every row ``i < m`` and ``h_lo <= h < h_hi``.

    ``n_in`` a multiple of the lanes. Tiles of 6 rows x 4 units, then 6 rows x
    1 unit for the units left over (``[784,30,10]``'s last 2 of 30 ran
    row-wise at 70 GFLOP/s: 2.2 of the forward's 15 ms an epoch); the last
    ``m % 6`` rows in tiles of 4 rows (:func:`_forward_last_rows`). The sums
    run along ``n_in`` in the vector lanes and across them at the end, the
    same for every tile: a row's values do not depend on where it sits in
    the batch.
    """
    m, n_in = rows.shape[0], W.shape[1]
    lanes = 64 // W.itemsize
    zv = vzero(W[0, 0])
    for i in range(0, m - TILE_ROWS + 1, TILE_ROWS):
        x0, x1, x2 = A[rows[i]], A[rows[i + 1]], A[rows[i + 2]]
        x3, x4, x5 = A[rows[i + 3]], A[rows[i + 4]], A[rows[i + 5]]
        for h in range(h_lo, h_hi - 3, 4):
            w0, w1, w2, w3 = W[h], W[h + 1], W[h + 2], W[h + 3]
            q0 = q1 = q2 = q3 = q4 = q5 = (zv, zv, zv, zv)
            for j in range(0, n_in, lanes):
                ws = vload(w0, j), vload(w1, j), vload(w2, j), vload(w3, j)
                like = w0[0]
                q0, q1 = _fma4(vload_as(x0, j, like), ws, q0), _fma4(vload_as(x1, j, like), ws, q1)
                q2, q3 = _fma4(vload_as(x2, j, like), ws, q2), _fma4(vload_as(x3, j, like), ws, q3)
                q4, q5 = _fma4(vload_as(x4, j, like), ws, q4), _fma4(vload_as(x5, j, like), ws, q5)
            _store_sums4(Z, i, h, b, q0)
            _store_sums4(Z, i + 1, h, b, q1)
            _store_sums4(Z, i + 2, h, b, q2)
            _store_sums4(Z, i + 3, h, b, q3)
            _store_sums4(Z, i + 4, h, b, q4)
            _store_sums4(Z, i + 5, h, b, q5)
        h = h_lo + (h_hi - h_lo) // 4 * 4
        for h in range(h, h_hi):  # the last units one at a time, for the same 6 rows
            w = W[h]
            r0 = r1 = r2 = r3 = r4 = r5 = zv
            for j in range(0, n_in, lanes):
                wj, like = vload(w, j), w[0]
                r0, r1 = vfma(vload_as(x0, j, like), wj, r0), vfma(vload_as(x1, j, like), wj, r1)
                r2, r3 = vfma(vload_as(x2, j, like), wj, r2), vfma(vload_as(x3, j, like), wj, r3)
                r4, r5 = vfma(vload_as(x4, j, like), wj, r4), vfma(vload_as(x5, j, like), wj, r5)
            Z[i, h], Z[i + 1, h], Z[i + 2, h] = vsum(r0) + b[h], vsum(r1) + b[h], vsum(r2) + b[h]
            Z[i + 3, h], Z[i + 4, h], Z[i + 5, h] = vsum(r3) + b[h], vsum(r4) + b[h], vsum(r5) + b[h]
    i = m - m % TILE_ROWS
    while i < m:
        n = min(LAST_ROWS, m - i)
        x0, x1 = A[rows[i]], A[rows[i + min(1, n - 1)]]
        x2, x3 = A[rows[i + min(2, n - 1)]], A[rows[i + min(3, n - 1)]]
        _forward_last_rows(Z, i, n, x0, x1, x2, x3, W, b, h_lo, h_hi, lanes, zv)
        i += n


@njit(inline="always")
def _forward_last_rows(Z, i, n, x0, x1, x2, x3, W, b, h_lo, h_hi, lanes, zv):
    """Rows ``i .. i + n - 1`` (``n <= 4``, rows ``x0 .. x3``) of :func:`tiled_forward_rows`, in tiles of 4 x 4 units.

    Where ``n < 4`` the rows past ``n`` repeat the last one (the caller's
    ``x``), computed and not stored. Row-wise (LLVM's vectors over 4 x 4
    scalar sums), the 4 rows that batches of 10, 100 and 1000 leave over
    ran at a third of the tiles' rate: 40% of a batch-10 forward.
    """
    n_in = W.shape[1]
    for h in range(h_lo, h_hi - 3, 4):
        w0, w1, w2, w3 = W[h], W[h + 1], W[h + 2], W[h + 3]
        q0 = q1 = q2 = q3 = (zv, zv, zv, zv)
        for j in range(0, n_in, lanes):
            ws, like = (vload(w0, j), vload(w1, j), vload(w2, j), vload(w3, j)), w0[0]
            q0, q1 = _fma4(vload_as(x0, j, like), ws, q0), _fma4(vload_as(x1, j, like), ws, q1)
            q2, q3 = _fma4(vload_as(x2, j, like), ws, q2), _fma4(vload_as(x3, j, like), ws, q3)
        _store_sums4(Z, i, h, b, q0)
        if n > 1:
            _store_sums4(Z, i + 1, h, b, q1)
        if n > 2:
            _store_sums4(Z, i + 2, h, b, q2)
        if n > 3:
            _store_sums4(Z, i + 3, h, b, q3)
    for h in range(h_lo + (h_hi - h_lo) // 4 * 4, h_hi):
        w = W[h]
        r0 = r1 = r2 = r3 = zv
        for j in range(0, n_in, lanes):
            wj, like = vload(w, j), w[0]
            r0, r1 = vfma(vload_as(x0, j, like), wj, r0), vfma(vload_as(x1, j, like), wj, r1)
            r2, r3 = vfma(vload_as(x2, j, like), wj, r2), vfma(vload_as(x3, j, like), wj, r3)
        Z[i, h] = vsum(r0) + b[h]
        if n > 1:
            Z[i + 1, h] = vsum(r1) + b[h]
        if n > 2:
            Z[i + 2, h] = vsum(r2) + b[h]
        if n > 3:
            Z[i + 3, h] = vsum(r3) + b[h]


# -- the forward pass of a narrow layer (the output layer): a vector of its units per row ----------------
NARROW_ROWS = 8


@njit(inline="always")
def _narrow_fma8(WT, xs, j, q):
    """``q[r] + xs[r][j] * WT[j]`` for the 8 rows of a narrow tile."""
    w, like = vload(WT[j], 0), WT[0, 0]
    return (vfma(vsplat_as(xs[0][j], like), w, q[0]), vfma(vsplat_as(xs[1][j], like), w, q[1]),
            vfma(vsplat_as(xs[2][j], like), w, q[2]), vfma(vsplat_as(xs[3][j], like), w, q[3]),
            vfma(vsplat_as(xs[4][j], like), w, q[4]), vfma(vsplat_as(xs[5][j], like), w, q[5]),
            vfma(vsplat_as(xs[6][j], like), w, q[6]), vfma(vsplat_as(xs[7][j], like), w, q[7]))


@njit(cache=True)
def tiled_narrow_forward_rows(Z, A, rows, W, b, h_lo, h_hi):
    """``Z[i, h] = A[rows[i]] . W[h] + b[h]`` for at most one vector of units (``h_hi - h_lo <= lanes``).

    The output layer's forward: ``Z[i, h_lo:h_hi]`` is one vector, ``b`` plus
    ``A[rows[i], j]`` times row ``j`` of ``W``'s transpose, summed over ``n_in``
    (a transposed copy per call: ``n_in x lanes`` values). Tiles of 8 rows keep
    8 chains of multiply-adds in flight. The sums along ``n_in`` of the tuple
    tiles run in a vector loop whose last ``n_in % lanes`` steps are scalar: a
    [784,30,10] epoch's output layer took 1.7 ms that way (``n_in`` 30).
    """
    m, n_in, n = rows.shape[0], W.shape[1], h_hi - h_lo
    lanes = 64 // W.itemsize
    WT = np.zeros((n_in, lanes), dtype=W.dtype)
    for h in range(n):
        for j in range(n_in):
            WT[j, h] = W[h_lo + h, j]
    bias = vload_first(b, h_lo, n)
    i = 0
    while i + NARROW_ROWS <= m:
        xs = (A[rows[i]], A[rows[i + 1]], A[rows[i + 2]], A[rows[i + 3]],
              A[rows[i + 4]], A[rows[i + 5]], A[rows[i + 6]], A[rows[i + 7]])
        q = (bias, bias, bias, bias, bias, bias, bias, bias)
        for j in range(n_in):
            q = _narrow_fma8(WT, xs, j, q)
        for r in range(NARROW_ROWS):
            vstore_first(Z[i + r], h_lo, q[r], n)
        i += NARROW_ROWS
    for i in range(i, m):
        x, q = A[rows[i]], bias
        for j in range(n_in):
            q = vfma(vsplat_as(x[j], WT[0, 0]), vload(WT[j], 0), q)
        vstore_first(Z[i], h_lo, q, n)



def minus_one_like(x):
    """-1 in the type of scalar ``x`` (a literal ``-1`` would be int64 and widen float32 arithmetic)."""
    return type(x)(-1)


@overload(minus_one_like, inline="always")
def _ol_minus_one_like(x):
    constant = as_dtype(x).type(-1)
    return lambda x: constant


# -- BP2: D_prev = (D W) * A_prev * (1 - A_prev), along the units of the layer below ---------------------
@njit(inline="always")
def _times_sigmoid_prime(q, a, minus_one):
    """``q * (a - a a)``: the error times sigma' of the layer's activation ``a``."""
    return vmul(q, vfma(vmul(a, minus_one), a, a))


@njit(inline="always")
def _delta_out4(D_prev, A_prev, i, j, lanes, q, minus_one):
    """``D_prev[i, j + v lanes...] = q[v] * (a - a a)`` for 4 whole vectors."""
    a_row, d_row = A_prev[i], D_prev[i]
    for v in range(4):
        vstore(d_row, j + v * lanes, _times_sigmoid_prime(q[v], vload(a_row, j + v * lanes), minus_one))


@njit(inline="always")
def _wide_delta_row(D_prev, D, W, A_prev, i, lanes, zv, minus_one):
    """Row ``i`` of BP2 over its whole 4-vector blocks of ``n_in``; returns where they end."""
    n_in, n_out = A_prev.shape[1], W.shape[0]
    d = D[i]
    j = 0
    while j + 4 * lanes <= n_in:
        q = (zv, zv, zv, zv)
        for h in range(n_out):
            w = W[h]
            q = _fma4(vsplat(d[h]), (vload(w, j), vload(w, j + lanes), vload(w, j + 2 * lanes),
                                     vload(w, j + 3 * lanes)), q)
        _delta_out4(D_prev, A_prev, i, j, lanes, q, minus_one)
        j += 4 * lanes
    return j


@njit(inline="always")
def _narrow_delta_out(D_prev, A_prev, i, j, n, r, minus_one):
    vstore_first(D_prev[i], j, _times_sigmoid_prime(r, vload_first(A_prev[i], j, n), minus_one), n)


@njit(cache=True)
def tiled_hidden_delta_rows(D_prev, D, W, A_prev):
    """BP2 for every row: ``D_prev[i] = (D[i] @ W) * A_prev[i] * (1 - A_prev[i])``.

    ``W`` is the layer above, ``(n_out, n_in)``; a row of ``D_prev`` is built in
    registers, 4 vectors of ``n_in`` at a time, as ``n_out`` multiply-adds of the
    rows of ``W``, and multiplied by sigma' once. The vectors left over (the
    last masked) run for 4 rows at a time: one row's chain of ``n_out``
    dependent multiply-adds kept BP2 of [784,30,10] (``n_in`` 30: 2 vectors) at
    latency, 1.05 ms of an epoch.
    """
    m, n_in, n_out = A_prev.shape[0], A_prev.shape[1], W.shape[0]
    lanes = 64 // W.itemsize
    zv = vzero(W[0, 0])
    minus_one = vsplat(minus_one_like(W[0, 0]))
    i = 0
    while i + 4 <= m:
        for r in range(4):
            j = _wide_delta_row(D_prev, D, W, A_prev, i + r, lanes, zv, minus_one)
        d0, d1, d2, d3 = D[i], D[i + 1], D[i + 2], D[i + 3]
        while j < n_in:
            n = min(lanes, n_in - j)
            r0 = r1 = r2 = r3 = zv
            for h in range(n_out):
                w = vload_first(W[h], j, n)
                r0, r1 = vfma(vsplat(d0[h]), w, r0), vfma(vsplat(d1[h]), w, r1)
                r2, r3 = vfma(vsplat(d2[h]), w, r2), vfma(vsplat(d3[h]), w, r3)
            _narrow_delta_out(D_prev, A_prev, i, j, n, r0, minus_one)
            _narrow_delta_out(D_prev, A_prev, i + 1, j, n, r1, minus_one)
            _narrow_delta_out(D_prev, A_prev, i + 2, j, n, r2, minus_one)
            _narrow_delta_out(D_prev, A_prev, i + 3, j, n, r3, minus_one)
            j += lanes
        i += 4
    for i in range(i, m):
        j = _wide_delta_row(D_prev, D, W, A_prev, i, lanes, zv, minus_one)
        while j < n_in:
            n = min(lanes, n_in - j)
            r = zv
            for h in range(n_out):
                r = vfma(vsplat(D[i, h]), vload_first(W[h], j, n), r)
            _narrow_delta_out(D_prev, A_prev, i, j, n, r, minus_one)
            j += lanes
