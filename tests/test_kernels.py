"""Kernel-level tests: every fast kernel against the plain kernels and the numpy/loop references.

Tiny sizes on purpose: this file also runs under ``NUMBA_DISABLE_JIT=1``, where
the kernels are plain Python loops.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from numba import njit

from mbtrain import Network, _kernel_api as api, fast_kernels as fk, fast_layers as fl, fast_tiles as ft, kernels as pk
from mbtrain.activations import sigmoid
from mbtrain.backends import get_backend
from mbtrain.backends.numba_matrix import _epoch_rows, loss_gradient_and_output
from mbtrain.backends.numpy_matrix import forward as numpy_forward

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
DTYPES = [np.float32, np.float64]
COSTS = {0: "quadratic", 1: "cross_entropy", 2: "softmax"}
SIZES = [[6, 5, 3], [6, 5, 4, 3], [6, 7, 5, 4, 3]]  # depth 2..4
# float64 results agree to rounding; float32 ones to a few float32 ulps of the sums
RTOL = {np.float32: 2e-4, np.float64: 1e-9}


def sparse_data(n, sizes, dtype, seed=0):
    """Rows with about half exact zeros (like image pixels), one-hot targets."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0]))
    X[X < 0.5] = 0
    Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], n)]
    return X.astype(dtype), Y.astype(dtype)


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-2)))


# -- elementwise pieces -------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_rows_matches_reference_and_keeps_nan(dtype):
    Z = np.array([[-1000, -30, -1, 0, 1, 30, 1000, np.nan]], dtype=dtype)
    expected = sigmoid(Z)
    fl.sigmoid_rows(Z, dtype(1))
    assert Z.dtype == dtype
    np.testing.assert_allclose(Z[:, :-1], expected[:, :-1], rtol=RTOL[dtype], atol=0)
    assert Z[0, 0] == 0 and Z[0, 6] == 1 and np.isnan(Z[0, -1])


@njit(error_model="numpy")
def _vector_exp_of(v, out):
    for i in range(v.shape[0]):
        out[i] = fl.vector_exp(v[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_exp_is_within_two_ulp_of_numpy_and_keeps_inf_zero_and_nan(dtype):
    """The sigmoid's exp (arithmetic LLVM vectorizes) against numpy's, over exp's whole range and beyond."""
    info = np.finfo(dtype)
    top, bottom = float(np.log(info.max)), float(np.log(info.smallest_subnormal))
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(bottom - 5, top + 5, 100_000), rng.uniform(-3, 3, 100_000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, top, -top, bottom, np.nextafter(top, np.inf)]])
    v = v.astype(dtype)
    out = np.empty_like(v)
    _vector_exp_of(v, out)
    assert out.dtype == dtype
    with np.errstate(over="ignore"):
        expected = np.exp(v)
    normal = np.isfinite(expected) & (expected >= info.tiny)
    ulp = np.abs(out[normal] - expected[normal]) / np.spacing(expected[normal])
    assert ulp.max() <= 2, f"{ulp.max()} ulp at x = {v[normal][np.argmax(ulp)]!r}"
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    tiny = ~normal & np.isfinite(expected)  # subnormal or zero results: within one subnormal step or two
    assert np.all(np.abs(out[tiny] - expected[tiny]) <= 2 * info.smallest_subnormal + 2 * np.spacing(expected[tiny]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_matches_plain(dtype):
    """fast_layers keeps its own copy of the plain softmax (see its module notes): the two agree."""
    Z = np.array([[1, 2, 3, -1], [80, 80, 79, -1000], [0, 0, 0, 0]], dtype=dtype)
    expected = Z.copy()
    pk.softmax_inplace(expected)
    fl.softmax_rows(Z)
    np.testing.assert_allclose(Z, expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(Z.sum(axis=1), 1, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cost_id", [0, 1, 2])
@pytest.mark.parametrize("labels", [False, True])
def test_output_delta_rows_matches_plain(dtype, cost_id, labels):
    rng = np.random.default_rng(cost_id)
    A = rng.random((5, 3)).astype(dtype)
    y = rng.integers(0, 3, 9)
    Y = np.eye(3, dtype=dtype)[y]
    rows = np.array([8, 0, 3, 3, 5])
    D = np.empty_like(A)
    fl.output_delta_rows(D, A, y if labels else Y, rows, cost_id, dtype(1))
    expected = np.empty_like(A)
    pk.output_delta(expected, A, Y[rows], cost_id)
    np.testing.assert_allclose(D, expected, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cost_id", [0, 1, 2])
def test_output_delta_of_labels_is_that_of_their_one_hot_matrix_bit_for_bit(dtype, cost_id):
    """The labels loop writes the one-hot's zeros as no term at all: the same arithmetic, so the same bits."""
    rng = np.random.default_rng(10 + cost_id)
    A = rng.random((40, 10)).astype(dtype)
    y = rng.integers(0, 10, 60)
    rows = rng.permutation(60)[:40]
    from_labels, from_matrix = np.empty_like(A), np.empty_like(A)
    fl.output_delta_rows(from_labels, A, y, rows, cost_id, dtype(1))
    fl.output_delta_rows(from_matrix, A, np.eye(10, dtype=dtype)[y], rows, cost_id, dtype(1))
    np.testing.assert_array_equal(from_labels, from_matrix)


@pytest.mark.parametrize("Y", [np.arange(50) % 7, np.eye(7)[np.arange(50) % 7]], ids=["labels", "matrix"])
def test_prefetching_the_targets_of_a_batch_changes_nothing(Y):
    before = Y.copy()
    fk.prefetch_targets(Y, np.array([49, 0, 17, 17, 3]), 0, 5)
    fk.prefetch_targets(Y, np.array([49, 0, 17]), 1, 1)  # an empty share
    np.testing.assert_array_equal(Y, before)


# -- dense layer kernels --------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 7, 9, 10])  # every row tile: 4, 2, 1 and their sums
@pytest.mark.parametrize("n_out, h_lo, h_hi", [(3, 0, 3), (9, 0, 9), (10, 4, 10), (4, 4, 4), (13, 1, 13)])
def test_dense_forward_rows_matches_numpy(dtype, m, n_out, h_lo, h_hi):
    rng = np.random.default_rng(m)
    A = rng.standard_normal((12, 7)).astype(dtype)
    A[A < 0] = 0
    W = rng.standard_normal((n_out, 7)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    rows = rng.integers(0, 12, m)
    Z = np.full((m, n_out), -7, dtype=dtype)
    fl.dense_forward_rows(Z, A, rows, W, b, h_lo, h_hi)
    expected = A[rows] @ W.T + b
    np.testing.assert_allclose(Z[:, h_lo:h_hi], expected[:, h_lo:h_hi], rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.all(Z[:, :h_lo] == -7) and np.all(Z[:, h_hi:] == -7)  # units outside the share are untouched


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 7, 8, 13, 19])  # every row-block remainder
def test_dense_update_rows_matches_numpy(dtype, m):
    rng = np.random.default_rng(m)
    A = rng.standard_normal((20, 7)).astype(dtype)
    A[A < 0] = 0
    W = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    D = rng.standard_normal((m, 5)).astype(dtype)
    rows = rng.integers(0, 20, m)
    alpha_w, alpha_b, beta = dtype(0.9), dtype(1), dtype(-0.3)
    W_exp = alpha_w * W + beta * D.T @ A[rows]
    b_exp = alpha_b * b + beta * D.sum(axis=0)
    W_new, b_new = W.copy(), b.copy()
    finite = fl.dense_update_rows(W_new, b_new, A, rows, D, alpha_w, alpha_b, beta, dtype(1), 1, 5)
    np.testing.assert_allclose(W_new[1:], W_exp[1:], rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(b_new[1:], b_exp[1:], rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.all(W_new[0] == W[0]) and b_new[0] == b[0]  # unit 0 is another thread's share
    assert isinstance(finite, (bool, np.bool_)) and finite  # a verdict, no longer a check sum
    assert W_new.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_update_rows_checks_each_value_not_their_sum(dtype):
    """Large finite weights are finite (a sum of them would overflow); one inf or NaN is not."""
    big = np.finfo(dtype).max / 4
    W, b = np.full((3, 8), big, dtype=dtype), np.full(3, big, dtype=dtype)
    A, D, rows = np.zeros((2, 8), dtype=dtype), np.zeros((2, 3), dtype=dtype), np.arange(2)
    one = dtype(1)
    assert fl.dense_update_rows(W, b, A, rows, D, one, one, one, one, 0, 3)
    assert np.all(W == big)
    W[2, 5] = np.inf
    assert not fl.dense_update_rows(W, b, A, rows, D, one, one, one, one, 0, 3)
    assert fl.dense_update_rows(W, b, A, rows, D, one, one, one, one, 0, 3, False)  # unchecked: biases only
    W[2, 5], b[1] = big, np.nan
    assert not fl.dense_update_rows(W, b, A, rows, D, one, one, one, one, 0, 3, False)
    b[1] = big  # the plain kernel, the specification, decides alike
    assert np.isfinite(pk.dense_backward(W, b, W, b, D, A, one, one, one))
    W[0, 0] = -np.inf
    assert not np.isfinite(pk.dense_backward(W, b, W, b, D, A, one, one, one))


# -- whole epochs ---------------------------------------------------------------
def run_plain_epoch(net, X, Y, order, batch_size, eta, lmbda):
    dt = net.dtype.type
    total = batch_size * sum(net.sizes)
    return int(pk.sgd_epoch(net.params, np.asarray(net.sizes, np.int64), X, Y, order, batch_size, dt(eta),
                            dt(1 - eta * lmbda / X.shape[0]), net.cost.kernel_id,
                            np.empty(total, net.dtype), np.empty(total, net.dtype)))


def kernel_net(net):
    return api.Net(net.params, np.asarray(net.sizes, np.int64), net.cost.kernel_id, net.dtype.type(1))


def run_fast_epoch(net, X, Y, order, batch_size, eta, lmbda, n_parts, checked=True, split="units"):
    """One fast epoch: serial (``n_parts`` 1), or parallel with the update split by ``units`` or by ``rows``."""
    dt = net.dtype.type
    n = order.shape[0]
    last = n - (n - 1) // batch_size * batch_size
    args = dict(beta_full=dt(-eta / batch_size), beta_last=dt(-eta / last), decay=dt(1 - eta * lmbda / X.shape[0]),
                n_parts=n_parts, checked=checked)
    X, codes, scale = _epoch_rows(X, net.dtype)
    rows = dict(X=X, codes=codes, scale=scale, Y=Y, order=order)
    if split == "rows":
        epoch = fk.sgd_epoch_rows
        args["partials"] = np.full((n_parts, net.params.size), np.nan, dtype=net.dtype)  # read only where written
    else:
        epoch = fk.sgd_epoch_parallel if n_parts > 1 else fk.sgd_epoch_serial
    return int(epoch(kernel_net(net), api.new_work(net.sizes, batch_size, net.dtype), **rows, **args))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("cost_id", [0, 1, 2])
@pytest.mark.parametrize("batch_size, n_parts, split", [
    (1, 1, "units"), (5, 1, "units"), (9, 1, "units"), (9, 2, "units"), (10, 3, "units"),
    (9, 2, "rows"), (10, 3, "rows"), (5, 3, "rows"),  # the last batch's 3 rows leave a share empty
])
def test_sgd_epoch_matches_plain_kernel_and_numpy(dtype, sizes, cost_id, batch_size, n_parts, split):
    X, Y = sparse_data(23, sizes, dtype)  # 23 rows: a short last batch for every batch size > 1
    order = np.random.default_rng(1).permutation(23)
    nets = {name: Network(sizes, cost=COSTS[cost_id], dtype=dtype, seed=0) for name in ("plain", "fast", "numpy")}
    assert run_plain_epoch(nets["plain"], X, Y, order, batch_size, 3.0, 0.5) == -1
    assert run_fast_epoch(nets["fast"], X, Y, order, batch_size, 3.0, 0.5, n_parts, split=split) == api.FINITE == -1
    assert get_backend("numpy").sgd_epoch(nets["numpy"], X, Y, order, batch_size, 3.0, 0.5, 23) == -1
    assert nets["fast"].params.dtype == dtype
    assert rel_err(nets["fast"].params, nets["plain"].params) < RTOL[dtype]
    assert rel_err(nets["fast"].params, nets["numpy"].params) < RTOL[dtype]


@pytest.mark.parametrize("cost", list(COSTS.values()))
def test_backend_epoch_agrees_with_loop_in_float64(cost):
    """The public contract: one epoch leaves loop, numpy and numba within 1e-9 (serial and parallel)."""
    sizes = [12, 7, 5, 4]
    X, Y = sparse_data(200, sizes, np.float64, seed=3)
    order = np.random.default_rng(2).permutation(200)
    for batch_size in (10, 100):
        nets = {}
        for name in ("loop", "numpy", "numba"):
            nets[name] = Network(sizes, cost=cost, dtype="float64", seed=0)
            assert get_backend(name).sgd_epoch(nets[name], X, Y, order, batch_size, 3.0, 0.5, 200) == -1
        assert rel_err(nets["numba"].params, nets["loop"].params) < 1e-9
        assert rel_err(nets["numpy"].params, nets["loop"].params) < 1e-9


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("cost", list(COSTS.values()))
def test_loss_gradient_and_loss_match_loop(dtype, sizes, cost):
    X, Y = sparse_data(11, sizes, dtype, seed=4)
    net = Network(sizes, cost=cost, dtype=dtype, seed=0)
    g_loop = get_backend("loop").loss_gradient(net, X, Y, 0.7, 50)
    g_numba = get_backend("numba").loss_gradient(net, X, Y, 0.7, 50)
    assert g_numba.dtype == dtype
    assert rel_err(g_numba, g_loop) < (1e-10 if dtype == np.float64 else 1e-3)
    loss, g_both = get_backend("numba").loss_and_gradient(net, X, Y, 0.7, 50)
    np.testing.assert_array_equal(g_both, g_numba)
    assert loss == pytest.approx(get_backend("loop").loss(net, X, Y, 0.7, 50), rel=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cost", list(COSTS.values()))
def test_loss_gradient_leaves_the_output_z_and_a(dtype, cost):
    """What a loss needs from the same pass: the output layer's z (exact costs) and a."""
    sizes = [6, 5, 4, 3]
    X, Y = sparse_data(11, sizes, dtype, seed=5)
    net = Network(sizes, cost=cost, dtype=dtype, seed=0)
    net.weights[-1][...] *= 40  # saturated outputs, where a loses what z keeps
    grad, z, a = loss_gradient_and_output(net, X, Y, 0.7, 50)
    zs, activations = numpy_forward(net.weights, net.biases, net.cost, X)
    assert z.dtype == a.dtype == dtype and z.shape == a.shape == (11, 3)
    np.testing.assert_allclose(z, zs[-1], rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_allclose(a, activations[-1], rtol=RTOL[dtype], atol=RTOL[dtype])
    np.testing.assert_array_equal(grad, get_backend("numba").loss_gradient(net, X, Y, 0.7, 50))


# -- divergence -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_parts, split", [(1, "units"), (2, "units"), (2, "rows")])
def test_sgd_epoch_returns_first_diverged_batch(dtype, n_parts, split):
    sizes = [6, 5, 3]
    X, Y = sparse_data(40, sizes, dtype)
    X[17, 2] = np.inf  # row 17 sits in batch 3 of the identity order with batch size 5
    order = np.arange(40)
    fast = Network(sizes, dtype=dtype, seed=0)
    plain = Network(sizes, dtype=dtype, seed=0)
    assert run_fast_epoch(fast, X, Y, order, 5, 3.0, 0.0, n_parts, split=split) == 3
    assert run_plain_epoch(plain, X, Y, order, 5, 3.0, 0.0) == 3
    assert not np.all(np.isfinite(fast.params))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_parts, split", [(1, "units"), (2, "units"), (2, "rows")])
def test_unchecked_epoch_checks_once_at_the_end(dtype, n_parts, split):
    """The fast path: same arithmetic as the checked one; divergence reported as n_batches."""
    sizes = [6, 5, 3]
    X, Y = sparse_data(40, sizes, dtype)
    order = np.arange(40)
    checked, unchecked = Network(sizes, dtype=dtype, seed=0), Network(sizes, dtype=dtype, seed=0)
    assert run_fast_epoch(checked, X, Y, order, 5, 3.0, 0.5, n_parts, checked=True, split=split) == api.FINITE
    assert run_fast_epoch(unchecked, X, Y, order, 5, 3.0, 0.5, n_parts, checked=False, split=split) == api.FINITE
    np.testing.assert_array_equal(checked.params, unchecked.params)
    X[17, 2] = np.inf
    diverged = Network(sizes, dtype=dtype, seed=0)
    status = run_fast_epoch(diverged, X, Y, order, 5, 3.0, 0.0, n_parts, checked=False, split=split)
    assert status == api.DIVERGED_AT_UNKNOWN_BATCH


@pytest.mark.parametrize("dtype", DTYPES)
def test_backend_names_the_batch_after_an_unchecked_epoch_diverges(dtype):
    sizes = [6, 5, 3]
    X, Y = sparse_data(40, sizes, dtype)
    X[17, 2] = np.inf
    net, ref = Network(sizes, dtype=dtype, seed=0), Network(sizes, dtype=dtype, seed=0)
    assert get_backend("numba").sgd_epoch(net, X, Y, np.arange(40), 5, 3.0, 0.0, 40) == 3
    assert run_fast_epoch(ref, X, Y, np.arange(40), 5, 3.0, 0.0, 1) == 3
    np.testing.assert_array_equal(net.params, ref.params)  # left as the checked run leaves it


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_eta_diverges_at_the_same_batch_as_numpy(dtype):
    sizes = [6, 5, 3]
    X, Y = sparse_data(30, sizes, dtype)
    order = np.random.default_rng(0).permutation(30)
    net, ref = Network(sizes, dtype=dtype, seed=0), Network(sizes, dtype=dtype, seed=0)
    # the weight decay 1 - eta*lmbda/n is about -eta/30: |W| overflows in the second batch
    eta = 1e37 if dtype == np.float32 else 1e300
    got = get_backend("numba").sgd_epoch(net, X, Y, order, 3, eta, 1.0, 30)
    expected = get_backend("numpy").sgd_epoch(ref, X, Y, order, 3, eta, 1.0, 30)
    assert got == expected == 1


# -- float32 stays float32 -------------------------------------------------------
def _float32_calls():
    """One float32 call of each kernel from Python, so each dispatcher holds a float32 signature."""
    f = np.float32
    net = Network([6, 5, 4, 3], dtype="float32", seed=0)
    X, Y = sparse_data(16, net.sizes, f)
    sizes = np.asarray(net.sizes)
    rows = np.arange(5)
    W, b = np.ones((5, 6), f), np.ones(5, f)
    Z, D = np.ones((5, 5), f), np.ones((5, 5), f)
    return {
        "dense_forward_rows": lambda: fl.dense_forward_rows(Z, X, rows, W, b, 0, 5),
        "dense_update_rows": lambda: fl.dense_update_rows(W, b, X, rows, D, f(1), f(1), f(-0.1), f(1), 0, 5),
        "sigmoid_rows": lambda: fl.sigmoid_rows(Z, f(1)),
        "output_delta_rows": lambda: fl.output_delta_rows(Z[:, :3], Z[:, :3], Y, rows, 0, f(1)),
        "update_units": lambda: fk.update_units(net.params, kernel_net(net), api.new_work(sizes, 5, f), X, rows,
                                                0, 1, f(1), f(1), f(-0.1), True, 0, True),
        "sgd_epoch_serial": lambda: run_fast_epoch(net, X, Y, np.arange(16), 5, 3.0, 0.5, 1),
        "sgd_epoch_online": lambda: get_backend("numba").sgd_epoch(net, X, Y, np.arange(16), 1, 3.0, 0.5, 16),
        "fast.loss_gradient": lambda: loss_gradient_and_output(net, X, Y, 0.1, 16),
        "plain.sgd_epoch": lambda: run_plain_epoch(net, X, Y, np.arange(16), 5, 3.0, 0.5),
        "plain.dense_backward": lambda: pk.dense_backward(W, b, W, b, D, Z, f(1), f(1), f(-0.1)),
        "plain.loss_gradient": lambda: pk.loss_gradient(np.empty_like(net.params), net.params, sizes, X, Y, 0,
                                                        f(0.1), np.empty(16 * 18, f), np.empty(16 * 18, f)),
    }


KERNELS_BY_NAME = {
    "dense_forward_rows": fl.dense_forward_rows, "dense_update_rows": fl.dense_update_rows,
    "sigmoid_rows": fl.sigmoid_rows, "output_delta_rows": fl.output_delta_rows, "update_units": fk.update_units,
    "sgd_epoch_serial": fk.sgd_epoch_serial, "sgd_epoch_online": fk.sgd_epoch_online,
    "fast.loss_gradient": fk.loss_gradient,
    "plain.sgd_epoch": pk.sgd_epoch, "plain.dense_backward": pk.dense_backward,
    "plain.loss_gradient": pk.loss_gradient,
}


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
@pytest.mark.parametrize("name", list(KERNELS_BY_NAME))
def test_float32_kernels_never_widen_to_float64(name):
    """No ``fpext float -> double`` in a float32 kernel body (numba types ``1`` as int64).

    Recompiled without the on-disk cache, whose code cannot be inspected; only
    the kernel's own function is searched, not the Python-facing wrapper
    (which unboxes scalars through double).
    """
    import numba

    _float32_calls()[name]()
    kernel = KERNELS_BY_NAME[name]
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(kernel.py_func)
    # pure float32 signatures only: a float64 network reading float32 rows widens them on purpose
    sigs = [sig for sig in kernel.signatures
            if any(getattr(t, "dtype", t) == numba.float32 for t in sig)
            and not any(getattr(t, "dtype", t) == numba.float64 for t in sig)]
    assert sigs
    for sig in sigs:
        fresh.compile(sig)
        ir = fresh.inspect_llvm(sig)
        bodies = [fn for fn in ir.split("\ndefine ")[1:] if "@cpython." not in fn.split("(")[0]
                  and "@cfunc." not in fn.split("(")[0]]
        assert bodies
        for body in bodies:
            for value in re.findall(r"(%[\w.]+) = fpext float", body):
                # boxing a value for Python (an error message) is fine; arithmetic is not
                uses = re.findall(re.escape(value) + r"\b(?! =)", body)
                boxing = re.findall(r"@PyFloat_FromDouble\(double " + re.escape(value) + r"\)", body)
                assert len(uses) == len(boxing), f"{name}{sig} widens float32 to float64"


# -- batch size 1: the fused online epoch -------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES + [[6, 3]])
@pytest.mark.parametrize("cost_id", [0, 1, 2])
def test_online_epoch_matches_numpy(dtype, sizes, cost_id):
    X, Y = sparse_data(23, sizes, dtype)
    order = np.random.default_rng(2).permutation(23)
    fast = Network(sizes, cost=COSTS[cost_id], dtype=dtype, seed=0)
    ref = Network(sizes, cost=COSTS[cost_id], dtype=dtype, seed=0)
    assert get_backend("numba").sgd_epoch(fast, X, Y, order, 1, 3.0, 0.5, 23) == -1
    assert get_backend("numpy").sgd_epoch(ref, X, Y, order, 1, 3.0, 0.5, 23) == -1
    tol = 2e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(fast.params, ref.params, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES[:2])
@pytest.mark.parametrize("batch_size, n_parts", [
    (2 * fk.CHUNK_ROWS + 43, 1),  # one share of three chunks, the last of 43 rows
    (2 * fk.CHUNK_ROWS + 10, 2),  # two shares of 126 and 124 rows: a chunk and a few rows each; a last batch of 33
])
def test_row_split_shares_in_chunks_match_plain_kernel_and_numpy(dtype, sizes, batch_size, n_parts):
    """A share of more than CHUNK_ROWS rows runs a chunk at a time (gather, forward, back, add to its partial):
    the same epoch as the plain kernel and the numpy backend, rounding apart; with L2 and a short last batch."""
    n = 2 * fk.CHUNK_ROWS + 43
    X, Y = sparse_data(n, sizes, dtype, seed=2)
    order = np.random.default_rng(3).permutation(n)
    nets = {name: Network(sizes, cost="cross_entropy", dtype=dtype, seed=1) for name in ("plain", "fast", "numpy")}
    assert run_plain_epoch(nets["plain"], X, Y, order, batch_size, 2.0, 0.5) == -1
    assert run_fast_epoch(nets["fast"], X, Y, order, batch_size, 2.0, 0.5, n_parts, split="rows") == api.FINITE
    assert get_backend("numpy").sgd_epoch(nets["numpy"], X, Y, order, batch_size, 2.0, 0.5, n) == -1
    assert rel_err(nets["fast"].params, nets["plain"].params) < RTOL[dtype]
    assert rel_err(nets["fast"].params, nets["numpy"].params) < RTOL[dtype]
    assert rel_err(nets["fast"].params, Network(sizes, cost="cross_entropy", dtype=dtype, seed=1).params) > 1e-3


@pytest.mark.parametrize("dtype", DTYPES)
def test_online_epoch_divergence_names_the_example(dtype):
    sizes = [6, 5, 3]
    X, Y = sparse_data(12, sizes, dtype)
    X[7, 1] = np.inf
    net = Network(sizes, dtype=dtype, seed=0)
    assert get_backend("numba").sgd_epoch(net, X, Y, np.arange(12), 1, 3.0, 0.0, 12) == 7


@pytest.mark.skipif(JIT_DISABLED, reason="no dispatchers, no cache without the JIT")
def test_serial_and_parallel_epochs_have_their_own_cache_files():
    """numba's cache key ignores ``parallel``: shared files would serve one variant for both."""
    names = {d._cache._cache_file._index_name for d in (fk.sgd_epoch_serial, fk.sgd_epoch_parallel,
                                                          fk.sgd_epoch_rows)}
    assert len(names) == 3


@pytest.mark.skipif(JIT_DISABLED, reason="finds the kernels by their dispatchers")
def test_the_epoch_kernels_share_one_compiled_copy_of_each_layer_function():
    """No literal or prange-index argument in a call between kernels: each compiles a shared callee once more.

    A literal ``0`` passed to ``forward_rows`` is a type of its own, and so is
    prange's unsigned index; the online, serial, parallel and gradient kernels
    then each compiled their own copies (5 s of a cold bench --quick). An
    omitted default argument is a type of its own too, so every call passes
    them all (and, omitted, ``tiles`` would also run the vector tiles on two
    threads). Read
    from the source, because callees of a kernel loaded from numba's cache
    have no signatures to look at.
    """
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(fk))
    kernels = {name for name, obj in vars(fk).items() if hasattr(obj, "py_func")} - {"share"}  # share: inlined
    prange_indices = {node.target.id for node in ast.walk(tree) if isinstance(node, ast.For)
                      and isinstance(node.iter, ast.Call) and getattr(node.iter.func, "id", "") == "prange"}
    calls, odd = 0, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in kernels:
            calls += 1
            for arg in list(node.args) + [k.value for k in node.keywords]:
                if (isinstance(arg, ast.Constant) and isinstance(arg.value, (bool, int))) or (
                        isinstance(arg, ast.Name) and arg.id in prange_indices):
                    odd.append(f"line {node.lineno}: {node.func.id}(... {ast.unparse(arg)} ...)")
    for node in ast.walk(tree):  # an omitted default is a type of its own too
        if isinstance(node, ast.FunctionDef) and node.name in kernels and node.args.defaults:
            odd.append(f"line {node.lineno}: {node.name} has default arguments")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in kernels:  # fast_layers' defaults
            n_params = vars(fk)[node.func.id].py_func.__code__.co_argcount
            if len(node.args) + len(node.keywords) < n_params:
                odd.append(f"line {node.lineno}: {node.func.id} called without all of its {n_params} arguments")
    assert prange_indices and calls > 20
    assert not odd, odd


# -- the shape of the kernel modules ---------------------------------------------------------------
def _dispatchers(module):
    import numba.core.registry

    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.py_func.__module__ == module.__name__}


@pytest.mark.skipif(JIT_DISABLED, reason="no dispatchers without the JIT")
@pytest.mark.parametrize("module, allowed", [(pk, {pk}), (ft, {ft}), (fl, {fl, ft}), (fk, {fk, fl})])
def test_cached_kernels_call_only_kernels_of_their_own_chain(module, allowed):
    """numba checks a cached kernel against its own source file only: a callee elsewhere could go stale.

    The plain kernels and fast_tiles call only themselves; fast_layers calls
    fast_tiles and fast_kernels calls fast_layers, each fingerprinting the
    source below it (next test). Nothing fast calls the plain kernels.
    """
    import numba.core.registry

    names = {m.__name__ for m in allowed}
    for name, kernel in _dispatchers(module).items():
        for ref in kernel.py_func.__code__.co_names:
            callee = kernel.py_func.__globals__.get(ref)
            if isinstance(callee, numba.core.registry.CPUDispatcher):
                assert callee.py_func.__module__ in names, f"{module.__name__}.{name} calls {ref} of another module"
    if module is not pk:
        assert not [v for v in vars(module).values() if getattr(v, "__module__", None) == pk.__name__]


@pytest.mark.parametrize("module, name, callee", [(fk, "FAST_LAYERS_SHA256", fl), (fl, "FAST_TILES_SHA256", ft)])
def test_fast_kernels_know_the_code_below_them_they_were_compiled_against(module, name, callee):
    """Cached code contains its callees' code: a changed callee module needs a new fingerprint in its caller.

    Updating ``FAST_TILES_SHA256`` changes fast_layers.py, and with it the
    ``FAST_LAYERS_SHA256`` that fast_kernels.py must record: numba then
    discards both modules' cached kernels instead of running stale ones.
    """
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256(Path(callee.__file__).read_bytes()).hexdigest()
    file = Path(callee.__file__).name
    assert getattr(module, name) == digest, (
        f'{file} changed: set {name} = "{digest}" in mbtrain/{Path(module.__file__).name}')


def test_kernel_ids_and_status_codes_never_change():
    """These values are compiled into the cached kernels, which numba does not revalidate against _kernel_api."""
    from mbtrain.costs import COSTS

    assert (api.QUADRATIC, api.CROSS_ENTROPY, api.SOFTMAX) == (0, 1, 2)
    assert (api.FINITE, api.DIVERGED_AT_UNKNOWN_BATCH) == (-1, -2)
    assert {name: cls.kernel_id for name, cls in COSTS.items() if cls.kernel_id is not None} == {
        "quadratic": api.QUADRATIC, "cross_entropy": api.CROSS_ENTROPY, "softmax": api.SOFTMAX}
    assert fl.FORWARD_ROWS == fl.FORWARD_UNITS == 4 and fl.UPDATE_ROWS == 8  # what the tile loops spell out


def _vector_multiplies_per_block(kernel, *args):
    """Counts of vector float multiplies (``fmul <N x float>``) in each basic block, compiled afresh for ``args``."""
    import numba

    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(kernel.py_func)
    sig = tuple(numba.typeof(a) for a in args)
    fresh.compile(sig)
    return [len(re.findall(r"= fmul [a-z ]*<\d+ x float>", block)) for block in fresh.inspect_llvm(sig).split("\n\n")]


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
def test_the_tiles_inner_loops_are_vectorized():
    """LLVM vectorizes the register tiles only while their accumulators stay scalars in registers.

    The 4 x 4 forward tile has 16 accumulators and the 8-row update 8 products:
    a loop body with that many vector multiplies is the vectorized tile. Without
    it (a spilled or reloaded accumulator, a gather) the kernels run several
    times slower while every other test still passes.
    """
    f = np.float32
    A, W, b, D = np.ones((9, 40), f), np.ones((12, 40), f), np.ones(12, f), np.ones((9, 12), f)
    forward = _vector_multiplies_per_block(fl.rowwise_forward_rows, np.empty((9, 12), f), A, np.arange(9), W, b, 0, 12)
    update = _vector_multiplies_per_block(fl.rowwise_update_units, W, A, np.arange(9), D, f(1), f(-0.1), f(1), 0, 12)
    assert max(forward) >= 16 and max(update) >= 8, (forward, update)


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
@pytest.mark.skipif(not ft.WIDE_VECTORS, reason="the tiles compile for AVX-512")
def test_the_update_tiles_row_loop_stays_rolled_and_in_registers():
    """One row per trip of the 6 x 4 tile's loop (24 FMAs in its block, not 48) and no vector spilled to the stack.

    Unrolled twice, two rows' input vectors and the 24 accumulators exceed the
    32 registers: the copy linked into the epoch spilled 26 vectors and reloaded
    50 in that loop, and ran the epoch 1.7x slower.
    """
    import numba

    f = np.float32
    args = (np.ones((12, 784), f), np.ones((100, 784), f), np.arange(100), np.ones((100, 12), f), f(1), f(-0.1), 0, 12)
    options = {k: v for k, v in ft.tiled_update_units.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(ft.tiled_update_units.py_func)  # cached code cannot be inspected
    sig = tuple(numba.typeof(a) for a in args)
    fresh.compile(sig)
    blocks = re.split(r"\n\.LBB\S+:", fresh.inspect_asm(sig))
    fmas = [len(re.findall(r"vfmadd\w+[^\n]*zmm", block)) for block in blocks]
    tile = [block for block, n in zip(blocks, fmas) if n >= 24]
    assert max(fmas) == 24, fmas
    assert not any(re.search(r"zmm\d+, -?\d*\(%rsp\)", block) for block in tile)


@pytest.mark.skipif(JIT_DISABLED, reason="inspects compiled code")
def test_the_vector_tiles_hold_24_accumulators():
    """fast_tiles' update and forward tiles: a loop body of 24 fused multiply-adds of whole vectors."""
    import numba

    from mbtrain import fast_tiles as ft

    f = np.float32
    A, W, b, D = np.ones((12, 64), f), np.ones((12, 64), f), np.ones(12, f), np.ones((12, 12), f)
    for kernel, args in ((ft.tiled_update_units, (W, A, np.arange(12), D, f(1), f(-0.1), 0, 12)),
                         (ft.tiled_forward_rows, (np.empty((12, 12), f), A, np.arange(12), W, b, 0, 12))):
        options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
        fresh = numba.njit(**options)(kernel.py_func)  # cached code cannot be inspected
        sig = tuple(numba.typeof(a) for a in args)
        fresh.compile(sig)
        blocks = fresh.inspect_llvm(sig).split("\n\n")
        assert max(len(re.findall(r"call <16 x float> @llvm\.fma\.v16f32", block)) for block in blocks) >= 24


# -- the row-split step ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_add_partials_sums_the_threads_rows_into_out(dtype, n):
    """``out[lo:hi] = s out + sum of n partials`` (numpy's sum the oracle); ``s == 0``: out is never read."""
    rng = np.random.default_rng(n)
    partials = rng.normal(size=(4, 37)).astype(dtype)  # a row more than is summed: it must not count
    out = rng.normal(size=37).astype(dtype)
    expected = out.copy()
    expected[5:30] = dtype(0.5) * out[5:30] + partials[:n, 5:30].sum(axis=0)
    got = out.copy()
    assert fl.add_partials(got, partials, n, 5, 30, dtype(0.5), True)
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.array_equal(got[:5], out[:5]) and np.array_equal(got[30:], out[30:])  # outside the range: untouched
    unread = np.full(37, np.nan, dtype=dtype)
    assert fl.add_partials(unread, partials, n, 5, 30, dtype(0), True)
    np.testing.assert_allclose(unread[5:30], partials[:n, 5:30].sum(axis=0), rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_partials_reports_a_non_finite_sum_only_when_checked(dtype):
    partials = np.ones((2, 8), dtype=dtype)
    partials[1, 3] = np.inf
    out = np.zeros(8, dtype=dtype)
    assert not fl.add_partials(out.copy(), partials, 2, 0, 8, dtype(1), True)
    assert fl.add_partials(out, partials, 2, 0, 8, dtype(1), False)  # unchecked: not looked at
    assert np.isinf(out[3])
