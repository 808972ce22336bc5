"""Six realistic bugs that a mutation pass planted and the rest of the suite let through (issue 17).

Each test here fails with its bug planted and passes on the code as it is:

1. gradcheck's default tolerance loosened (1e-6 -> 1e-2): small, realistic bugs (an L2 term
   forgotten or halved, with the README's ``lmbda=0.1, n=1000``) must still fail.
2. gradcheck reporting the worst entry's index in the transposed shape: one wrong entry in a
   non-square layer must be named by its own ``(row, column)``.
3. ``fit`` drawing the same shuffle order every epoch: each epoch's order must differ and equal
   a replay of the documented stream (``net.rng.permutation(n)`` once per epoch).
4. The sweep's runs reusing one permutation for all epochs: the same check for
   :func:`mbtrain.bench.trial.run_trial`.
5. A float32 epoch widened to float64 inside a backend: no float64 array in any of mbtrain's
   Python frames during a float32 epoch (every backend), and the numpy and numba epochs equal a
   float32 reference bit for bit.
6. The parallel update splitting rows or units with floor division: the parallel epochs against
   the numpy reference at widths above 8 (9, 17, 33 units; batches of 64 and 65 rows on two
   shares), directly and through ``fit`` on two numba threads.
"""
from __future__ import annotations

import sys

import numba
import numpy as np
import pytest

import mbtrain
from mbtrain import _kernel_api as api, fast_kernels as fk
from mbtrain.activations import sigmoid
from mbtrain.backends import FINITE, get_backend
from mbtrain.backends.numba_matrix import _epoch_rows, _rule as numba_rule
from mbtrain.backends.numpy_matrix import backward as numpy_backward, forward as numpy_forward
from mbtrain.bench.trial import run_trial
from mbtrain.synthetic import make_blobs

BACKEND_NAMES = ("loop", "numpy", "numba")
TWO_THREADS = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")


def rel_err(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def user_gradients(lmbda=0.0, n=1, guard=0.0):
    """A learner's matrix backprop for sigmoid nets with cross-entropy cost, L2 term ``(lmbda/n) W`` included.

    With ``lmbda`` and ``n`` those of the check it is the exact gradient of ``net.loss``; ``guard`` is
    the epsilon people add to ``dC/da = (a - y) / (a (1 - a))`` against a division by zero, before
    multiplying by ``sigma' = a (1 - a)``.
    """

    def gradients(net, X, Y):
        acts = [X]
        for w, b in zip(net.weights, net.biases):
            acts.append(sigmoid(acts[-1] @ w.T + b))
        a = acts[-1]
        delta = (a - Y) / (a * (1 - a) + guard) * (a * (1 - a)) if guard else a - Y
        m = X.shape[0]
        grad_w, grad_b = [None] * len(net.weights), [None] * len(net.weights)
        for l in range(len(net.weights) - 1, -1, -1):
            grad_w[l] = delta.T @ acts[l] / m + (lmbda / n) * net.weights[l]
            grad_b[l] = delta.mean(axis=0)
            if l > 0:
                delta = (delta @ net.weights[l]) * acts[l] * (1 - acts[l])
        return grad_w, grad_b

    return gradients


def failing(result):
    return set(zip(result.failures["layer"], result.failures["group"]))


# -- 1. gradcheck's default tolerance --------------------------------------------------------------------
@pytest.fixture(scope="module")
def readme_problem():
    """The README's call: blobs of 16 features, [16, 30, 4] cross-entropy, X[:8], y[:8]."""
    X, y = make_blobs(n_samples=1200, n_features=16, n_classes=4, seed=0)
    net = mbtrain.Network([16, 30, 4], cost="cross_entropy", init="scaled", seed=0)
    return net, X[:8], y[:8]


WEIGHTS = {(1, "weights"), (2, "weights")}
EVERY_GROUP = WEIGHTS | {(1, "biases"), (2, "biases")}


def test_the_correct_gradient_with_the_l2_term_passes_the_default_tolerance(readme_problem):
    net, X, y = readme_problem
    result = mbtrain.gradcheck(net, X, y, lmbda=0.1, n=1000, gradients=user_gradients(0.1, 1000))
    assert result.ok, str(result)
    assert result.table["max_rel_error"].max() < 1e-7  # far below the tolerance: a failure means a bug


@pytest.mark.parametrize("bug, n, gradients, fails", [
    # the README's call, lmbda=0.1 and n=1000 (W1's worst error 0.5, W2's 0.03)
    ("L2 term forgotten", 1000, user_gradients(), WEIGHTS),
    # n counted with the 200 validation rows (W2's error 5e-3)
    ("L2 term over n=1200 rows, not 1000", 1000, user_gradients(0.1, 1200), WEIGHTS),
    # the book's chapter 3 n = 50,000 (W2's error 6e-4)
    ("L2 term forgotten, n=50000", 50_000, user_gradients(), WEIGHTS),
    # every group's error between 8e-5 and 4e-3
    ("epsilon 1e-5 in the cross-entropy derivative", 1000, user_gradients(0.1, 1000, guard=1e-5), EVERY_GROUP),
], ids=["no-L2", "L2-over-1200", "no-L2-n50000", "epsilon-guard"])
def test_small_realistic_bugs_fail_at_the_default_tolerance(readme_problem, bug, n, gradients, fails):
    """Every group a small bug breaks fails (biases are never regularized), also those under 1e-2."""
    net, X, y = readme_problem
    result = mbtrain.gradcheck(net, X, y, lmbda=0.1, n=n, gradients=gradients)
    assert failing(result) == fails, f"{bug}:\n{result}"


def test_some_small_bugs_stay_under_a_loose_tolerance(readme_problem):
    """What makes the test above worth having: groups it must fail have errors a 1e-2 tolerance passes."""
    net, X, y = readme_problem
    for n, gradients, groups in ((1000, user_gradients(0.1, 1200), WEIGHTS), (50_000, user_gradients(), WEIGHTS),
                                 (1000, user_gradients(0.1, 1000, guard=1e-5), EVERY_GROUP)):
        table = mbtrain.gradcheck(net, X, y, lmbda=0.1, n=n, gradients=gradients).table
        errors = table.set_index(["layer", "group"]).loc[sorted(groups), "max_rel_error"]
        assert 1e-6 < errors.min() < 1e-2, list(errors)


# -- 2. gradcheck's worst_index --------------------------------------------------------------------------
@pytest.mark.parametrize("layer, group, index", [
    (1, "weights", (1, 3)), (1, "weights", (2, 4)), (2, "weights", (1, 0)), (2, "weights", (0, 2)),
    (1, "biases", (2,)),
])
def test_worst_index_names_the_one_wrong_entry(rng, layer, group, index):
    """[5, 3, 2]: W1 is (3, 5), W2 (2, 3); read in the transposed shape each index above names another entry."""
    X, y = rng.random((6, 5)), rng.integers(0, 2, size=6)
    net = mbtrain.Network([5, 3, 2], cost="cross_entropy", dtype="float64", seed=2)
    correct = user_gradients()
    planted = {}

    def one_wrong_entry(net, X, Y):
        grad_w, grad_b = correct(net, X, Y)
        target = (grad_w if group == "weights" else grad_b)[layer - 1]
        target[index] += 0.5 * abs(target[index]) + 1e-2
        planted["value"] = float(target[index])
        return grad_w, grad_b

    result = mbtrain.gradcheck(net, X, y, gradients=one_wrong_entry)
    assert failing(result) == {(layer, group)}
    row = result.failures.iloc[0]
    assert tuple(int(i) for i in row["worst_index"]) == index
    assert row["analytic"] == planted["value"]
    expected = (net.gradients(X, y)[0 if group == "weights" else 1])[layer - 1][index]
    assert row["numeric"] == pytest.approx(expected, rel=1e-8)


# -- 3. and 4. the shuffle order of every epoch ----------------------------------------------------------
@pytest.fixture
def orders_seen(monkeypatch):
    """Every ``order`` the numba backend's ``optimizer_epoch`` is given, in calls (the epoch itself runs)."""
    backend = get_backend("numba")
    real = type(backend).optimizer_epoch
    seen = []

    def spy(self, net, X, Y, order, *args):
        seen.append(np.array(order))
        return real(self, net, X, Y, order, *args)

    monkeypatch.setattr(type(backend), "optimizer_epoch", spy)
    return seen


def split_epochs(calls, n):
    """The calls' rows, joined and cut into epochs of ``n`` rows."""
    rows = np.concatenate(calls)
    assert len(rows) % n == 0
    return [rows[i:i + n] for i in range(0, len(rows), n)]


def assert_fresh_permutations(epochs, replay):
    """Each epoch a permutation of its own, equal to the replayed stream's next one."""
    n = len(epochs[0])
    for k, order in enumerate(epochs):
        np.testing.assert_array_equal(np.sort(order), np.arange(n))
        np.testing.assert_array_equal(order, replay.permutation(n), err_msg=f"epoch {k + 1}")
    assert len({order.tobytes() for order in epochs}) == len(epochs), "two epochs had the same order"


@pytest.mark.parametrize("seed", [7, None])
def test_fit_shuffles_each_epoch_from_the_documented_stream(orders_seen, seed):
    """seed=int: net.rng = default_rng(seed); None: net.rng continues. One permutation(n) per epoch."""
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 6)).astype(np.float32), rng.integers(0, 3, size=40)
    net = mbtrain.Network([6, 5, 3], seed=3)
    replay = np.random.default_rng(seed)
    if seed is None:
        replay.bit_generator.state = net.rng.bit_generator.state
    calls_at_epoch_end = []
    net.fit(X, y, epochs=4, batch_size=8, eta=1.0, seed=seed, progress=False,
            callbacks=[lambda net, history: calls_at_epoch_end.append(len(orders_seen))])
    epochs = [np.concatenate(orders_seen[start:end])
              for start, end in zip([0] + calls_at_epoch_end[:-1], calls_at_epoch_end)]
    assert len(epochs) == 4
    assert_fresh_permutations(epochs, replay)
    assert net.rng.bit_generator.state == replay.bit_generator.state  # nothing else drawn
    # a second call continues the stream (seed=None): its 2 epochs take the 5th and 6th permutations
    orders_seen.clear()
    net.fit(X, y, epochs=2, batch_size=8, eta=1.0, progress=False, monitor=False)
    assert_fresh_permutations(split_epochs(orders_seen, 40), replay)


def test_sweep_runs_shuffle_each_epoch_from_the_seeds_stream(orders_seen):
    """A sweep run (run_trial) draws net.rng.permutation(n) each epoch, net = Network(..., seed=seed)."""
    X, y = make_blobs(n_samples=700, n_features=12, n_classes=3, seed=1)
    eye = np.eye(3, dtype=np.float32)
    sizes = [12, 6, 3]
    rows = run_trial(X[:600], eye[y[:600]], X[600:], eye[y[600:]], sizes=sizes, cost="quadratic", init="gaussian",
                     dtype="float32", batch_size=100, eta=3.0, seed=5, lmbda=0.0, target=1.1, max_epochs=3,
                     evals_per_epoch=4, backend="numba", with_noise=False, threads=None)
    assert rows[-1]["kind"] == "sweep" and rows[-1]["epoch"] == 3
    replay = mbtrain.Network(sizes, cost="quadratic", init="gaussian", dtype="float32", seed=5).rng
    epochs = split_epochs(orders_seen, 600)
    assert len(epochs) == 3
    assert_fresh_permutations(epochs, replay)


# -- 5. float32 stays float32 inside every backend's epoch ----------------------------------------------
def float64_arrays_in_mbtrain_frames(call):
    """Run ``call()`` and name every float64 array an mbtrain function held when it returned.

    A local or return value that is a float64 ndarray (also inside a list, tuple or dict, such
    as the per-layer ``zs``) is reported as ``"module.function: name"``. Frames of other
    packages are not looked at, and the jitted kernels have no Python frames (the kernel
    tests inspect their LLVM instead).
    """
    seen = []

    def look(value, where, depth=0):
        if isinstance(value, np.ndarray):
            if value.dtype == np.float64:
                seen.append(where)
        elif isinstance(value, (list, tuple)) and depth < 2:
            for item in value:
                look(item, where, depth + 1)
        elif isinstance(value, dict) and depth < 2:
            for item in value.values():
                look(item, where, depth + 1)

    def on_return(frame, event, arg):
        if event == "return":
            name = f"{frame.f_globals.get('__name__')}.{frame.f_code.co_name}"
            for variable, value in frame.f_locals.items():
                look(value, f"{name}: {variable}")
            look(arg, f"{name}: return value")
        return on_return

    def on_call(frame, event, arg):
        if str(frame.f_globals.get("__name__", "")).startswith("mbtrain"):
            frame.f_trace_lines = False
            return on_return
        return None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        call()
    finally:
        sys.settrace(previous)
    return sorted(set(seen))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_a_float32_epoch_creates_no_float64_arrays(backend, optimizer):
    rng = np.random.default_rng(1)
    X, y = rng.random((23, 6)).astype(np.float32), rng.integers(0, 3, size=23)
    net = mbtrain.Network([6, 9, 3], cost="cross_entropy", dtype="float32", seed=0)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.5, backend=backend, optimizer=optimizer, progress=False,
            monitor=False)  # compiled outside the trace
    start = net.params.copy()
    found = float64_arrays_in_mbtrain_frames(lambda: net.fit(
        X, y, epochs=2, batch_size=5, eta=0.5, lmbda=0.5, backend=backend, optimizer=optimizer, seed=2,
        progress=False, monitor=False))
    assert found == [], f"float64 arrays in a float32 {backend} epoch: {found}"
    assert net.params.dtype == np.float32 and not np.array_equal(net.params, start)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_the_tracer_sees_float64_arrays(backend):
    """The check above can fail: a float64 network's epoch is full of float64 arrays."""
    rng = np.random.default_rng(1)
    X, y = rng.random((23, 6)), rng.integers(0, 3, size=23)
    net = mbtrain.Network([6, 9, 3], cost="cross_entropy", dtype="float64", seed=0)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.5, backend=backend, progress=False, monitor=False)
    found = float64_arrays_in_mbtrain_frames(lambda: net.fit(X, y, epochs=1, batch_size=5, eta=0.5, backend=backend,
                                                             progress=False, monitor=False))
    assert any(".sgd_epoch: " in where or "._fit: before" in where for where in found), found


def numpy_float32_reference_epoch(net, X, labels, order, batch_size, eta, lmbda, n):
    """The numpy backend's SGD epoch spelled out, every array checked to be float32 as it is made."""
    f = np.float32
    eye = np.eye(net.sizes[-1], dtype=f)
    decay = 1 - eta * (lmbda / n)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        zs, activations = numpy_forward(net.weights, net.biases, net.cost, X[rows])
        sum_w, sum_b = numpy_backward(net.weights, net.cost, zs, activations, eye[labels[rows]])
        for array in zs + activations + sum_w + sum_b:
            assert array.dtype == f
        for w, s in zip(net.weights, sum_w):
            w *= decay
            w -= (eta / len(rows)) * s
        for b, s in zip(net.biases, sum_b):
            b -= (eta / len(rows)) * s


@pytest.mark.parametrize("cost", ["quadratic", "cross_entropy", "softmax"])
def test_the_numpy_float32_epoch_equals_a_float32_reference_bit_for_bit(cost):
    rng = np.random.default_rng(2)
    X, y = rng.random((23, 6)).astype(np.float32), rng.integers(0, 3, size=23)
    order = rng.permutation(23)
    nets = [mbtrain.Network([6, 9, 4, 3], cost=cost, dtype="float32", seed=1) for _ in range(2)]
    assert get_backend("numpy").sgd_epoch(nets[0], X, y, order, 5, 2.0, 0.5, 23) == FINITE
    numpy_float32_reference_epoch(nets[1], X, y, order, 5, 2.0, 0.5, 23)
    assert nets[0].params.dtype == np.float32
    np.testing.assert_array_equal(nets[0].params, nets[1].params)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_the_numba_float32_epoch_equals_the_float32_kernel_bit_for_bit(batch_size):
    """The backend's epoch is the kernel called with float32 arrays and float32 scalars, nothing wider."""
    rng = np.random.default_rng(3)
    X, y = rng.random((23, 6)).astype(np.float32), rng.integers(0, 3, size=23)
    order = rng.permutation(23)
    eta, lmbda, n = 2.0, 0.5, 40
    f = np.float32
    nets = [mbtrain.Network([6, 9, 3], cost="cross_entropy", dtype="float32", seed=1) for _ in range(2)]
    with mbtrain.threads.limit(1):
        assert get_backend("numba").sgd_epoch(nets[0], X, y, order, batch_size, eta, lmbda, n) == FINITE
    kernel_net = api.Net(nets[1].params, np.asarray(nets[1].sizes, np.int64), nets[1].cost.kernel_id, f(1))
    work = api.new_work(nets[1].sizes, batch_size, np.float32)
    if batch_size == 1:
        status = fk.sgd_epoch_online(kernel_net, work, *_epoch_rows(X, np.float32), y, order, beta=f(-eta), decay=f(1 - eta * lmbda / n))
    else:
        status = fk.sgd_epoch_serial(kernel_net, work, *_epoch_rows(X, np.float32), y, order, beta_full=f(-eta / 5), beta_last=f(-eta / 3),
                                     decay=f(1 - eta * lmbda / n), n_parts=1, checked=True)
    assert status == FINITE
    assert nets[0].params.dtype == np.float32
    np.testing.assert_array_equal(nets[0].params, nets[1].params)


# -- 6. the parallel epochs at widths above 8 ------------------------------------------------------------
WIDE = [[6, 9, 3], [6, 17, 3], [6, 33, 5], [6, 17, 9, 3]]


def data(n_rows, sizes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n_rows, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], size=n_rows)


@pytest.mark.parametrize("sizes", WIDE)
@pytest.mark.parametrize("batch_size", [64, 65])
@pytest.mark.parametrize("n_parts", [2, 3])
def test_parallel_sgd_epoch_equals_numpy_at_wide_layers(sizes, batch_size, n_parts):
    """Every unit and every row in some share: floor division drops unit 8 of 9, 16 of 17, row 64 of 65."""
    n_rows = 2 * batch_size + 22  # two full batches and a short one
    X, y = data(n_rows, sizes, np.float64)
    order = np.random.default_rng(1).permutation(n_rows)
    eta, lmbda = 3.0, 0.5
    fast = mbtrain.Network(sizes, cost="cross_entropy", dtype="float64", seed=0)
    reference = mbtrain.Network(sizes, cost="cross_entropy", dtype="float64", seed=0)
    start = fast.params.copy()
    last = n_rows - 2 * batch_size
    status = fk.sgd_epoch_parallel(api.Net(fast.params, np.asarray(sizes, np.int64), fast.cost.kernel_id, 1.0),
                                   api.new_work(sizes, batch_size, np.float64), *_epoch_rows(X, np.float64), y,
                                   order,
                                   beta_full=-eta / batch_size, beta_last=-eta / last, decay=1 - eta * lmbda / n_rows,
                                   n_parts=n_parts, checked=True)
    assert status == FINITE
    assert get_backend("numpy").sgd_epoch(reference, X, y, order, batch_size, eta, lmbda, n_rows) == FINITE
    assert rel_err(fast.params, reference.params) < 1e-9
    for w, w0 in zip(fast.weights, mbtrain.Network(sizes, dtype="float64", seed=0).weights):
        assert (w != w0).all(axis=1).all()  # every unit was updated
    assert not np.array_equal(fast.params, start)


@pytest.mark.parametrize("sizes", WIDE[:3])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_parallel_optimizer_epoch_equals_numpy_at_wide_layers(sizes, optimizer):
    n_rows, batch_size, eta, lmbda = 150, 65, 0.05, 0.5
    X, y = data(n_rows, sizes, np.float64)
    order = np.random.default_rng(1).permutation(n_rows)
    rule = mbtrain.optim.get_optimizer(optimizer)
    nets, states = {}, {}
    for name in ("numpy", "fast"):
        nets[name] = mbtrain.Network(sizes, cost="cross_entropy", dtype="float64", seed=0)
        states[name] = rule.new_state(nets[name].layout.size, np.float64)
    assert get_backend("numpy").optimizer_epoch(nets["numpy"], X, y, order, batch_size, eta, lmbda, n_rows, rule,
                                                states["numpy"]) == FINITE
    net, state = nets["fast"], states["fast"]
    first = state.arrays["m" if optimizer == "adam" else "velocity"]
    second = state.arrays["s"] if optimizer == "adam" else np.empty(0)
    status = fk.optimizer_epoch_parallel(
        api.Net(net.params, np.asarray(sizes, np.int64), net.cost.kernel_id, 1.0),
        api.new_work(sizes, batch_size, np.float64), *_epoch_rows(X, np.float64), y, order, np.empty_like(net.params),
        (first, second),
        numba_rule(rule, eta, np.float64), 0, lmbda / n_rows, 1 / batch_size, 1 / (n_rows - 2 * batch_size), 2, True)
    assert status == FINITE
    assert rel_err(net.params, nets["numpy"].params) < 1e-9
    reference_first = states["numpy"].arrays["m" if optimizer == "adam" else "velocity"]
    assert rel_err(first, reference_first) < 1e-9


@TWO_THREADS
@pytest.mark.parametrize("sizes", WIDE[:3])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_fit_on_two_threads_equals_numpy_at_wide_layers(sizes, optimizer):
    X, y = data(200, sizes, np.float64, seed=4)
    nets = {}
    for backend in ("numpy", "numba"):
        nets[backend] = mbtrain.Network(sizes, cost="cross_entropy", dtype="float64", seed=0)
        with mbtrain.threads.limit(2):
            numba.set_num_threads(2)
            assert numba.get_num_threads() == 2  # so the numba epoch at batch 64 runs the parallel kernel
            nets[backend].fit(X, y, epochs=2, batch_size=64, eta=0.05 if optimizer != "sgd" else 3.0, lmbda=0.5,
                              backend=backend, optimizer=optimizer, seed=1, progress=False, monitor=False)
    assert rel_err(nets["numba"].params, nets["numpy"].params) < 1e-9
