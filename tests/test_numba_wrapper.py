"""The numba backend's Python wrapper: the scalars and arrays it hands the kernels, checked directly.

The kernel tests call the kernels with ``beta_last``, the decay and the rule
computed by the test itself, so a slip in the wrapper's arithmetic (the last
batch's rows, ``1 - eta*lmbda/n``, a scalar left as a Python float, which numba
types float64 and so widens a float32 epoch) would show only as a backend
mismatch somewhere else. Here each kernel is replaced by a spy that records its
arguments and then runs the real kernel.
"""
from __future__ import annotations

import inspect
import math

import numba
import numpy as np
import pytest

import mbtrain
from mbtrain import _kernel_api as api, fast_kernels as fk
from mbtrain.backends import FINITE, get_backend
from mbtrain.backends import numba_matrix
from mbtrain.backends.numba_matrix import PARALLEL_MIN_BATCH, ROW_SPLIT_ROWS_PER_UNIT, loss_gradient_and_output
from mbtrain.optim import Adam, Momentum

DTYPES = [np.float32, np.float64]


@pytest.fixture
def kernel_calls(monkeypatch):
    """Replace the epoch and gradient kernels by spies: ``calls`` gets ``(name, arguments by name)``."""
    calls = []
    for name in ("sgd_epoch_serial", "sgd_epoch_parallel", "sgd_epoch_rows", "sgd_epoch_online", "optimizer_epoch_serial",
                 "optimizer_epoch_parallel", "optimizer_epoch_rows", "loss_gradient"):
        real = getattr(fk, name)
        signature = inspect.signature(real.py_func)

        def spy(*args, _real=real, _name=name, _signature=signature, **kwargs):
            bound = _signature.bind(*args, **kwargs)
            bound.apply_defaults()
            calls.append((_name, {key: _copy(value) for key, value in bound.arguments.items()}))
            return _real(*args, **kwargs)

        monkeypatch.setattr(fk, name, spy)
    return calls


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def problem(n_rows, dtype, sizes=(6, 9, 3), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n_rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=n_rows)
    net = mbtrain.Network(list(sizes), cost="cross_entropy", dtype=dtype, seed=1)
    return net, X, y, rng.permutation(n_rows)


def assert_typed(value, dtype, expected):
    """A scalar of exactly ``dtype`` (not a Python float) equal to ``expected`` rounded to it."""
    assert type(value) is np.dtype(dtype).type, f"{value!r} is {type(value).__name__}, not {np.dtype(dtype).name}"
    assert value == np.dtype(dtype).type(expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_rows, batch_size, last", [(23, 5, 3), (20, 5, 5), (3, 10, 3), (6, 5, 1)])
def test_sgd_epoch_scalars(kernel_calls, dtype, n_rows, batch_size, last):
    """beta_full = -eta/b, beta_last = -eta/(rows of the last batch), decay = 1 - eta*lmbda/n, in the dtype."""
    net, X, y, order = problem(n_rows, dtype)
    eta, lmbda, n = 2.0, 0.5, 40
    with mbtrain.threads.limit(1):
        assert get_backend("numba").sgd_epoch(net, X, y, order, batch_size, eta, lmbda, n) == FINITE
    [(name, args)] = kernel_calls
    b = min(batch_size, n_rows)  # a batch larger than the rows is the rows
    assert name == "sgd_epoch_serial" and args["n_parts"] == 1 and args["checked"] is False
    assert_typed(args["beta_full"], dtype, -eta / b)
    assert_typed(args["beta_last"], dtype, -eta / last)
    assert_typed(args["decay"], dtype, 1 - eta * lmbda / n)
    assert args["work"].index.shape == (b,) and args["work"].acts.dtype == dtype
    assert args["order"].dtype == np.int64 and np.array_equal(args["order"], order)
    assert np.array_equal(args["X"], X) and args["X"].dtype == dtype
    net_args = args["net"]
    assert net_args.sizes.dtype == np.int64 and list(net_args.sizes) == [6, 9, 3]
    assert net_args.cost_id == api.CROSS_ENTROPY
    assert_typed(net_args.one, dtype, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_online_epoch_scalars(kernel_calls, dtype):
    net, X, y, order = problem(7, dtype)
    assert get_backend("numba").sgd_epoch(net, X, y, order, 1, 2.0, 0.5, 40) == FINITE
    [(name, args)] = kernel_calls
    assert name == "sgd_epoch_online"
    assert_typed(args["beta"], dtype, -2.0)
    assert_typed(args["decay"], dtype, 1 - 2.0 * 0.5 / 40)


#: The smallest batch one thread takes through the row-split epoch.
ONE_THREAD_BATCH = numba_matrix.ONE_THREAD_ROW_SPLIT_CHUNKS * fk.CHUNK_ROWS
#: A hidden width whose row-split threshold on two threads lies above PARALLEL_MIN_BATCH, and that batch size.
WIDE = math.ceil(PARALLEL_MIN_BATCH * 1.1 / (2 * ROW_SPLIT_ROWS_PER_UNIT))
ROWS_BATCH = 2 * math.ceil(ROW_SPLIT_ROWS_PER_UNIT * WIDE)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("threads, batch_size, hidden, kernel, parts", [
    (2, PARALLEL_MIN_BATCH, WIDE, "sgd_epoch_parallel", 2), (2, PARALLEL_MIN_BATCH - 1, WIDE, "sgd_epoch_serial", 1),
    (1, PARALLEL_MIN_BATCH, WIDE, "sgd_epoch_serial", 1),
    # ROW_SPLIT_ROWS_PER_UNIT rows a thread per unit of the widest layer: the update split by rows too
    (2, ROWS_BATCH, WIDE, "sgd_epoch_rows", 2), (2, ROWS_BATCH - 2, WIDE, "sgd_epoch_parallel", 2),
    (2, PARALLEL_MIN_BATCH, 9, "sgd_epoch_rows", 2),
    # one thread: from ONE_THREAD_ROW_SPLIT_CHUNKS chunks of rows a batch, the row-split epoch in chunks
    (1, ONE_THREAD_BATCH, 9, "sgd_epoch_rows", 1), (1, ONE_THREAD_BATCH - 1, 9, "sgd_epoch_serial", 1),
])
def test_parallel_epoch_is_chosen_by_threads_and_batch_size(kernel_calls, threads, batch_size, hidden, kernel, parts):
    assert PARALLEL_MIN_BATCH < ROWS_BATCH - 2
    net, X, y, order = problem(2 * batch_size + 22, np.float64, sizes=(6, hidden, 3))
    with mbtrain.threads.limit(threads):
        numba.set_num_threads(threads)
        assert get_backend("numba").sgd_epoch(net, X, y, order, batch_size, 1.0, 0.0, len(X)) == FINITE
    [(name, args)] = kernel_calls
    assert (name, args["n_parts"]) == (kernel, parts)
    assert args["beta_last"] == -1.0 / 22
    if kernel == "sgd_epoch_rows":
        assert args["partials"].shape == (parts, net.params.size) and args["partials"].dtype == net.dtype


def test_row_split_epoch_agrees_with_the_unit_split(monkeypatch):
    """The same epoch through both two-thread kernels, by the backend: the same parameters, rounding apart."""
    net, X, y, order = problem(500, np.float64, sizes=(6, 11, 3))
    nets = {}
    for split, per_unit in (("units", 10 ** 9), ("rows", 1)):
        monkeypatch.setattr(numba_matrix, "ROW_SPLIT_ROWS_PER_UNIT", per_unit)
        nets[split] = net.copy()
        with mbtrain.threads.limit(2):
            numba.set_num_threads(2)
            assert get_backend("numba").sgd_epoch(nets[split], X, y, order, 100, 1.0, 0.5, 500) == FINITE
    np.testing.assert_allclose(nets["rows"].params, nets["units"].params, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(nets["rows"].params, net.params)


def test_an_unchecked_divergence_reruns_checked_from_the_start(monkeypatch):
    """Status -2 from the fast pass: parameters put back, the epoch rerun checked, its batch returned."""
    net, X, y, order = problem(23, np.float64)
    start = net.params.copy()
    runs = []

    def diverging(net, work, X, codes, scale, Y, order, beta_full, beta_last, decay, n_parts, checked):
        runs.append((checked, net.params.copy()))
        net.params[:] = np.nan
        return 3 if checked else api.DIVERGED_AT_UNKNOWN_BATCH

    monkeypatch.setattr(fk, "sgd_epoch_serial", diverging)
    with mbtrain.threads.limit(1):
        assert get_backend("numba").sgd_epoch(net, X, y, order, 5, 2.0, 0.0, 23) == 3
    assert [checked for checked, _ in runs] == [False, True]
    np.testing.assert_array_equal(runs[0][1], start)
    np.testing.assert_array_equal(runs[1][1], start)  # the checked rerun starts from the epoch's parameters


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", [Momentum(mu=0.8), Momentum(mu=0.7, nesterov=True),
                                       Adam(beta1=0.85, beta2=0.99, eps=1e-6)])
def test_optimizer_epoch_scalars_and_rule(kernel_calls, dtype, optimizer):
    """inv_full = 1/b, inv_last = 1/(rows of the last batch), lmbda/n and the rule's fields, in the dtype."""
    net, X, y, order = problem(23, dtype)
    eta, lmbda, n = 0.05, 0.5, 40
    state = optimizer.new_state(net.layout.size, net.dtype)
    state.step = 7
    with mbtrain.threads.limit(1):
        assert get_backend("numba").optimizer_epoch(net, X, y, order, 5, eta, lmbda, n, optimizer, state) == FINITE
    [(name, args)] = kernel_calls
    assert name == "optimizer_epoch_serial" and args["n_parts"] == 1 and args["checked"] is False
    assert_typed(args["inv_full"], dtype, 1 / 5)
    assert_typed(args["inv_last"], dtype, 1 / 3)
    assert_typed(args["lmbda_over_n"], dtype, lmbda / n)
    assert args["step"] == 7 and state.step == 7 + 5  # the steps before the epoch; then its 5 batches
    rule = args["rule"]
    assert rule.kind == optimizer.kind_id
    beta1, beta2 = getattr(optimizer, "beta1", 0.0), getattr(optimizer, "beta2", 0.0)
    assert_typed(rule.eta, dtype, eta)
    assert_typed(rule.mu, dtype, getattr(optimizer, "mu", 0.0))
    assert_typed(rule.beta1, dtype, beta1)
    assert_typed(rule.one_minus_beta1, dtype, 1.0 - beta1)  # computed in float64, then rounded once
    assert_typed(rule.beta2, dtype, beta2)
    assert_typed(rule.one_minus_beta2, dtype, 1.0 - beta2)
    assert_typed(rule.eps, dtype, getattr(optimizer, "eps", 1.0))
    assert (rule.eta64, rule.beta1_64, rule.beta2_64) == (eta, beta1, beta2)
    assert all(type(v) is float for v in (rule.eta64, rule.beta1_64, rule.beta2_64))
    first, second = args["state"]
    assert first.dtype == dtype and second.dtype == dtype
    assert second.size == (net.layout.size if isinstance(optimizer, Adam) else 0)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
@pytest.mark.parametrize("batch_size, hidden, kernel", [
    (ROWS_BATCH, WIDE, "optimizer_epoch_rows"), (ROWS_BATCH - 2, WIDE, "optimizer_epoch_parallel"),
])
def test_optimizer_epoch_split_is_chosen_as_sgd_s(kernel_calls, batch_size, hidden, kernel):
    net, X, y, order = problem(2 * batch_size + 22, np.float64, sizes=(6, hidden, 3))
    optimizer = Adam()
    state = optimizer.new_state(net.layout.size, net.dtype)
    with mbtrain.threads.limit(2):
        numba.set_num_threads(2)
        assert get_backend("numba").optimizer_epoch(net, X, y, order, batch_size, 0.01, 0.0, len(X), optimizer,
                                                    state) == FINITE
    [(name, args)] = kernel_calls
    assert (name, args["n_parts"]) == (kernel, 2)
    if kernel == "optimizer_epoch_rows":
        assert args["partials"].shape == (2, net.params.size) and args["partials"].dtype == net.dtype
    assert state.step == 3


def test_optimizer_step_count_after_a_divergence(monkeypatch):
    """A rerun that names batch k leaves step + k + 1: the batches that ran, the bad one included."""
    net, X, y, order = problem(23, np.float64)
    optimizer = Adam()
    state = optimizer.new_state(net.layout.size, net.dtype)
    state.step = 4

    def diverging(net, work, X, codes, scale, Y, order, grad, state, rule, step, lmbda_over_n, inv_full, inv_last,
                  n_parts, checked):
        return 2 if checked else api.DIVERGED_AT_UNKNOWN_BATCH

    monkeypatch.setattr(fk, "optimizer_epoch_serial", diverging)
    with mbtrain.threads.limit(1):
        assert get_backend("numba").optimizer_epoch(net, X, y, order, 5, 0.01, 0.0, 23, optimizer, state) == 2
    assert state.step == 4 + 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_gradient_scalars(kernel_calls, dtype):
    net, X, y, _ = problem(11, dtype)
    Y = np.eye(3, dtype=dtype)[y]
    loss_gradient_and_output(net, X, Y, 0.5, 40)
    [(name, args)] = kernel_calls
    assert name == "loss_gradient"
    assert_typed(args["lmbda_over_n"], dtype, 0.5 / 40)
    assert_typed(args["inv_m"], dtype, 1 / 11)
    assert args["work"].index.shape == (11,) and args["z_out"].shape == (11, 3)


@pytest.mark.parametrize("threads, batch_size, hidden, kernel", [
    (1, ONE_THREAD_BATCH, 9, "sgd_epoch_rows"), (1, ONE_THREAD_BATCH - 1, 9, "sgd_epoch_serial"),
    (1, 1, 9, "sgd_epoch_online"),
    (2, PARALLEL_MIN_BATCH, 9, "sgd_epoch_rows"), (2, PARALLEL_MIN_BATCH, WIDE, "sgd_epoch_parallel"),
    (2, ONE_THREAD_BATCH, 9, "sgd_epoch_rows"),
])
def test_prepare_compiles_the_epoch_fit_takes(kernel_calls, threads, batch_size, hidden, kernel):
    """prepare runs (so compiles) the very epoch kernel a fit of this batch size takes on this many threads:
    its probe network splits a batch by rows or by units as the real one does."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two numba threads")
    net = mbtrain.Network([6, hidden, 3], seed=0)
    with mbtrain.threads.limit(threads):
        numba.set_num_threads(threads)
        assert get_backend("numba").prepare(net, batch_size) >= 0.0
        net2, X, y, order = problem(batch_size + 5, np.float64, sizes=(6, hidden, 3))
        get_backend("numba").sgd_epoch(net2, X, y, order, batch_size, 1.0, 0.0, len(X))
    (prepared, probe_args), (fitted, args) = kernel_calls
    assert prepared == fitted == kernel
    assert probe_args["n_parts"] == args["n_parts"] == threads if batch_size > 1 else True


def test_compile_for_a_batch_size_runs_the_epoch_kernels_its_fits_take(kernel_calls):
    """backend.compile (the harness's, reported apart from run time) on one thread: online, serial, chunked rows."""
    with mbtrain.threads.limit(1):
        get_backend("numba").compile("float64", "quadratic", batch_sizes=[1, 10, ONE_THREAD_BATCH + 100])
    assert {name for name, _ in kernel_calls} == {"sgd_epoch_online", "sgd_epoch_serial", "sgd_epoch_rows"}
