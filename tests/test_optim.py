"""mbtrain.optim: each rule worked by hand, the backends agree, torch.optim agrees, dtypes, bad input, divergence."""
import numpy as np
import pytest

import mbtrain
from conftest import BACKEND_NAMES, COST_NAMES
from mbtrain.optim import SGD, Adam, Momentum, Nesterov, OptimizerState, apply_step, get_optimizer

OPTIMIZER_NAMES = ("momentum", "nesterov", "adam")


def one_unit_network(dtype="float64"):
    """[1, 1], quadratic cost, w = b = 0: z = 0, a = 1/2, so for x = 1, y = 1 the cost's
    delta is (a - y) a (1 - a) = (-1/2)(1/4) = -1/8 and g = (dC/dw, dC/db) = (-1/8, -1/8)."""
    net = mbtrain.Network([1, 1], cost="quadratic", dtype=dtype, seed=0)
    net.params[...] = 0.0
    return net, np.ones((1, 1), dtype=dtype), np.ones((1, 1), dtype=dtype)


@pytest.mark.parametrize("optimizer, eta, expected_params, expected_state", [
    # w <- 0 - 1 * (-1/8) = 1/8 for the weight and the bias alike
    ("sgd", 1.0, [0.125, 0.125], None),
    # v <- 0.9 * 0 + g = -1/8; w <- 0 - 1 * v = 1/8 (the first step equals SGD's)
    ("momentum", 1.0, [0.125, 0.125], {"velocity": [-0.125, -0.125]}),
    # v <- -1/8; w <- 0 - 1 * (g + 0.9 v) = 1/8 + 0.1125 = 0.2375
    ("nesterov", 1.0, [0.2375, 0.2375], {"velocity": [-0.125, -0.125]}),
    # t = 1: m = 0.1 g = -0.0125, s = 0.001 g^2 = 1.5625e-5; m / (1 - 0.9) = -1/8,
    # sqrt(s / (1 - 0.999)) = sqrt(1/64) = 1/8; w <- 0 - 0.01 * (-1/8) / (1/8 + 1e-8) = 0.01 / (1 + 8e-8)
    ("adam", 0.01, [0.01 / (1 + 8e-8)] * 2, {"m": [-0.0125, -0.0125], "s": [1.5625e-5, 1.5625e-5]}),
])
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_one_step_of_each_optimizer_by_hand(backend, optimizer, eta, expected_params, expected_state):
    net, X, Y = one_unit_network()
    net.fit(X, Y, epochs=1, batch_size=1, eta=eta, backend=backend, optimizer=optimizer, monitor=False)
    np.testing.assert_allclose(net.params, expected_params, rtol=1e-14)
    if expected_state is None:
        assert net.optimizer_state is None
    else:
        assert sorted(net.optimizer_state.arrays) == sorted(expected_state)
        for key, values in expected_state.items():
            np.testing.assert_allclose(net.optimizer_state.arrays[key], values, rtol=1e-14)
        assert net.optimizer_state.step == 1


def test_two_steps_of_each_rule_by_hand():
    """A constant gradient g = 0.5 on w = 1, eta = 0.1, twice."""
    def run(optimizer):
        params, grad = np.array([1.0]), np.array([0.5])
        state = optimizer.new_state(1, np.float64)
        for _ in range(2):
            apply_step(optimizer, state, params, grad, 0.1)
        return params[0], state

    # v = 0.5, w = 1 - 0.05 = 0.95; v = 0.45 + 0.5 = 0.95, w = 0.95 - 0.095 = 0.855
    w, state = run(Momentum(0.9))
    assert w == pytest.approx(0.855, rel=1e-15) and state.arrays["velocity"][0] == pytest.approx(0.95)
    # v = 0.5, w = 1 - 0.1 (0.5 + 0.45) = 0.905; v = 0.95, w = 0.905 - 0.1 (0.5 + 0.855) = 0.7695
    w, state = run(Nesterov(0.9))
    assert w == pytest.approx(0.7695, rel=1e-15)
    # m_t = 0.5 (1 - 0.9^t) and s_t = 0.25 (1 - 0.999^t): corrected, 0.5 and 0.25, so each step is
    # 0.1 * 0.5 / (0.5 + 1e-8); after two: m = 0.5 * 0.19 = 0.095, s = 0.25 * 0.001999 = 0.00049975
    w, state = run(Adam())
    assert w == pytest.approx(1 - 2 * 0.1 / (1 + 2e-8), rel=1e-15)
    assert state.arrays["m"][0] == pytest.approx(0.095, rel=1e-14)
    assert state.arrays["s"][0] == pytest.approx(0.00049975, rel=1e-12)
    assert state.step == 2
    params = np.array([1.0])
    apply_step(SGD(), None, params, np.array([0.5]), 0.1)
    assert params[0] == 0.95


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("cost", COST_NAMES)
def test_one_epoch_agrees_across_backends(rng, optimizer, cost):
    """Float64, 203 rows in batches of 10 (the last has 3): every backend within 1e-9 of the loop."""
    X = rng.random((203, 12))
    y = rng.integers(0, 4, size=203)
    params, states = {}, {}
    for backend in BACKEND_NAMES:
        net = mbtrain.Network([12, 7, 5, 4], cost=cost, dtype="float64", seed=3)
        net.fit(X, y, epochs=1, batch_size=10, eta=0.05, lmbda=0.5, backend=backend, seed=5,
                optimizer=optimizer, monitor=False)
        params[backend], states[backend] = net.params.copy(), net.optimizer_state
    start = mbtrain.Network([12, 7, 5, 4], cost=cost, dtype="float64", seed=3).params
    assert not np.allclose(params["loop"], start)
    for backend in ("numpy", "numba"):
        assert np.allclose(params[backend], params["loop"], rtol=1e-9, atol=1e-12), backend
        assert states[backend].step == states["loop"].step == 21
        for key, reference in states["loop"].arrays.items():
            assert np.allclose(states[backend].arrays[key], reference, rtol=1e-9, atol=1e-15), (backend, key)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_sgd_through_optimizer_epoch_is_sgd_epoch_bit_for_bit(rng, backend):
    X = rng.random((57, 6))
    y = rng.integers(0, 3, size=57)
    by_name = mbtrain.Network([6, 5, 3], dtype="float64", seed=1)
    by_name.fit(X, y, epochs=2, batch_size=8, eta=0.7, lmbda=0.3, backend=backend, seed=2, monitor=False)
    by_hand = mbtrain.Network([6, 5, 3], dtype="float64", seed=1)
    impl = mbtrain.BACKENDS[backend]
    order_rng = np.random.default_rng(2)
    for _ in range(2):
        impl.sgd_epoch(by_hand, X, y, order_rng.permutation(57), 8, 0.7, 0.3, 57)
    np.testing.assert_array_equal(by_name.params, by_hand.params)


def _torch_run(torch, make_optimizer, net, X, y, batch_size, eta, lmbda, orders):
    """The same network in torch, float64, with the book's L2 as weight decay on the weights only."""
    weights = [torch.tensor(w.copy(), requires_grad=True) for w in net.weights]
    biases = [torch.tensor(b.copy(), requires_grad=True) for b in net.biases]
    n = X.shape[0]
    optimizer = make_optimizer([{"params": weights, "weight_decay": lmbda / n},
                                {"params": biases, "weight_decay": 0.0}], eta)
    X_t = torch.tensor(X)
    Y_t = torch.nn.functional.one_hot(torch.tensor(y), net.sizes[-1]).double()
    for order in orders:
        for start in range(0, n, batch_size):
            rows = torch.tensor(order[start:start + batch_size])
            a = X_t[rows]
            for w, b in zip(weights, biases):
                z = a @ w.T + b
                a = torch.sigmoid(z)
            # the cross-entropy cost: sum over outputs, mean over the mini-batch's rows
            cost = torch.nn.functional.binary_cross_entropy_with_logits(z, Y_t[rows], reduction="sum") / len(rows)
            optimizer.zero_grad()
            cost.backward()
            optimizer.step()
    return np.concatenate([np.concatenate([w.detach().numpy().ravel(), b.detach().numpy()])
                           for w, b in zip(weights, biases)])


TORCH_OPTIMIZERS = {
    "momentum": lambda torch: lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=False),
    "nesterov": lambda torch: lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True),
    "adam": lambda torch: lambda groups, lr: torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8),
}


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_weights_equal_torch_optim(rng, optimizer, backend):
    """Two float64 epochs (the state carried between them) from the same weights and batch order."""
    torch = pytest.importorskip("torch")
    X = rng.random((93, 9))
    y = rng.integers(0, 4, size=93)
    net = mbtrain.Network([9, 6, 4], cost="cross_entropy", dtype="float64", seed=4)
    order_rng = np.random.default_rng(8)
    orders = [order_rng.permutation(93), order_rng.permutation(93)]
    expected = _torch_run(torch, TORCH_OPTIMIZERS[optimizer](torch), net, X, y, 10, 0.05, 3.0, orders)
    impl = mbtrain.BACKENDS[backend]
    state = mbtrain.optim.get_optimizer(optimizer).new_state(net.n_params, net.dtype)
    for order in orders:
        assert impl.optimizer_epoch(net, X, y, order, 10, 0.05, 3.0, 93, get_optimizer(optimizer), state) == -1
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(net.params - expected)) / scale < 1e-10
    assert state.step == 20


def test_fit_equals_torch_with_its_shuffle(rng):
    """The same through fit: the order is the network's stream, drawn exactly as fit draws it."""
    torch = pytest.importorskip("torch")
    X = rng.random((64, 5))
    y = rng.integers(0, 3, size=64)
    net = mbtrain.Network([5, 4, 3], cost="cross_entropy", dtype="float64", seed=2)
    orders_rng = np.random.default_rng(11)
    orders = [orders_rng.permutation(64) for _ in range(3)]
    expected = _torch_run(torch, TORCH_OPTIMIZERS["adam"](torch), net, X, y, 16, 0.01, 1.0, orders)
    net.fit(X, y, epochs=3, batch_size=16, eta=0.01, lmbda=1.0, seed=11, optimizer="adam", backend="numba")
    assert np.max(np.abs(net.params - expected)) / np.max(np.abs(expected)) < 1e-10


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_float32_stays_float32(rng, backend, optimizer):
    net = mbtrain.Network([8, 6, 3], dtype="float32", seed=0)
    X = rng.random((30, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    net.fit(X, y, epochs=2, batch_size=7, eta=0.1, backend=backend, optimizer=optimizer)
    assert net.params.dtype == np.float32
    assert all(a.dtype == np.float32 for a in net.optimizer_state.arrays.values())
    # float32 tracks float64 from the same start
    wide = mbtrain.Network([8, 6, 3], dtype="float64", seed=0)
    wide.fit(X.astype(np.float64), y, epochs=2, batch_size=7, eta=0.1, backend=backend, optimizer=optimizer)
    assert np.allclose(net.params, wide.params, rtol=1e-3, atol=1e-4)


def test_apply_step_keeps_float32():
    for optimizer in (SGD(), Momentum(), Nesterov(), Adam()):
        params = np.ones(4, dtype=np.float32)
        state = optimizer.new_state(4, np.float32) if optimizer.state_names else None
        apply_step(optimizer, state, params, np.full(4, 0.25, dtype=np.float32), 0.1)
        assert params.dtype == np.float32
        assert state is None or all(a.dtype == np.float32 for a in state.arrays.values())


def test_names_and_objects():
    assert get_optimizer("sgd") == SGD()
    assert get_optimizer("nesterov") == Momentum(0.9, nesterov=True) == Nesterov()
    assert get_optimizer("nesterov").name == "nesterov" and Nesterov().kind_id == 2
    assert [get_optimizer(name).kind_id for name in ("sgd", "momentum", "nesterov", "adam")] == [0, 1, 2, 3]
    assert Momentum(0.95) != Momentum(0.9)
    assert Adam(beta1=0.8).describe() == {"name": "adam", "beta1": 0.8, "beta2": 0.999, "eps": 1e-8}
    assert repr(Momentum(0.5)) == "momentum(mu=0.5)"
    adam = Adam()
    assert get_optimizer(adam) is adam


@pytest.mark.parametrize("make, message", [
    (lambda: get_optimizer("rmsprop"), r"optimizer: unknown optimizer 'rmsprop'; choose one of \['sgd', "),
    (lambda: get_optimizer(None), "optimizer: unknown optimizer None"),
    (lambda: Momentum(mu=1.0), r"mu: must be in \[0, 1\), got 1.0"),
    (lambda: Momentum(mu=-0.1), r"mu: must be in \[0, 1\), got -0.1"),
    (lambda: Nesterov(mu=float("nan")), r"mu: must be in \[0, 1\), got nan"),
    (lambda: Adam(beta1=1.0), r"beta1: must be in \[0, 1\), got 1.0"),
    (lambda: Adam(beta2=1.5), r"beta2: must be in \[0, 1\), got 1.5"),
    (lambda: Adam(eps=0.0), "eps: must be a finite number > 0, got 0.0"),
    (lambda: Adam(eps=-1e-8), "eps: must be a finite number > 0"),
])
def test_bad_hyperparameters_are_value_errors_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_non_numbers_are_type_errors():
    with pytest.raises(TypeError, match="mu: must be a number"):
        Momentum(mu="0.9")
    with pytest.raises(TypeError, match="nesterov: must be True or False"):
        Momentum(nesterov="yes")


def _snapshot(net):
    state = net.optimizer_state
    return (net.params.copy(), net.rng.bit_generator.state, len(getattr(net, "history", [])),
            None if state is None else (state.optimizer, state.step, {k: a.copy() for k, a in state.arrays.items()}))


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:3] == b[1:3]
    assert (a[3] is None) == (b[3] is None)
    if a[3] is not None:
        assert a[3][:2] == b[3][:2]
        for key in a[3][2]:
            np.testing.assert_array_equal(a[3][2][key], b[3][2][key])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"optimizer": "adagrad"}, ValueError, "optimizer: unknown optimizer 'adagrad'"),
    ({"optimizer": 3}, ValueError, "optimizer: unknown optimizer 3"),
    ({"schedule": "warmup"}, ValueError, "schedule: unknown schedule 'warmup'"),
    ({"schedule": lambda epoch: float("nan")}, ValueError, "schedule: the callable returned nan for epoch 1"),
    ({"schedule": lambda epoch: -0.5}, ValueError, "schedule: the callable returned -0.5 for epoch 1"),
    ({"schedule": lambda epoch: "half"}, TypeError, "schedule: the callable returned 'half' for epoch 1"),
    ({"schedule": "book"}, ValueError, "schedule: 'book' .* needs validation_data and monitor=True"),
    ({"schedule": mbtrain.schedules.Cosine(5, eta_min=1.0)}, ValueError, "schedule: cosine's eta_min 1.0 is above"),
])
def test_bad_optimizer_or_schedule_leaves_the_network_unchanged(rng, kwargs, error, message):
    X = rng.random((40, 4))
    y = rng.integers(0, 2, size=40)
    net = mbtrain.Network([4, 3, 2], seed=0)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.1, optimizer="adam")
    before = _snapshot(net)
    with pytest.raises(error, match=message):
        net.fit(X, y, epochs=2, batch_size=5, eta=0.1, seed=9, **kwargs)
    _assert_same(before, _snapshot(net))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_diverging_adam_keeps_finite_parameters_and_state(rng, backend):
    X = rng.random((60, 4))
    y = rng.integers(0, 2, size=60)
    net = mbtrain.Network([4, 3, 2], dtype="float32", seed=0)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.01, optimizer="adam", backend=backend)
    with pytest.raises(mbtrain.TrainingDiverged, match=r"became NaN or inf with eta=1e\+38 \(adam\(") as info:
        net.fit(X, y, epochs=3, batch_size=5, eta=1e38, optimizer="adam", backend=backend)
    assert np.isfinite(net.params).all()
    state = net.optimizer_state
    assert state.first_nonfinite() is None and state.is_for(Adam())
    # the state is that of the parameters kept: the steps before the offending mini-batch
    assert info.value.batch is not None
    assert state.step == 12 + (info.value.epoch - 2) * 12 + info.value.batch
    # and training can go on from there at a sane eta
    net.fit(X, y, epochs=1, batch_size=5, eta=0.001, optimizer="adam", backend=backend)
    assert np.isfinite(net.params).all()


def test_divergence_replay_leaves_the_state_of_the_kept_parameters(rng):
    """The kept parameters and state are exactly those after the mini-batches before the bad one."""
    X = rng.random((60, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=60)
    net = mbtrain.Network([4, 3, 2], dtype="float32", seed=0)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.01, optimizer="adam", backend="numpy")
    start = net.copy()  # the state too
    with pytest.raises(mbtrain.TrainingDiverged) as info:
        net.fit(X, y, epochs=1, batch_size=5, eta=1e38, optimizer="adam", backend="numpy", seed=3)
    batches = info.value.batch
    assert batches > 0
    order = np.random.default_rng(3).permutation(60)[:batches * 5]
    state = start.optimizer_state
    assert mbtrain.BACKENDS["numpy"].optimizer_epoch(start, X, y, order, 5, 1e38, 0.0, 60, Adam(), state) == -1
    np.testing.assert_array_equal(net.params, start.params)
    np.testing.assert_array_equal(net.optimizer_state.arrays["s"], state.arrays["s"])
    np.testing.assert_array_equal(net.optimizer_state.arrays["m"], state.arrays["m"])
    assert net.optimizer_state.step == state.step == 12 + batches


def test_optimizer_state_is_checked_before_training(rng):
    X = rng.random((20, 4))
    y = rng.integers(0, 2, size=20)
    net = mbtrain.Network([4, 3, 2], seed=0)
    net.fit(X, y, epochs=1, batch_size=5, eta=0.1, optimizer="momentum")
    net.optimizer_state.arrays["velocity"][3] = np.inf
    with pytest.raises(ValueError, match=r"net.optimizer_state: velocity\[3\] is inf, not finite"):
        net.fit(X, y, epochs=1, batch_size=5, eta=0.1, optimizer="momentum")
    net.optimizer_state = "velocity"
    with pytest.raises(ValueError, match="net.optimizer_state: expected an mbtrain.optim.OptimizerState or None"):
        net.fit(X, y, epochs=1, batch_size=5, eta=0.1, optimizer="momentum")


def test_state_check_names_what_is_wrong():
    state = Adam().new_state(5, np.float64)
    state.check(5, np.float64)
    with pytest.raises(ValueError, match="'m' must be a flat float64 array of 6 values"):
        state.check(6, np.float64)
    state.arrays["s"][2] = -1.0
    with pytest.raises(ValueError, match=r"s\[2\] is -1.0; Adam's second moment is >= 0"):
        state.check(5, np.float64)
    with pytest.raises(ValueError, match=r"keeps the arrays \['velocity'\]"):
        OptimizerState(Momentum().describe(), {"m": np.zeros(5)}).check(5, np.float64)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_progress_bar_and_gathered_rows_train_exactly_alike(rng, backend):
    """A progress bar splits the epoch into several calls, a Fortran-order X into gathered blocks:
    the state carries across the calls, so the result is the same bit for bit."""
    X = rng.random((90, 6))
    y = rng.integers(0, 3, size=90)
    runs = []
    for data, progress in ((X, False), (X, True), (np.asfortranarray(X), False)):
        net = mbtrain.Network([6, 5, 3], dtype="float64", seed=1)
        net.fit(data, y, epochs=2, batch_size=4, eta=0.01, optimizer="adam", backend=backend, seed=3,
                progress=progress, monitor=False)
        runs.append((net.params.copy(), net.optimizer_state))
    for params, state in runs[1:]:
        np.testing.assert_array_equal(params, runs[0][0])
        np.testing.assert_array_equal(state.arrays["s"], runs[0][1].arrays["s"])
        assert state.step == runs[0][1].step == 2 * 23


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_float64_network_reads_float32_rows(rng, backend):
    X = rng.random((50, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    nets = []
    for data in (X, X.astype(np.float64)):
        net = mbtrain.Network([6, 5, 3], dtype="float64", seed=1)
        net.fit(data, y, epochs=1, batch_size=8, eta=0.05, optimizer="nesterov", backend=backend, monitor=False)
        nets.append(net)
    assert np.allclose(nets[0].params, nets[1].params, rtol=1e-12, atol=0)
    assert nets[0].optimizer_state.arrays["velocity"].dtype == np.float64
