"""Fast numba kernels for the numba backend: whole batches and epochs in one jitted call.

The plain kernels in :mod:`mbtrain.kernels` are the specification; these compute
the same maths (tested against them in ``tests/test_kernels.py``) in the same
flat parameter layout, so ``net.params`` always holds the book's weights. The
per-layer work is done by :mod:`mbtrain.fast_layers`.

Shape legend::

    m      rows in the mini-batch            X      (n_samples, n_0) data
    rows   (m,) int64 row indices into X     order  (n_rows,) int64 rows of an epoch, in order
    net    Net (mbtrain._kernel_api): flat params, int64 sizes [n_0, ..., n_L], cost id, one
    work   Work (mbtrain._kernel_api): batch_size * sizes[l] activations and deltas per layer l >= 1

One jitted call per epoch, and two parallel variants (``parallel=True``) for
large batches. The unit split (compiled from the same plain function as the
serial epoch): rows split across threads for the forward pass and the deltas,
weight rows split across threads for the update, so no two threads ever write
the same value and there is no reduction buffer. The row split
(:func:`_sgd_epoch_rows`): every thread keeps to its own rows throughout and
sums their gradient into a buffer of its own, and the threads then step their
shares of the parameters from the sum; no thread reads the input rows another
gathered. Scalars arrive typed in the dtype of the parameters (see
:mod:`mbtrain.fast_layers`).

numba checks a kernel's on-disk cache against the kernel's own source file
only, and these kernels compile in code of :mod:`mbtrain.fast_layers`: so this
file records the SHA-256 of ``fast_layers.py`` it was last compiled against
(``FAST_LAYERS_SHA256``). ``tests/test_kernels.py`` fails while it is out of
date, and updating it changes this file, which discards the stale cache. The
vector operations of :mod:`mbtrain.fast_tiles` that the byte decode compiles in
are covered the same way: ``fast_layers.py`` records the SHA-256 of
``fast_tiles.py``. The module calls nothing else of mbtrain; the helpers it
shares with :mod:`mbtrain.kernels` are copies.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils, config
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array

from ._kernel_api import ADAM_KIND, DIVERGED_AT_UNKNOWN_BATCH, FINITE, SOFTMAX, numba_variant
from .fast_tiles import WIDE_VECTORS, vfma, vload_as, vmul, vsplat, vstore
from .fast_layers import (
    FORWARD_UNITS, add_partials, dense_forward_rows, dense_update_rows, first_layer_update_forward,
    hidden_delta_rows, optimizer_step, output_delta_rows, range_finite, sigmoid_rows, softmax_rows,
)

#: SHA-256 of fast_layers.py these kernels were last compiled against (see above).
FAST_LAYERS_SHA256 = "9e75b4b221b48e6bc2862536a14d71cc925d32f26370a628de6f1814da66a1be"


#: Integer and boolean arguments spelled as typed constants, never as literals: numba compiles a
#: callee once more for each literal argument (a literal ``0`` is a type of its own), so the online,
#: serial, parallel and gradient kernels would each bring their own copies of the shared layer
#: functions (measured: 5 s more on a cold cache for bench --quick's three epoch kernels).
ZERO, ONE = np.int64(0), np.int64(1)
UNCHECKED, CHECKED = np.bool_(False), np.bool_(True)
#: The vector tiles of :mod:`mbtrain.fast_tiles` (on AVX-512) on every thread count. For a session they
#: ran on one thread only, after two-thread epochs had measured 1.5x slower with them: that was a copy
#: of the update kernel whose row loop LLVM had unrolled into spills (see ``fast_tiles._rolled``), in
#: play or not by the order the kernels were loaded. With the loops kept rolled, two threads with the
#: tiles against without (same process, alternating, Zen 5): [784,30,10] batch 100 18.3 against 23.2
#: ms an epoch, [784,100,10] CE batch 100 45.2 against 56.0.
TILES = np.bool_(True)
#: Whether these kernels run as plain Python (``NUMBA_DISABLE_JIT``, read and never changed here).
PLAIN_PYTHON = bool(config.DISABLE_JIT)
#: How many rows ahead of the one it copies :func:`gather_rows` prefetches.
ROWS_AHEAD = 4
#: How many of the next batch's rows the batch epochs prefetch before each update, so the next gather
#: does not start on a cache miss.
BATCH_AHEAD_ROWS = 16
#: Rows of a row-split share that go through gather, forward, back and gradient together
#: (:func:`gradient_rows`): 120 rows of 784 float32 inputs are 376 KB, in L2 with their activations,
#: and a multiple of the forward tiles' 6 rows.
CHUNK_ROWS = 120
#: Rows of a thread's share of a batch: a multiple of this. It was the forward's tuple tiles' 4 rows,
#: which split batch 100 in 52 and 48; in 50 and 50, [784,30,10] two threads, alternating processes
#: (Zen 4, fastest epochs): 37.6-37.7 against 38.1-46.0 ms an epoch.
ROWS_ALIGN = 2


# -- layout helpers ---------------------------------------------------------------------------------
def matrix_view(flat, offset, rows, cols):
    """``flat[offset:offset + rows * cols]`` as a C-contiguous ``(rows, cols)`` view.

    Compiled, the view is built directly (the intrinsic below): numba's
    ``reshape`` calls a C helper, about 18 ns a view, and the epochs take
    several views a batch. With batch size 1 the layers above the first
    (views and calls) took half of a [784,30,10] epoch.
    """
    return flat[offset:offset + rows * cols].reshape((rows, cols))


@intrinsic
def _matrix_view(typingctx, flat, offset, rows, cols):
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    matrix = types.Array(flat.dtype, 2, "C")

    def codegen(context, builder, sig, args):
        source = context.make_array(sig.args[0])(context, builder, args[0])
        offset, rows, cols = (context.cast(builder, value, ty, types.intp) for value, ty in zip(args[1:], sig.args[1:]))
        view = context.make_array(matrix)(context, builder)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(flat.dtype)))
        populate_array(view, data=builder.gep(source.data, [offset]), shape=[rows, cols],
                       strides=[builder.mul(cols, itemsize), itemsize], itemsize=itemsize, meminfo=source.meminfo)
        return impl_ret_borrowed(context, builder, matrix, view._getvalue())  # shares (and holds) flat's memory
    return matrix(flat, offset, rows, cols), codegen


@overload(matrix_view, inline="always")
def _ol_matrix_view(flat, offset, rows, cols):
    if isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C":
        return lambda flat, offset, rows, cols: _matrix_view(flat, offset, rows, cols)
    return None


@njit(cache=True)
def layer_views(flat, sizes, l):
    """``(W_l, b_l)`` views into a flat parameter-shaped vector."""
    offset = 0
    for k in range(l):
        offset += sizes[k + 1] * sizes[k] + sizes[k + 1]
    end_w = offset + sizes[l + 1] * sizes[l]
    return matrix_view(flat, offset, sizes[l + 1], sizes[l]), flat[end_w:end_w + sizes[l + 1]]


@njit(cache=True)
def work_view(work, sizes, batch_size, l, m):
    """``(m, sizes[l])`` view of layer ``l >= 1`` in a work buffer of ``batch_size`` rows."""
    offset = 0
    for k in range(1, l):
        offset += batch_size * sizes[k]
    return matrix_view(work, offset, m, sizes[l])


@njit(cache=True, error_model="numpy")  # numpy's error model: the division in decode_row vectorizes
def gather_rows(out, X, codes, scale, rows, r_lo, r_hi):
    """``out[i] = X[rows[i]]`` for ``r_lo <= i < r_hi``: a batch's input rows, where the first layer reads them.

    ``out`` (the work space's ``inputs``) starts on a 64-byte boundary, and so
    does every row when a row's bytes are a multiple of 64 (784 pixels in
    float32 or float64 are): the first layer's vector loads each touch one
    cache line, whatever the alignment of the caller's ``X`` (numpy's is 16
    bytes). Copying ``m x n_in`` values costs about 1% of the batch's
    ``4 m n_in n_1`` FLOPs, and made a [784,30,10] epoch 1.2-1.35x faster.

    With ``codes`` (not empty), ``X`` is given as bytes: row ``r`` of ``X`` is
    ``codes[r] / scale`` exactly (see :func:`byte_codes`), a quarter of the
    memory traffic of float32 rows.

    The rows of a shuffled batch are scattered over memory, so each costs a
    trip to DRAM the hardware prefetcher cannot foresee: the row
    ``ROWS_AHEAD`` places on is prefetched while this one is copied.
    """
    for i in range(r_lo, r_hi):
        if i + ROWS_AHEAD < r_hi:
            prefetch_input(X, codes, rows[i + ROWS_AHEAD])
        if codes.shape[0] > 0:
            decode_row(out[i], codes[rows[i]], scale)
        else:
            copy_row(out[i], X[rows[i]])


@njit(cache=True)
def prefetch_input(X, codes, r):
    """Prefetch input row ``r``, from ``codes`` when it has rows (see :func:`gather_rows`), else from ``X``."""
    if codes.shape[0] > 0:
        prefetch_row(codes[r])
    else:
        prefetch_row(X[r])


def prefetch(row, j):
    """Ask the CPU to bring the cache line of ``row[j]`` (a 1-D array) into cache for reading soon.

    A hint: it never faults and changes no value, so in plain Python (``NUMBA_DISABLE_JIT``) it does
    nothing; compiled, it is one ``llvm.prefetch`` (see the ``@overload`` below).
    """


@intrinsic
def _prefetch_line(typingctx, row, j):
    """``llvm.prefetch`` of the address of ``row[j]``: read (0), keep in every cache level (3), data (1)."""
    if not (isinstance(row, types.Array) and row.ndim == 1 and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        array = context.make_array(sig.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        pointer = cgutils.get_item_pointer(context, builder, sig.args[0], array, [index], wraparound=False)
        bytes_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [bytes_pointer, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(hint, [builder.bitcast(pointer, bytes_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(row, j), codegen


@overload(prefetch, inline="always")
def _prefetch(row, j):
    def implementation(row, j):
        _prefetch_line(row, j)
    return implementation


@njit(cache=True)
def prefetch_row(row):
    """Prefetch every cache line of ``row``."""
    step = max(1, 64 // row.itemsize)
    for j in range(0, row.shape[0], step):
        prefetch(row, j)
    if row.shape[0] > 0:
        prefetch(row, row.shape[0] - 1)


@njit(cache=True)
def prefetch_targets(Y, rows, r_lo, r_hi):
    """Prefetch the targets of batch rows ``r_lo <= i < r_hi``: labels ``Y[rows[i]]``, or rows of a target matrix.

    Like the input rows, a shuffled batch's targets are scattered over memory
    (50,000 labels are 400 KB, which the epoch's other arrays push out of L2):
    without this, BP1 waited on one cache miss per row, 2.2 ms of a
    [784,30,10] epoch of 50,000 rows (``benchmarks/epoch_pieces.py``). Issued
    before the gather, they have arrived by the time the forward pass is done.
    """
    for i in range(r_lo, r_hi):
        if Y.ndim == 1:  # numba prunes the branch on the type of Y
            prefetch(Y, rows[i])
        else:
            prefetch_row(Y[rows[i]])


@njit(cache=True)
def prefetch_batch(X, codes, Y, rows):
    """Prefetch the input rows and targets of ``rows``: the first rows of the next batch (see :data:`BATCH_AHEAD_ROWS`)."""
    for i in range(rows.shape[0]):
        prefetch_input(X, codes, rows[i])
    prefetch_targets(Y, rows, ZERO, rows.shape[0])


@njit(cache=True)
def copy_row(to, source):
    """``to[:] = source`` (a loop: an array assignment compiles numba's shape checks)."""
    for j in range(to.shape[0]):
        to[j] = source[j]


def fused_multiply_add(a, b, c):
    """``a * b + c`` rounded once (IEEE fma), for float32 or float64 scalars of one type.

    Plain Python rounds twice (what ``NUMBA_DISABLE_JIT`` runs); compiled, it is
    ``llvm.fma``, which is the rounded-once fma on every target (an instruction
    where the CPU has one, a correctly rounded library call where not), and
    which LLVM vectorizes in a loop.
    """
    return a * b + c


@intrinsic
def _fused_multiply_add(typingctx, a, b, c):
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        lane = context.get_value_type(sig.args[0])
        name = "llvm.fma.f32" if sig.args[0] == types.float32 else "llvm.fma.f64"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lane, [lane, lane, lane]), name)
        return builder.call(fma, list(args))
    return a(a, b, c), codegen


@overload(fused_multiply_add, inline="always")
def _ol_fused_multiply_add(a, b, c):
    if isinstance(a, types.Float) and a == b == c:
        return lambda a, b, c: _fused_multiply_add(a, b, c)
    return None


@njit(cache=True, error_model="numpy")
def decode_row(to, source, scale):
    """``to[:] = source / scale``: byte codes to floats, as the data sets scale them (divided in ``to``'s dtype).

    As ``k r + k r_lo`` in one fused multiply-add (:func:`fused_multiply_add`),
    where ``r = 1 / scale`` rounded and ``r_lo`` is what that rounding lost
    (``(1 - r scale) / scale``, from the exact residual): the correctly rounded
    ``k / scale`` for every code ``k`` and each of ``BYTE_SCALES`` in float32
    and float64 (all 256 codes checked in ``tests/test_byte_rows.py``; for
    255 the binary digits of ``k / 255`` repeat every 8 places, so no quotient
    lies near a rounding midpoint), without a vector division. On AVX-512 in
    explicit 512-bit vectors (:mod:`mbtrain.fast_tiles`: 16 bytes loaded as 16
    float32 lanes, a multiply and a multiply-add), where LLVM had chosen
    256-bit vectors for the loop. Against the quotient corrected by its
    residual (two multiply-adds after the multiply), Intel Xeon (Emerald
    Rapids), one thread, [784,30,10] batch 100: the gather of an epoch
    (``benchmarks/epoch_pieces.py``, ``gather bytes``) 10.3-11.0 -> 9.4-9.9 ms.
    """
    if PLAIN_PYTHON:  # where fused multiply-adds round twice (see fused_multiply_add): the quotient itself
        for j in range(to.shape[0]):
            to[j] = source[j]
            to[j] = to[j] / scale
        return
    one = scale / scale
    r = one / scale
    r_lo = fused_multiply_add(-r, scale, one) / scale
    j = 0
    if WIDE_VECTORS:
        lanes = 64 // to.itemsize
        rv, lv = vsplat(r), vsplat(r_lo)
        while j + lanes <= to.shape[0]:
            k = vload_as(source, j, r)
            vstore(to, j, vfma(k, rv, vmul(k, lv)))
            j += lanes
    for j in range(j, to.shape[0]):
        to[j] = source[j]
        k = to[j]
        to[j] = fused_multiply_add(k, r, k * r_lo)


@njit(cache=True, error_model="numpy")
def byte_codes(X, scale, codes):
    """Whether every value of ``X`` is ``k / scale`` for an integer ``0 <= k <= 255``, with ``k`` into ``codes``.

    Exactly: ``k / scale``, divided in ``X``'s dtype as :func:`decode_row`
    does, must equal the value bit for bit. Stops at the first value that is
    not (NaN, a negative, a fraction, a value above ``255 / scale``).
    """
    n, f = X.shape
    top = scale - scale + 255
    for i in range(n):
        row, out = X[i], codes[i]
        bad = False
        for j in range(f):
            k = np.rint(row[j] * scale)
            k = k if k >= 0 and k <= top else scale - scale  # NaN and the out of range fail the check below
            bad |= k / scale != row[j]
            out[j] = np.uint8(k)
        if bad:
            return False
    return True


@njit(inline="always")
def share(n, part, n_parts, align):
    """``(lo, hi)``: share ``part`` of ``n_parts`` of ``range(n)``, rounded up to multiples of ``align``."""
    step = ((n + n_parts - 1) // n_parts + align - 1) // align * align
    lo = min(part * step, n)
    return lo, min(lo + step, n)


# -- one batch: forward, deltas, update --------------------------------------------------------------
@njit(cache=True)
def forward_rows(net, work, X, rows, r_lo, r_hi, z_out, first_layer, tiles):
    """Forward pass of batch rows ``r_lo <= i < r_hi`` (``X[rows[i]]``) into ``work.acts``.

    ``z_out`` (``len(rows)`` rows, or none) receives the output layer's weighted
    input, which the loss needs. Layers below ``first_layer`` (0: none) are taken
    as computed (the online epoch computes the first one in its fused update pass).
    """
    sizes, m, L, bs = net.sizes, rows.shape[0], net.sizes.shape[0] - 1, work.index.shape[0]
    for l in range(first_layer, L):
        W, b = layer_views(net.params, sizes, l)
        Z = work_view(work.acts, sizes, bs, l + 1, m)[r_lo:r_hi]
        if l == 0:
            dense_forward_rows(Z, X, rows[r_lo:r_hi], W, b, ZERO, W.shape[0], tiles)
        else:
            A = work_view(work.acts, sizes, bs, l, m)
            dense_forward_rows(Z, A, work.index[r_lo:r_hi], W, b, ZERO, W.shape[0], tiles)
        if l == L - 1 and z_out.shape[0] > 0:  # (a loop: an array assignment compiles numba's shape errors)
            for i in range(r_hi - r_lo):
                for j in range(Z.shape[1]):
                    z_out[r_lo + i, j] = Z[i, j]
        if l == L - 1 and net.cost_id == SOFTMAX:
            softmax_rows(Z)
        else:
            sigmoid_rows(Z, net.one)


@njit(cache=True)
def deltas_rows(net, work, Y, rows, r_lo, r_hi, tiles):
    """BP1 and BP2 for batch rows ``r_lo <= i < r_hi``: every layer's delta, from the old weights."""
    sizes, m, L, bs = net.sizes, rows.shape[0], net.sizes.shape[0] - 1, work.index.shape[0]
    D = work_view(work.deltas, sizes, bs, L, m)[r_lo:r_hi]
    output_delta_rows(D, work_view(work.acts, sizes, bs, L, m)[r_lo:r_hi], Y, rows[r_lo:r_hi], net.cost_id, net.one)
    for l in range(L - 1, 0, -1):
        D_prev = work_view(work.deltas, sizes, bs, l, m)[r_lo:r_hi]
        A_prev = work_view(work.acts, sizes, bs, l, m)[r_lo:r_hi]
        hidden_delta_rows(D_prev, D, layer_views(net.params, sizes, l)[0], A_prev, tiles)
        D = D_prev


@njit(cache=True)
def update_units(out, net, work, X, rows, part, n_parts, alpha_w, alpha_b, beta, checked, first_layer, tiles):
    """``out <- alpha out + beta sum grad`` for share ``part`` of ``n_parts`` of each layer's units.

    ``out`` is ``net.params`` (the SGD step) or a copy of it (the gradient), from
    layer ``first_layer`` on. Returns whether every value looked at is finite.
    """
    sizes, m, bs = net.sizes, rows.shape[0], work.index.shape[0]
    finite = True
    for l in range(first_layer, sizes.shape[0] - 1):
        W, b = layer_views(out, sizes, l)
        h_lo, h_hi = share(W.shape[0], part, n_parts, FORWARD_UNITS)
        D = work_view(work.deltas, sizes, bs, l + 1, m)
        if h_lo < h_hi and l == 0:
            finite &= dense_update_rows(W, b, X, rows, D, alpha_w, alpha_b, beta, net.one, h_lo, h_hi, checked, tiles)
        elif h_lo < h_hi:
            finite &= dense_update_rows(W, b, work_view(work.acts, sizes, bs, l, m), work.index[:m], D,
                                        alpha_w, alpha_b, beta, net.one, h_lo, h_hi, checked, tiles)
    return finite


@njit(cache=True)
def backprop_rows(net, work, X, codes, scale, Y, rows, r_lo, r_hi, no_z, tiles):
    """Batch rows ``r_lo <= i < r_hi`` of ``X[rows]``: gathered into ``work.inputs``, forward, every delta.

    The share of one thread in the batch epochs; the update that follows reads
    the gathered rows of every share.
    """
    prefetch_targets(Y, rows, r_lo, r_hi)
    gather_rows(work.inputs, X, codes, scale, rows, r_lo, r_hi)
    forward_rows(net, work, work.inputs, work.index[:rows.shape[0]], r_lo, r_hi, no_z, ZERO, tiles)
    deltas_rows(net, work, Y, rows, r_lo, r_hi, tiles)


# -- epochs --------------------------------------------------------------------------------------------
def _sgd_epoch(net, work, X, codes, scale, Y, order, beta_full, beta_last, decay, n_parts, checked):
    """One epoch of mini-batch SGD over ``X[order]`` in batches of the work space's rows.

    Compiled twice from this one function: serially (``n_parts == 1``) and with
    ``parallel=True``, where each batch's rows are split in ``n_parts`` shares
    for the forward pass and deltas and each layer's units in ``n_parts`` shares
    for the update (disjoint writes, no reduction buffer). ``beta_full =
    -eta/batch_size``, ``beta_last = -eta/(rows of the last batch)`` and ``decay
    = 1 - eta*lmbda/n`` arrive in the dtype of the parameters. ``X`` is read
    from ``codes`` and ``scale`` when ``codes`` has rows (see :func:`gather_rows`).

    Returns :data:`FINITE`; or, ``checked``, the index of the first batch after
    which a parameter is not finite (a pass over the weights per batch);
    unchecked, only the biases are checked per batch, everything at the end, and
    a non-finite end returns :data:`DIVERGED_AT_UNKNOWN_BATCH`. That loses
    nothing: inf and NaN absorb, so a non-finite parameter stays so, and the
    caller reruns the epoch checked from its start to name the batch.
    """
    n_rows, batch_size = order.shape[0], work.index.shape[0]
    no_z = np.empty((0, net.sizes[-1]), dtype=net.params.dtype)
    finite = np.empty(n_parts, dtype=np.bool_)
    for k in range((n_rows + batch_size - 1) // batch_size):
        rows = order[k * batch_size:min((k + 1) * batch_size, n_rows)]
        m = rows.shape[0]
        gathered = work.index[:m]  # the rows of work.inputs, where backprop_rows copies this batch's rows of X
        for p in prange(n_parts):
            r_lo, r_hi = share(m, p, n_parts, ROWS_ALIGN)
            if r_lo < r_hi:
                backprop_rows(net, work, X, codes, scale, Y, rows, r_lo, r_hi, no_z, TILES)
        beta = beta_full if m == batch_size else beta_last
        ahead = order[(k + 1) * batch_size:min((k + 1) * batch_size + BATCH_AHEAD_ROWS, n_rows)]
        prefetch_batch(X, codes, Y, ahead)  # on their way during the update
        for p in prange(n_parts):
            # np.int64: prange's index is unsigned, which would compile update_units once more
            finite[p] = update_units(net.params, net, work, work.inputs, gathered, np.int64(p), n_parts, decay,
                                     net.one, beta, checked, ZERO, TILES)
        if not finite.all():
            return k if checked else DIVERGED_AT_UNKNOWN_BATCH
    if not checked and not range_finite(net.params, net.one):
        return DIVERGED_AT_UNKNOWN_BATCH
    return FINITE


sgd_epoch_serial = njit(cache=True)(numba_variant(_sgd_epoch, "sgd_epoch_serial"))
sgd_epoch_parallel = njit(cache=True, parallel=True)(numba_variant(_sgd_epoch, "sgd_epoch_parallel"))


# -- the row-split epoch: every thread its own rows, partial gradients summed ------------------------------
#: Values per share of a layer in :func:`reduce_partials`: 64 bytes of float32, so the threads' writes
#: meet in no cache line inside a layer.
REDUCE_ALIGN = 16


@njit(cache=True)
def gradient_rows(out, net, work, X, codes, scale, Y, rows, part, n_parts, beta, no_z, tiles):
    """Share ``part`` of the batch rows: :func:`backprop_rows`, then ``out <- beta sum grad`` over them alone.

    ``out`` (a row of the epoch's ``partials``, in the layout of ``net.params``)
    is written from zero, every layer, all units: the thread reads only the
    input rows it gathered itself. A share without rows leaves ``out`` as it
    was (:func:`reduce_partials` does not read it).

    A share of more than :data:`CHUNK_ROWS` rows runs in chunks of that many:
    each chunk gathered, forward, back and added to ``out`` before the next,
    so the gradient reads input rows that are still in L2 (the chunks' sums
    are added in order: rounding apart, the share's sum).
    """
    sizes, m, bs = net.sizes, rows.shape[0], work.index.shape[0]
    r_lo, r_hi = share(m, part, n_parts, ROWS_ALIGN)
    for c_lo in range(r_lo, r_hi, CHUNK_ROWS):
        c_hi = min(c_lo + CHUNK_ROWS, r_hi)
        backprop_rows(net, work, X, codes, scale, Y, rows, c_lo, c_hi, no_z, tiles)
        mine = work.index[c_lo:c_hi]
        s = net.one - net.one if c_lo == r_lo else net.one  # the first chunk writes out from zero, the others add
        for l in range(sizes.shape[0] - 1):
            W, b = layer_views(out, sizes, l)
            D = work_view(work.deltas, sizes, bs, l + 1, m)[c_lo:c_hi]
            if l == 0:
                dense_update_rows(W, b, work.inputs, mine, D, s, s, beta, net.one, ZERO, W.shape[0], UNCHECKED,
                                  tiles)
            else:
                dense_update_rows(W, b, work_view(work.acts, sizes, bs, l, m), mine, D, s, s, beta, net.one, ZERO,
                                  W.shape[0], UNCHECKED, tiles)


@njit(cache=True)
def shares_with_rows(m, n_parts):
    """How many of the ``n_parts`` row shares of a batch of ``m`` rows have rows (the first ones do)."""
    active = 0
    for k in range(n_parts):
        r_lo, r_hi = share(m, k, n_parts, ROWS_ALIGN)
        active += r_lo < r_hi
    return active


@njit(cache=True)
def reduce_partials(params, partials, sizes, m, part, n_parts, decay, one, checked):
    """The SGD step from the threads' partial sums, for share ``part`` of each layer's weights and biases.

    ``W <- decay W + sum_k partials[k]`` and ``b <- b + sum_k partials[k]``
    over the shares ``k`` of the batch's ``m`` rows that had rows. Returns
    whether the values written are finite: ``checked``, all of them; else
    the biases only (as :func:`update_units`).
    """
    active = shares_with_rows(m, n_parts)
    finite, offset = True, 0
    for l in range(sizes.shape[0] - 1):
        n_w, n_b = sizes[l + 1] * sizes[l], sizes[l + 1]
        lo, hi = share(n_w, part, n_parts, REDUCE_ALIGN)
        finite &= add_partials(params, partials, active, offset + lo, offset + hi, decay, checked)
        lo, hi = share(n_b, part, n_parts, REDUCE_ALIGN)
        finite &= add_partials(params, partials, active, offset + n_w + lo, offset + n_w + hi, one, CHECKED)
        offset += n_w + n_b
    return finite


def _sgd_epoch_rows(net, work, partials, X, codes, scale, Y, order, beta_full, beta_last, decay, n_parts, checked):
    """:func:`_sgd_epoch` on ``n_parts`` threads with each batch's rows split for everything, the update too.

    Each thread gathers, runs forward and back, and sums ``beta grad`` over its
    own rows into its row of ``partials`` (``(n_parts, n_params)``, see
    :func:`gradient_rows`); then each steps its share of every layer's values
    from the sum of the partials (:func:`reduce_partials`). The unit split of
    :func:`_sgd_epoch` has each thread's update read the input rows the other
    gathered: at 1,000 rows a batch, half of 3 MB crossing between cores per
    batch (``[784,30,10]``, two threads: 35 against 29.5 ms an epoch, Zen 4).
    Here only the partial gradients and the weights cross; the step's pass
    over every thread's partials grows with the parameters, not the rows (the
    backend's choice: ``mbtrain.backends.numba_matrix.ROW_SPLIT_ROWS_PER_UNIT``).
    Same returns as :func:`_sgd_epoch`; the sums run in another order
    (rounding apart).
    """
    n_rows, batch_size = order.shape[0], work.index.shape[0]
    no_z = np.empty((0, net.sizes[-1]), dtype=net.params.dtype)
    finite = np.empty(n_parts, dtype=np.bool_)
    for k in range((n_rows + batch_size - 1) // batch_size):
        rows = order[k * batch_size:min((k + 1) * batch_size, n_rows)]
        m = rows.shape[0]
        beta = beta_full if m == batch_size else beta_last
        for p in prange(n_parts):
            gradient_rows(partials[p], net, work, X, codes, scale, Y, rows, np.int64(p), n_parts, beta, no_z, TILES)
        ahead = order[(k + 1) * batch_size:min((k + 1) * batch_size + BATCH_AHEAD_ROWS, n_rows)]
        prefetch_batch(X, codes, Y, ahead)
        for p in prange(n_parts):
            finite[p] = reduce_partials(net.params, partials, net.sizes, m, np.int64(p), n_parts, decay, net.one,
                                        checked)
        if not finite.all():
            return k if checked else DIVERGED_AT_UNKNOWN_BATCH
    if not checked and not range_finite(net.params, net.one):
        return DIVERGED_AT_UNKNOWN_BATCH
    return FINITE


sgd_epoch_rows = njit(cache=True, parallel=True)(numba_variant(_sgd_epoch_rows, "sgd_epoch_rows"))


@njit(cache=True)
def sgd_epoch_online(net, work, X, codes, scale, Y, order, beta, decay):
    """Batch size 1 (pure SGD, ``beta = -eta``): the first-layer update fused with the next forward.

    Same arithmetic as :func:`_sgd_epoch` with ``batch_size == 1`` up to the
    order of the first layer's dot products. Checks divergence once, at the
    end: returns :data:`FINITE` or :data:`DIVERGED_AT_UNKNOWN_BATCH`. The
    example and the next are copied into the two aligned rows of
    ``work.inputs`` (see :func:`gather_rows`; measured: the fused pass at 50
    against 38 GFLOP/s for [784,30], 81 against 54 for [784,100]); the one
    after them is prefetched.
    """
    sizes, n_rows, L = net.sizes, order.shape[0], net.sizes.shape[0] - 1
    W0, b0 = layer_views(net.params, sizes, ZERO)
    Z1, D1 = work_view(work.acts, sizes, ONE, ONE, ONE), work_view(work.deltas, sizes, ONE, ONE, ONE)
    # two layers (the book's networks): the output layer's views taken once, its kernels called directly;
    # through forward_rows, deltas_rows and update_units (views and calls per example) it took 63 of a
    # [784,30,10] epoch's 127 ms, directly 28
    top = min(ONE, L - 1)
    W1, b1 = layer_views(net.params, sizes, top)
    Z2, D2 = work_view(work.acts, sizes, ONE, top + 1, ONE), work_view(work.deltas, sizes, ONE, top + 1, ONE)
    coef = np.empty(sizes[1], dtype=net.params.dtype)
    no_z = np.empty((0, sizes[-1]), dtype=net.params.dtype)
    gathered = work.index[:1]  # the layers above the first read no input rows
    if n_rows > 0:
        gather_rows(work.inputs, X, codes, scale, order, ZERO, ONE)
        dense_forward_rows(Z1, work.inputs, gathered, W0, b0, ZERO, W0.shape[0], TILES)
    for k in range(n_rows):
        rows = order[k:k + 1]
        here = k % 2  # this example's row of work.inputs; the next one's is the other
        if k + 2 < n_rows:  # the row after the next: in cache when its turn comes
            prefetch_input(X, codes, order[k + 2])
        if L == 1 and net.cost_id == SOFTMAX:  # Z1 holds the first layer's z, from the last fused pass
            softmax_rows(Z1)
        else:
            sigmoid_rows(Z1, net.one)
        if L == 2:  # forward_rows, deltas_rows and update_units for the output layer, as they compute it
            dense_forward_rows(Z2, Z1, gathered, W1, b1, ZERO, W1.shape[0], TILES)
            if net.cost_id == SOFTMAX:
                softmax_rows(Z2)
            else:
                sigmoid_rows(Z2, net.one)
            output_delta_rows(D2, Z2, Y, rows, net.cost_id, net.one)
            hidden_delta_rows(D1, D2, W1, Z1, TILES)
            dense_update_rows(W1, b1, Z1, gathered, D2, decay, net.one, beta, net.one, ZERO, W1.shape[0], UNCHECKED,
                              TILES)
        else:
            forward_rows(net, work, work.inputs, gathered, ZERO, ONE, no_z, ONE, TILES)
            deltas_rows(net, work, Y, rows, ZERO, ONE, TILES)
            update_units(net.params, net, work, work.inputs, gathered, ZERO, ONE, decay, net.one, beta, UNCHECKED,
                         ONE, TILES)
        for h in range(coef.shape[0]):
            coef[h] = beta * D1[0, h]
        fuse = k + 1 < n_rows
        if fuse:
            gather_rows(work.inputs[1 - here:], X, codes, scale, order[k + 1:], ZERO, ONE)
        first_layer_update_forward(W0, b0, work.inputs[here], coef, decay, Z1[0],
                                   work.inputs[1 - here if fuse else here], fuse)
    return FINITE if range_finite(net.params, net.one) else DIVERGED_AT_UNKNOWN_BATCH


# -- epochs of the other optimizers: gradient and step fused per layer --------------------------------
@njit(cache=True)
def gradient_step_units(grad, state, net, work, X, rows, part, n_parts, rule, corrections, lmbda_over_n, inv_m,
                        checked):
    """The mini-batch gradient and the optimizer's step for share ``part`` of each layer's units.

    Per layer, the share's rows of ``W`` and entries of ``b`` in ``grad``
    receive the batch's mean gradient of the cost (``(1/m) sum D^T A``, from
    zero: no copy of the parameters first), and are stepped while they are
    still in cache, the step adding the L2 term ``(lmbda/n) W`` (the exact
    gradient :func:`loss_gradient` computes); the deltas are already computed
    from the old weights, so stepping layer ``l`` before the gradient of
    ``l + 1`` is safe. ``state`` is ``(first, second)`` (see
    :func:`mbtrain.fast_layers.optimizer_step`), ``corrections`` Adam's
    ``(step_size, bias2)``. Returns whether every stepped value (parameters and
    state) is finite; unchecked, True.
    """
    sizes, m, bs = net.sizes, rows.shape[0], work.index.shape[0]
    first, second = state
    adam = rule.kind == ADAM_KIND
    finite = True
    offset = 0
    for l in range(sizes.shape[0] - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        h_lo, h_hi = share(n_out, part, n_parts, FORWARD_UNITS)
        bias = offset + n_out * n_in
        if h_lo < h_hi:
            zero = net.one - net.one  # the mean gradient of the cost from zero: grad is written, never read
            W, b = layer_views(grad, sizes, l)
            if l == 0:
                dense_update_rows(W, b, X, rows, work_view(work.deltas, sizes, bs, ONE, m), zero, zero, inv_m,
                                  net.one, h_lo, h_hi, UNCHECKED, TILES)
            else:
                dense_update_rows(W, b, work_view(work.acts, sizes, bs, l, m), work.index[:m],
                                  work_view(work.deltas, sizes, bs, l + 1, m), zero, zero, inv_m, net.one, h_lo,
                                  h_hi, UNCHECKED, TILES)
            for lo, hi, decay in ((offset + h_lo * n_in, offset + h_hi * n_in, lmbda_over_n),
                                  (bias + h_lo, bias + h_hi, zero)):  # the L2 term on the weights only
                rest = second[lo:hi] if adam else second
                optimizer_step(net.params[lo:hi], grad[lo:hi], first[lo:hi], rest, rule, corrections[0],
                               corrections[1], decay)
                if checked:
                    finite &= range_finite(net.params[lo:hi], net.one) and range_finite(first[lo:hi], net.one)
                    finite &= not adam or range_finite(second[lo:hi], net.one)
        offset = bias + n_out
    return finite


@njit(cache=True)
def adam_corrections(corrections, rule, t):
    """Adam's ``eta / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)`` of step ``t`` into ``corrections``.

    As :class:`mbtrain.optim.Adam` computes them: from Python floats, so in
    float64, then rounded to the dtype of ``corrections`` (the parameters').
    """
    corrections[0] = rule.eta64 / (1.0 - rule.beta1_64 ** t)
    corrections[1] = math.sqrt(1.0 - rule.beta2_64 ** t)


@njit(cache=True)
def optimizer_finite(params, state, one):
    """Whether the parameters and the optimizer's ``state`` ``(first, second)`` are all finite."""
    first, second = state
    return range_finite(params, one) and range_finite(first, one) and range_finite(second, one)


def _optimizer_epoch(net, work, X, codes, scale, Y, order, grad, state, rule, step, lmbda_over_n, inv_full,
                     inv_last, n_parts, checked):
    """One epoch of momentum, Nesterov or Adam over ``X[order]`` in batches of the work space's rows.

    Compiled serially and with ``parallel=True`` from this one function, split
    as :func:`_sgd_epoch` is: rows for the forward pass and deltas, each
    layer's units for the gradient and the step (disjoint writes). ``grad`` is
    a parameter-sized buffer, ``state`` ``(first, second)`` updated in place,
    ``step`` the steps taken before this epoch (Adam's ``t`` of batch ``k`` is
    ``step + k + 1``); ``inv_full = 1/batch_size`` and ``inv_last`` (the last
    batch) typed like the parameters. Returns as :func:`_sgd_epoch`, with the
    state counted in the finiteness checks.
    """
    n_rows, batch_size = order.shape[0], work.index.shape[0]
    no_z = np.empty((0, net.sizes[-1]), dtype=net.params.dtype)
    finite = np.empty(n_parts, dtype=np.bool_)
    corrections = np.ones(2, dtype=net.params.dtype)  # float64 corrections rounded to the parameters' dtype
    for k in range((n_rows + batch_size - 1) // batch_size):
        rows = order[k * batch_size:min((k + 1) * batch_size, n_rows)]
        m = rows.shape[0]
        gathered = work.index[:m]  # the rows of work.inputs, where backprop_rows copies this batch's rows of X
        for p in prange(n_parts):
            r_lo, r_hi = share(m, p, n_parts, ROWS_ALIGN)
            if r_lo < r_hi:
                backprop_rows(net, work, X, codes, scale, Y, rows, r_lo, r_hi, no_z, TILES)
        if rule.kind == ADAM_KIND:
            adam_corrections(corrections, rule, np.float64(step + k + 1))
        inv_m = inv_full if m == batch_size else inv_last
        for p in prange(n_parts):
            finite[p] = gradient_step_units(grad, state, net, work, work.inputs, gathered, np.int64(p), n_parts, rule,
                                            corrections, lmbda_over_n, inv_m, checked)
        if checked and not finite.all():
            return k
    if not checked and not optimizer_finite(net.params, state, net.one):
        return DIVERGED_AT_UNKNOWN_BATCH
    return FINITE


optimizer_epoch_serial = njit(cache=True)(numba_variant(_optimizer_epoch, "optimizer_epoch_serial"))
optimizer_epoch_parallel = njit(cache=True, parallel=True)(numba_variant(_optimizer_epoch, "optimizer_epoch_parallel"))


@njit(cache=True)
def step_partials(grad, state, params, partials, sizes, m, part, n_parts, rule, corrections, lmbda_over_n, checked):
    """The optimizer's step from the threads' partial mean gradients, for share ``part`` of each layer's values.

    ``grad`` receives the sum of the partials of the shares that had rows of
    the batch's ``m`` (see :func:`gradient_rows`, with ``beta = 1/m``), and
    the share is stepped as :func:`gradient_step_units` steps its units (the
    L2 term on the weights only). Returns whether every stepped value
    (parameters and state) is finite; unchecked, True.
    """
    first, second = state
    adam = rule.kind == ADAM_KIND
    active = shares_with_rows(m, n_parts)
    zero, one = lmbda_over_n - lmbda_over_n, lmbda_over_n - lmbda_over_n + 1
    finite, offset = True, 0
    for l in range(sizes.shape[0] - 1):
        n_w, n_b = sizes[l + 1] * sizes[l], sizes[l + 1]
        w_lo, w_hi = share(n_w, part, n_parts, REDUCE_ALIGN)
        b_lo, b_hi = share(n_b, part, n_parts, REDUCE_ALIGN)
        for lo, hi, decay in ((offset + w_lo, offset + w_hi, lmbda_over_n), (offset + n_w + b_lo, offset + n_w + b_hi,
                                                                              zero)):
            add_partials(grad, partials, active, lo, hi, zero, UNCHECKED)
            rest = second[lo:hi] if adam else second
            optimizer_step(params[lo:hi], grad[lo:hi], first[lo:hi], rest, rule, corrections[0], corrections[1],
                           decay)
            if checked:
                finite &= range_finite(params[lo:hi], one) and range_finite(first[lo:hi], one)
                finite &= not adam or range_finite(second[lo:hi], one)
        offset += n_w + n_b
    return finite


def _optimizer_epoch_rows(net, work, partials, X, codes, scale, Y, order, grad, state, rule, step, lmbda_over_n,
                          inv_full, inv_last, n_parts, checked):
    """:func:`_optimizer_epoch` with each batch's rows split for everything, as :func:`_sgd_epoch_rows` splits them.

    Each thread sums ``(1/m) grad`` over its own rows into its row of
    ``partials``; then each steps its share of every layer's values
    (:func:`step_partials`). Same arguments besides ``partials``, same returns.
    """
    n_rows, batch_size = order.shape[0], work.index.shape[0]
    no_z = np.empty((0, net.sizes[-1]), dtype=net.params.dtype)
    finite = np.empty(n_parts, dtype=np.bool_)
    corrections = np.ones(2, dtype=net.params.dtype)  # float64 corrections rounded to the parameters' dtype
    for k in range((n_rows + batch_size - 1) // batch_size):
        rows = order[k * batch_size:min((k + 1) * batch_size, n_rows)]
        m = rows.shape[0]
        inv_m = inv_full if m == batch_size else inv_last
        for p in prange(n_parts):
            gradient_rows(partials[p], net, work, X, codes, scale, Y, rows, np.int64(p), n_parts, inv_m, no_z, TILES)
        if rule.kind == ADAM_KIND:
            adam_corrections(corrections, rule, np.float64(step + k + 1))
        ahead = order[(k + 1) * batch_size:min((k + 1) * batch_size + BATCH_AHEAD_ROWS, n_rows)]
        prefetch_batch(X, codes, Y, ahead)
        for p in prange(n_parts):
            finite[p] = step_partials(grad, state, net.params, partials, net.sizes, m, np.int64(p), n_parts, rule,
                                      corrections, lmbda_over_n, checked)
        if checked and not finite.all():
            return k
    if not checked and not optimizer_finite(net.params, state, net.one):
        return DIVERGED_AT_UNKNOWN_BATCH
    return FINITE


optimizer_epoch_rows = njit(cache=True, parallel=True)(numba_variant(_optimizer_epoch_rows, "optimizer_epoch_rows"))


# -- a whole batch at once: the exact gradient (scipy, gradcheck, monitoring) ---------------------------------
@njit(cache=True)
def loss_gradient(grad, z_out, net, work, X, Y, lmbda_over_n, inv_m):
    """``grad = mean gradient of the cost over the rows of X + (lmbda/n) W`` (biases unregularized).

    ``work`` has ``len(X)`` rows; ``inv_m = 1 / len(X)``. Afterwards the work
    space's last layer holds the output activations and ``z_out`` (``(len(X),
    n_L)``, or no rows) the output layer's weighted input, from which the cost
    is exact even for saturated outputs.
    """
    rows = work.index
    forward_rows(net, work, X, rows, ZERO, rows.shape[0], z_out, ZERO, TILES)
    deltas_rows(net, work, Y, rows, ZERO, rows.shape[0], TILES)
    grad[:] = net.params  # the update runs in place (see dense_update_rows)
    update_units(grad, net, work, X, rows, ZERO, ONE, lmbda_over_n, net.one - net.one, inv_m, UNCHECKED, ZERO, TILES)
