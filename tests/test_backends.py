"""The three backends compute the same maths: gradients, SGD epochs, dtypes."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import mbtrain
from conftest import BACKEND_NAMES, COST_NAMES, flat, max_rel_diff, random_problem


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 7), min_size=2, max_size=6),
    rows=st.integers(1, 6),
    cost=st.sampled_from(COST_NAMES),
    lmbda=st.sampled_from([0.0, 0.7]),
    seed=st.integers(0, 2**16),
    targets=st.booleans(),
)
def test_backends_agree_on_gradients(sizes, rows, cost, lmbda, seed, targets):
    """Random nets of depth 2 to 6 layers: loop, numpy, numba agree to 1e-10 (float64)."""
    rng = np.random.default_rng(seed)
    net, X, Y = random_problem(rng, sizes, rows, cost=cost, seed=seed, targets=targets)
    reference = flat(*net.gradients(X, Y, lmbda=lmbda, n=rows + 3, backend="loop"))
    for backend in ("numpy", "numba"):
        got = flat(*net.gradients(X, Y, lmbda=lmbda, n=rows + 3, backend=backend))
        assert max_rel_diff(reference, got) < 1e-10, backend


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("cost", COST_NAMES)
@pytest.mark.parametrize("lmbda", [0.0, 0.5])
def test_gradients_match_central_differences(rng, backend, cost, lmbda):
    net, X, y = random_problem(rng, [6, 5, 4, 3], rows=7, cost=cost, seed=2)
    result = mbtrain.gradcheck(net, X, y, lmbda=lmbda, n=20, backend=backend)
    assert result.ok, str(result)
    assert (result.table["max_rel_error"] < 1e-6).all()
    assert len(result.table) == 6


@pytest.mark.parametrize("cost", COST_NAMES)
def test_one_epoch_of_fit_agrees_across_backends(rng, cost):
    """Same seed, same data: one float64 epoch leaves equal weights to 1e-9 relative."""
    X = rng.random((203, 12))
    y = rng.integers(0, 4, size=203)
    params = {}
    for backend in BACKEND_NAMES:
        net = mbtrain.Network([12, 7, 5, 4], cost=cost, dtype="float64", seed=3)
        net.fit(X, y, epochs=1, batch_size=10, eta=3.0, lmbda=0.5, backend=backend, seed=5)
        params[backend] = net.params.copy()
    start = mbtrain.Network([12, 7, 5, 4], cost=cost, dtype="float64", seed=3).params
    assert not np.allclose(params["loop"], start)  # training moved the weights
    for backend in ("numpy", "numba"):
        assert np.allclose(params[backend], params["loop"], rtol=1e-9, atol=1e-12), backend


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_float32_stays_float32(rng, backend):
    net = mbtrain.Network([8, 6, 3], dtype="float32", seed=0)
    X = rng.random((30, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=30)
    net.fit(X, y, epochs=1, batch_size=7, eta=1.0, backend=backend)
    assert net.params.dtype == np.float32
    assert all(w.dtype == np.float32 for w in net.weights)
    assert net.forward(X).dtype == np.float32
    grad_w, grad_b = net.gradients(X, y, backend=backend)
    assert all(g.dtype == np.float32 for g in grad_w + grad_b)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_float32_training_tracks_float64(rng, backend):
    X = rng.random((60, 8))
    y = rng.integers(0, 3, size=60)
    nets = {dt: mbtrain.Network([8, 6, 3], dtype=dt, seed=4) for dt in ("float32", "float64")}
    for net in nets.values():
        net.fit(X, y, epochs=2, batch_size=5, eta=0.5, backend=backend, seed=1)
    assert np.allclose(nets["float32"].params, nets["float64"].params, atol=1e-4)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_last_short_batch_is_used(rng, backend):
    """7 rows with batch_size 5: batches of 5 and 2; the second equals a step on 2 rows."""
    X = rng.random((7, 4))
    y = rng.integers(0, 2, size=7)
    net = mbtrain.Network([4, 3, 2], dtype="float64", seed=0)
    expected = net.copy()
    net.fit(X, y, epochs=1, batch_size=5, eta=0.5, backend=backend, shuffle=False)
    for rows in (slice(0, 5), slice(5, 7)):
        gw, gb = expected.gradients(X[rows], y[rows], backend="loop")
        for p, g in zip(expected.weights + expected.biases, gw + gb):
            p -= 0.5 * g
    assert np.allclose(net.params, expected.params, rtol=1e-12)


def test_four_layer_network_trains(rng):
    """The 4-layer [n, h1, h2, k] case learns a separable problem."""
    from mbtrain.synthetic import make_blobs

    X, y = make_blobs(n_samples=600, n_features=10, n_classes=3, seed=1)
    net = mbtrain.Network([10, 12, 8, 3], cost="cross_entropy", init="scaled", seed=0)
    before = net.score(X, y)
    history = net.fit(X, y, epochs=8, batch_size=10, eta=0.5)
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert net.score(X, y) > max(0.9, before)


def test_default_backend_is_numba():
    assert mbtrain.DEFAULT_BACKEND == "numba"
    assert set(mbtrain.BACKENDS) == set(BACKEND_NAMES)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_float64_network_reads_float32_rows_without_a_copy(rng, backend):
    """float32 X for a float64 net: the same result as casting first (widening is exact)."""
    X32 = rng.random((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    direct, cast = (mbtrain.Network([6, 5, 3], dtype="float64", seed=2) for _ in range(2))
    direct.fit(X32, y, epochs=2, batch_size=4, eta=1.0, backend=backend, seed=0)
    cast.fit(X32.astype(np.float64), y, epochs=2, batch_size=4, eta=1.0, backend=backend, seed=0)
    np.testing.assert_allclose(direct.params, cast.params, rtol=1e-13, atol=1e-15)
    assert direct.params.dtype == np.float64


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("cost", COST_NAMES)
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_labels_train_exactly_like_their_one_hot_matrix(rng, backend, cost, batch_size):
    """fit keeps integer labels as labels (one-hot per mini-batch): same weights as the matrix."""
    X = rng.random((30, 6))
    y = rng.integers(0, 3, size=30)
    from_labels, from_matrix = (mbtrain.Network([6, 5, 3], cost=cost, dtype="float64", seed=1) for _ in range(2))
    h1 = from_labels.fit(X, y, epochs=2, batch_size=batch_size, eta=1.0, backend=backend, seed=0)
    h2 = from_matrix.fit(X, np.eye(3)[y], epochs=2, batch_size=batch_size, eta=1.0, backend=backend, seed=0)
    np.testing.assert_array_equal(from_labels.params, from_matrix.params)
    np.testing.assert_allclose(h1["train_loss"], h2["train_loss"], rtol=1e-15)
    np.testing.assert_array_equal(h1["train_accuracy"], h2["train_accuracy"])
