"""The numba backend's fused optimizer epochs (momentum, Nesterov, Adam) against the numpy reference.

Each epoch is one jitted call (``mbtrain.fast_kernels.optimizer_epoch_serial``
or ``_parallel``); the numpy backend steps :func:`mbtrain.optim.apply_step` per
mini-batch from Python. They must agree after an epoch: parameters, state and
step count, at batch sizes that exercise every tile of the kernels (1, 7, 10)
and, on two threads, the parallel variants (64, 100), with widths above the
4-unit tiles and not a multiple of them: the update split by units
(``[6, 70, 3]`` at 64 rows: 32 rows a thread, under ``ROW_SPLIT_ROWS_PER_UNIT``
x 70) and by rows (the others: partial gradients summed).
"""
import numba
import numpy as np
import pytest

import mbtrain
import mbtrain.fast_kernels as fk
import mbtrain.optim as optim
from mbtrain import _kernel_api as api
from mbtrain.backends import FINITE, get_backend
from mbtrain.backends import numba_matrix
from mbtrain.optim import Adam, Momentum, get_optimizer

OPTIMIZER_NAMES = ("momentum", "nesterov", "adam")
COSTS = ("quadratic", "cross_entropy", "softmax")
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


def _epoch(backend, sizes, cost, dtype, optimizer, batch_size, n_rows=130, eta=0.05, lmbda=1.0, epochs=2,
           labels=True):
    """``(status, params, state)`` after ``epochs`` epochs of ``optimizer`` on ``backend`` from one start."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n_rows, sizes[0])).astype(dtype)
    Y = rng.integers(0, sizes[-1], size=n_rows)
    if not labels:
        Y = rng.random((n_rows, sizes[-1])).astype(dtype)
    net = mbtrain.Network(sizes, cost=cost, dtype=dtype, seed=3)
    optimizer = get_optimizer(optimizer)
    state = optimizer.new_state(net.layout.size, net.dtype)
    impl = get_backend(backend)
    status = FINITE
    for _ in range(epochs):  # the second epoch starts from a state that is not zero (Adam's t > batches)
        order = rng.permutation(n_rows)
        status = impl.optimizer_epoch(net, X, Y, order, batch_size, eta, lmbda, n_rows, optimizer, state)
        if status != FINITE:
            break
    return status, net.params.copy(), state


def _assert_close(expected, got, tolerance):
    scale = max(np.max(np.abs(expected)), 1e-30)
    assert np.max(np.abs(expected - got)) / scale <= tolerance


def _assert_same_run(reference, fused, dtype):
    (status0, params0, state0), (status1, params1, state1) = reference, fused
    assert status0 == status1 == FINITE
    assert params1.dtype == np.dtype(dtype)
    _assert_close(params0, params1, TOLERANCE[dtype])
    assert state0.step == state1.step > 0
    assert sorted(state0.arrays) == sorted(state1.arrays)
    for key, array in state1.arrays.items():
        assert array.dtype == np.dtype(dtype)  # float32 state stays float32
        _assert_close(state0.arrays[key], array, TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("batch_size, sizes", [(1, [6, 9, 3]), (7, [6, 17, 3]), (10, [6, 9, 5, 3])])
def test_fused_serial_epoch_equals_numpy(optimizer, cost, dtype, batch_size, sizes):
    reference = _epoch("numpy", sizes, cost, dtype, optimizer, batch_size)
    with mbtrain.threads.limit(1):
        fused = _epoch("numba", sizes, cost, dtype, optimizer, batch_size)
    _assert_same_run(reference, fused, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("batch_size, sizes, cost", [(64, [6, 70, 3], "cross_entropy"), (64, [6, 17, 3], "cross_entropy"),
                                                      (100, [6, 9, 3], "softmax"), (64, [6, 9, 3], "quadratic")])
def test_fused_parallel_epoch_equals_numpy(optimizer, cost, dtype, batch_size, sizes):
    reference = _epoch("numpy", sizes, cost, dtype, optimizer, batch_size, n_rows=230)
    with mbtrain.threads.limit(2):
        numba.set_num_threads(2)
        fused = _epoch("numba", sizes, cost, dtype, optimizer, batch_size, n_rows=230)
        assert numba.get_num_threads() == 2
    _assert_same_run(reference, fused, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_row_split_epoch_in_chunks_equals_numpy(monkeypatch, optimizer, dtype, threads):
    """Batches of several CHUNK_ROWS chunks: one thread takes the row-split epoch (its share a chunk at a time),
    two threads shares of more than a chunk each; the same run as numpy's, rounding apart."""
    calls = []
    real = fk.optimizer_epoch_rows
    monkeypatch.setattr(fk, "optimizer_epoch_rows", lambda *a, **k: calls.append(k["n_parts"]) or real(*a, **k))
    batch_size = numba_matrix.ONE_THREAD_ROW_SPLIT_CHUNKS * fk.CHUNK_ROWS + 6
    reference = _epoch("numpy", [6, 9, 3], "cross_entropy", dtype, optimizer, batch_size, n_rows=batch_size + 37)
    with mbtrain.threads.limit(threads):
        numba.set_num_threads(threads)
        fused = _epoch("numba", [6, 9, 3], "cross_entropy", dtype, optimizer, batch_size, n_rows=batch_size + 37)
    _assert_same_run(reference, fused, dtype)
    assert calls and set(calls) == {threads}


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_fused_epoch_with_target_matrix(optimizer):
    runs = [_epoch(b, [6, 9, 3], "quadratic", "float64", optimizer, 7, labels=False) for b in ("numpy", "numba")]
    _assert_same_run(*runs, "float64")


def test_the_fused_epoch_is_one_jitted_call(monkeypatch):
    """No per-batch Python: the backend's gradient and apply_step are never called."""
    backend = get_backend("numba")
    calls = []
    monkeypatch.setattr(type(backend), "loss_gradient", lambda *args: calls.append("gradient"))
    monkeypatch.setattr(optim, "apply_step", lambda *args: calls.append("step"))
    status, _, state = _epoch("numba", [6, 9, 3], "cross_entropy", "float64", "adam", 10, epochs=1)
    assert status == FINITE and state.step == 13 and calls == []


def test_non_default_hyperparameters_are_used():
    for optimizer in (Momentum(mu=0.5, nesterov=True), Adam(beta1=0.5, beta2=0.9, eps=1e-3)):
        runs = [_epoch(b, [6, 9, 3], "cross_entropy", "float64", optimizer, 10) for b in ("numpy", "numba")]
        _assert_same_run(*runs, "float64")
        default = _epoch("numba", [6, 9, 3], "cross_entropy", "float64", optimizer.name, 10)
        assert np.max(np.abs(default[1] - runs[1][1])) > 1e-6


def test_kind_ids_are_the_kernels():
    assert (optim.SGD_KIND, optim.MOMENTUM_KIND, optim.NESTEROV_KIND, optim.ADAM_KIND) == (0, 1, 2, 3)
    assert (api.SGD_KIND, api.MOMENTUM_KIND, api.NESTEROV_KIND, api.ADAM_KIND) == (0, 1, 2, 3)
    names = {k.py_func.__qualname__ for k in (fk.optimizer_epoch_serial, fk.optimizer_epoch_parallel,
                                              fk.optimizer_epoch_rows)}
    assert len(names) == 3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("threads, batch_size, hidden", [(1, 5, 9), (2, 64, 9), (2, 64, 70)])  # 2: rows, units split
def test_divergence_names_the_same_batch_as_numpy(optimizer, dtype, threads, batch_size, hidden):
    eta = 1e38 if dtype == "float32" else 1e307  # Adam's steps are about eta: near the largest finite value
    sizes = [6, hidden, 3]
    reference = _epoch("numpy", sizes, "cross_entropy", dtype, optimizer, batch_size, n_rows=400, eta=eta, epochs=1)
    with mbtrain.threads.limit(threads):
        numba.set_num_threads(threads)
        fused = _epoch("numba", sizes, "cross_entropy", dtype, optimizer, batch_size, n_rows=400, eta=eta, epochs=1)
    assert reference[0] >= 0
    assert fused[0] == reference[0]
    assert fused[2].step == reference[2].step == reference[0] + 1


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_diverging_fit_keeps_finite_parameters_and_state_as_numpy(optimizer):
    rng = np.random.default_rng(0)
    X = rng.random((60, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    kept = {}
    for backend in ("numpy", "numba"):
        net = mbtrain.Network([6, 9, 3], dtype="float32", seed=0)
        net.fit(X, y, epochs=1, batch_size=5, eta=0.01, optimizer=optimizer, backend=backend, seed=1)
        with pytest.raises(mbtrain.TrainingDiverged) as info:
            net.fit(X, y, epochs=2, batch_size=5, eta=1e38, optimizer=optimizer, backend=backend, seed=2)
        state = net.optimizer_state
        assert np.isfinite(net.params).all() and state.first_nonfinite() is None
        kept[backend] = (info.value.epoch, info.value.batch, net.params.copy(), state)
    (epoch0, batch0, params0, state0), (epoch1, batch1, params1, state1) = kept["numpy"], kept["numba"]
    assert (epoch0, batch0) == (epoch1, batch1)
    assert state0.step == state1.step
    _assert_close(params0, params1, 1e-4)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_fit_on_numba_equals_fit_on_numpy(optimizer):
    rng = np.random.default_rng(1)
    X = rng.random((90, 6))
    y = rng.integers(0, 3, size=90)
    nets = {}
    for backend in ("numpy", "numba"):
        net = mbtrain.Network([6, 17, 3], cost="cross_entropy", dtype="float64", seed=0)
        history = net.fit(X, y, epochs=3, batch_size=10, eta=0.05, lmbda=0.5, optimizer=optimizer,
                          backend=backend, seed=4, monitor=False)
        assert history.attrs["optimizer"]["name"] == optimizer
        nets[backend] = net
    _assert_close(nets["numpy"].params, nets["numba"].params, 1e-9)
    assert nets["numpy"].optimizer_state.step == nets["numba"].optimizer_state.step == 27
    for key, array in nets["numba"].optimizer_state.arrays.items():
        _assert_close(nets["numpy"].optimizer_state.arrays[key], array, 1e-9)


def test_prepare_compiles_the_optimizer_epoch():
    """prepare takes the fit's optimizer; afterwards the fused kernels have a compiled signature."""
    backend = get_backend("numba")
    net = mbtrain.Network([6, 9, 3], cost="cross_entropy", seed=0)
    X, y = np.zeros((4, 6)), np.zeros(4, dtype=np.int64)
    assert backend.prepare(net, 10, Y=y, X=X, optimizer=Adam()) >= 0.0
    assert fk.optimizer_epoch_serial.signatures
    assert get_backend("numpy").prepare(net, 10, Y=y, X=X, optimizer=Adam()) == 0.0
